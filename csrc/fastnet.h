/* fastnet.h - the whole C API of fastnet's compiled core.
 *
 * Plain C11, no Python. Every function takes raw pointers, sizes, strides
 * (leading dimensions, in elements) and an n_threads, and returns an
 * fn_status. Nothing here allocates inside a hot loop, prints, or aborts.
 * Matrices are row-major: element (i, j) of A lives at a[i * lda + j].
 *
 * Names follow fn_<op>_<dtype>: _f32 is the fast path, _f64 a plain path
 * used to check gradients tightly.
 */
#ifndef FASTNET_H
#define FASTNET_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    FN_OK = 0,
    FN_ERR_ARG = 1,       /* a size, stride or option is invalid */
    FN_ERR_NOMEM = 2,     /* scratch memory could not be allocated */
    FN_ERR_NONFINITE = 3, /* a NaN or Inf where a finite value is required */
    FN_ERR_LABEL = 4,     /* a class label outside [0, n_classes) */
    FN_ERR_CPU = 5        /* the requested CPU path is not supported here */
} fn_status;

/* fn_activation (FN_ACT_IDENTITY, FN_ACT_SIGMOID, ...), FN_ACT_COUNT, and
 * fn_activation_info(): generated from the one table in activations.h. */
#include "activations.h"

typedef enum {
    FN_CPU_GENERIC = 0, /* portable C, runs everywhere */
    FN_CPU_AVX2 = 1,    /* AVX2 + FMA micro-kernels */
    FN_CPU_AVX512 = 2   /* AVX-512F micro-kernels */
} fn_cpu_path;

/* The low-precision matrix units (bf16 and int8 GEMMs), a second dial beside
 * fn_cpu_path. Each level implies the ones below it (every CPU with AMX has
 * AVX512-BF16 and AVX512-VNNI; every one with AVX512-BF16 has VNNI), and
 * every level above GENERIC needs the AVX512 float32 path. */
typedef enum {
    FN_MMA_GENERIC = 0,     /* float32 kernels on bf16-rounded operands; int8 in portable C */
    FN_MMA_AVX512_VNNI = 1, /* int8 through VPDPBUSD */
    FN_MMA_AVX512_BF16 = 2, /* + bf16 through VDPBF16PS */
    FN_MMA_AMX = 3          /* + AMX tiles: TDPBF16PS and TDPBSSD/TDPBUSD */
} fn_mma_path;

/* What the AMX tile-data permission request (Linux arch_prctl) gave. */
typedef enum {
    FN_AMX_UNSUPPORTED = 0, /* the CPU (or the compiler) has no AMX */
    FN_AMX_GRANTED = 1,
    FN_AMX_REFUSED = 2      /* the OS said no: AMX is not used */
} fn_amx_permission;

/* ---- configuration (cpu.c) ---------------------------------------------- */
fn_cpu_path fn_cpu_best_path(void);           /* best path this CPU supports */
fn_status fn_cpu_set_path(fn_cpu_path path);  /* FN_ERR_CPU if unsupported */
fn_cpu_path fn_cpu_get_path(void);
const char *fn_cpu_path_name(fn_cpu_path path);
/* The kernel table the float32 kernels run from now: the name of the path it
 * was built for (it follows fn_cpu_set_path). */
const char *fn_kernel_table_name(void);
fn_mma_path fn_mma_best_path(void);           /* asks for AMX permission once */
fn_status fn_mma_set_path(fn_mma_path path);  /* FN_ERR_CPU if unsupported */
fn_mma_path fn_mma_get_path(void);
const char *fn_mma_path_name(fn_mma_path path);
/* The int8 kernels the current paths run: amx, avx512_vnni, avx2 or generic. */
const char *fn_int8_kernel_name(void);
fn_amx_permission fn_amx_permission_status(void);
/* Test hook: behave as if the OS refused AMX (from the next detection on). */
void fn_amx_simulate_refusal(int refuse);
/* The path a CPU with these features would get (pure; for tests): the
 * features are CPUID bits already confirmed by the OS. */
fn_mma_path fn_mma_path_for(int avx512, int avx512_vnni, int avx512_bf16, int amx,
                            fn_amx_permission permission);
int fn_openmp_enabled(void);                  /* 1 when built with OpenMP */
int fn_max_threads(void);                     /* OpenMP's default team size, 1 without */

/* ---- GEMM (gemm*.c) ------------------------------------------------------
 * C = alpha * op(A) * op(B) + beta * C, op(X) = X or X^T.
 * op(A) is m x k, op(B) is k x n, C is m x n. When trans_a is 0, A is stored
 * m x k with leading dimension lda; when 1, A is stored k x m. Likewise B.
 * beta == 0 means C is write-only (NaNs in C are not propagated).
 */
fn_status fn_gemm_f32(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                      float alpha, const float *a, int64_t lda,
                      const float *b, int64_t ldb,
                      float beta, float *c, int64_t ldc, int n_threads);
/* dst (cols x rows, leading dimension ldd) = src (rows x cols, leading
 * dimension lds) transposed: a plain copy, through the current path's
 * registers (the float32 GEMM's transposing packing). */
fn_status fn_transpose_f32(int64_t rows, int64_t cols, const float *src, int64_t lds, float *dst, int64_t ldd,
                           int n_threads);
/* A float32 B (k x n, or n x k when trans_b) packed once for the current
 * path's kernels, so that products sharing it (a decoding run's weights) skip
 * packing it at every call: fn_sgemm_packed_b_floats gives the floats of the
 * packed form and the panel width it is laid out for (*nr); fn_sgemm_pack_b
 * fills it and refuses another nr (FN_ERR_ARG: the path changed since). */
int64_t fn_sgemm_packed_b_floats(int64_t k, int64_t n, int *nr);
fn_status fn_sgemm_pack_b(int trans_b, int64_t k, int64_t n, const float *b, int64_t ldb, float *dst, int nr);
fn_status fn_gemm_f64(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                      double alpha, const double *a, int64_t lda,
                      const double *b, int64_t ldb,
                      double beta, double *c, int64_t ldc, int n_threads);

/* ---- bfloat16 (bf16.c, gemm_bf16_avx512.c, gemm_amx.c) -------------------
 * bf16 keeps float32's sign and exponent and the top 7 mantissa bits. A
 * float32 is rounded to bf16 as the hardware does (VCVTNEPS2BF16): round to
 * nearest even, NaN stays a (quiet) NaN, denormals become zero of the same
 * sign. fn_gemm_bf16 takes and returns float32 arrays: op(A) and op(B) are
 * rounded to bf16 while they are packed, products are exact and summed in
 * float32. Same arguments and meaning as fn_gemm_f32.
 */
fn_status fn_f32_to_bf16(const float *x, uint16_t *out, int64_t n);
fn_status fn_bf16_to_f32(const uint16_t *x, float *out, int64_t n);
/* x rounded to the nearest bf16, kept as float32 (out may alias x). */
fn_status fn_round_bf16_f32(const float *x, float *out, int64_t n);
fn_status fn_gemm_bf16(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                       float alpha, const float *a, int64_t lda,
                       const float *b, int64_t ldb,
                       float beta, float *c, int64_t ldc, int n_threads);

/* ---- int8 inference (int8.c, int8_vnni.c, gemm_amx.c) ---------------------
 * Symmetric quantisation: q = round-to-nearest-even(v * 127 / max|v|), |q| <=
 * 127, scale = max|v| / 127 (v ~ q * scale). Activations per row
 * (fn_quantize_rows_s8; a row holding NaN or infinity gets a NaN scale),
 * weights per output column (fn_quantize_columns_s8; FN_ERR_NONFINITE unless
 * finite). fn_pack_s8 lays a k x n int8 weight matrix out for the kernels
 * (in the number of bytes fn_s8_packed_bytes gives) and writes its n column sums.
 * fn_gemm_s8s32: C (int32, exact) = A (m x k, int8) @ B (packed).
 * fn_dense_forward_s8: y = act((float)acc[i,j] * (sx[i] * sw[j]) + bias[j]),
 * x quantised per row on the fly; the same bits on every path.
 */
fn_status fn_s8_packed_bytes(int64_t k, int64_t n, int64_t *bytes);
fn_status fn_quantize_rows_s8(const float *x, int64_t m, int64_t k, int64_t ldx, int8_t *q, float *scale);
fn_status fn_quantize_columns_s8(const float *w, int64_t k, int64_t n, int64_t ldw, int8_t *q, float *scale);
fn_status fn_pack_s8(const int8_t *q, int64_t k, int64_t n, int8_t *packed, int32_t *colsum);
fn_status fn_gemm_s8s32(int64_t m, int64_t n, int64_t k, const int8_t *a, int64_t lda,
                        const int8_t *packed_b, const int32_t *colsum, int32_t *c, int64_t ldc, int n_threads);
fn_status fn_dense_forward_s8(int64_t m, int64_t n, int64_t k, const float *x, int64_t ldx,
                              const int8_t *packed_w, const int32_t *colsum, const float *w_scale,
                              const float *bias, fn_activation act, float act_param,
                              float *y, int64_t ldy, int n_threads);

/* ---- dense layer (dense.c) ----------------------------------------------
 * Forward: y = act(x @ w + bias), x is m x k, w is k x n, bias is n (or NULL),
 * y is m x n. Bias and activation are applied in the GEMM epilogue while the
 * tile is still in registers/L1, so the layer is one pass over y.
 * pre (m x n, or NULL) receives x @ w + bias; the backward needs it when the
 * activation's derivative reads its input (fn_activation_backward_reads).
 */
fn_status fn_dense_forward_f32(int64_t m, int64_t n, int64_t k,
                               const float *x, int64_t ldx,
                               const float *w, int64_t ldw,
                               const float *bias, fn_activation act, float act_param,
                               float *y, int64_t ldy, float *pre, int n_threads);
/* fn_dense_forward_f32 with w packed by fn_sgemm_pack_b for panels of nr
 * columns: bitwise the same y and pre. FN_ERR_ARG if the current path's
 * kernels read another nr. */
fn_status fn_dense_forward_packed_f32(int64_t m, int64_t n, int64_t k,
                                      const float *x, int64_t ldx,
                                      const float *packed_w, int nr,
                                      const float *bias, fn_activation act, float act_param,
                                      float *y, int64_t ldy, float *pre, int n_threads);
fn_status fn_dense_forward_f64(int64_t m, int64_t n, int64_t k,
                               const double *x, int64_t ldx,
                               const double *w, int64_t ldw,
                               const double *bias, fn_activation act, double act_param,
                               double *y, int64_t ldy, double *pre, int n_threads);
/* The same with the GEMM in bf16 (fn_gemm_bf16); bias and activation in float32. */
fn_status fn_dense_forward_bf16(int64_t m, int64_t n, int64_t k,
                                const float *x, int64_t ldx,
                                const float *w, int64_t ldw,
                                const float *bias, fn_activation act, float act_param,
                                float *y, int64_t ldy, float *pre, int n_threads);
/* Backward of the dense layer given dy (m x n):
 *   dz = dy * act'(.)          written to dz (m x n scratch, contiguous)
 *   dw = x^T @ dz (+ dw if accumulate)      k x n
 *   db = column sums of dz (+ db if accumulate), n, or NULL to skip
 *   dx = dz @ w^T                           m x k, or NULL to skip
 * y is the forward output, pre the pre-activation: the one of them that
 * fn_activation_backward_reads(act, act_param, pre != NULL, y != NULL) names
 * is read (FN_ERR_ARG when neither will do).
 * dz may alias dy (the derivative is then applied in place).
 */
fn_status fn_dense_backward_f32(int64_t m, int64_t n, int64_t k,
                                const float *x, const float *w, const float *y,
                                const float *pre, const float *dy,
                                fn_activation act, float act_param,
                                float *dz, float *dx, float *dw, float *db,
                                int accumulate, int n_threads);
/* The same with both GEMMs in bf16; dz, db and the accumulation in float32. */
fn_status fn_dense_backward_bf16(int64_t m, int64_t n, int64_t k,
                                 const float *x, const float *w, const float *y,
                                 const float *pre, const float *dy,
                                 fn_activation act, float act_param,
                                 float *dz, float *dx, float *dw, float *db,
                                 int accumulate, int n_threads);
fn_status fn_dense_backward_f64(int64_t m, int64_t n, int64_t k,
                                const double *x, const double *w, const double *y,
                                const double *pre, const double *dy,
                                fn_activation act, double act_param,
                                double *dz, double *dx, double *dw, double *db,
                                int accumulate, int n_threads);

/* ---- activations (activations.c), n contiguous elements -------------------
 * Backward: dx = dy * act'(x), from x or y (the forward output): the one
 * fn_activation_backward_reads names for what is passed (FN_ERR_ARG when
 * neither will do). dx may alias dy.
 */
fn_status fn_activation_forward_f32(fn_activation act, float act_param,
                                    const float *x, float *y, int64_t n, int n_threads);
fn_status fn_activation_forward_f64(fn_activation act, double act_param,
                                    const double *x, double *y, int64_t n, int n_threads);
fn_status fn_activation_backward_f32(fn_activation act, float act_param,
                                     const float *x, const float *y, const float *dy,
                                     float *dx, int64_t n, int n_threads);
fn_status fn_activation_backward_f64(fn_activation act, double act_param,
                                     const double *x, const double *y, const double *dy,
                                     double *dx, int64_t n, int n_threads);
/* Row-wise softmax of a rows x cols contiguous matrix (row max subtracted). */
fn_status fn_softmax_forward_f32(const float *x, float *y, int64_t rows, int64_t cols, int n_threads);
fn_status fn_softmax_forward_f64(const double *x, double *y, int64_t rows, int64_t cols, int n_threads);
/* dx = y * (dy - sum(dy * y)) per row. */
fn_status fn_softmax_backward_f32(const float *y, const float *dy, float *dx,
                                  int64_t rows, int64_t cols, int n_threads);
fn_status fn_softmax_backward_f64(const double *y, const double *dy, double *dx,
                                  int64_t rows, int64_t cols, int n_threads);

/* ---- losses (losses.c) ----------------------------------------------------
 * All losses are means. Reductions are summed in a fixed order that does not
 * depend on n_threads, so results are bitwise reproducible.
 *
 * Softmax cross-entropy with integer labels. Rows whose label equals
 * ignore_index count for nothing. label_smoothing in [0, 1) mixes the one-hot
 * target with the uniform distribution. *loss = mean over counted rows;
 * dlogits (or NULL) receives d(loss)/d(logits); *n_counted the counted rows.
 * row_loss is caller-provided scratch of `rows` elements.
 * FN_ERR_LABEL if a label (other than ignore_index) is outside [0, cols).
 */
fn_status fn_softmax_xent_f32(const float *logits, const int64_t *labels,
                              int64_t rows, int64_t cols, int64_t ignore_index,
                              float label_smoothing, float *row_loss,
                              double *loss, float *dlogits, int64_t *n_counted,
                              int n_threads);
fn_status fn_softmax_xent_f64(const double *logits, const int64_t *labels,
                              int64_t rows, int64_t cols, int64_t ignore_index,
                              double label_smoothing, double *row_loss,
                              double *loss, double *dlogits, int64_t *n_counted,
                              int n_threads);
/* Mean squared error over n elements; dpred (or NULL) = 2 (pred - target) / n. */
fn_status fn_mse_f32(const float *pred, const float *target, int64_t n,
                     double *loss, float *dpred, int n_threads);
fn_status fn_mse_f64(const double *pred, const double *target, int64_t n,
                     double *loss, double *dpred, int n_threads);
/* Binary cross-entropy on logits (stable: max(z,0) - z t + log1p(exp(-|z|))). */
fn_status fn_bce_logits_f32(const float *logits, const float *target, int64_t n,
                            double *loss, float *dlogits, int n_threads);
fn_status fn_bce_logits_f64(const double *logits, const double *target, int64_t n,
                            double *loss, double *dlogits, int n_threads);

/* ---- optimizers (optim.c): one call updates a whole flat buffer -----------
 * SGD: g' = g + weight_decay * w; v = momentum * v + g';
 *      w -= lr * (nesterov ? g' + momentum * v : v)   (v may be NULL when momentum == 0)
 * Adam (decoupled = 0): g' = g + weight_decay * w, L2 folded into the gradient.
 * AdamW (decoupled = 1): w -= lr * weight_decay * w, then the Adam step on g.
 *   m = b1 m + (1-b1) g'; v = b2 v + (1-b2) g'^2;
 *   w -= lr * (m / (1-b1^step)) / (sqrt(v / (1-b2^step)) + eps); step >= 1.
 */
fn_status fn_sgd_step_f32(float *w, const float *g, float *velocity, int64_t n,
                          float lr, float momentum, float weight_decay, int nesterov,
                          int n_threads);
fn_status fn_sgd_step_f64(double *w, const double *g, double *velocity, int64_t n,
                          double lr, double momentum, double weight_decay, int nesterov,
                          int n_threads);
fn_status fn_adam_step_f32(float *w, const float *g, float *m, float *v, int64_t n,
                           float lr, float beta1, float beta2, float eps,
                           float weight_decay, int decoupled, int64_t step, int n_threads);
fn_status fn_adam_step_f64(double *w, const double *g, double *m, double *v, int64_t n,
                           double lr, double beta1, double beta2, double eps,
                           double weight_decay, int decoupled, int64_t step, int n_threads);
/* Sum of squares (for global-norm gradient clipping), fixed summation order. */
fn_status fn_sum_squares_f32(const float *x, int64_t n, double *out, int n_threads);
fn_status fn_sum_squares_f64(const double *x, int64_t n, double *out, int n_threads);
/* x *= scale in place. */
fn_status fn_scale_f32(float *x, int64_t n, float scale, int n_threads);
fn_status fn_scale_f64(double *x, int64_t n, double scale, int n_threads);

/* ---- transformer kernels (transformer.c, layernorm.c, attention.c) -------
 * Same inputs and any n_threads give bitwise the same result in all of them.
 */
/* Embedding gather: out[i, :] = table[ids[i], :] for the n ids; table is
 * vocab x dim, out n x dim. FN_ERR_LABEL when an id is outside [0, vocab);
 * *bad_pos then receives the first such position (nothing is written). */
fn_status fn_embedding_forward_f32(const int64_t *ids, int64_t n, const float *table,
                                   int64_t vocab, int64_t dim, float *out,
                                   int64_t *bad_pos, int n_threads);
fn_status fn_embedding_forward_f64(const int64_t *ids, int64_t n, const double *table,
                                   int64_t vocab, int64_t dim, double *out,
                                   int64_t *bad_pos, int n_threads);
/* Embedding scatter-add: dtable[ids[i], :] += dout[i, :] (dtable vocab x dim,
 * dout n x dim). Every column adds its rows in the order of i whatever the
 * thread count. Ids are checked first, as in the forward. */
fn_status fn_embedding_backward_f32(const int64_t *ids, int64_t n, const float *dout,
                                    int64_t vocab, int64_t dim, float *dtable,
                                    int64_t *bad_pos, int n_threads);
fn_status fn_embedding_backward_f64(const int64_t *ids, int64_t n, const double *dout,
                                    int64_t vocab, int64_t dim, double *dtable,
                                    int64_t *bad_pos, int n_threads);

/* Layer normalisation of each row of x (rows x dim, contiguous):
 *   y = (x - mean) * rstd * gamma + beta,  rstd = 1 / sqrt(var + eps)
 * with the biased variance; mean and rstd (rows each) are saved for backward. */
fn_status fn_layer_norm_forward_f32(const float *x, const float *gamma, const float *beta,
                                    int64_t rows, int64_t dim, float eps,
                                    float *y, float *mean, float *rstd, int n_threads);
fn_status fn_layer_norm_forward_f64(const double *x, const double *gamma, const double *beta,
                                    int64_t rows, int64_t dim, double eps,
                                    double *y, double *mean, double *rstd, int n_threads);
/* dx (rows x dim); dgamma, dbeta (dim) are column sums over the rows, added
 * in row order (overwritten, not accumulated). dx may alias dy. */
fn_status fn_layer_norm_backward_f32(const float *dy, const float *x, const float *gamma,
                                     const float *mean, const float *rstd,
                                     int64_t rows, int64_t dim,
                                     float *dx, float *dgamma, float *dbeta, int n_threads);
fn_status fn_layer_norm_backward_f64(const double *dy, const double *x, const double *gamma,
                                     const double *mean, const double *rstd,
                                     int64_t rows, int64_t dim,
                                     double *dx, double *dgamma, double *dbeta, int n_threads);

/* Multi-head scaled dot-product attention.
 * q is batch x tq x heads x dh, k and v batch x tk x heads x dh: a (B, T, D)
 * projection viewed as (B, T, H, D/H), so no head transposes are needed.
 * Element (b, t, h, d) of q lives at q[b * q_sb + t * q_st + h * dh + d]
 * (heads x dh contiguous; the batch and time strides are free, so slices of
 * a fused projection work). out is contiguous batch x tq x heads x dh, probs
 * contiguous batch x heads x tq x tk (kept for the backward).
 * key_padding_mask (batch x tk, 1 = padding, or NULL) and causal (query i
 * sees key j only when j <= i + tk - tq) remove keys; a row with no key left
 * gives probs and out of zeros. Scores are scaled by 1/sqrt(dh).
 * kv_rows (batch entries, or NULL for row b itself): query row b attends to
 * row kv_rows[b] of k, v and the mask, which may then have any number of
 * rows (the caller checks the indices); decoding uses it to read the encoder
 * memory in place as sentences finish or beams reorder. */
fn_status fn_attention_forward_f32(int64_t batch, int64_t tq, int64_t tk, int64_t heads, int64_t dh,
                                   const float *q, int64_t q_sb, int64_t q_st,
                                   const float *k, int64_t k_sb, int64_t k_st,
                                   const float *v, int64_t v_sb, int64_t v_st,
                                   const uint8_t *key_padding_mask, const int64_t *kv_rows, int causal,
                                   float *out, float *probs, int n_threads);
fn_status fn_attention_forward_f64(int64_t batch, int64_t tq, int64_t tk, int64_t heads, int64_t dh,
                                   const double *q, int64_t q_sb, int64_t q_st,
                                   const double *k, int64_t k_sb, int64_t k_st,
                                   const double *v, int64_t v_sb, int64_t v_st,
                                   const uint8_t *key_padding_mask, const int64_t *kv_rows, int causal,
                                   double *out, double *probs, int n_threads);
/* Backward of the attention given dout (strided like q, with do_sb, do_st)
 * and the forward's probs. dq (batch x tq x heads x dh), dk and dv
 * (batch x tk x heads x dh) are overwritten; they are strided like q too
 * (heads x dh contiguous), so they can be slices of one fused gradient
 * buffer. They must not overlap each other or any input. */
fn_status fn_attention_backward_f32(int64_t batch, int64_t tq, int64_t tk, int64_t heads, int64_t dh,
                                    const float *dout, int64_t do_sb, int64_t do_st,
                                    const float *q, int64_t q_sb, int64_t q_st,
                                    const float *k, int64_t k_sb, int64_t k_st,
                                    const float *v, int64_t v_sb, int64_t v_st,
                                    const float *probs,
                                    float *dq, int64_t dq_sb, int64_t dq_st,
                                    float *dk, int64_t dk_sb, int64_t dk_st,
                                    float *dv, int64_t dv_sb, int64_t dv_st, int n_threads);
fn_status fn_attention_backward_f64(int64_t batch, int64_t tq, int64_t tk, int64_t heads, int64_t dh,
                                    const double *dout, int64_t do_sb, int64_t do_st,
                                    const double *q, int64_t q_sb, int64_t q_st,
                                    const double *k, int64_t k_sb, int64_t k_st,
                                    const double *v, int64_t v_sb, int64_t v_st,
                                    const double *probs,
                                    double *dq, int64_t dq_sb, int64_t dq_st,
                                    double *dk, int64_t dk_sb, int64_t dk_st,
                                    double *dv, int64_t dv_sb, int64_t dv_st, int n_threads);

/* Dropout of n contiguous elements: mask[i] = 1 keeps x[i] (scaled by
 * 1 / (1 - p)), 0 drops it. The keep decision is a counter-based hash of
 * (seed, i), so it depends on neither the thread count nor the CPU path:
 *   key = low 32 bits of splitmix64(splitmix64(seed) + (i >> 32) * 0x9E3779B97F4A7C15)
 *   h   = mix32((uint32)i * 0x9E3779B9 + key), mix32(x): x ^= x >> 16;
 *         x *= 0x7FEB352D; x ^= x >> 15; x *= 0x846CA68B; x ^= x >> 16
 *   kept when h >> 8 >= floor(p * 2^24).
 * p must be in [0, 1). y may alias x. */
fn_status fn_dropout_forward_f32(const float *x, float *y, uint8_t *mask, int64_t n,
                                 double p, uint64_t seed, int n_threads);
fn_status fn_dropout_forward_f64(const double *x, double *y, uint8_t *mask, int64_t n,
                                 double p, uint64_t seed, int n_threads);
/* dx = dy * mask / (1 - p); dx may alias dy. */
fn_status fn_dropout_backward_f32(const float *dy, const uint8_t *mask, float *dx, int64_t n,
                                  double p, int n_threads);
fn_status fn_dropout_backward_f64(const double *dy, const uint8_t *mask, double *dx, int64_t n,
                                  double p, int n_threads);

/* Residual add: out = a + b over n elements; out may alias a or b. */
fn_status fn_add_f32(const float *a, const float *b, float *out, int64_t n, int n_threads);
fn_status fn_add_f64(const double *a, const double *b, double *out, int64_t n, int n_threads);

/* ---- one decoder layer's incremental step (decoder_step.c) ---------------
 * The inference step of a pre-norm transformer decoder layer (causal
 * self-attention over a key/value cache, cross-attention to the encoder
 * memory, feed-forward, each around a residual), one new position per row,
 * in one call: the kernels above in the order the layer-by-layer path calls
 * them, so the same bits for the same inputs, without the per-kernel cost of
 * the caller's language.
 *
 * A dense layer is float32 weights w (n_in x n_out, multiplied in bf16 when
 * bf16 is set), or int8 ones (packed_w, colsum and w_scale as fn_pack_s8 and
 * fn_quantize_columns_s8 make them, w unused). */
typedef struct {
    int64_t n_in, n_out;
    const float *w;
    int bf16;
    const int8_t *packed_w;
    const int32_t *colsum;
    const float *w_scale;
    const float *bias; /* n_out, or NULL */
    fn_activation act;
    float act_param;
} fn_dense_params;

typedef struct {
    const float *gamma, *beta; /* d_model each */
    float eps;
} fn_norm_params;

typedef struct {
    int64_t d_model, heads, d_ff;
    fn_norm_params norm1, norm2, norm3;
    fn_dense_params qkv, self_out;       /* D -> 3D (queries, keys, values), D -> D */
    fn_dense_params cross_q, cross_out;  /* D -> D, D -> D */
    fn_dense_params ff_up, ff_down;      /* D -> d_ff (with the activation), d_ff -> D */
} fn_decoder_layer_params;

/* One step's data. x (batch x d_model, contiguous) is the input and becomes
 * the output. The cache holds `length` positions per row; the step writes
 * position `length` (< capacity): row b, position t of the keys at
 * cache_k + b * cache_sb + t * d_model (the same for values). memory_kv is
 * the encoder memory's keys and values, (rows, src_len, 2, d_model)
 * contiguous; query row b reads memory row memory_rows[b] (b when NULL) and
 * its mask row (batch x src_len, 1 = padding, or NULL). The caller checks
 * that memory_rows lie within the memory. scratch holds
 * fn_decoder_step_scratch(batch, d_model, heads, d_ff, max(length + 1, src_len))
 * floats. */
typedef struct {
    int64_t batch;
    float *x;
    float *cache_k, *cache_v;
    int64_t cache_sb, length, capacity;
    const float *memory_kv;
    int64_t src_len;
    const uint8_t *memory_mask;
    const int64_t *memory_rows;
    float *scratch;
} fn_decoder_step_args;

int64_t fn_decoder_step_scratch(int64_t batch, int64_t d_model, int64_t heads, int64_t d_ff, int64_t max_keys);
fn_status fn_decoder_layer_step_f32(const fn_decoder_layer_params *p, const fn_decoder_step_args *a,
                                    int n_threads);

/* A whole decoder step: x = table[ids] * scale + positions[position], each
 * layer in turn (its fn_decoder_step_args give its cache and memory; batch, x
 * and scratch are set here), then out = final_norm(x). stream (batch x
 * d_model) holds x; scratch is the largest fn_decoder_step_scratch of the
 * layers (at least 2 x batch). An id outside [0, vocab) gives FN_ERR_LABEL
 * with its index in *bad_id (or -1), before anything else is written. */
typedef struct {
    int64_t n_layers, d_model, vocab, max_len;
    const fn_decoder_layer_params *const *layers;
    const float *table; /* vocab x d_model */
    float scale;
    const float *positions; /* max_len x d_model */
    fn_norm_params final_norm;
} fn_decoder_params;

typedef struct {
    int64_t batch;
    const int64_t *ids;
    int64_t position;
    const fn_decoder_step_args *layers; /* n_layers */
    float *stream, *out, *scratch;
} fn_decoder_stack_args;

fn_status fn_decoder_step_f32(const fn_decoder_params *p, const fn_decoder_stack_args *a, int64_t *bad_id,
                              int n_threads);
/* How many threads fn_decoder_step_f32 splits a batch's rows over (1: the
 * kernels use the n_threads themselves). */
int fn_decoder_step_threads(const fn_decoder_params *p, int64_t batch, int n_threads);

/* ---- beam search's candidates (beam.c) ------------------------------------
 * For each of `sentences`, the n best of beam x vocab candidates, candidate
 * (k, v) scoring scores[a * beam + k] + logp[(a * beam + k) * vocab + v]:
 * values (sentences x n) best first, equal values by the lower index
 * k * vocab + v, which goes to indices. Candidates that are not finite rank
 * after every finite one and are left out: their slots get -inf and -1. */
fn_status fn_beam_candidates_f64(const double *scores, const double *logp, int64_t sentences, int64_t beam,
                                 int64_t vocab, int64_t n, double *values, int64_t *indices, int n_threads);

#ifdef __cplusplus
}
#endif
#endif /* FASTNET_H */
