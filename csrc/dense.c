/* dense.c - the fused dense layer: y = act(x @ w + bias) and its backward.
 *
 * float32 forward runs the packed sgemm with an epilogue: as soon as a
 * register tile of y holds its final sum (last KC block), the bias is added,
 * the pre-activation copied out (if wanted) and the activation applied while
 * the tile is still in L1 - one pass over y. float64 multiplies first and
 * then applies bias and activation in a second pass (plain path).
 * pre, when given, is m x n contiguous.
 *
 * Backward: dz = dy * act'(.) from y (relu, leaky_relu, sigmoid, tanh) or
 * from pre (gelu); step has no useful gradient (FN_ERR_ARG). Then
 * dw = x^T dz, db = column sums of dz (rows added in order 0..m-1, threads
 * split the columns, so the order never depends on n_threads), dx = dz w^T.
 * relu and leaky_relu read the sign of pre when given, else of y (which
 * matches the sign of x only for a slope >= 0; a negative slope needs pre).
 */
#include <math.h>
#include <string.h>

#include "gemm_internal.h"
#include "elementwise_internal.h"

static int act_valid(fn_activation act) {
    return (int)act >= FN_ACT_IDENTITY && (int)act <= FN_ACT_GELU;
}

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

static double act_f64(fn_activation act, double param, double z) {
    switch (act) {
    case FN_ACT_STEP: return z > 0.0 ? 1.0 : 0.0;
    case FN_ACT_SIGMOID: return fn_sigmoid_f64(z);
    case FN_ACT_TANH: return tanh(z);
    case FN_ACT_RELU: return z < 0.0 ? 0.0 : z;
    case FN_ACT_LEAKY_RELU: return z < 0.0 ? param * z : z;
    case FN_ACT_GELU: return fn_gelu_f64(z);
    default: return z;
    }
}

fn_status fn_dense_forward_f64(int64_t m, int64_t n, int64_t k,
                               const double *x, int64_t ldx,
                               const double *w, int64_t ldw,
                               const double *bias, fn_activation act, double act_param,
                               double *y, int64_t ldy, double *pre, int n_threads) {
    if (!forward_args_ok(m, n, k, x, ldx, w, ldw, y, ldy, act)) return FN_ERR_ARG;
    fn_status status = fn_gemm_f64(0, 0, m, n, k, 1.0, x, ldx, w, ldw, 0.0, y, ldy, n_threads);
    if (status != FN_OK) return status;
    for (int64_t i = 0; i < m; ++i) {
        double *row = y + i * ldy;
        for (int64_t j = 0; j < n; ++j) {
            double z = row[j] + (bias ? bias[j] : 0.0);
            if (pre) pre[i * n + j] = z;
            row[j] = act_f64(act, act_param, z);
        }
    }
    return FN_OK;
}

/* ---- backward -------------------------------------------------------------- */

/* The derivative reads pre (gelu; relu and leaky_relu when given) or y. From
 * y alone leaky_relu's sign test is right only for a slope >= 0. */
static int grad_inputs_ok(fn_activation act, double param, const void *y, const void *pre) {
    switch (act) {
    case FN_ACT_IDENTITY: return 1;
    case FN_ACT_GELU: return pre != NULL;
    case FN_ACT_RELU: return pre || y;
    case FN_ACT_LEAKY_RELU: return pre || (y && param >= 0);
    default: return y != NULL;
    }
}

/* Elements per thread before a second thread helps an elementwise pass. */
#define DENSE_MIN_ELEMENTS_PER_THREAD (1 << 17)

/* dz = dy * act'(.) over count elements; dz may alias dy. One body for both
 * dtypes: T is the element type, EXPR the derivative of the activation. */
#define DEFINE_ACT_GRAD(NAME, T, GELU_GRAD)                                                  \
    static void NAME(fn_activation act, T param, const T *y, const T *pre, const T *dy,     \
                     T *dz, int64_t begin, int64_t end) {                                    \
        switch (act) {                                                                       \
        case FN_ACT_RELU:                                                                    \
            for (int64_t i = begin; i < end; ++i)                                            \
                dz[i] = (pre ? pre[i] : y[i]) > 0 ? dy[i] : (T)0;                            \
            break;                                                                           \
        case FN_ACT_LEAKY_RELU:                                                              \
            for (int64_t i = begin; i < end; ++i)                                            \
                dz[i] = (pre ? pre[i] : y[i]) > 0 ? dy[i] : param * dy[i];                   \
            break;                                                                           \
        case FN_ACT_SIGMOID:                                                                 \
            for (int64_t i = begin; i < end; ++i) dz[i] = dy[i] * y[i] * ((T)1 - y[i]);      \
            break;                                                                           \
        case FN_ACT_TANH:                                                                    \
            for (int64_t i = begin; i < end; ++i) dz[i] = dy[i] * ((T)1 - y[i] * y[i]);      \
            break;                                                                           \
        case FN_ACT_GELU:                                                                    \
            for (int64_t i = begin; i < end; ++i) dz[i] = dy[i] * GELU_GRAD(pre[i]);         \
            break;                                                                           \
        default:                                                                             \
            if (dz != dy) memcpy(dz + begin, dy + begin, (size_t)(end - begin) * sizeof(T)); \
        }                                                                                    \
    }

/* float32 runs the vectorised derivative kernels of activations.c (the same
 * bits as fn_activation_backward_f32 on this CPU path). */
static void act_grad_f32(fn_activation act, float param, const float *y, const float *pre,
                         const float *dy, float *dz, int64_t begin, int64_t end) {
    if (act == FN_ACT_IDENTITY) {
        if (dz != dy) memcpy(dz + begin, dy + begin, (size_t)(end - begin) * sizeof(float));
        return;
    }
    /* Arguments were checked by the caller, so this cannot fail. */
    (void)fn_activation_grad_block_f32(act, param, pre ? pre + begin : NULL, y ? y + begin : NULL,
                                       dy + begin, dz + begin, end - begin);
}
DEFINE_ACT_GRAD(act_grad_f64, double, fn_gelu_grad_f64)

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

#define DEFINE_DENSE_BACKWARD(NAME, T, ACT_GRAD, COLUMN_SUMS, GEMM)                              \
    fn_status NAME(int64_t m, int64_t n, int64_t k, const T *x, const T *w, const T *y,          \
                   const T *pre, const T *dy, fn_activation act, T act_param, T *dz, T *dx,      \
                   T *dw, T *db, int accumulate, int n_threads) {                                \
        if (m < 0 || n < 0 || k < 0 || !act_valid(act) || act == FN_ACT_STEP) return FN_ERR_ARG; \
        if (!dw) return FN_ERR_ARG;                                                              \
        int64_t count = m * n;                                                                   \
        if (count > 0 && (!dy || !dz || !grad_inputs_ok(act, (double)act_param, y, pre)))        \
            return FN_ERR_ARG;                                                                   \
        if ((m > 0 && k > 0 && !x) || (n > 0 && k > 0 && !w)) return FN_ERR_ARG;                 \
        int nth = fn_threads_for(count, DENSE_MIN_ELEMENTS_PER_THREAD, n_threads);               \
        if (nth <= 1) {                                                                          \
            ACT_GRAD(act, act_param, y, pre, dy, dz, 0, count);                                  \
            if (db) COLUMN_SUMS(dz, m, n, db, accumulate, 0, n);                                 \
        } else {                                                                                 \
            FN_PARALLEL(nth) {                                                                   \
                int tid = fn_thread_id(), team = fn_thread_count();                              \
                int64_t b0, b1;                                                                  \
                fn_split(count, tid, team, &b0, &b1);                                            \
                ACT_GRAD(act, act_param, y, pre, dy, dz, b0, b1);                                \
                FN_BARRIER();                                                                    \
                if (db) {                                                                        \
                    fn_split((n + 15) / 16, tid, team, &b0, &b1);                                \
                    COLUMN_SUMS(dz, m, n, db, accumulate, b0 * 16, b1 * 16 < n ? b1 * 16 : n);   \
                }                                                                                \
            }                                                                                    \
        }                                                                                        \
        fn_status status = GEMM(1, 0, k, n, m, 1, x, k > 1 ? k : 1, dz, n > 1 ? n : 1,            \
                                accumulate ? 1 : 0, dw, n > 1 ? n : 1, n_threads);               \
        if (status != FN_OK || !dx) return status;                                               \
        return GEMM(0, 1, m, k, n, 1, dz, n > 1 ? n : 1, w, n > 1 ? n : 1, 0, dx,                 \
                    k > 1 ? k : 1, n_threads);                                                   \
    }

DEFINE_DENSE_BACKWARD(fn_dense_backward_f32, float, act_grad_f32, column_sums_f32, fn_gemm_f32)
DEFINE_DENSE_BACKWARD(fn_dense_backward_bf16, float, act_grad_f32, column_sums_f32, fn_gemm_bf16)
DEFINE_DENSE_BACKWARD(fn_dense_backward_f64, double, act_grad_f64, column_sums_f64, fn_gemm_f64)
