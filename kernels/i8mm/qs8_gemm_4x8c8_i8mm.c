/* int8 GEMM micro-kernel, NEON i8mm (armv8.2-a+i8mm): 4x8 tile, K in groups of 8,
 * int8 panels (QK_PACK_S8; zero points are folded in by the output stage). SMMLA
 * multiplies a 2x8 block of A rows by a 2x8 block of B columns into a 2x2 int32
 * tile [r0c0 r0c1 r1c0 r1c1]: 2 row pairs x 4 column pairs = 8 accumulators, which
 * are unzipped into rows at the end. Exact int8 products summed in int32. */
#include <arm_neon.h>
#include "qk_gemm.h"

void qs8_gemm_4x8c8_i8mm(size_t k_groups, const void *a, const void *b, int32_t *acc) {
    const int8_t *pa = (const int8_t *)a, *pb = (const int8_t *)b;
    int32x4_t c[2][4];   /* [row pair][column pair] */
    for (int r = 0; r < 2; r++)
        for (int q = 0; q < 4; q++) c[r][q] = vdupq_n_s32(0);
    for (size_t g = 0; g < k_groups; g++, pa += 32, pb += 64) {
        const int8x16_t a01 = vld1q_s8(pa), a23 = vld1q_s8(pa + 16);
        for (int q = 0; q < 4; q++) {
            const int8x16_t bq = vld1q_s8(pb + 16 * q);   /* columns 2q, 2q+1 */
            c[0][q] = vmmlaq_s32(c[0][q], a01, bq);
            c[1][q] = vmmlaq_s32(c[1][q], a23, bq);
        }
    }
    for (int r = 0; r < 2; r++) {
        int32_t *even = acc + (2 * r) * 8, *odd = even + 8;
        for (int h = 0; h < 2; h++) {   /* columns 4h..4h+3 from column pairs 2h, 2h+1 */
            const int64x2_t x = vreinterpretq_s64_s32(c[r][2 * h]), y = vreinterpretq_s64_s32(c[r][2 * h + 1]);
            vst1q_s32(even + 4 * h, vreinterpretq_s32_s64(vzip1q_s64(x, y)));
            vst1q_s32(odd + 4 * h, vreinterpretq_s32_s64(vzip2q_s64(x, y)));
        }
    }
}
