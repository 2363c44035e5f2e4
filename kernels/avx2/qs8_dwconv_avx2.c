/* Depthwise convolution pixel, AVX2. The valid tap window is computed once per pixel;
 * then 16 channels at a time, taps in pairs through vpmaddwd (inputs minus the zero
 * point and zero-folded weights, both int16: exact); 8 channels at a time with
 * vpmulld; the rest the portable way. Channel multipliers other than 1 use the
 * portable loop. */
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

/* Two taps of 16 channels: inputs and weights interleaved per channel, so one vpmaddwd
 * adds both products (exact: |x - za| <= 255, |w - zw| <= 255). Lanes come out as
 * channels 0-3, 8-11 (lo) and 4-7, 12-15 (hi). */
static inline void tap_pair16(const uint8_t *x0, const uint8_t *x1, __m256i w0, __m256i w1, int sgn,
                              __m256i za16, __m256i *lo, __m256i *hi) {
    const __m128i r0 = _mm_loadu_si128((const __m128i *)x0), r1 = _mm_loadu_si128((const __m128i *)x1);
    const __m256i v0 = _mm256_sub_epi16(sgn ? _mm256_cvtepi8_epi16(r0) : _mm256_cvtepu8_epi16(r0), za16);
    const __m256i v1 = _mm256_sub_epi16(sgn ? _mm256_cvtepi8_epi16(r1) : _mm256_cvtepu8_epi16(r1), za16);
    *lo = _mm256_add_epi32(*lo, _mm256_madd_epi16(_mm256_unpacklo_epi16(v0, v1), _mm256_unpacklo_epi16(w0, w1)));
    *hi = _mm256_add_epi32(*hi, _mm256_madd_epi16(_mm256_unpackhi_epi16(v0, v1), _mm256_unpackhi_epi16(w0, w1)));
}

void qk_dw_pixel_avx2(const qk_dw_params *d, size_t n, size_t oy, size_t ox, int32_t *acc) {
    const qk_conv_geom *g = &d->g;
    if (d->mult != 1 || g->sc != 1) {
        qk_dw_channels_scalar(d, n, oy, ox, 0, g->cg, acc);
        return;
    }
    const size_t ch = g->cg;
    const ptrdiff_t y0 = (ptrdiff_t)(oy * g->stride_y) - g->pad_top, x0 = (ptrdiff_t)(ox * g->stride_x) - g->pad_left;
    size_t ky0, ky1, kx0, kx1;
    tap_window(y0, g->dil_y, g->kh, g->in_h, &ky0, &ky1);
    tap_window(x0, g->dil_x, g->kw, g->in_w, &kx0, &kx1);
    const uint8_t *base = g->x + (ptrdiff_t)n * g->sn;
    const int sgn = d->a_signed;
    const __m256i za16 = _mm256_set1_epi16((int16_t)d->za), za = _mm256_set1_epi32(d->za);
    size_t c0 = 0;
    for (; c0 + 16 <= ch; c0 += 16) {
        __m256i lo = _mm256_setzero_si256(), hi = lo;
        const uint8_t *px = NULL;           /* a tap waiting for its pair */
        __m256i pw = lo;
        for (size_t ky = ky0; ky < ky1; ky++) {
            const uint8_t *row = base + (y0 + (ptrdiff_t)(ky * g->dil_y)) * g->sh + c0;
            const int16_t *wrow = d->w + ky * g->kw * ch + c0;
            for (size_t kx = kx0; kx < kx1; kx++) {
                const uint8_t *xs = row + (x0 + (ptrdiff_t)(kx * g->dil_x)) * g->sw;
                const __m256i w = _mm256_loadu_si256((const __m256i *)(wrow + kx * ch));
                if (px == NULL) {
                    px = xs;
                    pw = w;
                } else {
                    tap_pair16(px, xs, pw, w, sgn, za16, &lo, &hi);
                    px = NULL;
                }
            }
        }
        if (px != NULL) tap_pair16(px, px, pw, _mm256_setzero_si256(), sgn, za16, &lo, &hi);   /* odd tap */
        _mm256_storeu_si256((__m256i *)(acc + c0), _mm256_permute2x128_si256(lo, hi, 0x20));
        _mm256_storeu_si256((__m256i *)(acc + c0 + 8), _mm256_permute2x128_si256(lo, hi, 0x31));
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
    if (c0 < ch) qk_dw_channels_scalar(d, n, oy, ox, c0, ch, acc);   /* the last channels */
}
