/* activations.h - the activation family as one table (part of the public
 * API: fastnet.h includes it).
 *
 * Each line of FN_ACTIVATIONS is one activation:
 *   ROW(ENUM, name, GRAD, COST, PARAM, "doc")
 *   ENUM   FN_ACT_<ENUM> in fn_activation (the line's position is its value,
 *          so new activations go at the end: saved codes keep their meaning)
 *   name   its name in Python and the suffix of its math in activation_math.h
 *   GRAD   what its derivative is computed from (fn_act_grad without the
 *          FN_ACT_GRAD_ prefix): X the input, Y the output (or the input,
 *          recomputing the output), SIGN the sign of the input (which the
 *          output shares unless a negative act_param flips it), DY nothing
 *          (dx = dy), UNDEFINED no useful gradient
 *   COST   CHEAP (runs at memory speed) or COSTLY (a transcendental): how many
 *          elements a thread must get before another one is worth waking
 *   PARAM  1 when act_param means something (leaky_relu's slope for x < 0)
 *   doc    one line for the Python docstring
 * The kernels (activations.c), the dense layer (dense.c), the GEMM epilogues
 * and the Python registry (fastnet.ops.activation_info) are all generated
 * from this list; the math itself is in activation_math.h.
 */
#ifndef FN_ACTIVATIONS_H
#define FN_ACTIVATIONS_H

#ifdef __cplusplus
extern "C" {
#endif

#define FN_ACTIVATIONS(ROW)                                                                                                         \
    ROW(IDENTITY,   identity,   DY,        CHEAP,  0, "The identity: y = x.")                                                       \
    ROW(STEP,       step,       UNDEFINED, CHEAP,  0, "The perceptron's step: 1 where x > 0, else 0.")                              \
    ROW(SIGMOID,    sigmoid,    Y,         COSTLY, 0, "The logistic sigmoid: 1 / (1 + exp(-x)).")                                   \
    ROW(TANH,       tanh,       Y,         COSTLY, 0, "The hyperbolic tangent.")                                                    \
    ROW(RELU,       relu,       SIGN,      CHEAP,  0, "ReLU: max(x, 0); NaN stays NaN.")                                            \
    ROW(LEAKY_RELU, leaky_relu, SIGN,      CHEAP,  1, "Leaky ReLU: x where x > 0, else alpha * x.")                                 \
    ROW(GELU,       gelu,       X,         COSTLY, 0, "GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).") \
    ROW(SILU,       silu,       X,         COSTLY, 0, "SiLU (swish): x * sigmoid(x).")

typedef enum {
#define FN_ACT_ENUM_(ENUM, name, GRAD, COST, PARAM, DOC) FN_ACT_##ENUM,
    FN_ACTIVATIONS(FN_ACT_ENUM_)
#undef FN_ACT_ENUM_
    FN_ACT_COUNT
} fn_activation;

/* What an activation's derivative is computed from (the GRAD column). */
typedef enum {
    FN_ACT_GRAD_DY = 0,       /* nothing but dy: dx = dy */
    FN_ACT_GRAD_X = 1,        /* the input x */
    FN_ACT_GRAD_Y = 2,        /* the output y, or x (the output is then recomputed) */
    FN_ACT_GRAD_SIGN = 3,     /* the sign of x, or of y when act_param >= 0 (or unused) */
    FN_ACT_GRAD_UNDEFINED = 4 /* no useful gradient (step) */
} fn_act_grad;

typedef struct {
    const char *name;
    fn_act_grad grad;
    int has_param; /* act_param is read */
    const char *doc;
} fn_activation_info_t;

/* The table row of act, or NULL when act is not in [0, FN_ACT_COUNT). */
const fn_activation_info_t *fn_activation_info(fn_activation act);

/* Which tensor the backward of act reads, given which ones the caller has:
 * 'x', 'y', 'd' (dy only), or 0 when it cannot run (no gradient, unknown
 * act, or the tensor it needs is missing). Prefers the cheaper one when both
 * are given. The one place this rule is written. */
int fn_activation_backward_reads(fn_activation act, double act_param, int have_x, int have_y);

#ifdef __cplusplus
}
#endif
#endif /* FN_ACTIVATIONS_H */
