/* Portable dequantize row: the reference of every ISA's row kernel. */
#include "qk_quant.h"

size_t qk_dequantize_row_scalar(size_t n, const void *q, int in_signed, const float *scale, const int32_t *zp,
                                int per_elem, float *y) {
    for (size_t i = 0; i < n; i++) {
        const size_t p = per_elem ? i : 0;
        const int32_t v = in_signed ? ((const int8_t *)q)[i] : ((const uint8_t *)q)[i];
        y[i] = (float)(v - zp[p]) * scale[p];
    }
    return n;
}
