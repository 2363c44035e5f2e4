/* int8 GEMM micro-kernel, NEON dot product (armv8.2-a+dotprod): 4x16 tile, K in
 * groups of 4, int8 panels (QK_PACK_S8; zero points are folded in by the output
 * stage). Per group, SDOT with a lane of A multiplies 4 columns x 4 k at once:
 * exact int8 products summed in int32, 16 named accumulators (an array would be
 * zeroed on the stack first). */
#include <arm_neon.h>
#include "qk_gemm.h"

/* row i of the tile: 16 columns from the 4 B vectors and lane i of A */
#define QK_DOT_ROW(i)                                          \
    do {                                                       \
        c##i##0 = vdotq_laneq_s32(c##i##0, vb0, va, i);        \
        c##i##1 = vdotq_laneq_s32(c##i##1, vb1, va, i);        \
        c##i##2 = vdotq_laneq_s32(c##i##2, vb2, va, i);        \
        c##i##3 = vdotq_laneq_s32(c##i##3, vb3, va, i);        \
    } while (0)
#define QK_DOT_STORE(i)                                        \
    do {                                                       \
        vst1q_s32(acc + 16 * i + 0, c##i##0);                  \
        vst1q_s32(acc + 16 * i + 4, c##i##1);                  \
        vst1q_s32(acc + 16 * i + 8, c##i##2);                  \
        vst1q_s32(acc + 16 * i + 12, c##i##3);                 \
    } while (0)

void qs8_gemm_4x16c4_neondot(size_t k_groups, const void *a, const void *b, int32_t *acc) {
    const int8_t *pa = (const int8_t *)a, *pb = (const int8_t *)b;
    int32x4_t c00 = vdupq_n_s32(0), c01 = c00, c02 = c00, c03 = c00;
    int32x4_t c10 = c00, c11 = c00, c12 = c00, c13 = c00;
    int32x4_t c20 = c00, c21 = c00, c22 = c00, c23 = c00;
    int32x4_t c30 = c00, c31 = c00, c32 = c00, c33 = c00;
    for (size_t g = 0; g < k_groups; g++, pa += 16, pb += 64) {
        const int8x16_t va = vld1q_s8(pa);                       /* rows 0..3 x 4 k */
        const int8x16_t vb0 = vld1q_s8(pb), vb1 = vld1q_s8(pb + 16);
        const int8x16_t vb2 = vld1q_s8(pb + 32), vb3 = vld1q_s8(pb + 48);   /* 4 columns x 4 k each */
        QK_DOT_ROW(0);
        QK_DOT_ROW(1);
        QK_DOT_ROW(2);
        QK_DOT_ROW(3);
    }
    QK_DOT_STORE(0);
    QK_DOT_STORE(1);
    QK_DOT_STORE(2);
    QK_DOT_STORE(3);
}
