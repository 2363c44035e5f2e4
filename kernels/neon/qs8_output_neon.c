/* Output stage, NEON (armv8-a): 8 then 4 columns at a time, the rest scalar;
 * fp32 and fixed-point requantization bit-identical to the scalar stage
 * (qk_output.h). Shared by the neon, neondot and i8mm GEMM kernels, so it also
 * applies the row-sum term of int8 (QK_PACK_S8) panels. */
#include <string.h>
#include <arm_neon.h>
#include "qk_output.h"

/* Four columns n..n+3 of one row: accumulators -> clamped output values (int32). */
static inline int32x4_t out4(int32x4_t v, size_t n, const qk_out_params *p, int32_t rsum) {
    v = vaddq_s32(v, vld1q_s32(p->col_add + n));
    if (p->row_sum) v = vmlsq_n_s32(v, vld1q_s32(p->col_zb + n), rsum);   /* wraps like the scalar */
    if (p->mode == QK_OUT_INT32) return v;
    const int32x4_t zp = vdupq_n_s32(p->zero_point);
    if (p->mode == QK_OUT_FP32) {
        float32x4_t f = vmulq_f32(vcvtq_f32_s32(v), vld1q_f32(p->scale + n));
        f = vminq_f32(vmaxq_f32(f, vdupq_n_f32((float)(p->lo - p->zero_point))),
                      vdupq_n_f32((float)(p->hi - p->zero_point)));
        return vaddq_s32(vcvtnq_s32_f32(f), zp);                 /* round half to even */
    }
    /* Fixed point: saturating left shift, SRDHM (== SQRDMULH for every input), then a
     * rounding right shift with ties away from zero: SRSHL rounds ties up, so
     * negative values first step down by one (gemmlowp's fixup). */
    const int32x4_t shift = vld1q_s32(p->shift + n), zero = vdupq_n_s32(0);
    const int32x4_t rshift = vminq_s32(shift, zero);             /* <= 0: right shift */
    int32x4_t x = vqrdmulhq_s32(vqshlq_s32(v, vmaxq_s32(shift, zero)), vld1q_s32(p->mult + n));
    x = vqaddq_s32(x, vshrq_n_s32(vandq_s32(x, rshift), 31));
    x = vrshlq_s32(x, rshift);
    /* clamp like the scalar (y < lo ? lo : y > hi ? hi : y), before adding zp: no wrap */
    const int32x4_t lo = vdupq_n_s32(p->lo - p->zero_point), hi = vdupq_n_s32(p->hi - p->zero_point);
    x = vbslq_s32(vcltq_s32(x, lo), lo, vminq_s32(x, hi));
    return vaddq_s32(x, zp);
}

void qk_output_neon(size_t mr, size_t nr, const int32_t *acc, size_t acc_stride,
                    size_t m0, size_t n0, const qk_out_params *p, void *c, size_t c_stride) {
    const size_t es = qk_out_elem_size(p);
    for (size_t i = 0; i < mr; i++) {
        const int32_t *a = acc + i * acc_stride;
        const int32_t rsum = p->row_sum ? p->row_sum[m0 + i] : 0;
        char *row = (char *)c + (m0 + i) * c_stride + n0 * es;
        size_t j = 0;
        for (; j + 8 <= nr; j += 8) {
            const int32x4_t r0 = out4(vld1q_s32(a + j), n0 + j, p, rsum);
            const int32x4_t r1 = out4(vld1q_s32(a + j + 4), n0 + j + 4, p, rsum);
            if (p->mode == QK_OUT_INT32) {
                vst1q_s32((int32_t *)row + j, r0);
                vst1q_s32((int32_t *)row + j + 4, r1);
            } else {   /* values are in [lo, hi]: truncating narrows == the scalar's casts */
                vst1_u8((uint8_t *)row + j, vreinterpret_u8_s8(vmovn_s16(vcombine_s16(vmovn_s32(r0), vmovn_s32(r1)))));
            }
        }
        if (j + 4 <= nr) {
            const int32x4_t r = out4(vld1q_s32(a + j), n0 + j, p, rsum);
            if (p->mode == QK_OUT_INT32) {
                vst1q_s32((int32_t *)row + j, r);
            } else {
                const int16x4_t h = vmovn_s32(r);
                const uint32_t w = vget_lane_u32(vreinterpret_u32_s8(vmovn_s16(vcombine_s16(h, h))), 0);
                memcpy(row + j, &w, 4);
            }
            j += 4;
        }
        qk_out_row_tail(j, nr, a, m0 + i, n0, p, row);
    }
}
