/* bf16.c - bfloat16 conversions and the bf16 GEMM entry point.
 *
 * fn_gemm_bf16 runs the packed driver of gemm.c with one of three kernel
 * sets, by fn_mma_get_path():
 *   AMX          TDPBF16PS on 16 x 16 tiles (gemm_amx.c)
 *   AVX512_BF16  VDPBF16PS on a 12 x 32 register tile (gemm_bf16_avx512.c)
 *   otherwise    the float32 kernels of the current CPU path, on operands
 *                rounded to bf16 as they are packed (here).
 * The rounding is the hardware's (fn_bf16_from_f32: nearest even, NaN stays
 * NaN, denormals flush to zero), and products of two bf16 numbers are exact
 * in float32, so every path computes the same sums of the same products in
 * float32; only the order of the additions (and the hardware's flushing of
 * denormal partial sums) differs, well inside the k-term float32 bound the
 * tests hold them to.
 */
#include <string.h>

#include "kernels.h"

/* Round n floats to bf16 and back in place, written branch-free so the
 * compiler vectorises it with the baseline instruction set. */
static void round_bf16_inplace(float *x, int64_t n) {
    uint32_t *u = (uint32_t *)x;
    for (int64_t i = 0; i < n; ++i) {
        uint32_t v = u[i];
        uint32_t rounded = (v + 0x7fffu + ((v >> 16) & 1u)) & 0xffff0000u;
        uint32_t nan = ((v & 0x7fffffffu) > 0x7f800000u) ? 0xffffffffu : 0u;
        uint32_t tiny = ((v & 0x7f800000u) == 0) ? 0xffffffffu : 0u;
        rounded = (nan & ((v | 0x00400000u) & 0xffff0000u)) | (~nan & rounded);
        u[i] = (tiny & (v & 0x80000000u)) | (~tiny & rounded);
    }
}

fn_status fn_f32_to_bf16(const float *x, uint16_t *out, int64_t n) {
    if (n < 0 || (n > 0 && (!x || !out))) return FN_ERR_ARG;
    for (int64_t i = 0; i < n; ++i) out[i] = fn_bf16_from_f32(x[i]);
    return FN_OK;
}

fn_status fn_bf16_to_f32(const uint16_t *x, float *out, int64_t n) {
    if (n < 0 || (n > 0 && (!x || !out))) return FN_ERR_ARG;
    for (int64_t i = 0; i < n; ++i) out[i] = fn_f32_from_bf16(x[i]);
    return FN_OK;
}

fn_status fn_round_bf16_f32(const float *x, float *out, int64_t n) {
    if (n < 0 || (n > 0 && (!x || !out))) return FN_ERR_ARG;
    if (out != x) memmove(out, x, (size_t)n * sizeof(float));
    round_bf16_inplace(out, n);
    return FN_OK;
}

/* The float32 packing, then the packed block rounded in place. */
void fn_pack_a_round_bf16(const float *a, int64_t lda, int trans_a, int64_t ic, int64_t mc,
                          int64_t pc, int64_t kc, int64_t units, int mr, void *dst) {
    fn_pack_a_f32(a, lda, trans_a, ic, mc, pc, kc, units, mr, dst);
    int64_t slivers = (mc + mr - 1) / mr;
    round_bf16_inplace(dst, slivers * mr * kc);
}

void fn_pack_b_round_bf16(const float *b, int64_t ldb, int trans_b, int64_t pc, int64_t kc,
                          int64_t units, int64_t jc, int64_t nc, int nr, int64_t q0, int64_t q1,
                          void *dst) {
    fn_pack_b_f32(b, ldb, trans_b, pc, kc, units, jc, nc, nr, q0, q1, dst);
    round_bf16_inplace((float *)dst + q0 * nr * kc, (q1 - q0) * nr * kc);
}

const fn_sgemm_arch *fn_bf16_arch_current(void) {
    fn_mma_path path = fn_mma_get_path();
    (void)path;
#ifdef FN_HAVE_AMX_INTRIN
    if (path == FN_MMA_AMX) return &fn_bf16_arch_amx;
#endif
#ifdef FN_HAVE_BF16_INTRIN
    if (path >= FN_MMA_AVX512_BF16) return &fn_bf16_arch_avx512;
#endif
    return fn_kernels()->sgemm_bf16_rounded;
}
