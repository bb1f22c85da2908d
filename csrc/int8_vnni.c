/* int8_vnni.c - the 12 x 32 int8 micro-kernel on AVX512-VNNI (VPDPBUSD).
 *
 * VPDPBUSD adds to each of 16 int32 lanes the four products of unsigned
 * bytes of one source and signed bytes of the other. B is packed so that a
 * 64-byte row of a panel holds, for 16 columns, 4 consecutive k (int8.c); A
 * is fed as q + 128 (unsigned), and the driver subtracts 128 * column sum.
 * Register tile as in the float32 kernel: 24 accumulators, 2 B vectors, the
 * 4 A bytes of a row broadcast into the instruction.
 */
#include <string.h>

#include "int8_internal.h"

#ifdef FN_HAVE_VNNI_INTRIN
#include <immintrin.h>

#define MR 12

static inline __attribute__((always_inline)) FN_TARGET_VNNI void
vnni_tile(const int mr, int64_t kpad, const uint8_t *a, int64_t lda, const int8_t *b, int32_t *tile) {
    __m512i acc[MR][2];
    for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_si512();
#pragma GCC unroll 2
    for (int64_t u = 0; u < kpad / 4; ++u) {
        __m512i b0 = _mm512_loadu_si512(b + u * 128);
        __m512i b1 = _mm512_loadu_si512(b + u * 128 + 64);
        for (int i = 0; i < mr; ++i) {
            int32_t word;
            memcpy(&word, a + i * lda + 4 * u, 4);
            __m512i ai = _mm512_set1_epi32(word);
            acc[i][0] = _mm512_dpbusd_epi32(acc[i][0], ai, b0);
            acc[i][1] = _mm512_dpbusd_epi32(acc[i][1], ai, b1);
        }
    }
    for (int i = 0; i < mr; ++i) {
        _mm512_storeu_si512(tile + i * 32, acc[i][0]);
        _mm512_storeu_si512(tile + i * 32 + 16, acc[i][1]);
    }
}

static FN_TARGET_VNNI void vnni_kernel(int mr, int64_t kpad, const uint8_t *a, int64_t lda, const int8_t *b,
                                       int32_t *tile) {
    switch (mr) {
    case 12: vnni_tile(12, kpad, a, lda, b, tile); break;
    case 11: vnni_tile(11, kpad, a, lda, b, tile); break;
    case 10: vnni_tile(10, kpad, a, lda, b, tile); break;
    case 9: vnni_tile(9, kpad, a, lda, b, tile); break;
    case 8: vnni_tile(8, kpad, a, lda, b, tile); break;
    case 7: vnni_tile(7, kpad, a, lda, b, tile); break;
    case 6: vnni_tile(6, kpad, a, lda, b, tile); break;
    case 5: vnni_tile(5, kpad, a, lda, b, tile); break;
    case 4: vnni_tile(4, kpad, a, lda, b, tile); break;
    case 3: vnni_tile(3, kpad, a, lda, b, tile); break;
    case 2: vnni_tile(2, kpad, a, lda, b, tile); break;
    default: vnni_tile(1, kpad, a, lda, b, tile); break;
    }
}

const fn_s8_arch fn_s8_arch_vnni = {"avx512_vnni", MR, 1, vnni_kernel, NULL, NULL};

#endif /* FN_HAVE_VNNI_INTRIN */
