/* row_kernels.h - the float32 row primitives of softmax and cross-entropy
 * (fn_row_ops_f32_t, elementwise_internal.h) for one vector instruction set.
 *
 * A template: activations.c includes it once per ISA with FN_SIMD_ISA and
 * FN_SIMD_TARGET set (simd.h's vocabulary) and ROW_EXP_CHAINS, the number of
 * independent exp chains row_exp_sum keeps in flight (AVX-512 needs two to
 * keep both FMA ports busy). The portable versions are in activations.c.
 * Every loop ends with a masked partial vector.
 */
#define RN(name) FN_ACT_CAT(name, FN_SIMD_ISA)
#define VEC FN_V(vec)
#define LANES FN_V(lanes)

FN_SIMD_TARGET static float RN(row_max)(const float *x, int64_t n) {
    VEC m = FN_V(set1)(-INFINITY);
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES) m = FN_V(max)(m, FN_V(load)(x + i));
    if (i < n) {
        FN_V(mask) t = FN_V(tail)(n - i);
        m = FN_V(select)(t, FN_V(max)(m, FN_V(load_mask)(x + i, t)), m);
    }
    return FN_V(hmax)(m);
}

/* sum of exp(x - shift); also stores the exps in out unless out is NULL */
FN_SIMD_TARGET static float RN(row_exp_sum)(const float *x, float shift, float *out, int64_t n) {
    VEC acc = FN_V(zero)(), sh = FN_V(set1)(shift);
    int64_t i = 0;
    if (ROW_EXP_CHAINS == 2) {
        VEC acc2 = FN_V(zero)();
        for (; i + 2 * LANES <= n; i += 2 * LANES) {
            VEC e = FN_V(exp)(FN_V(sub)(FN_V(load)(x + i), sh));
            VEC e2 = FN_V(exp)(FN_V(sub)(FN_V(load)(x + i + LANES), sh));
            if (out) {
                FN_V(store)(out + i, e);
                FN_V(store)(out + i + LANES, e2);
            }
            acc = FN_V(add)(acc, e);
            acc2 = FN_V(add)(acc2, e2);
        }
        acc = FN_V(add)(acc, acc2);
    }
    for (; i + LANES <= n; i += LANES) {
        VEC e = FN_V(exp)(FN_V(sub)(FN_V(load)(x + i), sh));
        if (out) FN_V(store)(out + i, e);
        acc = FN_V(add)(acc, e);
    }
    if (i < n) {
        FN_V(mask) t = FN_V(tail)(n - i);
        VEC e = FN_V(keep)(t, FN_V(exp)(FN_V(sub)(FN_V(load_mask)(x + i, t), sh)));
        if (out) FN_V(store_mask)(out + i, t, e);
        acc = FN_V(add)(acc, e);
    }
    return FN_V(hsum)(acc);
}

FN_SIMD_TARGET static float RN(row_sum)(const float *x, int64_t n) {
    VEC acc = FN_V(zero)();
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES) acc = FN_V(add)(acc, FN_V(load)(x + i));
    if (i < n) acc = FN_V(add)(acc, FN_V(load_mask)(x + i, FN_V(tail)(n - i)));
    return FN_V(hsum)(acc);
}

/* y = a x + b */
FN_SIMD_TARGET static void RN(row_affine)(const float *x, float a, float b, float *y, int64_t n) {
    VEC va = FN_V(set1)(a), vb = FN_V(set1)(b);
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES) FN_V(store)(y + i, FN_V(fma)(va, FN_V(load)(x + i), vb));
    if (i < n) {
        FN_V(mask) t = FN_V(tail)(n - i);
        FN_V(store_mask)(y + i, t, FN_V(fma)(va, FN_V(load_mask)(x + i, t), vb));
    }
}

FN_SIMD_TARGET static float RN(row_dot)(const float *a, const float *b, int64_t n) {
    VEC acc = FN_V(zero)();
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES) acc = FN_V(fma)(FN_V(load)(a + i), FN_V(load)(b + i), acc);
    if (i < n) {
        FN_V(mask) t = FN_V(tail)(n - i);
        acc = FN_V(fma)(FN_V(load_mask)(a + i, t), FN_V(load_mask)(b + i, t), acc);
    }
    return FN_V(hsum)(acc);
}

/* dx = y (dy - dot) */
FN_SIMD_TARGET static void RN(row_softmax_grad)(const float *y, const float *dy, float dot, float *dx, int64_t n) {
    VEC d = FN_V(set1)(dot);
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        FN_V(store)(dx + i, FN_V(mul)(FN_V(load)(y + i), FN_V(sub)(FN_V(load)(dy + i), d)));
    if (i < n) {
        FN_V(mask) t = FN_V(tail)(n - i);
        FN_V(store_mask)(dx + i, t, FN_V(mul)(FN_V(load_mask)(y + i, t), FN_V(sub)(FN_V(load_mask)(dy + i, t), d)));
    }
}

#undef RN
#undef VEC
#undef LANES
