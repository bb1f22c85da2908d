/* layernorm.c - layer normalisation over the last axis, forward and backward.
 *
 * Rows are independent, so the forward and the dx part of the backward run
 * in parallel over rows. dgamma and dbeta are sums over rows: threads split
 * the columns instead, so every column is summed by one thread in row order
 * (deterministic for any thread count, no scratch, no atomics).
 * Statistics use two passes (mean, then squared deviations) for accuracy.
 */
#include <math.h>

#include "kernels.h"

/* Elements per thread below which another thread does not pay (~50 us). */
#define MIN_ELEMENTS_PER_THREAD 65536
/* Columns handed to one thread in the dgamma/dbeta pass: a cache line. */
#define COLUMN_UNIT 16

/* ---- portable row kernels (float and double) --------------------------- */

#define DEFINE_LN_ROW_GENERIC(REAL, SUFFIX, SQRT)                                           \
    static void ln_row_forward_##SUFFIX(const REAL *x, const REAL *gamma, const REAL *beta, \
                                        int64_t dim, REAL eps, REAL *y, REAL *mean_out,     \
                                        REAL *rstd_out) {                                   \
        REAL sum = 0, squares = 0;                                                          \
        for (int64_t j = 0; j < dim; j++) sum += x[j];                                      \
        REAL mean = sum / (REAL)dim;                                                        \
        for (int64_t j = 0; j < dim; j++) squares += (x[j] - mean) * (x[j] - mean);         \
        REAL rstd = (REAL)1 / SQRT(squares / (REAL)dim + eps);                              \
        for (int64_t j = 0; j < dim; j++) y[j] = (x[j] - mean) * rstd * gamma[j] + beta[j]; \
        *mean_out = mean;                                                                   \
        *rstd_out = rstd;                                                                   \
    }                                                                                       \
    /* dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * gamma. */                \
    static void ln_row_backward_##SUFFIX(const REAL *dy, const REAL *x, const REAL *gamma,  \
                                         REAL mean, REAL rstd, int64_t dim, REAL *dx) {     \
        REAL sum_g = 0, sum_gx = 0;                                                         \
        for (int64_t j = 0; j < dim; j++) {                                                 \
            REAL g = dy[j] * gamma[j];                                                      \
            sum_g += g;                                                                     \
            sum_gx += g * (x[j] - mean) * rstd;                                             \
        }                                                                                   \
        REAL mean_g = sum_g / (REAL)dim, mean_gx = sum_gx / (REAL)dim;                      \
        for (int64_t j = 0; j < dim; j++)                                                   \
            dx[j] = rstd * (dy[j] * gamma[j] - mean_g - (x[j] - mean) * rstd * mean_gx);    \
    }

DEFINE_LN_ROW_GENERIC(float, f32, sqrtf)
DEFINE_LN_ROW_GENERIC(double, f64, sqrt)

/* dgamma[c0:c1] and dbeta[c0:c1] summed over all rows in row order. The
 * inner loop runs along a row (no reduction across j), so -O3 vectorises it
 * for each target. */
#define DEFINE_LN_COLUMNS(REAL, NAME, TARGET)                                               \
    TARGET static void NAME(const REAL *restrict dy, const REAL *restrict x,                \
                            const REAL *mean, const REAL *rstd, int64_t rows, int64_t dim,  \
                            int64_t c0, int64_t c1, REAL *restrict dgamma,                  \
                            REAL *restrict dbeta) {                                         \
        for (int64_t j = c0; j < c1; j++) dgamma[j] = dbeta[j] = 0;                         \
        for (int64_t r = 0; r < rows; r++) {                                                \
            const REAL *dyr = dy + r * dim, *xr = x + r * dim;                              \
            REAL m = mean[r], s = rstd[r];                                                  \
            for (int64_t j = c0; j < c1; j++) {                                             \
                dgamma[j] += dyr[j] * ((xr[j] - m) * s);                                    \
                dbeta[j] += dyr[j];                                                         \
            }                                                                               \
        }                                                                                   \
    }

DEFINE_LN_COLUMNS(float, ln_columns_f32, )
DEFINE_LN_COLUMNS(float, ln_columns_f32_avx2, FN_TARGET_AVX2)
DEFINE_LN_COLUMNS(float, ln_columns_f32_avx512, FN_TARGET_AVX512)
DEFINE_LN_COLUMNS(double, ln_columns_f64, )

/* ---- AVX2 / AVX-512 row kernels (float) --------------------------------- */
#ifdef FN_SIMD_X86

FN_TARGET_AVX2 static void ln_row_forward_avx2(const float *x, const float *gamma,
                                               const float *beta, int64_t dim, float eps,
                                               float *y, float *mean_out, float *rstd_out) {
    int64_t vec_end = dim & ~(int64_t)7, j;
    __m256 acc = _mm256_setzero_ps();
    for (j = 0; j < vec_end; j += 8) acc = _mm256_add_ps(acc, _mm256_loadu_ps(x + j));
    float sum = fn_avx2_hsum(acc);
    for (; j < dim; j++) sum += x[j];
    float mean = sum / (float)dim;

    __m256 vmean = _mm256_set1_ps(mean);
    acc = _mm256_setzero_ps();
    for (j = 0; j < vec_end; j += 8) {
        __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + j), vmean);
        acc = _mm256_fmadd_ps(d, d, acc);
    }
    float squares = fn_avx2_hsum(acc);
    for (; j < dim; j++) squares += (x[j] - mean) * (x[j] - mean);
    float rstd = 1.0f / sqrtf(squares / (float)dim + eps);

    __m256 vrstd = _mm256_set1_ps(rstd);
    for (j = 0; j < vec_end; j += 8) {
        __m256 xhat = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + j), vmean), vrstd);
        _mm256_storeu_ps(y + j, _mm256_fmadd_ps(xhat, _mm256_loadu_ps(gamma + j),
                                                _mm256_loadu_ps(beta + j)));
    }
    for (; j < dim; j++) y[j] = (x[j] - mean) * rstd * gamma[j] + beta[j];
    *mean_out = mean;
    *rstd_out = rstd;
}

FN_TARGET_AVX2 static void ln_row_backward_avx2(const float *dy, const float *x,
                                                const float *gamma, float mean, float rstd,
                                                int64_t dim, float *dx) {
    int64_t vec_end = dim & ~(int64_t)7, j;
    __m256 vmean = _mm256_set1_ps(mean), vrstd = _mm256_set1_ps(rstd);
    __m256 acc_g = _mm256_setzero_ps(), acc_gx = _mm256_setzero_ps();
    for (j = 0; j < vec_end; j += 8) {
        __m256 g = _mm256_mul_ps(_mm256_loadu_ps(dy + j), _mm256_loadu_ps(gamma + j));
        __m256 xhat = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + j), vmean), vrstd);
        acc_g = _mm256_add_ps(acc_g, g);
        acc_gx = _mm256_fmadd_ps(g, xhat, acc_gx);
    }
    float sum_g = fn_avx2_hsum(acc_g), sum_gx = fn_avx2_hsum(acc_gx);
    for (; j < dim; j++) {
        float g = dy[j] * gamma[j];
        sum_g += g;
        sum_gx += g * ((x[j] - mean) * rstd);
    }
    float mean_g = sum_g / (float)dim, mean_gx = sum_gx / (float)dim;
    __m256 vmg = _mm256_set1_ps(mean_g), vmgx = _mm256_set1_ps(mean_gx);
    for (j = 0; j < vec_end; j += 8) {
        __m256 g = _mm256_mul_ps(_mm256_loadu_ps(dy + j), _mm256_loadu_ps(gamma + j));
        __m256 xhat = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + j), vmean), vrstd);
        __m256 t = _mm256_sub_ps(_mm256_sub_ps(g, vmg), _mm256_mul_ps(xhat, vmgx));
        _mm256_storeu_ps(dx + j, _mm256_mul_ps(vrstd, t));
    }
    for (; j < dim; j++)
        dx[j] = rstd * (dy[j] * gamma[j] - mean_g - (x[j] - mean) * rstd * mean_gx);
}

/* AVX-512: the tail is one masked vector instead of a scalar loop. */

FN_TARGET_AVX512 static void ln_row_forward_avx512(const float *x, const float *gamma,
                                                   const float *beta, int64_t dim, float eps,
                                                   float *y, float *mean_out, float *rstd_out) {
    __m512 acc = _mm512_setzero_ps();
    for (int64_t j = 0; j < dim; j += 16)
        acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(fn_avx512_tail(dim - j), x + j));
    float mean = fn_avx512_hsum(acc) / (float)dim;

    __m512 vmean = _mm512_set1_ps(mean);
    acc = _mm512_setzero_ps();
    for (int64_t j = 0; j < dim; j += 16) {
        __mmask16 m = fn_avx512_tail(dim - j);
        __m512 d = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, x + j), vmean);
        acc = _mm512_fmadd_ps(d, d, acc);
    }
    float rstd = 1.0f / sqrtf(fn_avx512_hsum(acc) / (float)dim + eps);

    __m512 vrstd = _mm512_set1_ps(rstd);
    for (int64_t j = 0; j < dim; j += 16) {
        __mmask16 m = fn_avx512_tail(dim - j);
        __m512 xhat = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + j), vmean), vrstd);
        __m512 out = _mm512_fmadd_ps(xhat, _mm512_maskz_loadu_ps(m, gamma + j),
                                     _mm512_maskz_loadu_ps(m, beta + j));
        _mm512_mask_storeu_ps(y + j, m, out);
    }
    *mean_out = mean;
    *rstd_out = rstd;
}

FN_TARGET_AVX512 static void ln_row_backward_avx512(const float *dy, const float *x,
                                                    const float *gamma, float mean, float rstd,
                                                    int64_t dim, float *dx) {
    __m512 vmean = _mm512_set1_ps(mean), vrstd = _mm512_set1_ps(rstd);
    __m512 acc_g = _mm512_setzero_ps(), acc_gx = _mm512_setzero_ps();
    for (int64_t j = 0; j < dim; j += 16) {
        __mmask16 m = fn_avx512_tail(dim - j);
        __m512 g = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, dy + j), _mm512_maskz_loadu_ps(m, gamma + j));
        __m512 xhat = _mm512_mul_ps(_mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, x + j), vmean), vrstd);
        acc_g = _mm512_add_ps(acc_g, g);
        acc_gx = _mm512_fmadd_ps(g, xhat, acc_gx);
    }
    __m512 vmg = _mm512_set1_ps(fn_avx512_hsum(acc_g) / (float)dim);
    __m512 vmgx = _mm512_set1_ps(fn_avx512_hsum(acc_gx) / (float)dim);
    for (int64_t j = 0; j < dim; j += 16) {
        __mmask16 m = fn_avx512_tail(dim - j);
        __m512 g = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, dy + j), _mm512_maskz_loadu_ps(m, gamma + j));
        __m512 xhat = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + j), vmean), vrstd);
        __m512 t = _mm512_sub_ps(_mm512_sub_ps(g, vmg), _mm512_mul_ps(xhat, vmgx));
        _mm512_mask_storeu_ps(dx + j, m, _mm512_mul_ps(vrstd, t));
    }
}

#endif /* FN_SIMD_X86 */

/* ---- kernel sets (one per CPU path, see kernels.h) and the parallel drivers */

struct fn_layernorm_kernels {
    void (*row_forward)(const float *x, const float *gamma, const float *beta, int64_t dim,
                        float eps, float *y, float *mean, float *rstd);
    void (*row_backward)(const float *dy, const float *x, const float *gamma, float mean,
                         float rstd, int64_t dim, float *dx);
    void (*columns)(const float *dy, const float *x, const float *mean, const float *rstd,
                    int64_t rows, int64_t dim, int64_t c0, int64_t c1, float *dgamma, float *dbeta);
};

const fn_layernorm_kernels fn_layernorm_generic = {ln_row_forward_f32, ln_row_backward_f32, ln_columns_f32};
#ifdef FN_SIMD_X86
const fn_layernorm_kernels fn_layernorm_avx2 = {ln_row_forward_avx2, ln_row_backward_avx2, ln_columns_f32_avx2};
const fn_layernorm_kernels fn_layernorm_avx512 = {ln_row_forward_avx512, ln_row_backward_avx512,
                                                  ln_columns_f32_avx512};
#endif

static int valid_sizes(int64_t rows, int64_t dim) { return rows >= 0 && dim >= 1; }

#define DEFINE_LN_FORWARD(REAL, SUFFIX, PICK)                                               \
    fn_status fn_layer_norm_forward_##SUFFIX(const REAL *x, const REAL *gamma,              \
                                             const REAL *beta, int64_t rows, int64_t dim,   \
                                             REAL eps, REAL *y, REAL *mean, REAL *rstd,     \
                                             int n_threads) {                               \
        if (!valid_sizes(rows, dim) || !(eps >= 0)) return FN_ERR_ARG;                      \
        void (*row_forward)(const REAL *, const REAL *, const REAL *, int64_t, REAL, REAL *, \
                            REAL *, REAL *) = PICK;                                         \
        int nth = fn_threads_for(rows * dim, MIN_ELEMENTS_PER_THREAD, n_threads);           \
        (void)nth; /* FN_PARALLEL drops it without OpenMP */                                \
        FN_PARALLEL(nth) {                                                                  \
            int64_t begin, end;                                                             \
            fn_split(rows, fn_thread_id(), fn_thread_count(), &begin, &end);                \
            for (int64_t r = begin; r < end; r++)                                           \
                row_forward(x + r * dim, gamma, beta, dim, eps, y + r * dim, mean + r, rstd + r);  \
        }                                                                                   \
        return FN_OK;                                                                       \
    }

DEFINE_LN_FORWARD(float, f32, fn_kernels()->layernorm->row_forward)
DEFINE_LN_FORWARD(double, f64, ln_row_forward_f64)

/* Columns first (they read dy), then rows (dx may overwrite dy). */
#define DEFINE_LN_BACKWARD(REAL, SUFFIX, PICK_ROW, PICK_COLUMNS)                            \
    fn_status fn_layer_norm_backward_##SUFFIX(const REAL *dy, const REAL *x,                \
                                              const REAL *gamma, const REAL *mean,          \
                                              const REAL *rstd, int64_t rows, int64_t dim,  \
                                              REAL *dx, REAL *dgamma, REAL *dbeta,          \
                                              int n_threads) {                              \
        if (!valid_sizes(rows, dim)) return FN_ERR_ARG;                                     \
        void (*row_backward)(const REAL *, const REAL *, const REAL *, REAL, REAL, int64_t, \
                             REAL *) = PICK_ROW;                                            \
        void (*columns)(const REAL *, const REAL *, const REAL *, const REAL *, int64_t,    \
                        int64_t, int64_t, int64_t, REAL *, REAL *) = PICK_COLUMNS;          \
        int nth = fn_threads_for(rows * dim, MIN_ELEMENTS_PER_THREAD, n_threads);           \
        int64_t units = (dim + COLUMN_UNIT - 1) / COLUMN_UNIT;                              \
        int nth_columns = nth < units ? nth : (int)units;                                   \
        (void)nth_columns; /* FN_PARALLEL drops it without OpenMP */                        \
        FN_PARALLEL(nth_columns) {                                                          \
            int64_t u0, u1;                                                                 \
            fn_split(units, fn_thread_id(), fn_thread_count(), &u0, &u1);                   \
            int64_t c0 = u0 * COLUMN_UNIT, c1 = u1 * COLUMN_UNIT < dim ? u1 * COLUMN_UNIT : dim; \
            if (c0 < c1) columns(dy, x, mean, rstd, rows, dim, c0, c1, dgamma, dbeta); \
        }                                                                                   \
        (void)nth; /* FN_PARALLEL drops it without OpenMP */                                \
        FN_PARALLEL(nth) {                                                                  \
            int64_t begin, end;                                                             \
            fn_split(rows, fn_thread_id(), fn_thread_count(), &begin, &end);                \
            for (int64_t r = begin; r < end; r++)                                           \
                row_backward(dy + r * dim, x + r * dim, gamma, mean[r], rstd[r], dim, dx + r * dim); \
        }                                                                                   \
        return FN_OK;                                                                       \
    }

DEFINE_LN_BACKWARD(float, f32, fn_kernels()->layernorm->row_backward, fn_kernels()->layernorm->columns)
DEFINE_LN_BACKWARD(double, f64, ln_row_backward_f64, ln_columns_f64)
