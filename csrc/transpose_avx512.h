/* transpose_avx512.h - the 16 x 16 in-register transpose behind the packing
 * routines that turn rows into columns (float32 and bf16 GEMMs). Include it
 * from x86 files only; every function carries its own target attribute.
 *
 * Four rounds of shuffles: 32-bit unpacks pair rows, 64-bit unpacks make 4 x 4
 * blocks inside each 128-bit lane, two rounds of 128-bit lane shuffles move
 * the blocks into place: 64 shuffles for 256 words, where a scalar
 * transposing copy does one strided store per word.
 */
#ifndef FN_TRANSPOSE_AVX512_H
#define FN_TRANSPOSE_AVX512_H

#include <immintrin.h>

#include "fn_internal.h"

/* In-register transpose of 16 x 16 32-bit words: r[i] lane j <-> r[j] lane i. */
static FN_ALWAYS_INLINE FN_TARGET_AVX512 void fn_transpose16_epi32(__m512i r[16]) {
    __m512i t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    /* r[4g + c] now holds, in each 128-bit lane L, column 4L + c of rows 4g..4g+3 */
    for (int g = 0; g < 4; g += 2)
        for (int c = 0; c < 4; ++c) {
            t[4 * g + c] = _mm512_shuffle_i32x4(r[4 * g + c], r[4 * (g + 1) + c], 0x88);
            t[4 * g + 4 + c] = _mm512_shuffle_i32x4(r[4 * g + c], r[4 * (g + 1) + c], 0xDD);
        }
    for (int c = 0; c < 4; ++c) {
        __m512i even0 = t[c], odd0 = t[4 + c], even1 = t[8 + c], odd1 = t[12 + c];
        r[c] = _mm512_shuffle_i32x4(even0, even1, 0x88);
        r[8 + c] = _mm512_shuffle_i32x4(even0, even1, 0xDD);
        r[4 + c] = _mm512_shuffle_i32x4(odd0, odd1, 0x88);
        r[12 + c] = _mm512_shuffle_i32x4(odd0, odd1, 0xDD);
    }
}

#endif /* FN_TRANSPOSE_AVX512_H */
