/* Template of the x86 float depthwise sum kernels (AVX2, FMA): 16 channels per step (8
 * where fewer than 16 are left: MobileNetV3's 8-channel layers), float weights, fp32 sums
 * (an fma per tap, taps in order: the same floats at either width). Define before including:
 *   QK_DW_NAME       the function
 *   QK_X_ELEM        bytes per stored input value (2: fp16, 4: fp32)
 *   QK_X_LOAD8(p)    8 input values at byte pointer p as a __m256 */
#include <immintrin.h>
#include "qk_conv.h"

/* Channels [c, c + 8 * NV) of count pixels (NV = 1 or 2, a constant where inlined). */
static inline __attribute__((always_inline)) void dw_block(const qk_dw_params *d, size_t count,
                                                              const uint8_t *const *ptrs, size_t ps, ptrdiff_t step,
                                                              size_t c, int32_t *acc, size_t as, const int nv) {
    const size_t taps = d->taps, ch = d->g.cg;
    const float *init = (const float *)d->init;
    for (size_t i = 0; i < count; i++) {
        const uint8_t *const *pp = ptrs + i * ps;
        const ptrdiff_t off = (ptrdiff_t)i * step + (ptrdiff_t)(QK_X_ELEM * c);
        __m256 s[2];
        for (int v = 0; v < nv; v++) s[v] = _mm256_loadu_ps(init + c + 8 * v);
        for (size_t t = 0; t < taps; t++)
            for (int v = 0; v < nv; v++)
                s[v] = _mm256_fmadd_ps(QK_X_LOAD8(pp[t] + off + 8 * QK_X_ELEM * v),
                                       _mm256_loadu_ps(d->wf + t * ch + c + 8 * v), s[v]);
        for (int v = 0; v < nv; v++) _mm256_storeu_ps((float *)acc + i * as + c + 8 * v, s[v]);
    }
}

size_t QK_DW_NAME(const qk_dw_params *d, size_t count, const uint8_t *const *ptrs, size_t ps,
                  ptrdiff_t step, size_t c0, int32_t *acc, size_t as, size_t m0, size_t *stored) {
    const size_t ch = d->g.cg, width = ch - c0 < 16 ? 8 : 16;
    (void)m0;
    *stored = c0;
    const size_t end = qk_dw_blocks_end(c0, width, ch);
    for (size_t b = c0; b < end; b += width) {
        if (width == 16)
            dw_block(d, count, ptrs, ps, step, qk_dw_block(b, 16, ch), acc, as, 2);
        else
            dw_block(d, count, ptrs, ps, step, qk_dw_block(b, 8, ch), acc, as, 1);
    }
    return end;
}
