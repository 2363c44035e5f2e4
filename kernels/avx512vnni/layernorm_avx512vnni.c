/* The float32 LayerNorm of kernels/reduce.c compiled with AVX-512 (eight float64 lanes per
 * vector; the same loops, the same bits), and again with AVX2 for the emulated path. */
#include "qk_vnni.h"
#define QK_LN_NAME(name) QK_VNNI_FN(name##_avx512)
#include "../reduce.c"
