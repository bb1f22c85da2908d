/* losses.c - mean losses and their gradients.
 *
 * Every sum is reproducible: row losses are written to scratch and added in
 * row order; elementwise losses are summed in double over fixed-size chunks
 * (fn_chunk_size depends only on n) whose sums are added in chunk order.
 * A mean over nothing (no elements, or every row ignored) is 0 with a zero
 * gradient: such a batch contributes nothing to training.
 */
#include "elementwise_internal.h"
#include "kernels.h"

/* Row elements per thread for cross-entropy (exp-bound). */
#define XENT_PER_THREAD (1 << 13)
/* Elements per thread for mse / bce. */
#define LOSS_PER_THREAD (1 << 15)

/* ---- softmax cross-entropy ---------------------------------------------- */

/* Validates labels and counts the rows that take part. */
static fn_status count_labels(const int64_t *labels, int64_t rows, int64_t cols,
                              int64_t ignore_index, int64_t *counted) {
    int64_t c = 0;
    for (int64_t r = 0; r < rows; r++) {
        int64_t t = labels[r];
        if (t == ignore_index) continue;
        if (t < 0 || t >= cols) return FN_ERR_LABEL;
        c++;
    }
    *counted = c;
    return FN_OK;
}

/* With smoothing eps the target is q = (1 - eps) onehot(t) + eps / C, so
 *   loss = logsumexp(x) - sum(q x)
 *        = log(sum exp(x - max)) + (1 - eps)(max - x_t) + eps (max - mean(x)),
 * written around the max so large logits do not cancel; and
 *   dlogits = (softmax(x) - q) / counted. */
static void xent_row_f32(const fn_row_ops_f32_t *ops, const float *x, int64_t label, int64_t cols,
                         float eps, float inv_count, float *row_loss, float *d) {
    float mx = ops->max(x, cols);
    float sum = ops->exp_sum(x, mx, d, cols);
    double loss = log((double)sum) + (1.0 - eps) * ((double)mx - x[label]);
    if (eps > 0) loss += eps * ((double)mx - (double)ops->sum(x, cols) / (double)cols);
    *row_loss = (float)loss;
    if (d) {
        ops->affine(d, inv_count / sum, -eps * inv_count / (float)cols, d, cols);
        d[label] -= (1.0f - eps) * inv_count;
    }
}

static void xent_row_f64(const double *x, int64_t label, int64_t cols, double eps,
                         double inv_count, double *row_loss, double *d) {
    double mx = -INFINITY, sum = 0.0, sum_x = 0.0;
    for (int64_t j = 0; j < cols; j++) mx = x[j] > mx ? x[j] : mx;
    for (int64_t j = 0; j < cols; j++) {
        double e = exp(x[j] - mx);
        if (d) d[j] = e;
        sum += e;
        sum_x += x[j];
    }
    double loss = log(sum) + (1.0 - eps) * (mx - x[label]);
    if (eps > 0) loss += eps * (mx - sum_x / (double)cols);
    *row_loss = loss;
    if (d) {
        double a = inv_count / sum, b = -eps * inv_count / (double)cols;
        for (int64_t j = 0; j < cols; j++) d[j] = a * d[j] + b;
        d[label] -= (1.0 - eps) * inv_count;
    }
}

#define XENT_BODY(T, ROW_CALL)                                                          \
    do {                                                                                \
        T *d_ = dlogits ? dlogits + r * cols : NULL;                                    \
        if (labels[r] == ignore_index) {                                                \
            row_loss[r] = 0;                                                            \
            if (d_)                                                                     \
                for (int64_t j = 0; j < cols; j++) d_[j] = 0;                           \
        } else {                                                                        \
            ROW_CALL;                                                                   \
        }                                                                               \
    } while (0)

#define XENT_ROWS(BODY)                                                                 \
    do {                                                                                \
        int nth = fn_threads_for(rows * cols, XENT_PER_THREAD, n_threads);              \
        if (nth > rows) nth = (int)rows;                                                \
        if (nth <= 1) {                                                                 \
            for (int64_t r = 0; r < rows; r++) BODY;                                    \
        } else {                                                                        \
            FN_PARALLEL(nth) {                                                          \
                int64_t lo, hi;                                                         \
                fn_split(rows, fn_thread_id(), fn_thread_count(), &lo, &hi);            \
                for (int64_t r = lo; r < hi; r++) BODY;                                 \
            }                                                                           \
        }                                                                               \
    } while (0)

fn_status fn_softmax_xent_f32(const float *logits, const int64_t *labels,
                              int64_t rows, int64_t cols, int64_t ignore_index,
                              float label_smoothing, float *row_loss,
                              double *loss, float *dlogits, int64_t *n_counted,
                              int n_threads) {
    if (rows < 0 || cols < 0 || !loss || !(label_smoothing >= 0.0f && label_smoothing < 1.0f)) return FN_ERR_ARG;
    if (rows > 0 && (!logits || !labels || !row_loss || cols == 0)) return FN_ERR_ARG;
    int64_t counted = 0;
    fn_status st = count_labels(labels, rows, cols, ignore_index, &counted);
    if (st != FN_OK) return st;
    if (n_counted) *n_counted = counted;
    float inv_count = counted > 0 ? (float)(1.0 / (double)counted) : 0.0f;
    const fn_row_ops_f32_t *ops = fn_row_ops_f32();
    XENT_ROWS(XENT_BODY(float, xent_row_f32(ops, logits + r * cols, labels[r], cols, label_smoothing,
                                            inv_count, row_loss + r, d_)));
    double total = 0.0;
    for (int64_t r = 0; r < rows; r++) total += row_loss[r];
    *loss = counted > 0 ? total / (double)counted : 0.0;
    return FN_OK;
}

fn_status fn_softmax_xent_f64(const double *logits, const int64_t *labels,
                              int64_t rows, int64_t cols, int64_t ignore_index,
                              double label_smoothing, double *row_loss,
                              double *loss, double *dlogits, int64_t *n_counted,
                              int n_threads) {
    if (rows < 0 || cols < 0 || !loss || !(label_smoothing >= 0.0 && label_smoothing < 1.0)) return FN_ERR_ARG;
    if (rows > 0 && (!logits || !labels || !row_loss || cols == 0)) return FN_ERR_ARG;
    int64_t counted = 0;
    fn_status st = count_labels(labels, rows, cols, ignore_index, &counted);
    if (st != FN_OK) return st;
    if (n_counted) *n_counted = counted;
    double inv_count = counted > 0 ? 1.0 / (double)counted : 0.0;
    XENT_ROWS(XENT_BODY(double, xent_row_f64(logits + r * cols, labels[r], cols, label_smoothing,
                                             inv_count, row_loss + r, d_)));
    double total = 0.0;
    for (int64_t r = 0; r < rows; r++) total += row_loss[r];
    *loss = counted > 0 ? total / (double)counted : 0.0;
    return FN_OK;
}

/* ---- chunked elementwise losses ----------------------------------------- */

/* Sum of (p - t)^2 over [begin, end), writing scale * (p - t) to grad when
 * grad is not NULL. 32 independent accumulators in a fixed lane pattern let
 * GCC vectorise the loop without reordering the sum. */
#define MSE_CHUNK(T, SFX)                                                                   \
    FN_INLINE_BODY double mse_chunk_body_##SFX(const T *p, const T *t, T *grad, T scale,    \
                                               int64_t begin, int64_t end) {                \
        double acc[32] = {0};                                                               \
        int64_t i = begin;                                                                  \
        if (grad) {                                                                         \
            for (; i + 32 <= end; i += 32)                                                  \
                for (int k = 0; k < 32; k++) {                                              \
                    T d = p[i + k] - t[i + k];                                              \
                    acc[k] += (double)d * (double)d;                                        \
                    grad[i + k] = scale * d;                                                \
                }                                                                           \
        } else {                                                                            \
            for (; i + 32 <= end; i += 32)                                                  \
                for (int k = 0; k < 32; k++) {                                              \
                    T d = p[i + k] - t[i + k];                                              \
                    acc[k] += (double)d * (double)d;                                        \
                }                                                                           \
        }                                                                                   \
        for (; i < end; i++) {                                                              \
            T d = p[i] - t[i];                                                              \
            acc[0] += (double)d * (double)d;                                                \
            if (grad) grad[i] = scale * d;                                                  \
        }                                                                                   \
        for (int width = 16; width > 0; width /= 2)                                         \
            for (int k = 0; k < width; k++) acc[k] += acc[k + width];                       \
        return acc[0];                                                                      \
    }
MSE_CHUNK(float, f32)
MSE_CHUNK(double, f64)

/* The set of one CPU path (see kernels.h): the mse chunk compiled for it. */
struct fn_loss_kernels {
    double (*mse_chunk)(const float *p, const float *t, float *grad, float scale, int64_t begin, int64_t end);
};

#define MSE_TARGET(ATTR, SFX)                                                                  \
    ATTR static double mse_chunk_##SFX(const float *p, const float *t, float *g, float s,     \
                                       int64_t b, int64_t e) {                                \
        return mse_chunk_body_f32(p, t, g, s, b, e);                                          \
    }                                                                                         \
    const fn_loss_kernels fn_losses_##SFX = {mse_chunk_##SFX};

MSE_TARGET(, generic)
#ifdef FN_SIMD_X86
MSE_TARGET(FN_TARGET_AVX2, avx2)
MSE_TARGET(FN_TARGET_AVX512, avx512)
#endif

fn_status fn_mse_f32(const float *pred, const float *target, int64_t n,
                     double *loss, float *dpred, int n_threads) {
    if (n < 0 || !loss || (n > 0 && (!pred || !target))) return FN_ERR_ARG;
    if (n == 0) {
        *loss = 0.0;
        return FN_OK;
    }
    const fn_loss_kernels *k = fn_kernels()->losses;
    float scale = (float)(2.0 / (double)n);
    double total;
    FN_CHUNKED_SUM(n, LOSS_PER_THREAD, n_threads, total, k->mse_chunk(pred, target, dpred, scale, begin, end));
    *loss = total / (double)n;
    return FN_OK;
}

fn_status fn_mse_f64(const double *pred, const double *target, int64_t n,
                     double *loss, double *dpred, int n_threads) {
    if (n < 0 || !loss || (n > 0 && (!pred || !target))) return FN_ERR_ARG;
    if (n == 0) {
        *loss = 0.0;
        return FN_OK;
    }
    double scale = 2.0 / (double)n, total;
    FN_CHUNKED_SUM(n, LOSS_PER_THREAD, n_threads, total,
                mse_chunk_body_f64(pred, target, dpred, scale, begin, end));
    *loss = total / (double)n;
    return FN_OK;
}

/* Stable BCE on logits: max(z, 0) - z t + log1p(exp(-|z|)); the gradient is
 * (sigmoid(z) - t) / n. Computed in double for both dtypes (not a hot path). */
#define BCE_CHUNK(T)                                                                    \
    do {                                                                                \
        double acc_ = 0.0;                                                              \
        for (int64_t i = begin; i < end; i++) {                                         \
            double z = logits[i], t = target[i];                                        \
            double e = exp(-fabs(z));                                                   \
            acc_ += (z > 0 ? z : 0.0) - z * t + log1p(e);                               \
            if (dlogits) {                                                              \
                double s = z >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);                    \
                dlogits[i] = (T)((s - t) * inv_n);                                      \
            }                                                                           \
        }                                                                               \
        part = acc_;                                                                    \
    } while (0)

static double bce_chunk_f32(const float *logits, const float *target, float *dlogits,
                            double inv_n, int64_t begin, int64_t end) {
    double part;
    BCE_CHUNK(float);
    return part;
}

static double bce_chunk_f64(const double *logits, const double *target, double *dlogits,
                            double inv_n, int64_t begin, int64_t end) {
    double part;
    BCE_CHUNK(double);
    return part;
}

fn_status fn_bce_logits_f32(const float *logits, const float *target, int64_t n,
                            double *loss, float *dlogits, int n_threads) {
    if (n < 0 || !loss || (n > 0 && (!logits || !target))) return FN_ERR_ARG;
    if (n == 0) {
        *loss = 0.0;
        return FN_OK;
    }
    double inv_n = 1.0 / (double)n, total;
    FN_CHUNKED_SUM(n, LOSS_PER_THREAD / 4, n_threads, total,
                bce_chunk_f32(logits, target, dlogits, inv_n, begin, end));
    *loss = total * inv_n;
    return FN_OK;
}

fn_status fn_bce_logits_f64(const double *logits, const double *target, int64_t n,
                            double *loss, double *dlogits, int n_threads) {
    if (n < 0 || !loss || (n > 0 && (!logits || !target))) return FN_ERR_ARG;
    if (n == 0) {
        *loss = 0.0;
        return FN_OK;
    }
    double inv_n = 1.0 / (double)n, total;
    FN_CHUNKED_SUM(n, LOSS_PER_THREAD / 4, n_threads, total,
                bce_chunk_f64(logits, target, dlogits, inv_n, begin, end));
    *loss = total * inv_n;
    return FN_OK;
}
