/* transformer.c - embedding gather/scatter-add, dropout and the residual add.
 * (Layer norm lives in layernorm.c, attention in attention.c.)
 */
#include <string.h>

#include "fn_internal.h"

/* Below these many elements per thread, waking another thread costs more
 * than it saves (memory-bound loops run at a few elements per ns). */
#define MIN_COPY_PER_THREAD 32768
#define MIN_HASH_PER_THREAD 8192
/* Columns handed to one thread in the scatter-add: a whole cache line. */
#define SCATTER_COLUMN_UNIT 16

/* ---- embedding --------------------------------------------------------- */

static int64_t first_bad_id(const int64_t *ids, int64_t n, int64_t vocab) {
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab) return i;
    return -1;
}

static fn_status check_embedding_args(const int64_t *ids, int64_t n, int64_t vocab,
                                      int64_t dim, int64_t *bad_pos) {
    if (n < 0 || vocab < 0 || dim < 0) return FN_ERR_ARG;
    int64_t bad = first_bad_id(ids, n, vocab);
    if (bad_pos) *bad_pos = bad;
    return bad >= 0 ? FN_ERR_LABEL : FN_OK;
}

#define DEFINE_EMBEDDING_FORWARD(REAL, SUFFIX)                                              \
    fn_status fn_embedding_forward_##SUFFIX(const int64_t *ids, int64_t n, const REAL *table, \
                                            int64_t vocab, int64_t dim, REAL *out,          \
                                            int64_t *bad_pos, int n_threads) {              \
        fn_status st = check_embedding_args(ids, n, vocab, dim, bad_pos);                   \
        if (st != FN_OK) return st;                                                         \
        int nth = fn_threads_for(n * dim, MIN_COPY_PER_THREAD, n_threads);                  \
        FN_PARALLEL(nth) {                                                                  \
            int64_t begin, end;                                                             \
            fn_split(n, fn_thread_id(), fn_thread_count(), &begin, &end);                   \
            for (int64_t i = begin; i < end; i++)                                           \
                memcpy(out + i * dim, table + ids[i] * dim, (size_t)dim * sizeof(REAL));    \
        }                                                                                   \
        return FN_OK;                                                                       \
    }

DEFINE_EMBEDDING_FORWARD(float, f32)
DEFINE_EMBEDDING_FORWARD(double, f64)

/* Columns [c0, c1) of dtable[ids[i]] += dout[i] for every i, in order of i. */
#define DEFINE_SCATTER_COLUMNS(REAL, NAME, TARGET)                                          \
    TARGET static void NAME(const int64_t *ids, int64_t n, const REAL *restrict dout,       \
                            int64_t dim, REAL *restrict dtable, int64_t c0, int64_t c1) {   \
        for (int64_t i = 0; i < n; i++) {                                                   \
            REAL *restrict dst = dtable + ids[i] * dim;                                     \
            const REAL *restrict src = dout + i * dim;                                      \
            for (int64_t j = c0; j < c1; j++) dst[j] += src[j];                             \
        }                                                                                   \
    }

DEFINE_SCATTER_COLUMNS(float, scatter_columns_f32, )
DEFINE_SCATTER_COLUMNS(float, scatter_columns_f32_avx2, FN_TARGET_AVX2)
DEFINE_SCATTER_COLUMNS(double, scatter_columns_f64, )

static void scatter_columns_f32_dispatch(const int64_t *ids, int64_t n, const float *dout,
                                         int64_t dim, float *dtable, int64_t c0, int64_t c1) {
    if (fn_cpu_get_path() != FN_CPU_GENERIC)
        scatter_columns_f32_avx2(ids, n, dout, dim, dtable, c0, c1);
    else
        scatter_columns_f32(ids, n, dout, dim, dtable, c0, c1);
}

/* Threads split the columns (in whole cache lines), so every element of
 * dtable is summed by one thread in the order of the ids: deterministic for
 * any thread count, no atomics, no scratch. */
#define DEFINE_EMBEDDING_BACKWARD(REAL, SUFFIX, SCATTER)                                    \
    fn_status fn_embedding_backward_##SUFFIX(const int64_t *ids, int64_t n, const REAL *dout, \
                                             int64_t vocab, int64_t dim, REAL *dtable,      \
                                             int64_t *bad_pos, int n_threads) {             \
        fn_status st = check_embedding_args(ids, n, vocab, dim, bad_pos);                   \
        if (st != FN_OK) return st;                                                         \
        int64_t units = (dim + SCATTER_COLUMN_UNIT - 1) / SCATTER_COLUMN_UNIT;              \
        int nth = fn_threads_for(n * dim, MIN_COPY_PER_THREAD, n_threads);                  \
        if (nth > units) nth = (int)units;                                                  \
        if (nth < 1) nth = 1;                                                               \
        FN_PARALLEL(nth) {                                                                  \
            int64_t u0, u1;                                                                 \
            fn_split(units, fn_thread_id(), fn_thread_count(), &u0, &u1);                   \
            int64_t c0 = u0 * SCATTER_COLUMN_UNIT, c1 = u1 * SCATTER_COLUMN_UNIT;           \
            if (c1 > dim) c1 = dim;                                                         \
            if (c0 < c1) SCATTER(ids, n, dout, dim, dtable, c0, c1);                        \
        }                                                                                   \
        return FN_OK;                                                                       \
    }

DEFINE_EMBEDDING_BACKWARD(float, f32, scatter_columns_f32_dispatch)
DEFINE_EMBEDDING_BACKWARD(double, f64, scatter_columns_f64)

/* ---- dropout ----------------------------------------------------------- */

static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Keep-mask of elements [begin, end): one 64-bit hash covers a pair. */
static void dropout_mask_range(uint8_t *mask, int64_t begin, int64_t end, uint64_t key,
                               uint32_t threshold) {
    for (int64_t i = begin; i < end; i++) {
        uint64_t h = mix64(key + ((uint64_t)(i >> 1) + 1) * 0x9E3779B97F4A7C15ULL);
        uint32_t bits = (i & 1) ? (uint32_t)(h >> 40) : (uint32_t)((h >> 8) & 0xFFFFFF);
        mask[i] = bits >= threshold;
    }
}

static int dropout_p_valid(double p) { return p >= 0.0 && p < 1.0; }

#define DEFINE_DROPOUT(REAL, SUFFIX)                                                        \
    fn_status fn_dropout_forward_##SUFFIX(const REAL *x, REAL *y, uint8_t *mask, int64_t n, \
                                          double p, uint64_t seed, int n_threads) {         \
        if (n < 0 || !dropout_p_valid(p)) return FN_ERR_ARG;                                \
        uint64_t key = mix64(seed);                                                         \
        uint32_t threshold = (uint32_t)(p * 16777216.0);                                    \
        REAL scale = (REAL)(1.0 / (1.0 - p));                                               \
        int64_t pairs = (n + 1) / 2;                                                        \
        int nth = fn_threads_for(n, MIN_HASH_PER_THREAD, n_threads);                        \
        FN_PARALLEL(nth) {                                                                  \
            int64_t c0, c1;                                                                 \
            fn_split(pairs, fn_thread_id(), fn_thread_count(), &c0, &c1);                   \
            int64_t begin = 2 * c0, end = 2 * c1 < n ? 2 * c1 : n;                          \
            dropout_mask_range(mask, begin, end, key, threshold);                           \
            for (int64_t i = begin; i < end; i++) y[i] = mask[i] ? x[i] * scale : (REAL)0;  \
        }                                                                                   \
        return FN_OK;                                                                       \
    }                                                                                       \
    fn_status fn_dropout_backward_##SUFFIX(const REAL *dy, const uint8_t *mask, REAL *dx,   \
                                           int64_t n, double p, int n_threads) {            \
        if (n < 0 || !dropout_p_valid(p)) return FN_ERR_ARG;                                \
        REAL scale = (REAL)(1.0 / (1.0 - p));                                               \
        int nth = fn_threads_for(n, MIN_COPY_PER_THREAD, n_threads);                        \
        FN_PARALLEL(nth) {                                                                  \
            int64_t begin, end;                                                             \
            fn_split(n, fn_thread_id(), fn_thread_count(), &begin, &end);                   \
            for (int64_t i = begin; i < end; i++) dx[i] = mask[i] ? dy[i] * scale : (REAL)0; \
        }                                                                                   \
        return FN_OK;                                                                       \
    }

DEFINE_DROPOUT(float, f32)
DEFINE_DROPOUT(double, f64)

/* ---- residual add ------------------------------------------------------ */

/* The same loop compiled for three targets; -O3 vectorises each for its ISA.
 * out may alias a or b exactly (elementwise), so no restrict here. */
#define DEFINE_ADD_RANGE(REAL, NAME, TARGET)                                                \
    TARGET static void NAME(const REAL *a, const REAL *b, REAL *out, int64_t n) {           \
        for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i];                               \
    }

DEFINE_ADD_RANGE(float, add_range_f32, )
DEFINE_ADD_RANGE(float, add_range_f32_avx2, FN_TARGET_AVX2)
DEFINE_ADD_RANGE(float, add_range_f32_avx512, FN_TARGET_AVX512)
DEFINE_ADD_RANGE(double, add_range_f64, )

static void add_range_f32_dispatch(const float *a, const float *b, float *out, int64_t n) {
    switch (fn_cpu_get_path()) {
    case FN_CPU_AVX512: add_range_f32_avx512(a, b, out, n); break;
    case FN_CPU_AVX2: add_range_f32_avx2(a, b, out, n); break;
    default: add_range_f32(a, b, out, n);
    }
}

#define DEFINE_ADD(REAL, SUFFIX, RANGE)                                                     \
    fn_status fn_add_##SUFFIX(const REAL *a, const REAL *b, REAL *out, int64_t n,           \
                              int n_threads) {                                              \
        if (n < 0) return FN_ERR_ARG;                                                       \
        int nth = fn_threads_for(n, MIN_COPY_PER_THREAD, n_threads);                        \
        if (nth == 1) {                                                                     \
            RANGE(a, b, out, n);                                                            \
            return FN_OK;                                                                   \
        }                                                                                   \
        FN_PARALLEL(nth) {                                                                  \
            int64_t begin, end;                                                             \
            fn_split(n, fn_thread_id(), fn_thread_count(), &begin, &end);                   \
            RANGE(a + begin, b + begin, out + begin, end - begin);                          \
        }                                                                                   \
        return FN_OK;                                                                       \
    }

DEFINE_ADD(float, f32, add_range_f32_dispatch)
DEFINE_ADD(double, f64, add_range_f64)
