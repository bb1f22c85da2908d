/* beam.c - beam search's pick of the best extensions of each sentence.
 *
 * Every beam step ranks beam x vocabulary candidates per sentence (16,000 for
 * beam 4 and 4000 subwords) to keep the best 2 x beam: candidate (k, v) of
 * sentence a scores scores[a, k] + logp[a * K + k, v]. Written with numpy,
 * that materialised every candidate's score and ran argpartition over them:
 * 40% of a beam search on the real model. One pass per sentence keeps the n
 * best in a small sorted buffer instead: most candidates are rejected by one
 * comparison with the n-th best so far.
 *
 * Order: by score, best first; equal scores by the lower flat index k * V + v
 * (what a stable sort gives). Candidates that are not finite (a banned token,
 * -inf; NaN) rank after every finite one and are not returned: their slots
 * hold -inf and index -1. Each score is the same double addition numpy does.
 */
#include <math.h>

#include "fn_internal.h"

/* Minimum candidates per thread before a second thread pays (about 0.25 ms). */
#define MIN_CANDIDATES_PER_THREAD (1 << 18)

static void best_of_sentence(const double *scores, const double *logp, int64_t K, int64_t V, int64_t n,
                             double *values, int64_t *indices) {
    int64_t count = 0;
    for (int64_t k = 0; k < K; ++k) {
        const double s = scores[k];
        if (!isfinite(s)) continue; /* an empty slot (-inf): all its candidates are -inf */
        const double *row = logp + k * V;
        for (int64_t v = 0; v < V; ++v) {
            const double value = s + row[v];
            if (!isfinite(value) || (count == n && !(value > values[n - 1]))) continue;
            int64_t j = count < n ? count++ : n - 1;
            for (; j > 0 && values[j - 1] < value; --j) { /* equal scores keep the earlier index first */
                values[j] = values[j - 1];
                indices[j] = indices[j - 1];
            }
            values[j] = value;
            indices[j] = k * V + v;
        }
    }
    for (int64_t j = count; j < n; ++j) values[j] = -INFINITY, indices[j] = -1;
}

fn_status fn_beam_candidates_f64(const double *scores, const double *logp, int64_t sentences, int64_t beam,
                                 int64_t vocab, int64_t n, double *values, int64_t *indices, int n_threads) {
    if (sentences < 0 || beam < 1 || vocab < 0 || n < 1) return FN_ERR_ARG;
    if (sentences == 0) return FN_OK;
    if (!scores || !values || !indices || (vocab && !logp)) return FN_ERR_ARG;
    int nth = fn_threads_for(sentences * beam * vocab, MIN_CANDIDATES_PER_THREAD, n_threads);
    (void)nth;
    FN_PARALLEL(nth) {
        int64_t a0, a1;
        fn_split(sentences, fn_thread_id(), fn_thread_count(), &a0, &a1);
        for (int64_t a = a0; a < a1; ++a)
            best_of_sentence(scores + a * beam, logp + a * beam * vocab, beam, vocab, n, values + a * n,
                             indices + a * n);
    }
    return FN_OK;
}
