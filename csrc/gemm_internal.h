/* gemm_internal.h - what the sgemm driver (gemm.c) shares with its
 * micro-kernels (gemm.c portable, gemm_avx2.c, gemm_avx512.c) and with the
 * dense layer (dense.c). Not part of the public API.
 *
 * Layout of the packed operands (GotoBLAS/BLIS):
 *   packed B: panels of NR columns; inside a panel, row p of the panel is NR
 *             contiguous floats (b[p * NR + j]); columns past n are zero.
 *   packed A: slivers of MR rows; inside a sliver, column p is MR contiguous
 *             floats (a[p * MR + i]).
 * The micro-kernel reads A through two strides (rsa between rows, csa between
 * columns), so it runs on a packed sliver (rsa = 1, csa = MR) or straight on
 * the caller's A (rsa = lda, csa = 1, or transposed) for small shapes, where
 * packing A costs more than it saves. B rows are NR floats rsb apart: a packed
 * panel (rsb = NR) or, for small untransposed B, the caller's B (rsb = ldb)
 * for every full-width panel.
 */
#ifndef FN_GEMM_INTERNAL_H
#define FN_GEMM_INTERNAL_H

#include "fn_internal.h"

/* What a dense layer does to a finished tile of C ("epilogue"): add the bias,
 * keep a copy of the pre-activation, apply the activation. */
typedef struct {
    const float *bias;  /* n floats or NULL */
    fn_activation act;
    float act_param;
    float *pre;         /* m x n (leading dimension ldpre) or NULL */
    int64_t ldpre;
} fn_epilogue_f32;

/* C[0:mr, 0:nr] = alpha * A[0:mr, 0:kc] B[0:kc, 0:NR] + beta * C, where
 * mr <= MR, nr <= NR; beta == 0 writes C without reading it. Each element's
 * k-sum runs p = 0..kc-1 in order, whatever mr and nr are. */
typedef void (*fn_sgemm_kernel)(int mr, int nr, int64_t kc,
                                const float *a, int64_t rsa, int64_t csa,
                                const float *b, int64_t rsb, float *c, int64_t ldc,
                                float alpha, float beta);

/* Apply the epilogue to rows x cols of C at c (leading dimension ldc), whose
 * top-left element is C[i0, j0] of the whole matrix (for bias and pre). */
typedef void (*fn_sgemm_epilogue)(float *c, int64_t ldc, int64_t rows, int64_t cols,
                                  int64_t i0, int64_t j0, const fn_epilogue_f32 *epi);

typedef struct {
    const char *name;
    int mr, nr;            /* register tile */
    int64_t mc, kc, nc;    /* cache blocking; mc is a multiple of mr */
    fn_sgemm_kernel kernel;
    fn_sgemm_epilogue epilogue;
} fn_sgemm_arch;

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#define FN_GEMM_X86 1
extern const fn_sgemm_arch fn_sgemm_arch_avx2;
extern const fn_sgemm_arch fn_sgemm_arch_avx512;
#endif
extern const fn_sgemm_arch fn_sgemm_arch_generic;

/* The micro-kernel set for the current CPU path. */
const fn_sgemm_arch *fn_sgemm_arch_current(void);

/* The packed driver behind fn_gemm_f32 and fn_dense_forward_f32: epi may be
 * NULL (plain GEMM). Arguments are already validated. */
fn_status fn_sgemm_run(const fn_sgemm_arch *arch, int trans_a, int trans_b,
                       int64_t m, int64_t n, int64_t k, float alpha,
                       const float *a, int64_t lda, const float *b, int64_t ldb,
                       float beta, float *c, int64_t ldc,
                       const fn_epilogue_f32 *epi, int n_threads);

/* Scalar activation shared by all epilogues (same formulas as activations.c). */
float fn_epilogue_act_scalar(fn_activation act, float param, float z);
/* Portable epilogue, also the fallback of the SIMD ones for
 * transcendental activations. */
void fn_sgemm_epilogue_scalar(float *c, int64_t ldc, int64_t rows, int64_t cols,
                              int64_t i0, int64_t j0, const fn_epilogue_f32 *epi);

#ifdef FN_HAVE_OPENMP
#define FN_BARRIER() FN_PRAGMA(omp barrier)
#else
#define FN_BARRIER()
#endif

#endif /* FN_GEMM_INTERNAL_H */
