/* The range driver of quantize / dequantize: runs of values that share their parameters,
 * each to an ISA's row kernel (the registry's choice), its tail to the scalar one. */
#include "qk_quant.h"

/* The run starting at value i (< i1): its length, first parameter and whether the
 * parameters step with the values. */
static size_t run_at(size_t i, size_t i1, size_t channels, size_t inner, size_t *c, int *per_elem) {
    size_t left = i1 - i;
    if (channels == 1) {
        *c = 0, *per_elem = 0;
        return left;
    }
    if (inner == 1) {
        *c = i % channels, *per_elem = 1;
        return left < channels - *c ? left : channels - *c;
    }
    *c = (i / inner) % channels, *per_elem = 0;
    return left < inner - i % inner ? left : inner - i % inner;
}

int qk_quantize_range(qk_quantize_row_fn row, size_t i0, size_t i1, size_t channels, size_t inner,
                      const float *x, const float *scale, const int32_t *zp, int out_signed, void *q) {
    int nan = 0;
    size_t c, len;
    int per_elem;
    for (size_t i = i0; i < i1; i += len) {
        len = run_at(i, i1, channels, inner, &c, &per_elem);
        const size_t done = row(len, x + i, scale + c, zp + c, per_elem, out_signed, (uint8_t *)q + i, &nan);
        const size_t p = c + (per_elem ? done : 0);    /* the tail: scalar */
        qk_quantize_row_scalar(len - done, x + i + done, scale + p, zp + p, per_elem, out_signed,
                               (uint8_t *)q + i + done, &nan);
    }
    return nan;
}

void qk_dequantize_range(qk_dequantize_row_fn row, size_t i0, size_t i1, size_t channels, size_t inner,
                         const void *q, int in_signed, const float *scale, const int32_t *zp, float *y) {
    size_t c, len;
    int per_elem;
    for (size_t i = i0; i < i1; i += len) {
        len = run_at(i, i1, channels, inner, &c, &per_elem);
        const uint8_t *qi = (const uint8_t *)q + i;
        const size_t done = row(len, qi, in_signed, scale + c, zp + c, per_elem, y + i);
        const size_t p = c + (per_elem ? done : 0);    /* the tail: scalar */
        qk_dequantize_row_scalar(len - done, qi + done, in_signed, scale + p, zp + p, per_elem, y + i + done);
    }
}
