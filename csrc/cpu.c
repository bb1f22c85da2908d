/* cpu.c - which CPU paths run, chosen once by CPUID and changeable for tests.
 *
 * Two dials: fn_cpu_path picks the float32 kernels (generic, AVX2, AVX-512:
 * the kernel table of kernels.c, handed out by fn_kernels()), fn_mma_path the
 * low-precision matrix units behind the bf16 and int8 GEMMs
 * (portable, AVX512-VNNI, AVX512-BF16, AMX). AMX also needs the kernel's
 * consent: Linux keeps the 8 KiB tile state off until a process asks with
 * arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA); the request is made
 * once, and a refusal (or an old kernel) leaves the AVX512-BF16 path.
 */
#define _GNU_SOURCE /* syscall() under -std=c11 */
#include "kernels.h"

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define FN_CPUID_X86 1
#include <cpuid.h>
#endif
#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#define FN_ARCH_REQ_XCOMP_PERM 0x1023
#define FN_XFEATURE_XTILEDATA 18
#endif

static fn_cpu_path current_path = FN_CPU_GENERIC;
static int path_initialised = 0;
/* The kernels of current_path: looked up when the path is chosen, not per call. */
static const fn_kernel_table *current_kernels = NULL;

fn_cpu_path fn_cpu_best_path(void) {
#ifdef FN_CPUID_X86
    __builtin_cpu_init();
    /* __builtin_cpu_supports also checks that the OS saves the wide registers. */
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return FN_CPU_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return FN_CPU_AVX2;
#endif
    return FN_CPU_GENERIC;
}

fn_status fn_cpu_set_path(fn_cpu_path path) {
    if ((int)path < FN_CPU_GENERIC || (int)path > FN_CPU_AVX512) return FN_ERR_ARG;
    if ((int)path > (int)fn_cpu_best_path()) return FN_ERR_CPU;
    current_path = path;
    current_kernels = fn_kernel_table_for(path);
    path_initialised = 1;
    return FN_OK;
}

fn_cpu_path fn_cpu_get_path(void) {
    if (!path_initialised) {
        current_path = fn_cpu_best_path();
        current_kernels = fn_kernel_table_for(current_path);
        path_initialised = 1;
    }
    return current_path;
}

const fn_kernel_table *fn_kernels(void) {
    if (!path_initialised) fn_cpu_get_path();
    return current_kernels;
}

const char *fn_kernel_table_name(void) { return fn_kernels()->name; }

const char *fn_cpu_path_name(fn_cpu_path path) {
    switch (path) {
    case FN_CPU_AVX2: return "avx2";
    case FN_CPU_AVX512: return "avx512";
    default: return "generic";
    }
}

/* ---- low-precision matrix units --------------------------------------------- */

typedef struct {
    int vnni, bf16, amx; /* CPUID says so, the OS saves the state, the compiler can emit it */
} mma_features;

static mma_features detect_mma_features(void) {
    mma_features f = {0, 0, 0};
#ifdef FN_CPUID_X86
    unsigned eax, ebx, ecx, edx;
    if (fn_cpu_best_path() != FN_CPU_AVX512 || !__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return f;
    int amx_bits = (edx >> 24 & 1) && (edx >> 22 & 1) && (edx >> 25 & 1); /* tile, bf16, int8 */
    int vnni_bit = (ecx >> 11 & 1) && (ebx >> 30 & 1) && (ebx >> 31 & 1); /* with AVX512BW and VL */
    int bf16_bit = 0;
    if (eax >= 1 && __get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx)) bf16_bit = eax >> 5 & 1;
    /* XCR0 bits 17 and 18: the OS saves the tile configuration and data. */
    unsigned xcr0_lo = 0, xcr0_hi = 0;
    __asm__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    int amx_os = (xcr0_lo >> 17 & 3) == 3;
#ifdef FN_HAVE_VNNI_INTRIN
    f.vnni = vnni_bit;
#endif
#ifdef FN_HAVE_BF16_INTRIN
    f.bf16 = bf16_bit;
#endif
#ifdef FN_HAVE_AMX_INTRIN
    f.amx = amx_bits && amx_os;
#endif
    (void)amx_bits, (void)amx_os, (void)vnni_bit, (void)bf16_bit;
#endif
    return f;
}

static int amx_refusal_simulated = 0;
static int mma_detected = 0;
static fn_mma_path mma_best = FN_MMA_GENERIC;
static fn_amx_permission amx_permission = FN_AMX_UNSUPPORTED;
static fn_mma_path mma_current = FN_MMA_GENERIC;
static int mma_initialised = 0;

static fn_amx_permission request_amx(void) {
    if (amx_refusal_simulated) return FN_AMX_REFUSED;
#if defined(FN_ARCH_REQ_XCOMP_PERM)
    if (syscall(SYS_arch_prctl, FN_ARCH_REQ_XCOMP_PERM, FN_XFEATURE_XTILEDATA) == 0) return FN_AMX_GRANTED;
    return FN_AMX_REFUSED;
#else
    return FN_AMX_REFUSED; /* no way to ask for the tile state here */
#endif
}

fn_mma_path fn_mma_path_for(int avx512, int avx512_vnni, int avx512_bf16, int amx,
                            fn_amx_permission permission) {
    if (!avx512 || !avx512_vnni) return FN_MMA_GENERIC;
    if (!avx512_bf16) return FN_MMA_AVX512_VNNI;
    if (!amx || permission != FN_AMX_GRANTED) return FN_MMA_AVX512_BF16;
    return FN_MMA_AMX;
}

fn_mma_path fn_mma_best_path(void) {
    if (!mma_detected) {
        mma_features f = detect_mma_features();
        /* Ask only when the CPU has AMX: the request is pointless otherwise. */
        amx_permission = f.amx ? request_amx() : FN_AMX_UNSUPPORTED;
        if (!f.amx && amx_refusal_simulated) amx_permission = FN_AMX_REFUSED;
        mma_best = fn_mma_path_for(fn_cpu_best_path() == FN_CPU_AVX512, f.vnni, f.bf16, f.amx, amx_permission);
        mma_detected = 1;
    }
    return mma_best;
}

fn_amx_permission fn_amx_permission_status(void) {
    fn_mma_best_path();
    return amx_permission;
}

void fn_amx_simulate_refusal(int refuse) {
    amx_refusal_simulated = refuse != 0;
    mma_detected = 0; /* detect (and ask) again */
    if (mma_initialised && (int)mma_current > (int)fn_mma_best_path()) mma_current = fn_mma_best_path();
}

fn_status fn_mma_set_path(fn_mma_path path) {
    if ((int)path < FN_MMA_GENERIC || (int)path > FN_MMA_AMX) return FN_ERR_ARG;
    if ((int)path > (int)fn_mma_best_path()) return FN_ERR_CPU;
    mma_current = path;
    mma_initialised = 1;
    return FN_OK;
}

fn_mma_path fn_mma_get_path(void) {
    if (!mma_initialised) {
        mma_current = fn_mma_best_path();
        mma_initialised = 1;
    }
    /* The low-precision kernels are AVX-512 code: a forced lower float32 path
     * takes them down with it. */
    if (mma_current != FN_MMA_GENERIC && fn_cpu_get_path() != FN_CPU_AVX512) return FN_MMA_GENERIC;
    return mma_current;
}

const char *fn_mma_path_name(fn_mma_path path) {
    switch (path) {
    case FN_MMA_AVX512_VNNI: return "avx512_vnni";
    case FN_MMA_AVX512_BF16: return "avx512_bf16";
    case FN_MMA_AMX: return "amx";
    default: return "generic";
    }
}

int fn_openmp_enabled(void) {
#ifdef FN_HAVE_OPENMP
    return 1;
#else
    return 0;
#endif
}

int fn_max_threads(void) {
#ifdef FN_HAVE_OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
