/* elementwise_internal.h - what activations.c, losses.c, optim.c, dense.c
 * and the GEMM epilogues share: the activation math (activation_math.h,
 * instantiated here for float, double, AVX2 and AVX-512), the vector exp,
 * work splitting and the row primitives of softmax and cross-entropy.
 * A fused dense layer and a separate activation run the same functions, so
 * they give the same bits on the same CPU path.
 *
 * The vector exp is our own: Cody-Waite range reduction x = n ln2 + r,
 * |r| <= ln2/2, then a degree-6 polynomial fitted to exp(r) (fit error
 * 4e-9); measured max relative error against double precision is below
 * 3e-7 (about 2 ulp). It is only ever called with x <= 0, which keeps 2^n a
 * normal number without overflow checks; x below -87.3 gives 0.
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
#define FN_INLINE_BODY static inline __attribute__((always_inline))

/* Element range of thread tid, in whole blocks of 16 so vector loops rarely
 * end in a partial vector. */
static inline void fn_split_blocks(int64_t n, int tid, int nth, int64_t *begin, int64_t *end) {
    int64_t b, e;
    fn_split((n + 15) / 16, tid, nth, &b, &e);
    *begin = b * 16 < n ? b * 16 : n;
    *end = e * 16 < n ? e * 16 : n;
}

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

/* ---- AVX2 / AVX-512 float32 vectors ------------------------------------- */
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

/* Polynomial coefficients for exp(r) = 1 + r + r^2 (E0 + E1 r + ... + E4 r^4). */
#define FN_EXP_E0 0.499999881f
#define FN_EXP_E1 0.166665182f
#define FN_EXP_E2 0.0416695327f
#define FN_EXP_E3 0.00836891867f
#define FN_EXP_E4 0.00137514086f
/* ln 2 split so n * LN2_HI is exact for |n| < 2^15. */
#define FN_LN2_HI 0.693359375f
#define FN_LN2_LO -2.12194440e-4f
#define FN_LOG2E 1.44269504f
#define FN_EXP_MIN -87.3365479f /* exp of this is FLT_MIN */
/* tanh(x) = x + x^3 (T0 + T1 x^2 + T2 x^4 + T3 x^6) on |x| < 0.5 (fit error 2e-8). */
#define FN_TANH_T0 -0.333331376f
#define FN_TANH_T1 0.133257121f
#define FN_TANH_T2 -0.053034652f
#define FN_TANH_T3 0.0172198601f
#define FN_TANH_SMALL 0.5f

FN_TARGET_AVX2 static inline __m256 fn_exp_neg_avx2(__m256 x) {
    __m256 underflow = _mm256_cmp_ps(x, _mm256_set1_ps(FN_EXP_MIN), _CMP_LT_OQ);
    x = _mm256_max_ps(_mm256_set1_ps(FN_EXP_MIN), x); /* NaN passes through */
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(FN_LOG2E)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(FN_LN2_HI), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(FN_LN2_LO), r);
    __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(FN_EXP_E4), r, _mm256_set1_ps(FN_EXP_E3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(FN_EXP_E2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(FN_EXP_E1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(FN_EXP_E0));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    __m256 y = _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
    return _mm256_andnot_ps(underflow, y);
}

FN_TARGET_AVX512 static inline __m512 fn_exp_neg_avx512(__m512 x) {
    __mmask16 keep = _mm512_cmp_ps_mask(x, _mm512_set1_ps(FN_EXP_MIN), _CMP_NLT_UQ);
    x = _mm512_max_ps(_mm512_set1_ps(FN_EXP_MIN), x);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(FN_LOG2E)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(FN_LN2_HI), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(FN_LN2_LO), r);
    __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(FN_EXP_E4), r, _mm512_set1_ps(FN_EXP_E3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(FN_EXP_E2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(FN_EXP_E1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(FN_EXP_E0));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_maskz_scalef_ps(keep, p, n);
}

/* ---- the vector operations of activation_math.h, per instruction set ---
 * fn_v_<op>_<isa>: the same operation on 8 (AVX2) or 16 (AVX-512) floats.
 * Masks come from comparisons (gt, lt: false for NaN) and drive select
 * (m ? t : f) and keep (m ? v : 0); tails are the first rem lanes. */
typedef __m256 fn_v_vec_avx2;
typedef __m256 fn_v_mask_avx2;
typedef __m256i fn_v_tailmask_avx2;
#define FN_V_LANES_avx2 8
#define FN_TARGET_avx2 FN_TARGET_AVX2
FN_TARGET_AVX2 static inline __m256 fn_v_zero_avx2(void) { return _mm256_setzero_ps(); }
FN_TARGET_AVX2 static inline __m256 fn_v_set1_avx2(float v) { return _mm256_set1_ps(v); }
FN_TARGET_AVX2 static inline __m256 fn_v_add_avx2(__m256 a, __m256 b) { return _mm256_add_ps(a, b); }
FN_TARGET_AVX2 static inline __m256 fn_v_sub_avx2(__m256 a, __m256 b) { return _mm256_sub_ps(a, b); }
FN_TARGET_AVX2 static inline __m256 fn_v_mul_avx2(__m256 a, __m256 b) { return _mm256_mul_ps(a, b); }
FN_TARGET_AVX2 static inline __m256 fn_v_div_avx2(__m256 a, __m256 b) { return _mm256_div_ps(a, b); }
FN_TARGET_AVX2 static inline __m256 fn_v_fmadd_avx2(__m256 a, __m256 b, __m256 c) { return _mm256_fmadd_ps(a, b, c); }
FN_TARGET_AVX2 static inline __m256 fn_v_max_avx2(__m256 a, __m256 b) { return _mm256_max_ps(a, b); }
FN_TARGET_AVX2 static inline __m256 fn_v_gt_avx2(__m256 a, __m256 b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
FN_TARGET_AVX2 static inline __m256 fn_v_lt_avx2(__m256 a, __m256 b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
FN_TARGET_AVX2 static inline __m256 fn_v_select_avx2(__m256 m, __m256 t, __m256 f) { return _mm256_blendv_ps(f, t, m); }
FN_TARGET_AVX2 static inline __m256 fn_v_keep_avx2(__m256 m, __m256 v) { return _mm256_and_ps(m, v); }
FN_TARGET_AVX2 static inline __m256 fn_v_abs_avx2(__m256 x) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x); }
FN_TARGET_AVX2 static inline __m256 fn_v_neg_abs_avx2(__m256 x) { return _mm256_or_ps(x, _mm256_set1_ps(-0.0f)); }
/* t (non-negative) with the sign of x */
FN_TARGET_AVX2 static inline __m256 fn_v_with_sign_of_avx2(__m256 t, __m256 x) {
    return _mm256_or_ps(t, _mm256_and_ps(x, _mm256_set1_ps(-0.0f)));
}
FN_TARGET_AVX2 static inline __m256 fn_v_exp_neg_avx2(__m256 x) { return fn_exp_neg_avx2(x); }
FN_TARGET_AVX2 static inline __m256 fn_v_load_avx2(const float *p) { return _mm256_loadu_ps(p); }
FN_TARGET_AVX2 static inline void fn_v_store_avx2(float *p, __m256 v) { _mm256_storeu_ps(p, v); }
FN_TARGET_AVX2 static inline __m256i fn_v_tail_avx2(int64_t rem) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)rem), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
FN_TARGET_AVX2 static inline __m256 fn_v_load_tail_avx2(const float *p, __m256i t) { return _mm256_maskload_ps(p, t); }
FN_TARGET_AVX2 static inline void fn_v_store_tail_avx2(float *p, __m256i t, __m256 v) { _mm256_maskstore_ps(p, t, v); }

typedef __m512 fn_v_vec_avx512;
typedef __mmask16 fn_v_mask_avx512;
typedef __mmask16 fn_v_tailmask_avx512;
#define FN_V_LANES_avx512 16
#define FN_TARGET_avx512 FN_TARGET_AVX512
FN_TARGET_AVX512 static inline __m512 fn_v_zero_avx512(void) { return _mm512_setzero_ps(); }
FN_TARGET_AVX512 static inline __m512 fn_v_set1_avx512(float v) { return _mm512_set1_ps(v); }
FN_TARGET_AVX512 static inline __m512 fn_v_add_avx512(__m512 a, __m512 b) { return _mm512_add_ps(a, b); }
FN_TARGET_AVX512 static inline __m512 fn_v_sub_avx512(__m512 a, __m512 b) { return _mm512_sub_ps(a, b); }
FN_TARGET_AVX512 static inline __m512 fn_v_mul_avx512(__m512 a, __m512 b) { return _mm512_mul_ps(a, b); }
FN_TARGET_AVX512 static inline __m512 fn_v_div_avx512(__m512 a, __m512 b) { return _mm512_div_ps(a, b); }
FN_TARGET_AVX512 static inline __m512 fn_v_fmadd_avx512(__m512 a, __m512 b, __m512 c) { return _mm512_fmadd_ps(a, b, c); }
FN_TARGET_AVX512 static inline __m512 fn_v_max_avx512(__m512 a, __m512 b) { return _mm512_max_ps(a, b); }
FN_TARGET_AVX512 static inline __mmask16 fn_v_gt_avx512(__m512 a, __m512 b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
FN_TARGET_AVX512 static inline __mmask16 fn_v_lt_avx512(__m512 a, __m512 b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
FN_TARGET_AVX512 static inline __m512 fn_v_select_avx512(__mmask16 m, __m512 t, __m512 f) { return _mm512_mask_blend_ps(m, f, t); }
FN_TARGET_AVX512 static inline __m512 fn_v_keep_avx512(__mmask16 m, __m512 v) { return _mm512_maskz_mov_ps(m, v); }
FN_TARGET_AVX512 static inline __m512 fn_v_abs_avx512(__m512 x) {
    return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(0x7fffffff)));
}
FN_TARGET_AVX512 static inline __m512 fn_v_neg_abs_avx512(__m512 x) { return _mm512_sub_ps(_mm512_setzero_ps(), fn_v_abs_avx512(x)); }
FN_TARGET_AVX512 static inline __m512 fn_v_with_sign_of_avx512(__m512 t, __m512 x) {
    __m512i sign = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32((int)0x80000000u));
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(t), sign));
}
FN_TARGET_AVX512 static inline __m512 fn_v_exp_neg_avx512(__m512 x) { return fn_exp_neg_avx512(x); }
FN_TARGET_AVX512 static inline __m512 fn_v_load_avx512(const float *p) { return _mm512_loadu_ps(p); }
FN_TARGET_AVX512 static inline void fn_v_store_avx512(float *p, __m512 v) { _mm512_storeu_ps(p, v); }
FN_TARGET_AVX512 static inline __mmask16 fn_v_tail_avx512(int64_t rem) { return (__mmask16)((1u << rem) - 1u); }
FN_TARGET_AVX512 static inline __m512 fn_v_load_tail_avx512(const float *p, __mmask16 t) { return _mm512_maskz_loadu_ps(t, p); }
FN_TARGET_AVX512 static inline void fn_v_store_tail_avx512(float *p, __mmask16 t, __m512 v) { _mm512_mask_storeu_ps(p, t, v); }

#endif /* x86-64 */

/* fn_act_<name>_<f32|f64|avx2|avx512> and helpers: see activation_math.h */
#define ACT_TEMPLATE "activation_math.h"
#include "activation_instances.h"
#undef ACT_TEMPLATE
#endif /* FN_ELEMENTWISE_INTERNAL_H */
