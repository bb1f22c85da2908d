/* attention_generic.h - the portable attention of one (batch, head) pair.
 *
 * A template: attention.c includes it once with REAL = float, SUFFIX = f32,
 * EXP = expf and once with REAL = double, SUFFIX = f64, EXP = exp. Plain
 * scalar loops; the float fast path is the AVX2/AVX-512 code in attention.c.
 */
#define GEN_CAT2(a, b) a##_##b
#define GEN_CAT(a, b) GEN_CAT2(a, b)
#define GEN(name) GEN_CAT(name, SUFFIX)

static REAL GEN(dot)(const REAL *a, const REAL *b, int64_t n) {
    REAL s = 0;
    for (int64_t d = 0; d < n; d++) s += a[d] * b[d];
    return s;
}

/* y[0:n] += alpha * x[0:n] */
static void GEN(axpy)(REAL alpha, const REAL *x, REAL *y, int64_t n) {
    for (int64_t d = 0; d < n; d++) y[d] += alpha * x[d];
}

/* A query row that has no visible key (value 0) or a NaN score (value NaN):
 * every probability and output element set to value, as in the reference. */
static void GEN(fill_row)(REAL *p, int64_t tk, REAL *o, int64_t dh, REAL value) {
    for (int64_t j = 0; j < tk; j++) p[j] = value;
    for (int64_t d = 0; d < dh; d++) o[d] = value;
}

/* Probabilities of one query row (tk entries, zeros where masked). Returns
 * ROW_NO_KEY when no key is visible and ROW_NAN when a score is NaN (the
 * caller fills the row); NaN reaches the sum through exp either way. */
static int GEN(softmax_row)(const REAL *qi, const REAL *k, int64_t k_st, int64_t dh,
                            int64_t tk, int64_t n_visible, const uint8_t *pad,
                            REAL scale, REAL *p) {
    REAL row_max = 0;
    int any = 0;
    for (int64_t j = 0; j < tk; j++) {
        p[j] = 0;
        if (j >= n_visible || (pad && pad[j])) continue;
        REAL s = GEN(dot)(qi, k + j * k_st, dh) * scale;
        p[j] = s;
        if (!any || s > row_max) row_max = s;
        any = 1;
    }
    if (!any) return ROW_NO_KEY;
    REAL sum = 0;
    for (int64_t j = 0; j < n_visible; j++) {
        if (pad && pad[j]) continue;
        p[j] = EXP(p[j] - row_max);
        sum += p[j];
    }
    if (sum != sum) return ROW_NAN;
    REAL inv = (REAL)1 / sum;
    for (int64_t j = 0; j < n_visible; j++) p[j] *= inv;
    return ROW_OK;
}

static void GEN(head_forward)(const attn_dims *a, int64_t b, int64_t h,
                              const REAL *q, const REAL *k, const REAL *v,
                              REAL *out, REAL *probs) {
    int64_t kb = attn_kv_row(a, b);
    const REAL *qh = q + b * a->q_sb + h * a->dh;
    const REAL *kh = k + kb * a->k_sb + h * a->dh;
    const REAL *vh = v + kb * a->v_sb + h * a->dh;
    const uint8_t *pad = a->pad ? a->pad + kb * a->tk : NULL;
    int64_t out_st = a->heads * a->dh;
    REAL *oh = out + b * a->tq * out_st + h * a->dh;
    REAL *ph = probs + (b * a->heads + h) * a->tq * a->tk;
    for (int64_t i = 0; i < a->tq; i++) {
        REAL *p = ph + i * a->tk, *o = oh + i * out_st;
        int64_t n_visible = attn_visible_keys(a, i);
        int row = GEN(softmax_row)(qh + i * a->q_st, kh, a->k_st, a->dh, a->tk, n_visible, pad,
                                   (REAL)a->scale, p);
        if (row != ROW_OK) {
            GEN(fill_row)(p, a->tk, o, a->dh, row == ROW_NAN ? (REAL)NAN : (REAL)0);
            continue;
        }
        for (int64_t d = 0; d < a->dh; d++) o[d] = 0;
        for (int64_t j = 0; j < n_visible; j++)
            if (p[j] != 0) GEN(axpy)(p[j], vh + j * a->v_st, o, a->dh);
    }
}

/* dS = P * (dP - rowsum(P * dP)) * scale with dP = dout . v; then
 * dq = dS k, dk = dS^T q, dv = P^T dout. dS_row is tk scratch. */
static void GEN(head_backward)(const attn_dims *a, int64_t b, int64_t h, const REAL *dout,
                               const REAL *q, const REAL *k, const REAL *v, const REAL *probs,
                               REAL *dq, REAL *dk, REAL *dv, REAL *ds_row) {
    int64_t dh = a->dh;
    const REAL *doh = dout + b * a->do_sb + h * dh;
    const REAL *qh = q + b * a->q_sb + h * dh;
    const REAL *kh = k + b * a->k_sb + h * dh;
    const REAL *vh = v + b * a->v_sb + h * dh;
    const REAL *ph = probs + (b * a->heads + h) * a->tq * a->tk;
    REAL *dqh = dq + b * a->dq_sb + h * dh;
    REAL *dkh = dk + b * a->dk_sb + h * dh;
    REAL *dvh = dv + b * a->dv_sb + h * dh;
    for (int64_t j = 0; j < a->tk; j++)
        for (int64_t d = 0; d < dh; d++) dkh[j * a->dk_st + d] = dvh[j * a->dv_st + d] = 0;
    for (int64_t i = 0; i < a->tq; i++) {
        const REAL *p = ph + i * a->tk, *doi = doh + i * a->do_st, *qi = qh + i * a->q_st;
        REAL *dqi = dqh + i * a->dq_st;
        REAL row_dot = 0;
        for (int64_t j = 0; j < a->tk; j++) {
            ds_row[j] = p[j] != 0 ? GEN(dot)(doi, vh + j * a->v_st, dh) : 0;
            row_dot += p[j] * ds_row[j];
        }
        for (int64_t d = 0; d < dh; d++) dqi[d] = 0;
        for (int64_t j = 0; j < a->tk; j++) {
            if (p[j] == 0) continue;
            REAL ds = p[j] * (ds_row[j] - row_dot) * (REAL)a->scale;
            GEN(axpy)(ds, kh + j * a->k_st, dqi, dh);
            GEN(axpy)(ds, qi, dkh + j * a->dk_st, dh);
            GEN(axpy)(p[j], doi, dvh + j * a->dv_st, dh);
        }
    }
}

#undef GEN
#undef GEN_CAT
#undef GEN_CAT2
