/* gemm_avx2.c - the 6 x 16 AVX2/FMA sgemm micro-kernel (gemm_kernel.h at
 * this width); its epilogue is generated with the activations (activations.c).
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

#ifdef FN_GEMM_X86

#define MR 6
#define NR 16

#define FN_SIMD_ISA avx2
#define FN_SIMD_TARGET FN_TARGET_AVX2
#define GEMM_MR MR
#define GEMM_ROW_UNROLL 6
#define GEMM_PREFETCH_C 0
#include "gemm_kernel.h" /* kernel_avx2 */

const fn_sgemm_arch fn_sgemm_arch_avx2 = {
    "avx2", MR, NR, 192, 384, 4096, kernel_avx2, fn_sgemm_epilogue_avx2,
};

/* The portable bf16 path on this CPU: the same kernel on rounded operands. */
const fn_sgemm_arch fn_sgemm_arch_avx2_rounded = {
    "avx2 on bf16-rounded operands", MR, NR, 192, 384, 4096, kernel_avx2, fn_sgemm_epilogue_avx2,
    1, 1, fn_pack_a_round_bf16, fn_pack_b_round_bf16,
};

#endif /* FN_GEMM_X86 */
