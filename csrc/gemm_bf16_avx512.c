/* gemm_bf16_avx512.c - the 12 x 32 VDPBF16PS micro-kernel and its packing.
 *
 * VDPBF16PS adds, in each of 16 float32 lanes, the products of one pair of
 * bf16 numbers from each source: acc[j] += a[2j] b[2j] + a[2j+1] b[2j+1]. So
 * k is packed in pairs: a packed B panel holds, for each pair u of k, 32
 * columns of (B[2u, j], B[2u+1, j]) - 128 bytes, two zmm - and an A sliver,
 * for each u, 12 rows of (A[i, 2u], A[i, 2u+1]) as 32-bit words that the
 * kernel broadcasts. Odd k is padded with a zero pair half in both, so
 * padding never meets a NaN.
 * Register tile as in the float32 AVX-512 kernel: 24 accumulators, 2 B
 * vectors, broadcasts folded into the instruction; each step does twice the
 * multiply-adds of an FMA, so the packed A sliver is half as long.
 * float32 -> bf16 happens here, in packing, with VCVTNE2PS2BF16 (the rounding
 * fn_bf16_from_f32 reproduces), so callers keep float32 arrays.
 * Blocking: KC = 1024 (512 pairs: a 64 KiB B micro-panel), MC = 192 rows (an
 * A block of 384 KiB in L2): the float32 kernel's blocks in bytes. With KC = 512
 * each product of k = 1024 passed over C twice (the second loading and storing
 * every tile again); 1024 ran 1.01-1.07x faster at k = 1024 and 2048 on one
 * thread and 1.05-1.13x on two (alternating builds, AMD Zen 4 class cores).
 */
#include <string.h>

#include "gemm_internal.h"
#include "transpose_avx512.h"

#ifdef FN_HAVE_BF16_INTRIN
#include <immintrin.h>

#define MR 12
#define NR 32
/* B panels packed together (pack_b_pairs): 4 x 128-byte runs per row; 8 and 32 measured the same */
#define B_PACK_GROUP 4

/* Lane order that turns [x0..x15 | y0..y15] (bf16) into x0 y0 x1 y1 ... */
static FN_TARGET_BF16 __m512i pair_interleave_index(void) {
    return _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                            23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
}

/* 16 words (x[j], y[j]) as bf16 pairs from cols floats of rows x and y
 * (either may be NULL: zeros), lanes past cols zero. */
static FN_ALWAYS_INLINE FN_TARGET_BF16 __m512i
pair_rows(const float *x, const float *y, int64_t cols, __m512i index) {
    __mmask16 m = fn_avx512_tail(cols);
    __m512 vx = x ? _mm512_maskz_loadu_ps(m, x) : _mm512_setzero_ps();
    __m512 vy = y ? _mm512_maskz_loadu_ps(m, y) : _mm512_setzero_ps();
    __m512i both = (__m512i)_mm512_cvtne2ps_pbh(vy, vx); /* low half x, high half y */
    return _mm512_permutexvar_epi16(index, both);
}

/* Words u0 .. u0+15 of consecutive bf16 pairs from the kc floats at src
 * (zero past kc). */
static FN_ALWAYS_INLINE FN_TARGET_BF16 __m512i
pair_words(const float *src, int64_t kc, int64_t u0) {
    int64_t p = 2 * u0;
    __m512 lo = _mm512_maskz_loadu_ps(fn_avx512_tail(kc - p), src + p);
    __m512 hi = _mm512_maskz_loadu_ps(fn_avx512_tail(kc - p - 16), src + p + 16);
    return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
}

/* rows (<= 16) runs of kc floats, src[i] = start of run i, packed as
 * dst[u * stride + i] = pair word u of run i, for u < units. Runs past rows
 * are zero. Converts 16 words of each run, transposes in registers, and
 * stores `rows` words per u. */
static FN_TARGET_BF16 void pair_runs_transposed(const float *const *src, int rows, int64_t kc,
                                                int64_t units, uint32_t *dst, int64_t stride) {
    __mmask16 keep = fn_avx512_tail(stride < 16 ? stride : 16);
    for (int64_t u0 = 0; u0 < units; u0 += 16) {
        __m512i r[16];
        for (int i = 0; i < 16; ++i) r[i] = i < rows ? pair_words(src[i], kc, u0) : _mm512_setzero_si512();
        fn_transpose16_epi32(r);
        int64_t count = units - u0 < 16 ? units - u0 : 16;
        for (int64_t t = 0; t < count; ++t) _mm512_mask_storeu_epi32(dst + (u0 + t) * stride, keep, r[t]);
    }
}

/* B panels, each units x NR words (see the file comment). */
static FN_TARGET_BF16 void pack_b_pairs(const float *b, int64_t ldb, int trans_b, int64_t pc, int64_t kc,
                                        int64_t units, int64_t jc, int64_t nc, int nr_tile,
                                        int64_t q0, int64_t q1, void *dst_) {
    uint32_t *dst = dst_;
    const __m512i index = pair_interleave_index();
    if (!trans_b) {
        /* B_PACK_GROUP panels at a time, k pair by k pair: each pair of rows is read as
         * one run of B_PACK_GROUP x nr_tile floats. Panel by panel, every read was 128
         * bytes a row stride apart, and packing took a fifth of a 256 x 1024 x 1024 product. */
        for (int64_t g = q0; g < q1; g += B_PACK_GROUP) {
            int64_t g1 = g + B_PACK_GROUP < q1 ? g + B_PACK_GROUP : q1;
            for (int64_t u = 0; u < units; ++u) {
                int64_t p = 2 * u;
                for (int64_t q = g; q < g1; ++q) {
                    int64_t j0 = q * nr_tile;
                    int64_t nr = nc - j0 < nr_tile ? nc - j0 : nr_tile;
                    const float *r0 = p < kc ? b + (pc + p) * ldb + jc + j0 : NULL;
                    const float *r1 = p + 1 < kc ? r0 + ldb : NULL;
                    uint32_t *d = dst + q * nr_tile * units + u * nr_tile;
                    for (int h = 0; h < nr_tile; h += 16)
                        _mm512_storeu_si512(d + h, pair_rows(r0 ? r0 + h : NULL, r1 ? r1 + h : NULL, nr - h, index));
                }
            }
        }
        return;
    }
    for (int64_t q = q0; q < q1; ++q) {
        int64_t j0 = q * nr_tile;
        int64_t nr = nc - j0 < nr_tile ? nc - j0 : nr_tile;
        uint32_t *d = dst + q * nr_tile * units;
        for (int h = 0; h < nr_tile; h += 16) {
            const float *runs[16];
            int rows = nr - h < 0 ? 0 : nr - h < 16 ? (int)(nr - h) : 16;
            for (int j = 0; j < rows; ++j) runs[j] = b + (jc + j0 + h + j) * ldb + pc;
            /* all 16 words are stored: columns past nr come out zero */
            pair_runs_transposed(runs, rows, kc, units, d + h, nr_tile);
        }
    }
}

/* A slivers of MR rows, each units x MR words. */
static FN_TARGET_BF16 void pack_a_pairs(const float *a, int64_t lda, int trans_a, int64_t ic, int64_t mc,
                                        int64_t pc, int64_t kc, int64_t units, int mr_tile, void *dst_) {
    uint32_t *dst = dst_;
    const __m512i index = pair_interleave_index();
    int64_t slivers = (mc + mr_tile - 1) / mr_tile;
    if (trans_a) {
        /* k pair by k pair over every sliver, so each pair of rows of A^T is read as one run
         * of mc floats (sliver by sliver, the reads were 48 bytes a row stride apart), as
         * pack_b_pairs reads B */
        uint32_t words[16];
        for (int64_t u = 0; u < units; ++u) {
            int64_t p = 2 * u;
            for (int64_t s = 0; s < slivers; ++s) {
                int64_t i0 = ic + s * mr_tile;
                int64_t mr = mc - s * mr_tile < mr_tile ? mc - s * mr_tile : mr_tile;
                const float *r0 = p < kc ? a + (pc + p) * lda + i0 : NULL;
                const float *r1 = p + 1 < kc ? r0 + lda : NULL;
                _mm512_storeu_si512(words, pair_rows(r0, r1, mr, index));
                memcpy(dst + s * mr_tile * units + u * mr_tile, words, (size_t)mr_tile * sizeof(uint32_t));
            }
        }
        return;
    }
    for (int64_t s = 0; s < slivers; ++s) {
        int64_t i0 = ic + s * mr_tile;
        int64_t mr = mc - s * mr_tile < mr_tile ? mc - s * mr_tile : mr_tile;
        const float *runs[16];
        for (int64_t i = 0; i < mr; ++i) runs[i] = a + (i0 + i) * lda + pc;
        pair_runs_transposed(runs, (int)mr, kc, units, dst + s * mr_tile * units, mr_tile);
    }
}

static FN_ALWAYS_INLINE FN_TARGET_BF16 void
bf16_tile(const int mr, int nr, int64_t units, const uint32_t *a, const uint32_t *b, float *c,
          int64_t ldc, float alpha, float beta) {
    __m512 acc[MR][2];
    for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int i = 0; i < mr; ++i) {
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * ldc + 31), _MM_HINT_T0);
    }
#pragma GCC unroll 2
    for (int64_t u = 0; u < units; ++u) {
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + u * NR);
        __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + u * NR + 16);
        const uint32_t *au = a + u * MR;
        for (int i = 0; i < mr; ++i) {
            __m512bh ai = (__m512bh)_mm512_set1_epi32((int)au[i]);
            acc[i][0] = _mm512_dpbf16_ps(acc[i][0], ai, b0);
            acc[i][1] = _mm512_dpbf16_ps(acc[i][1], ai, b1);
        }
    }
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    __mmask16 m0 = fn_avx512_tail(nr), m1 = fn_avx512_tail(nr - 16);
    for (int i = 0; i < mr; ++i) {
        float *ci = c + i * ldc;
        __m512 r0 = _mm512_mul_ps(va, acc[i][0]), r1 = _mm512_mul_ps(va, acc[i][1]);
        if (beta != 0.0f) {
            r0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, ci), r0);
            r1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, ci + 16), r1);
        }
        _mm512_mask_storeu_ps(ci, m0, r0);
        _mm512_mask_storeu_ps(ci + 16, m1, r1);
    }
}

/* The driver always packs: a is a sliver (units x MR words), b a panel. */
static FN_TARGET_BF16 void bf16_kernel(int mr, int nr, int64_t kc, const float *a, int64_t rsa, int64_t csa,
                                       const float *b, int64_t rsb, float *c, int64_t ldc, float alpha,
                                       float beta) {
    (void)rsa, (void)csa, (void)rsb;
    const uint32_t *aw = (const uint32_t *)a, *bw = (const uint32_t *)b;
    int64_t units = (kc + 1) / 2;
    switch (mr) {
    case 12: bf16_tile(12, nr, units, aw, bw, c, ldc, alpha, beta); break;
    case 11: bf16_tile(11, nr, units, aw, bw, c, ldc, alpha, beta); break;
    case 10: bf16_tile(10, nr, units, aw, bw, c, ldc, alpha, beta); break;
    case 9: bf16_tile(9, nr, units, aw, bw, c, ldc, alpha, beta); break;
    case 8: bf16_tile(8, nr, units, aw, bw, c, ldc, alpha, beta); break;
    case 7: bf16_tile(7, nr, units, aw, bw, c, ldc, alpha, beta); break;
    case 6: bf16_tile(6, nr, units, aw, bw, c, ldc, alpha, beta); break;
    case 5: bf16_tile(5, nr, units, aw, bw, c, ldc, alpha, beta); break;
    case 4: bf16_tile(4, nr, units, aw, bw, c, ldc, alpha, beta); break;
    case 3: bf16_tile(3, nr, units, aw, bw, c, ldc, alpha, beta); break;
    case 2: bf16_tile(2, nr, units, aw, bw, c, ldc, alpha, beta); break;
    default: bf16_tile(1, nr, units, aw, bw, c, ldc, alpha, beta); break;
    }
}

const fn_sgemm_arch fn_bf16_arch_avx512 = {
    "avx512_bf16", MR, NR, 192, 1024, 4096, bf16_kernel, fn_sgemm_epilogue_avx512,
    2, 2, pack_a_pairs, pack_b_pairs,
};

/* Also used by the AMX packing, whose B panels have the same layout. */
void fn_pack_b_bf16_pairs(const float *b, int64_t ldb, int trans_b, int64_t pc, int64_t kc,
                          int64_t units, int64_t jc, int64_t nc, int nr, int64_t q0, int64_t q1,
                          void *dst) {
    pack_b_pairs(b, ldb, trans_b, pc, kc, units, jc, nc, nr, q0, q1, dst);
}

#endif /* FN_HAVE_BF16_INTRIN */
