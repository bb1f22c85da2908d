/* attention_simd.h - the float attention of one (batch, head) pair, written
 * once over a few vector primitives.
 *
 * A template over the vector mapping of simd.h: attention.c includes it once
 * for AVX2 and once for AVX-512, after defining FN_SIMD_ISA (avx2 or avx512)
 * and FN_SIMD_TARGET (the matching target attribute).
 *
 * Keys are packed transposed (dh x tkp, tkp = tk rounded up to W, zero
 * padded) so one query's scores are broadcast-FMAs over whole vectors of
 * keys. Masked keys are forced to -inf by a per-lane "kill" row rather than
 * by adding -inf, so a NaN or Inf in a padded key can never leak into the
 * row; weights that are exactly zero are skipped for the same reason.
 */
#define SIMD_CAT2(a, b) a##_##b
#define SIMD_CAT(a, b) SIMD_CAT2(a, b)
#define SIMD(name) SIMD_CAT(name, FN_SIMD_ISA)
#define TARGET FN_SIMD_TARGET
#define W FN_V(lanes)
#define V FN_V(vec)
/* Masked keys: x with -inf in the lanes where kill != 0. */
#define V_KILL(x, kill) FN_V(select)(FN_V(nonzero)(kill), FN_V(set1)(-INFINITY), x)
/* x with 0 in the lanes where p == 0 */
#define V_ZERO_WHERE_ZERO(x, p) FN_V(keep)(FN_V(nonzero)(p), x)

/* dst[d * tkp + j] = src[j * st + d]: rows j of a head, transposed. */
TARGET static void SIMD(pack_transposed)(const float *src, int64_t st, int64_t tk, int64_t dh,
                                         int64_t tkp, float *dst) {
    for (int64_t j = 0; j < tk; j++)
        for (int64_t d = 0; d < dh; d++) dst[d * tkp + j] = src[j * st + d];
}

/* s[0 : nvec * W] = a . packed columns: a row of dot products over keys. */
TARGET static void SIMD(row_scores)(const float *a, const float *packed, int64_t dh, int64_t tkp,
                                    int64_t nvec, float *s) {
    for (int64_t vb = 0; vb < nvec; vb++) {
        const float *col = packed + vb * W;
        V acc0 = FN_V(zero)(), acc1 = FN_V(zero)();
        int64_t d = 0;
        for (; d + 1 < dh; d += 2) {
            acc0 = FN_V(fma)(FN_V(set1)(a[d]), FN_V(load)(col + d * tkp), acc0);
            acc1 = FN_V(fma)(FN_V(set1)(a[d + 1]), FN_V(load)(col + (d + 1) * tkp), acc1);
        }
        if (d < dh) acc0 = FN_V(fma)(FN_V(set1)(a[d]), FN_V(load)(col + d * tkp), acc0);
        FN_V(store)(s + vb * W, FN_V(add)(acc0, acc1));
    }
}

/* s[j] = a . rows[j] for j < n, one dot product at a time: for a few
 * queries (decoding with a cache) this beats packing the keys first. */
TARGET static void SIMD(row_scores_direct)(const float *a, const float *rows, int64_t row_st,
                                           int64_t dh, int64_t n, float *s) {
    for (int64_t j = 0; j < n; j++) {
        const float *r = rows + j * row_st;
        V acc = FN_V(zero)();
        int64_t c = 0;
        for (; c + W <= dh; c += W) acc = FN_V(fma)(FN_V(load)(a + c), FN_V(load)(r + c), acc);
        float dot = FN_V(hsum)(acc);
        for (; c < dh; c++) dot += a[c] * r[c];
        s[j] = dot;
    }
}

/* out[0:dh] = sum over j < n of w[j] * rows[j * row_st + 0:dh].
 * Zero weights are dropped first (live is n ints of scratch), so masked
 * rows are never read; then two output vectors and two rows at a time give
 * four independent FMA chains. */
TARGET static void SIMD(weighted_rows)(const float *w, int64_t n, const float *rows,
                                       int64_t row_st, int64_t dh, float *out, int32_t *live) {
    int64_t m = 0;
    for (int64_t j = 0; j < n; j++)
        if (w[j] != 0.0f) live[m++] = (int32_t)j;
    int64_t c = 0;
    for (; c + 2 * W <= dh; c += 2 * W) {
        V a0 = FN_V(zero)(), a1 = FN_V(zero)(), b0 = FN_V(zero)(), b1 = FN_V(zero)();
        int64_t t = 0;
        for (; t + 1 < m; t += 2) {
            const float *r0 = rows + live[t] * row_st + c, *r1 = rows + live[t + 1] * row_st + c;
            V w0 = FN_V(set1)(w[live[t]]), w1 = FN_V(set1)(w[live[t + 1]]);
            a0 = FN_V(fma)(w0, FN_V(load)(r0), a0);
            a1 = FN_V(fma)(w0, FN_V(load)(r0 + W), a1);
            b0 = FN_V(fma)(w1, FN_V(load)(r1), b0);
            b1 = FN_V(fma)(w1, FN_V(load)(r1 + W), b1);
        }
        if (t < m) {
            const float *r0 = rows + live[t] * row_st + c;
            V w0 = FN_V(set1)(w[live[t]]);
            a0 = FN_V(fma)(w0, FN_V(load)(r0), a0);
            a1 = FN_V(fma)(w0, FN_V(load)(r0 + W), a1);
        }
        FN_V(store)(out + c, FN_V(add)(a0, b0));
        FN_V(store)(out + c + W, FN_V(add)(a1, b1));
    }
    for (; c + W <= dh; c += W) {
        V a0 = FN_V(zero)(), b0 = FN_V(zero)();
        int64_t t = 0;
        for (; t + 1 < m; t += 2) {
            a0 = FN_V(fma)(FN_V(set1)(w[live[t]]), FN_V(load)(rows + live[t] * row_st + c), a0);
            b0 = FN_V(fma)(FN_V(set1)(w[live[t + 1]]), FN_V(load)(rows + live[t + 1] * row_st + c), b0);
        }
        if (t < m) a0 = FN_V(fma)(FN_V(set1)(w[live[t]]), FN_V(load)(rows + live[t] * row_st + c), a0);
        FN_V(store)(out + c, FN_V(add)(a0, b0));
    }
    for (; c < dh; c++) {
        float acc = 0.0f;
        for (int64_t t = 0; t < m; t++) acc += w[live[t]] * rows[live[t] * row_st + c];
        out[c] = acc;
    }
}

/* In place over s[0 : nvec * W]: scale, kill masked lanes, softmax.
 * Returns ROW_NO_KEY when every lane is masked, ROW_NAN when a score is NaN.
 * The vector max may drop a NaN lane, so NaN is found where it is cheap:
 * exp keeps it, so the sum is NaN; and when the max claims every lane was
 * masked, the row is scanned once before believing it. */
TARGET static int SIMD(softmax_row)(float *s, const float *kill, int64_t nvec, float scale) {
    V vscale = FN_V(set1)(scale), vmax = FN_V(set1)(-INFINITY);
    for (int64_t vb = 0; vb < nvec; vb++) {
        V x = V_KILL(FN_V(mul)(FN_V(load)(s + vb * W), vscale), FN_V(load)(kill + vb * W));
        FN_V(store)(s + vb * W, x);
        vmax = FN_V(max)(vmax, x);
    }
    float row_max = FN_V(hmax)(vmax);
    if (row_max == -INFINITY) return attn_any_nan_f32(s, nvec * W) ? ROW_NAN : ROW_NO_KEY;
    V vm = FN_V(set1)(row_max), vsum = FN_V(zero)();
    for (int64_t vb = 0; vb < nvec; vb++) {
        V e = FN_V(exp)(FN_V(sub)(FN_V(load)(s + vb * W), vm));
        FN_V(store)(s + vb * W, e);
        vsum = FN_V(add)(vsum, e);
    }
    float sum = FN_V(hsum)(vsum);
    if (sum != sum) return ROW_NAN;
    V inv = FN_V(set1)(1.0f / sum);
    for (int64_t vb = 0; vb < nvec; vb++) FN_V(store)(s + vb * W, FN_V(mul)(FN_V(load)(s + vb * W), inv));
    return ROW_OK;
}

/* Per-thread scratch, in floats: packed keys or values (dh x tkp), three
 * rows of tkp, the transposed P and dS of a head (2 x tkp x tq) for the
 * backward, and the live-index list of weighted_rows. */
static int64_t SIMD(scratch_floats)(const attn_dims *a, int64_t tkp) {
    int64_t longest = a->tq > tkp ? a->tq : tkp;
    return a->dh * tkp + 3 * tkp + 2 * tkp * a->tq + longest;
}

TARGET static void SIMD(head_forward)(const attn_dims *a, int64_t b, int64_t h, int64_t tkp,
                                      const float *q, const float *k, const float *v,
                                      float *out, float *probs, float *scratch) {
    int64_t dh = a->dh, tk = a->tk, out_st = a->heads * dh;
    float *kT = scratch, *kill = kT + dh * tkp, *s = kill + tkp;
    int32_t *live_keys = (int32_t *)(s + 2 * tkp + 2 * tkp * a->tq);
    int64_t kb = attn_kv_row(a, b);
    const float *qh = q + b * a->q_sb + h * dh;
    const float *vh = v + kb * a->v_sb + h * dh;
    const uint8_t *pad = a->pad ? a->pad + kb * tk : NULL;
    float *oh = out + b * a->tq * out_st + h * dh;
    float *ph = probs + (b * a->heads + h) * a->tq * tk;

    const float *kh = k + kb * a->k_sb + h * dh;
    int direct = a->tq <= DIRECT_MAX_QUERIES;
    if (!direct) SIMD(pack_transposed)(kh, a->k_st, tk, dh, tkp, kT);
    for (int64_t j = 0; j < tkp; j++) kill[j] = (j >= tk || (pad && pad[j])) ? 1.0f : 0.0f;

    for (int64_t i = 0; i < a->tq; i++) {
        float *p = ph + i * tk, *o = oh + i * out_st;
        int64_t n_visible = attn_visible_keys(a, i);
        int64_t nvec = (n_visible + W - 1) / W;
        int row = ROW_NO_KEY;
        if (n_visible > 0) {
            if (direct)
                SIMD(row_scores_direct)(qh + i * a->q_st, kh, a->k_st, dh, n_visible, s);
            else
                SIMD(row_scores)(qh + i * a->q_st, kT, dh, tkp, nvec, s);
            for (int64_t j = n_visible; j < nvec * W; j++) s[j] = -INFINITY;  /* causal */
            row = SIMD(softmax_row)(s, kill, nvec, (float)a->scale);
        }
        if (row != ROW_OK) {
            fill_row_f32(p, tk, o, dh, row == ROW_NAN ? NAN : 0.0f);
            continue;
        }
        memcpy(p, s, sizeof(float) * (size_t)n_visible);
        if (n_visible < tk) memset(p + n_visible, 0, sizeof(float) * (size_t)(tk - n_visible));
        SIMD(weighted_rows)(s, n_visible, vh, a->v_st, dh, o, live_keys);
    }
}

/* dS = P * (dP - rowsum(P * dP)) * scale with dP = dout . v (computed
 * against the packed values), then dq = dS k row by row. P and dS are kept
 * transposed so dk = dS^T q and dv = P^T dout are register-accumulated
 * weighted sums too, instead of read-modify-writes per (query, key). */
TARGET static void SIMD(head_backward)(const attn_dims *a, int64_t b, int64_t h, int64_t tkp,
                                       const float *dout, const float *q, const float *k,
                                       const float *v, const float *probs, float *dq, float *dk,
                                       float *dv, float *scratch) {
    int64_t dh = a->dh, tq = a->tq, tk = a->tk, nvec = tkp / W;
    float *vT = scratch, *p = vT + dh * tkp + tkp, *ds = p + tkp;
    float *pT = ds + tkp, *dsT = pT + tkp * tq;
    int32_t *live = (int32_t *)(dsT + tkp * tq);
    const float *doh = dout + b * a->do_sb + h * dh;
    const float *qh = q + b * a->q_sb + h * dh;
    const float *kh = k + b * a->k_sb + h * dh;
    const float *ph = probs + (b * a->heads + h) * tq * tk;
    float *dqh = dq + b * a->dq_sb + h * dh;
    float *dkh = dk + b * a->dk_sb + h * dh;
    float *dvh = dv + b * a->dv_sb + h * dh;

    SIMD(pack_transposed)(v + b * a->v_sb + h * dh, a->v_st, tk, dh, tkp, vT);
    for (int64_t j = tk; j < tkp; j++) p[j] = 0.0f;
    V vscale = FN_V(set1)((float)a->scale);
    for (int64_t i = 0; i < tq; i++) {
        memcpy(p, ph + i * tk, sizeof(float) * (size_t)tk);
        SIMD(row_scores)(doh + i * a->do_st, vT, dh, tkp, nvec, ds);
        V acc = FN_V(zero)();
        for (int64_t vb = 0; vb < nvec; vb++) {
            V vp = FN_V(load)(p + vb * W);
            V dp = V_ZERO_WHERE_ZERO(FN_V(load)(ds + vb * W), vp);
            FN_V(store)(ds + vb * W, dp);
            acc = FN_V(fma)(vp, dp, acc);
        }
        V row_dot = FN_V(set1)(FN_V(hsum)(acc));
        /* Zero-probability keys get dS = 0 even when row_dot is NaN, as in
         * the portable path: a masked key never receives a gradient. */
        for (int64_t vb = 0; vb < nvec; vb++) {
            V vp = FN_V(load)(p + vb * W);
            V d = FN_V(mul)(FN_V(mul)(vp, FN_V(sub)(FN_V(load)(ds + vb * W), row_dot)), vscale);
            FN_V(store)(ds + vb * W, V_ZERO_WHERE_ZERO(d, vp));
        }
        SIMD(weighted_rows)(ds, tk, kh, a->k_st, dh, dqh + i * a->dq_st, live);
        for (int64_t j = 0; j < tk; j++) {
            pT[j * tq + i] = p[j];
            dsT[j * tq + i] = ds[j];
        }
    }
    for (int64_t j = 0; j < tk; j++) {
        SIMD(weighted_rows)(dsT + j * tq, tq, qh, a->q_st, dh, dkh + j * a->dk_st, live);
        SIMD(weighted_rows)(pT + j * tq, tq, doh, a->do_st, dh, dvh + j * a->dv_st, live);
    }
}

#undef SIMD
#undef SIMD_CAT
#undef SIMD_CAT2

/* The instantiation is done: forget its parameters so the next ISA can define them afresh. */
#undef TARGET
#undef W
#undef V
#undef V_KILL
#undef V_ZERO_WHERE_ZERO
#undef FN_SIMD_ISA
#undef FN_SIMD_TARGET
