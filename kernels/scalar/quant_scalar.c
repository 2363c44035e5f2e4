/* Portable quantize / dequantize rows: the reference of every ISA's kernels. */
#include "qk_quant.h"

size_t qk_quantize_row_scalar(size_t n, const float *x, const float *scale, const int32_t *zp, int per_elem,
                              int out_signed, void *q, int *nan) {
    for (size_t i = 0; i < n; i++) {
        const size_t p = per_elem ? i : 0;
        *nan |= x[i] != x[i];
        const int32_t v = qk_quantize_one(x[i], scale[p], zp[p], out_signed);
        if (out_signed) ((int8_t *)q)[i] = (int8_t)v;
        else ((uint8_t *)q)[i] = (uint8_t)v;
    }
    return n;
}

size_t qk_dequantize_row_scalar(size_t n, const void *q, int in_signed, const float *scale, const int32_t *zp,
                                int per_elem, float *y) {
    for (size_t i = 0; i < n; i++) {
        const size_t p = per_elem ? i : 0;
        const int32_t v = in_signed ? ((const int8_t *)q)[i] : ((const uint8_t *)q)[i];
        y[i] = (float)(v - zp[p]) * scale[p];
    }
    return n;
}
