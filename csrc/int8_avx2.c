/* int8_avx2.c - the int8 kernel for CPUs with AVX2 but no AVX512-VNNI
 * (Zen 2 and 3, Intel before Ice Lake, the AVX2-only Intel desktop parts).
 *
 * Without VNNI the portable kernel ran int8 at 8 GOP/s, a tenth of the
 * float32 GEMM, so `quantize("int8")` made a model slower there. AVX2 has
 * VPMADDWD: sixteen signed 16-bit products summed in pairs into eight int32
 * lanes. Bytes widened to 16 bits multiply exactly whatever their value
 * (-128 included), and a pair of products of int8 values fits int32 with
 * room to spare, so the sums are exact, as on every other path. (VPMADDUBSW
 * multiplies bytes directly but saturates its 16-bit pair sums; it would
 * need activations cut to 7 bits, and then this path would give other
 * numbers than the rest.)
 *
 * The packed panel keeps its one layout (int8.c): for each group u of 4
 * consecutive k, 32 columns x 4 bytes. Widening 16 of those bytes gives 4
 * columns x 4 k as 16-bit lanes; A's 4 bytes of the same k, widened and
 * repeated 4 times, line up with them, and VPMADDWD leaves each column's sum
 * in two adjacent int32 lanes, which are added once the tile is done.
 *
 * Register tile: 2 rows x 16 columns (8 accumulators, 4 widened B vectors).
 * A's rows are widened once per block of k into a stack buffer, so in the
 * inner loop A costs a broadcast load and B one widening load per 4 columns,
 * shared by the two rows. A is signed (no +128 offset, no column-sum
 * correction).
 */
#include <math.h>
#include <string.h>

#include "int8_internal.h"

#ifdef FN_SIMD_X86
#include <immintrin.h>

#define MR 12
#define KBLOCK 512 /* k per widening of A: 2 rows x 512 x 2 bytes of stack */

/* Columns [16h, 16h + 16) of rows r0, r0 + 1 (rows == 1: only r0) over k in [k0, k0 + kb). */
static FN_ALWAYS_INLINE FN_TARGET_AVX2 void
accumulate_half(int rows, const int16_t *aw, int64_t k0, int64_t kb, const int8_t *b, int half, __m256i acc[2][4]) {
    for (int64_t p = 0; p < kb; p += 4) {
        const int8_t *bu = b + (k0 + p) * 32 + half * 64; /* group (k0 + p) / 4 holds 128 bytes */
        __m256i b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)bu));
        __m256i b1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(bu + 16)));
        __m256i b2 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(bu + 32)));
        __m256i b3 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(bu + 48)));
        for (int r = 0; r < rows; ++r) {
            long long four;
            memcpy(&four, aw + r * KBLOCK + p, sizeof four);
            __m256i ar = _mm256_set1_epi64x(four);
            acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(b0, ar));
            acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(b1, ar));
            acc[r][2] = _mm256_add_epi32(acc[r][2], _mm256_madd_epi16(b2, ar));
            acc[r][3] = _mm256_add_epi32(acc[r][3], _mm256_madd_epi16(b3, ar));
        }
    }
}

/* The 16 column sums of one row: acc[c] holds columns 4c..4c+3 as pairs of int32 lanes. */
static FN_ALWAYS_INLINE FN_TARGET_AVX2 void store_half(const __m256i acc[4], int32_t *out) {
    /* hadd of two vectors sums adjacent lanes within each 128-bit half: lo(acc0) lo(acc1) hi(acc0) hi(acc1) */
    __m256i s01 = _mm256_hadd_epi32(acc[0], acc[1]), s23 = _mm256_hadd_epi32(acc[2], acc[3]);
    const __m256i order = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7);
    _mm256_storeu_si256((__m256i *)out, _mm256_permutevar8x32_epi32(s01, order));
    _mm256_storeu_si256((__m256i *)(out + 8), _mm256_permutevar8x32_epi32(s23, order));
}

static FN_TARGET_AVX2 void avx2_s8_kernel(int mr, int64_t kpad, const uint8_t *a, int64_t lda, const int8_t *b,
                                          const int32_t *init, int32_t *tile) {
    (void)init; /* A is signed here: no offset to take out */
    int16_t aw[2 * KBLOCK];
    for (int r0 = 0; r0 < mr; r0 += 2) {
        int rows = mr - r0 < 2 ? mr - r0 : 2;
        for (int half = 0; half < 2; ++half) {
            __m256i acc[2][4];
            for (int r = 0; r < 2; ++r)
                for (int c = 0; c < 4; ++c) acc[r][c] = _mm256_setzero_si256();
            for (int64_t k0 = 0; k0 < kpad; k0 += KBLOCK) {
                int64_t kb = kpad - k0 < KBLOCK ? kpad - k0 : KBLOCK;
                for (int r = 0; r < rows; ++r) {
                    const int8_t *src = (const int8_t *)a + (r0 + r) * lda + k0;
                    for (int64_t p = 0; p < kb; p += 16)
                        _mm256_storeu_si256((__m256i *)(aw + r * KBLOCK + p),
                                            _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(src + p))));
                }
                if (rows == 2)
                    accumulate_half(2, aw, k0, kb, b, half, acc);
                else
                    accumulate_half(1, aw, k0, kb, b, half, acc);
            }
            for (int r = 0; r < rows; ++r) store_half(acc[r], tile + (r0 + r) * FN_S8_NR + half * 16);
        }
    }
}

/* ---- quantising a row and dequantising a tile, 8 lanes at a time ----------
 * The portable code's operations in its order (int8.c), so the same bytes and
 * floats: the row's largest magnitude, one multiply by 127/max, round to
 * nearest even, clamp; (float)acc times (scale_x * scale_w), then the bias. */

/* Lanes [0, n) of 8 (n < 8 for the tail of a row): a mask for maskload/maskstore. */
static FN_ALWAYS_INLINE FN_TARGET_AVX2 __m256i lanes_below(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n < 8 ? n : 8)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static FN_TARGET_AVX2 float avx2_quantize_row(const float *x, int64_t k, int64_t kpad, uint8_t offset,
                                              uint8_t *dst) {
    const __m256 sign = _mm256_set1_ps(-0.0f), inf = _mm256_set1_ps(INFINITY);
    __m256 amax = _mm256_setzero_ps();
    int bad = 0;
    for (int64_t p = 0; p < k; p += 8) { /* a masked lane reads 0: neither NaN nor a larger magnitude */
        __m256 a = _mm256_andnot_ps(sign, _mm256_maskload_ps(x + p, lanes_below(k - p)));
        bad |= _mm256_movemask_ps(_mm256_cmp_ps(a, inf, _CMP_NLT_UQ)); /* NaN or infinity */
        amax = _mm256_max_ps(amax, a);
    }
    if (bad) {
        memset(dst, offset, (size_t)kpad);
        return NAN;
    }
    float lanes[8], max = 0.0f;
    _mm256_storeu_ps(lanes, amax);
    for (int l = 0; l < 8; ++l) max = lanes[l] > max ? lanes[l] : max;
    float scale = max / 127.0f, inv = max > 0.0f ? 127.0f / max : 0.0f;
    const __m256 vinv = _mm256_set1_ps(inv);
    const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
    const __m256i gather_bytes = _mm256_setr_epi32(0, 4, 0, 0, 0, 0, 0, 0);
    for (int64_t p = 0; p < k; p += 8) {
        __m256i q = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_maskload_ps(x + p, lanes_below(k - p)), vinv));
        q = _mm256_min_epi32(_mm256_max_epi32(q, lo), hi);
        __m256i w = _mm256_packs_epi16(_mm256_packs_epi32(q, q), _mm256_setzero_si256()); /* bytes 0-3, 16-19 */
        __m128i bytes = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(w, gather_bytes));
        uint8_t eight[16];
        _mm_storeu_si128((__m128i *)eight, _mm_add_epi8(bytes, _mm_set1_epi8((char)offset)));
        memcpy(dst + p, eight, (size_t)(k - p < 8 ? k - p : 8));
    }
    memset(dst + k, offset, (size_t)(kpad - k));
    return scale;
}

static FN_TARGET_AVX2 void avx2_dequantize(const int32_t *tile, int mr, int nr, const float *x_scale,
                                           const float *w_scale, const float *bias, float *y, int64_t ldy) {
    for (int c = 0; c < nr; c += 8) {
        __m256i mask = lanes_below(nr - c);
        __m256 w = _mm256_maskload_ps(w_scale + c, mask);
        __m256 b = bias ? _mm256_maskload_ps(bias + c, mask) : _mm256_setzero_ps();
        for (int i = 0; i < mr; ++i) {
            __m256 acc = _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(tile + i * FN_S8_NR + c)));
            __m256 v = _mm256_mul_ps(acc, _mm256_mul_ps(_mm256_set1_ps(x_scale[i]), w));
            if (bias) v = _mm256_add_ps(v, b); /* a multiply, then an add (never one FMA) */
            _mm256_maskstore_ps(y + i * ldy + c, mask, v);
        }
    }
}

const fn_s8_arch fn_s8_arch_avx2 = {"avx2", MR, 0, avx2_s8_kernel, NULL, NULL, avx2_quantize_row, avx2_dequantize};

#endif /* FN_SIMD_X86 */
