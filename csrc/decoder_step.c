/* decoder_step.c - one incremental step of a pre-norm transformer decoder
 * layer, for inference, as one call.
 *
 * fn_decoder_step_f32 runs a whole decoder step the same way: the token
 * embedding (scaled) plus the position's signal, every layer, the final norm.
 *
 * Why: a greedy or beam step runs every layer on one new position per row.
 * Written layer by layer in Python it is thirteen kernel calls per layer
 * (three norms, six dense products, two attentions, the cache append, three
 * residual adds), and each costs a few microseconds of Python and argument
 * checks: about 90 us per layer and step, measured, which is 40% of a step
 * at a batch of 16 sentences (the service's batches) and most of one at a
 * batch of 1. This file strings the same kernels together in C.
 *
 * The math is not restated: every part is the kernel the Python path calls
 * (fn_layer_norm_forward_f32, fn_dense_forward_f32 / _bf16 / _s8,
 * fn_attention_forward_f32, fn_add_f32), with the same shapes, strides and
 * thread count, in the same order, so the step gives the same bits as
 * TransformerDecoderLayer.step (tests/models/test_decoder_step.py checks it
 * for every kind of weights). The layer-by-layer path also writes the
 * activation's input beside a GELU output (for a backward that decoding never
 * runs); the output is the same without it.
 *
 *   h   = norm1(x);  q, k, v = h @ Wqkv + b;  cache[length] = k, v
 *   x  += attention(q, cache[0..length]) @ Wo + b
 *   h   = norm2(x);  q = h @ Wq + b
 *   x  += attention(q, memory keys/values of row memory_rows[b]) @ Wo' + b
 *   h   = norm3(x);  x += act(h @ Wup + b) @ Wdown + b
 *
 * Threads: the rows of a step are independent (each reads its own cache and
 * memory row), and every kernel gives a row the same bits whatever the other
 * rows are. So with two or more threads fn_decoder_step_f32 splits the rows,
 * and each thread runs the whole step on its rows with one thread: one
 * parallel region per step. Per kernel, most of a step's kernels were too
 * small to pay for waking a second thread (2 threads translated a batch of
 * 64 sentences 1.30x faster than one, and 16 1.07x).
 */
#include <string.h>

#include "fn_internal.h"

/* Multiply-adds of a step's rows that pay for a thread of their own, the
 * GEMM's figure. Measured with the real model (two d_model 128 layers, 458k
 * per row), greedy translation at 2 threads, alternating builds: at 2^20 a
 * batch of 16 split into two threads of 8 rows and ran 0.87x as fast (the two
 * vCPUs share a core, and a second thread must be woken at every step); at
 * 2^22 batches of 16 stay on one thread (1.00x) and 32, 64 and 256 run
 * 1.16-1.22x, 1.37-1.39x and 1.14-1.16x faster, the same outputs. */
#define STEP_MIN_MACS_PER_THREAD (1 << 22)
#define STEP_MAX_THREADS 64

/* Scratch floats of one step: see the layout in fn_decoder_layer_step_f32. */
int64_t fn_decoder_step_scratch(int64_t batch, int64_t d_model, int64_t heads, int64_t d_ff, int64_t max_keys) {
    if (batch < 0 || d_model < 0 || heads < 0 || d_ff < 0 || max_keys < 0) return -1;
    return batch * (6 * d_model + d_ff + heads * max_keys + 2);
}

static int dense_ok(const fn_dense_params *d, int64_t n_in, int64_t n_out) {
    if (d->n_in != n_in || d->n_out != n_out) return 0;
    if (d->packed_w) return d->colsum != NULL && d->w_scale != NULL;
    return d->w != NULL;
}

/* y (m x n_out, contiguous) = act(x @ W + b) through the kernel the weights ask for. */
static fn_status dense(const fn_dense_params *d, int64_t m, const float *x, float *y, int n_threads) {
    if (d->packed_w)
        return fn_dense_forward_s8(m, d->n_out, d->n_in, x, d->n_in, d->packed_w, d->colsum, d->w_scale,
                                   d->bias, d->act, d->act_param, y, d->n_out, n_threads);
    if (d->bf16)
        return fn_dense_forward_bf16(m, d->n_out, d->n_in, x, d->n_in, d->w, d->n_out, d->bias, d->act,
                                     d->act_param, y, d->n_out, NULL, n_threads);
    return fn_dense_forward_f32(m, d->n_out, d->n_in, x, d->n_in, d->w, d->n_out, d->bias, d->act,
                                d->act_param, y, d->n_out, NULL, n_threads);
}

#define TRY(call)                            \
    do {                                     \
        fn_status status_ = (call);          \
        if (status_ != FN_OK) return status_; \
    } while (0)

fn_status fn_decoder_layer_step_f32(const fn_decoder_layer_params *p, const fn_decoder_step_args *a,
                                    int n_threads) {
    const int64_t B = a->batch, D = p->d_model, H = p->heads, F = p->d_ff;
    if (B < 0 || D <= 0 || H <= 0 || D % H || F <= 0 || a->length < 0 || a->length >= a->capacity ||
        a->src_len < 0)
        return FN_ERR_ARG;
    if (!dense_ok(&p->qkv, D, 3 * D) || !dense_ok(&p->self_out, D, D) || !dense_ok(&p->cross_q, D, D) ||
        !dense_ok(&p->cross_out, D, D) || !dense_ok(&p->ff_up, D, F) || !dense_ok(&p->ff_down, F, D))
        return FN_ERR_ARG;
    if (B == 0) return FN_OK;
    if (!a->x || !a->cache_k || !a->cache_v || !a->scratch || (a->src_len && !a->memory_kv))
        return FN_ERR_ARG;
    const int64_t dh = D / H, keys = a->length + 1;
    const int64_t max_keys = keys > a->src_len ? keys : a->src_len;
    /* scratch, per row: h (D) | qkv (3D; the cross query reuses it) | ctx (D) | y (D) | ff (F) |
     * probs (H x max_keys) | mean | rstd (layer norm's statistics, unused here) */
    float *h = a->scratch, *qkv = h + B * D, *ctx = qkv + B * 3 * D, *y = ctx + B * D;
    float *ff = y + B * D, *probs = ff + B * F, *mean = probs + B * H * max_keys, *rstd = mean + B;
    float *x = a->x;

    /* self-attention over the cache, this position appended */
    TRY(fn_layer_norm_forward_f32(x, p->norm1.gamma, p->norm1.beta, B, D, p->norm1.eps, h, mean, rstd, n_threads));
    TRY(dense(&p->qkv, B, h, qkv, n_threads));
    for (int64_t b = 0; b < B; ++b) {
        memcpy(a->cache_k + b * a->cache_sb + a->length * D, qkv + b * 3 * D + D, (size_t)D * sizeof(float));
        memcpy(a->cache_v + b * a->cache_sb + a->length * D, qkv + b * 3 * D + 2 * D, (size_t)D * sizeof(float));
    }
    TRY(fn_attention_forward_f32(B, 1, keys, H, dh, qkv, 3 * D, 3 * D, a->cache_k, a->cache_sb, D, a->cache_v,
                                 a->cache_sb, D, NULL, NULL, 1, ctx, probs, n_threads));
    TRY(dense(&p->self_out, B, ctx, y, n_threads));
    TRY(fn_add_f32(x, y, x, B * D, n_threads));

    /* cross-attention over the encoder memory, read in place through memory_rows */
    TRY(fn_layer_norm_forward_f32(x, p->norm2.gamma, p->norm2.beta, B, D, p->norm2.eps, h, mean, rstd, n_threads));
    TRY(dense(&p->cross_q, B, h, qkv, n_threads));
    const int64_t mem_sb = a->src_len * 2 * D;
    TRY(fn_attention_forward_f32(B, 1, a->src_len, H, dh, qkv, D, D, a->memory_kv, mem_sb, 2 * D,
                                 a->memory_kv + D, mem_sb, 2 * D, a->memory_mask, a->memory_rows, 0, ctx, probs,
                                 n_threads));
    TRY(dense(&p->cross_out, B, ctx, y, n_threads));
    TRY(fn_add_f32(x, y, x, B * D, n_threads));

    /* feed-forward */
    TRY(fn_layer_norm_forward_f32(x, p->norm3.gamma, p->norm3.beta, B, D, p->norm3.eps, h, mean, rstd, n_threads));
    TRY(dense(&p->ff_up, B, h, ff, n_threads));
    TRY(dense(&p->ff_down, B, ff, y, n_threads));
    TRY(fn_add_f32(x, y, x, B * D, n_threads));
    return FN_OK;
}

/* The step on rows [r0, r1) of the batch, scratch for those rows at `scratch`. */
static fn_status step_rows(const fn_decoder_params *p, const fn_decoder_stack_args *a, int64_t r0, int64_t r1,
                           float *scratch, int n_threads) {
    const int64_t B = r1 - r0, D = p->d_model;
    float *stream = a->stream + r0 * D;
    /* the stream: embedding x sqrt(D) + the position's signal, as three passes like the layer-by-layer path */
    TRY(fn_embedding_forward_f32(a->ids + r0, B, p->table, p->vocab, D, stream, NULL, n_threads));
    TRY(fn_scale_f32(stream, B * D, p->scale, n_threads));
    const float *signal = p->positions + a->position * D;
    for (int64_t b = 0; b < B; ++b) TRY(fn_add_f32(stream + b * D, signal, stream + b * D, D, 1));
    for (int64_t l = 0; l < p->n_layers; ++l) {
        fn_decoder_step_args layer = a->layers[l];
        layer.batch = B, layer.x = stream, layer.scratch = scratch;
        layer.cache_k += r0 * layer.cache_sb, layer.cache_v += r0 * layer.cache_sb;
        if (layer.memory_rows) {
            layer.memory_rows += r0;
        } else { /* row b reads memory row b */
            if (layer.memory_kv) layer.memory_kv += r0 * layer.src_len * 2 * D;
            if (layer.memory_mask) layer.memory_mask += r0 * layer.src_len;
        }
        TRY(fn_decoder_layer_step_f32(p->layers[l], &layer, n_threads));
    }
    /* the final norm's statistics go to the scratch, which the layers are done with */
    return fn_layer_norm_forward_f32(stream, p->final_norm.gamma, p->final_norm.beta, B, D, p->final_norm.eps,
                                     a->out + r0 * D, scratch, scratch + B, n_threads);
}

int fn_decoder_step_threads(const fn_decoder_params *p, int64_t batch, int n_threads) {
    int64_t macs = 0; /* per row: the six products of each layer */
    for (int64_t l = 0; l < p->n_layers; ++l) {
        const fn_decoder_layer_params *layer = p->layers[l];
        macs += 6 * layer->d_model * layer->d_model + 2 * layer->d_model * layer->d_ff;
    }
    int nth = fn_threads_for(batch * macs, STEP_MIN_MACS_PER_THREAD, n_threads);
    if (nth > batch) nth = batch > 1 ? (int)batch : 1;
    return nth < STEP_MAX_THREADS ? nth : STEP_MAX_THREADS;
}

fn_status fn_decoder_step_f32(const fn_decoder_params *p, const fn_decoder_stack_args *a, int64_t *bad_id,
                              int n_threads) {
    if (bad_id) *bad_id = -1;
    if (p->n_layers < 0 || (p->n_layers && (!p->layers || !a->layers)) || a->batch < 0 || a->position < 0 ||
        a->position >= p->max_len || p->vocab < 0)
        return FN_ERR_ARG;
    const int64_t B = a->batch, D = p->d_model;
    for (int64_t l = 0; l < p->n_layers; ++l)
        if (!p->layers[l] || p->layers[l]->d_model != D) return FN_ERR_ARG;
    if (B == 0) return FN_OK;
    if (!a->ids || !a->out || !a->stream || !p->table || !p->positions) return FN_ERR_ARG;
    const int64_t bad = fn_first_bad_id(a->ids, B, p->vocab); /* before anything is written, by any thread */
    if (bad >= 0) {
        if (bad_id) *bad_id = bad;
        return FN_ERR_LABEL;
    }
    int nth = fn_decoder_step_threads(p, B, n_threads);
    if (nth <= 1) return step_rows(p, a, 0, B, a->scratch, n_threads);
    /* the scratch is per row (fn_decoder_step_scratch is linear in the batch): a thread's rows take
     * the slice at their first row */
    int64_t per_row = 2;
    for (int64_t l = 0; l < p->n_layers; ++l) {
        const fn_decoder_step_args *layer = &a->layers[l];
        int64_t keys = layer->length + 1 > layer->src_len ? layer->length + 1 : layer->src_len;
        int64_t need = fn_decoder_step_scratch(1, D, p->layers[l]->heads, p->layers[l]->d_ff, keys);
        if (need > per_row) per_row = need;
    }
    fn_status status[STEP_MAX_THREADS];
    for (int t = 0; t < nth; ++t) status[t] = FN_OK;
    FN_PARALLEL(nth) {
        int64_t r0, r1;
        fn_split(B, fn_thread_id(), fn_thread_count(), &r0, &r1);
        if (r1 > r0) status[fn_thread_id()] = step_rows(p, a, r0, r1, a->scratch + r0 * per_row, 1);
    }
    for (int t = 0; t < nth; ++t)
        if (status[t] != FN_OK) return status[t];
    return FN_OK;
}
