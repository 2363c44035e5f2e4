/* The elementwise float ops of kernels/eltwise.c compiled with AVX2 (8 float lanes, the
 * compiler's vectorisation of the same loops: the same bits), the fp16 rows converted with
 * F16C (round to nearest even: the portable conversion's results). ISO C (-std=c11): no
 * contraction to FMA. */
#include "qk_elt_f16c.h"
#define QK_ELT_NAME(name) name##_avx2
#include "../eltwise.c"
