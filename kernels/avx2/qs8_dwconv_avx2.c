/* Depthwise sum kernel, AVX2: 16 channels at a time, taps in pairs through vpmaddwd.
 * Inputs widen to int16 as they are (u8 or s8) and weights are zero-folded int16, so
 * every product is below 2^16 in magnitude and a pair's sum cannot saturate: exact.
 * For each block of channels the pair-interleaved weights are built once and serve all
 * pixels of the call; 3x3 and 5x5 kernels get unrolled copies. */
#include <immintrin.h>
#include "qk_common.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

ALWAYS_INLINE __m256i widen16(const uint8_t *p, int sgn) {
    const __m128i raw = _mm_loadu_si128((const __m128i *)p);
    return sgn ? _mm256_cvtepi8_epi16(raw) : _mm256_cvtepu8_epi16(raw);
}

/* vpmaddwd lanes come out as channels 0-3, 8-11 (lo) and 4-7, 12-15 (hi). */
ALWAYS_INLINE size_t sum_blocks(size_t count, size_t taps, const uint8_t *const *ptrs, size_t c0, size_t c1,
                                const int16_t *w, size_t ws, const int32_t *init, int sgn, int32_t *acc,
                                size_t as) {
    enum { MAX_PAIRS = (QK_DW_MAX_TAPS + 1) / 2 };
    __m256i wlo[MAX_PAIRS], whi[MAX_PAIRS];
    const size_t pairs = (taps + 1) / 2;
    size_t c = c0;
    for (; c + 16 <= c1; c += 16) {
        for (size_t q = 0; q < pairs; q++) {
            const __m256i w0 = _mm256_loadu_si256((const __m256i *)(w + 2 * q * ws + c));
            const __m256i w1 = 2 * q + 1 < taps ? _mm256_loadu_si256((const __m256i *)(w + (2 * q + 1) * ws + c))
                                                : _mm256_setzero_si256();
            wlo[q] = _mm256_unpacklo_epi16(w0, w1);
            whi[q] = _mm256_unpackhi_epi16(w0, w1);
        }
        const __m256i i0 = _mm256_loadu_si256((const __m256i *)(init + c));
        const __m256i i1 = _mm256_loadu_si256((const __m256i *)(init + c + 8));
        const __m256i init_lo = _mm256_permute2x128_si256(i0, i1, 0x20);
        const __m256i init_hi = _mm256_permute2x128_si256(i0, i1, 0x31);
        for (size_t i = 0; i < count; i++) {
            const uint8_t *const *pp = ptrs + i * taps;
            __m256i lo = init_lo, hi = init_hi;
            for (size_t q = 0; q < pairs; q++) {
                const __m256i x0 = widen16(pp[2 * q] + c, sgn);
                const __m256i x1 = 2 * q + 1 < taps ? widen16(pp[2 * q + 1] + c, sgn) : _mm256_setzero_si256();
                lo = _mm256_add_epi32(lo, _mm256_madd_epi16(_mm256_unpacklo_epi16(x0, x1), wlo[q]));
                hi = _mm256_add_epi32(hi, _mm256_madd_epi16(_mm256_unpackhi_epi16(x0, x1), whi[q]));
            }
            _mm256_storeu_si256((__m256i *)(acc + i * as + c), _mm256_permute2x128_si256(lo, hi, 0x20));
            _mm256_storeu_si256((__m256i *)(acc + i * as + c + 8), _mm256_permute2x128_si256(lo, hi, 0x31));
        }
    }
    return c;
}

size_t qk_dw_sum_avx2(size_t count, size_t taps, const uint8_t *const *ptrs, size_t c0, size_t c1,
                      const int16_t *w, size_t ws, const int32_t *init, int a_signed, int32_t *acc, size_t as) {
    /* constant tap counts and signedness let the compiler unroll and drop the branches */
    if (taps == 9)
        return a_signed ? sum_blocks(count, 9, ptrs, c0, c1, w, ws, init, 1, acc, as)
                        : sum_blocks(count, 9, ptrs, c0, c1, w, ws, init, 0, acc, as);
    if (taps == 25)
        return a_signed ? sum_blocks(count, 25, ptrs, c0, c1, w, ws, init, 1, acc, as)
                        : sum_blocks(count, 25, ptrs, c0, c1, w, ws, init, 0, acc, as);
    return a_signed ? sum_blocks(count, taps, ptrs, c0, c1, w, ws, init, 1, acc, as)
                    : sum_blocks(count, taps, ptrs, c0, c1, w, ws, init, 0, acc, as);
}
