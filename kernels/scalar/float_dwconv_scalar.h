/* Template of the portable float depthwise sum kernels: fp32 sums of inputs times float
 * weights, every channel from c0; the reference of the vector ones and the tail of their
 * blocks. Define before including:
 *   QK_DW_NAME      the function
 *   QK_X_TYPE       the stored input type (uint16_t fp16 bits, float)
 *   QK_X_LOAD(v)    that value as a float */
#include "qk_conv.h"

size_t QK_DW_NAME(const qk_dw_params *d, size_t count, const uint8_t *const *ptrs, size_t ptr_stride,
                  ptrdiff_t step, size_t c0, int32_t *acc, size_t acc_stride, size_t m0, size_t *stored) {
    const size_t taps = d->taps, ch = d->g.cg;
    const float *init = (const float *)d->init;
    (void)m0;
    *stored = c0;
    for (size_t i = 0; i < count; i++) {
        float *a = (float *)acc + i * acc_stride;
        for (size_t c = c0; c < ch; c++) a[c] = init[c];
        for (size_t t = 0; t < taps; t++) {
            const QK_X_TYPE *x = (const QK_X_TYPE *)(const void *)(ptrs[i * ptr_stride + t] + (ptrdiff_t)i * step);
            const float *wt = d->wf + t * ch;
            for (size_t c = c0; c < ch; c++) a[c] += QK_X_LOAD(x[c]) * wt[c];
        }
    }
    return ch;
}
