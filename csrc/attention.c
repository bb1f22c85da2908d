/* attention.c - multi-head scaled dot-product attention, forward and backward.
 *
 * Work is split over (batch, head) pairs: each pair reads its own slices of
 * q, k, v and writes its own slices of every output, so threads never share
 * an output element and results do not depend on the thread count.
 *
 * One query row is handled in a single pass: scores, scale, mask, softmax
 * and the weighted sum of values, with the score row kept in L1. The SIMD
 * path first packs the head's keys transposed (dh x tk, padded to the vector
 * width) so a whole row of scores is a run of broadcast-FMAs over the keys,
 * without horizontal sums; the sizes this is built for (tk <= 64, dh = 32)
 * keep that packed block in L1.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

/* What a softmax row came to: no visible key (the row is zeros), a normal
 * row, or a NaN score somewhere (the row is all NaN, as in the reference). */
enum { ROW_NO_KEY = 0, ROW_OK = 1, ROW_NAN = 2 };

/* Multiply-adds per thread below which another thread does not pay. */
#define MIN_FLOPS_PER_THREAD 65536
/* Up to this many queries per head, scores are computed as plain dot
 * products instead of against keys packed transposed: packing costs about
 * tk * dh moves per head, which a handful of query rows cannot repay. */
#define DIRECT_MAX_QUERIES 4

typedef struct {
    int64_t batch, tq, tk, heads, dh;
    int64_t q_sb, q_st, k_sb, k_st, v_sb, v_st;
    int64_t do_sb, do_st, dq_sb, dq_st, dk_sb, dk_st, dv_sb, dv_st; /* backward only */
    const uint8_t *pad; /* kv_batch x tk, 1 = padding, or NULL */
    const int64_t *kv_rows; /* forward: the row of k, v and pad that query row b reads, or NULL (row b) */
    int causal;
    double scale;
} attn_dims;

/* The row of k, v and the padding mask that query row b attends to. Decoding
 * keeps the encoder memory's keys and values where they are and says which
 * row each sentence (or beam hypothesis) reads, instead of copying them every
 * time sentences finish or hypotheses are reordered. */
static inline int64_t attn_kv_row(const attn_dims *a, int64_t b) { return a->kv_rows ? a->kv_rows[b] : b; }

/* Keys [0, n) are visible to query i before padding is considered. */
static inline int64_t attn_visible_keys(const attn_dims *a, int64_t i) {
    if (!a->causal) return a->tk;
    int64_t n = i + (a->tk - a->tq) + 1;
    return n < 0 ? 0 : (n > a->tk ? a->tk : n);
}

#define REAL float
#define SUFFIX f32
#define EXP expf
#include "attention_generic.h"
#undef REAL
#undef SUFFIX
#undef EXP

#define REAL double
#define SUFFIX f64
#define EXP exp
#include "attention_generic.h"
#undef REAL
#undef SUFFIX
#undef EXP

static void attn_set_backward_strides(attn_dims *a, int64_t do_sb, int64_t do_st,
                                      int64_t dq_sb, int64_t dq_st, int64_t dk_sb, int64_t dk_st,
                                      int64_t dv_sb, int64_t dv_st) {
    a->do_sb = do_sb; a->do_st = do_st; a->dq_sb = dq_sb; a->dq_st = dq_st;
    a->dk_sb = dk_sb; a->dk_st = dk_st; a->dv_sb = dv_sb; a->dv_st = dv_st;
}

static fn_status attn_fill_dims(attn_dims *a, int64_t batch, int64_t tq, int64_t tk,
                                int64_t heads, int64_t dh, int64_t q_sb, int64_t q_st,
                                int64_t k_sb, int64_t k_st, int64_t v_sb, int64_t v_st,
                                const uint8_t *pad, int causal) {
    if (batch < 0 || tq < 0 || tk < 0 || heads < 1 || dh < 1) return FN_ERR_ARG;
    a->batch = batch; a->tq = tq; a->tk = tk; a->heads = heads; a->dh = dh;
    a->q_sb = q_sb; a->q_st = q_st; a->k_sb = k_sb; a->k_st = k_st;
    a->v_sb = v_sb; a->v_st = v_st;
    attn_set_backward_strides(a, 0, 0, 0, 0, 0, 0, 0, 0);
    a->pad = pad; a->kv_rows = NULL; a->causal = causal != 0;
    a->scale = 1.0 / sqrt((double)dh);
    return FN_OK;
}

static int attn_threads(const attn_dims *a, int n_threads) {
    int64_t pairs = a->batch * a->heads;
    int nth = fn_threads_for(pairs * a->tq * (a->tk + 1) * a->dh, MIN_FLOPS_PER_THREAD, n_threads);
    if (nth > pairs) nth = pairs > 0 ? (int)pairs : 1;
    return nth;
}

/* ---- float SIMD path: the shared template, once per ISA ------------------ */

/* The float32 attention of one CPU path (see kernels.h); lanes == 0 means
 * the portable code. */
struct fn_attention_kernels {
    int64_t lanes;
    int64_t (*scratch_floats)(const attn_dims *a, int64_t tkp);
    void (*head_forward)(const attn_dims *a, int64_t b, int64_t h, int64_t tkp, const float *q,
                         const float *k, const float *v, float *out, float *probs, float *scratch);
    void (*head_backward)(const attn_dims *a, int64_t b, int64_t h, int64_t tkp, const float *dout,
                          const float *q, const float *k, const float *v, const float *probs,
                          float *dq, float *dk, float *dv, float *scratch);
};

const fn_attention_kernels fn_attention_generic = {0, NULL, NULL, NULL};

#ifdef FN_SIMD_X86

/* True when any of s[0:n] is NaN. */
static int attn_any_nan_f32(const float *s, int64_t n) {
    for (int64_t j = 0; j < n; j++)
        if (s[j] != s[j]) return 1;
    return 0;
}

#define FN_SIMD_ISA avx2
#define FN_SIMD_TARGET FN_TARGET_AVX2
#include "attention_simd.h"

#define FN_SIMD_ISA avx512
#define FN_SIMD_TARGET FN_TARGET_AVX512
#include "attention_simd.h"

const fn_attention_kernels fn_attention_avx2 = {fn_avx2_lanes, scratch_floats_avx2, head_forward_avx2, head_backward_avx2};
const fn_attention_kernels fn_attention_avx512 = {fn_avx512_lanes, scratch_floats_avx512,
                                                  head_forward_avx512, head_backward_avx512};

/* Padded key count and per-thread scratch (rounded to a cache line). */
static void simd_layout(const attn_dims *a, const fn_attention_kernels *ks, int64_t *tkp,
                        int64_t *per_thread) {
    int64_t w = ks->lanes;
    *tkp = a->tk < 1 ? w : (a->tk + w - 1) / w * w;
    *per_thread = (ks->scratch_floats(a, *tkp) + 15) / 16 * 16;
}

static fn_status attention_forward_simd(const attn_dims *a, const fn_attention_kernels *ks, const float *q,
                                        const float *k, const float *v, float *out,
                                        float *probs, int nth) {
    int64_t tkp, per_thread;
    simd_layout(a, ks, &tkp, &per_thread);
    /* calloc: the padding columns of the packed keys must read as zeros. */
    float *scratch = calloc((size_t)(per_thread * nth), sizeof(float));
    if (!scratch) return FN_ERR_NOMEM;
    (void)nth; /* FN_PARALLEL drops it without OpenMP */
    FN_PARALLEL(nth) {
        int64_t begin, end;
        fn_split(a->batch * a->heads, fn_thread_id(), fn_thread_count(), &begin, &end);
        float *mine = scratch + fn_thread_id() * per_thread;
        for (int64_t bh = begin; bh < end; bh++)
            ks->head_forward(a, bh / a->heads, bh % a->heads, tkp, q, k, v, out, probs, mine);
    }
    free(scratch);
    return FN_OK;
}

static fn_status attention_backward_simd(const attn_dims *a, const fn_attention_kernels *ks, const float *dout,
                                         const float *q, const float *k, const float *v,
                                         const float *probs, float *dq, float *dk, float *dv,
                                         int nth) {
    int64_t tkp, per_thread;
    simd_layout(a, ks, &tkp, &per_thread);
    float *scratch = calloc((size_t)(per_thread * nth), sizeof(float));
    if (!scratch) return FN_ERR_NOMEM;
    (void)nth; /* FN_PARALLEL drops it without OpenMP */
    FN_PARALLEL(nth) {
        int64_t begin, end;
        fn_split(a->batch * a->heads, fn_thread_id(), fn_thread_count(), &begin, &end);
        float *mine = scratch + fn_thread_id() * per_thread;
        for (int64_t bh = begin; bh < end; bh++)
            ks->head_backward(a, bh / a->heads, bh % a->heads, tkp, dout, q, k, v, probs, dq, dk,
                              dv, mine);
    }
    free(scratch);
    return FN_OK;
}

#endif /* FN_SIMD_X86 */

#define DEFINE_ATTENTION_PORTABLE(REAL, SUFFIX)                                             \
    static void attention_forward_portable_##SUFFIX(const attn_dims *a, const REAL *q,      \
                                                    const REAL *k, const REAL *v, REAL *out, \
                                                    REAL *probs, int nth) {                 \
        (void)nth; /* FN_PARALLEL drops it without OpenMP */                                \
        FN_PARALLEL(nth) {                                                                  \
            int64_t begin, end;                                                             \
            fn_split(a->batch * a->heads, fn_thread_id(), fn_thread_count(), &begin, &end); \
            for (int64_t bh = begin; bh < end; bh++)                                        \
                head_forward_##SUFFIX(a, bh / a->heads, bh % a->heads, q, k, v, out, probs); \
        }                                                                                   \
    }                                                                                       \
    static fn_status attention_backward_portable_##SUFFIX(                                  \
        const attn_dims *a, const REAL *dout, const REAL *q, const REAL *k, const REAL *v,  \
        const REAL *probs, REAL *dq, REAL *dk, REAL *dv, int nth) {                         \
        REAL *scratch = malloc(sizeof(REAL) * (size_t)(a->tk + 1) * (size_t)nth);           \
        if (!scratch) return FN_ERR_NOMEM;                                                  \
        (void)nth; /* FN_PARALLEL drops it without OpenMP */                                \
        FN_PARALLEL(nth) {                                                                  \
            int64_t begin, end;                                                             \
            fn_split(a->batch * a->heads, fn_thread_id(), fn_thread_count(), &begin, &end); \
            REAL *row = scratch + fn_thread_id() * (a->tk + 1);                             \
            for (int64_t bh = begin; bh < end; bh++)                                        \
                head_backward_##SUFFIX(a, bh / a->heads, bh % a->heads, dout, q, k, v,      \
                                       probs, dq, dk, dv, row);                             \
        }                                                                                   \
        free(scratch);                                                                      \
        return FN_OK;                                                                       \
    }

DEFINE_ATTENTION_PORTABLE(float, f32)
DEFINE_ATTENTION_PORTABLE(double, f64)

/* Which kernels run each dtype: float32 takes the CPU path's SIMD kernels
 * when it has them, float64 (the gradient-check path) is always portable. */
static fn_status attention_forward_f32(const attn_dims *a, const float *q, const float *k, const float *v,
                                       float *out, float *probs, int nth) {
#ifdef FN_SIMD_X86
    const fn_attention_kernels *ks = fn_kernels()->attention;
    if (ks->lanes) return attention_forward_simd(a, ks, q, k, v, out, probs, nth);
#endif
    attention_forward_portable_f32(a, q, k, v, out, probs, nth);
    return FN_OK;
}

static fn_status attention_backward_f32(const attn_dims *a, const float *dout, const float *q, const float *k,
                                        const float *v, const float *probs, float *dq, float *dk, float *dv,
                                        int nth) {
#ifdef FN_SIMD_X86
    const fn_attention_kernels *ks = fn_kernels()->attention;
    if (ks->lanes) return attention_backward_simd(a, ks, dout, q, k, v, probs, dq, dk, dv, nth);
#endif
    return attention_backward_portable_f32(a, dout, q, k, v, probs, dq, dk, dv, nth);
}

static fn_status attention_forward_f64(const attn_dims *a, const double *q, const double *k, const double *v,
                                       double *out, double *probs, int nth) {
    attention_forward_portable_f64(a, q, k, v, out, probs, nth);
    return FN_OK;
}

static fn_status attention_backward_f64(const attn_dims *a, const double *dout, const double *q,
                                        const double *k, const double *v, const double *probs, double *dq,
                                        double *dk, double *dv, int nth) {
    return attention_backward_portable_f64(a, dout, q, k, v, probs, dq, dk, dv, nth);
}

/* The public entry points (declared in fastnet.h), written once for both
 * dtypes: check the shapes and strides, then run the dtype's kernels. */
#define DEFINE_ATTENTION_API(REAL, SUFFIX)                                                           \
    fn_status fn_attention_forward_##SUFFIX(int64_t batch, int64_t tq, int64_t tk, int64_t heads,    \
                                            int64_t dh, const REAL *q, int64_t q_sb, int64_t q_st,   \
                                            const REAL *k, int64_t k_sb, int64_t k_st, const REAL *v, \
                                            int64_t v_sb, int64_t v_st,                              \
                                            const uint8_t *key_padding_mask, const int64_t *kv_rows, \
                                            int causal, REAL *out, REAL *probs, int n_threads) {     \
        attn_dims a;                                                                                 \
        fn_status st = attn_fill_dims(&a, batch, tq, tk, heads, dh, q_sb, q_st, k_sb, k_st, v_sb,    \
                                      v_st, key_padding_mask, causal);                               \
        if (st != FN_OK) return st;                                                                  \
        a.kv_rows = kv_rows;                                                                         \
        return attention_forward_##SUFFIX(&a, q, k, v, out, probs, attn_threads(&a, n_threads));     \
    }                                                                                                \
    fn_status fn_attention_backward_##SUFFIX(                                                        \
        int64_t batch, int64_t tq, int64_t tk, int64_t heads, int64_t dh, const REAL *dout,          \
        int64_t do_sb, int64_t do_st, const REAL *q, int64_t q_sb, int64_t q_st, const REAL *k,      \
        int64_t k_sb, int64_t k_st, const REAL *v, int64_t v_sb, int64_t v_st, const REAL *probs,    \
        REAL *dq, int64_t dq_sb, int64_t dq_st, REAL *dk, int64_t dk_sb, int64_t dk_st, REAL *dv,    \
        int64_t dv_sb, int64_t dv_st, int n_threads) {                                               \
        attn_dims a;                                                                                 \
        fn_status st = attn_fill_dims(&a, batch, tq, tk, heads, dh, q_sb, q_st, k_sb, k_st, v_sb,    \
                                      v_st, NULL, 0);                                                \
        if (st != FN_OK) return st;                                                                  \
        attn_set_backward_strides(&a, do_sb, do_st, dq_sb, dq_st, dk_sb, dk_st, dv_sb, dv_st);       \
        return attention_backward_##SUFFIX(&a, dout, q, k, v, probs, dq, dk, dv,                     \
                                           attn_threads(&a, n_threads));                             \
    }

DEFINE_ATTENTION_API(float, f32)
DEFINE_ATTENTION_API(double, f64)
