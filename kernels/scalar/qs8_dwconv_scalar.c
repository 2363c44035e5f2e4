/* Depthwise sum kernel, portable C: every channel from c0, one tap at a time; the
 * reference of the vector sum kernels and the tail of their channel blocks. */
#include "qk_conv.h"

size_t qk_dw_sum_scalar(const qk_dw_params *d, size_t count, const uint8_t *const *ptrs, size_t ptr_stride,
                        ptrdiff_t step, size_t c0, int32_t *acc, size_t acc_stride, size_t m0, size_t *stored) {
    const size_t taps = d->taps, ch = d->g.cg;
    (void)m0;
    *stored = c0;
    /* uint32 arithmetic: the exact sum fits int32, partial sums may wrap */
    for (size_t i = 0; i < count; i++) {
        uint32_t *a = (uint32_t *)acc + i * acc_stride;
        for (size_t c = c0; c < ch; c++) a[c] = (uint32_t)d->init[c];
        for (size_t t = 0; t < taps; t++) {
            const uint8_t *x = ptrs[i * ptr_stride + t] + (ptrdiff_t)i * step;
            const int16_t *wt = d->w + t * ch;
            if (d->a_signed)
                for (size_t c = c0; c < ch; c++) a[c] += (uint32_t)((int32_t)(int8_t)x[c] * wt[c]);
            else
                for (size_t c = c0; c < ch; c++) a[c] += (uint32_t)((int32_t)x[c] * wt[c]);
        }
    }
    return ch;
}
