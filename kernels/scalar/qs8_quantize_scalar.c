/* Portable quantize row: the reference of every ISA's row kernel (qk_quantize_one). */
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
