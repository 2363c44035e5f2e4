/* int8 GEMM micro-kernel, AVX2: 4x16 tile, K in pairs, int16 zero-folded panels.
 * vpmaddwd multiplies int16 pairs into int32 without saturation, so the result is
 * exact for any uint8/int8 inputs and zero points (unlike vpmaddubsw). */
#include <immintrin.h>
#include "qk_common.h"

#define MR 4

void qs8_gemm_4x16c2_avx2(size_t k_groups, const void *a, const void *b, int32_t *acc) {
    const int16_t *pa = (const int16_t *)a, *pb = (const int16_t *)b;
    __m256i c0[MR], c1[MR];
    for (int i = 0; i < MR; i++) c0[i] = c1[i] = _mm256_setzero_si256();
    for (size_t g = 0; g < k_groups; g++) {
        const __m256i b0 = _mm256_loadu_si256((const __m256i *)pb);
        const __m256i b1 = _mm256_loadu_si256((const __m256i *)(pb + 16));
        for (int i = 0; i < MR; i++) {
            int32_t pair;
            __builtin_memcpy(&pair, pa + 2 * i, 4);
            const __m256i ai = _mm256_set1_epi32(pair);
            c0[i] = _mm256_add_epi32(c0[i], _mm256_madd_epi16(ai, b0));
            c1[i] = _mm256_add_epi32(c1[i], _mm256_madd_epi16(ai, b1));
        }
        pa += 2 * MR;
        pb += 32;
    }
    for (int i = 0; i < MR; i++) {
        _mm256_storeu_si256((__m256i *)(acc + 16 * i), c0[i]);
        _mm256_storeu_si256((__m256i *)(acc + 16 * i + 8), c1[i]);
    }
}
