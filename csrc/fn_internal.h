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

/* Inline and target-attribute macros, and the vector vocabulary: simd.h. */
#include "simd.h"

/* Contiguous share [*begin, *end) of n items for thread tid of nth. */
static inline void fn_split(int64_t n, int tid, int nth, int64_t *begin, int64_t *end) {
    int64_t base = n / nth, extra = n % nth;
    *begin = tid * base + (tid < extra ? tid : extra);
    *end = *begin + base + (tid < extra ? 1 : 0);
}

/* Index of the first id outside [0, vocab), or -1 when every id is inside. */
static inline int64_t fn_first_bad_id(const int64_t *ids, int64_t n, int64_t vocab) {
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab) return i;
    return -1;
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
