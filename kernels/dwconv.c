/* Depthwise convolution, direct: each output pixel sums its kernel taps channel by
 * channel (NHWC, vectorised over channels), then the ISA's output stage requantizes
 * the pixel's channels. Taps in the padding read the input zero point, which the
 * zero-folded arithmetic turns into exact zeros, so they are skipped. */
#include "qk_common.h"

/* Portable reference for input channels [c_begin, c_end) of one output pixel:
 * acc[oc] for oc = c * mult + j. */
void qk_dw_channels_scalar(const qk_dw_params *d, size_t n, size_t oy, size_t ox, size_t c_begin, size_t c_end,
                           int32_t *acc) {
    const qk_conv_geom *g = &d->g;
    const size_t oc_count = g->cg * d->mult;
    for (size_t oc = c_begin * d->mult; oc < c_end * d->mult; oc++) acc[oc] = 0;
    for (size_t ky = 0; ky < g->kh; ky++) {
        const ptrdiff_t iy = (ptrdiff_t)(oy * g->stride_y + ky * g->dil_y) - g->pad_top;
        if (iy < 0 || iy >= (ptrdiff_t)g->in_h) continue;
        for (size_t kx = 0; kx < g->kw; kx++) {
            const ptrdiff_t ix = (ptrdiff_t)(ox * g->stride_x + kx * g->dil_x) - g->pad_left;
            if (ix < 0 || ix >= (ptrdiff_t)g->in_w) continue;
            const uint8_t *s = g->x + (ptrdiff_t)n * g->sn + iy * g->sh + ix * g->sw;
            const int16_t *w = d->w + (ky * g->kw + kx) * oc_count;
            for (size_t c = c_begin; c < c_end; c++) {
                const uint8_t byte = s[(ptrdiff_t)c * g->sc];
                const int32_t v = (d->a_signed ? (int32_t)(int8_t)byte : (int32_t)byte) - d->za;
                for (size_t j = 0; j < d->mult; j++)
                    acc[c * d->mult + j] = (int32_t)((uint32_t)acc[c * d->mult + j] + (uint32_t)(v * w[c * d->mult + j]));
            }
        }
    }
}

void qk_dw_prepare(qk_dw_params *d) {
    const qk_conv_geom *g = &d->g;
    d->taps = g->kh * g->kw <= QK_DW_MAX_TAPS ? g->kh * g->kw : 0;
    for (size_t t = 0; t < d->taps; t++)
        d->tap_offset[t] = (ptrdiff_t)((t / g->kw) * g->dil_y) * g->sh + (ptrdiff_t)((t % g->kw) * g->dil_x) * g->sw;
}

void qk_dw_pixel_scalar(const qk_dw_params *d, size_t n, size_t oy, size_t ox, int32_t *acc) {
    qk_dw_channels_scalar(d, n, oy, ox, 0, d->g.cg, acc);
}

void qk_dwconv(const qk_dw_params *d, qk_dw_pixel_fn pixel_fn, qk_output_fn output, size_t p0, size_t p1,
               const qk_out_params *p, void *c, size_t c_stride, int32_t *acc) {
    /* QK_DW_PIXELS pixels per output-stage call: its per-channel terms load once for all. */
    const size_t oc_count = d->g.cg * d->mult, ow = d->g.out_w, oh = d->g.out_h;
    /* coordinates of p0, then stepped: no divisions per pixel */
    size_t ox = p0 % ow, oy = (p0 / ow) % oh, n = p0 / (ow * oh);
    for (size_t px = p0; px < p1; px += QK_DW_PIXELS) {
        const size_t count = p1 - px < QK_DW_PIXELS ? p1 - px : QK_DW_PIXELS;
        for (size_t i = 0; i < count; i++) {
            pixel_fn(d, n, oy, ox, acc + i * oc_count);
            if (++ox == ow) {
                ox = 0;
                if (++oy == oh) {
                    oy = 0;
                    n++;
                }
            }
        }
        output(count, oc_count, acc, oc_count, px, 0, p, c, c_stride);
    }
}
