/* gemm_kernel.h - the float32 sgemm micro-kernel, written once over the
 * vector mapping of simd.h.
 *
 * A template: gemm_avx2.c and gemm_avx512.c include it after defining
 *   FN_SIMD_ISA, FN_SIMD_TARGET   the ISA (avx2, avx512) and its attribute
 *   GEMM_MR                       rows of the register tile (6, 12)
 *   GEMM_PREFETCH_C               1: touch the C tile before the k loop
 *   GEMM_ROW_UNROLL               unroll count forced on the row loops, or 0
 *                                 to leave it to the compiler (what measured
 *                                 fastest for each width)
 * and get a static `kernel_<isa>` of type fn_sgemm_kernel. The tile is
 * GEMM_MR rows x two vectors (NR = 2 * lanes): per k step two loads of B and
 * mr broadcasts of A feed 2 * mr FMAs into register accumulators.
 *
 * Every element of C sums its k terms in order p = 0..kc-1 with one FMA each,
 * whatever mr and nr are and whichever ISA runs, so edge tiles and full ones
 * give the same bits for the same inputs on one path.
 */
#define GEMM_CAT2(a, b) a##_##b
#define GEMM_CAT(a, b) GEMM_CAT2(a, b)
#define GEMM(name) GEMM_CAT(name, FN_SIMD_ISA)
#define GEMM_W FN_V(lanes)
#define GEMM_NR (2 * FN_V(lanes))
/* The unroll hint of the row loops (GCC and clang spell it the same; other
 * compilers get none). */
#define GEMM_PRAGMA(x) _Pragma(#x)
#define GEMM_UNROLL(n) GEMM_PRAGMA(GCC unroll n)
#if (defined(__GNUC__) || defined(__clang__)) && GEMM_ROW_UNROLL
#define GEMM_ROW_LOOP_HINT GEMM_UNROLL(GEMM_ROW_UNROLL)
#else
#define GEMM_ROW_LOOP_HINT
#endif

/* C[0:mr, 0:nr] = alpha * A B + beta * C on one tile; mr is a constant at
 * every call site (the switch below), so the loops over rows unroll. */
static FN_ALWAYS_INLINE FN_SIMD_TARGET void
GEMM(tile)(const int mr, int nr, int64_t kc, const float *a, int64_t rsa, int64_t csa,
           const float *b, int64_t rsb, float *c, int64_t ldc, float alpha, float beta) {
    FN_V(vec) acc[GEMM_MR][2];
    for (int i = 0; i < GEMM_MR; ++i) acc[i][0] = acc[i][1] = FN_V(zero)();
#if GEMM_PREFETCH_C
    for (int i = 0; i < mr; ++i) {
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * ldc + GEMM_NR - 1), _MM_HINT_T0);
    }
#endif
#pragma GCC unroll 4
    for (int64_t p = 0; p < kc; ++p) {
        FN_V(vec) b0 = FN_V(load)(b + p * rsb);
        FN_V(vec) b1 = FN_V(load)(b + p * rsb + GEMM_W);
        const float *ap = a + p * csa;
        GEMM_ROW_LOOP_HINT
        for (int i = 0; i < mr; ++i) {
            FN_V(vec) ai = FN_V(broadcast)(ap + i * rsa);
            acc[i][0] = FN_V(fma)(ai, b0, acc[i][0]);
            acc[i][1] = FN_V(fma)(ai, b1, acc[i][1]);
        }
    }
    FN_V(vec) va = FN_V(set1)(alpha), vb = FN_V(set1)(beta);
    /* Edge columns through lane masks: every path stays branch-free per row,
     * which lets the compiler keep acc[][] in registers. */
    FN_V(mask) m0 = FN_V(tail)(nr), m1 = FN_V(tail)(nr - GEMM_W);
    GEMM_ROW_LOOP_HINT
    for (int i = 0; i < mr; ++i) {
        float *ci = c + i * ldc;
        FN_V(vec) r0 = FN_V(mul)(va, acc[i][0]), r1 = FN_V(mul)(va, acc[i][1]);
        if (nr == GEMM_NR) { /* plain stores: they forward to the epilogue's loads, masked ones do not */
            if (beta != 0.0f) {
                r0 = FN_V(fma)(vb, FN_V(load)(ci), r0);
                r1 = FN_V(fma)(vb, FN_V(load)(ci + GEMM_W), r1);
            }
            FN_V(store)(ci, r0);
            FN_V(store)(ci + GEMM_W, r1);
            continue;
        }
        if (beta != 0.0f) {
            r0 = FN_V(fma)(vb, FN_V(load_mask)(ci, m0), r0);
            r1 = FN_V(fma)(vb, FN_V(load_mask)(ci + GEMM_W, m1), r1);
        }
        FN_V(store_mask)(ci, m0, r0);
        FN_V(store_mask)(ci + GEMM_W, m1, r1);
    }
}

static FN_SIMD_TARGET void GEMM(kernel)(int mr, int nr, int64_t kc, const float *a, int64_t rsa,
                                        int64_t csa, const float *b, int64_t rsb, float *c,
                                        int64_t ldc, float alpha, float beta) {
    if (mr == GEMM_MR && rsa == 1 && csa == GEMM_MR && rsb == GEMM_NR) {
        /* Packed operands: constant strides free the index registers. */
        GEMM(tile)(GEMM_MR, nr, kc, a, 1, GEMM_MR, b, GEMM_NR, c, ldc, alpha, beta);
        return;
    }
#define GEMM_TILE(m) GEMM(tile)(m, nr, kc, a, rsa, csa, b, rsb, c, ldc, alpha, beta)
    switch (mr) {
#if GEMM_MR >= 12
        FN_GEMM_ROWS_12_TO_7(GEMM_TILE)
#endif
        FN_GEMM_ROWS_6_TO_1(GEMM_TILE)
    }
#undef GEMM_TILE
}

#undef GEMM_CAT2
#undef GEMM_CAT
#undef GEMM
#undef GEMM_W
#undef GEMM_NR
#undef GEMM_MR
#undef GEMM_PREFETCH_C
#undef GEMM_ROW_UNROLL
#undef GEMM_PRAGMA
#undef GEMM_UNROLL
#undef GEMM_ROW_LOOP_HINT
#undef FN_SIMD_ISA
#undef FN_SIMD_TARGET
