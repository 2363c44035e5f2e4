/* fp16 depthwise sum kernel, portable C: fp32 sums of fp16 inputs times float weights,
 * every channel from c0; the reference of the vector ones and the tail of their blocks. */
#include "qk_conv.h"
#include "qk_f16.h"

size_t qk_dw_sum_f16_scalar(const qk_dw_params *d, size_t count, const uint8_t *const *ptrs, size_t ptr_stride,
                            ptrdiff_t step, size_t c0, int32_t *acc, size_t acc_stride, size_t m0, size_t *stored) {
    const size_t taps = d->taps, ch = d->g.cg;
    const float *init = (const float *)d->init;
    (void)m0;
    *stored = c0;
    for (size_t i = 0; i < count; i++) {
        float *a = (float *)acc + i * acc_stride;
        for (size_t c = c0; c < ch; c++) a[c] = init[c];
        for (size_t t = 0; t < taps; t++) {
            const uint16_t *x = (const uint16_t *)(const void *)(ptrs[i * ptr_stride + t] + (ptrdiff_t)i * step);
            const float *wt = d->wf + t * ch;
            for (size_t c = c0; c < ch; c++) a[c] += qk_f16_to_f32(x[c]) * wt[c];
        }
    }
    return ch;
}
