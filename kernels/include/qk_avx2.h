/* Shared pieces of the AVX2 kernels (compiled with AVX2 flags only). */
#ifndef QK_AVX2_H
#define QK_AVX2_H
#include "qk_conv.h"

/* Store mr full rows of a 16-column int32 tile (row stride acc_stride) as int32 or
 * fp32-requantized 8-bit output; no row sums. Bit-identical to qk_output_avx2. */
void qk_store_16cols_avx2(size_t mr, const int32_t *acc, size_t acc_stride, size_t m0, size_t n0, const qk_out_params *p,
                          void *c, size_t c_stride);
#endif
