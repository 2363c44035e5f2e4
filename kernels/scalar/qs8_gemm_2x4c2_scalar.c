/* int8 GEMM micro-kernel, portable C: 2x4 tile, K in pairs, int16 zero-folded panels
 * (A row-major, B in pairs of K per column). */
#include "qk_gemm.h"

void qs8_gemm_2x4c2_scalar(size_t k_groups, const void *a, const void *b, int32_t *acc) {
    const int16_t *pa = (const int16_t *)a, *pb = (const int16_t *)b;
    const size_t kp = 2 * k_groups;   /* row stride of the row-major A panel */
    uint32_t c[2][4] = {{0}};  /* unsigned: wraps like int32 hardware adds */
    for (size_t g = 0; g < k_groups; g++, pa += 2, pb += 4 * 2)
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 4; j++)
                c[i][j] += (uint32_t)((int32_t)pa[i * kp] * pb[j * 2] + (int32_t)pa[i * kp + 1] * pb[j * 2 + 1]);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 4; j++) acc[i * 4 + j] = (int32_t)c[i][j];
}
