/* fp32 output stage, NEON: 8 columns at a time, bias, clamp; the same floats as the
 * scalar stage (fmax/fmin propagate NaN, which the scalar clamp keeps too). */
#include <arm_neon.h>
#include "qk_output.h"

/* The activation after the clamp, in place on a row (qk_f32_act's operations; fmax/fmin
   propagate NaN as the scalar form does). */
static void act_row(float *row, size_t nr, const qk_out_params *p) {
    const float32x4_t add = vdupq_n_f32(p->act_add), lo = vdupq_n_f32(p->act_lo), hi = vdupq_n_f32(p->act_hi),
                      div = vdupq_n_f32(p->act_div);
    size_t j = 0;
    for (; j + 4 <= nr; j += 4) {
        const float32x4_t v = vld1q_f32(row + j);
        const float32x4_t t = vminq_f32(vmaxq_f32(vaddq_f32(v, add), lo), hi);
        vst1q_f32(row + j, vdivq_f32(vmulq_f32(v, t), div));
    }
    for (; j < nr; j++) row[j] = qk_f32_act(row[j], p);
}

void qk_output_f32_neon(size_t mr, size_t nr, const int32_t *acc, size_t acc_stride, size_t m0, size_t n0,
                        const qk_out_params *p, void *c, size_t c_stride) {
    const float *f = (const float *)acc;
    const float32x4_t lo = vdupq_n_f32(p->flo), hi = vdupq_n_f32(p->fhi);
    const float *bias = p->bias_f + n0;
    for (size_t i = 0; i < mr; i++) {
        float *row = (float *)((char *)c + (m0 + i) * c_stride) + n0;
        const float *a = f + i * acc_stride;
        const float *r = qk_f32_res_row(p, m0 + i, n0);
        size_t j = 0;
        if (r) {   /* a fused residual Add: after the bias, before the clamp */
            for (; j + 4 <= nr; j += 4)
                vst1q_f32(row + j, vminq_f32(vmaxq_f32(vaddq_f32(vaddq_f32(vld1q_f32(a + j), vld1q_f32(bias + j)),
                                                                 vld1q_f32(r + j)), lo), hi));
            for (; j < nr; j++) row[j] = qk_f32_out_res(a[j], bias[j], r[j], p->flo, p->fhi);
            if (p->act == QK_ACT_ELT) p->act_fn(p->act_op, 0.0f, 0.0f, nr, row, row);
            else if (p->act) act_row(row, nr, p);
            continue;
        }
        for (; j + 4 <= nr; j += 4)
            vst1q_f32(row + j, vminq_f32(vmaxq_f32(vaddq_f32(vld1q_f32(a + j), vld1q_f32(bias + j)), lo), hi));
        for (; j < nr; j++) row[j] = qk_f32_out(a[j], bias[j], p->flo, p->fhi);
        if (p->act == QK_ACT_ELT) p->act_fn(p->act_op, 0.0f, 0.0f, nr, row, row);
        else if (p->act) act_row(row, nr, p);
    }
}
