/* elementwise_internal.h - activation math shared by activations.c, losses.c
 * and the dense-layer epilogue, so a fused dense layer and a separate
 * activation give the same bits on the same CPU path.
 *
 * Scalar functions (any path, f32 and f64) and AVX2/AVX-512 float32 vector
 * functions, the latter built on the one vector exp of simd.h (only ever
 * called with x <= 0 here).
 *
 * GELU is the tanh approximation 0.5 x (1 + tanh(u)), u = sqrt(2/pi)(x +
 * 0.044715 x^3), evaluated as x * sigmoid(2u): the same function (since
 * 0.5 (1 + tanh(u)) == sigmoid(2u)) without the cancellation of 1 + tanh(u)
 * for negative x.
 */
#ifndef FN_ELEMENTWISE_INTERNAL_H
#define FN_ELEMENTWISE_INTERNAL_H

#include <math.h>
#include <string.h>
#include "fn_internal.h"

#define FN_GELU_C 0.7978845608028654 /* sqrt(2 / pi) */
#define FN_GELU_K 0.044715

/* ---- scalar ------------------------------------------------------------- */

/* 1 / (1 + exp(-x)) without overflow: with e = exp(-|x|), sigmoid is
 * 1 / (1 + e) for x >= 0 and e / (1 + e) below. The numerator is picked with
 * a bit mask, not a branch: random signs would mispredict half the time. */
static inline float fn_select_f32(int pick_a, float a, float b) {
    uint32_t ua, ub, mask = (uint32_t)0 - (uint32_t)(pick_a != 0);
    memcpy(&ua, &a, sizeof ua);
    memcpy(&ub, &b, sizeof ub);
    ua = (ua & mask) | (ub & ~mask);
    memcpy(&a, &ua, sizeof a);
    return a;
}
static inline double fn_select_f64(int pick_a, double a, double b) {
    uint64_t ua, ub, mask = (uint64_t)0 - (uint64_t)(pick_a != 0);
    memcpy(&ua, &a, sizeof ua);
    memcpy(&ub, &b, sizeof ub);
    ua = (ua & mask) | (ub & ~mask);
    memcpy(&a, &ua, sizeof a);
    return a;
}
static inline float fn_sigmoid_f32(float x) {
    float e = expf(-fabsf(x));
    return fn_select_f32(x >= 0.0f, 1.0f, e) / (1.0f + e);
}
static inline double fn_sigmoid_f64(double x) {
    double e = exp(-fabs(x));
    return fn_select_f64(x >= 0.0, 1.0, e) / (1.0 + e);
}

static inline float fn_gelu_f32(float x) {
    float u = (float)FN_GELU_C * (x + (float)FN_GELU_K * x * x * x);
    return x * fn_sigmoid_f32(2.0f * u);
}
static inline double fn_gelu_f64(double x) {
    double u = FN_GELU_C * (x + FN_GELU_K * x * x * x);
    return x * fn_sigmoid_f64(2.0 * u);
}

/* d gelu / dx = s + 2 x s (1 - s) u'(x), s = sigmoid(2u). With e = exp(-|2u|),
 * s (1 - s) = e / (1 + e)^2 for either sign: no 1 - s that cancels when s
 * is close to 1. */
static inline float fn_gelu_grad_f32(float x) {
    float x2 = x * x;
    float a = 2.0f * (float)FN_GELU_C * (x + (float)FN_GELU_K * x2 * x);
    float du = (float)FN_GELU_C * (1.0f + 3.0f * (float)FN_GELU_K * x2);
    float e = expf(-fabsf(a));
    float d = 1.0f / (1.0f + e);
    float s = fn_select_f32(a >= 0.0f, 1.0f, e) * d;
    return s + 2.0f * x * (e * d * d) * du;
}
static inline double fn_gelu_grad_f64(double x) {
    double x2 = x * x;
    double a = 2.0 * FN_GELU_C * (x + FN_GELU_K * x2 * x);
    double du = FN_GELU_C * (1.0 + 3.0 * FN_GELU_K * x2);
    double e = exp(-fabs(a));
    double d = 1.0 / (1.0 + e);
    double s = fn_select_f64(a >= 0.0, 1.0, e) * d;
    return s + 2.0 * x * (e * d * d) * du;
}

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

/* ---- single-thread activation of one block (activations.c) ------------
 * The same per-path kernels as fn_activation_forward/backward_f32, without
 * threading: for a caller that is already inside its own parallel region
 * (the dense epilogue), so both give the same bits on a CPU path. y may be x
 * (in place); dx may be dy. Return FN_ERR_ARG as the public functions do. */
fn_status fn_activation_block_f32(fn_activation act, float act_param, const float *x, float *y, int64_t n);
fn_status fn_activation_grad_block_f32(fn_activation act, float act_param, const float *x, const float *y,
                                       const float *dy, float *dx, int64_t n);

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

/* tanh(x) = x + x^3 (T0 + T1 x^2 + T2 x^4 + T3 x^6) on |x| < 0.5 (fit error 2e-8). */
#define FN_TANH_T0 -0.333331376f
#define FN_TANH_T1 0.133257121f
#define FN_TANH_T2 -0.053034652f
#define FN_TANH_T3 0.0172198601f
#define FN_TANH_SMALL 0.5f

FN_TARGET_AVX2 static inline __m256 fn_sigmoid_avx2(__m256 x) {
    __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 e = fn_avx2_exp(_mm256_or_ps(x, sign)); /* exp(-|x|) */
    __m256 s = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
    __m256 negative = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ);
    return _mm256_blendv_ps(s, _mm256_mul_ps(e, s), negative);
}

FN_TARGET_AVX2 static inline __m256 fn_tanh_avx2(__m256 x) {
    __m256 sign_bit = _mm256_set1_ps(-0.0f);
    __m256 a = _mm256_andnot_ps(sign_bit, x);
    __m256 one = _mm256_set1_ps(1.0f);
    /* large |x|: (1 - e) / (1 + e), e = exp(-2|x|) <= exp(-1): no cancellation */
    __m256 e = fn_avx2_exp(_mm256_mul_ps(a, _mm256_set1_ps(-2.0f)));
    __m256 big = _mm256_div_ps(_mm256_sub_ps(one, e), _mm256_add_ps(one, e));
    __m256 a2 = _mm256_mul_ps(a, a);
    __m256 q = _mm256_fmadd_ps(_mm256_set1_ps(FN_TANH_T3), a2, _mm256_set1_ps(FN_TANH_T2));
    q = _mm256_fmadd_ps(q, a2, _mm256_set1_ps(FN_TANH_T1));
    q = _mm256_fmadd_ps(q, a2, _mm256_set1_ps(FN_TANH_T0));
    __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(q, a2), a, a);
    __m256 is_small = _mm256_cmp_ps(a, _mm256_set1_ps(FN_TANH_SMALL), _CMP_LT_OQ);
    __m256 t = _mm256_blendv_ps(big, small, is_small);
    return _mm256_or_ps(t, _mm256_and_ps(x, sign_bit));
}

/* 2u = 2 sqrt(2/pi) (x + 0.044715 x^3) */
FN_TARGET_AVX2 static inline __m256 fn_gelu_2u_avx2(__m256 x, __m256 x2) {
    __m256 inner = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps((float)FN_GELU_K), x2), x, x);
    return _mm256_mul_ps(_mm256_set1_ps((float)(2.0 * FN_GELU_C)), inner);
}

FN_TARGET_AVX2 static inline __m256 fn_gelu_avx2(__m256 x) {
    __m256 x2 = _mm256_mul_ps(x, x);
    return _mm256_mul_ps(x, fn_sigmoid_avx2(fn_gelu_2u_avx2(x, x2)));
}

FN_TARGET_AVX2 static inline __m256 fn_gelu_grad_avx2(__m256 x) {
    __m256 x2 = _mm256_mul_ps(x, x);
    __m256 a = fn_gelu_2u_avx2(x, x2);
    __m256 one = _mm256_set1_ps(1.0f);
    __m256 e = fn_avx2_exp(_mm256_or_ps(a, _mm256_set1_ps(-0.0f))); /* exp(-|2u|) */
    __m256 d = _mm256_div_ps(one, _mm256_add_ps(one, e));
    __m256 negative = _mm256_cmp_ps(a, _mm256_setzero_ps(), _CMP_LT_OQ);
    __m256 s = _mm256_blendv_ps(d, _mm256_mul_ps(e, d), negative);
    __m256 s1 = _mm256_mul_ps(_mm256_mul_ps(e, d), d); /* s (1 - s) */
    /* 2 du/dx = 2 sqrt(2/pi) (1 + 3 * 0.044715 x^2) */
    __m256 du2 = _mm256_mul_ps(_mm256_set1_ps((float)(2.0 * FN_GELU_C)),
                               _mm256_fmadd_ps(_mm256_set1_ps((float)(3.0 * FN_GELU_K)), x2, one));
    return _mm256_fmadd_ps(_mm256_mul_ps(x, s1), du2, s);
}

FN_TARGET_AVX512 static inline __m512 fn_abs_avx512(__m512 x) {
    return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(0x7fffffff)));
}

FN_TARGET_AVX512 static inline __m512 fn_sigmoid_avx512(__m512 x) {
    __m512 e = fn_avx512_exp(_mm512_sub_ps(_mm512_setzero_ps(), fn_abs_avx512(x)));
    __m512 s = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_add_ps(_mm512_set1_ps(1.0f), e));
    __mmask16 negative = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
    return _mm512_mask_mul_ps(s, negative, e, s);
}

FN_TARGET_AVX512 static inline __m512 fn_tanh_avx512(__m512 x) {
    __m512 a = fn_abs_avx512(x);
    __m512 one = _mm512_set1_ps(1.0f);
    __m512 e = fn_avx512_exp(_mm512_mul_ps(a, _mm512_set1_ps(-2.0f)));
    __m512 big = _mm512_div_ps(_mm512_sub_ps(one, e), _mm512_add_ps(one, e));
    __m512 a2 = _mm512_mul_ps(a, a);
    __m512 q = _mm512_fmadd_ps(_mm512_set1_ps(FN_TANH_T3), a2, _mm512_set1_ps(FN_TANH_T2));
    q = _mm512_fmadd_ps(q, a2, _mm512_set1_ps(FN_TANH_T1));
    q = _mm512_fmadd_ps(q, a2, _mm512_set1_ps(FN_TANH_T0));
    __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(q, a2), a, a);
    __mmask16 is_small = _mm512_cmp_ps_mask(a, _mm512_set1_ps(FN_TANH_SMALL), _CMP_LT_OQ);
    __m512 t = _mm512_mask_blend_ps(is_small, big, small);
    __m512i sign = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32((int)0x80000000u));
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(t), sign));
}

FN_TARGET_AVX512 static inline __m512 fn_gelu_2u_avx512(__m512 x, __m512 x2) {
    __m512 inner = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps((float)FN_GELU_K), x2), x, x);
    return _mm512_mul_ps(_mm512_set1_ps((float)(2.0 * FN_GELU_C)), inner);
}

FN_TARGET_AVX512 static inline __m512 fn_gelu_avx512(__m512 x) {
    __m512 x2 = _mm512_mul_ps(x, x);
    return _mm512_mul_ps(x, fn_sigmoid_avx512(fn_gelu_2u_avx512(x, x2)));
}

FN_TARGET_AVX512 static inline __m512 fn_gelu_grad_avx512(__m512 x) {
    __m512 x2 = _mm512_mul_ps(x, x);
    __m512 a = fn_gelu_2u_avx512(x, x2);
    __m512 one = _mm512_set1_ps(1.0f);
    __m512 e = fn_avx512_exp(_mm512_sub_ps(_mm512_setzero_ps(), fn_abs_avx512(a)));
    __m512 d = _mm512_div_ps(one, _mm512_add_ps(one, e));
    __mmask16 negative = _mm512_cmp_ps_mask(a, _mm512_setzero_ps(), _CMP_LT_OQ);
    __m512 s = _mm512_mask_mul_ps(d, negative, e, d);
    __m512 s1 = _mm512_mul_ps(_mm512_mul_ps(e, d), d);
    __m512 du2 = _mm512_mul_ps(_mm512_set1_ps((float)(2.0 * FN_GELU_C)),
                               _mm512_fmadd_ps(_mm512_set1_ps((float)(3.0 * FN_GELU_K)), x2, one));
    return _mm512_fmadd_ps(_mm512_mul_ps(x, s1), du2, s);
}

#endif /* x86-64 */
#endif /* FN_ELEMENTWISE_INTERNAL_H */
