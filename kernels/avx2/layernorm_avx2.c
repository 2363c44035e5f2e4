/* The float32 LayerNorm of kernels/reduce.c compiled with AVX2 (the compiler's
 * vectorisation of the same float64 loops: the same bits). */
#define QK_LN_NAME(name) name##_avx2
#include "../reduce.c"
