/* The recurrent cells' gate math of kernels/recurrent.c compiled with AVX2 (8 float lanes,
 * the compiler's vectorisation of the same loops: the same bits). ISO C (-std=c11): no
 * contraction to FMA. */
#define QK_RNN_NAME(name) name##_avx2
#include "../recurrent.c"
