/* int8_vnni.c - the 12 x 32 int8 micro-kernel on AVX512-VNNI (VPDPBUSD).
 *
 * VPDPBUSD adds to each of 16 int32 lanes the four products of unsigned
 * bytes of one source and signed bytes of the other. B is packed so that a
 * 64-byte row of a panel holds, for 16 columns, 4 consecutive k (int8.c); A
 * is fed as q + 128 (unsigned), and the driver subtracts 128 * column sum.
 * Register tile as in the float32 kernel: 24 accumulators, 2 B vectors, the
 * 4 A bytes of a row broadcast into the instruction. The accumulators start
 * from `init` (-128 x the column sums), which takes the offset back out.
 *
 * The row loops are unrolled by mr (a constant at each call site) and the k
 * loop is not: unrolling k by 2, as before, made GCC 12 rotate the 24
 * accumulators through register copies and stack spills every step, and the
 * kernel ran at 190-220 GOP/s; written this way it keeps them in registers
 * and runs at 290-390 GOP/s on the decoder's shapes (m 256, k 128-512, n
 * 128-4000, one Zen 4 core, whose VPDPBUSD peak is 4x its float32 FMA's).
 */
#include <math.h>
#include <string.h>

#include "int8_internal.h"

#ifdef FN_HAVE_VNNI_INTRIN
#include <immintrin.h>

#define MR 12

static FN_ALWAYS_INLINE FN_TARGET_VNNI void
vnni_tile(const int mr, int64_t kpad, const uint8_t *a, int64_t lda, const int8_t *b, const int32_t *init,
          int32_t *tile) {
    __m512i acc[MR][2];
    const __m512i init0 = init ? _mm512_loadu_si512(init) : _mm512_setzero_si512();
    const __m512i init1 = init ? _mm512_loadu_si512(init + 16) : _mm512_setzero_si512();
#pragma GCC unroll 12
    for (int i = 0; i < mr; ++i) acc[i][0] = init0, acc[i][1] = init1;
    for (int64_t u = 0; u < kpad / 4; ++u) {
        __m512i b0 = _mm512_loadu_si512(b + u * 128);
        __m512i b1 = _mm512_loadu_si512(b + u * 128 + 64);
#pragma GCC unroll 12
        for (int i = 0; i < mr; ++i) {
            int32_t word;
            memcpy(&word, a + i * lda + 4 * u, 4);
            __m512i ai = _mm512_set1_epi32(word);
            acc[i][0] = _mm512_dpbusd_epi32(acc[i][0], ai, b0);
            acc[i][1] = _mm512_dpbusd_epi32(acc[i][1], ai, b1);
        }
    }
#pragma GCC unroll 12
    for (int i = 0; i < mr; ++i) {
        _mm512_storeu_si512(tile + i * 32, acc[i][0]);
        _mm512_storeu_si512(tile + i * 32 + 16, acc[i][1]);
    }
}

static FN_TARGET_VNNI void vnni_kernel(int mr, int64_t kpad, const uint8_t *a, int64_t lda, const int8_t *b,
                                       const int32_t *init, int32_t *tile) {
    switch (mr) {
    case 12: vnni_tile(12, kpad, a, lda, b, init, tile); break;
    case 11: vnni_tile(11, kpad, a, lda, b, init, tile); break;
    case 10: vnni_tile(10, kpad, a, lda, b, init, tile); break;
    case 9: vnni_tile(9, kpad, a, lda, b, init, tile); break;
    case 8: vnni_tile(8, kpad, a, lda, b, init, tile); break;
    case 7: vnni_tile(7, kpad, a, lda, b, init, tile); break;
    case 6: vnni_tile(6, kpad, a, lda, b, init, tile); break;
    case 5: vnni_tile(5, kpad, a, lda, b, init, tile); break;
    case 4: vnni_tile(4, kpad, a, lda, b, init, tile); break;
    case 3: vnni_tile(3, kpad, a, lda, b, init, tile); break;
    case 2: vnni_tile(2, kpad, a, lda, b, init, tile); break;
    default: vnni_tile(1, kpad, a, lda, b, init, tile); break;
    }
}

/* ---- quantising a row and dequantising a tile, 16 lanes at a time --------
 * The same operations as the portable code in int8.c, in the same order (one
 * multiply by 127/max, round to nearest even, clamp; (float)acc times
 * (scale_x * scale_w)), so the bytes and floats are identical. The AMX path
 * uses them too (offset 0): every CPU with AMX has AVX512-VNNI. */

FN_TARGET_VNNI float fn_s8_quantize_row_avx512(const float *x, int64_t k, int64_t kpad, uint8_t offset,
                                               uint8_t *dst) {
    __m512 amax = _mm512_setzero_ps();
    __mmask16 bad = 0;
    const __m512 inf = _mm512_set1_ps(INFINITY);
    for (int64_t p = 0; p < k; p += 16) {
        __mmask16 m = k - p >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (k - p)) - 1u);
        __m512 a = _mm512_abs_ps(_mm512_maskz_loadu_ps(m, x + p));
        bad |= _mm512_mask_cmp_ps_mask(m, a, inf, _CMP_NLT_UQ); /* NaN or infinity */
        amax = _mm512_max_ps(amax, a);
    }
    if (bad) {
        memset(dst, offset, (size_t)kpad);
        return NAN;
    }
    float max = _mm512_reduce_max_ps(amax);
    float scale = max / 127.0f, inv = max > 0.0f ? 127.0f / max : 0.0f;
    const __m512 vinv = _mm512_set1_ps(inv);
    const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127), off = _mm512_set1_epi32(offset);
    for (int64_t p = 0; p < k; p += 16) {
        __mmask16 m = k - p >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (k - p)) - 1u);
        __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + p), vinv));
        q = _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(q, lo), hi), off);
        _mm_mask_storeu_epi8(dst + p, m, _mm512_cvtepi32_epi8(q));
    }
    memset(dst + k, offset, (size_t)(kpad - k));
    return scale;
}

FN_TARGET_VNNI void fn_s8_dequantize_avx512(const int32_t *tile, int mr, int nr, const float *x_scale,
                                            const float *w_scale, const float *bias, float *y, int64_t ldy) {
    __mmask16 m0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1u);
    __mmask16 m1 = nr >= 32 ? (__mmask16)0xFFFF : nr <= 16 ? 0 : (__mmask16)((1u << (nr - 16)) - 1u);
    __m512 w0 = _mm512_maskz_loadu_ps(m0, w_scale), w1 = _mm512_maskz_loadu_ps(m1, w_scale + 16);
    /* a multiply, then an add (never one FMA): the portable path's rounding */
    __m512 b0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
    __m512 b1 = bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
    for (int i = 0; i < mr; ++i) {
        __m512 sx = _mm512_set1_ps(x_scale[i]);
        __m512 y0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_loadu_si512(tile + i * 32)), _mm512_mul_ps(sx, w0));
        __m512 y1 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_loadu_si512(tile + i * 32 + 16)), _mm512_mul_ps(sx, w1));
        if (bias) {
            y0 = _mm512_add_ps(y0, b0);
            y1 = _mm512_add_ps(y1, b1);
        }
        _mm512_mask_storeu_ps(y + i * ldy, m0, y0);
        _mm512_mask_storeu_ps(y + i * ldy + 16, m1, y1);
    }
}

const fn_s8_arch fn_s8_arch_vnni = {"avx512_vnni", MR, 1, vnni_kernel, NULL, NULL,
                                  fn_s8_quantize_row_avx512, fn_s8_dequantize_avx512};

#endif /* FN_HAVE_VNNI_INTRIN */
