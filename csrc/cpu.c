/* cpu.c - which CPU path runs, chosen once by CPUID and changeable for tests. */
#include "fn_internal.h"

static fn_cpu_path current_path = FN_CPU_GENERIC;
static int path_initialised = 0;

fn_cpu_path fn_cpu_best_path(void) {
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
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
    path_initialised = 1;
    return FN_OK;
}

fn_cpu_path fn_cpu_get_path(void) {
    if (!path_initialised) {
        current_path = fn_cpu_best_path();
        path_initialised = 1;
    }
    return current_path;
}

const char *fn_cpu_path_name(fn_cpu_path path) {
    switch (path) {
    case FN_CPU_AVX2: return "avx2";
    case FN_CPU_AVX512: return "avx512";
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
