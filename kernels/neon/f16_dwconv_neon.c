/* fp16 depthwise sum kernel, NEON: 8 channels per step, fp16 inputs converted as they
 * load, float weights, fp32 sums. */
#include <arm_neon.h>
#include "qk_conv.h"

static inline float32x4_t load4h(const uint8_t *p) {
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)(const void *)p)));
}

size_t qk_dw_sum_f16_neon(const qk_dw_params *d, size_t count, const uint8_t *const *ptrs, size_t ps,
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
            const ptrdiff_t off = (ptrdiff_t)i * step + (ptrdiff_t)(2 * c);
            float32x4_t lo = vld1q_f32(init + c), hi = vld1q_f32(init + c + 4);
            for (size_t t = 0; t < taps; t++) {
                const float *w = d->wf + t * ch + c;
                lo = vfmaq_f32(lo, load4h(pp[t] + off), vld1q_f32(w));
                hi = vfmaq_f32(hi, load4h(pp[t] + off + 8), vld1q_f32(w + 4));
            }
            float *o = (float *)acc + i * as + c;
            vst1q_f32(o, lo);
            vst1q_f32(o + 4, hi);
        }
    }
    return end;
}
