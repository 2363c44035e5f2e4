/* AVX2 dequantize row, 32 values per step per tensor, 8 per channel; bit-identical to the
 * scalar one (one float32 rounding). */
#include <immintrin.h>
#include "qk_quant.h"

/* Eight bytes at q, widened to int32. */
static inline __m256i widen8(const uint8_t *q, int in_signed) {
    const __m128i b = _mm_loadl_epi64((const __m128i *)q);
    return in_signed ? _mm256_cvtepi8_epi32(b) : _mm256_cvtepu8_epi32(b);
}

size_t qk_dequantize_row_avx2(size_t n, const void *q, int in_signed, const float *scale, const int32_t *zp,
                              int per_elem, float *y) {
    const uint8_t *in = (const uint8_t *)q;
    size_t i = 0;
    if (!per_elem) {
        const __m256 s = _mm256_set1_ps(scale[0]);
        const __m256i z = _mm256_set1_epi32(zp[0]);
        for (; i + 32 <= n; i += 32)
            for (int j = 0; j < 32; j += 8)
                _mm256_storeu_ps(y + i + j,
                                 _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(widen8(in + i + j, in_signed), z)), s));
    } else {
        for (; i + 8 <= n; i += 8) {
            const __m256i d = _mm256_sub_epi32(widen8(in + i, in_signed), _mm256_loadu_si256((const __m256i *)(zp + i)));
            _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_cvtepi32_ps(d), _mm256_loadu_ps(scale + i)));
        }
    }
    return i;
}
