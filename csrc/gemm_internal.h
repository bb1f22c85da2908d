/* gemm_internal.h - what the sgemm driver (gemm.c) shares with its
 * micro-kernels (gemm.c portable; gemm_kernel.h, instantiated by gemm_avx2.c
 * and gemm_avx512.c) and with the dense layer (dense.c). Not part of the
 * public API.
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

/* The cases of a micro-kernel's switch over its row count: TILE(m) with m a
 * constant in each, so an always-inline tile specialises on it (unrolled row
 * loops, accumulators in registers). A 12-row kernel uses both lists. */
#define FN_GEMM_ROWS_12_TO_7(TILE)                                                   \
    case 12: TILE(12); break;                                                        \
    case 11: TILE(11); break;                                                        \
    case 10: TILE(10); break;                                                        \
    case 9: TILE(9); break;                                                          \
    case 8: TILE(8); break;                                                          \
    case 7: TILE(7); break;
#define FN_GEMM_ROWS_6_TO_1(TILE)                                                    \
    case 6: TILE(6); break;                                                          \
    case 5: TILE(5); break;                                                          \
    case 4: TILE(4); break;                                                          \
    case 3: TILE(3); break;                                                          \
    case 2: TILE(2); break;                                                          \
    default: TILE(1); break;

/* Apply the epilogue to rows x cols of C at c (leading dimension ldc), whose
 * top-left element is C[i0, j0] of the whole matrix (for bias and pre). */
typedef void (*fn_sgemm_epilogue)(float *c, int64_t ldc, int64_t rows, int64_t cols,
                                  int64_t i0, int64_t j0, const fn_epilogue_f32 *epi);

/* Packing of op(A) rows [ic, ic+mc) x k [pc, pc+kc) into slivers of mr rows,
 * and of op(B) panels [q0, q1) of nr columns (of the block starting at column
 * jc, nc wide). `units` is the packed length of the k range (see k_units): a
 * sliver takes mr * units 4-byte words, a panel nr * units. */
typedef void (*fn_pack_a)(const float *a, int64_t lda, int trans_a, int64_t ic, int64_t mc,
                          int64_t pc, int64_t kc, int64_t units, int mr, void *dst);
typedef void (*fn_pack_b)(const float *b, int64_t ldb, int trans_b, int64_t pc, int64_t kc,
                          int64_t units, int64_t jc, int64_t nc, int nr, int64_t q0, int64_t q1,
                          void *dst);

typedef struct {
    const char *name;
    int mr, nr;            /* register tile */
    int64_t mc, kc, nc;    /* cache blocking; mc is a multiple of mr */
    fn_sgemm_kernel kernel;
    fn_sgemm_epilogue epilogue;
    /* Low-precision variants: how k is stored (elements per 4-byte word, and
     * the multiple it is zero-padded to; non-zero also means "always pack":
     * the kernel cannot read the caller's float32 in place). Packing routines
     * (NULL: the float32 copies of gemm.c), and per-thread set-up and
     * tear-down around the kernel calls (AMX tile configuration). */
    int k_per_word, k_align;
    fn_pack_a pack_a;
    fn_pack_b pack_b;
    void (*thread_begin)(void);
    void (*thread_end)(void);
    /* dst (cols x rows, leading dimension ldd) = src (rows x cols, lds)
     * transposed, or NULL for gemm.c's portable copy (fn_transpose_f32). */
    void (*transpose)(const float *src, int64_t rows, int64_t cols, int64_t lds, float *dst, int64_t ldd);
} fn_sgemm_arch;

/* 4-byte words a packed k range of kc elements takes per row or column. */
static inline int64_t fn_k_units(const fn_sgemm_arch *arch, int64_t kc) {
    if (!arch->k_per_word) return kc;
    int64_t padded = (kc + arch->k_align - 1) / arch->k_align * arch->k_align;
    return padded / arch->k_per_word;
}

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#define FN_GEMM_X86 1
extern const fn_sgemm_arch fn_sgemm_arch_avx2;
extern const fn_sgemm_arch fn_sgemm_arch_avx512;
#endif
extern const fn_sgemm_arch fn_sgemm_arch_generic;

/* The micro-kernel set for the current CPU path. */
const fn_sgemm_arch *fn_sgemm_arch_current(void);

/* bf16: the float32 kernels of the current path on operands rounded to bf16
 * while packed (bf16.c), VDPBF16PS (gemm_bf16_avx512.c), AMX (gemm_amx.c). */
const fn_sgemm_arch *fn_bf16_arch_current(void);
#ifdef FN_HAVE_BF16_INTRIN
extern const fn_sgemm_arch fn_bf16_arch_avx512;
#endif
#ifdef FN_HAVE_AMX_INTRIN
extern const fn_sgemm_arch fn_bf16_arch_amx;
#endif

/* The float32 kernel sets with packers that round to bf16 (the portable bf16
 * path): defined beside each kernel set. */
#ifdef FN_GEMM_X86
extern const fn_sgemm_arch fn_sgemm_arch_avx2_rounded;
extern const fn_sgemm_arch fn_sgemm_arch_avx512_rounded;
#endif
extern const fn_sgemm_arch fn_sgemm_arch_generic_rounded;
void fn_pack_a_round_bf16(const float *a, int64_t lda, int trans_a, int64_t ic, int64_t mc,
                          int64_t pc, int64_t kc, int64_t units, int mr, void *dst);
void fn_pack_b_round_bf16(const float *b, int64_t ldb, int trans_b, int64_t pc, int64_t kc,
                          int64_t units, int64_t jc, int64_t nc, int nr, int64_t q0, int64_t q1,
                          void *dst);
/* The epilogues, one per CPU path, generated from the activation table
 * (activations.c); the bf16 and AMX kernels use the AVX-512 one. */
void fn_sgemm_epilogue_scalar(float *c, int64_t ldc, int64_t rows, int64_t cols,
                              int64_t i0, int64_t j0, const fn_epilogue_f32 *epi);
#ifdef FN_GEMM_X86
void fn_sgemm_epilogue_avx2(float *c, int64_t ldc, int64_t rows, int64_t cols,
                            int64_t i0, int64_t j0, const fn_epilogue_f32 *epi);
void fn_sgemm_epilogue_avx512(float *c, int64_t ldc, int64_t rows, int64_t cols,
                              int64_t i0, int64_t j0, const fn_epilogue_f32 *epi);
#endif

/* Float32 packing (gemm.c), also the first step of the rounding packers. */
void fn_pack_a_f32(const float *a, int64_t lda, int trans_a, int64_t ic, int64_t mc,
                   int64_t pc, int64_t kc, int64_t units, int mr, void *dst);
void fn_pack_b_f32(const float *b, int64_t ldb, int trans_b, int64_t pc, int64_t kc,
                   int64_t units, int64_t jc, int64_t nc, int nr, int64_t q0, int64_t q1, void *dst);

/* Hardware-exact float32 -> bf16 rounding (RNE, quiet NaN, denormals to 0). */
static inline uint16_t fn_bf16_from_f32(float x) {
    union { float f; uint32_t u; } v = {x};
    uint32_t u = v.u;
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u); /* NaN: quiet it */
    if ((u & 0x7f800000u) == 0) return (uint16_t)((u >> 16) & 0x8000u);          /* zero, denormal */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static inline float fn_f32_from_bf16(uint16_t h) {
    union { uint32_t u; float f; } v = {(uint32_t)h << 16};
    return v.f;
}

/* The packed driver behind fn_gemm_f32 and fn_dense_forward_f32: epi may be
 * NULL (plain GEMM). Arguments are already validated. */
fn_status fn_sgemm_run(const fn_sgemm_arch *arch, int trans_a, int trans_b,
                       int64_t m, int64_t n, int64_t k, float alpha,
                       const float *a, int64_t lda, const float *b, int64_t ldb,
                       float beta, float *c, int64_t ldc,
                       const fn_epilogue_f32 *epi, int n_threads);
/* The same with B packed once by fn_sgemm_pack_b for this arch (b_whole, k x n). */
fn_status fn_sgemm_run_packed_b(const fn_sgemm_arch *arch, int trans_a, int64_t m, int64_t n, int64_t k,
                                float alpha, const float *a, int64_t lda, const float *b_whole,
                                float beta, float *c, int64_t ldc, const fn_epilogue_f32 *epi,
                                int n_threads);


#ifdef FN_HAVE_OPENMP
#define FN_BARRIER() FN_PRAGMA(omp barrier)
#else
#define FN_BARRIER()
#endif

#endif /* FN_GEMM_INTERNAL_H */
