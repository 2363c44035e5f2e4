/* The elementwise float ops of kernels/eltwise.c compiled with AVX-512 (16 float lanes: the
 * compiler's vectorisation of the same loops, so the same bits as every build: ISO C, no
 * contraction to FMA), for the AVX-512 VNNI path: erf, GELU and softmax's exp are
 * arithmetic-bound polynomials, twice the lanes of the AVX2 build. Built again with AVX2
 * for the emulated path (QK_VNNI_FN). fp16 rows converted with F16C. */
#include "qk_vnni.h"
#include "qk_elt_f16c.h"
#define QK_ELT_NAME(name) QK_VNNI_FN(name##_avx512)
#include "../eltwise.c"
