/* Depthwise convolution pixel, AVX2: channels 8 at a time, inputs widened to int32
 * minus the zero point, times int16 weights (zero-folded) widened alike; vpmulld and
 * vpaddd are exact for any uint8/int8 values. Channel multipliers other than 1 use the
 * portable loop. */
#include <immintrin.h>
#include "qk_common.h"


void qk_dw_pixel_avx2(const qk_dw_params *d, size_t pixel, int32_t *acc) {
    const qk_conv_geom *g = &d->g;
    if (d->mult != 1 || g->sc != 1) {
        qk_dw_channels_scalar(d, pixel, 0, g->cg, acc);
        return;
    }
    const size_t ch = g->cg;
    const size_t ox = pixel % g->out_w, oy = (pixel / g->out_w) % g->out_h, n = pixel / (g->out_w * g->out_h);
    const __m256i za = _mm256_set1_epi32(d->za);
    size_t c0 = 0;
    for (; c0 + 8 <= ch; c0 += 8) {
        __m256i a = _mm256_setzero_si256();
        for (size_t ky = 0; ky < g->kh; ky++) {
            const ptrdiff_t iy = (ptrdiff_t)(oy * g->stride_y + ky * g->dil_y) - g->pad_top;
            if (iy < 0 || iy >= (ptrdiff_t)g->in_h) continue;
            for (size_t kx = 0; kx < g->kw; kx++) {
                const ptrdiff_t ix = (ptrdiff_t)(ox * g->stride_x + kx * g->dil_x) - g->pad_left;
                if (ix < 0 || ix >= (ptrdiff_t)g->in_w) continue;
                const __m128i raw = _mm_loadl_epi64((const __m128i *)(g->x + (ptrdiff_t)n * g->sn + iy * g->sh +
                                                                      ix * g->sw + c0));
                const __m256i v = _mm256_sub_epi32(d->a_signed ? _mm256_cvtepi8_epi32(raw) : _mm256_cvtepu8_epi32(raw), za);
                const __m256i w = _mm256_cvtepi16_epi32(_mm_loadu_si128((const __m128i *)(d->w + (ky * g->kw + kx) * ch + c0)));
                a = _mm256_add_epi32(a, _mm256_mullo_epi32(v, w));
            }
        }
        _mm256_storeu_si256((__m256i *)(acc + c0), a);
    }
    if (c0 < ch) qk_dw_channels_scalar(d, pixel, c0, ch, acc);   /* the last channels */
}
