/* int8 GEMM micro-kernel, baseline NEON (armv8-a, every aarch64 CPU): 4x8 tile, K
 * one at a time, int16 zero-folded panels (QK_PACK_I16: A row-major, B 8 columns
 * per k). Each k multiplies one A value per row (a lane of a 4-k load from each
 * row) by 8 int16 columns of B with vmlal: exact widening multiply-adds into
 * int32, no saturation anywhere. */
#include <arm_neon.h>
#include "qk_gemm.h"

#define QK_MLAL_K(c, a, lane, b)                                            \
    do {                                                                    \
        c##l = vmlal_lane_s16(c##l, vget_low_s16(b), a, lane);              \
        c##h = vmlal_high_lane_s16(c##h, b, a, lane);                       \
    } while (0)

void qs8_gemm_4x8_neon_mlal(size_t k_groups, const void *a, const void *b, int32_t *acc) {
    const int16_t *a0 = (const int16_t *)a, *a1 = a0 + k_groups, *a2 = a1 + k_groups, *a3 = a2 + k_groups;
    const int16_t *pb = (const int16_t *)b;
    int32x4_t c0l = vdupq_n_s32(0), c0h = c0l, c1l = c0l, c1h = c0l;
    int32x4_t c2l = c0l, c2h = c0l, c3l = c0l, c3h = c0l;
    size_t k = 0;
    for (; k + 4 <= k_groups; k += 4, pb += 32) {   /* 4 k per step: one 64-bit load per row */
        const int16x4_t va0 = vld1_s16(a0 + k), va1 = vld1_s16(a1 + k);
        const int16x4_t va2 = vld1_s16(a2 + k), va3 = vld1_s16(a3 + k);
        const int16x8_t vb0 = vld1q_s16(pb), vb1 = vld1q_s16(pb + 8);
        const int16x8_t vb2 = vld1q_s16(pb + 16), vb3 = vld1q_s16(pb + 24);
        QK_MLAL_K(c0, va0, 0, vb0); QK_MLAL_K(c1, va1, 0, vb0); QK_MLAL_K(c2, va2, 0, vb0); QK_MLAL_K(c3, va3, 0, vb0);
        QK_MLAL_K(c0, va0, 1, vb1); QK_MLAL_K(c1, va1, 1, vb1); QK_MLAL_K(c2, va2, 1, vb1); QK_MLAL_K(c3, va3, 1, vb1);
        QK_MLAL_K(c0, va0, 2, vb2); QK_MLAL_K(c1, va1, 2, vb2); QK_MLAL_K(c2, va2, 2, vb2); QK_MLAL_K(c3, va3, 2, vb2);
        QK_MLAL_K(c0, va0, 3, vb3); QK_MLAL_K(c1, va1, 3, vb3); QK_MLAL_K(c2, va2, 3, vb3); QK_MLAL_K(c3, va3, 3, vb3);
    }
    for (; k < k_groups; k++, pb += 8) {
        const int16x8_t vb = vld1q_s16(pb);
        const int16x4_t vbl = vget_low_s16(vb);
        c0l = vmlal_n_s16(c0l, vbl, a0[k]); c0h = vmlal_high_n_s16(c0h, vb, a0[k]);
        c1l = vmlal_n_s16(c1l, vbl, a1[k]); c1h = vmlal_high_n_s16(c1h, vb, a1[k]);
        c2l = vmlal_n_s16(c2l, vbl, a2[k]); c2h = vmlal_high_n_s16(c2h, vb, a2[k]);
        c3l = vmlal_n_s16(c3l, vbl, a3[k]); c3h = vmlal_high_n_s16(c3h, vb, a3[k]);
    }
    vst1q_s32(acc + 0, c0l);  vst1q_s32(acc + 4, c0h);
    vst1q_s32(acc + 8, c1l);  vst1q_s32(acc + 12, c1h);
    vst1q_s32(acc + 16, c2l); vst1q_s32(acc + 20, c2h);
    vst1q_s32(acc + 24, c3l); vst1q_s32(acc + 28, c3h);
}
