/* Resize (nearest, linear), the portable loops of kernels/resize.c compiled with AVX2 (8
 * float lanes). ISO C (-std=c11): no contraction to FMA, so every product and sum rounds
 * as in the portable build: the same bits. */
#define QK_RESIZE_NAME qk_resize_avx2
#include "../resize.c"
