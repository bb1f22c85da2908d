/* activations.c - elementwise activations, forward and backward, and the
 * row-wise softmax.
 *
 * float32 runs one of three implementations picked by fn_cpu_get_path():
 * portable scalar C, AVX2 or AVX-512 (vector exp/tanh in
 * elementwise_internal.h). Vector loops finish with a masked partial vector,
 * never a scalar tail, so every element goes through the same arithmetic
 * wherever a thread's range starts: results do not depend on n_threads.
 * float64 is plain scalar C.
 */
#include <string.h>

#include "elementwise_internal.h"

/* Elements per thread before another thread pays for itself: cheap maps run
 * at memory speed, transcendental ones cost ~10x more per element. */
#define CHEAP_PER_THREAD (1 << 16)
#define COSTLY_PER_THREAD (1 << 13)
/* Softmax: row elements per thread. */
#define SOFTMAX_PER_THREAD (1 << 13)

typedef void (*map_f32)(const float *x, float *y, int64_t n, float p);
typedef void (*zip_f32)(const float *a, const float *b, float *out, int64_t n, float p);
typedef void (*map_f64)(const double *x, double *y, int64_t n, double p);
typedef void (*zip_f64)(const double *a, const double *b, double *out, int64_t n, double p);

static int is_cheap(fn_activation act) {
    return act == FN_ACT_IDENTITY || act == FN_ACT_STEP || act == FN_ACT_RELU || act == FN_ACT_LEAKY_RELU;
}

/* ---- scalar kernels, generated for float and double ----------------------- */

#define SCALAR_KERNELS(T, SFX, SIGMOID, TANH, GELU, GELU_GRAD)                                        \
    static void identity_##SFX(const T *x, T *y, int64_t n, T p) {                                      \
        (void)p;                                                                                       \
        if (x != y) memmove(y, x, (size_t)n * sizeof(T));                                              \
    }                                                                                                  \
    static void step_##SFX(const T *x, T *y, int64_t n, T p) {                                          \
        (void)p;                                                                                       \
        for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0 ? (T)1 : (T)0;                                 \
    }                                                                                                  \
    static void relu_##SFX(const T *x, T *y, int64_t n, T p) {                                          \
        (void)p; /* x < 0 ? 0 : x lets NaN through */                                                  \
        for (int64_t i = 0; i < n; i++) y[i] = x[i] < 0 ? (T)0 : x[i];                                 \
    }                                                                                                  \
    static void leaky_##SFX(const T *x, T *y, int64_t n, T p) {                                         \
        for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : p * x[i];                             \
    }                                                                                                  \
    static void sigmoid_##SFX(const T *x, T *y, int64_t n, T p) {                                       \
        (void)p;                                                                                       \
        for (int64_t i = 0; i < n; i++) y[i] = SIGMOID(x[i]);                                          \
    }                                                                                                  \
    static void tanh_##SFX(const T *x, T *y, int64_t n, T p) {                                          \
        (void)p;                                                                                       \
        for (int64_t i = 0; i < n; i++) y[i] = TANH(x[i]);                                             \
    }                                                                                                  \
    static void gelu_##SFX(const T *x, T *y, int64_t n, T p) {                                          \
        (void)p;                                                                                       \
        for (int64_t i = 0; i < n; i++) y[i] = GELU(x[i]);                                             \
    }                                                                                                  \
    /* backward: a is x or y (as named), b is dy */                                                    \
    static void d_identity_##SFX(const T *a, const T *b, T *out, int64_t n, T p) {                      \
        (void)a; (void)p;                                                                              \
        if (b != out) memmove(out, b, (size_t)n * sizeof(T));                                          \
    }                                                                                                  \
    static void d_sigmoid_y_##SFX(const T *a, const T *b, T *out, int64_t n, T p) {                     \
        (void)p;                                                                                       \
        for (int64_t i = 0; i < n; i++) out[i] = b[i] * (a[i] * (1 - a[i]));                           \
    }                                                                                                  \
    static void d_sigmoid_x_##SFX(const T *a, const T *b, T *out, int64_t n, T p) {                     \
        (void)p;                                                                                       \
        for (int64_t i = 0; i < n; i++) {                                                              \
            T s = SIGMOID(a[i]);                                                                       \
            out[i] = b[i] * (s * (1 - s));                                                             \
        }                                                                                              \
    }                                                                                                  \
    static void d_tanh_y_##SFX(const T *a, const T *b, T *out, int64_t n, T p) {                        \
        (void)p;                                                                                       \
        for (int64_t i = 0; i < n; i++) out[i] = b[i] * (1 - a[i] * a[i]);                             \
    }                                                                                                  \
    static void d_tanh_x_##SFX(const T *a, const T *b, T *out, int64_t n, T p) {                        \
        (void)p;                                                                                       \
        for (int64_t i = 0; i < n; i++) {                                                              \
            T t = TANH(a[i]);                                                                          \
            out[i] = b[i] * (1 - t * t);                                                               \
        }                                                                                              \
    }                                                                                                  \
    static void d_relu_##SFX(const T *a, const T *b, T *out, int64_t n, T p) {                          \
        (void)p;                                                                                       \
        for (int64_t i = 0; i < n; i++) out[i] = a[i] > 0 ? b[i] : (T)0;                               \
    }                                                                                                  \
    static void d_leaky_##SFX(const T *a, const T *b, T *out, int64_t n, T p) {                         \
        for (int64_t i = 0; i < n; i++) out[i] = a[i] > 0 ? b[i] : p * b[i];                           \
    }                                                                                                  \
    static void d_gelu_##SFX(const T *a, const T *b, T *out, int64_t n, T p) {                          \
        (void)p;                                                                                       \
        for (int64_t i = 0; i < n; i++) out[i] = b[i] * GELU_GRAD(a[i]);                               \
    }

SCALAR_KERNELS(float, f32, fn_sigmoid_f32, tanhf, fn_gelu_f32, fn_gelu_grad_f32)
SCALAR_KERNELS(double, f64, fn_sigmoid_f64, tanh, fn_gelu_f64, fn_gelu_grad_f64)

/* ---- AVX2 / AVX-512 float32 kernels ----------------------------------------
 * Each vector op takes (a, b, p) and ignores what it does not need; the
 * generators below wrap it in a loop with a masked last vector. */
#if defined(__x86_64__) || defined(_M_X64)

#define MAP_AVX2(NAME, OP)                                                                             \
    FN_TARGET_AVX2 static void NAME(const float *x, float *y, int64_t n, float p) {                    \
        int64_t i = 0;                                                                                 \
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, OP(_mm256_loadu_ps(x + i), p));             \
        if (i < n) {                                                                                   \
            __m256i m = fn_avx2_tail(n - i);                                                           \
            _mm256_maskstore_ps(y + i, m, OP(_mm256_maskload_ps(x + i, m), p));                        \
        }                                                                                              \
    }
#define ZIP_AVX2(NAME, OP)                                                                             \
    FN_TARGET_AVX2 static void NAME(const float *a, const float *b, float *out, int64_t n, float p) {  \
        int64_t i = 0;                                                                                 \
        for (; i + 8 <= n; i += 8)                                                                     \
            _mm256_storeu_ps(out + i, OP(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), p));          \
        if (i < n) {                                                                                   \
            __m256i m = fn_avx2_tail(n - i);                                                           \
            _mm256_maskstore_ps(out + i, m, OP(_mm256_maskload_ps(a + i, m), _mm256_maskload_ps(b + i, m), p)); \
        }                                                                                              \
    }
#define MAP_AVX512(NAME, OP)                                                                           \
    FN_TARGET_AVX512 static void NAME(const float *x, float *y, int64_t n, float p) {                  \
        int64_t i = 0;                                                                                 \
        for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, OP(_mm512_loadu_ps(x + i), p));          \
        if (i < n) {                                                                                   \
            __mmask16 m = fn_avx512_tail(n - i);                                                       \
            _mm512_mask_storeu_ps(y + i, m, OP(_mm512_maskz_loadu_ps(m, x + i), p));                   \
        }                                                                                              \
    }
#define ZIP_AVX512(NAME, OP)                                                                           \
    FN_TARGET_AVX512 static void NAME(const float *a, const float *b, float *out, int64_t n, float p) { \
        int64_t i = 0;                                                                                 \
        for (; i + 16 <= n; i += 16)                                                                   \
            _mm512_storeu_ps(out + i, OP(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), p));          \
        if (i < n) {                                                                                   \
            __mmask16 m = fn_avx512_tail(n - i);                                                       \
            _mm512_mask_storeu_ps(out + i, m, OP(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), p)); \
        }                                                                                              \
    }

/* AVX2 element ops */
FN_TARGET_AVX2 static inline __m256 v8_relu(__m256 x, float p) {
    (void)p;
    return _mm256_max_ps(_mm256_setzero_ps(), x); /* second operand wins on NaN */
}
FN_TARGET_AVX2 static inline __m256 v8_leaky(__m256 x, float p) {
    __m256 pos = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GT_OQ);
    return _mm256_blendv_ps(_mm256_mul_ps(_mm256_set1_ps(p), x), x, pos);
}
FN_TARGET_AVX2 static inline __m256 v8_sigmoid(__m256 x, float p) { (void)p; return fn_sigmoid_avx2(x); }
FN_TARGET_AVX2 static inline __m256 v8_tanh(__m256 x, float p) { (void)p; return fn_tanh_avx2(x); }
FN_TARGET_AVX2 static inline __m256 v8_gelu(__m256 x, float p) { (void)p; return fn_gelu_avx2(x); }
FN_TARGET_AVX2 static inline __m256 v8_d_sigmoid_y(__m256 y, __m256 dy, float p) {
    (void)p;
    return _mm256_mul_ps(dy, _mm256_mul_ps(y, _mm256_sub_ps(_mm256_set1_ps(1.0f), y)));
}
FN_TARGET_AVX2 static inline __m256 v8_d_sigmoid_x(__m256 x, __m256 dy, float p) {
    return v8_d_sigmoid_y(fn_sigmoid_avx2(x), dy, p);
}
FN_TARGET_AVX2 static inline __m256 v8_d_tanh_y(__m256 y, __m256 dy, float p) {
    (void)p;
    return _mm256_mul_ps(dy, _mm256_sub_ps(_mm256_set1_ps(1.0f), _mm256_mul_ps(y, y)));
}
FN_TARGET_AVX2 static inline __m256 v8_d_tanh_x(__m256 x, __m256 dy, float p) {
    return v8_d_tanh_y(fn_tanh_avx2(x), dy, p);
}
FN_TARGET_AVX2 static inline __m256 v8_d_relu(__m256 a, __m256 dy, float p) {
    (void)p;
    return _mm256_and_ps(_mm256_cmp_ps(a, _mm256_setzero_ps(), _CMP_GT_OQ), dy);
}
FN_TARGET_AVX2 static inline __m256 v8_d_leaky(__m256 a, __m256 dy, float p) {
    __m256 pos = _mm256_cmp_ps(a, _mm256_setzero_ps(), _CMP_GT_OQ);
    return _mm256_blendv_ps(_mm256_mul_ps(_mm256_set1_ps(p), dy), dy, pos);
}
FN_TARGET_AVX2 static inline __m256 v8_d_gelu(__m256 x, __m256 dy, float p) {
    (void)p;
    return _mm256_mul_ps(dy, fn_gelu_grad_avx2(x));
}

MAP_AVX2(relu_avx2, v8_relu)
MAP_AVX2(leaky_avx2, v8_leaky)
MAP_AVX2(sigmoid_avx2, v8_sigmoid)
MAP_AVX2(tanh_avx2, v8_tanh)
MAP_AVX2(gelu_avx2, v8_gelu)
ZIP_AVX2(d_sigmoid_y_avx2, v8_d_sigmoid_y)
ZIP_AVX2(d_sigmoid_x_avx2, v8_d_sigmoid_x)
ZIP_AVX2(d_tanh_y_avx2, v8_d_tanh_y)
ZIP_AVX2(d_tanh_x_avx2, v8_d_tanh_x)
ZIP_AVX2(d_relu_avx2, v8_d_relu)
ZIP_AVX2(d_leaky_avx2, v8_d_leaky)
ZIP_AVX2(d_gelu_avx2, v8_d_gelu)

/* AVX-512 element ops */
FN_TARGET_AVX512 static inline __m512 v16_relu(__m512 x, float p) {
    (void)p;
    return _mm512_max_ps(_mm512_setzero_ps(), x);
}
FN_TARGET_AVX512 static inline __m512 v16_leaky(__m512 x, float p) {
    __mmask16 pos = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GT_OQ);
    return _mm512_mask_blend_ps(pos, _mm512_mul_ps(_mm512_set1_ps(p), x), x);
}
FN_TARGET_AVX512 static inline __m512 v16_sigmoid(__m512 x, float p) { (void)p; return fn_sigmoid_avx512(x); }
FN_TARGET_AVX512 static inline __m512 v16_tanh(__m512 x, float p) { (void)p; return fn_tanh_avx512(x); }
FN_TARGET_AVX512 static inline __m512 v16_gelu(__m512 x, float p) { (void)p; return fn_gelu_avx512(x); }
FN_TARGET_AVX512 static inline __m512 v16_d_sigmoid_y(__m512 y, __m512 dy, float p) {
    (void)p;
    return _mm512_mul_ps(dy, _mm512_mul_ps(y, _mm512_sub_ps(_mm512_set1_ps(1.0f), y)));
}
FN_TARGET_AVX512 static inline __m512 v16_d_sigmoid_x(__m512 x, __m512 dy, float p) {
    return v16_d_sigmoid_y(fn_sigmoid_avx512(x), dy, p);
}
FN_TARGET_AVX512 static inline __m512 v16_d_tanh_y(__m512 y, __m512 dy, float p) {
    (void)p;
    return _mm512_mul_ps(dy, _mm512_sub_ps(_mm512_set1_ps(1.0f), _mm512_mul_ps(y, y)));
}
FN_TARGET_AVX512 static inline __m512 v16_d_tanh_x(__m512 x, __m512 dy, float p) {
    return v16_d_tanh_y(fn_tanh_avx512(x), dy, p);
}
FN_TARGET_AVX512 static inline __m512 v16_d_relu(__m512 a, __m512 dy, float p) {
    (void)p;
    __mmask16 pos = _mm512_cmp_ps_mask(a, _mm512_setzero_ps(), _CMP_GT_OQ);
    return _mm512_maskz_mov_ps(pos, dy);
}
FN_TARGET_AVX512 static inline __m512 v16_d_leaky(__m512 a, __m512 dy, float p) {
    __mmask16 pos = _mm512_cmp_ps_mask(a, _mm512_setzero_ps(), _CMP_GT_OQ);
    return _mm512_mask_blend_ps(pos, _mm512_mul_ps(_mm512_set1_ps(p), dy), dy);
}
FN_TARGET_AVX512 static inline __m512 v16_d_gelu(__m512 x, __m512 dy, float p) {
    (void)p;
    return _mm512_mul_ps(dy, fn_gelu_grad_avx512(x));
}

MAP_AVX512(relu_avx512, v16_relu)
MAP_AVX512(leaky_avx512, v16_leaky)
MAP_AVX512(sigmoid_avx512, v16_sigmoid)
MAP_AVX512(tanh_avx512, v16_tanh)
MAP_AVX512(gelu_avx512, v16_gelu)
ZIP_AVX512(d_sigmoid_y_avx512, v16_d_sigmoid_y)
ZIP_AVX512(d_sigmoid_x_avx512, v16_d_sigmoid_x)
ZIP_AVX512(d_tanh_y_avx512, v16_d_tanh_y)
ZIP_AVX512(d_tanh_x_avx512, v16_d_tanh_x)
ZIP_AVX512(d_relu_avx512, v16_d_relu)
ZIP_AVX512(d_leaky_avx512, v16_d_leaky)
ZIP_AVX512(d_gelu_avx512, v16_d_gelu)

#define HAVE_VECTOR_PATHS 1
#else
#define HAVE_VECTOR_PATHS 0
#endif

/* ---- choosing a kernel -------------------------------------------------- */

static map_f32 forward_kernel_f32(fn_activation act) {
    fn_cpu_path path = fn_cpu_get_path();
    (void)path;
    switch (act) {
    case FN_ACT_IDENTITY: return identity_f32;
    case FN_ACT_STEP: return step_f32;
#if HAVE_VECTOR_PATHS
    case FN_ACT_RELU: return path == FN_CPU_AVX512 ? relu_avx512 : path == FN_CPU_AVX2 ? relu_avx2 : relu_f32;
    case FN_ACT_LEAKY_RELU: return path == FN_CPU_AVX512 ? leaky_avx512 : path == FN_CPU_AVX2 ? leaky_avx2 : leaky_f32;
    case FN_ACT_SIGMOID: return path == FN_CPU_AVX512 ? sigmoid_avx512 : path == FN_CPU_AVX2 ? sigmoid_avx2 : sigmoid_f32;
    case FN_ACT_TANH: return path == FN_CPU_AVX512 ? tanh_avx512 : path == FN_CPU_AVX2 ? tanh_avx2 : tanh_f32;
    case FN_ACT_GELU: return path == FN_CPU_AVX512 ? gelu_avx512 : path == FN_CPU_AVX2 ? gelu_avx2 : gelu_f32;
#else
    case FN_ACT_RELU: return relu_f32;
    case FN_ACT_LEAKY_RELU: return leaky_f32;
    case FN_ACT_SIGMOID: return sigmoid_f32;
    case FN_ACT_TANH: return tanh_f32;
    case FN_ACT_GELU: return gelu_f32;
#endif
    default: return NULL;
    }
}

static map_f64 forward_kernel_f64(fn_activation act) {
    switch (act) {
    case FN_ACT_IDENTITY: return identity_f64;
    case FN_ACT_STEP: return step_f64;
    case FN_ACT_RELU: return relu_f64;
    case FN_ACT_LEAKY_RELU: return leaky_f64;
    case FN_ACT_SIGMOID: return sigmoid_f64;
    case FN_ACT_TANH: return tanh_f64;
    case FN_ACT_GELU: return gelu_f64;
    default: return NULL;
    }
}

/* Which input the backward reads: 'x', 'y', or 0 (dy only). Prefers the
 * cheaper one when both are given; NULL result means "cannot": the
 * activation has no derivative or the needed input is missing. */
static int backward_input(fn_activation act, double param, const void *x, const void *y) {
    switch (act) {
    case FN_ACT_IDENTITY: return '0';
    case FN_ACT_SIGMOID:
    case FN_ACT_TANH: return y ? 'y' : x ? 'x' : 0;
    case FN_ACT_RELU: return x ? 'x' : y ? 'y' : 0;
    /* y > 0 exactly when x > 0 only for a non-negative slope */
    case FN_ACT_LEAKY_RELU: return x ? 'x' : (y && param >= 0) ? 'y' : 0;
    case FN_ACT_GELU: return x ? 'x' : 0;
    default: return 0;
    }
}

#if HAVE_VECTOR_PATHS
#define PICK(path, name) \
    ((path) == FN_CPU_AVX512 ? name##_avx512 : (path) == FN_CPU_AVX2 ? name##_avx2 : name##_f32)
#else
#define PICK(path, name) name##_f32
#endif

static zip_f32 backward_kernel_f32(fn_activation act, int input) {
    fn_cpu_path path = fn_cpu_get_path();
    (void)path;
    switch (act) {
    case FN_ACT_IDENTITY: return d_identity_f32;
    case FN_ACT_SIGMOID: return input == 'y' ? PICK(path, d_sigmoid_y) : PICK(path, d_sigmoid_x);
    case FN_ACT_TANH: return input == 'y' ? PICK(path, d_tanh_y) : PICK(path, d_tanh_x);
    case FN_ACT_RELU: return PICK(path, d_relu);
    case FN_ACT_LEAKY_RELU: return PICK(path, d_leaky);
    case FN_ACT_GELU: return PICK(path, d_gelu);
    default: return NULL;
    }
}

static zip_f64 backward_kernel_f64(fn_activation act, int input) {
    switch (act) {
    case FN_ACT_IDENTITY: return d_identity_f64;
    case FN_ACT_SIGMOID: return input == 'y' ? d_sigmoid_y_f64 : d_sigmoid_x_f64;
    case FN_ACT_TANH: return input == 'y' ? d_tanh_y_f64 : d_tanh_x_f64;
    case FN_ACT_RELU: return d_relu_f64;
    case FN_ACT_LEAKY_RELU: return d_leaky_f64;
    case FN_ACT_GELU: return d_gelu_f64;
    default: return NULL;
    }
}

/* ---- public entry points ------------------------------------------------ */

/* Runs kernel over [0, n) split into per-thread block ranges. The identity
 * kernels use memmove, so exact aliasing (y == x) is fine everywhere. */
#define RUN_SPLIT(n, nth, CALL)                                        \
    do {                                                               \
        if ((nth) <= 1) {                                              \
            int64_t lo = 0, hi = (n);                                  \
            CALL;                                                      \
        } else {                                                       \
            FN_PARALLEL(nth) {                                         \
                int64_t lo, hi;                                        \
                fn_split_blocks((n), fn_thread_id(), fn_thread_count(), &lo, &hi); \
                if (hi > lo) CALL;                                     \
            }                                                          \
        }                                                              \
    } while (0)

fn_status fn_activation_forward_f32(fn_activation act, float act_param,
                                    const float *x, float *y, int64_t n, int n_threads) {
    map_f32 kernel = forward_kernel_f32(act);
    if (!kernel || n < 0 || (n > 0 && (!x || !y))) return FN_ERR_ARG;
    int nth = fn_threads_for(n, is_cheap(act) ? CHEAP_PER_THREAD : COSTLY_PER_THREAD, n_threads);
    RUN_SPLIT(n, nth, kernel(x + lo, y + lo, hi - lo, act_param));
    return FN_OK;
}

fn_status fn_activation_forward_f64(fn_activation act, double act_param,
                                    const double *x, double *y, int64_t n, int n_threads) {
    map_f64 kernel = forward_kernel_f64(act);
    if (!kernel || n < 0 || (n > 0 && (!x || !y))) return FN_ERR_ARG;
    int nth = fn_threads_for(n, is_cheap(act) ? CHEAP_PER_THREAD : COSTLY_PER_THREAD, n_threads);
    RUN_SPLIT(n, nth, kernel(x + lo, y + lo, hi - lo, act_param));
    return FN_OK;
}

fn_status fn_activation_backward_f32(fn_activation act, float act_param,
                                     const float *x, const float *y, const float *dy,
                                     float *dx, int64_t n, int n_threads) {
    if (n < 0) return FN_ERR_ARG;
    int input = backward_input(act, act_param, x, y);
    if (!input) return FN_ERR_ARG;
    zip_f32 kernel = backward_kernel_f32(act, input);
    if (!kernel || (n > 0 && (!dy || !dx))) return FN_ERR_ARG;
    const float *a = input == 'x' ? x : input == 'y' ? y : dy;
    int nth = fn_threads_for(n, is_cheap(act) ? CHEAP_PER_THREAD : COSTLY_PER_THREAD, n_threads);
    RUN_SPLIT(n, nth, kernel(a + lo, dy + lo, dx + lo, hi - lo, act_param));
    return FN_OK;
}

fn_status fn_activation_backward_f64(fn_activation act, double act_param,
                                     const double *x, const double *y, const double *dy,
                                     double *dx, int64_t n, int n_threads) {
    if (n < 0) return FN_ERR_ARG;
    int input = backward_input(act, act_param, x, y);
    if (!input) return FN_ERR_ARG;
    zip_f64 kernel = backward_kernel_f64(act, input);
    if (!kernel || (n > 0 && (!dy || !dx))) return FN_ERR_ARG;
    const double *a = input == 'x' ? x : input == 'y' ? y : dy;
    int nth = fn_threads_for(n, is_cheap(act) ? CHEAP_PER_THREAD : COSTLY_PER_THREAD, n_threads);
    RUN_SPLIT(n, nth, kernel(a + lo, dy + lo, dx + lo, hi - lo, act_param));
    return FN_OK;
}

fn_status fn_activation_block_f32(fn_activation act, float act_param, const float *x, float *y, int64_t n) {
    map_f32 kernel = forward_kernel_f32(act);
    if (!kernel || n < 0 || (n > 0 && (!x || !y))) return FN_ERR_ARG;
    if (n > 0) kernel(x, y, n, act_param);
    return FN_OK;
}

fn_status fn_activation_grad_block_f32(fn_activation act, float act_param, const float *x, const float *y,
                                       const float *dy, float *dx, int64_t n) {
    int input = backward_input(act, act_param, x, y);
    zip_f32 kernel = input ? backward_kernel_f32(act, input) : NULL;
    if (!kernel || n < 0 || (n > 0 && (!dy || !dx))) return FN_ERR_ARG;
    const float *a = input == 'x' ? x : input == 'y' ? y : dy;
    if (n > 0) kernel(a, dy, dx, n, act_param);
    return FN_OK;
}

/* ---- row primitives (softmax here, cross-entropy in losses.c) ------------ */

static float row_max_f32(const float *x, int64_t n) {
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}
static float row_exp_sum_f32(const float *x, float shift, float *out, int64_t n) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        float e = expf(x[i] - shift);
        if (out) out[i] = e;
        s += e;
    }
    return s;
}
static float row_sum_f32(const float *x, int64_t n) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += x[i];
    return s;
}
static void row_affine_f32(const float *x, float a, float b, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = a * x[i] + b;
}
static float row_dot_f32(const float *a, const float *b, int64_t n) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}
static void row_softmax_grad_f32(const float *y, const float *dy, float dot, float *dx, int64_t n) {
    for (int64_t i = 0; i < n; i++) dx[i] = y[i] * (dy[i] - dot);
}

#if HAVE_VECTOR_PATHS
FN_TARGET_AVX2 static float row_max_avx2(const float *x, int64_t n) {
    __m256 m = _mm256_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
    float r = fn_avx2_hmax(m);
    for (; i < n; i++) r = x[i] > r ? x[i] : r; /* max is exact: a scalar tail is safe */
    return r;
}
FN_TARGET_AVX2 static float row_exp_sum_avx2(const float *x, float shift, float *out, int64_t n) {
    __m256 acc = _mm256_setzero_ps(), sh = _mm256_set1_ps(shift);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = fn_avx2_exp(_mm256_sub_ps(_mm256_loadu_ps(x + i), sh));
        if (out) _mm256_storeu_ps(out + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    if (i < n) {
        __m256i m = fn_avx2_tail(n - i);
        __m256 e = fn_avx2_exp(_mm256_sub_ps(_mm256_maskload_ps(x + i, m), sh));
        e = _mm256_and_ps(e, _mm256_castsi256_ps(m));
        if (out) _mm256_maskstore_ps(out + i, m, e);
        acc = _mm256_add_ps(acc, e);
    }
    return fn_avx2_hsum(acc);
}
FN_TARGET_AVX2 static float row_sum_avx2(const float *x, int64_t n) {
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) acc = _mm256_add_ps(acc, _mm256_loadu_ps(x + i));
    if (i < n) acc = _mm256_add_ps(acc, _mm256_maskload_ps(x + i, fn_avx2_tail(n - i)));
    return fn_avx2_hsum(acc);
}
FN_TARGET_AVX2 static void row_affine_avx2(const float *x, float a, float b, float *y, int64_t n) {
    __m256 va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), vb));
    if (i < n) {
        __m256i m = fn_avx2_tail(n - i);
        _mm256_maskstore_ps(y + i, m, _mm256_fmadd_ps(va, _mm256_maskload_ps(x + i, m), vb));
    }
}
FN_TARGET_AVX2 static float row_dot_avx2(const float *a, const float *b, int64_t n) {
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
    if (i < n) {
        __m256i m = fn_avx2_tail(n - i);
        acc = _mm256_fmadd_ps(_mm256_maskload_ps(a + i, m), _mm256_maskload_ps(b + i, m), acc);
    }
    return fn_avx2_hsum(acc);
}
FN_TARGET_AVX2 static void row_softmax_grad_avx2(const float *y, const float *dy, float dot, float *dx, int64_t n) {
    __m256 d = _mm256_set1_ps(dot);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dx + i, _mm256_mul_ps(_mm256_loadu_ps(y + i), _mm256_sub_ps(_mm256_loadu_ps(dy + i), d)));
    if (i < n) {
        __m256i m = fn_avx2_tail(n - i);
        __m256 r = _mm256_mul_ps(_mm256_maskload_ps(y + i, m), _mm256_sub_ps(_mm256_maskload_ps(dy + i, m), d));
        _mm256_maskstore_ps(dx + i, m, r);
    }
}

FN_TARGET_AVX512 static float row_max_avx512(const float *x, int64_t n) {
    __m512 m = _mm512_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) m = _mm512_max_ps(m, _mm512_loadu_ps(x + i));
    if (i < n) m = _mm512_mask_max_ps(m, fn_avx512_tail(n - i), m, _mm512_maskz_loadu_ps(fn_avx512_tail(n - i), x + i));
    return fn_avx512_hmax(m);
}
FN_TARGET_AVX512 static float row_exp_sum_avx512(const float *x, float shift, float *out, int64_t n) {
    __m512 acc = _mm512_setzero_ps(), acc2 = _mm512_setzero_ps(), sh = _mm512_set1_ps(shift);
    int64_t i = 0;
    /* two vectors per iteration: independent exp chains keep both FMA ports busy */
    for (; i + 32 <= n; i += 32) {
        __m512 e = fn_avx512_exp(_mm512_sub_ps(_mm512_loadu_ps(x + i), sh));
        __m512 e2 = fn_avx512_exp(_mm512_sub_ps(_mm512_loadu_ps(x + i + 16), sh));
        if (out) {
            _mm512_storeu_ps(out + i, e);
            _mm512_storeu_ps(out + i + 16, e2);
        }
        acc = _mm512_add_ps(acc, e);
        acc2 = _mm512_add_ps(acc2, e2);
    }
    acc = _mm512_add_ps(acc, acc2);
    for (; i + 16 <= n; i += 16) {
        __m512 e = fn_avx512_exp(_mm512_sub_ps(_mm512_loadu_ps(x + i), sh));
        if (out) _mm512_storeu_ps(out + i, e);
        acc = _mm512_add_ps(acc, e);
    }
    if (i < n) {
        __mmask16 m = fn_avx512_tail(n - i);
        __m512 e = fn_avx512_exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), sh));
        if (out) _mm512_mask_storeu_ps(out + i, m, e);
        acc = _mm512_mask_add_ps(acc, m, acc, e);
    }
    return fn_avx512_hsum(acc);
}
FN_TARGET_AVX512 static float row_sum_avx512(const float *x, int64_t n) {
    __m512 acc = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) acc = _mm512_add_ps(acc, _mm512_loadu_ps(x + i));
    if (i < n) acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(fn_avx512_tail(n - i), x + i));
    return fn_avx512_hsum(acc);
}
FN_TARGET_AVX512 static void row_affine_avx512(const float *x, float a, float b, float *y, int64_t n) {
    __m512 va = _mm512_set1_ps(a), vb = _mm512_set1_ps(b);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), vb));
    if (i < n) {
        __mmask16 m = fn_avx512_tail(n - i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i), vb));
    }
}
FN_TARGET_AVX512 static float row_dot_avx512(const float *a, const float *b, int64_t n) {
    __m512 acc = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc);
    if (i < n) {
        __mmask16 m = fn_avx512_tail(n - i);
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), acc);
    }
    return fn_avx512_hsum(acc);
}
FN_TARGET_AVX512 static void row_softmax_grad_avx512(const float *y, const float *dy, float dot, float *dx, int64_t n) {
    __m512 d = _mm512_set1_ps(dot);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dx + i, _mm512_mul_ps(_mm512_loadu_ps(y + i), _mm512_sub_ps(_mm512_loadu_ps(dy + i), d)));
    if (i < n) {
        __mmask16 m = fn_avx512_tail(n - i);
        __m512 r = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, y + i), _mm512_sub_ps(_mm512_maskz_loadu_ps(m, dy + i), d));
        _mm512_mask_storeu_ps(dx + i, m, r);
    }
}

static const fn_row_ops_f32_t row_ops_avx2 = {row_max_avx2, row_exp_sum_avx2, row_sum_avx2,
                                              row_affine_avx2, row_dot_avx2, row_softmax_grad_avx2};
static const fn_row_ops_f32_t row_ops_avx512 = {row_max_avx512, row_exp_sum_avx512, row_sum_avx512,
                                                row_affine_avx512, row_dot_avx512, row_softmax_grad_avx512};
#endif

static const fn_row_ops_f32_t row_ops_generic = {row_max_f32, row_exp_sum_f32, row_sum_f32,
                                                 row_affine_f32, row_dot_f32, row_softmax_grad_f32};

const fn_row_ops_f32_t *fn_row_ops_f32(void) {
#if HAVE_VECTOR_PATHS
    switch (fn_cpu_get_path()) {
    case FN_CPU_AVX512: return &row_ops_avx512;
    case FN_CPU_AVX2: return &row_ops_avx2;
    default: break;
    }
#endif
    return &row_ops_generic;
}

/* ---- softmax ------------------------------------------------------------ */

/* Rows are split over threads; each row is computed the same way by
 * whichever thread gets it. */
#define RUN_ROWS(rows, cols, n_threads, ...)                                          \
    do {                                                                              \
        int nth_ = fn_threads_for((rows) * (cols), SOFTMAX_PER_THREAD, (n_threads));  \
        if (nth_ > (rows)) nth_ = (int)(rows);                                        \
        if (nth_ <= 1) {                                                              \
            for (int64_t r = 0; r < (rows); r++) __VA_ARGS__;                                \
        } else {                                                                      \
            FN_PARALLEL(nth_) {                                                       \
                int64_t lo_, hi_;                                                     \
                fn_split((rows), fn_thread_id(), fn_thread_count(), &lo_, &hi_);      \
                for (int64_t r = lo_; r < hi_; r++) __VA_ARGS__;                             \
            }                                                                         \
        }                                                                             \
    } while (0)

fn_status fn_softmax_forward_f32(const float *x, float *y, int64_t rows, int64_t cols, int n_threads) {
    if (rows < 0 || cols < 0 || (rows * cols > 0 && (!x || !y))) return FN_ERR_ARG;
    if (rows == 0 || cols == 0) return FN_OK;
    const fn_row_ops_f32_t *ops = fn_row_ops_f32();
    RUN_ROWS(rows, cols, n_threads, {
        const float *xr = x + r * cols;
        float *yr = y + r * cols;
        float sum = ops->exp_sum(xr, ops->max(xr, cols), yr, cols);
        ops->affine(yr, 1.0f / sum, 0.0f, yr, cols);
    });
    return FN_OK;
}

fn_status fn_softmax_forward_f64(const double *x, double *y, int64_t rows, int64_t cols, int n_threads) {
    if (rows < 0 || cols < 0 || (rows * cols > 0 && (!x || !y))) return FN_ERR_ARG;
    if (rows == 0 || cols == 0) return FN_OK;
    RUN_ROWS(rows, cols, n_threads, {
        const double *xr = x + r * cols;
        double *yr = y + r * cols;
        double mx = -INFINITY, sum = 0.0;
        for (int64_t j = 0; j < cols; j++) mx = xr[j] > mx ? xr[j] : mx;
        for (int64_t j = 0; j < cols; j++) sum += (yr[j] = exp(xr[j] - mx));
        double inv = 1.0 / sum;
        for (int64_t j = 0; j < cols; j++) yr[j] *= inv;
    });
    return FN_OK;
}

fn_status fn_softmax_backward_f32(const float *y, const float *dy, float *dx,
                                  int64_t rows, int64_t cols, int n_threads) {
    if (rows < 0 || cols < 0 || (rows * cols > 0 && (!y || !dy || !dx))) return FN_ERR_ARG;
    if (rows == 0 || cols == 0) return FN_OK;
    const fn_row_ops_f32_t *ops = fn_row_ops_f32();
    RUN_ROWS(rows, cols, n_threads, {
        const float *yr = y + r * cols, *dyr = dy + r * cols;
        ops->softmax_grad(yr, dyr, ops->dot(yr, dyr, cols), dx + r * cols, cols);
    });
    return FN_OK;
}

fn_status fn_softmax_backward_f64(const double *y, const double *dy, double *dx,
                                  int64_t rows, int64_t cols, int n_threads) {
    if (rows < 0 || cols < 0 || (rows * cols > 0 && (!y || !dy || !dx))) return FN_ERR_ARG;
    if (rows == 0 || cols == 0) return FN_OK;
    RUN_ROWS(rows, cols, n_threads, {
        const double *yr = y + r * cols, *dyr = dy + r * cols;
        double *dxr = dx + r * cols;
        double dot = 0.0;
        for (int64_t j = 0; j < cols; j++) dot += yr[j] * dyr[j];
        for (int64_t j = 0; j < cols; j++) dxr[j] = yr[j] * (dyr[j] - dot);
    });
    return FN_OK;
}
