/* Depthwise sum kernel, NEON: 16 channels at a time; inputs widen to int16 as they are
 * (u8 or s8), weights are zero-folded int16, and smlal accumulates each tap into four
 * int32x4 (every product is below 2^16 in magnitude: exact). 3x3 and 5x5 kernels get
 * unrolled copies. The dot-product and i8mm paths use this kernel too: sdot sums four
 * consecutive bytes of one lane, which depthwise (one tap per channel) does not have. */
#include <arm_neon.h>
#include "qk_conv.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

ALWAYS_INLINE void widen16(const uint8_t *p, int sgn, int16x8_t *lo, int16x8_t *hi) {
    const uint8x16_t raw = vld1q_u8(p);
    if (sgn) {
        const int8x16_t s = vreinterpretq_s8_u8(raw);
        *lo = vmovl_s8(vget_low_s8(s));
        *hi = vmovl_high_s8(s);
    } else {
        *lo = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(raw)));
        *hi = vreinterpretq_s16_u16(vmovl_high_u8(raw));
    }
}

ALWAYS_INLINE size_t sum_blocks(const qk_dw_params *d, size_t count, size_t taps, int sgn, const uint8_t *const *ptrs,
                                size_t ps, ptrdiff_t step, size_t c0, int32_t *acc, size_t as) {
    const size_t ch = d->g.cg;
    const int16_t *w = d->w;
    const size_t end = qk_dw_blocks_end(c0, 16, ch);
    for (size_t b = c0; b < end; b += 16) {
        const size_t c = qk_dw_block(b, 16, ch);
        for (size_t i = 0; i < count; i++) {
            const uint8_t *const *pp = ptrs + i * ps;
            const ptrdiff_t off = (ptrdiff_t)i * step + (ptrdiff_t)c;
            int32x4_t a0 = vld1q_s32(d->init + c), a1 = vld1q_s32(d->init + c + 4);
            int32x4_t a2 = vld1q_s32(d->init + c + 8), a3 = vld1q_s32(d->init + c + 12);
            for (size_t t = 0; t < taps; t++) {
                int16x8_t xl, xh;
                widen16(pp[t] + off, sgn, &xl, &xh);
                const int16x8_t wl = vld1q_s16(w + t * ch + c), wh = vld1q_s16(w + t * ch + c + 8);
                a0 = vmlal_s16(a0, vget_low_s16(xl), vget_low_s16(wl));
                a1 = vmlal_high_s16(a1, xl, wl);
                a2 = vmlal_s16(a2, vget_low_s16(xh), vget_low_s16(wh));
                a3 = vmlal_high_s16(a3, xh, wh);
            }
            int32_t *o = acc + i * as + c;
            vst1q_s32(o, a0);
            vst1q_s32(o + 4, a1);
            vst1q_s32(o + 8, a2);
            vst1q_s32(o + 12, a3);
        }
    }
    return end;
}

size_t qk_dw_sum_neon(const qk_dw_params *d, size_t count, const uint8_t *const *ptrs, size_t ps, ptrdiff_t step,
                      size_t c0, int32_t *acc, size_t as, size_t m0, size_t *stored) {
    (void)m0;
    *stored = c0;   /* the NEON output stage requantizes */
#define QK_DW_SUM(T, S) sum_blocks(d, count, T, S, ptrs, ps, step, c0, acc, as)
    const int sgn = d->a_signed;
    if (d->taps == 9) return sgn ? QK_DW_SUM(9, 1) : QK_DW_SUM(9, 0);
    if (d->taps == 25) return sgn ? QK_DW_SUM(25, 1) : QK_DW_SUM(25, 0);
    return sgn ? QK_DW_SUM(d->taps, 1) : QK_DW_SUM(d->taps, 0);
#undef QK_DW_SUM
}
