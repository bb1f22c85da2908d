/* activation_instances.h - includes the template named by ACT_TEMPLATE
 * (activation_math.h or activation_kernels.h) once per scalar type (float,
 * double: the portable path) and, on x86-64, once per vector instruction
 * set (AVX2, AVX-512), with the definitions those templates read.
 * No include guard: included once per template.
 */
#define UINT uint32_t
#define REAL float
#define REAL_IS_FLOAT 1
#define SUFFIX f32
#define EXP expf
#define TANH tanhf
#define FABS fabsf
#include ACT_TEMPLATE

#undef REAL_IS_FLOAT
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

#ifdef FN_SIMD_X86
#define FN_SIMD_ISA avx2
#define FN_SIMD_TARGET FN_TARGET_AVX2
#include ACT_TEMPLATE
#undef FN_SIMD_ISA
#undef FN_SIMD_TARGET

#define FN_SIMD_ISA avx512
#define FN_SIMD_TARGET FN_TARGET_AVX512
#include ACT_TEMPLATE
#undef FN_SIMD_ISA
#undef FN_SIMD_TARGET
#endif
