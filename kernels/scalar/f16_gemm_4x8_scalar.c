/* fp16 GEMM micro-kernel, portable C: the fp16 reference path. Sums are float (fp32),
 * products of fp16 values exact in fp32; one rounding to fp16 in the output stage. */
#include <string.h>
#include "qk_gemm.h"

/* 4 x 8 tile; A a QK_PACK_F32_ROWS panel (4 rows of k), B a QK_PACK_F32 panel
 * (k-major). acc holds floats. */
void f16_gemm_4x8_scalar(size_t k, const void *a, const void *b, int32_t *acc) {
    const float *ap = (const float *)a, *bp = (const float *)b;
    float c[4][8] = {{0}};
    for (size_t kk = 0; kk < k; kk++, bp += 8)
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 8; j++) c[i][j] += ap[i * k + kk] * bp[j];
    memcpy(acc, c, sizeof c);
}
