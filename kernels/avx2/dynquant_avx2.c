/* Dynamic quantization's min / max and dequantizing pass: the portable loops of
 * kernels/dynquant.c compiled with AVX2 (8 float lanes). ISO C (-std=c11): no contraction
 * to FMA, so every step rounds as in the portable build: the same bits. */
#define QK_DYNQ_NAME(f) f##_avx2
#define QK_DYNQ_VBYTES 32
#include "../dynquant.c"
