/* fp16 depthwise sum kernel, x86 (F16C, FMA): 16 channels per step, fp16 inputs converted
 * as they load, float weights, fp32 sums. */
#include <immintrin.h>
#include "qk_conv.h"

static inline __m256 load8h(const uint8_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }

size_t qk_dw_sum_f16_avx2(const qk_dw_params *d, size_t count, const uint8_t *const *ptrs, size_t ps,
                          ptrdiff_t step, size_t c0, int32_t *acc, size_t as, size_t m0, size_t *stored) {
    const size_t taps = d->taps, ch = d->g.cg;
    const float *init = (const float *)d->init;
    (void)m0;
    *stored = c0;
    const size_t end = qk_dw_blocks_end(c0, 16, ch);
    for (size_t b = c0; b < end; b += 16) {
        const size_t c = qk_dw_block(b, 16, ch);
        for (size_t i = 0; i < count; i++) {
            const uint8_t *const *pp = ptrs + i * ps;
            const ptrdiff_t off = (ptrdiff_t)i * step + (ptrdiff_t)(2 * c);
            __m256 lo = _mm256_loadu_ps(init + c), hi = _mm256_loadu_ps(init + c + 8);
            for (size_t t = 0; t < taps; t++) {
                const float *w = d->wf + t * ch + c;
                lo = _mm256_fmadd_ps(load8h(pp[t] + off), _mm256_loadu_ps(w), lo);
                hi = _mm256_fmadd_ps(load8h(pp[t] + off + 16), _mm256_loadu_ps(w + 8), hi);
            }
            float *o = (float *)acc + i * as + c;
            _mm256_storeu_ps(o, lo);
            _mm256_storeu_ps(o + 8, hi);
        }
    }
    return end;
}
