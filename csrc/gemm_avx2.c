/* gemm_avx2.c - the 6 x 16 AVX2/FMA sgemm micro-kernel (gemm_kernel.h at
 * this width) and its epilogue.
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

#define MR 6
#define NR 16

#define FN_SIMD_ISA avx2
#define FN_SIMD_TARGET FN_TARGET_AVX2
#define GEMM_MR MR
#define GEMM_ROW_UNROLL 6
#define GEMM_PREFETCH_C 0
#include "gemm_kernel.h" /* kernel_avx2 */

/* The activation of 8 lanes, with the math of activations.c (same bits). */
static FN_ALWAYS_INLINE FN_TARGET_AVX2 __m256
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
    "avx2", MR, NR, 192, 384, 4096, kernel_avx2, avx2_epilogue,
};

/* The portable bf16 path on this CPU: the same kernel on rounded operands. */
const fn_sgemm_arch fn_sgemm_arch_avx2_rounded = {
    "avx2 on bf16-rounded operands", MR, NR, 192, 384, 4096, kernel_avx2, avx2_epilogue,
    1, 1, fn_pack_a_round_bf16, fn_pack_b_round_bf16,
};

#endif /* FN_GEMM_X86 */
