/* The attention core of kernels/transformer.c compiled with AVX2 (8 float lanes, the
 * compiler's vectorisation of the same loops: the same bits). ISO C (-std=c11): no
 * contraction to FMA. */
#define QK_TF_NAME(name) name##_avx2
#include "../transformer.c"
