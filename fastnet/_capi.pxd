# The C API of csrc/fastnet.h, declared once for the Cython layer.
#
# _kernels.pyx (and every .pxi it includes) cimports these names; a new C
# function gets its one declaration here, in the section of its area. All
# functions return an fn_status (or a plain value) and never raise, so each is
# declared noexcept: the wrappers turn statuses into exceptions themselves
# (check_status in _common.pxi).
from libc.stdint cimport int8_t, int32_t, int64_t, uint8_t, uint16_t, uint64_t

cdef extern from "fastnet.h" nogil:
    # ---- status codes, activations, configuration and CPU paths (cpu.c)
    ctypedef enum fn_status:
        FN_OK
        FN_ERR_ARG
        FN_ERR_NOMEM
        FN_ERR_NONFINITE
        FN_ERR_LABEL
        FN_ERR_CPU
    # The activation table (csrc/activations.h): everything about an
    # activation that Cython and Python need is read from it.
    ctypedef enum fn_activation:
        FN_ACT_COUNT
    ctypedef enum fn_act_grad:
        FN_ACT_GRAD_DY
        FN_ACT_GRAD_X
        FN_ACT_GRAD_Y
        FN_ACT_GRAD_SIGN
        FN_ACT_GRAD_UNDEFINED
    ctypedef struct fn_activation_info_t:
        const char *name
        fn_act_grad grad
        int has_param
        const char *doc
    const fn_activation_info_t *fn_activation_info(fn_activation act) noexcept
    int fn_activation_backward_reads(fn_activation act, double act_param, int have_x, int have_y) noexcept
    ctypedef enum fn_cpu_path:
        FN_CPU_GENERIC
        FN_CPU_AVX2
        FN_CPU_AVX512
    fn_cpu_path fn_cpu_best_path() noexcept
    fn_status fn_cpu_set_path(fn_cpu_path path) noexcept
    fn_cpu_path fn_cpu_get_path() noexcept
    const char *fn_cpu_path_name(fn_cpu_path path) noexcept
    const char *fn_kernel_table_name() noexcept
    ctypedef enum fn_mma_path:
        FN_MMA_GENERIC
        FN_MMA_AVX512_VNNI
        FN_MMA_AVX512_BF16
        FN_MMA_AMX
    ctypedef enum fn_amx_permission:
        FN_AMX_UNSUPPORTED
        FN_AMX_GRANTED
        FN_AMX_REFUSED
    fn_mma_path fn_mma_best_path() noexcept
    fn_status fn_mma_set_path(fn_mma_path path) noexcept
    fn_mma_path fn_mma_get_path() noexcept
    const char *fn_mma_path_name(fn_mma_path path) noexcept
    const char *fn_int8_kernel_name() noexcept
    fn_amx_permission fn_amx_permission_status() noexcept
    void fn_amx_simulate_refusal(int refuse) noexcept
    fn_mma_path fn_mma_path_for(int avx512, int avx512_vnni, int avx512_bf16, int amx,
                                fn_amx_permission permission) noexcept
    int fn_openmp_enabled() noexcept
    int fn_max_threads() noexcept

    # ---- dense algebra (gemm*.c, dense.c)
    fn_status fn_gemm_f32(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                          float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                          float beta, float *c, int64_t ldc, int n_threads) noexcept
    fn_status fn_gemm_bf16(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                           float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                           float beta, float *c, int64_t ldc, int n_threads) noexcept
    fn_status fn_dense_forward_bf16(int64_t m, int64_t n, int64_t k, const float *x, int64_t ldx,
                                    const float *w, int64_t ldw, const float *bias,
                                    fn_activation act, float act_param,
                                    float *y, int64_t ldy, float *pre, int n_threads) noexcept
    fn_status fn_dense_backward_bf16(int64_t m, int64_t n, int64_t k, const float *x, const float *w,
                                     const float *y, const float *pre, const float *dy,
                                     fn_activation act, float act_param, float *dz, float *dx,
                                     float *dw, float *db, int accumulate, int n_threads) noexcept
    fn_status fn_transpose_f32(int64_t rows, int64_t cols, const float *src, int64_t lds, float *dst, int64_t ldd, int n_threads) noexcept
    fn_status fn_gemm_f64(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                          double alpha, const double *a, int64_t lda, const double *b, int64_t ldb,
                          double beta, double *c, int64_t ldc, int n_threads) noexcept
    fn_status fn_dense_forward_f32(int64_t m, int64_t n, int64_t k, const float *x, int64_t ldx,
                                   const float *w, int64_t ldw, const float *bias,
                                   fn_activation act, float act_param,
                                   float *y, int64_t ldy, float *pre, int n_threads) noexcept
    int64_t fn_sgemm_packed_b_floats(int64_t k, int64_t n, int *nr) noexcept
    fn_status fn_sgemm_pack_b(int trans_b, int64_t k, int64_t n, const float *b, int64_t ldb, float *dst,
                              int nr) noexcept
    fn_status fn_dense_forward_packed_f32(int64_t m, int64_t n, int64_t k, const float *x, int64_t ldx,
                                          const float *packed_w, int nr, const float *bias,
                                          fn_activation act, float act_param,
                                          float *y, int64_t ldy, float *pre, int n_threads) noexcept
    fn_status fn_dense_forward_f64(int64_t m, int64_t n, int64_t k, const double *x, int64_t ldx,
                                   const double *w, int64_t ldw, const double *bias,
                                   fn_activation act, double act_param,
                                   double *y, int64_t ldy, double *pre, int n_threads) noexcept
    fn_status fn_dense_backward_f32(int64_t m, int64_t n, int64_t k, const float *x, const float *w,
                                    const float *y, const float *pre, const float *dy,
                                    fn_activation act, float act_param, float *dz, float *dx,
                                    float *dw, float *db, int accumulate, int n_threads) noexcept
    fn_status fn_dense_backward_f64(int64_t m, int64_t n, int64_t k, const double *x, const double *w,
                                    const double *y, const double *pre, const double *dy,
                                    fn_activation act, double act_param, double *dz, double *dx,
                                    double *dw, double *db, int accumulate, int n_threads) noexcept

    # ---- activations, softmax, losses, optimizer steps (activations.c, losses.c, optim.c)
    fn_status fn_activation_forward_f32(fn_activation act, float act_param, const float *x, float *y,
                                        int64_t n, int n_threads) noexcept
    fn_status fn_activation_forward_f64(fn_activation act, double act_param, const double *x, double *y,
                                        int64_t n, int n_threads) noexcept
    fn_status fn_activation_backward_f32(fn_activation act, float act_param, const float *x, const float *y,
                                         const float *dy, float *dx, int64_t n, int n_threads) noexcept
    fn_status fn_activation_backward_f64(fn_activation act, double act_param, const double *x, const double *y,
                                         const double *dy, double *dx, int64_t n, int n_threads) noexcept
    fn_status fn_softmax_forward_f32(const float *x, float *y, int64_t rows, int64_t cols, int n_threads) noexcept
    fn_status fn_softmax_forward_f64(const double *x, double *y, int64_t rows, int64_t cols, int n_threads) noexcept
    fn_status fn_softmax_backward_f32(const float *y, const float *dy, float *dx, int64_t rows, int64_t cols,
                                      int n_threads) noexcept
    fn_status fn_softmax_backward_f64(const double *y, const double *dy, double *dx, int64_t rows, int64_t cols,
                                      int n_threads) noexcept
    fn_status fn_softmax_xent_f32(const float *logits, const int64_t *labels, int64_t rows, int64_t cols,
                                  int64_t ignore_index, float label_smoothing, float *row_loss, double *loss,
                                  float *dlogits, int64_t *n_counted, int n_threads) noexcept
    fn_status fn_softmax_xent_f64(const double *logits, const int64_t *labels, int64_t rows, int64_t cols,
                                  int64_t ignore_index, double label_smoothing, double *row_loss, double *loss,
                                  double *dlogits, int64_t *n_counted, int n_threads) noexcept
    fn_status fn_mse_f32(const float *pred, const float *target, int64_t n, double *loss, float *dpred,
                         int n_threads) noexcept
    fn_status fn_mse_f64(const double *pred, const double *target, int64_t n, double *loss, double *dpred,
                         int n_threads) noexcept
    fn_status fn_bce_logits_f32(const float *logits, const float *target, int64_t n, double *loss,
                                float *dlogits, int n_threads) noexcept
    fn_status fn_bce_logits_f64(const double *logits, const double *target, int64_t n, double *loss,
                                double *dlogits, int n_threads) noexcept
    fn_status fn_sgd_step_f32(float *w, const float *g, float *velocity, int64_t n, float lr, float momentum,
                              float weight_decay, int nesterov, int n_threads) noexcept
    fn_status fn_sgd_step_f64(double *w, const double *g, double *velocity, int64_t n, double lr,
                              double momentum, double weight_decay, int nesterov, int n_threads) noexcept
    fn_status fn_adam_step_f32(float *w, const float *g, float *m, float *v, int64_t n, float lr, float beta1,
                               float beta2, float eps, float weight_decay, int decoupled, int64_t step,
                               int n_threads) noexcept
    fn_status fn_adam_step_f64(double *w, const double *g, double *m, double *v, int64_t n, double lr,
                               double beta1, double beta2, double eps, double weight_decay, int decoupled,
                               int64_t step, int n_threads) noexcept
    fn_status fn_sum_squares_f32(const float *x, int64_t n, double *out, int n_threads) noexcept
    fn_status fn_sum_squares_f64(const double *x, int64_t n, double *out, int n_threads) noexcept
    fn_status fn_scale_f32(float *x, int64_t n, float scale, int n_threads) noexcept
    fn_status fn_scale_f64(double *x, int64_t n, double scale, int n_threads) noexcept

    # ---- transformer kernels (transformer.c, layernorm.c, attention.c)
    fn_status fn_embedding_forward_f32(const int64_t *ids, int64_t n, const float *table, int64_t vocab, int64_t dim, float *out, int64_t *bad_pos, int n_threads) noexcept
    fn_status fn_embedding_forward_f64(const int64_t *ids, int64_t n, const double *table, int64_t vocab, int64_t dim, double *out, int64_t *bad_pos, int n_threads) noexcept
    fn_status fn_embedding_backward_f32(const int64_t *ids, int64_t n, const float *dout, int64_t vocab, int64_t dim, float *dtable, int64_t *bad_pos, int n_threads) noexcept
    fn_status fn_embedding_backward_f64(const int64_t *ids, int64_t n, const double *dout, int64_t vocab, int64_t dim, double *dtable, int64_t *bad_pos, int n_threads) noexcept
    fn_status fn_layer_norm_forward_f32(const float *x, const float *gamma, const float *beta, int64_t rows, int64_t dim, float eps, float *y, float *mean, float *rstd, int n_threads) noexcept
    fn_status fn_layer_norm_forward_f64(const double *x, const double *gamma, const double *beta, int64_t rows, int64_t dim, double eps, double *y, double *mean, double *rstd, int n_threads) noexcept
    fn_status fn_layer_norm_backward_f32(const float *dy, const float *x, const float *gamma, const float *mean, const float *rstd, int64_t rows, int64_t dim, float *dx, float *dgamma, float *dbeta, int n_threads) noexcept
    fn_status fn_layer_norm_backward_f64(const double *dy, const double *x, const double *gamma, const double *mean, const double *rstd, int64_t rows, int64_t dim, double *dx, double *dgamma, double *dbeta, int n_threads) noexcept
    fn_status fn_attention_forward_f32(int64_t batch, int64_t tq, int64_t tk, int64_t heads, int64_t dh, const float *q, int64_t q_sb, int64_t q_st, const float *k, int64_t k_sb, int64_t k_st, const float *v, int64_t v_sb, int64_t v_st, const uint8_t *key_padding_mask, const int64_t *kv_rows, int causal, float *out, float *probs, int n_threads) noexcept
    fn_status fn_attention_forward_f64(int64_t batch, int64_t tq, int64_t tk, int64_t heads, int64_t dh, const double *q, int64_t q_sb, int64_t q_st, const double *k, int64_t k_sb, int64_t k_st, const double *v, int64_t v_sb, int64_t v_st, const uint8_t *key_padding_mask, const int64_t *kv_rows, int causal, double *out, double *probs, int n_threads) noexcept
    fn_status fn_attention_backward_f32(int64_t batch, int64_t tq, int64_t tk, int64_t heads, int64_t dh, const float *dout, int64_t do_sb, int64_t do_st, const float *q, int64_t q_sb, int64_t q_st, const float *k, int64_t k_sb, int64_t k_st, const float *v, int64_t v_sb, int64_t v_st, const float *probs, float *dq, int64_t dq_sb, int64_t dq_st, float *dk, int64_t dk_sb, int64_t dk_st, float *dv, int64_t dv_sb, int64_t dv_st, int n_threads) noexcept
    fn_status fn_attention_backward_f64(int64_t batch, int64_t tq, int64_t tk, int64_t heads, int64_t dh, const double *dout, int64_t do_sb, int64_t do_st, const double *q, int64_t q_sb, int64_t q_st, const double *k, int64_t k_sb, int64_t k_st, const double *v, int64_t v_sb, int64_t v_st, const double *probs, double *dq, int64_t dq_sb, int64_t dq_st, double *dk, int64_t dk_sb, int64_t dk_st, double *dv, int64_t dv_sb, int64_t dv_st, int n_threads) noexcept
    fn_status fn_dropout_forward_f32(const float *x, float *y, uint8_t *mask, int64_t n, double p, uint64_t seed, int n_threads) noexcept
    fn_status fn_dropout_forward_f64(const double *x, double *y, uint8_t *mask, int64_t n, double p, uint64_t seed, int n_threads) noexcept
    fn_status fn_dropout_backward_f32(const float *dy, const uint8_t *mask, float *dx, int64_t n, double p, int n_threads) noexcept
    fn_status fn_dropout_backward_f64(const double *dy, const uint8_t *mask, double *dx, int64_t n, double p, int n_threads) noexcept
    fn_status fn_add_f32(const float *a, const float *b, float *out, int64_t n, int n_threads) noexcept
    fn_status fn_add_f64(const double *a, const double *b, double *out, int64_t n, int n_threads) noexcept

    # ---- one decoder layer's incremental step (decoder_step.c)
    ctypedef struct fn_dense_params:
        int64_t n_in, n_out
        const float *w
        int bf16
        const int8_t *packed_w
        const int32_t *colsum
        const float *w_scale
        const float *bias
        fn_activation act
        float act_param
    ctypedef struct fn_norm_params:
        const float *gamma
        const float *beta
        float eps
    ctypedef struct fn_decoder_layer_params:
        int64_t d_model, heads, d_ff
        fn_norm_params norm1, norm2, norm3
        fn_dense_params qkv, self_out, cross_q, cross_out, ff_up, ff_down
    ctypedef struct fn_decoder_step_args:
        int64_t batch
        float *x
        float *cache_k
        float *cache_v
        int64_t cache_sb, length, capacity
        const float *memory_kv
        int64_t src_len
        const uint8_t *memory_mask
        const int64_t *memory_rows
        float *scratch
    int64_t fn_decoder_step_scratch(int64_t batch, int64_t d_model, int64_t heads, int64_t d_ff, int64_t max_keys) noexcept
    fn_status fn_decoder_layer_step_f32(const fn_decoder_layer_params *p, const fn_decoder_step_args *a, int n_threads) noexcept
    ctypedef struct fn_decoder_params:
        int64_t n_layers, d_model, vocab, max_len
        const fn_decoder_layer_params **layers
        const float *table
        float scale
        const float *positions
        fn_norm_params final_norm
    ctypedef struct fn_decoder_stack_args:
        int64_t batch
        const int64_t *ids
        int64_t position
        const fn_decoder_step_args *layers
        float *stream
        float *out
        float *scratch
    fn_status fn_decoder_step_f32(const fn_decoder_params *p, const fn_decoder_stack_args *a, int64_t *bad_id, int n_threads) noexcept
    int fn_decoder_step_threads(const fn_decoder_params *p, int64_t batch, int n_threads) noexcept

    # ---- beam search's candidates (beam.c)
    fn_status fn_beam_candidates_f64(const double *scores, const double *logp, int64_t sentences, int64_t beam, int64_t vocab, int64_t n, double *values, int64_t *indices, int n_threads) noexcept

    # ---- low precision (bf16.c, int8.c)
    fn_status fn_f32_to_bf16(const float *x, uint16_t *out, int64_t n) noexcept
    fn_status fn_bf16_to_f32(const uint16_t *x, float *out, int64_t n) noexcept
    fn_status fn_round_bf16_f32(const float *x, float *out, int64_t n) noexcept
    fn_status fn_s8_packed_bytes(int64_t k, int64_t n, int64_t *bytes) noexcept
    fn_status fn_quantize_rows_s8(const float *x, int64_t m, int64_t k, int64_t ldx, int8_t *q, float *scale) noexcept
    fn_status fn_quantize_columns_s8(const float *w, int64_t k, int64_t n, int64_t ldw, int8_t *q, float *scale) noexcept
    fn_status fn_pack_s8(const int8_t *q, int64_t k, int64_t n, int8_t *packed, int32_t *colsum) noexcept
    fn_status fn_gemm_s8s32(int64_t m, int64_t n, int64_t k, const int8_t *a, int64_t lda,
                            const int8_t *packed_b, const int32_t *colsum, int32_t *c, int64_t ldc,
                            int n_threads) noexcept
    fn_status fn_dense_forward_s8(int64_t m, int64_t n, int64_t k, const float *x, int64_t ldx,
                                  const int8_t *packed_w, const int32_t *colsum, const float *w_scale,
                                  const float *bias, fn_activation act, float act_param,
                                  float *y, int64_t ldy, int n_threads) noexcept
