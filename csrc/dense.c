/* dense.c - the fused dense layer: y = act(x @ w + bias) and its backward.
 *
 * float32 forward runs the packed sgemm with an epilogue: as soon as a
 * register tile of y holds its final sum (last KC block), the bias is added,
 * the pre-activation copied out (if wanted) and the activation applied while
 * the tile is still in L1 - one pass over y. float64 multiplies first and
 * then applies bias and activation in a second pass (plain path).
 * pre, when given, is m x n contiguous.
 *
 * Backward: dz = dy * act'(.) from pre or y, whichever
 * fn_activation_backward_reads (activations.c) names for what the caller
 * passed, with the activation kernels of activations.c; an activation
 * without a gradient (step) is FN_ERR_ARG. Then dw = x^T dz, db = column
 * sums of dz (rows added in order 0..m-1, threads split the columns, so the
 * order never depends on n_threads), dx = dz w^T.
 */
#include <math.h>
#include <string.h>

#include "gemm_internal.h"
#include "elementwise_internal.h"

static int act_valid(fn_activation act) { return fn_activation_info(act) != NULL; }

static int forward_args_ok(int64_t m, int64_t n, int64_t k, const void *x, int64_t ldx,
                           const void *w, int64_t ldw, const void *y, int64_t ldy, fn_activation act) {
    if (m < 0 || n < 0 || k < 0 || !act_valid(act)) return 0;
    if (ldx < (k > 1 ? k : 1) || ldw < (n > 1 ? n : 1) || ldy < (n > 1 ? n : 1)) return 0;
    if (m > 0 && n > 0 && (!y || (k > 0 && (!x || !w)))) return 0;
    return 1;
}

/* fn_dense_forward_f32 and _bf16 differ only in the GEMM's kernel set. */
#define DEFINE_DENSE_FORWARD(NAME, ARCH)                                                          \
    fn_status NAME(int64_t m, int64_t n, int64_t k, const float *x, int64_t ldx, const float *w,  \
                   int64_t ldw, const float *bias, fn_activation act, float act_param, float *y,  \
                   int64_t ldy, float *pre, int n_threads) {                                      \
        if (!forward_args_ok(m, n, k, x, ldx, w, ldw, y, ldy, act)) return FN_ERR_ARG;            \
        fn_epilogue_f32 epi = {bias, act, act_param, pre, n};                                     \
        return fn_sgemm_run(ARCH(), 0, 0, m, n, k, 1.0f, x, ldx, w, ldw, 0.0f, y, ldy, &epi,      \
                            n_threads);                                                           \
    }
DEFINE_DENSE_FORWARD(fn_dense_forward_f32, fn_sgemm_arch_current)
DEFINE_DENSE_FORWARD(fn_dense_forward_bf16, fn_bf16_arch_current)

fn_status fn_dense_forward_packed_f32(int64_t m, int64_t n, int64_t k, const float *x, int64_t ldx,
                                      const float *packed_w, int nr, const float *bias, fn_activation act,
                                      float act_param, float *y, int64_t ldy, float *pre, int n_threads) {
    const fn_sgemm_arch *arch = fn_sgemm_arch_current();
    if (!forward_args_ok(m, n, k, x, ldx, packed_w, n, y, ldy, act) || nr != arch->nr) return FN_ERR_ARG;
    fn_epilogue_f32 epi = {bias, act, act_param, pre, n};
    return fn_sgemm_run_packed_b(arch, 0, m, n, k, 1.0f, x, ldx, packed_w, 0.0f, y, ldy, &epi, n_threads);
}

fn_status fn_dense_forward_f64(int64_t m, int64_t n, int64_t k,
                               const double *x, int64_t ldx,
                               const double *w, int64_t ldw,
                               const double *bias, fn_activation act, double act_param,
                               double *y, int64_t ldy, double *pre, int n_threads) {
    if (!forward_args_ok(m, n, k, x, ldx, w, ldw, y, ldy, act)) return FN_ERR_ARG;
    fn_status status = fn_gemm_f64(0, 0, m, n, k, 1.0, x, ldx, w, ldw, 0.0, y, ldy, n_threads);
    if (status != FN_OK) return status;
    fn_act_map_f64 activate = fn_act_kernels_f64_get(act)->forward;
    for (int64_t i = 0; i < m; ++i) {
        double *row = y + i * ldy;
        for (int64_t j = 0; j < n; ++j) row[j] += bias ? bias[j] : 0.0;
        if (pre) memcpy(pre + i * n, row, (size_t)n * sizeof(double));
        activate(row, row, n, act_param);
    }
    return FN_OK;
}

/* ---- backward -------------------------------------------------------------- */

/* Elements per thread before a second thread helps an elementwise pass. */
#define DENSE_MIN_ELEMENTS_PER_THREAD (1 << 17)

/* db[j] (+)= sum over rows of dz[:, j], rows in order; threads own columns. */
#define DEFINE_COLUMN_SUMS(NAME, T)                                                  \
    static void NAME(const T *dz, int64_t m, int64_t n, T *db, int accumulate,      \
                     int64_t j0, int64_t j1) {                                       \
        if (!accumulate)                                                             \
            for (int64_t j = j0; j < j1; ++j) db[j] = 0;                             \
        for (int64_t i = 0; i < m; ++i) {                                            \
            const T *row = dz + i * n;                                               \
            for (int64_t j = j0; j < j1; ++j) db[j] += row[j];                       \
        }                                                                            \
    }

DEFINE_COLUMN_SUMS(column_sums_f32, float)
DEFINE_COLUMN_SUMS(column_sums_f64, double)

/* dz = dy * act'(a) runs the activation's own backward kernel, so it gives
 * the same bits as fn_activation_backward on this CPU path; pre is the
 * activation's input x. */
#define DEFINE_DENSE_BACKWARD(NAME, T, SFX, KERNELS_OF, GEMM)                                    \
    fn_status NAME(int64_t m, int64_t n, int64_t k, const T *x, const T *w, const T *y,          \
                   const T *pre, const T *dy, fn_activation act, T act_param, T *dz, T *dx,      \
                   T *dw, T *db, int accumulate, int n_threads) {                                \
        /* an activation without a gradient cannot run whatever is given */                     \
        if (!fn_activation_backward_reads(act, (double)act_param, 1, 1)) return FN_ERR_ARG;      \
        if (m < 0 || n < 0 || k < 0 || !dw) return FN_ERR_ARG;                                   \
        int64_t count = m * n;                                                                   \
        int reads = fn_activation_backward_reads(act, (double)act_param, pre != NULL, y != NULL); \
        if (count > 0 && (!dy || !dz || !reads)) return FN_ERR_ARG;                              \
        if ((m > 0 && k > 0 && !x) || (n > 0 && k > 0 && !w)) return FN_ERR_ARG;                 \
        fn_act_zip_##SFX grad = fn_act_backward_##SFX(KERNELS_OF(act), reads);                   \
        const T *a = reads == 'x' ? pre : reads == 'y' ? y : dy;                                 \
        int nth = fn_threads_for(count, DENSE_MIN_ELEMENTS_PER_THREAD, n_threads);               \
        if (nth <= 1) {                                                                          \
            if (count > 0) grad(a, dy, dz, count, act_param);                                    \
            if (db) column_sums_##SFX(dz, m, n, db, accumulate, 0, n);                           \
        } else {                                                                                 \
            FN_PARALLEL(nth) {                                                                   \
                int tid = fn_thread_id(), team = fn_thread_count();                              \
                int64_t b0, b1;                                                                  \
                fn_split(count, tid, team, &b0, &b1);                                            \
                if (b1 > b0) grad(a + b0, dy + b0, dz + b0, b1 - b0, act_param);                 \
                FN_BARRIER();                                                                    \
                if (db) {                                                                        \
                    fn_split((n + 15) / 16, tid, team, &b0, &b1);                                \
                    column_sums_##SFX(dz, m, n, db, accumulate, b0 * 16, b1 * 16 < n ? b1 * 16 : n); \
                }                                                                                \
            }                                                                                    \
        }                                                                                        \
        fn_status status = GEMM(1, 0, k, n, m, 1, x, k > 1 ? k : 1, dz, n > 1 ? n : 1,            \
                                accumulate ? 1 : 0, dw, n > 1 ? n : 1, n_threads);               \
        if (status != FN_OK || !dx) return status;                                               \
        return GEMM(0, 1, m, k, n, 1, dz, n > 1 ? n : 1, w, n > 1 ? n : 1, 0, dx,                 \
                    k > 1 ? k : 1, n_threads);                                                   \
    }

DEFINE_DENSE_BACKWARD(fn_dense_backward_f32, float, f32, fn_act_kernels_f32_current, fn_gemm_f32)
DEFINE_DENSE_BACKWARD(fn_dense_backward_bf16, float, f32, fn_act_kernels_f32_current, fn_gemm_bf16)
DEFINE_DENSE_BACKWARD(fn_dense_backward_f64, double, f64, fn_act_kernels_f64_get, fn_gemm_f64)
