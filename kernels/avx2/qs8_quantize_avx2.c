/* AVX2 quantize row, 32 values per step; bit-identical to the scalar one (IEEE division,
 * round half to even, the same saturation). */
#include <immintrin.h>
#include "qk_quant.h"

/* Eight values to int32 in [lo, hi]; NaN lanes are or-ed into *nan. */
static inline __m256i quantize8(__m256 x, __m256 s, __m256 z, __m256 lo, __m256 hi, __m256 *nan) {
    __m256 v = _mm256_div_ps(x, s);
    *nan = _mm256_or_ps(*nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));   /* x / s is NaN only for NaN x */
    v = _mm256_add_ps(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), z);
    return _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v, lo), hi));
}

/* 4 x 8 int32 (already in range) to 32 bytes, in order. */
static inline void store32(void *q, __m256i v0, __m256i v1, __m256i v2, __m256i v3, int out_signed) {
    const __m256i a = _mm256_packs_epi32(v0, v1), b = _mm256_packs_epi32(v2, v3);
    const __m256i c = out_signed ? _mm256_packs_epi16(a, b) : _mm256_packus_epi16(a, b);
    _mm256_storeu_si256((__m256i *)q, _mm256_permutevar8x32_epi32(c, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
}

size_t qk_quantize_row_avx2(size_t n, const float *x, const float *scale, const int32_t *zp, int per_elem,
                            int out_signed, void *q, int *nan_found) {
    const __m256 lo = _mm256_set1_ps(out_signed ? -128.0f : 0.0f), hi = _mm256_set1_ps(out_signed ? 127.0f : 255.0f);
    __m256 nan = _mm256_setzero_ps();
    uint8_t *out = (uint8_t *)q;
    size_t i = 0;
    if (!per_elem) {
        const __m256 s = _mm256_set1_ps(scale[0]), z = _mm256_set1_ps((float)zp[0]);
        for (; i + 32 <= n; i += 32)
            store32(out + i, quantize8(_mm256_loadu_ps(x + i), s, z, lo, hi, &nan),
                    quantize8(_mm256_loadu_ps(x + i + 8), s, z, lo, hi, &nan),
                    quantize8(_mm256_loadu_ps(x + i + 16), s, z, lo, hi, &nan),
                    quantize8(_mm256_loadu_ps(x + i + 24), s, z, lo, hi, &nan), out_signed);
    } else {
        for (; i + 32 <= n; i += 32) {
            __m256i v[4];
            for (int j = 0; j < 4; j++) {
                const size_t o = i + 8 * (size_t)j;
                const __m256 z = _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(zp + o)));
                v[j] = quantize8(_mm256_loadu_ps(x + o), _mm256_loadu_ps(scale + o), z, lo, hi, &nan);
            }
            store32(out + i, v[0], v[1], v[2], v[3], out_signed);
        }
    }
    *nan_found |= _mm256_movemask_ps(nan) != 0;
    return i;
}
