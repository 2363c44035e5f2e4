/* Dynamic quantization's min / max and dequantizing pass: the portable loops of
 * kernels/dynquant.c compiled with AVX-512 (16 float lanes: four chains of 16 for the
 * min / max), and again with AVX2 for the emulated path. ISO C (-std=c11): no contraction
 * to FMA, so every step rounds as in the portable build: the same bits. */
#include "qk_vnni.h"
#define QK_DYNQ_NAME(f) QK_VNNI_FN(f##_avx512)
#define QK_DYNQ_VBYTES 64
#include "../dynquant.c"
