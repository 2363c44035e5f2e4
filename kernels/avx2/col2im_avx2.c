/* The col2im of ConvTranspose, the portable loops of kernels/col2im.c compiled with AVX2.
 * ISO C (-std=c11): no contraction to FMA, the same bits as the portable build. */
#define QK_COL2IM_NAME qk_col2im_avx2
#include "../col2im.c"
