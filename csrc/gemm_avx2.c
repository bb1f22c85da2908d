/* gemm_avx2.c - the 6 x 16 AVX2/FMA sgemm micro-kernel and its epilogue.
 *
 * Register tile: 6 rows x 16 columns = 12 ymm accumulators, 2 ymm for the
 * B row, 1 for the broadcast of A: 15 of the 16 ymm registers. Per k step:
 * 2 loads + 6 broadcasts feed 12 FMAs, enough to keep both FMA ports busy
 * (FMA latency 4 x 2 ports = 8 independent chains < 12).
 *
 * Blocking: the B micro-panel (KC x 16 floats = 24 KiB at KC = 384) stays in a
 * 32-48 KiB L1d across the MC/6 tiles that reuse it; the A block (MC x KC =
 * 192 x 384 floats = 288 KiB) stays in a 512 KiB - 2 MiB L2; the B block
 * (KC x NC = 6 MiB) is streamed from L3. KC 384 beat 256 by ~8% on 1024^3
 * (fewer passes over C).
 */
#include <string.h>

#include "gemm_internal.h"
#include "elementwise_internal.h"

#ifdef FN_GEMM_X86
#include <immintrin.h>

#define MR 6
#define NR 16

static inline __attribute__((always_inline)) FN_TARGET_AVX2 void
avx2_tile(const int mr, int nr, int64_t kc, const float *a, int64_t rsa, int64_t csa,
          const float *b, int64_t rsb, float *c, int64_t ldc, float alpha, float beta) {
    __m256 acc[MR][2];
    for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
#pragma GCC unroll 4
    for (int64_t p = 0; p < kc; ++p) {
        __m256 b0 = _mm256_loadu_ps(b + p * rsb);
        __m256 b1 = _mm256_loadu_ps(b + p * rsb + 8);
        const float *ap = a + p * csa;
#pragma GCC unroll 6
        for (int i = 0; i < mr; ++i) {
            __m256 ai = _mm256_broadcast_ss(ap + i * rsa);
            acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
        }
    }
    __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    /* Edge columns through lane masks: every path stays branch-free per row,
     * which lets the compiler keep acc[][] in registers. */
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr), lane);
    const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr - 8), lane);
#pragma GCC unroll 6
    for (int i = 0; i < mr; ++i) {
        float *ci = c + i * ldc;
        __m256 r0 = _mm256_mul_ps(va, acc[i][0]), r1 = _mm256_mul_ps(va, acc[i][1]);
        if (nr == NR) {
            if (beta != 0.0f) {
                r0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci), r0);
                r1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci + 8), r1);
            }
            _mm256_storeu_ps(ci, r0);
            _mm256_storeu_ps(ci + 8, r1);
        } else {
            if (beta != 0.0f) {
                r0 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(ci, m0), r0);
                r1 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(ci + 8, m1), r1);
            }
            _mm256_maskstore_ps(ci, m0, r0);
            _mm256_maskstore_ps(ci + 8, m1, r1);
        }
    }
}

static FN_TARGET_AVX2 void avx2_kernel(int mr, int nr, int64_t kc, const float *a, int64_t rsa,
                                       int64_t csa, const float *b, int64_t rsb, float *c, int64_t ldc,
                                       float alpha, float beta) {
    if (mr == MR && rsa == 1 && csa == MR && rsb == NR) {
        /* Packed operands: constant strides free the index registers. */
        avx2_tile(MR, nr, kc, a, 1, MR, b, NR, c, ldc, alpha, beta);
        return;
    }
    switch (mr) {
    case 6: avx2_tile(6, nr, kc, a, rsa, csa, b, rsb, c, ldc, alpha, beta); break;
    case 5: avx2_tile(5, nr, kc, a, rsa, csa, b, rsb, c, ldc, alpha, beta); break;
    case 4: avx2_tile(4, nr, kc, a, rsa, csa, b, rsb, c, ldc, alpha, beta); break;
    case 3: avx2_tile(3, nr, kc, a, rsa, csa, b, rsb, c, ldc, alpha, beta); break;
    case 2: avx2_tile(2, nr, kc, a, rsa, csa, b, rsb, c, ldc, alpha, beta); break;
    default: avx2_tile(1, nr, kc, a, rsa, csa, b, rsb, c, ldc, alpha, beta); break;
    }
}

/* The activation of 8 lanes, with the math of activations.c (same bits). */
static inline __attribute__((always_inline)) FN_TARGET_AVX2 __m256
avx2_activate(__m256 z, fn_activation act, __m256 slope) {
    const __m256 zero = _mm256_setzero_ps();
    switch (act) {
    case FN_ACT_STEP: return _mm256_and_ps(_mm256_cmp_ps(z, zero, _CMP_GT_OQ), _mm256_set1_ps(1.0f));
    case FN_ACT_SIGMOID: return fn_sigmoid_avx2(z);
    case FN_ACT_TANH: return fn_tanh_avx2(z);
    case FN_ACT_RELU: return _mm256_max_ps(zero, z); /* NaN passes through */
    case FN_ACT_LEAKY_RELU:
        return _mm256_blendv_ps(z, _mm256_mul_ps(z, slope), _mm256_cmp_ps(z, zero, _CMP_LT_OQ));
    case FN_ACT_GELU: return fn_gelu_avx2(z);
    default: return z;
    }
}

/* Bias, pre-activation copy and activation, 8 lanes at a time; the last
 * columns go through a masked vector, so every element sees the same math. */
static FN_TARGET_AVX2 void avx2_epilogue(float *c, int64_t ldc, int64_t rows, int64_t cols,
                                         int64_t i0, int64_t j0, const fn_epilogue_f32 *epi) {
    const fn_activation act = epi->act;
    const __m256 slope = _mm256_set1_ps(epi->act_param);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int64_t r = 0; r < rows; ++r) {
        float *row = c + r * ldc;
        float *pre = epi->pre ? epi->pre + (i0 + r) * epi->ldpre + j0 : NULL;
        const float *bias = epi->bias ? epi->bias + j0 : NULL;
        int64_t j = 0;
        for (; j + 8 <= cols; j += 8) {
            __m256 z = _mm256_loadu_ps(row + j);
            if (bias) z = _mm256_add_ps(z, _mm256_loadu_ps(bias + j));
            if (pre) _mm256_storeu_ps(pre + j, z);
            _mm256_storeu_ps(row + j, avx2_activate(z, act, slope));
        }
        if (j < cols) {
            __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(cols - j)), lane);
            __m256 z = _mm256_maskload_ps(row + j, m);
            if (bias) z = _mm256_add_ps(z, _mm256_maskload_ps(bias + j, m));
            if (pre) _mm256_maskstore_ps(pre + j, m, z);
            _mm256_maskstore_ps(row + j, m, avx2_activate(z, act, slope));
        }
    }
}

const fn_sgemm_arch fn_sgemm_arch_avx2 = {
    "avx2", MR, NR, 192, 384, 4096, avx2_kernel, avx2_epilogue,
};

/* The portable bf16 path on this CPU: the same kernel on rounded operands. */
const fn_sgemm_arch fn_sgemm_arch_avx2_rounded = {
    "avx2 on bf16-rounded operands", MR, NR, 192, 384, 4096, avx2_kernel, avx2_epilogue,
    1, 1, fn_pack_a_round_bf16, fn_pack_b_round_bf16,
};

#endif /* FN_GEMM_X86 */
