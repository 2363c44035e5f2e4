/* The elementwise float ops of kernels/eltwise.c compiled with AVX-512 (16 float lanes: the
 * compiler's vectorisation of the same loops, so the same bits as every build: ISO C, no
 * contraction to FMA), for the AVX-512 VNNI path: erf, GELU and softmax's exp are
 * arithmetic-bound polynomials, twice the lanes of the AVX2 build. Softmax's exp and the
 * exact GELU are the exception: their own intrinsics with FMA (eltwise.c's header states
 * their bounds). Built again with AVX2 for the emulated path (QK_VNNI_FN): no __AVX512F__,
 * so the portable build's code and bits. fp16 rows converted with F16C. */
#include "qk_vnni.h"
#include "qk_elt_f16c.h"
#define QK_ELT_NAME(name) QK_VNNI_FN(name##_avx512)
#include "../eltwise.c"
