/* Template of the NEON float depthwise sum kernels: 8 channels per step, float weights,
 * fp32 sums (an fma per tap, taps in order). Define before including:
 *   QK_DW_NAME       the function
 *   QK_X_ELEM        bytes per stored input value (2: fp16, 4: fp32)
 *   QK_X_LOAD4(p)    4 input values at byte pointer p as a float32x4_t */
#include <arm_neon.h>
#include "qk_conv.h"

size_t QK_DW_NAME(const qk_dw_params *d, size_t count, const uint8_t *const *ptrs, size_t ps,
                  ptrdiff_t step, size_t c0, int32_t *acc, size_t as, size_t m0, size_t *stored) {
    const size_t taps = d->taps, ch = d->g.cg;
    const float *init = (const float *)d->init;
    (void)m0;
    *stored = c0;
    const size_t end = qk_dw_blocks_end(c0, 8, ch);
    for (size_t b = c0; b < end; b += 8) {
        const size_t c = qk_dw_block(b, 8, ch);
        for (size_t i = 0; i < count; i++) {
            const uint8_t *const *pp = ptrs + i * ps;
            const ptrdiff_t off = (ptrdiff_t)i * step + (ptrdiff_t)(QK_X_ELEM * c);
            float32x4_t lo = vld1q_f32(init + c), hi = vld1q_f32(init + c + 4);
            for (size_t t = 0; t < taps; t++) {
                const float *w = d->wf + t * ch + c;
                lo = vfmaq_f32(lo, QK_X_LOAD4(pp[t] + off), vld1q_f32(w));
                hi = vfmaq_f32(hi, QK_X_LOAD4(pp[t] + off + 4 * QK_X_ELEM), vld1q_f32(w + 4));
            }
            float *o = (float *)acc + i * as + c;
            vst1q_f32(o, lo);
            vst1q_f32(o + 4, hi);
        }
    }
    return end;
}
