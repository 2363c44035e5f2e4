/* NEON dequantize row, 8 values per step; bit-identical to the scalar one (one float32
 * rounding). */
#include <arm_neon.h>
#include "qk_quant.h"

size_t qk_dequantize_row_neon(size_t n, const void *q, int in_signed, const float *scale, const int32_t *zp,
                              int per_elem, float *y) {
    const uint8_t *in = (const uint8_t *)q;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const int16x8_t w = in_signed ? vmovl_s8(vld1_s8((const int8_t *)in + i))
                                      : vreinterpretq_s16_u16(vmovl_u8(vld1_u8(in + i)));
        int32x4_t d[2] = {vmovl_s16(vget_low_s16(w)), vmovl_s16(vget_high_s16(w))};
        for (int j = 0; j < 2; j++) {
            const size_t o = i + 4 * (size_t)j, p = per_elem ? o : 0;
            const int32x4_t z = per_elem ? vld1q_s32(zp + p) : vdupq_n_s32(zp[0]);
            const float32x4_t s = per_elem ? vld1q_f32(scale + p) : vdupq_n_f32(scale[0]);
            vst1q_f32(y + o, vmulq_f32(vcvtq_f32_s32(vsubq_s32(d[j], z)), s));
        }
    }
    return i;
}
