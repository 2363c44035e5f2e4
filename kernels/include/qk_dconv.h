/* Direct fp32 convolution of small patches (a stem's 7x7x3, a 1-channel 3x3): no patch
 * matrix. The weights are the K x N matrix (K = kh*kw*cg in (ky, kx, c) order, N output
 * channels, row-major); each output pixel's sums run over its taps in that order from
 * +0.0 with one FMA each (the GEMM kernels' order: the same floats as the packed path
 * with one chain), then + bias, clamped to [lo, hi]. P pixels at once share every
 * weight load: P x N/16 independent chains. A block whose windows lie inside the input
 * broadcasts straight from it; one that reaches the padding first gathers its patch rows
 * (zeros in the padding) into `buf`. */
#ifndef QK_DCONV_H
#define QK_DCONV_H
#include <stddef.h>
#include "qk_conv.h"

/* The most K and the widest column block served (weights and a block's gathers stay in L1). */
#define QK_DCONV_MAX_K 256
#define QK_DCONV_BUF_FLOATS (12 * QK_DCONV_MAX_K)

typedef void (*qk_f32_dconv_fn)(const qk_conv_geom *g, size_t m0, size_t m1, size_t n, const float *w,
                                const float *bias, float lo, float hi, float *c, size_t c_stride, float *buf);
/* Rows [m0, m1) of the output (pixel m's N floats at c + m * c_stride bytes); g: fp32,
 * byte strides multiples of 4; n a multiple of 16; K <= QK_DCONV_MAX_K; buf:
 * QK_DCONV_BUF_FLOATS floats. NULL: ISA path `isa` has no direct kernel. */
qk_f32_dconv_fn qk_f32_dconv_for_isa(int isa);
#endif
