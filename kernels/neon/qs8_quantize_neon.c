/* NEON quantize row, 16 values per step; bit-identical to the scalar one (IEEE division,
 * round half to even with frintn, the same saturation). */
#include <arm_neon.h>
#include "qk_quant.h"

/* Four values to int32 in [lo, hi]; NaN lanes are or-ed into *nan. */
static inline int32x4_t quantize4(float32x4_t x, float32x4_t s, float32x4_t z, float32x4_t lo, float32x4_t hi,
                                  uint32x4_t *nan) {
    float32x4_t v = vdivq_f32(x, s);
    *nan = vorrq_u32(*nan, vmvnq_u32(vceqq_f32(v, v)));          /* x / s is NaN only for NaN x */
    v = vaddq_f32(vrndnq_f32(v), z);
    return vcvtq_s32_f32(vminq_f32(vmaxq_f32(v, lo), hi));       /* integral: the conversion is exact */
}

/* 4 x 4 int32 (already in range) to 16 bytes, in order. */
static inline void store16(uint8_t *q, int32x4_t v0, int32x4_t v1, int32x4_t v2, int32x4_t v3, int out_signed) {
    const int16x8_t a = vcombine_s16(vmovn_s32(v0), vmovn_s32(v1)), b = vcombine_s16(vmovn_s32(v2), vmovn_s32(v3));
    if (out_signed)
        vst1q_s8((int8_t *)q, vcombine_s8(vmovn_s16(a), vmovn_s16(b)));
    else
        vst1q_u8(q, vcombine_u8(vqmovun_s16(a), vqmovun_s16(b)));
}

size_t qk_quantize_row_neon(size_t n, const float *x, const float *scale, const int32_t *zp, int per_elem,
                            int out_signed, void *q, int *nan_found) {
    const float32x4_t lo = vdupq_n_f32(out_signed ? -128.0f : 0.0f), hi = vdupq_n_f32(out_signed ? 127.0f : 255.0f);
    uint32x4_t nan = vdupq_n_u32(0);
    uint8_t *out = (uint8_t *)q;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        int32x4_t v[4];
        for (int j = 0; j < 4; j++) {
            const size_t o = i + 4 * (size_t)j, p = per_elem ? o : 0;
            const float32x4_t s = per_elem ? vld1q_f32(scale + p) : vdupq_n_f32(scale[0]);
            const float32x4_t z = per_elem ? vcvtq_f32_s32(vld1q_s32(zp + p)) : vdupq_n_f32((float)zp[0]);
            v[j] = quantize4(vld1q_f32(x + o), s, z, lo, hi, &nan);
        }
        store16(out + i, v[0], v[1], v[2], v[3], out_signed);
    }
    *nan_found |= vmaxvq_u32(nan) != 0;
    return i;
}
