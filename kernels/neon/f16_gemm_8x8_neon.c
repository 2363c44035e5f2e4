/* fp16 GEMM micro-kernel, Arm without FP16 arithmetic (ARMv8.0 NEON converts fp16 <->
 * fp32): 8x8 tile, A as float panels (QK_PACK_F32), B as fp16 panels converted as they
 * stream in, fp32 FMA. */
#include <arm_neon.h>
#include "qk_gemm.h"

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
