/* transformer.c - embedding gather/scatter-add, dropout and the residual add.
 * (Layer norm lives in layernorm.c, attention in attention.c.)
 */
#include <string.h>

#include "kernels.h"

/* Elements per thread below which another thread does not pay: these loops
 * run at about one element per ns, and on a busy machine a woken thread can
 * wait a whole scheduler slice, so only ~100 us of work is worth splitting. */
#define MIN_COPY_PER_THREAD (1 << 19)
#define MIN_HASH_PER_THREAD (1 << 18)
/* Columns handed to one thread in the scatter-add: a whole cache line. */
#define SCATTER_COLUMN_UNIT 16

/* The float32 loops of one CPU path (see kernels.h); the sets are at the end. */
struct fn_transformer_kernels {
    void (*scatter_columns)(const int64_t *ids, int64_t n, const float *dout, int64_t dim,
                            float *dtable, int64_t c0, int64_t c1);
    void (*dropout_run)(const float *x, float *y, uint8_t *mask, int64_t count, uint32_t first,
                        uint32_t key, uint32_t threshold, float scale);
    void (*dropout_masked)(const float *dy, const uint8_t *mask, float *dx, int64_t n, float scale);
    void (*add_range)(const float *a, const float *b, float *out, int64_t n);
};

/* ---- embedding --------------------------------------------------------- */

static fn_status check_embedding_args(const int64_t *ids, int64_t n, int64_t vocab,
                                      int64_t dim, int64_t *bad_pos) {
    if (n < 0 || vocab < 0 || dim < 0) return FN_ERR_ARG;
    int64_t bad = fn_first_bad_id(ids, n, vocab);
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
        (void)nth; /* FN_PARALLEL drops it without OpenMP */                                \
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
#ifdef FN_SIMD_X86
DEFINE_SCATTER_COLUMNS(float, scatter_columns_f32_avx2, FN_TARGET_AVX2)
#endif
DEFINE_SCATTER_COLUMNS(double, scatter_columns_f64, )

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
        (void)nth; /* FN_PARALLEL drops it without OpenMP */                                \
        FN_PARALLEL(nth) {                                                                  \
            int64_t u0, u1;                                                                 \
            fn_split(units, fn_thread_id(), fn_thread_count(), &u0, &u1);                   \
            int64_t c0 = u0 * SCATTER_COLUMN_UNIT, c1 = u1 * SCATTER_COLUMN_UNIT;           \
            if (c1 > dim) c1 = dim;                                                         \
            if (c0 < c1) SCATTER(ids, n, dout, dim, dtable, c0, c1);                        \
        }                                                                                   \
        return FN_OK;                                                                       \
    }

DEFINE_EMBEDDING_BACKWARD(float, f32, fn_kernels()->transformer->scatter_columns)
DEFINE_EMBEDDING_BACKWARD(double, f64, scatter_columns_f64)

/* ---- dropout ----------------------------------------------------------- */

static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* A 32-bit mixer (xorshift-multiply rounds): 32-bit lanes let the compiler
 * vectorise the whole keep/scale loop, which a 64-bit hash would not. */
static inline uint32_t mix32(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7FEB352Du;
    x ^= x >> 15;
    x *= 0x846CA68Bu;
    return x ^ (x >> 16);
}

/* The key of the 2^32-element block that element i belongs to. */
static uint32_t dropout_block_key(uint64_t seed, int64_t i) {
    return (uint32_t)mix64(mix64(seed) + ((uint64_t)i >> 32) * 0x9E3779B97F4A7C15ULL);
}

/* Elements [0, count) of a run starting at element `first` within one block.
 * A dropped element is cleared through an all-zero bit mask rather than a
 * branch or select: that form is what GCC vectorises. */
#define DEFINE_DROPOUT_RUN(REAL, UINT, NAME, TARGET)                                        \
    TARGET static void NAME(const REAL *restrict x, REAL *restrict y, uint8_t *restrict mask, \
                            int64_t count, uint32_t first, uint32_t key, uint32_t threshold, \
                            REAL scale) {                                                   \
        for (int64_t t = 0; t < count; t++) {                                               \
            uint32_t h = mix32((first + (uint32_t)t) * 0x9E3779B9u + key);                  \
            uint32_t keep = (h >> 8) >= threshold;                                          \
            union { REAL f; UINT u; } v = { .f = x[t] * scale };                            \
            v.u &= -(UINT)keep;                                                             \
            mask[t] = (uint8_t)keep;                                                        \
            y[t] = v.f;                                                                     \
        }                                                                                   \
    }

DEFINE_DROPOUT_RUN(float, uint32_t, dropout_run_f32, )
#ifdef FN_SIMD_X86
DEFINE_DROPOUT_RUN(float, uint32_t, dropout_run_f32_avx2, FN_TARGET_AVX2)
DEFINE_DROPOUT_RUN(float, uint32_t, dropout_run_f32_avx512, FN_TARGET_AVX512)
#endif
DEFINE_DROPOUT_RUN(double, uint64_t, dropout_run_f64, )

#define DEFINE_DROPOUT_MASKED(REAL, UINT, NAME, TARGET)                                     \
    TARGET static void NAME(const REAL *restrict dy, const uint8_t *restrict mask,          \
                            REAL *dx, int64_t n, REAL scale) {                              \
        for (int64_t i = 0; i < n; i++) {                                                   \
            union { REAL f; UINT u; } v = { .f = dy[i] * scale };                           \
            v.u &= -(UINT)(mask[i] != 0);                                                   \
            dx[i] = v.f;                                                                    \
        }                                                                                   \
    }

DEFINE_DROPOUT_MASKED(float, uint32_t, dropout_masked_f32, )
#ifdef FN_SIMD_X86
DEFINE_DROPOUT_MASKED(float, uint32_t, dropout_masked_f32_avx2, FN_TARGET_AVX2)
#endif
DEFINE_DROPOUT_MASKED(double, uint64_t, dropout_masked_f64, )

static int dropout_p_valid(double p) { return p >= 0.0 && p < 1.0; }

/* Each thread walks its range in runs that never cross a 2^32 block. */
#define DEFINE_DROPOUT(REAL, SUFFIX, RUN, MASKED)                                           \
    fn_status fn_dropout_forward_##SUFFIX(const REAL *x, REAL *y, uint8_t *mask, int64_t n, \
                                          double p, uint64_t seed, int n_threads) {         \
        if (n < 0 || !dropout_p_valid(p)) return FN_ERR_ARG;                                \
        uint32_t threshold = (uint32_t)(p * 16777216.0);                                    \
        REAL scale = (REAL)(1.0 / (1.0 - p));                                               \
        int nth = fn_threads_for(n, MIN_HASH_PER_THREAD, n_threads);                        \
        (void)nth; /* FN_PARALLEL drops it without OpenMP */                                \
        FN_PARALLEL(nth) {                                                                  \
            int64_t begin, end;                                                             \
            fn_split(n, fn_thread_id(), fn_thread_count(), &begin, &end);                   \
            while (begin < end) {                                                           \
                int64_t block_end = ((begin >> 32) + 1) << 32;                              \
                int64_t stop = end < block_end ? end : block_end;                           \
                RUN(x + begin, y + begin, mask + begin, stop - begin, (uint32_t)begin,      \
                    dropout_block_key(seed, begin), threshold, scale);                      \
                begin = stop;                                                               \
            }                                                                               \
        }                                                                                   \
        return FN_OK;                                                                       \
    }                                                                                       \
    fn_status fn_dropout_backward_##SUFFIX(const REAL *dy, const uint8_t *mask, REAL *dx,   \
                                           int64_t n, double p, int n_threads) {            \
        if (n < 0 || !dropout_p_valid(p)) return FN_ERR_ARG;                                \
        REAL scale = (REAL)(1.0 / (1.0 - p));                                               \
        int nth = fn_threads_for(n, MIN_COPY_PER_THREAD, n_threads);                        \
        (void)nth; /* FN_PARALLEL drops it without OpenMP */                                \
        FN_PARALLEL(nth) {                                                                  \
            int64_t begin, end;                                                             \
            fn_split(n, fn_thread_id(), fn_thread_count(), &begin, &end);                   \
            MASKED(dy + begin, mask + begin, dx + begin, end - begin, scale);               \
        }                                                                                   \
        return FN_OK;                                                                       \
    }

DEFINE_DROPOUT(float, f32, fn_kernels()->transformer->dropout_run, fn_kernels()->transformer->dropout_masked)
DEFINE_DROPOUT(double, f64, dropout_run_f64, dropout_masked_f64)

/* ---- residual add ------------------------------------------------------ */

/* The same loop compiled for three targets; -O3 vectorises each for its ISA.
 * out may alias a or b exactly (elementwise), so no restrict here. */
#define DEFINE_ADD_RANGE(REAL, NAME, TARGET)                                                \
    TARGET static void NAME(const REAL *a, const REAL *b, REAL *out, int64_t n) {           \
        for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i];                               \
    }

DEFINE_ADD_RANGE(float, add_range_f32, )
#ifdef FN_SIMD_X86
DEFINE_ADD_RANGE(float, add_range_f32_avx2, FN_TARGET_AVX2)
DEFINE_ADD_RANGE(float, add_range_f32_avx512, FN_TARGET_AVX512)
#endif
DEFINE_ADD_RANGE(double, add_range_f64, )

#define DEFINE_ADD(REAL, SUFFIX, RANGE)                                                     \
    fn_status fn_add_##SUFFIX(const REAL *a, const REAL *b, REAL *out, int64_t n,           \
                              int n_threads) {                                              \
        if (n < 0) return FN_ERR_ARG;                                                       \
        int nth = fn_threads_for(n, MIN_COPY_PER_THREAD, n_threads);                        \
        if (nth == 1) {                                                                     \
            RANGE(a, b, out, n);                                                            \
            return FN_OK;                                                                   \
        }                                                                                   \
        (void)nth; /* FN_PARALLEL drops it without OpenMP */                                \
        FN_PARALLEL(nth) {                                                                  \
            int64_t begin, end;                                                             \
            fn_split(n, fn_thread_id(), fn_thread_count(), &begin, &end);                   \
            RANGE(a + begin, b + begin, out + begin, end - begin);                          \
        }                                                                                   \
        return FN_OK;                                                                       \
    }

DEFINE_ADD(float, f32, fn_kernels()->transformer->add_range)
DEFINE_ADD(double, f64, add_range_f64)

/* ---- kernel sets --------------------------------------------------------- */

/* AVX-512 runs the AVX2 builds of the scatter-add and of the masked copy
 * (there is no AVX-512 build of those two). */
const fn_transformer_kernels fn_transformer_generic = {
    scatter_columns_f32, dropout_run_f32, dropout_masked_f32, add_range_f32,
};
#ifdef FN_SIMD_X86
const fn_transformer_kernels fn_transformer_avx2 = {
    scatter_columns_f32_avx2, dropout_run_f32_avx2, dropout_masked_f32_avx2, add_range_f32_avx2,
};
const fn_transformer_kernels fn_transformer_avx512 = {
    scatter_columns_f32_avx2, dropout_run_f32_avx512, dropout_masked_f32_avx2, add_range_f32_avx512,
};
#endif
