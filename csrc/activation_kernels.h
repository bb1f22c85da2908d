/* activation_kernels.h - the elementwise kernels of every activation in
 * FN_ACTIVATIONS, and the table of them, for one CPU path and dtype.
 *
 * A template: activations.c includes it once per scalar type (REAL, SUFFIX:
 * the portable path, float32 and float64) and once per vector instruction
 * set (FN_SIMD_ISA, FN_SIMD_TARGET: AVX2 and AVX-512, float32), through
 * activation_instances.h as activation_math.h is. It defines the table
 * act_kernels_<SUFFIX or FN_SIMD_ISA>[FN_ACT_COUNT] and, for float32, the
 * dense layer's GEMM epilogues act_epilogues_<f32 or FN_SIMD_ISA>.
 *
 * Vector loops end with a masked partial vector, never a scalar tail, so
 * every element goes through the same arithmetic wherever a thread's range
 * starts: results do not depend on n_threads.
 */
#ifdef FN_SIMD_ISA
#define KN(name) FN_ACT_CAT(name, FN_SIMD_ISA)
#define KTARGET FN_SIMD_TARGET
#define ELEM float
#define VAL FN_V(vec)
#define KERNELS fn_act_kernels_f32
#define VF(op) FN_V(op)
#define LANES FN_V(lanes)

/* y = F(x, p) over n floats */
#define MAP_KERNEL(NAME, F)                                                                \
    FN_SIMD_TARGET static void NAME(const float *x, float *y, int64_t n, float p) {                \
        VAL vp = VF(set1)(p);                                                              \
        int64_t i = 0;                                                                     \
        for (; i + LANES <= n; i += LANES) VF(store)(y + i, F(VF(load)(x + i), vp));       \
        if (i < n) {                                                                       \
            FN_V(mask) t = VF(tail)(n - i);                                \
            VF(store_mask)(y + i, t, F(VF(load_mask)(x + i, t), vp));                      \
        }                                                                                  \
    }
/* dx = G(a, dy, p) over n floats */
#define ZIP_KERNEL(NAME, G)                                                                \
    FN_SIMD_TARGET static void NAME(const float *a, const float *dy, float *dx, int64_t n, float p) { \
        VAL vp = VF(set1)(p);                                                              \
        int64_t i = 0;                                                                     \
        for (; i + LANES <= n; i += LANES)                                                 \
            VF(store)(dx + i, G(VF(load)(a + i), VF(load)(dy + i), vp));                   \
        if (i < n) {                                                                       \
            FN_V(mask) t = VF(tail)(n - i);                                \
            VF(store_mask)(dx + i, t, G(VF(load_mask)(a + i, t), VF(load_mask)(dy + i, t), vp)); \
        }                                                                                  \
    }

/* The dense epilogue (gemm_internal.h) of one activation: bias, a copy of
 * the pre-activation, then F, on rows x cols of C; the last columns go
 * through a masked vector, so every element sees the same math. Full vectors
 * use plain loads and stores (a masked store does not forward to a later
 * load). */
#define EPILOGUE(NAME, F)                                                                  \
    FN_SIMD_TARGET static void NAME(float *c, int64_t ldc, int64_t rows, int64_t cols,     \
                                    int64_t i0, int64_t j0, const fn_epilogue_f32 *epi) {  \
        VAL vp = VF(set1)(epi->act_param);                                                 \
        for (int64_t r = 0; r < rows; ++r) {                                               \
            float *row = c + r * ldc;                                                      \
            float *pre = epi->pre ? epi->pre + (i0 + r) * epi->ldpre + j0 : NULL;          \
            const float *bias = epi->bias ? epi->bias + j0 : NULL;                         \
            int64_t j = 0;                                                                 \
            for (; j + LANES <= cols; j += LANES) {                                        \
                VAL z = VF(load)(row + j);                                                 \
                if (bias) z = VF(add)(z, VF(load)(bias + j));                              \
                if (pre) VF(store)(pre + j, z);                                            \
                VF(store)(row + j, F(z, vp));                                              \
            }                                                                              \
            if (j < cols) {                                                                \
                FN_V(mask) t = VF(tail)(cols - j);                                         \
                VAL z = VF(load_mask)(row + j, t);                                         \
                if (bias) z = VF(add)(z, VF(load_mask)(bias + j, t));                      \
                if (pre) VF(store_mask)(pre + j, t, z);                                    \
                VF(store_mask)(row + j, t, F(z, vp));                                      \
            }                                                                              \
        }                                                                                  \
    }

#else /* scalar */
#define KN(name) FN_ACT_CAT(name, SUFFIX)
#define KTARGET
#define ELEM REAL
#define VAL REAL
#define KERNELS FN_ACT_CAT(fn_act_kernels, SUFFIX)

#define MAP_KERNEL(NAME, F)                                                                \
    static void NAME(const REAL *x, REAL *y, int64_t n, REAL p) {                          \
        for (int64_t i = 0; i < n; i++) y[i] = F(x[i], p);                                 \
    }
#define ZIP_KERNEL(NAME, G)                                                                \
    static void NAME(const REAL *a, const REAL *dy, REAL *dx, int64_t n, REAL p) {         \
        for (int64_t i = 0; i < n; i++) dx[i] = G(a[i], dy[i], p);                         \
    }
#ifdef REAL_IS_FLOAT
#define EPILOGUE(NAME, F)                                                                  \
    static void NAME(float *c, int64_t ldc, int64_t rows, int64_t cols, int64_t i0,        \
                     int64_t j0, const fn_epilogue_f32 *epi) {                             \
        float p = epi->act_param;                                                          \
        for (int64_t r = 0; r < rows; ++r) {                                               \
            float *row = c + r * ldc;                                                      \
            float *pre = epi->pre ? epi->pre + (i0 + r) * epi->ldpre + j0 : NULL;          \
            const float *bias = epi->bias ? epi->bias + j0 : NULL;                         \
            for (int64_t j = 0; j < cols; ++j) {                                           \
                float z = bias ? row[j] + bias[j] : row[j];                                \
                if (pre) pre[j] = z;                                                       \
                row[j] = F(z, p);                                                          \
            }                                                                              \
        }                                                                                  \
    }
#endif
#endif

/* GRAD DY: dx = dy, a copy (nothing written when dx is dy). */
static void KN(copy_dy)(const ELEM *a, const ELEM *dy, ELEM *dx, int64_t n, ELEM p) {
    (void)a;
    (void)p;
    if (dx != dy) memmove(dx, dy, (size_t)n * sizeof(ELEM));
}

/* The backward kernels a GRAD kind needs: X and SIGN read one tensor, Y
 * reads y or recomputes it from x, DY and UNDEFINED need none of their own. */
#define BACKWARD_KERNELS_DY(name)
#define BACKWARD_KERNELS_UNDEFINED(name)
#define BACKWARD_KERNELS_X(name) ZIP_KERNEL(KN(backward_##name), KN(fn_act_##name##_grad))
#define BACKWARD_KERNELS_SIGN(name) BACKWARD_KERNELS_X(name)
#define BACKWARD_KERNELS_Y(name)                                                           \
    BACKWARD_KERNELS_X(name)                                                               \
    KTARGET static inline VAL KN(grad_from_x_##name)(VAL x, VAL dy, VAL p) {               \
        return KN(fn_act_##name##_grad)(KN(fn_act_##name)(x, p), dy, p);                   \
    }                                                                                      \
    ZIP_KERNEL(KN(backward_from_x_##name), KN(grad_from_x_##name))

#define ACT_KERNELS(ENUM, name, GRAD, COST, PARAM, DOC)                                    \
    MAP_KERNEL(KN(forward_##name), KN(fn_act_##name))                                      \
    BACKWARD_KERNELS_##GRAD(name)
FN_ACTIVATIONS(ACT_KERNELS)

#define TABLE_ENTRY_DY(name) {KN(forward_##name), KN(copy_dy), NULL}
#define TABLE_ENTRY_UNDEFINED(name) {KN(forward_##name), NULL, NULL}
#define TABLE_ENTRY_X(name) {KN(forward_##name), KN(backward_##name), NULL}
#define TABLE_ENTRY_SIGN(name) TABLE_ENTRY_X(name)
#define TABLE_ENTRY_Y(name) {KN(forward_##name), KN(backward_##name), KN(backward_from_x_##name)}
#define ACT_TABLE_ENTRY(ENUM, name, GRAD, COST, PARAM, DOC) [FN_ACT_##ENUM] = TABLE_ENTRY_##GRAD(name),

static const KERNELS KN(act_kernels)[FN_ACT_COUNT] = {FN_ACTIVATIONS(ACT_TABLE_ENTRY)};

#ifdef EPILOGUE
#define ACT_EPILOGUE(ENUM, name, GRAD, COST, PARAM, DOC) EPILOGUE(KN(epilogue_##name), KN(fn_act_##name))
FN_ACTIVATIONS(ACT_EPILOGUE)
#define ACT_EPILOGUE_ENTRY(ENUM, name, GRAD, COST, PARAM, DOC) [FN_ACT_##ENUM] = KN(epilogue_##name),
static const fn_sgemm_epilogue KN(act_epilogues)[FN_ACT_COUNT] = {FN_ACTIVATIONS(ACT_EPILOGUE_ENTRY)};
#undef ACT_EPILOGUE
#undef ACT_EPILOGUE_ENTRY
#undef EPILOGUE
#endif

#undef ACT_TABLE_ENTRY
#undef TABLE_ENTRY_DY
#undef TABLE_ENTRY_UNDEFINED
#undef TABLE_ENTRY_X
#undef TABLE_ENTRY_SIGN
#undef TABLE_ENTRY_Y
#undef ACT_KERNELS
#undef BACKWARD_KERNELS_DY
#undef BACKWARD_KERNELS_UNDEFINED
#undef BACKWARD_KERNELS_X
#undef BACKWARD_KERNELS_SIGN
#undef BACKWARD_KERNELS_Y
#undef MAP_KERNEL
#undef ZIP_KERNEL
#undef KN
#undef KTARGET
#undef ELEM
#undef VAL
#undef KERNELS
#ifdef FN_SIMD_ISA
#undef VF
#undef LANES
#endif
