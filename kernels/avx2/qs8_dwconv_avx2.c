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
    /* The taps inside the input: byte offsets and weight rows. A pixel whose whole window
     * is inside takes the offsets prepared once per call; a border pixel gathers its own.
     * Then each block of 16 channels goes through the taps in pairs, without branches. */
    enum { MAX_TAPS = QK_DW_MAX_TAPS };
    ptrdiff_t local_off[MAX_TAPS];
    const ptrdiff_t *xoff = local_off;
    size_t taps = 0;
    const size_t window = (ky1 - ky0) * (kx1 - kx0);
    const int full = ky0 == 0 && kx0 == 0 && ky1 == g->kh && kx1 == g->kw && d->taps;
    const ptrdiff_t origin = y0 * g->sh + x0 * g->sw;   /* may be negative: only origin + offset is an address */
    if (full) {
        xoff = d->tap_offset;
        taps = d->taps;
    } else if (window <= MAX_TAPS) {
        for (size_t ky = ky0; ky < ky1; ky++)
            for (size_t kx = kx0; kx < kx1; kx++)
                local_off[taps++] = (ptrdiff_t)(ky * g->dil_y) * g->sh + (ptrdiff_t)(kx * g->dil_x) * g->sw;
    }
    const int16_t *wbase = d->w + (ky0 * g->kw + kx0) * ch;   /* weight row of the first valid tap */
    size_t c0 = 0;
    for (; window <= MAX_TAPS && c0 + 16 <= ch; c0 += 16) {
        __m256i lo = _mm256_setzero_si256(), hi = lo;
        size_t t = 0;
        const uint8_t *x = base + c0;
        if (full) {   /* weights are tap-ordered: row t is tap t */
            const int16_t *w = d->w + c0;
            for (; t + 2 <= taps; t += 2)
                tap_pair16(x + (origin + xoff[t]), x + (origin + xoff[t + 1]), _mm256_loadu_si256((const __m256i *)(w + t * ch)),
                           _mm256_loadu_si256((const __m256i *)(w + (t + 1) * ch)), sgn, za16, &lo, &hi);
            if (t < taps)
                tap_pair16(x + (origin + xoff[t]), x + (origin + xoff[t]), _mm256_loadu_si256((const __m256i *)(w + t * ch)),
                           _mm256_setzero_si256(), sgn, za16, &lo, &hi);
        } else {      /* border: the window's rows are kx1 - kx0 taps of a kw-wide weight row */
            const size_t cols = kx1 - kx0;
            for (; t + 2 <= taps; t += 2) {
                const int16_t *w0 = wbase + ((t / cols) * g->kw + t % cols) * ch + c0;
                const int16_t *w1 = wbase + (((t + 1) / cols) * g->kw + (t + 1) % cols) * ch + c0;
                tap_pair16(x + (origin + xoff[t]), x + (origin + xoff[t + 1]), _mm256_loadu_si256((const __m256i *)w0),
                           _mm256_loadu_si256((const __m256i *)w1), sgn, za16, &lo, &hi);
            }
            if (t < taps) {
                const int16_t *w0 = wbase + ((t / cols) * g->kw + t % cols) * ch + c0;
                tap_pair16(x + (origin + xoff[t]), x + (origin + xoff[t]), _mm256_loadu_si256((const __m256i *)w0),
                           _mm256_setzero_si256(), sgn, za16, &lo, &hi);
            }
        }
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
