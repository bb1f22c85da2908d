/* kernels.c - the kernel table of each CPU path (see kernels.h).
 *
 * Rows, not logic: which set of each family a path runs (a set may repeat a
 * lower path's kernels where the wider ISA has nothing to add). The vector
 * sets exist on x86-64 (FN_SIMD_X86); elsewhere every path runs the
 * portable row.
 */
#include "kernels.h"

static const fn_kernel_table table_generic = {
    "generic", &fn_sgemm_arch_generic, &fn_sgemm_arch_generic_rounded,
    &fn_layernorm_generic, &fn_attention_generic, &fn_optim_generic,
    &fn_transformer_generic, &fn_losses_generic, &fn_activations_generic,
};

#ifdef FN_SIMD_X86
static const fn_kernel_table table_avx2 = {
    "avx2", &fn_sgemm_arch_avx2, &fn_sgemm_arch_avx2_rounded,
    &fn_layernorm_avx2, &fn_attention_avx2, &fn_optim_avx2,
    &fn_transformer_avx2, &fn_losses_avx2, &fn_activations_avx2,
};

static const fn_kernel_table table_avx512 = {
    "avx512", &fn_sgemm_arch_avx512, &fn_sgemm_arch_avx512_rounded,
    &fn_layernorm_avx512, &fn_attention_avx512, &fn_optim_avx512,
    &fn_transformer_avx512, &fn_losses_avx512, &fn_activations_avx512,
};
#endif

const fn_kernel_table *fn_kernel_table_for(fn_cpu_path path) {
#ifdef FN_SIMD_X86
    if (path == FN_CPU_AVX512) return &table_avx512;
    if (path == FN_CPU_AVX2) return &table_avx2;
#endif
    (void)path;
    return &table_generic;
}
