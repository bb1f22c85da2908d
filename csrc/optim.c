/* optim.c - optimizer steps over one flat parameter buffer, the sum of
 * squares used for global-norm clipping, and scaling.
 *
 * The loops are plain C written once (FN_INLINE_BODY) and instantiated for
 * the generic, AVX2 and AVX-512 targets, where GCC vectorises them. They use
 * only correctly rounded operations (+ - * / sqrt, no contraction into FMA),
 * so a vector lane and a scalar tail give the same bits and the result does
 * not depend on how the buffer is split over threads.
 */
#include "elementwise_internal.h"
#include "kernels.h"

/* Elements per thread: these loops stream 3-7 arrays at memory speed. */
#define STEP_PER_THREAD (1 << 15)
#define SUMSQ_PER_THREAD (1 << 16)

/* ---- loop bodies -------------------------------------------------------- */

#define OPTIM_BODIES(T, SFX)                                                               \
    FN_INLINE_BODY void sgd_body_##SFX(T *w, const T *g, T *v, int64_t n, T lr, T momentum, \
                                       T wd, int nesterov) {                               \
        if (!v) {                                                                          \
            for (int64_t i = 0; i < n; i++) w[i] -= lr * (g[i] + wd * w[i]);               \
        } else if (nesterov) {                                                             \
            for (int64_t i = 0; i < n; i++) {                                              \
                T gi = g[i] + wd * w[i];                                                   \
                T vi = momentum * v[i] + gi;                                               \
                v[i] = vi;                                                                 \
                w[i] -= lr * (gi + momentum * vi);                                         \
            }                                                                              \
        } else {                                                                           \
            for (int64_t i = 0; i < n; i++) {                                              \
                T vi = momentum * v[i] + (g[i] + wd * w[i]);                               \
                v[i] = vi;                                                                 \
                w[i] -= lr * vi;                                                           \
            }                                                                              \
        }                                                                                  \
    }                                                                                      \
    /* l2 folds weight decay into the gradient (Adam); shrink multiplies w     \
     * first (AdamW, shrink = 1 - lr wd). step_size = lr / (1 - b1^t),          \
     * inv_bc2 = 1 / (1 - b2^t). */                                                       \
    FN_INLINE_BODY void adam_body_##SFX(T *w, const T *g, T *m, T *v, int64_t n, T b1, T b2, \
                                        T eps, T l2, T shrink, T step_size, T inv_bc2) {   \
        T c1 = 1 - b1, c2 = 1 - b2;                                                        \
        for (int64_t i = 0; i < n; i++) {                                                  \
            T wi = w[i] * shrink;                                                          \
            T gi = g[i] + l2 * w[i];                                                       \
            T mi = b1 * m[i] + c1 * gi;                                                    \
            T vi = b2 * v[i] + c2 * (gi * gi);                                             \
            m[i] = mi;                                                                     \
            v[i] = vi;                                                                     \
            w[i] = wi - step_size * mi / (sqrt_##SFX(vi * inv_bc2) + eps);                 \
        }                                                                                  \
    }                                                                                      \
    /* 32 independent accumulators: enough vectors in flight to hide the    \
     * latency of the adds; the lane pattern is fixed, so is the result. */   \
    FN_INLINE_BODY double sumsq_body_##SFX(const T *x, int64_t begin, int64_t end) {       \
        double acc[32] = {0};                                                              \
        int64_t i = begin;                                                                 \
        for (; i + 32 <= end; i += 32)                                                     \
            for (int k = 0; k < 32; k++) acc[k] += (double)x[i + k] * (double)x[i + k];    \
        for (; i < end; i++) acc[0] += (double)x[i] * (double)x[i];                        \
        for (int width = 16; width > 0; width /= 2)                                        \
            for (int k = 0; k < width; k++) acc[k] += acc[k + width];                      \
        return acc[0];                                                                     \
    }                                                                                      \
    FN_INLINE_BODY void scale_body_##SFX(T *x, int64_t n, T s) {                           \
        for (int64_t i = 0; i < n; i++) x[i] *= s;                                         \
    }

#define sqrt_f32 sqrtf
#define sqrt_f64 sqrt
OPTIM_BODIES(float, f32)
OPTIM_BODIES(double, f64)

/* ---- float32 kernels per target ----------------------------------------- */

/* The set of one CPU path (see kernels.h). */
struct fn_optim_kernels {
    void (*sgd)(float *, const float *, float *, int64_t, float, float, float, int);
    void (*adam)(float *, const float *, float *, float *, int64_t, float, float, float, float, float, float, float);
    double (*sumsq)(const float *, int64_t, int64_t);
    void (*scale)(float *, int64_t, float);
};

#define OPTIM_TARGET(ATTR, SFX)                                                                       \
    ATTR static void sgd_##SFX(float *w, const float *g, float *v, int64_t n, float lr, float mom,    \
                               float wd, int nesterov) {                                             \
        sgd_body_f32(w, g, v, n, lr, mom, wd, nesterov);                                              \
    }                                                                                                 \
    ATTR static void adam_##SFX(float *w, const float *g, float *m, float *v, int64_t n, float b1,    \
                                float b2, float eps, float l2, float shrink, float ss, float ib2) {   \
        adam_body_f32(w, g, m, v, n, b1, b2, eps, l2, shrink, ss, ib2);                               \
    }                                                                                                 \
    ATTR static double sumsq_##SFX(const float *x, int64_t b, int64_t e) { return sumsq_body_f32(x, b, e); } \
    ATTR static void scale_##SFX(float *x, int64_t n, float s) { scale_body_f32(x, n, s); }         \
    const fn_optim_kernels fn_optim_##SFX = {sgd_##SFX, adam_##SFX, sumsq_##SFX, scale_##SFX};

OPTIM_TARGET(, generic)
#ifdef FN_SIMD_X86
OPTIM_TARGET(FN_TARGET_AVX2, avx2)
OPTIM_TARGET(FN_TARGET_AVX512, avx512)
#endif

/* ---- threading ---------------------------------------------------------- */


/* ---- public entry points ------------------------------------------------ */

static int sgd_args_ok(const void *w, const void *g, const void *v, int64_t n, double momentum) {
    if (n < 0) return 0;
    if (n > 0 && (!w || !g)) return 0;
    return !(momentum != 0.0 && n > 0 && !v);
}

fn_status fn_sgd_step_f32(float *w, const float *g, float *velocity, int64_t n,
                          float lr, float momentum, float weight_decay, int nesterov,
                          int n_threads) {
    if (!sgd_args_ok(w, g, velocity, n, momentum)) return FN_ERR_ARG;
    const fn_optim_kernels *k = fn_kernels()->optim;
    FN_RUN_SPLIT(n, STEP_PER_THREAD, n_threads,
              k->sgd(w + lo, g + lo, velocity ? velocity + lo : NULL, hi - lo, lr, momentum, weight_decay, nesterov));
    return FN_OK;
}

fn_status fn_sgd_step_f64(double *w, const double *g, double *velocity, int64_t n,
                          double lr, double momentum, double weight_decay, int nesterov,
                          int n_threads) {
    if (!sgd_args_ok(w, g, velocity, n, momentum)) return FN_ERR_ARG;
    FN_RUN_SPLIT(n, STEP_PER_THREAD, n_threads,
              sgd_body_f64(w + lo, g + lo, velocity ? velocity + lo : NULL, hi - lo, lr, momentum, weight_decay, nesterov));
    return FN_OK;
}

/* What an Adam step needs beyond the hyper-parameters, worked out in double
 * for both dtypes: the bias corrections (b^step is tiny or close to 1 for long
 * runs), the coupled L2 term and the decoupled weight shrink. 0 on bad input. */
typedef struct {
    double step_size, inv_bc2, l2, shrink;
} adam_factors;

static int adam_setup(adam_factors *f, int64_t n, const void *w, const void *g, const void *m, const void *v,
                      double lr, double beta1, double beta2, double eps, double weight_decay, int decoupled,
                      int64_t step) {
    if (n < 0 || (n > 0 && (!w || !g || !m || !v))) return 0;
    if (step < 1 || !(beta1 >= 0.0 && beta1 < 1.0) || !(beta2 >= 0.0 && beta2 < 1.0) || !(eps >= 0.0)) return 0;
    f->step_size = lr / (1.0 - pow(beta1, (double)step));
    f->inv_bc2 = 1.0 / (1.0 - pow(beta2, (double)step));
    f->l2 = decoupled ? 0.0 : weight_decay;
    f->shrink = decoupled ? 1.0 - lr * weight_decay : 1.0;
    return 1;
}

fn_status fn_adam_step_f32(float *w, const float *g, float *m, float *v, int64_t n,
                           float lr, float beta1, float beta2, float eps,
                           float weight_decay, int decoupled, int64_t step, int n_threads) {
    adam_factors f;
    if (!adam_setup(&f, n, w, g, m, v, lr, beta1, beta2, eps, weight_decay, decoupled, step)) return FN_ERR_ARG;
    const fn_optim_kernels *k = fn_kernels()->optim;
    FN_RUN_SPLIT(n, STEP_PER_THREAD, n_threads,
              k->adam(w + lo, g + lo, m + lo, v + lo, hi - lo, beta1, beta2, eps, (float)f.l2, (float)f.shrink,
                      (float)f.step_size, (float)f.inv_bc2));
    return FN_OK;
}

fn_status fn_adam_step_f64(double *w, const double *g, double *m, double *v, int64_t n,
                           double lr, double beta1, double beta2, double eps,
                           double weight_decay, int decoupled, int64_t step, int n_threads) {
    adam_factors f;
    if (!adam_setup(&f, n, w, g, m, v, lr, beta1, beta2, eps, weight_decay, decoupled, step)) return FN_ERR_ARG;
    FN_RUN_SPLIT(n, STEP_PER_THREAD, n_threads,
              adam_body_f64(w + lo, g + lo, m + lo, v + lo, hi - lo, beta1, beta2, eps, f.l2, f.shrink,
                            f.step_size, f.inv_bc2));
    return FN_OK;
}

fn_status fn_sum_squares_f32(const float *x, int64_t n, double *out, int n_threads) {
    if (n < 0 || !out || (n > 0 && !x)) return FN_ERR_ARG;
    if (n == 0) {
        *out = 0.0;
        return FN_OK;
    }
    const fn_optim_kernels *k = fn_kernels()->optim;
    double total;
    FN_CHUNKED_SUM(n, SUMSQ_PER_THREAD, n_threads, total, k->sumsq(x, begin, end));
    *out = total;
    return FN_OK;
}

fn_status fn_sum_squares_f64(const double *x, int64_t n, double *out, int n_threads) {
    if (n < 0 || !out || (n > 0 && !x)) return FN_ERR_ARG;
    if (n == 0) {
        *out = 0.0;
        return FN_OK;
    }
    double total;
    FN_CHUNKED_SUM(n, SUMSQ_PER_THREAD, n_threads, total, sumsq_body_f64(x, begin, end));
    *out = total;
    return FN_OK;
}

fn_status fn_scale_f32(float *x, int64_t n, float scale, int n_threads) {
    if (n < 0 || (n > 0 && !x)) return FN_ERR_ARG;
    const fn_optim_kernels *k = fn_kernels()->optim;
    FN_RUN_SPLIT(n, STEP_PER_THREAD, n_threads, k->scale(x + lo, hi - lo, scale));
    return FN_OK;
}

fn_status fn_scale_f64(double *x, int64_t n, double scale, int n_threads) {
    if (n < 0 || (n > 0 && !x)) return FN_ERR_ARG;
    FN_RUN_SPLIT(n, STEP_PER_THREAD, n_threads, scale_body_f64(x + lo, hi - lo, scale));
    return FN_OK;
}
