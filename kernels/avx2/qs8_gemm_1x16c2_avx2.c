/* int8 GEMV micro-kernel, AVX2: 1x16 tile, K in pairs; A int16 zero-folded, B int8
 * (half the memory traffic of int16 panels, which is what limits M = 1). B is
 * sign-extended in registers and multiplied with vpmaddwd: exact for any input.
 * B's zero point is applied by the output stage (row sum of A). Two K-pairs per
 * step on independent accumulators to overlap the loads. */
#include <immintrin.h>
#include "qk_gemm.h"

void qs8_gemm_1x16c2_avx2(size_t k_groups, const void *a, const void *b, int32_t *acc) {
    const int16_t *pa = (const int16_t *)a;
    const int8_t *pb = (const int8_t *)b;
    __m256i c0 = _mm256_setzero_si256(), c1 = c0, d0 = c0, d1 = c0;
    size_t g = 0;
    for (; g + 2 <= k_groups; g += 2, pa += 4, pb += 64) {
        const __m256i a0 = _mm256_set1_epi32(*(const int32_t *)pa);
        const __m256i a1 = _mm256_set1_epi32(*(const int32_t *)(pa + 2));
        c0 = _mm256_add_epi32(c0, _mm256_madd_epi16(a0, _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)pb))));
        c1 = _mm256_add_epi32(c1, _mm256_madd_epi16(a0, _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(pb + 16)))));
        d0 = _mm256_add_epi32(d0, _mm256_madd_epi16(a1, _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(pb + 32)))));
        d1 = _mm256_add_epi32(d1, _mm256_madd_epi16(a1, _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(pb + 48)))));
    }
    if (g < k_groups) {
        const __m256i a0 = _mm256_set1_epi32(*(const int32_t *)pa);
        c0 = _mm256_add_epi32(c0, _mm256_madd_epi16(a0, _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)pb))));
        c1 = _mm256_add_epi32(c1, _mm256_madd_epi16(a0, _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(pb + 16)))));
    }
    _mm256_storeu_si256((__m256i *)acc, _mm256_add_epi32(c0, d0));
    _mm256_storeu_si256((__m256i *)(acc + 8), _mm256_add_epi32(c1, d1));
}
