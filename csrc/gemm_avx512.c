/* gemm_avx512.c - the 12 x 32 AVX-512 sgemm micro-kernel (gemm_kernel.h at
 * this width) and packing that transposes through registers; its epilogue is
 * generated with the activations (activations.c).
 *
 * Register tile: 12 rows x 32 columns = 24 zmm accumulators, 2 zmm for the B
 * row, broadcasts of A folded into the FMAs' memory operand: 26-27 of the 32
 * zmm registers. Per k step 2 loads + 12 broadcasts feed 24 FMAs, so the two
 * 512-bit FMA ports stay busy (latency 4 x 2 ports = 8 chains << 24) without
 * saturating the load ports. Edge columns use masked loads and stores.
 *
 * Blocking for a Xeon core (48 KiB L1d, 2 MiB L2), measured on one: KC = 512
 * halves the passes over C compared with 256 (each KC block loads and stores
 * the C tile once), which mattered more than keeping the 64 KiB B micro-panel
 * in L1: with two 64-byte loads per 24 FMAs the panel streams from L2 fine.
 * The A block MC x KC = 192 x 512 floats = 384 KiB sits in L2 beside it; the
 * B block KC x NC (512 x 4096 floats = 8 MiB) is read from L3. Measured
 * single-thread: 256 -> 512 took 2048^3 from ~145 to ~160 GFLOP/s.
 */
#include <string.h>

#include "gemm_internal.h"

#ifdef FN_GEMM_X86

#include "transpose_avx512.h"

#define MR 12
#define NR 32

#define FN_SIMD_ISA avx512
#define FN_SIMD_TARGET FN_TARGET_AVX512
#define GEMM_MR MR
#define GEMM_ROW_UNROLL 0
#define GEMM_PREFETCH_C 1
#include "gemm_kernel.h" /* kernel_avx512 */

/* ---- packing that transposes: 16 x 16 blocks through registers ----------
 * A (not transposed) goes from rows to MR-wide columns and B (transposed)
 * from rows to NR-wide panels; a scalar copy does one strided store per
 * element there, which made trans_b GEMMs ~25% slower than the others. The
 * straight copies stay in gemm.c. */

/* dst[t * stride + i] = src[i][t] for t < len, i < 16 (rows past `rows` are
 * zero); `lanes` elements are stored per t. */
static FN_TARGET_AVX512 void transpose_runs(const float *const *src, int rows, int64_t len, float *dst,
                                            int64_t stride, int lanes) {
    const __mmask16 keep = fn_avx512_tail(lanes);
    for (int64_t t0 = 0; t0 < len; t0 += 16) {
        const __mmask16 m = fn_avx512_tail(len - t0);
        __m512i r[16];
        for (int i = 0; i < 16; ++i)
            r[i] = i < rows ? _mm512_castps_si512(_mm512_maskz_loadu_ps(m, src[i] + t0)) : _mm512_setzero_si512();
        fn_transpose16_epi32(r);
        int64_t count = len - t0 < 16 ? len - t0 : 16;
        for (int64_t t = 0; t < count; ++t) _mm512_mask_storeu_epi32(dst + (t0 + t) * stride, keep, r[t]);
    }
}

static FN_TARGET_AVX512 void avx512_pack_a(const float *a, int64_t lda, int trans_a, int64_t ic, int64_t mc,
                                           int64_t pc, int64_t kc, int64_t units, int mr_tile, void *dst) {
    if (trans_a) {
        fn_pack_a_f32(a, lda, trans_a, ic, mc, pc, kc, units, mr_tile, dst);
        return;
    }
    for (int64_t s = 0; s * mr_tile < mc; ++s) {
        int64_t i0 = ic + s * mr_tile;
        int rows = mc - s * mr_tile < mr_tile ? (int)(mc - s * mr_tile) : mr_tile;
        const float *runs[16];
        for (int i = 0; i < rows; ++i) runs[i] = a + (i0 + i) * lda + pc;
        transpose_runs(runs, rows, kc, (float *)dst + s * mr_tile * kc, mr_tile, mr_tile);
    }
}

static FN_TARGET_AVX512 void avx512_pack_b(const float *b, int64_t ldb, int trans_b, int64_t pc, int64_t kc,
                                           int64_t units, int64_t jc, int64_t nc, int nr_tile, int64_t q0,
                                           int64_t q1, void *dst) {
    if (!trans_b) {
        fn_pack_b_f32(b, ldb, trans_b, pc, kc, units, jc, nc, nr_tile, q0, q1, dst);
        return;
    }
    for (int64_t q = q0; q < q1; ++q) {
        int64_t j0 = q * nr_tile;
        int64_t nr = nc - j0 < nr_tile ? nc - j0 : nr_tile;
        float *d = (float *)dst + q * nr_tile * kc;
        for (int h = 0; h < nr_tile; h += 16) {
            const float *runs[16];
            int rows = nr - h <= 0 ? 0 : nr - h < 16 ? (int)(nr - h) : 16;
            for (int j = 0; j < rows; ++j) runs[j] = b + (jc + j0 + h + j) * ldb + pc;
            transpose_runs(runs, rows, kc, d + h, nr_tile, 16); /* columns past nr: zeros */
        }
    }
}

/* A transposing copy, 16 x 16 blocks through registers (edges masked). */
static FN_TARGET_AVX512 void avx512_transpose(const float *src, int64_t rows, int64_t cols, int64_t lds,
                                              float *dst, int64_t ldd) {
    for (int64_t i0 = 0; i0 < rows; i0 += 16) {
        const float *runs[16];
        int n = rows - i0 < 16 ? (int)(rows - i0) : 16;
        for (int i = 0; i < n; ++i) runs[i] = src + (i0 + i) * lds;
        transpose_runs(runs, n, cols, dst + i0, ldd, n);
    }
}

const fn_sgemm_arch fn_sgemm_arch_avx512 = {
    "avx512", MR, NR, 192, 512, 4096, kernel_avx512, fn_sgemm_epilogue_avx512,
    0, 0, avx512_pack_a, avx512_pack_b, NULL, NULL, avx512_transpose,
};

/* The portable bf16 path on this CPU: the same kernel on rounded operands. */
const fn_sgemm_arch fn_sgemm_arch_avx512_rounded = {
    "avx512 on bf16-rounded operands", MR, NR, 192, 512, 4096, kernel_avx512, fn_sgemm_epilogue_avx512,
    1, 1, fn_pack_a_round_bf16, fn_pack_b_round_bf16,
};

#endif /* FN_GEMM_X86 */
