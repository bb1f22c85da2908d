/* elementwise_internal.h - what activations.c, losses.c, optim.c, dense.c
 * and the GEMM epilogues share: the activation math (activation_math.h,
 * instantiated here for float, double, AVX2 and AVX-512 on the vector
 * vocabulary and exp of simd.h), work splitting and the row primitives of
 * softmax and cross-entropy. A fused dense layer and a separate activation
 * run the same functions, so they give the same bits on the same CPU path.
 */
#ifndef FN_ELEMENTWISE_INTERNAL_H
#define FN_ELEMENTWISE_INTERNAL_H

#include <math.h>
#include <string.h>
#include "fn_internal.h"

#define FN_GELU_C 0.7978845608028654 /* sqrt(2 / pi) */
#define FN_GELU_K 0.044715

/* ---- work splitting ----------------------------------------------------- */

/* A body written once in plain C and inlined into per-target wrappers, so GCC
 * vectorises it at SSE2, AVX2 and AVX-512 width from the same source. */
#define FN_INLINE_BODY static FN_ALWAYS_INLINE

/* Element range of thread tid, in whole blocks of 16 so vector loops rarely
 * end in a partial vector. */
static inline void fn_split_blocks(int64_t n, int tid, int nth, int64_t *begin, int64_t *end) {
    int64_t b, e;
    fn_split((n + 15) / 16, tid, nth, &b, &e);
    *begin = b * 16 < n ? b * 16 : n;
    *end = e * 16 < n ? e * 16 : n;
}

/* Runs CALL over [0, n) on up to n_threads threads, each getting per_thread
 * elements at least; CALL sees lo, hi: this thread's block-aligned range. */
#define FN_RUN_SPLIT(n, per_thread, n_threads, CALL)                                       \
    do {                                                                                \
        int nth_ = fn_threads_for((n), (per_thread), (n_threads));                      \
        if (nth_ <= 1) {                                                                \
            int64_t lo = 0, hi = (n);                                                   \
            CALL;                                                                       \
        } else {                                                                        \
            FN_PARALLEL(nth_) {                                                         \
                int64_t lo, hi;                                                         \
                fn_split_blocks((n), fn_thread_id(), fn_thread_count(), &lo, &hi);      \
                if (hi > lo) CALL;                                                      \
            }                                                                           \
        }                                                                               \
    } while (0)

/* Reductions cut n into at most FN_MAX_CHUNKS chunks whose size depends only
 * on n, sum each chunk in double, then add the chunk sums in order: the
 * result is the same for every thread count. */
#define FN_MAX_CHUNKS 256
#define FN_MIN_CHUNK 8192
static inline int64_t fn_chunk_size(int64_t n) {
    int64_t c = (n + FN_MAX_CHUNKS - 1) / FN_MAX_CHUNKS;
    if (c < FN_MIN_CHUNK) c = FN_MIN_CHUNK;
    return (c + 15) & ~(int64_t)15;
}

/* Runs CHUNK_SUM (an expression of begin, end giving a double) over the fixed
 * chunks of [0, n) on up to n_threads threads, per_thread elements each at
 * least, and adds the chunk sums in chunk order into TOTAL. */
#define FN_CHUNKED_SUM(n, per_thread, n_threads, TOTAL, CHUNK_SUM)                      \
    do {                                                                                \
        double partial_[FN_MAX_CHUNKS];                                                 \
        int64_t size_ = fn_chunk_size(n), chunks_ = ((n) + size_ - 1) / size_;          \
        int nth_ = fn_threads_for((n), (per_thread), (n_threads));                      \
        if (nth_ > chunks_) nth_ = (int)chunks_;                                        \
        if (nth_ <= 1) {                                                                \
            for (int64_t c = 0; c < chunks_; c++) {                                     \
                int64_t begin = c * size_, end = begin + size_ < (n) ? begin + size_ : (n); \
                partial_[c] = CHUNK_SUM;                                                \
            }                                                                           \
        } else {                                                                        \
            FN_PARALLEL(nth_) {                                                         \
                int64_t lo_, hi_;                                                       \
                fn_split(chunks_, fn_thread_id(), fn_thread_count(), &lo_, &hi_);       \
                for (int64_t c = lo_; c < hi_; c++) {                                   \
                    int64_t begin = c * size_, end = begin + size_ < (n) ? begin + size_ : (n); \
                    partial_[c] = CHUNK_SUM;                                            \
                }                                                                       \
            }                                                                           \
        }                                                                               \
        TOTAL = 0.0;                                                                    \
        for (int64_t c = 0; c < chunks_; c++) TOTAL += partial_[c];                     \
    } while (0)

/* ---- activation kernels (activations.c) --------------------------------
 * One set per activation and CPU path, generated from FN_ACTIVATIONS:
 * forward maps x to y (y may be x); backward writes dx = dy * act'(a) from
 * a = the tensor fn_activation_backward_reads named (x or y; dy itself for
 * 'd'), backward_from_x does it from x for an activation whose derivative is
 * written in terms of y (GRAD Y). dx may be dy. NULL where there is none. */
typedef void (*fn_act_map_f32)(const float *x, float *y, int64_t n, float p);
typedef void (*fn_act_zip_f32)(const float *a, const float *dy, float *dx, int64_t n, float p);
typedef void (*fn_act_map_f64)(const double *x, double *y, int64_t n, double p);
typedef void (*fn_act_zip_f64)(const double *a, const double *dy, double *dx, int64_t n, double p);
typedef struct {
    fn_act_map_f32 forward;
    fn_act_zip_f32 backward, backward_from_x;
} fn_act_kernels_f32;
typedef struct {
    fn_act_map_f64 forward;
    fn_act_zip_f64 backward, backward_from_x;
} fn_act_kernels_f64;

/* The kernels of act on the current CPU path (float32) or the portable one
 * (float64); NULL for an act outside the table. */
const fn_act_kernels_f32 *fn_act_kernels_f32_current(fn_activation act);
const fn_act_kernels_f64 *fn_act_kernels_f64_get(fn_activation act);
/* The backward kernel that reads what `reads` (from fn_activation_backward_reads) names. */
static inline fn_act_zip_f32 fn_act_backward_f32(const fn_act_kernels_f32 *k, int reads) {
    return reads == 'x' && k->backward_from_x ? k->backward_from_x : k->backward;
}
static inline fn_act_zip_f64 fn_act_backward_f64(const fn_act_kernels_f64 *k, int reads) {
    return reads == 'x' && k->backward_from_x ? k->backward_from_x : k->backward;
}

/* ---- row primitives for softmax and cross-entropy (activations.c) ------- */

/* One set per CPU path, chosen by fn_row_ops_f32(). */
typedef struct {
    float (*max)(const float *x, int64_t n);
    /* sum of exp(x - shift); also stores the exps in out unless out is NULL */
    float (*exp_sum)(const float *x, float shift, float *out, int64_t n);
    float (*sum)(const float *x, int64_t n);
    void (*affine)(const float *x, float a, float b, float *y, int64_t n); /* y = a x + b */
    float (*dot)(const float *a, const float *b, int64_t n);
    void (*softmax_grad)(const float *y, const float *dy, float dot, float *dx, int64_t n); /* y (dy - dot) */
} fn_row_ops_f32_t;

const fn_row_ops_f32_t *fn_row_ops_f32(void);

/* tanh(x) = x + x^3 (T0 + T1 x^2 + T2 x^4 + T3 x^6) on |x| < 0.5 (fit error
 * 2e-8): the vector tanh of activation_math.h. */
#define FN_TANH_T0 -0.333331376f
#define FN_TANH_T1 0.133257121f
#define FN_TANH_T2 -0.053034652f
#define FN_TANH_T3 0.0172198601f
#define FN_TANH_SMALL 0.5f

/* fn_act_<name>_<f32|f64|avx2|avx512> and helpers: see activation_math.h */
#define ACT_TEMPLATE "activation_math.h"
#include "activation_instances.h"
#undef ACT_TEMPLATE
#endif /* FN_ELEMENTWISE_INTERNAL_H */
