/* activation_math.h - the math of every activation in activations.h, written
 * once: a scalar section and a vector section.
 *
 * A template (no include guard): elementwise_internal.h includes it once per
 * scalar type and once per vector instruction set.
 *   scalar:  REAL (float or double), SUFFIX (f32 or f64), UINT (an unsigned
 *            integer as wide as REAL), EXP, TANH and FABS for REAL.
 *   vector:  FN_SIMD_ISA (avx2 or avx512) and FN_SIMD_TARGET (its function
 *            attribute), with the vector operations FN_V(op) of simd.h.
 * Each activation `name` of the table gets
 *   fn_act_<name>_<sfx>(x, p)            its value at x (p = act_param)
 *   fn_act_<name>_grad_<sfx>(a, dy, p)   dy * its derivative, from a = x, y
 *                                        or either (the GRAD column)
 * where <sfx> is SUFFIX or FN_SIMD_ISA. The scalar functions serve the portable path
 * and float64, the vector ones the AVX2 / AVX-512 float32 paths; a GRAD Y
 * activation's derivative from x is fn_act_<name>_grad(fn_act_<name>(x)).
 *
 * The scalar and vector formulas of an activation differ on purpose (libm
 * exp and tanh against our vector exp and tanh, a division placed
 * differently), so a CPU path gives the same bits wherever the same kernel
 * runs (elementwise, fused into the dense layer, any thread count), not the
 * same bits as another path.
 *
 * sigmoid: with e = exp(-|x|), 1 / (1 + e) for x >= 0 and e / (1 + e)
 * below: no overflow for large |x|. The scalar numerator is picked with a
 * bit mask, not a branch: random signs would mispredict half the time.
 *
 * GELU is the tanh approximation 0.5 x (1 + tanh(u)), u = sqrt(2/pi)(x +
 * 0.044715 x^3), evaluated as x * sigmoid(2u): the same function (since
 * 0.5 (1 + tanh(u)) == sigmoid(2u)) without the cancellation of 1 + tanh(u)
 * for negative x. Its derivative is s + 2 x s (1 - s) u'(x), s = sigmoid(2u),
 * with s (1 - s) from fn_sigmoid_and_slope.
 */
#define FN_ACT_CAT2(a, b) a##_##b
#define FN_ACT_CAT(a, b) FN_ACT_CAT2(a, b)

#ifdef REAL /* ---- scalar ------------------------------------------------- */
#define SN(name) FN_ACT_CAT(name, SUFFIX)

static inline REAL SN(fn_select)(int pick_a, REAL a, REAL b) {
    UINT ua, ub, mask = (UINT)0 - (UINT)(pick_a != 0);
    memcpy(&ua, &a, sizeof ua);
    memcpy(&ub, &b, sizeof ub);
    ua = (ua & mask) | (ub & ~mask);
    memcpy(&a, &ua, sizeof a);
    return a;
}
static inline REAL SN(fn_sigmoid)(REAL x) {
    REAL e = EXP(-FABS(x));
    return SN(fn_select)(x >= 0, (REAL)1, e) / ((REAL)1 + e);
}
static inline REAL SN(fn_gelu)(REAL x) {
    REAL u = (REAL)FN_GELU_C * (x + (REAL)FN_GELU_K * x * x * x);
    return x * SN(fn_sigmoid)((REAL)2 * u);
}
/* sigmoid(a) and its slope sigmoid(a) (1 - sigmoid(a)) = e / (1 + e)^2,
 * e = exp(-|a|): no 1 - s that cancels when s is close to 1. */
static inline REAL SN(fn_sigmoid_and_slope)(REAL a, REAL *slope) {
    REAL e = EXP(-FABS(a));
    REAL d = (REAL)1 / ((REAL)1 + e);
    *slope = e * d * d;
    return SN(fn_select)(a >= 0, (REAL)1, e) * d;
}
static inline REAL SN(fn_gelu_grad)(REAL x) {
    REAL x2 = x * x;
    REAL a = (REAL)2 * (REAL)FN_GELU_C * (x + (REAL)FN_GELU_K * x2 * x);
    REAL du = (REAL)FN_GELU_C * ((REAL)1 + (REAL)3 * (REAL)FN_GELU_K * x2);
    REAL slope, s = SN(fn_sigmoid_and_slope)(a, &slope);
    return s + (REAL)2 * x * slope * du;
}

static inline REAL SN(fn_act_identity)(REAL x, REAL p) { (void)p; return x; }
static inline REAL SN(fn_act_identity_grad)(REAL a, REAL dy, REAL p) { (void)a; (void)p; return dy; }

static inline REAL SN(fn_act_step)(REAL x, REAL p) { (void)p; return x > 0 ? (REAL)1 : (REAL)0; }

static inline REAL SN(fn_act_sigmoid)(REAL x, REAL p) { (void)p; return SN(fn_sigmoid)(x); }
static inline REAL SN(fn_act_sigmoid_grad)(REAL y, REAL dy, REAL p) { (void)p; return dy * (y * (1 - y)); }

static inline REAL SN(fn_act_tanh)(REAL x, REAL p) { (void)p; return TANH(x); }
static inline REAL SN(fn_act_tanh_grad)(REAL y, REAL dy, REAL p) { (void)p; return dy * (1 - y * y); }

/* x < 0 ? 0 : x lets NaN through */
static inline REAL SN(fn_act_relu)(REAL x, REAL p) { (void)p; return x < 0 ? (REAL)0 : x; }
static inline REAL SN(fn_act_relu_grad)(REAL a, REAL dy, REAL p) { (void)p; return a > 0 ? dy : (REAL)0; }

static inline REAL SN(fn_act_leaky_relu)(REAL x, REAL p) { return x > 0 ? x : p * x; }
static inline REAL SN(fn_act_leaky_relu_grad)(REAL a, REAL dy, REAL p) { return a > 0 ? dy : p * dy; }

static inline REAL SN(fn_act_gelu)(REAL x, REAL p) { (void)p; return SN(fn_gelu)(x); }
static inline REAL SN(fn_act_gelu_grad)(REAL x, REAL dy, REAL p) { (void)p; return dy * SN(fn_gelu_grad)(x); }

/* SiLU: x s, s = sigmoid(x); derivative s + x s (1 - s) */
static inline REAL SN(fn_act_silu)(REAL x, REAL p) { (void)p; return x * SN(fn_sigmoid)(x); }
static inline REAL SN(fn_act_silu_grad)(REAL x, REAL dy, REAL p) {
    (void)p;
    REAL slope, s = SN(fn_sigmoid_and_slope)(x, &slope);
    return dy * (s + x * slope);
}

#undef SN
#endif /* REAL */

#ifdef FN_SIMD_ISA /* ---- vector (float32) --------------------------------- */
#define VN(name) FN_ACT_CAT(name, FN_SIMD_ISA)
#define VF(op) FN_V(op)
#define VEC FN_V(vec)
#define TARGET FN_SIMD_TARGET

TARGET static inline VEC VN(fn_sigmoid)(VEC x) {
    VEC one = VF(set1)(1.0f);
    VEC e = VF(exp)(VF(neg_abs)(x));
    VEC s = VF(div)(one, VF(add)(one, e));
    return VF(select)(VF(lt)(x, VF(zero)()), VF(mul)(e, s), s);
}

/* tanh: the polynomial of elementwise_internal.h below |x| = 0.5; above,
 * (1 - e) / (1 + e) with e = exp(-2|x|) <= exp(-1): no cancellation. */
TARGET static inline VEC VN(fn_tanh)(VEC x) {
    VEC a = VF(abs)(x), one = VF(set1)(1.0f);
    VEC e = VF(exp)(VF(mul)(a, VF(set1)(-2.0f)));
    VEC big = VF(div)(VF(sub)(one, e), VF(add)(one, e));
    VEC a2 = VF(mul)(a, a);
    VEC q = VF(fma)(VF(set1)(FN_TANH_T3), a2, VF(set1)(FN_TANH_T2));
    q = VF(fma)(q, a2, VF(set1)(FN_TANH_T1));
    q = VF(fma)(q, a2, VF(set1)(FN_TANH_T0));
    VEC small = VF(fma)(VF(mul)(q, a2), a, a);
    return VF(with_sign_of)(VF(select)(VF(lt)(a, VF(set1)(FN_TANH_SMALL)), small, big), x);
}

/* 2u = 2 sqrt(2/pi) (x + 0.044715 x^3) */
TARGET static inline VEC VN(fn_gelu_2u)(VEC x, VEC x2) {
    VEC inner = VF(fma)(VF(mul)(VF(set1)((float)FN_GELU_K), x2), x, x);
    return VF(mul)(VF(set1)((float)(2.0 * FN_GELU_C)), inner);
}
TARGET static inline VEC VN(fn_gelu)(VEC x) {
    return VF(mul)(x, VN(fn_sigmoid)(VN(fn_gelu_2u)(x, VF(mul)(x, x))));
}
/* sigmoid(a) and its slope e / (1 + e)^2, e = exp(-|a|) */
TARGET static inline VEC VN(fn_sigmoid_and_slope)(VEC a, VEC *slope) {
    VEC one = VF(set1)(1.0f);
    VEC e = VF(exp)(VF(neg_abs)(a));
    VEC d = VF(div)(one, VF(add)(one, e));
    *slope = VF(mul)(VF(mul)(e, d), d);
    return VF(select)(VF(lt)(a, VF(zero)()), VF(mul)(e, d), d);
}
TARGET static inline VEC VN(fn_gelu_grad)(VEC x) {
    VEC x2 = VF(mul)(x, x);
    VEC slope, s = VN(fn_sigmoid_and_slope)(VN(fn_gelu_2u)(x, x2), &slope);
    /* 2 du/dx = 2 sqrt(2/pi) (1 + 3 * 0.044715 x^2) */
    VEC du2 = VF(mul)(VF(set1)((float)(2.0 * FN_GELU_C)), VF(fma)(VF(set1)((float)(3.0 * FN_GELU_K)), x2, VF(set1)(1.0f)));
    return VF(fma)(VF(mul)(x, slope), du2, s);
}

TARGET static inline VEC VN(fn_act_identity)(VEC x, VEC p) { (void)p; return x; }
TARGET static inline VEC VN(fn_act_identity_grad)(VEC a, VEC dy, VEC p) { (void)a; (void)p; return dy; }

TARGET static inline VEC VN(fn_act_step)(VEC x, VEC p) {
    (void)p;
    return VF(keep)(VF(gt)(x, VF(zero)()), VF(set1)(1.0f));
}

TARGET static inline VEC VN(fn_act_sigmoid)(VEC x, VEC p) { (void)p; return VN(fn_sigmoid)(x); }
TARGET static inline VEC VN(fn_act_sigmoid_grad)(VEC y, VEC dy, VEC p) {
    (void)p;
    return VF(mul)(dy, VF(mul)(y, VF(sub)(VF(set1)(1.0f), y)));
}

TARGET static inline VEC VN(fn_act_tanh)(VEC x, VEC p) { (void)p; return VN(fn_tanh)(x); }
TARGET static inline VEC VN(fn_act_tanh_grad)(VEC y, VEC dy, VEC p) {
    (void)p;
    return VF(mul)(dy, VF(sub)(VF(set1)(1.0f), VF(mul)(y, y)));
}

/* max(0, x): the second operand wins on NaN, so NaN passes through */
TARGET static inline VEC VN(fn_act_relu)(VEC x, VEC p) { (void)p; return VF(max)(VF(zero)(), x); }
TARGET static inline VEC VN(fn_act_relu_grad)(VEC a, VEC dy, VEC p) {
    (void)p;
    return VF(keep)(VF(gt)(a, VF(zero)()), dy);
}

TARGET static inline VEC VN(fn_act_leaky_relu)(VEC x, VEC p) {
    return VF(select)(VF(gt)(x, VF(zero)()), x, VF(mul)(p, x));
}
TARGET static inline VEC VN(fn_act_leaky_relu_grad)(VEC a, VEC dy, VEC p) {
    return VF(select)(VF(gt)(a, VF(zero)()), dy, VF(mul)(p, dy));
}

TARGET static inline VEC VN(fn_act_gelu)(VEC x, VEC p) { (void)p; return VN(fn_gelu)(x); }
TARGET static inline VEC VN(fn_act_gelu_grad)(VEC x, VEC dy, VEC p) { (void)p; return VF(mul)(dy, VN(fn_gelu_grad)(x)); }

TARGET static inline VEC VN(fn_act_silu)(VEC x, VEC p) { (void)p; return VF(mul)(x, VN(fn_sigmoid)(x)); }
TARGET static inline VEC VN(fn_act_silu_grad)(VEC x, VEC dy, VEC p) {
    (void)p;
    VEC slope, s = VN(fn_sigmoid_and_slope)(x, &slope);
    return VF(mul)(dy, VF(fma)(x, slope, s));
}

#undef VEC
#undef VF
#undef VN
#undef TARGET
#endif /* FN_SIMD_ISA */
