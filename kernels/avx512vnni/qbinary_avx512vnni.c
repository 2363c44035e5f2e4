/* QLinearAdd / QLinearMul, the portable loop of kernels/qbinary.c compiled with AVX-512 (16
 * float lanes) for the AVX-512 VNNI path, and again with AVX2 for its emulated path
 * (QK_VNNI_FN). ISO C: no contraction to FMA, every step rounds as in the portable build,
 * so the same bits. */
#include "qk_vnni.h"
#define QK_QBINARY_NAME QK_VNNI_FN(qk_qlinear_binary_avx512)
#include "../qbinary.c"
