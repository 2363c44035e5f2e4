/* Template of the AVX2 6x16 int8 GEMM micro-kernels (and their fused entries). The
 * kernels differ only in the multiply of one K-group, QK_DOT; the rest is shared byte for
 * byte: per group, 4 bytes of each row of A (2 int16 or 4 uint8, broadcast) and 64 bytes
 * of B (16 columns x 2 int16 or x 4 int8, two vectors). A panels are row-major (row stride
 * 4 * k_groups bytes), B panels grouped (qk_pack.h). Define before including:
 *   QK_GEMM_NAME, QK_FUSED_NAME  the two functions
 *   QK_DOT(a, b)                 8 int32 sums of one group for 8 columns; `ones` (int16 1s)
 *                                is in scope
 *   or QK_MAC(c, a, b)           c plus those sums, in one instruction (VNNI's vpdpbusd;
 *                                kernels/avxvnni uses this template too) */
#include <immintrin.h>
#include "qk_avx2.h"
#ifndef QK_MAC
#define QK_MAC(c, a, b) _mm256_add_epi32(c, QK_DOT(a, b))
#endif

#define QK_ROW(i)                                                            \
    a = _mm256_set1_epi32(*(const int32_t *)(pa + (i) * kp));                \
    c##i##0 = QK_MAC(c##i##0, a, b0);                                        \
    c##i##1 = QK_MAC(c##i##1, a, b1);
#define QK_STORE(i)                                                          \
    _mm256_storeu_si256((__m256i *)(acc + 16 * (i)), c##i##0);               \
    _mm256_storeu_si256((__m256i *)(acc + 16 * (i) + 8), c##i##1);

void QK_GEMM_NAME(size_t k_groups, const void *a_, const void *b_, int32_t *acc) {
    const uint8_t *pa = (const uint8_t *)a_, *pb = (const uint8_t *)b_;
    const __m256i ones = _mm256_set1_epi16(1);
    (void)ones;
    __m256i c00 = _mm256_setzero_si256(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256i c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    __m256i a, b0, b1;
    const size_t kp = 4 * k_groups;   /* row stride of the row-major A panel, in bytes */
    for (size_t g = 0; g < k_groups; g++) {
        b0 = _mm256_loadu_si256((const __m256i *)pb);
        b1 = _mm256_loadu_si256((const __m256i *)(pb + 32));
        QK_ROW(0) QK_ROW(1) QK_ROW(2) QK_ROW(3) QK_ROW(4) QK_ROW(5)
        pa += 4;
        pb += 64;
    }
    QK_STORE(0) QK_STORE(1) QK_STORE(2) QK_STORE(3) QK_STORE(4) QK_STORE(5)
}

/* Full tiles of int32 or fp32 output: the tile goes through the 16-wide epilogue instead of
 * the generic output stage. (Requantizing straight from the accumulator registers made GCC
 * spill them inside the loop.) */
void QK_FUSED_NAME(size_t k_groups, const void *a_, const void *b_, size_t m0, size_t n0, size_t nc,
                   const qk_out_params *p, void *c, size_t c_stride) {
    int32_t acc[6 * 16];
    (void)nc;   /* NR = 16: always the whole tile */
    QK_GEMM_NAME(k_groups, a_, b_, acc);
    qk_store_16cols_avx2(6, acc, 16, m0, n0, p, c, c_stride);
}

#undef QK_MAC
#undef QK_ROW
#undef QK_STORE
