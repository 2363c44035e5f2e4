/* fp16 GEMM micro-kernel 8x8 with ARMv8.2 FP16 arithmetic: fp16 FMA (8 lanes, twice the
 * fp32 rate) into fp16 accumulators, flushed every QK_F16_CHUNK steps of K into fp32
 * accumulators. Chunks of 8 keep the error within about twice that of fp32
 * accumulation at every K, where whole-K fp16 accumulation is 7-30x worse
 * (docs/design.md, "fp16"; bench/f16_accumulation.py measures it). A and B are fp16 panels. */
#include <arm_neon.h>
#include "qk_gemm.h"

#define QK_F16_CHUNK 8

void f16_gemm_8x8_neonfp16(size_t k, const void *a, const void *b, int32_t *acc) {
    const float16_t *ap = (const float16_t *)a, *bp = (const float16_t *)b;
    float32x4_t cl[8], ch[8];
    for (int i = 0; i < 8; i++) cl[i] = ch[i] = vdupq_n_f32(0.0f);
    for (size_t k0 = 0; k0 < k; k0 += QK_F16_CHUNK) {
        const size_t k1 = k - k0 < QK_F16_CHUNK ? k : k0 + QK_F16_CHUNK;
        float16x8_t h[8];
        for (int i = 0; i < 8; i++) h[i] = vdupq_n_f16(0);
        for (size_t kk = k0; kk < k1; kk++, ap += 8, bp += 8) {
            const float16x8_t av = vld1q_f16(ap), bv = vld1q_f16(bp);
            h[0] = vfmaq_laneq_f16(h[0], bv, av, 0);
            h[1] = vfmaq_laneq_f16(h[1], bv, av, 1);
            h[2] = vfmaq_laneq_f16(h[2], bv, av, 2);
            h[3] = vfmaq_laneq_f16(h[3], bv, av, 3);
            h[4] = vfmaq_laneq_f16(h[4], bv, av, 4);
            h[5] = vfmaq_laneq_f16(h[5], bv, av, 5);
            h[6] = vfmaq_laneq_f16(h[6], bv, av, 6);
            h[7] = vfmaq_laneq_f16(h[7], bv, av, 7);
        }
        for (int i = 0; i < 8; i++) {
            cl[i] = vaddq_f32(cl[i], vcvt_f32_f16(vget_low_f16(h[i])));
            ch[i] = vaddq_f32(ch[i], vcvt_high_f32_f16(h[i]));
        }
    }
    float *c = (float *)acc;
    for (int i = 0; i < 8; i++) {
        vst1q_f32(c + 8 * i, cl[i]);
        vst1q_f32(c + 8 * i + 4, ch[i]);
    }
}
