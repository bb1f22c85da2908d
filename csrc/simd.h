/* simd.h - the one place the C kernels get their compiler and vector vocabulary.
 *
 * Three parts:
 *   1. Portability: FN_ALWAYS_INLINE (GCC, clang and MSVC spellings) and the
 *      per-function target attributes that let one file hold AVX2 and AVX-512
 *      code without building the whole library for those CPUs.
 *   2. One mapping per ISA: the same operation names for AVX2 (8 float lanes,
 *      lane masks in a __m256i) and AVX-512 (16 lanes, __mmask16 masks):
 *      fn_avx2_load / fn_avx512_load, ..._fma, ..._tail, ..._hsum, ..._exp.
 *      A kernel written once as a template says FN_V(load), FN_V(vec) (the
 *      type), FN_V(lanes), and is included once per ISA with FN_SIMD_ISA set
 *      to avx2 or avx512 and FN_SIMD_TARGET to its target attribute (see
 *      gemm_kernel.h, attention_simd.h); both instantiations do the same
 *      arithmetic in the same order, only the width differs.
 *   3. The vector exp (Cody-Waite split of ln 2, degree-6 polynomial, ~2 ulp),
 *      the only one in the library: softmax, attention, sigmoid, tanh and GELU
 *      all call it, so a fused kernel and a separate one give the same bits.
 *
 * Semantics worth knowing: max(a, b) returns b when either is NaN (the x86
 * rule), so write max(bound, x) to let a NaN x through. Masked loads read
 * zeros in the lanes outside the mask; masked stores leave memory there alone.
 */
#ifndef FN_SIMD_H
#define FN_SIMD_H

#include <stdint.h>

/* ---- 1. portability ---------------------------------------------------- */

/* Forces inlining: the template kernels rely on it to specialise a tile on a
 * constant row count and to keep accumulators in registers. */
#if defined(_MSC_VER) && !defined(__clang__)
#define FN_ALWAYS_INLINE __forceinline
#elif defined(__GNUC__) || defined(__clang__)
#define FN_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define FN_ALWAYS_INLINE inline
#endif

#if defined(__GNUC__) || defined(__clang__)
#define FN_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define FN_TARGET_AVX512 __attribute__((target("avx512f,avx2,fma")))
#else /* MSVC emits any intrinsic without a target switch */
#define FN_TARGET_AVX2
#define FN_TARGET_AVX512
#endif

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

/* The x86 vector code below (and every kernel built on it) exists only here. */
#if defined(__x86_64__) || defined(_M_X64)
#define FN_SIMD_X86 1
#endif

/* A template names an operation of the ISA it is instantiated for:
 * with FN_SIMD_ISA defined as avx2, FN_V(load) is fn_avx2_load. */
#define FN_SIMD_CAT3_(a, b, c) a##_##b##_##c
#define FN_SIMD_CAT3(a, b, c) FN_SIMD_CAT3_(a, b, c)
#define FN_V(op) FN_SIMD_CAT3(fn, FN_SIMD_ISA, op)

#ifdef FN_SIMD_X86
#include <immintrin.h>

/* ---- 2. the mapping ------------------------------------------------------ */

#define FN_AVX2_FN static FN_ALWAYS_INLINE FN_TARGET_AVX2
#define FN_AVX512_FN static FN_ALWAYS_INLINE FN_TARGET_AVX512

/* AVX2: 8 lanes; a mask is all-ones in its selected 32-bit lanes. */
enum { fn_avx2_lanes = 8 };
typedef __m256 fn_avx2_vec;
typedef __m256i fn_avx2_mask;

FN_AVX2_FN __m256 fn_avx2_zero(void) { return _mm256_setzero_ps(); }
FN_AVX2_FN __m256 fn_avx2_set1(float x) { return _mm256_set1_ps(x); }
FN_AVX2_FN __m256 fn_avx2_broadcast(const float *p) { return _mm256_broadcast_ss(p); }
FN_AVX2_FN __m256 fn_avx2_load(const float *p) { return _mm256_loadu_ps(p); }
FN_AVX2_FN void fn_avx2_store(float *p, __m256 x) { _mm256_storeu_ps(p, x); }
FN_AVX2_FN __m256 fn_avx2_add(__m256 a, __m256 b) { return _mm256_add_ps(a, b); }
FN_AVX2_FN __m256 fn_avx2_sub(__m256 a, __m256 b) { return _mm256_sub_ps(a, b); }
FN_AVX2_FN __m256 fn_avx2_mul(__m256 a, __m256 b) { return _mm256_mul_ps(a, b); }
FN_AVX2_FN __m256 fn_avx2_div(__m256 a, __m256 b) { return _mm256_div_ps(a, b); }
FN_AVX2_FN __m256 fn_avx2_max(__m256 a, __m256 b) { return _mm256_max_ps(a, b); }
FN_AVX2_FN __m256 fn_avx2_min(__m256 a, __m256 b) { return _mm256_min_ps(a, b); }
/* a * b + c and c - a * b, each rounded once */
FN_AVX2_FN __m256 fn_avx2_fma(__m256 a, __m256 b, __m256 c) { return _mm256_fmadd_ps(a, b, c); }
FN_AVX2_FN __m256 fn_avx2_fnma(__m256 a, __m256 b, __m256 c) { return _mm256_fnmadd_ps(a, b, c); }
/* The first n lanes (none for n <= 0, all for n >= 8). */
FN_AVX2_FN __m256i fn_avx2_tail(int64_t n) {
    int lanes = n < 0 ? 0 : n > 8 ? 8 : (int)n;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(lanes), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
FN_AVX2_FN __m256 fn_avx2_load_mask(const float *p, __m256i m) { return _mm256_maskload_ps(p, m); }
FN_AVX2_FN void fn_avx2_store_mask(float *p, __m256i m, __m256 x) { _mm256_maskstore_ps(p, m, x); }
/* Lanes where x != 0 (NaN counts as non-zero). */
FN_AVX2_FN __m256i fn_avx2_nonzero(__m256 x) {
    return _mm256_castps_si256(_mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_NEQ_UQ));
}
/* m ? a : b per lane, and m ? x : 0. */
FN_AVX2_FN __m256 fn_avx2_select(__m256i m, __m256 a, __m256 b) {
    return _mm256_blendv_ps(b, a, _mm256_castsi256_ps(m));
}
FN_AVX2_FN __m256 fn_avx2_keep(__m256i m, __m256 x) { return _mm256_and_ps(x, _mm256_castsi256_ps(m)); }
/* Lanes where a > b, a < b (false when either is NaN). */
FN_AVX2_FN __m256i fn_avx2_gt(__m256 a, __m256 b) { return _mm256_castps_si256(_mm256_cmp_ps(a, b, _CMP_GT_OQ)); }
FN_AVX2_FN __m256i fn_avx2_lt(__m256 a, __m256 b) { return _mm256_castps_si256(_mm256_cmp_ps(a, b, _CMP_LT_OQ)); }
/* |x|, -|x| and |t| with the sign of x, by the sign bit. */
FN_AVX2_FN __m256 fn_avx2_abs(__m256 x) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x); }
FN_AVX2_FN __m256 fn_avx2_neg_abs(__m256 x) { return _mm256_or_ps(x, _mm256_set1_ps(-0.0f)); }
FN_AVX2_FN __m256 fn_avx2_with_sign_of(__m256 t, __m256 x) {
    return _mm256_or_ps(t, _mm256_and_ps(x, _mm256_set1_ps(-0.0f)));
}
/* Horizontal sum and max, in one fixed order: (lane i + lane i+4), then
 * pairs, then the last two. */
FN_AVX2_FN float fn_avx2_hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
FN_AVX2_FN float fn_avx2_hmax(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* AVX-512: 16 lanes; a mask is one bit per lane. */
enum { fn_avx512_lanes = 16 };
typedef __m512 fn_avx512_vec;
typedef __mmask16 fn_avx512_mask;

FN_AVX512_FN __m512 fn_avx512_zero(void) { return _mm512_setzero_ps(); }
FN_AVX512_FN __m512 fn_avx512_set1(float x) { return _mm512_set1_ps(x); }
FN_AVX512_FN __m512 fn_avx512_broadcast(const float *p) { return _mm512_set1_ps(*p); }
FN_AVX512_FN __m512 fn_avx512_load(const float *p) { return _mm512_loadu_ps(p); }
FN_AVX512_FN void fn_avx512_store(float *p, __m512 x) { _mm512_storeu_ps(p, x); }
FN_AVX512_FN __m512 fn_avx512_add(__m512 a, __m512 b) { return _mm512_add_ps(a, b); }
FN_AVX512_FN __m512 fn_avx512_sub(__m512 a, __m512 b) { return _mm512_sub_ps(a, b); }
FN_AVX512_FN __m512 fn_avx512_mul(__m512 a, __m512 b) { return _mm512_mul_ps(a, b); }
FN_AVX512_FN __m512 fn_avx512_div(__m512 a, __m512 b) { return _mm512_div_ps(a, b); }
FN_AVX512_FN __m512 fn_avx512_max(__m512 a, __m512 b) { return _mm512_max_ps(a, b); }
FN_AVX512_FN __m512 fn_avx512_min(__m512 a, __m512 b) { return _mm512_min_ps(a, b); }
FN_AVX512_FN __m512 fn_avx512_fma(__m512 a, __m512 b, __m512 c) { return _mm512_fmadd_ps(a, b, c); }
FN_AVX512_FN __m512 fn_avx512_fnma(__m512 a, __m512 b, __m512 c) { return _mm512_fnmadd_ps(a, b, c); }
FN_AVX512_FN __mmask16 fn_avx512_tail(int64_t n) {
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1u);
}
FN_AVX512_FN __m512 fn_avx512_load_mask(const float *p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
FN_AVX512_FN void fn_avx512_store_mask(float *p, __mmask16 m, __m512 x) { _mm512_mask_storeu_ps(p, m, x); }
FN_AVX512_FN __mmask16 fn_avx512_nonzero(__m512 x) {
    return _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_NEQ_UQ);
}
FN_AVX512_FN __m512 fn_avx512_select(__mmask16 m, __m512 a, __m512 b) { return _mm512_mask_mov_ps(b, m, a); }
FN_AVX512_FN __m512 fn_avx512_keep(__mmask16 m, __m512 x) { return _mm512_maskz_mov_ps(m, x); }
FN_AVX512_FN __mmask16 fn_avx512_gt(__m512 a, __m512 b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
FN_AVX512_FN __mmask16 fn_avx512_lt(__m512 a, __m512 b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
FN_AVX512_FN __m512 fn_avx512_abs(__m512 x) {
    return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(0x7fffffff)));
}
FN_AVX512_FN __m512 fn_avx512_neg_abs(__m512 x) { return _mm512_sub_ps(_mm512_setzero_ps(), fn_avx512_abs(x)); }
FN_AVX512_FN __m512 fn_avx512_with_sign_of(__m512 t, __m512 x) {
    __m512i sign = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32((int)0x80000000u));
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(t), sign));
}
FN_AVX512_FN float fn_avx512_hsum(__m512 v) { return _mm512_reduce_add_ps(v); }
FN_AVX512_FN float fn_avx512_hmax(__m512 v) { return _mm512_reduce_max_ps(v); }

/* ---- 3. exp ---------------------------------------------------------------
 * exp(x) = 2^n p(r) with x = n ln2 + r, |r| <= ln2 / 2: ln 2 split in two so
 * n * FN_EXP_LN2_HI is exact, p(r) = 1 + r + r^2 q(r) with q of degree 4
 * fitted to (exp(r) - 1 - r) / r^2 (fit error 4e-9). Measured over every
 * float in [-87, 0] against double precision: max relative error below 3e-7
 * (about 2 ulp). Cephes' degree-7 polynomial is a little more often
 * correctly rounded, but its extra FMA made sigmoid, GELU and softmax 5-8%
 * slower at one thread (these loops are bound by the exp's dependency
 * chain), so the shorter fit stays. Domain: x <= 0 or NaN, which is all any
 * caller passes (exp of a score minus its row max, exp(-|x|)); there is no
 * upper clamp, since it would cost a vector op per call in the softmax and
 * sigmoid loops, so x > 88 would overflow 2^n. Lanes below FN_EXP_MIN
 * (including -inf: masked attention scores) give exactly 0; NaN stays NaN
 * (the "live" compare is unordered, and x is the second operand of max, the
 * one it returns for NaN). */
#define FN_EXP_MIN -87.3365479f /* exp of this is FLT_MIN: below, 2^n is not a normal number */
#define FN_EXP_LOG2E 1.44269504088896341f
#define FN_EXP_LN2_HI 0.693359375f
#define FN_EXP_LN2_LO -2.12194440e-4f
#define FN_EXP_Q0 0.499999881f
#define FN_EXP_Q1 0.166665182f
#define FN_EXP_Q2 0.0416695327f
#define FN_EXP_Q3 0.00836891867f
#define FN_EXP_Q4 0.00137514086f

/* Per-ISA steps of exp: lanes not below `bound` (NaN included), rounding
 * to the nearest integer, and p * 2^n for an integral n >= -126. */
FN_AVX2_FN __m256i fn_avx2_not_below(__m256 x, float bound) {
    return _mm256_castps_si256(_mm256_cmp_ps(x, _mm256_set1_ps(bound), _CMP_NLT_UQ));
}
FN_AVX2_FN __m256 fn_avx2_round(__m256 x) {
    return _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
FN_AVX2_FN __m256 fn_avx2_scale2(__m256 p, __m256 n) { /* 2^n built in the exponent field */
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}
FN_AVX512_FN __mmask16 fn_avx512_not_below(__m512 x, float bound) {
    return _mm512_cmp_ps_mask(x, _mm512_set1_ps(bound), _CMP_NLT_UQ);
}
FN_AVX512_FN __m512 fn_avx512_round(__m512 x) {
    return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
FN_AVX512_FN __m512 fn_avx512_scale2(__m512 p, __m512 n) { return _mm512_scalef_ps(p, n); }

/* exp written once, instantiated for both widths below. */
#define FN_DEFINE_EXP(ISA, FN_ATTR)                                                          \
    FN_ATTR fn_##ISA##_vec fn_##ISA##_exp(fn_##ISA##_vec x) {                                \
        fn_##ISA##_mask live = fn_##ISA##_not_below(x, FN_EXP_MIN);                          \
        x = fn_##ISA##_max(fn_##ISA##_set1(FN_EXP_MIN), x); /* NaN passes through */          \
        fn_##ISA##_vec n = fn_##ISA##_round(fn_##ISA##_mul(x, fn_##ISA##_set1(FN_EXP_LOG2E))); \
        fn_##ISA##_vec r = fn_##ISA##_fnma(n, fn_##ISA##_set1(FN_EXP_LN2_HI), x);            \
        r = fn_##ISA##_fnma(n, fn_##ISA##_set1(FN_EXP_LN2_LO), r);                           \
        fn_##ISA##_vec p = fn_##ISA##_set1(FN_EXP_Q4);                                       \
        p = fn_##ISA##_fma(p, r, fn_##ISA##_set1(FN_EXP_Q3));                                \
        p = fn_##ISA##_fma(p, r, fn_##ISA##_set1(FN_EXP_Q2));                                \
        p = fn_##ISA##_fma(p, r, fn_##ISA##_set1(FN_EXP_Q1));                                \
        p = fn_##ISA##_fma(p, r, fn_##ISA##_set1(FN_EXP_Q0));                                \
        p = fn_##ISA##_fma(p, fn_##ISA##_mul(r, r), fn_##ISA##_add(r, fn_##ISA##_set1(1.0f))); \
        return fn_##ISA##_keep(live, fn_##ISA##_scale2(p, n));                               \
    }
FN_DEFINE_EXP(avx2, FN_AVX2_FN)
FN_DEFINE_EXP(avx512, FN_AVX512_FN)

#endif /* FN_SIMD_X86 */
#endif /* FN_SIMD_H */
