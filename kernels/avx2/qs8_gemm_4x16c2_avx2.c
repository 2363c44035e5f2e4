/* int8 GEMM micro-kernel, AVX2: 4x16 tile, K in pairs, int16 zero-folded panels.
 * vpmaddwd multiplies int16 pairs into int32 without saturation, so the result is
 * exact for any uint8/int8 inputs and zero points (unlike vpmaddubsw). Accumulators
 * are named variables, not an array: GCC otherwise copies every one each step. */
#include <immintrin.h>
#include "qk_common.h"

#define BCAST(p) _mm256_set1_epi32(*(const int32_t *)(p))
#define ROW(i)                                                           \
    a##i = BCAST(pa + (i) * kp);                                          \
    c##i##0 = _mm256_add_epi32(c##i##0, _mm256_madd_epi16(a##i, b0));   \
    c##i##1 = _mm256_add_epi32(c##i##1, _mm256_madd_epi16(a##i, b1));
#define STORE(i)                                                         \
    _mm256_storeu_si256((__m256i *)(acc + 16 * (i)), c##i##0);           \
    _mm256_storeu_si256((__m256i *)(acc + 16 * (i) + 8), c##i##1);

void qs8_gemm_4x16c2_avx2(size_t k_groups, const void *a, const void *b, int32_t *acc) {
    const int16_t *pa = (const int16_t *)a, *pb = (const int16_t *)b;
    __m256i c00 = _mm256_setzero_si256(), c01 = c00, c10 = c00, c11 = c00;
    __m256i c20 = c00, c21 = c00, c30 = c00, c31 = c00;
    __m256i a0, a1, a2, a3, b0, b1;
    const size_t kp = 2 * k_groups;   /* row stride of the row-major A panel */
    for (size_t g = 0; g < k_groups; g++) {
        b0 = _mm256_loadu_si256((const __m256i *)pb);
        b1 = _mm256_loadu_si256((const __m256i *)(pb + 16));
        ROW(0) ROW(1) ROW(2) ROW(3)
        pa += 2;
        pb += 32;
    }
    STORE(0) STORE(1) STORE(2) STORE(3)
}
