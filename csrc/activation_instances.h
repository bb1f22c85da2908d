/* activation_instances.h - includes the template named by ACT_TEMPLATE
 * (activation_math.h or activation_kernels.h) once per scalar type (float,
 * double: the portable path) and, on x86-64, once per vector instruction
 * set (AVX2, AVX-512), with the definitions those templates read.
 * No include guard: included once per template.
 */
#define UINT uint32_t
#define REAL float
#define SUFFIX f32
#define EXP expf
#define TANH tanhf
#define FABS fabsf
#include ACT_TEMPLATE

#undef UINT
#define UINT uint64_t
#undef REAL
#define REAL double
#undef SUFFIX
#define SUFFIX f64
#undef EXP
#define EXP exp
#undef TANH
#define TANH tanh
#undef FABS
#define FABS fabs
#include ACT_TEMPLATE
#undef UINT
#undef REAL
#undef SUFFIX
#undef EXP
#undef TANH
#undef FABS

#if defined(__x86_64__) || defined(_M_X64)
#define ISA avx2
#define TARGET FN_TARGET_AVX2
#include ACT_TEMPLATE
#undef ISA
#undef TARGET

#define ISA avx512
#define TARGET FN_TARGET_AVX512
#include ACT_TEMPLATE
#undef ISA
#undef TARGET
#endif
