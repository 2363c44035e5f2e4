/* int8 GEMM micro-kernel, baseline NEON (armv8-a, every aarch64 CPU): 4x8 tile, K
 * one at a time, int16 zero-folded panels (QK_PACK_I16). Each k broadcasts one A
 * value per row into vmlal_lane_s16 against 8 int16 columns of B: exact
 * widening multiply-adds into int32, no saturation anywhere. */
#include <arm_neon.h>
#include "qk_common.h"

void qs8_gemm_4x8_neon_mlal(size_t k_groups, const void *a, const void *b, int32_t *acc) {
    const int16_t *pa = (const int16_t *)a, *pb = (const int16_t *)b;
    int32x4_t c0l = vdupq_n_s32(0), c0h = c0l, c1l = c0l, c1h = c0l;
    int32x4_t c2l = c0l, c2h = c0l, c3l = c0l, c3h = c0l;
    for (size_t g = 0; g < k_groups; g++, pa += 4, pb += 8) {
        const int16x4_t va = vld1_s16(pa);
        const int16x8_t vb = vld1q_s16(pb);
        const int16x4_t vbl = vget_low_s16(vb);
        c0l = vmlal_lane_s16(c0l, vbl, va, 0);
        c0h = vmlal_high_lane_s16(c0h, vb, va, 0);
        c1l = vmlal_lane_s16(c1l, vbl, va, 1);
        c1h = vmlal_high_lane_s16(c1h, vb, va, 1);
        c2l = vmlal_lane_s16(c2l, vbl, va, 2);
        c2h = vmlal_high_lane_s16(c2h, vb, va, 2);
        c3l = vmlal_lane_s16(c3l, vbl, va, 3);
        c3h = vmlal_high_lane_s16(c3h, vb, va, 3);
    }
    vst1q_s32(acc + 0, c0l);  vst1q_s32(acc + 4, c0h);
    vst1q_s32(acc + 8, c1l);  vst1q_s32(acc + 12, c1h);
    vst1q_s32(acc + 16, c2l); vst1q_s32(acc + 20, c2h);
    vst1q_s32(acc + 24, c3l); vst1q_s32(acc + 28, c3h);
}
