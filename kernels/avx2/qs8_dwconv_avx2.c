/* Depthwise sum kernel, AVX2: 16 channels at a time, taps in pairs through vpmaddwd.
 * Inputs widen to int16 as they are (u8 or s8) and weights are zero-folded int16, so
 * every product is below 2^16 in magnitude and a pair's sum cannot saturate: exact.
 * For each block of channels the pair-interleaved weights are built once and serve all
 * pixels of the call; 3x3 and 5x5 kernels get unrolled copies. */
#include <immintrin.h>
#include "qk_avx2.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

ALWAYS_INLINE __m256i widen16(const uint8_t *p, int sgn) {
    const __m128i raw = _mm_loadu_si128((const __m128i *)p);
    return sgn ? _mm256_cvtepi8_epi16(raw) : _mm256_cvtepu8_epi16(raw);
}

/* vpmaddwd lanes come out as channels 0-3, 8-11 (lo) and 4-7, 12-15 (hi). */
ALWAYS_INLINE size_t sum_blocks(const qk_dw_params *d, size_t count, size_t taps, int sgn, const uint8_t *const *ptrs,
                                size_t ps, ptrdiff_t step, size_t c0, int32_t *acc, size_t as, size_t m0,
                                size_t *stored) {
    enum { MAX_PAIRS = (QK_DW_MAX_TAPS + 1) / 2 };
    __m256i wlo[MAX_PAIRS], whi[MAX_PAIRS];
    const size_t pairs = (taps + 1) / 2, ch = d->g.cg;
    const int16_t *w = d->w;
    const qk_out_params *out = d->out;
    const size_t end = qk_dw_blocks_end(c0, 16, ch);
    for (size_t b = c0; b < end; b += 16) {
        const size_t c = qk_dw_block(b, 16, ch);
        for (size_t q = 0; q < pairs; q++) {
            const __m256i w0 = _mm256_loadu_si256((const __m256i *)(w + 2 * q * ch + c));
            const __m256i w1 = 2 * q + 1 < taps ? _mm256_loadu_si256((const __m256i *)(w + (2 * q + 1) * ch + c))
                                                : _mm256_setzero_si256();
            wlo[q] = _mm256_unpacklo_epi16(w0, w1);
            whi[q] = _mm256_unpackhi_epi16(w0, w1);
        }
        const __m256i i0 = _mm256_loadu_si256((const __m256i *)(d->init + c));
        const __m256i i1 = _mm256_loadu_si256((const __m256i *)(d->init + c + 8));
        const __m256i init_lo = _mm256_permute2x128_si256(i0, i1, 0x20);
        const __m256i init_hi = _mm256_permute2x128_si256(i0, i1, 0x31);
        for (size_t i = 0; i < count; i++) {
            const uint8_t *const *pp = ptrs + i * ps;
            const ptrdiff_t off = (ptrdiff_t)i * step + (ptrdiff_t)c;
            __m256i lo = init_lo, hi = init_hi;
            for (size_t q = 0; q < pairs; q++) {
                const __m256i x0 = widen16(pp[2 * q] + off, sgn);
                const __m256i x1 = 2 * q + 1 < taps ? widen16(pp[2 * q + 1] + off, sgn) : _mm256_setzero_si256();
                lo = _mm256_add_epi32(lo, _mm256_madd_epi16(_mm256_unpacklo_epi16(x0, x1), wlo[q]));
                hi = _mm256_add_epi32(hi, _mm256_madd_epi16(_mm256_unpackhi_epi16(x0, x1), whi[q]));
            }
            _mm256_storeu_si256((__m256i *)(acc + i * as + c), _mm256_permute2x128_si256(lo, hi, 0x20));
            _mm256_storeu_si256((__m256i *)(acc + i * as + c + 8), _mm256_permute2x128_si256(lo, hi, 0x31));
        }
        /* the block's output while its sums are in L1 */
        if (out) qk_store_16cols_avx2(count, acc + c, as, m0, c, out, d->c, d->c_stride);
    }
    *stored = out ? end : c0;
    return end;
}

size_t qk_dw_sum_avx2(const qk_dw_params *d, size_t count, const uint8_t *const *ptrs, size_t ps, ptrdiff_t step,
                      size_t c0, int32_t *acc, size_t as, size_t m0, size_t *stored) {
    /* constant tap counts and signedness let the compiler unroll and drop the branches */
#define QK_DW_SUM(T, S) sum_blocks(d, count, T, S, ptrs, ps, step, c0, acc, as, m0, stored)
    const int sgn = d->a_signed;
    if (d->taps == 9) return sgn ? QK_DW_SUM(9, 1) : QK_DW_SUM(9, 0);
    if (d->taps == 25) return sgn ? QK_DW_SUM(25, 1) : QK_DW_SUM(25, 0);
    return sgn ? QK_DW_SUM(d->taps, 1) : QK_DW_SUM(d->taps, 0);
#undef QK_DW_SUM
}
