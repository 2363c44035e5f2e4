/* Template of the x86 float depthwise sum kernels (AVX2, FMA): 16 channels per step (8
 * where fewer than 16 are left: MobileNetV3's 8-channel layers), float weights, fp32 sums
 * (an fma per tap, taps in order: the same floats at either width). Define before including:
 *   QK_DW_NAME       the function
 *   QK_X_ELEM        bytes per stored input value (2: fp16, 4: fp32)
 *   QK_X_LOAD8(p)    8 input values at byte pointer p as a __m256 */
#include <immintrin.h>
#include "qk_conv.h"

size_t QK_DW_NAME(const qk_dw_params *d, size_t count, const uint8_t *const *ptrs, size_t ps,
                  ptrdiff_t step, size_t c0, int32_t *acc, size_t as, size_t m0, size_t *stored) {
    const size_t taps = d->taps, ch = d->g.cg;
    const float *init = (const float *)d->init;
    (void)m0;
    *stored = c0;
    if (ch - c0 < 16) {
        const size_t end8 = qk_dw_blocks_end(c0, 8, ch);
        for (size_t b = c0; b < end8; b += 8) {
            const size_t c = qk_dw_block(b, 8, ch);
            for (size_t i = 0; i < count; i++) {
                const uint8_t *const *pp = ptrs + i * ps;
                const ptrdiff_t off = (ptrdiff_t)i * step + (ptrdiff_t)(QK_X_ELEM * c);
                __m256 s = _mm256_loadu_ps(init + c);
                for (size_t t = 0; t < taps; t++)
                    s = _mm256_fmadd_ps(QK_X_LOAD8(pp[t] + off), _mm256_loadu_ps(d->wf + t * ch + c), s);
                _mm256_storeu_ps((float *)acc + i * as + c, s);
            }
        }
        return end8;
    }
    const size_t end = qk_dw_blocks_end(c0, 16, ch);
    for (size_t b = c0; b < end; b += 16) {
        const size_t c = qk_dw_block(b, 16, ch);
        for (size_t i = 0; i < count; i++) {
            const uint8_t *const *pp = ptrs + i * ps;
            const ptrdiff_t off = (ptrdiff_t)i * step + (ptrdiff_t)(QK_X_ELEM * c);
            __m256 lo = _mm256_loadu_ps(init + c), hi = _mm256_loadu_ps(init + c + 8);
            for (size_t t = 0; t < taps; t++) {
                const float *w = d->wf + t * ch + c;
                lo = _mm256_fmadd_ps(QK_X_LOAD8(pp[t] + off), _mm256_loadu_ps(w), lo);
                hi = _mm256_fmadd_ps(QK_X_LOAD8(pp[t] + off + 8 * QK_X_ELEM), _mm256_loadu_ps(w + 8), hi);
            }
            float *o = (float *)acc + i * as + c;
            _mm256_storeu_ps(o, lo);
            _mm256_storeu_ps(o + 8, hi);
        }
    }
    return end;
}
