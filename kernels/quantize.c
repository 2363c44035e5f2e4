/* The range driver of quantize / dequantize and the choice of row kernels per ISA. */
#include "qk_common.h"
#include "qk_quant.h"

static const qk_quant_kernels scalar = {qk_quantize_row_scalar, qk_dequantize_row_scalar};
#if defined(__x86_64__)
size_t qk_quantize_row_avx2(size_t, const float *, const float *, const int32_t *, int, int, void *, int *);
size_t qk_dequantize_row_avx2(size_t, const void *, int, const float *, const int32_t *, int, float *);
static const qk_quant_kernels avx2 = {qk_quantize_row_avx2, qk_dequantize_row_avx2};
#endif
#if defined(__aarch64__)
size_t qk_quantize_row_neon(size_t, const float *, const float *, const int32_t *, int, int, void *, int *);
size_t qk_dequantize_row_neon(size_t, const void *, int, const float *, const int32_t *, int, float *);
static const qk_quant_kernels neon = {qk_quantize_row_neon, qk_dequantize_row_neon};
#endif

const qk_quant_kernels *qk_quant_kernels_for_isa(int isa) {
#if defined(__x86_64__)
    if (isa == QK_ISA_AVX2) return &avx2;
#endif
#if defined(__aarch64__)
    if (isa == QK_ISA_NEON || isa == QK_ISA_NEONDOT || isa == QK_ISA_I8MM) return &neon;
#endif
    (void)isa;
    return &scalar;
}

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

int qk_quantize_range(const qk_quant_kernels *k, size_t i0, size_t i1, size_t channels, size_t inner,
                      const float *x, const float *scale, const int32_t *zp, int out_signed, void *q) {
    int nan = 0;
    size_t c, len;
    int per_elem;
    for (size_t i = i0; i < i1; i += len) {
        len = run_at(i, i1, channels, inner, &c, &per_elem);
        const size_t done = k->quantize(len, x + i, scale + c, zp + c, per_elem, out_signed, (uint8_t *)q + i, &nan);
        const size_t p = c + (per_elem ? done : 0);    /* the tail: scalar */
        qk_quantize_row_scalar(len - done, x + i + done, scale + p, zp + p, per_elem, out_signed,
                               (uint8_t *)q + i + done, &nan);
    }
    return nan;
}

void qk_dequantize_range(const qk_quant_kernels *k, size_t i0, size_t i1, size_t channels, size_t inner,
                         const void *q, int in_signed, const float *scale, const int32_t *zp, float *y) {
    size_t c, len;
    int per_elem;
    for (size_t i = i0; i < i1; i += len) {
        len = run_at(i, i1, channels, inner, &c, &per_elem);
        const uint8_t *qi = (const uint8_t *)q + i;
        const size_t done = k->dequantize(len, qi, in_signed, scale + c, zp + c, per_elem, y + i);
        const size_t p = c + (per_elem ? done : 0);    /* the tail: scalar */
        qk_dequantize_row_scalar(len - done, qi + done, in_signed, scale + p, zp + p, per_elem, y + i + done);
    }
}
