/* gemm_amx.c - the bf16 GEMM on AMX tiles (TDPBF16PS).
 *
 * AMX holds eight tile registers of up to 16 rows x 64 bytes. TDPBF16PS adds
 * to a 16 x 16 float32 tile C the product of a 16 x 32 bf16 tile A (rows of
 * 32 consecutive k) and a 16 x 16 tile B of bf16 pairs (row r holds, for 16
 * columns, the pair k = 2r, 2r+1) - the pair layout the AVX512-BF16 kernel
 * packs B in, so the B packing is shared (fn_pack_b_bf16_pairs); A is packed
 * in bf16 in tile order instead (pack_a_tiles: per 32 k, the sliver's rows).
 * Micro-tile 32 x 32: C in tiles 0-3, A in 4-5, B in 6-7; per 32 k, 2 + 2
 * tile loads feed 4 TDPBF16PS (16 x 16 x 32 multiply-adds each). A whole
 * tile with alpha 1 and beta 0 or 1 is loaded from and stored to C directly;
 * edges and scaled products go through a 32 x 32 buffer.
 * The int8 kernel (TDPBSSD, signed x signed bytes) has the same shape: A
 * tiles of 16 rows x 64 k, B tiles of 16 groups of 4 k x 16 columns, in the
 * packed layout of int8.c.
 * The tile configuration is loaded once per thread and released after, by
 * the driver's thread_begin / thread_end hooks. The path runs only after the
 * OS granted the tile state (cpu.c).
 */
#include <string.h>

#include "int8_internal.h"

#ifdef FN_HAVE_AMX_INTRIN
#include <immintrin.h>

#include "simd.h"
#include "transpose_avx512.h"

#define MR 32
#define NR 32
#define K_ALIGN 32 /* one A tile row: 32 bf16 */

void fn_pack_b_bf16_pairs(const float *b, int64_t ldb, int trans_b, int64_t pc, int64_t kc,
                          int64_t units, int64_t jc, int64_t nc, int nr, int64_t q0, int64_t q1,
                          void *dst);

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

/* Palette 1, tiles 0-7 at their largest: 16 rows of 64 bytes. A constant
 * object, not a local filled in before the load: GCC's _tile_loadconfig tells
 * the compiler it reads 8 bytes, so the stores filling the rest of a local
 * were dropped as dead and LDTILECFG faulted on the stack's leftovers. */
static const tile_config amx_tiles = {
    .palette = 1,
    .colsb = {64, 64, 64, 64, 64, 64, 64, 64},
    .rows = {16, 16, 16, 16, 16, 16, 16, 16},
};

static FN_TARGET_AMX void amx_begin(void) { _tile_loadconfig(&amx_tiles); }

static FN_TARGET_AMX void amx_end(void) { _tile_release(); }

/* A sliver in tile order: for each step of 32 k, its MR rows of 32 bf16 (one
 * 64-byte tile row each), zero past kc and past mc. The kernel's two A tiles
 * of a step are then 2 KiB in a row, loaded with a 64-byte stride, where rows
 * of the whole sliver lay 2 KC bytes apart (32 rows at a 1 KiB stride share 4
 * of the L1's 64 sets); the gain on its own was within the host's noise. A
 * transposed A is read 16 x 16 at a time along a's rows and transposed in
 * registers (element by element before: TN and TT products ran 1.3-1.5x
 * slower). */
static FN_TARGET_AMX void pack_a_tiles(const float *a, int64_t lda, int trans_a, int64_t ic, int64_t mc,
                                       int64_t pc, int64_t kc, int64_t units, int mr_tile, void *dst_) {
    uint16_t *dst = dst_;
    const int64_t width = 2 * units;
    for (int64_t s = 0; s * mr_tile < mc; ++s) {
        const int64_t i0 = ic + s * mr_tile;
        const int mr = mc - s * mr_tile < mr_tile ? (int)(mc - s * mr_tile) : mr_tile;
        for (int64_t p0 = 0; p0 < width; p0 += K_ALIGN) {
            uint16_t *step = dst + s * mr_tile * width + p0 * mr_tile;
            const int64_t left = kc - p0; /* k values of this step that exist */
            if (!trans_a) {
                for (int i = 0; i < mr; ++i) {
                    const float *src = a + (i0 + i) * lda + pc + p0;
                    __m512 lo = _mm512_maskz_loadu_ps(fn_avx512_tail(left), src);
                    __m512 hi = _mm512_maskz_loadu_ps(fn_avx512_tail(left - 16), src + 16);
                    _mm512_storeu_si512(step + i * K_ALIGN, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
                }
            } else {
                /* op(A) row i is column i0 + i of a */
                for (int h = 0; h < mr; h += 16) {
                    const __mmask16 cols = fn_avx512_tail(mr - h);
                    __m512i lo[16], hi[16];
                    for (int t = 0; t < 16; ++t) {
                        const float *src = a + (pc + p0 + t) * lda + i0 + h;
                        lo[t] = t < left ? _mm512_castps_si512(_mm512_maskz_loadu_ps(cols, src))
                                         : _mm512_setzero_si512();
                        hi[t] = t + 16 < left ? _mm512_castps_si512(_mm512_maskz_loadu_ps(cols, src + 16 * lda))
                                              : _mm512_setzero_si512();
                    }
                    fn_transpose16_epi32(lo);
                    fn_transpose16_epi32(hi);
                    for (int i = 0; i < 16 && h + i < mr; ++i)
                        _mm512_storeu_si512(step + (h + i) * K_ALIGN,
                                            (__m512i)_mm512_cvtne2ps_pbh(_mm512_castsi512_ps(hi[i]),
                                                                         _mm512_castsi512_ps(lo[i])));
                }
            }
            if (mr < mr_tile) memset(step + mr * K_ALIGN, 0, (size_t)(mr_tile - mr) * K_ALIGN * sizeof(uint16_t));
        }
    }
}

static FN_TARGET_AMX void amx_kernel(int mr, int nr, int64_t kc, const float *a, int64_t rsa, int64_t csa,
                                     const float *b, int64_t rsb, float *c, int64_t ldc, float alpha,
                                     float beta) {
    (void)rsa, (void)csa, (void)rsb;
    const int64_t width = (kc + K_ALIGN - 1) / K_ALIGN * K_ALIGN; /* k, padded */
    const char *ap = (const char *)a, *bp = (const char *)b;
    const int64_t a_stride = K_ALIGN * 2, b_stride = NR * 4;
    /* A whole tile with alpha 1 and beta 0 or 1 (every product but the
     * scaled ones): the accumulators start from C and go back to C, with no
     * pass through a buffer. */
    const int in_place = mr == MR && nr == NR && alpha == 1.0f && (beta == 0.0f || beta == 1.0f);
    const int64_t c_stride = ldc * 4;
    if (in_place && beta == 1.0f) {
        _tile_loadd(0, c, c_stride);
        _tile_loadd(1, c + 16, c_stride);
        _tile_loadd(2, c + 16 * ldc, c_stride);
        _tile_loadd(3, c + 16 * ldc + 16, c_stride);
    } else {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
    }
    for (int64_t p = 0; p < width; p += K_ALIGN) {
        /* k = p .. p+31: A step p / 32 (MR rows of 64 bytes), B pair rows p/2 .. p/2+15 */
        _tile_loadd(4, ap + p * MR * 2, a_stride);
        _tile_loadd(5, ap + p * MR * 2 + 16 * a_stride, a_stride);
        _tile_loadd(6, bp + (p / 2) * b_stride, b_stride);
        _tile_loadd(7, bp + (p / 2) * b_stride + 64, b_stride);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    if (in_place) {
        _tile_stored(0, c, c_stride);
        _tile_stored(1, c + 16, c_stride);
        _tile_stored(2, c + 16 * ldc, c_stride);
        _tile_stored(3, c + 16 * ldc + 16, c_stride);
        return;
    }
    float out[MR * NR];
    _tile_stored(0, out, NR * 4);
    _tile_stored(1, out + 16, NR * 4);
    _tile_stored(2, out + 16 * NR, NR * 4);
    _tile_stored(3, out + 16 * NR + 16, NR * 4);
    for (int i = 0; i < mr; ++i) {
        float *ci = c + i * ldc;
        const float *oi = out + i * NR;
        if (beta == 0.0f)
            for (int j = 0; j < nr; ++j) ci[j] = alpha * oi[j];
        else
            for (int j = 0; j < nr; ++j) ci[j] = alpha * oi[j] + beta * ci[j];
    }
}

/* Blocking: an A block of MC x KC = 256 x 1024 bf16 (512 KiB) in the 2 MiB
 * L2 of a Sapphire Rapids core, a B micro-panel of 1024 x 32 (64 KiB). KC
 * 1024 sums k up to 1024 in the tiles in one pass over C; with KC 512 a
 * second pass loaded and stored every C tile again: 1024^3 ran at 680-710
 * GFLOP/s against 770-850 (MC 64 or 128 ran no better). */
const fn_sgemm_arch fn_bf16_arch_amx = {
    "amx", MR, NR, 256, 1024, 4096, amx_kernel, fn_sgemm_epilogue_avx512,
    2, K_ALIGN, pack_a_tiles, fn_pack_b_bf16_pairs, amx_begin, amx_end,
};

/* ---- int8: C (int32) += A (s8, kpad bytes a row) B (packed s8) ---------- */

static FN_TARGET_AMX void amx_s8_kernel(int mr, int64_t kpad, const uint8_t *a, int64_t lda, const int8_t *b,
                                        const int32_t *init, int32_t *tile) {
    (void)mr; /* the driver hands over MR rows, zero past m */
    const char *a0 = (const char *)a, *a1 = a0 + 16 * lda, *bp = (const char *)b;
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int64_t p = 0; p < kpad; p += 64) {
        _tile_loadd(4, a0 + p, lda);
        _tile_loadd(5, a1 + p, lda);
        _tile_loadd(6, bp + (p / 4) * 128, 128);
        _tile_loadd(7, bp + (p / 4) * 128 + 64, 128);
        _tile_dpbssd(0, 4, 6);
        _tile_dpbssd(1, 4, 7);
        _tile_dpbssd(2, 5, 6);
        _tile_dpbssd(3, 5, 7);
    }
    _tile_stored(0, tile, 128);
    _tile_stored(1, tile + 16, 128);
    _tile_stored(2, tile + 16 * 32, 128);
    _tile_stored(3, tile + 16 * 32 + 16, 128);
    if (init) /* not used: A is signed on AMX (a_offset 0), so the driver passes NULL */
        for (int i = 0; i < 32; ++i)
            for (int j = 0; j < FN_S8_NR; ++j) tile[i * FN_S8_NR + j] += init[j];
}

const fn_s8_arch fn_s8_arch_amx = {"amx", 32, 0, amx_s8_kernel, amx_begin, amx_end,
                                   fn_s8_quantize_row_avx512, fn_s8_dequantize_avx512};

#endif /* FN_HAVE_AMX_INTRIN */
