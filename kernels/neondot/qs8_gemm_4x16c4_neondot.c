/* int8 GEMM micro-kernel, NEON dot product (armv8.2-a+dotprod): 4x16 tile, K in
 * groups of 4, int8 panels (QK_PACK_S8; zero points are folded in by the output
 * stage). Per group, SDOT with a lane of A multiplies 4 columns x 4 k at once:
 * exact int8 products summed in int32, 16 accumulators. */
#include <arm_neon.h>
#include "qk_common.h"

void qs8_gemm_4x16c4_neondot(size_t k_groups, const void *a, const void *b, int32_t *acc) {
    const int8_t *pa = (const int8_t *)a, *pb = (const int8_t *)b;
    int32x4_t c[4][4];
    for (int i = 0; i < 4; i++)
        for (int q = 0; q < 4; q++) c[i][q] = vdupq_n_s32(0);
    for (size_t g = 0; g < k_groups; g++, pa += 16, pb += 64) {
        const int8x16_t va = vld1q_s8(pa);             /* rows 0..3 x 4 k */
        const int8x16_t vb0 = vld1q_s8(pb), vb1 = vld1q_s8(pb + 16);
        const int8x16_t vb2 = vld1q_s8(pb + 32), vb3 = vld1q_s8(pb + 48);   /* 4 cols x 4 k each */
        c[0][0] = vdotq_laneq_s32(c[0][0], vb0, va, 0); c[0][1] = vdotq_laneq_s32(c[0][1], vb1, va, 0);
        c[0][2] = vdotq_laneq_s32(c[0][2], vb2, va, 0); c[0][3] = vdotq_laneq_s32(c[0][3], vb3, va, 0);
        c[1][0] = vdotq_laneq_s32(c[1][0], vb0, va, 1); c[1][1] = vdotq_laneq_s32(c[1][1], vb1, va, 1);
        c[1][2] = vdotq_laneq_s32(c[1][2], vb2, va, 1); c[1][3] = vdotq_laneq_s32(c[1][3], vb3, va, 1);
        c[2][0] = vdotq_laneq_s32(c[2][0], vb0, va, 2); c[2][1] = vdotq_laneq_s32(c[2][1], vb1, va, 2);
        c[2][2] = vdotq_laneq_s32(c[2][2], vb2, va, 2); c[2][3] = vdotq_laneq_s32(c[2][3], vb3, va, 2);
        c[3][0] = vdotq_laneq_s32(c[3][0], vb0, va, 3); c[3][1] = vdotq_laneq_s32(c[3][1], vb1, va, 3);
        c[3][2] = vdotq_laneq_s32(c[3][2], vb2, va, 3); c[3][3] = vdotq_laneq_s32(c[3][3], vb3, va, 3);
    }
    for (int i = 0; i < 4; i++)
        for (int q = 0; q < 4; q++) vst1q_s32(acc + i * 16 + q * 4, c[i][q]);
}
