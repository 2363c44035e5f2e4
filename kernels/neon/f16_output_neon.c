/* fp16 output stage, NEON: 8 columns at a time, bias, clamp (NaN kept), one rounding to
 * fp16; bit-identical to the scalar stage. Shared by both Arm fp16 GEMM kernels. */
#include <arm_neon.h>
#include "qk_f16.h"
#include "qk_output.h"

/* fmax/fmin propagate NaN, as numpy does. */
void qk_output_f16_neon(size_t mr, size_t nr, const int32_t *acc, size_t acc_stride, size_t m0, size_t n0,
                        const qk_out_params *p, void *c, size_t c_stride) {
    const float *f = (const float *)acc;
    if (p->act == QK_ACT_ELT) {
        qk_f16_out_act(mr, nr, f, acc_stride, m0, n0, p, c, c_stride);
        return;
    }
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
