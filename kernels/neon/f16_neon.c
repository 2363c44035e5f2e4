/* fp16 path on Arm without FP16 arithmetic (ARMv8.0 NEON converts fp16 <-> fp32): GEMM
 * micro-kernel 8x8 (A as float panels, B as fp16 panels converted as they stream in,
 * fp32 FMA), the fp16 output stage and the depthwise sum kernel. The FP16-arithmetic
 * GEMM kernel (kernels/neonfp16/) shares the output stage and depthwise kernel. */
#include <arm_neon.h>
#include "qk_common.h"
#include "qk_f16.h"

void f16_gemm_8x8_neon(size_t k, const void *a, const void *b, int32_t *acc) {
    const float *ap = (const float *)a;
    const uint16_t *bp = (const uint16_t *)b;
    float32x4_t cl[8], ch[8];
    for (int i = 0; i < 8; i++) cl[i] = ch[i] = vdupq_n_f32(0.0f);
    for (size_t kk = 0; kk < k; kk++, ap += 8, bp += 8) {
        const float16x8_t bh = vreinterpretq_f16_u16(vld1q_u16(bp));
        const float32x4_t b0 = vcvt_f32_f16(vget_low_f16(bh)), b1 = vcvt_high_f32_f16(bh);
        const float32x4_t a0 = vld1q_f32(ap), a1 = vld1q_f32(ap + 4);
        cl[0] = vfmaq_laneq_f32(cl[0], b0, a0, 0); ch[0] = vfmaq_laneq_f32(ch[0], b1, a0, 0);
        cl[1] = vfmaq_laneq_f32(cl[1], b0, a0, 1); ch[1] = vfmaq_laneq_f32(ch[1], b1, a0, 1);
        cl[2] = vfmaq_laneq_f32(cl[2], b0, a0, 2); ch[2] = vfmaq_laneq_f32(ch[2], b1, a0, 2);
        cl[3] = vfmaq_laneq_f32(cl[3], b0, a0, 3); ch[3] = vfmaq_laneq_f32(ch[3], b1, a0, 3);
        cl[4] = vfmaq_laneq_f32(cl[4], b0, a1, 0); ch[4] = vfmaq_laneq_f32(ch[4], b1, a1, 0);
        cl[5] = vfmaq_laneq_f32(cl[5], b0, a1, 1); ch[5] = vfmaq_laneq_f32(ch[5], b1, a1, 1);
        cl[6] = vfmaq_laneq_f32(cl[6], b0, a1, 2); ch[6] = vfmaq_laneq_f32(ch[6], b1, a1, 2);
        cl[7] = vfmaq_laneq_f32(cl[7], b0, a1, 3); ch[7] = vfmaq_laneq_f32(ch[7], b1, a1, 3);
    }
    float *c = (float *)acc;
    for (int i = 0; i < 8; i++) {
        vst1q_f32(c + 8 * i, cl[i]);
        vst1q_f32(c + 8 * i + 4, ch[i]);
    }
}

/* fmax/fmin propagate NaN, as numpy does. */
void qk_output_f16_neon(size_t mr, size_t nr, const int32_t *acc, size_t acc_stride, size_t m0, size_t n0,
                        const qk_out_params *p, void *c, size_t c_stride) {
    const float *f = (const float *)acc;
    const float32x4_t lo = vdupq_n_f32(p->flo), hi = vdupq_n_f32(p->fhi);
    const float *bias = p->bias_f + n0;
    for (size_t i = 0; i < mr; i++) {
        uint16_t *row = (uint16_t *)((char *)c + (m0 + i) * c_stride) + n0;
        const float *a = f + i * acc_stride;
        size_t j = 0;
        for (; j + 8 <= nr; j += 8) {
            float32x4_t v0 = vaddq_f32(vld1q_f32(a + j), vld1q_f32(bias + j));
            float32x4_t v1 = vaddq_f32(vld1q_f32(a + j + 4), vld1q_f32(bias + j + 4));
            v0 = vminq_f32(vmaxq_f32(v0, lo), hi);
            v1 = vminq_f32(vmaxq_f32(v1, lo), hi);
            vst1q_u16(row + j, vreinterpretq_u16_f16(vcvt_high_f16_f32(vcvt_f16_f32(v0), v1)));
        }
        for (; j < nr; j++) row[j] = qk_f16_out(a[j], bias[j], p->flo, p->fhi);
    }
}

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

void qk_f16_to_f32_row_neon(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(dst + i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(src + i))));
    for (; i < n; i++) dst[i] = qk_f16_to_f32(src[i]);
}
