/* fn_internal.h - helpers shared by the C files; not part of the public API.
 *
 * OpenMP is optional: without it the macros below turn into plain serial code,
 * and every kernel still runs correctly on one thread.
 * Kernels split work by thread index themselves (fn_split), so a given
 * n_threads always hands the same rows to the same thread, and reductions
 * are combined in a fixed order afterwards: no `reduction` clauses.
 */
#ifndef FN_INTERNAL_H
#define FN_INTERNAL_H

#include "fastnet.h"

#ifdef FN_HAVE_OPENMP
#include <omp.h>
#define FN_PRAGMA(x) _Pragma(#x)
/* Opens a parallel region of n threads; use with a block after it. */
#define FN_PARALLEL(n) FN_PRAGMA(omp parallel num_threads(n))
static inline int fn_thread_id(void) { return omp_get_thread_num(); }
static inline int fn_thread_count(void) { return omp_get_num_threads(); }
#else
#define FN_PARALLEL(n)
static inline int fn_thread_id(void) { return 0; }
static inline int fn_thread_count(void) { return 1; }
#endif

/* Target attributes let one file hold AVX2/AVX-512 code without compiling the
 * whole library for those CPUs; the code runs only when CPUID says it may. */
#if defined(__GNUC__) || defined(__clang__)
#define FN_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define FN_TARGET_AVX512 __attribute__((target("avx512f,avx2,fma")))
#else
#define FN_TARGET_AVX2
#define FN_TARGET_AVX512
#endif
/* x86 intrinsics are used only under: #if defined(__x86_64__) || defined(_M_X64) */

/* Low-precision instruction sets the compiler can emit through intrinsics
 * (AVX512-VNNI: GCC 8; AVX512-BF16: GCC 10; AMX: GCC 11, clang 12). A
 * compiler without them builds everything else, and fn_mma_best_path then
 * never offers the missing paths. */
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#if defined(__clang__) ? (__clang_major__ >= 9) : (__GNUC__ >= 8)
#define FN_HAVE_VNNI_INTRIN 1
#define FN_TARGET_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")))
#endif
#if defined(__clang__) ? (__clang_major__ >= 9) : (__GNUC__ >= 10)
#define FN_HAVE_BF16_INTRIN 1
#define FN_TARGET_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,avx512vnni,avx2,fma")))
#endif
#if defined(__clang__) ? (__clang_major__ >= 12) : (__GNUC__ >= 11)
#define FN_HAVE_AMX_INTRIN 1
#define FN_TARGET_AMX \
    __attribute__((target("amx-tile,amx-bf16,amx-int8,avx512f,avx512bw,avx512vl,avx512bf16,avx512vnni,avx2,fma")))
#endif
#endif

/* Contiguous share [*begin, *end) of n items for thread tid of nth. */
static inline void fn_split(int64_t n, int tid, int nth, int64_t *begin, int64_t *end) {
    int64_t base = n / nth, extra = n % nth;
    *begin = tid * base + (tid < extra ? tid : extra);
    *end = *begin + base + (tid < extra ? 1 : 0);
}

/* Threads worth using for `work` units when each thread needs at least
 * `min_per_thread` units to pay for waking it (about 5-20 us of work). */
static inline int fn_threads_for(int64_t work, int64_t min_per_thread, int n_threads) {
    if (n_threads < 1) n_threads = 1;
    int64_t useful = work / (min_per_thread > 0 ? min_per_thread : 1);
    if (useful < 1) useful = 1;
    return useful < n_threads ? (int)useful : n_threads;
}

#endif /* FN_INTERNAL_H */
