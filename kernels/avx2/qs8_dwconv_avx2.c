/* Depthwise convolution pixel, AVX2: inputs widened to int32 minus the zero point,
 * times int16 weights (zero-folded) widened alike; vpmulld and vpaddd are exact for
 * any uint8/int8 values. The valid tap window is computed once per pixel, then 32
 * channels (four accumulators) at a time, 8 at a time, and the rest the portable way.
 * Channel multipliers other than 1 use the portable loop. */
#include <immintrin.h>
#include "qk_common.h"

static inline __m256i widen8(const uint8_t *p, int is_signed, __m256i za) {
    const __m128i raw = _mm_loadl_epi64((const __m128i *)p);
    return _mm256_sub_epi32(is_signed ? _mm256_cvtepi8_epi32(raw) : _mm256_cvtepu8_epi32(raw), za);
}

static inline __m256i weights8(const int16_t *w) {
    return _mm256_cvtepi16_epi32(_mm_loadu_si128((const __m128i *)w));
}

/* First and one-past-last tap index whose input coordinate lies inside [0, size). */
static inline void tap_window(ptrdiff_t origin, size_t dil, size_t taps, size_t size, size_t *lo, size_t *hi) {
    size_t a = 0, b = taps;
    while (a < b && origin + (ptrdiff_t)(a * dil) < 0) a++;
    while (b > a && origin + (ptrdiff_t)((b - 1) * dil) >= (ptrdiff_t)size) b--;
    *lo = a;
    *hi = b;
}

void qk_dw_pixel_avx2(const qk_dw_params *d, size_t pixel, int32_t *acc) {
    const qk_conv_geom *g = &d->g;
    if (d->mult != 1 || g->sc != 1) {
        qk_dw_channels_scalar(d, pixel, 0, g->cg, acc);
        return;
    }
    const size_t ch = g->cg;
    const size_t ox = pixel % g->out_w, oy = (pixel / g->out_w) % g->out_h, n = pixel / (g->out_w * g->out_h);
    const ptrdiff_t y0 = (ptrdiff_t)(oy * g->stride_y) - g->pad_top, x0 = (ptrdiff_t)(ox * g->stride_x) - g->pad_left;
    size_t ky0, ky1, kx0, kx1;
    tap_window(y0, g->dil_y, g->kh, g->in_h, &ky0, &ky1);
    tap_window(x0, g->dil_x, g->kw, g->in_w, &kx0, &kx1);
    const uint8_t *base = g->x + (ptrdiff_t)n * g->sn;
    const __m256i za = _mm256_set1_epi32(d->za);
    const int sgn = d->a_signed;
    size_t c0 = 0;
    for (; c0 + 32 <= ch; c0 += 32) {
        __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
        for (size_t ky = ky0; ky < ky1; ky++) {
            const uint8_t *row = base + (y0 + (ptrdiff_t)(ky * g->dil_y)) * g->sh + c0;
            const int16_t *wrow = d->w + ky * g->kw * ch + c0;
            for (size_t kx = kx0; kx < kx1; kx++) {
                const uint8_t *s = row + (x0 + (ptrdiff_t)(kx * g->dil_x)) * g->sw;
                const int16_t *w = wrow + kx * ch;
                a0 = _mm256_add_epi32(a0, _mm256_mullo_epi32(widen8(s, sgn, za), weights8(w)));
                a1 = _mm256_add_epi32(a1, _mm256_mullo_epi32(widen8(s + 8, sgn, za), weights8(w + 8)));
                a2 = _mm256_add_epi32(a2, _mm256_mullo_epi32(widen8(s + 16, sgn, za), weights8(w + 16)));
                a3 = _mm256_add_epi32(a3, _mm256_mullo_epi32(widen8(s + 24, sgn, za), weights8(w + 24)));
            }
        }
        _mm256_storeu_si256((__m256i *)(acc + c0), a0);
        _mm256_storeu_si256((__m256i *)(acc + c0 + 8), a1);
        _mm256_storeu_si256((__m256i *)(acc + c0 + 16), a2);
        _mm256_storeu_si256((__m256i *)(acc + c0 + 24), a3);
    }
    for (; c0 + 8 <= ch; c0 += 8) {
        __m256i a0 = _mm256_setzero_si256();
        for (size_t ky = ky0; ky < ky1; ky++) {
            const uint8_t *row = base + (y0 + (ptrdiff_t)(ky * g->dil_y)) * g->sh + c0;
            const int16_t *wrow = d->w + ky * g->kw * ch + c0;
            for (size_t kx = kx0; kx < kx1; kx++)
                a0 = _mm256_add_epi32(a0, _mm256_mullo_epi32(widen8(row + (x0 + (ptrdiff_t)(kx * g->dil_x)) * g->sw, sgn, za),
                                                             weights8(wrow + kx * ch)));
        }
        _mm256_storeu_si256((__m256i *)(acc + c0), a0);
    }
    if (c0 < ch) qk_dw_channels_scalar(d, pixel, c0, ch, acc);   /* the last channels */
}
