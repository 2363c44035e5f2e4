/* int8 GEMM micro-kernel, AVX2: 6x16 tile, K in quads; A uint8, B int8 whose every
 * pair along K has |b(k)| + |b(k+1)| <= 128 (7-bit weights, as ONNX Runtime advises
 * for AVX2, always qualify). Then vpmaddubsw's int16 pair sums cannot saturate
 * (255 * 128 = 32640), so it is exact, and it multiplies twice the pairs per
 * instruction of vpmaddwd. The pack-time check on the weights decides; zero points
 * are applied by the output stage with column and row sums. */
#include <immintrin.h>
#include "qk_common.h"
#include "qk_avx2.h"

#define BCAST(p) _mm256_set1_epi32(*(const int32_t *)(p))
#define ROW(i)                                                                              \
    a = BCAST(pa + (i) * kp);                                                               \
    c##i##0 = _mm256_add_epi32(c##i##0, _mm256_madd_epi16(_mm256_maddubs_epi16(a, b0), ones)); \
    c##i##1 = _mm256_add_epi32(c##i##1, _mm256_madd_epi16(_mm256_maddubs_epi16(a, b1), ones));
#define STORE(i)                                                         \
    _mm256_storeu_si256((__m256i *)(acc + 16 * (i)), c##i##0);           \
    _mm256_storeu_si256((__m256i *)(acc + 16 * (i) + 8), c##i##1);

void qs8_gemm_6x16c4_u8s7_avx2(size_t k_groups, const void *a_, const void *b_, int32_t *acc) {
    const uint8_t *pa = (const uint8_t *)a_;
    const int8_t *pb = (const int8_t *)b_;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i c00 = _mm256_setzero_si256(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256i c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    __m256i a, b0, b1;
    const size_t kp = 4 * k_groups;   /* row stride of the row-major A panel */
    for (size_t g = 0; g < k_groups; g++) {
        b0 = _mm256_loadu_si256((const __m256i *)pb);
        b1 = _mm256_loadu_si256((const __m256i *)(pb + 32));
        ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5)
        pa += 4;
        pb += 64;
    }
    STORE(0) STORE(1) STORE(2) STORE(3) STORE(4) STORE(5)
}

void qs8_gemm_6x16c4_u8s7_fused_avx2(size_t k_groups, const void *a_, const void *b_, size_t m0, size_t n0,
                                     const qk_out_params *p, void *c, size_t c_stride) {
    int32_t acc[6 * 16];
    qs8_gemm_6x16c4_u8s7_avx2(k_groups, a_, b_, acc);
    qk_store_16cols_avx2(6, acc, 16, m0, n0, p, c, c_stride);
}
