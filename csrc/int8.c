/* int8.c - int8 inference: quantisation, weight packing, the integer GEMM
 * driver with its portable kernel, and the quantised dense layer.
 *
 * Weights are quantised per output channel (column j of the k x n matrix:
 * scale_w[j] = max|W[:, j]| / 127), activations per row when they arrive
 * (scale_x[i] = max|X[i, :]| / 127); q = round-to-nearest-even(v * 127/max),
 * so |q| <= 127. The products are summed exactly in int32 and
 *     y[i, j] = (float)acc[i, j] * (scale_x[i] * scale_w[j])  (+ bias, activation)
 * in that order, on every path, so paths agree bit for bit. A row of X that
 * holds a NaN or an infinity gets a NaN scale: its outputs are NaN.
 *
 * Packed weights (one layout for every path): panels of 32 columns; inside a
 * panel, for each group u of 4 consecutive k, 32 columns x 4 bytes
 * (W[4u+t, j] at byte 128u + 4j + t); k is zero-padded to a multiple of 64
 * (one AMX tile row). VPDPBUSD and TDPBSSD/TDPBUSD read that directly. With
 * the panels come the column sums of the int8 weights, which the VNNI path
 * needs: VPDPBUSD multiplies unsigned by signed bytes, so it is fed
 * q + 128 and starts each column's sums at -128 * colsum[j] (exact in int32).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "int8_internal.h"

static int64_t round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }

int64_t fn_s8_kpad(int64_t k) { return round_up(k > 0 ? k : 1, FN_S8_KALIGN); }

static int64_t packed_bytes(int64_t k, int64_t n) { return round_up(n, FN_S8_NR) * fn_s8_kpad(k); }

fn_status fn_s8_packed_bytes(int64_t k, int64_t n, int64_t *bytes) {
    if (k < 0 || n < 0 || !bytes) return FN_ERR_ARG;
    *bytes = packed_bytes(k, n);
    return FN_OK;
}

/* ---- quantisation ----------------------------------------------------------- */

static float row_scale_inverse(float amax, float *scale) {
    if (!(amax <= 3.4028235e38f)) { /* NaN or infinity somewhere */
        *scale = NAN;
        return 0.0f;
    }
    *scale = amax / 127.0f;
    return amax > 0.0f ? 127.0f / amax : 0.0f;
}

static int8_t quantize_value(float v, float inv) {
    float r = nearbyintf(v * inv); /* round to nearest even (default rounding mode) */
    if (r != r) return 0;          /* a NaN row: its scale is NaN already */
    return (int8_t)(r > 127.0f ? 127 : r < -127.0f ? -127 : (int)r);
}

/* Row i of x (k floats) into dst (kpad bytes, zero-padded), plus `offset`
 * (0, or 128 for the unsigned form); returns the row's scale. */
float fn_s8_quantize_row(const float *x, int64_t k, int64_t kpad, uint8_t offset, uint8_t *dst) {
    float amax = 0.0f;
    for (int64_t p = 0; p < k; ++p) {
        float a = fabsf(x[p]);
        amax = (a > amax || a != a) ? a : amax; /* NaN sticks */
    }
    float scale, inv = row_scale_inverse(amax, &scale);
    for (int64_t p = 0; p < k; ++p) dst[p] = (uint8_t)(quantize_value(x[p], inv) + offset);
    memset(dst + k, offset, (size_t)(kpad - k));
    return scale;
}

fn_status fn_quantize_rows_s8(const float *x, int64_t m, int64_t k, int64_t ldx, int8_t *q, float *scale) {
    if (m < 0 || k < 0 || ldx < (k > 1 ? k : 1) || (m > 0 && k > 0 && (!x || !q)) || (m > 0 && !scale))
        return FN_ERR_ARG;
    for (int64_t i = 0; i < m; ++i) {
        float amax = 0.0f;
        for (int64_t p = 0; p < k; ++p) {
            float a = fabsf(x[i * ldx + p]);
            amax = (a > amax || a != a) ? a : amax;
        }
        float inv = row_scale_inverse(amax, &scale[i]);
        for (int64_t p = 0; p < k; ++p) q[i * k + p] = quantize_value(x[i * ldx + p], inv);
    }
    return FN_OK;
}

fn_status fn_quantize_columns_s8(const float *w, int64_t k, int64_t n, int64_t ldw, int8_t *q, float *scale) {
    if (k < 0 || n < 0 || ldw < (n > 1 ? n : 1) || (k > 0 && n > 0 && (!w || !q)) || (n > 0 && !scale))
        return FN_ERR_ARG;
    for (int64_t j = 0; j < n; ++j) {
        float amax = 0.0f;
        for (int64_t p = 0; p < k; ++p) {
            float a = fabsf(w[p * ldw + j]);
            amax = (a > amax || a != a) ? a : amax;
        }
        if (!(amax <= 3.4028235e38f)) return FN_ERR_NONFINITE; /* weights must be finite */
        float inv = row_scale_inverse(amax, &scale[j]);
        for (int64_t p = 0; p < k; ++p) q[p * n + j] = quantize_value(w[p * ldw + j], inv);
    }
    return FN_OK;
}

fn_status fn_pack_s8(const int8_t *q, int64_t k, int64_t n, int8_t *packed, int32_t *colsum) {
    if (k < 0 || n < 0 || (k > 0 && n > 0 && !q) || !packed || (n > 0 && !colsum)) return FN_ERR_ARG;
    int64_t kpad = fn_s8_kpad(k), panels = (n + FN_S8_NR - 1) / FN_S8_NR;
    memset(packed, 0, (size_t)packed_bytes(k, n));
    for (int64_t j = 0; j < n; ++j) {
        int8_t *panel = packed + (j / FN_S8_NR) * kpad * FN_S8_NR;
        int64_t jj = j % FN_S8_NR, sum = 0;
        for (int64_t p = 0; p < k; ++p) {
            panel[(p / 4) * 4 * FN_S8_NR + 4 * jj + p % 4] = q[p * n + j];
            sum += q[p * n + j];
        }
        colsum[j] = (int32_t)sum;
    }
    (void)panels;
    return FN_OK;
}

/* ---- portable kernel ------------------------------------------------------------ */

static void generic_s8_kernel(int mr, int64_t kpad, const uint8_t *a, int64_t lda, const int8_t *b,
                              const int32_t *init, int32_t *tile) {
    int32_t acc[FN_S8_MR_MAX][FN_S8_NR];
    for (int i = 0; i < mr; ++i)
        for (int j = 0; j < FN_S8_NR; ++j) acc[i][j] = init ? init[j] : 0;
    for (int64_t u = 0; u < kpad / 4; ++u) {
        const int8_t *bu = b + u * 4 * FN_S8_NR;
        for (int i = 0; i < mr; ++i) {
            const int8_t *ai = (const int8_t *)a + i * lda + 4 * u;
            for (int j = 0; j < FN_S8_NR; ++j)
                acc[i][j] += ai[0] * bu[4 * j] + ai[1] * bu[4 * j + 1] + ai[2] * bu[4 * j + 2] +
                             ai[3] * bu[4 * j + 3];
        }
    }
    for (int i = 0; i < mr; ++i) memcpy(tile + i * FN_S8_NR, acc[i], sizeof acc[i]);
}

const fn_s8_arch fn_s8_arch_generic = {"generic", 6, 0, generic_s8_kernel, NULL, NULL, NULL, NULL};

const fn_s8_arch *fn_s8_arch_current(void) {
    fn_mma_path path = fn_mma_get_path();
    (void)path;
#ifdef FN_HAVE_AMX_INTRIN
    if (path == FN_MMA_AMX) return &fn_s8_arch_amx;
#endif
#ifdef FN_HAVE_VNNI_INTRIN
    if (path >= FN_MMA_AVX512_VNNI) return &fn_s8_arch_vnni;
#endif
#ifdef FN_SIMD_X86
    if (fn_cpu_get_path() >= FN_CPU_AVX2) return &fn_s8_arch_avx2; /* no int8 unit: AVX2's 16-bit products */
#endif
    return &fn_s8_arch_generic;
}

const char *fn_int8_kernel_name(void) { return fn_s8_arch_current()->name; }

/* ---- the driver --------------------------------------------------------------------
 * Tiles of MR rows x 32 columns, numbered in groups of S8_GROUP_PANELS panels
 * (32-column strips of B): within a group, row block by row block, and in a
 * row block panel by panel. So a thread's run of tiles shares few B panels
 * (a group's panels stay in L2), and consecutive tiles fill one row block's
 * rows S8_GROUP_PANELS x 32 floats at a time: numbered panel by panel, each
 * tile wrote 128 bytes per row, a full row stride apart (16 KB for 4000
 * logits), and the stores of a big output missed the cache. Threads take
 * contiguous runs. Each tile's int32 sums go through `finish`, which stores
 * them or dequantises them. */

#define S8_GROUP_PANELS 8

typedef struct {
    int64_t m, n, kpad;
    const uint8_t *a;
    const int8_t *b;
    const int32_t *init;  /* -128 x column sums (round_up(n, 32) of them) or NULL */
    const fn_s8_arch *arch;
    fn_s8_finish finish;
    void *ctx;
} s8_job;

static void s8_tiles(const s8_job *job, int64_t t0, int64_t t1) {
    const fn_s8_arch *arch = job->arch;
    const int MR = arch->mr;
    int64_t row_blocks = (job->m + MR - 1) / MR, panels = (job->n + FN_S8_NR - 1) / FN_S8_NR;
    int64_t group_tiles = row_blocks * S8_GROUP_PANELS;
    int32_t tile[FN_S8_MR_MAX * FN_S8_NR];
    if (arch->thread_begin) arch->thread_begin();
    for (int64_t t = t0; t < t1; ++t) {
        int64_t first = t / group_tiles * S8_GROUP_PANELS, r = t % group_tiles;
        int64_t width = panels - first < S8_GROUP_PANELS ? panels - first : S8_GROUP_PANELS;
        int64_t q = first + r % width, i0 = r / width * MR, j0 = q * FN_S8_NR;
        int mr = job->m - i0 < MR ? (int)(job->m - i0) : MR;
        int nr = job->n - j0 < FN_S8_NR ? (int)(job->n - j0) : FN_S8_NR;
        arch->kernel(mr, job->kpad, job->a + i0 * job->kpad, job->kpad, job->b + q * job->kpad * FN_S8_NR,
                     job->init ? job->init + j0 : NULL, tile);
        job->finish(tile, mr, nr, i0, j0, job->ctx);
    }
    if (arch->thread_end) arch->thread_end();
}

/* Integer products of at least this many multiply-adds go to a second thread. */
#define S8_MIN_WORK_PER_THREAD (1 << 21)

fn_status fn_s8_run(const fn_s8_arch *arch, int64_t m, int64_t n, int64_t kpad, const uint8_t *a,
                    const int8_t *b, const int32_t *colsum, fn_s8_finish finish, void *ctx, int n_threads) {
    if (m == 0 || n == 0) return FN_OK;
    int32_t *init = NULL;
    if (arch->a_offset) { /* A came as q + 128: every sum holds 128 x its column's sum too much */
        int64_t n_pad = round_up(n, FN_S8_NR);
        init = malloc((size_t)n_pad * sizeof(int32_t));
        if (!init) return FN_ERR_NOMEM;
        for (int64_t j = 0; j < n_pad; ++j) init[j] = j < n ? -128 * colsum[j] : 0;
    }
    s8_job job = {m, n, kpad, a, b, init, arch, finish, ctx};
    int64_t tiles = ((m + arch->mr - 1) / arch->mr) * ((n + FN_S8_NR - 1) / FN_S8_NR);
    int nth = fn_threads_for(m * n * kpad, S8_MIN_WORK_PER_THREAD, n_threads);
    if (nth > tiles) nth = (int)tiles;
    if (nth <= 1) {
        s8_tiles(&job, 0, tiles);
    } else {
        FN_PARALLEL(nth) {
            int64_t t0, t1;
            fn_split(tiles, fn_thread_id(), fn_thread_count(), &t0, &t1);
            s8_tiles(&job, t0, t1);
        }
    }
    free(init);
    return FN_OK;
}

/* Quantised rows of x for `arch`: m rounded up to MR rows (zero rows, as
 * AMX loads whole tiles), kpad bytes each; scales of the m rows. */
static uint8_t *quantize_for(const fn_s8_arch *arch, const float *x, int64_t m, int64_t k, int64_t ldx,
                             int64_t kpad, float *scales) {
    int64_t rows = round_up(m, arch->mr);
    uint8_t offset = arch->a_offset ? 128 : 0;
    uint8_t *a = malloc((size_t)(rows * kpad) + 64);
    if (!a) return NULL;
    float (*quantize_row)(const float *, int64_t, int64_t, uint8_t, uint8_t *) =
        arch->quantize_row ? arch->quantize_row : fn_s8_quantize_row;
    for (int64_t i = 0; i < m; ++i) scales[i] = quantize_row(x + i * ldx, k, kpad, offset, a + i * kpad);
    memset(a + m * kpad, offset, (size_t)((rows - m) * kpad));
    return a;
}

static uint8_t *copy_rows_for(const fn_s8_arch *arch, const int8_t *q, int64_t m, int64_t k, int64_t lda,
                              int64_t kpad) {
    int64_t rows = round_up(m, arch->mr);
    uint8_t offset = arch->a_offset ? 128 : 0;
    uint8_t *a = malloc((size_t)(rows * kpad) + 64);
    if (!a) return NULL;
    memset(a, offset, (size_t)(rows * kpad));
    for (int64_t i = 0; i < m; ++i)
        for (int64_t p = 0; p < k; ++p) a[i * kpad + p] = (uint8_t)(q[i * lda + p] + offset);
    return a;
}

/* ---- the raw integer GEMM ----------------------------------------------------------- */

typedef struct { int32_t *c; int64_t ldc; } store_ctx;

static void store_int32(const int32_t *tile, int mr, int nr, int64_t i0, int64_t j0, void *ctx_) {
    const store_ctx *ctx = ctx_;
    for (int i = 0; i < mr; ++i)
        memcpy(ctx->c + (i0 + i) * ctx->ldc + j0, tile + i * FN_S8_NR, (size_t)nr * sizeof(int32_t));
}

fn_status fn_gemm_s8s32(int64_t m, int64_t n, int64_t k, const int8_t *a, int64_t lda,
                        const int8_t *packed_b, const int32_t *colsum, int32_t *c, int64_t ldc, int n_threads) {
    if (m < 0 || n < 0 || k < 0 || lda < (k > 1 ? k : 1) || ldc < (n > 1 ? n : 1)) return FN_ERR_ARG;
    if (m > 0 && n > 0 && (!c || !packed_b || !colsum || (k > 0 && !a))) return FN_ERR_ARG;
    if (m == 0 || n == 0) return FN_OK;
    const fn_s8_arch *arch = fn_s8_arch_current();
    int64_t kpad = fn_s8_kpad(k);
    uint8_t *abuf = copy_rows_for(arch, a, m, k, lda, kpad);
    if (!abuf) return FN_ERR_NOMEM;
    store_ctx ctx = {c, ldc};
    fn_status status = fn_s8_run(arch, m, n, kpad, abuf, packed_b, colsum, store_int32, &ctx, n_threads);
    free(abuf);
    return status;
}

/* ---- the quantised dense layer ------------------------------------------------------ */

typedef struct {
    float *y;
    int64_t ldy;
    const float *x_scale, *w_scale, *bias;
    const fn_epilogue_f32 *epi; /* what is left after the bias: the activation; NULL if none */
    fn_sgemm_epilogue epilogue;
    const fn_s8_arch *arch;
} dense_ctx;

static void dequantize_portable(const int32_t *tile, int mr, int nr, const float *x_scale, const float *w_scale,
                                const float *bias, float *y, int64_t ldy) {
    for (int i = 0; i < mr; ++i)
        for (int j = 0; j < nr; ++j) {
            float v = (float)tile[i * FN_S8_NR + j] * (x_scale[i] * w_scale[j]);
            y[i * ldy + j] = bias ? v + bias[j] : v;
        }
}

/* Dequantise and add the bias in one pass over the tile (a separate bias pass cost
 * as much as the dequantisation: ~4% of an int8 translation); then the activation. */
static void dequantize_tile(const int32_t *tile, int mr, int nr, int64_t i0, int64_t j0, void *ctx_) {
    const dense_ctx *ctx = ctx_;
    (ctx->arch->dequantize ? ctx->arch->dequantize : dequantize_portable)(
        tile, mr, nr, ctx->x_scale + i0, ctx->w_scale + j0, ctx->bias ? ctx->bias + j0 : NULL,
        ctx->y + i0 * ctx->ldy + j0, ctx->ldy);
    if (ctx->epi) ctx->epilogue(ctx->y + i0 * ctx->ldy + j0, ctx->ldy, mr, nr, i0, j0, ctx->epi);
}

fn_status fn_dense_forward_s8(int64_t m, int64_t n, int64_t k, const float *x, int64_t ldx,
                              const int8_t *packed_w, const int32_t *colsum, const float *w_scale,
                              const float *bias, fn_activation act, float act_param,
                              float *y, int64_t ldy, int n_threads) {
    if (m < 0 || n < 0 || k < 0 || ldx < (k > 1 ? k : 1) || ldy < (n > 1 ? n : 1)) return FN_ERR_ARG;
    if (!fn_activation_info(act)) return FN_ERR_ARG;
    if (m > 0 && n > 0 && (!y || !packed_w || !colsum || !w_scale || (k > 0 && !x))) return FN_ERR_ARG;
    if (m == 0 || n == 0) return FN_OK;
    const fn_s8_arch *arch = fn_s8_arch_current();
    int64_t kpad = fn_s8_kpad(k);
    float *x_scale = malloc((size_t)m * sizeof(float));
    uint8_t *abuf = x_scale ? quantize_for(arch, x, m, k, ldx, kpad, x_scale) : NULL;
    if (!abuf) {
        free(x_scale);
        return FN_ERR_NOMEM;
    }
    fn_epilogue_f32 activation = {NULL, act, act_param, NULL, n};
    dense_ctx ctx = {y, ldy, x_scale, w_scale, bias, act == FN_ACT_IDENTITY ? NULL : &activation,
                     fn_sgemm_arch_current()->epilogue, arch};
    fn_status status = fn_s8_run(arch, m, n, kpad, abuf, packed_w, colsum, dequantize_tile, &ctx, n_threads);
    free(abuf);
    free(x_scale);
    return status;
}
