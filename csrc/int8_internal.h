/* int8_internal.h - what the int8 driver (int8.c) shares with its kernels
 * (int8_avx2.c, int8_vnni.c, gemm_amx.c). Not part of the public API. */
#ifndef FN_INT8_INTERNAL_H
#define FN_INT8_INTERNAL_H

#include "gemm_internal.h"

#define FN_S8_NR 32      /* columns per packed panel (two 16-lane vectors, two AMX tiles) */
#define FN_S8_KALIGN 64  /* k padding: one AMX tile row of bytes */
#define FN_S8_MR_MAX 32  /* largest row tile of any kernel */

/* Sums of a tile of mr (<= MR) rows of A (kpad bytes each, lda apart; u8 =
 * q + 128 when the arch says a_offset, else s8) times a packed 32-column B
 * panel, into tile[i * 32 + j] (all 32 columns; padding columns give 0).
 * Every row's sums start from init[0..32) (NULL: from 0): the driver passes
 * -128 x the column sums of B when the arch says a_offset, so the offset is
 * taken out inside the kernel's registers, not in a pass over the tile. */
typedef void (*fn_s8_kernel)(int mr, int64_t kpad, const uint8_t *a, int64_t lda, const int8_t *b,
                             const int32_t *init, int32_t *tile);

typedef struct {
    const char *name;
    int mr;
    int a_offset;  /* 1: A is fed as q + 128 (unsigned bytes) */
    fn_s8_kernel kernel;
    void (*thread_begin)(void);
    void (*thread_end)(void);
    /* Vector forms of fn_s8_quantize_row and of the dequantisation of a
     * tile, y = (float)acc * (x_scale * w_scale) (+ bias, when not NULL: in
     * the same pass, so the tile is stored once); same results bit for bit.
     * NULL: the portable ones. */
    float (*quantize_row)(const float *x, int64_t k, int64_t kpad, uint8_t offset, uint8_t *dst);
    void (*dequantize)(const int32_t *tile, int mr, int nr, const float *x_scale, const float *w_scale,
                       const float *bias, float *y, int64_t ldy);
} fn_s8_arch;

/* What to do with a finished tile (rows i0.., columns j0.. of C). */
typedef void (*fn_s8_finish)(const int32_t *tile, int mr, int nr, int64_t i0, int64_t j0, void *ctx);

extern const fn_s8_arch fn_s8_arch_generic;
#ifdef FN_SIMD_X86
extern const fn_s8_arch fn_s8_arch_avx2; /* int8_avx2.c: exact 16-bit products, no VNNI needed */
#endif
#ifdef FN_HAVE_VNNI_INTRIN
extern const fn_s8_arch fn_s8_arch_vnni;
/* The VNNI path's vector quantisation and dequantisation (int8_vnni.c). */
float fn_s8_quantize_row_avx512(const float *x, int64_t k, int64_t kpad, uint8_t offset, uint8_t *dst);
void fn_s8_dequantize_avx512(const int32_t *tile, int mr, int nr, const float *x_scale, const float *w_scale,
                             const float *bias, float *y, int64_t ldy);
#endif
#ifdef FN_HAVE_AMX_INTRIN
extern const fn_s8_arch fn_s8_arch_amx;
#endif
const fn_s8_arch *fn_s8_arch_current(void);

fn_status fn_s8_run(const fn_s8_arch *arch, int64_t m, int64_t n, int64_t kpad, const uint8_t *a,
                    const int8_t *b, const int32_t *colsum, fn_s8_finish finish, void *ctx, int n_threads);
float fn_s8_quantize_row(const float *x, int64_t k, int64_t kpad, uint8_t offset, uint8_t *dst);

#endif /* FN_INT8_INTERNAL_H */
