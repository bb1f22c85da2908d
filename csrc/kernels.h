/* kernels.h - one table of float32 kernels per CPU path, chosen once.
 *
 * Each file with per-ISA code exports one const set of its kernels per path
 * (fn_layernorm_avx2, fn_optim_avx512, ...; the set's layout is private to
 * that file). kernels.c gathers them into one fn_kernel_table per path, and
 * cpu.c points fn_kernels() at the table of the current path whenever the
 * path is chosen (first use, or fn_cpu_set_path). So a CPU path turns into
 * code in exactly one place; a kernel only asks fn_kernels()->family.
 *
 * Adding a family: declare its set type and the three sets here, define them
 * beside the kernels, and add a field to fn_kernel_table and its three rows
 * in kernels.c. The float64 kernels are portable and not in the table.
 */
#ifndef FN_KERNELS_H
#define FN_KERNELS_H

#include "gemm_internal.h"

/* Kernel sets, one type per family, defined in the file named. */
typedef struct fn_layernorm_kernels fn_layernorm_kernels;     /* layernorm.c */
typedef struct fn_attention_kernels fn_attention_kernels;     /* attention.c */
typedef struct fn_optim_kernels fn_optim_kernels;             /* optim.c */
typedef struct fn_transformer_kernels fn_transformer_kernels; /* transformer.c */
typedef struct fn_loss_kernels fn_loss_kernels;               /* losses.c */
typedef struct fn_activation_kernels fn_activation_kernels;   /* activations.c */

typedef struct {
    const char *name;
    const fn_sgemm_arch *sgemm;              /* float32 GEMM micro-kernels and blocking */
    const fn_sgemm_arch *sgemm_bf16_rounded; /* the same on bf16-rounded operands (portable bf16) */
    const fn_layernorm_kernels *layernorm;
    const fn_attention_kernels *attention;
    const fn_optim_kernels *optim;
    const fn_transformer_kernels *transformer;
    const fn_loss_kernels *losses;
    const fn_activation_kernels *activations; /* elementwise activations, softmax rows */
} fn_kernel_table;

/* The table of the current CPU path. */
const fn_kernel_table *fn_kernels(void);
/* The table of a given path (cpu.c calls it when the path changes). */
const fn_kernel_table *fn_kernel_table_for(fn_cpu_path path);

extern const fn_layernorm_kernels fn_layernorm_generic;
extern const fn_attention_kernels fn_attention_generic;
extern const fn_optim_kernels fn_optim_generic;
extern const fn_transformer_kernels fn_transformer_generic;
extern const fn_loss_kernels fn_losses_generic;
extern const fn_activation_kernels fn_activations_generic;
#ifdef FN_SIMD_X86
extern const fn_layernorm_kernels fn_layernorm_avx2, fn_layernorm_avx512;
extern const fn_attention_kernels fn_attention_avx2, fn_attention_avx512;
extern const fn_optim_kernels fn_optim_avx2, fn_optim_avx512;
extern const fn_transformer_kernels fn_transformer_avx2, fn_transformer_avx512;
extern const fn_loss_kernels fn_losses_avx2, fn_losses_avx512;
extern const fn_activation_kernels fn_activations_avx2, fn_activations_avx512;
#endif

#endif /* FN_KERNELS_H */
