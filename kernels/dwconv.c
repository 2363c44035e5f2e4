/* Depthwise convolution, direct (NHWC, vectorised over channels). See qk_conv.h:
 * the fast path builds an indirection row of tap pointers per output pixel and hands
 * QK_DW_PIXELS pixels at a time to the ISA's sum kernel; the output stage of the ISA
 * then requantizes them. The general path (channel multiplier > 1, strided channels,
 * very large kernels) sums pixel by pixel in portable code. */
#include <string.h>
#include "qk_conv.h"

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
            if (ix < 0 || ix >= (ptrdiff_t)g->in_w) continue;   /* padding: x - za = 0 */
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

/* Is the window of output coordinate o (origin o * stride - pad) inside [0, size)? */
static int window_inside(size_t o, size_t stride, ptrdiff_t pad, size_t k, size_t dil, size_t size) {
    const ptrdiff_t first = (ptrdiff_t)(o * stride) - pad;
    return first >= 0 && first + (ptrdiff_t)((k - 1) * dil) < (ptrdiff_t)size;
}

/* The range [lo, hi) of output coordinates whose window is inside (it is contiguous). */
static void inside_range(size_t out, size_t stride, ptrdiff_t pad, size_t k, size_t dil, size_t size,
                         size_t *lo, size_t *hi) {
    size_t a = 0;
    while (a < out && !window_inside(a, stride, pad, k, dil, size)) a++;
    size_t b = a;
    while (b < out && window_inside(b, stride, pad, k, dil, size)) b++;
    *lo = a;
    *hi = b;
}

void qk_dw_prepare(qk_dw_params *d, uint8_t *zero_pixel, int32_t *init) {
    const qk_conv_geom *g = &d->g;
    const size_t taps = g->kh * g->kw;
    d->taps = d->mult == 1 && g->sc == (ptrdiff_t)g->elem && taps <= QK_DW_MAX_TAPS ? taps : 0;
    for (size_t t = 0; t < d->taps; t++)
        d->tap_offset[t] = (ptrdiff_t)((t / g->kw) * g->dil_y) * g->sh + (ptrdiff_t)((t % g->kw) * g->dil_x) * g->sw;
    inside_range(g->out_h, g->stride_y, g->pad_top, g->kh, g->dil_y, g->in_h, &d->oy_lo, &d->oy_hi);
    inside_range(g->out_w, g->stride_x, g->pad_left, g->kw, g->dil_x, g->in_w, &d->ox_lo, &d->ox_hi);
    memset(zero_pixel, (uint8_t)d->za, g->cg * g->elem);
    for (size_t c = 0; c < g->cg && d->dtype == QK_DTYPE_QS8; c++) {
        uint32_t s = 0;
        for (size_t t = 0; t < d->taps; t++) s += (uint32_t)d->w[t * g->cg + c];
        init[c] = (int32_t)((uint32_t)(-d->za) * s);
    }
    d->zero_pixel = zero_pixel;
    d->init = init;
}

size_t qk_dw_vnni_size(const qk_dw_params *d) {
    const qk_out_params *p = d->out;
    if (d->dtype != QK_DTYPE_QS8 || !d->taps || !p || p->mode != QK_OUT_FP32 || p->col_zb || p->row_sum || p->post_b)
        return 0;
    for (size_t i = 0; i < d->taps * d->g.cg; i++)
        if (d->w[i] < -128 || d->w[i] > 127) return 0;
    return (d->g.cg + 63) / 64 * ((d->taps + 3) / 4 * 256 + 512) + 63;
}

void qk_dw_pack_vnni(qk_dw_params *d, void *buf) {
    const size_t ch = d->g.cg, taps = d->taps, groups = (taps + 3) / 4;
    uint8_t *o = (uint8_t *)(((uintptr_t)buf + 63) & ~(uintptr_t)63);
    d->vnni = o;
    for (size_t b = 0; b < ch; b += 64) {
        int32_t *init = (int32_t *)(void *)(o + groups * 256);
        float *scale = (float *)(init + 64);
        for (size_t k = 0; k < 4; k++)
            for (size_t l = 0; l < 4; l++)
                for (size_t j = 0; j < 4; j++) {
                    /* a last block of <= 32 (<= 16) channels: its lanes repeat for 2 (4) pixels */
                    const size_t lanes = ch - b > 32 ? 4 : ch - b > 16 ? 2 : 1;
                    const size_t c = b + 16 * (l % lanes) + 4 * k + j, at = 16 * k + 4 * l + j;
                    uint32_t s = 0;
                    for (size_t g = 0; g < groups; g++)
                        for (size_t t = 0; t < 4; t++) {
                            const int16_t w = c < ch && 4 * g + t < taps ? d->w[(4 * g + t) * ch + c] : 0;
                            o[(4 * g + k) * 64 + 16 * l + 4 * j + t] = (uint8_t)(int8_t)w;
                            s += (uint32_t)(int32_t)w;
                        }
                    init[at] = c < ch ? (int32_t)((uint32_t)d->init[c] + (uint32_t)(d->out->col_add ? d->out->col_add[c] : 0)
                                                  - (d->a_signed ? 128u * s : 0u)) : 0;
                    scale[at] = c < ch ? d->out->scale[c] : 0.0f;
                }
        o += groups * 256 + 512;
    }
}

static int pixel_inside(const qk_dw_params *d, size_t oy, size_t ox) {
    return oy >= d->oy_lo && oy < d->oy_hi && ox >= d->ox_lo && ox < d->ox_hi;
}

/* The indirection row of output pixel (n, oy, ox). */
static void tap_pointers(const qk_dw_params *d, size_t n, size_t oy, size_t ox, const uint8_t **ptrs) {
    const qk_conv_geom *g = &d->g;
    const ptrdiff_t y0 = (ptrdiff_t)(oy * g->stride_y) - g->pad_top, x0 = (ptrdiff_t)(ox * g->stride_x) - g->pad_left;
    const uint8_t *base = g->x + (ptrdiff_t)n * g->sn;
    if (pixel_inside(d, oy, ox)) {
        const uint8_t *origin = base + y0 * g->sh + x0 * g->sw;
        for (size_t t = 0; t < d->taps; t++) ptrs[t] = origin + d->tap_offset[t];
        return;
    }
    size_t t = 0;
    for (size_t ky = 0; ky < g->kh; ky++) {
        const ptrdiff_t iy = y0 + (ptrdiff_t)(ky * g->dil_y);
        for (size_t kx = 0; kx < g->kw; kx++, t++) {
            const ptrdiff_t ix = x0 + (ptrdiff_t)(kx * g->dil_x);
            const int inside = iy >= 0 && iy < (ptrdiff_t)g->in_h && ix >= 0 && ix < (ptrdiff_t)g->in_w;
            ptrs[t] = inside ? base + iy * g->sh + ix * g->sw : d->zero_pixel;
        }
    }
}

/* The kernel rows [*ky0, *ky1) of output row oy whose input rows are inside the input. */
static void rows_inside(const qk_conv_geom *g, size_t oy, size_t *ky0, size_t *ky1) {
    const ptrdiff_t y0 = (ptrdiff_t)(oy * g->stride_y) - g->pad_top;
    size_t a = 0;
    while (a < g->kh && y0 + (ptrdiff_t)(a * g->dil_y) < 0) a++;
    size_t b = a;
    while (b < g->kh && y0 + (ptrdiff_t)(b * g->dil_y) < (ptrdiff_t)g->in_h) b++;
    *ky0 = a;
    *ky1 = b;
}

/* For a run of pixels of output row oy whose windows lie inside the input across but not
 * down (a short feature map under a tall kernel: PP-OCR's 5 x 5 depthwise layers on rows
 * 2 and 3 high): ``rows`` (a copy of d) gets only the kernel rows inside (taps and weights
 * shifted) and ptrs its shared row of tap pointers at the run's first pixel. Float paths
 * only, where a padded tap adds exactly nothing (an integer path's start sums count every
 * tap's zero point); 0 when it does not apply. */
static int clipped_rows(const qk_dw_params *d, size_t n, size_t oy, size_t ox, qk_dw_params *rows,
                        const uint8_t **ptrs) {
    const qk_conv_geom *g = &d->g;
    if (d->dtype == QK_DTYPE_QS8 || ox < d->ox_lo || ox >= d->ox_hi) return 0;
    size_t ky0, ky1;
    rows_inside(g, oy, &ky0, &ky1);
    if (ky0 >= ky1) return 0;
    rows->taps = (ky1 - ky0) * g->kw;
    rows->wf = d->wf + ky0 * g->kw * g->cg;
    const ptrdiff_t x0 = (ptrdiff_t)(ox * g->stride_x) - g->pad_left;
    const uint8_t *base = g->x + (ptrdiff_t)n * g->sn;
    size_t t = 0;
    for (size_t ky = ky0; ky < ky1; ky++) {
        const ptrdiff_t iy = (ptrdiff_t)(oy * g->stride_y) - g->pad_top + (ptrdiff_t)(ky * g->dil_y);
        for (size_t kx = 0; kx < g->kw; kx++) ptrs[t++] = base + iy * g->sh + (x0 + (ptrdiff_t)(kx * g->dil_x)) * g->sw;
    }
    return 1;
}

void qk_dwconv(const qk_dw_params *d, qk_dw_sum_fn sum, qk_output_fn output, size_t p0, size_t p1,
               const qk_out_params *p, void *c, size_t c_stride, int32_t *acc) {
    /* Up to QK_DW_PIXELS pixels per sum-kernel call: its weights and per-channel terms
     * load once for all of them. A call takes a run of interior pixels of one row (one
     * shared row of tap pointers, stepping through the input), such a run of a row whose
     * windows are clipped at the top or bottom only (float paths: the rows inside, as
     * clipped_rows says), or consecutive border pixels (a pointer row each). */
    const size_t ch = d->g.cg, oc_count = ch * d->mult, ow = d->g.out_w, oh = d->g.out_h, taps = d->taps;
    const ptrdiff_t step = (ptrdiff_t)d->g.stride_x * d->g.sw;
    const uint8_t *ptrs[QK_DW_PIXELS * QK_DW_MAX_TAPS];
    qk_dw_params rows = *d;   /* (clipped_rows changes its taps and weights only) */
    /* coordinates of p0, then stepped: no divisions per pixel */
    size_t ox = p0 % ow, oy = (p0 / ow) % oh, n = p0 / (ow * oh);
    for (size_t px = p0; px < p1;) {
        const size_t left = p1 - px < QK_DW_PIXELS ? p1 - px : QK_DW_PIXELS;
        size_t count = 0, ptr_stride = 0;
        ptrdiff_t run_step = 0;
        const qk_dw_params *dd = d;
        if (!taps) {   /* the general path */
            for (; count < left; count++) {
                qk_dw_channels_scalar(d, n, oy, ox, 0, ch, acc + count * oc_count);
                if (++ox == ow) { ox = 0; if (++oy == oh) { oy = 0; n++; } }
            }
        } else if (pixel_inside(d, oy, ox)) {
            tap_pointers(d, n, oy, ox, ptrs);
            count = d->ox_hi - ox < left ? d->ox_hi - ox : left;
            run_step = step;
            ox += count;
            if (ox == ow) { ox = 0; if (++oy == oh) { oy = 0; n++; } }
        } else if (clipped_rows(d, n, oy, ox, &rows, ptrs)) {
            dd = &rows;
            count = d->ox_hi - ox < left ? d->ox_hi - ox : left;
            run_step = step;
            ox += count;
            if (ox == ow) { ox = 0; if (++oy == oh) { oy = 0; n++; } }
        } else {
            ptr_stride = taps;
            do {
                tap_pointers(d, n, oy, ox, ptrs + count * taps);
                count++;
                if (++ox == ow) { ox = 0; if (++oy == oh) { oy = 0; n++; } }
            } while (count < left && !pixel_inside(d, oy, ox));
        }
        size_t stored = 0;
        if (taps) {
            const size_t done = sum(dd, count, ptrs, ptr_stride, run_step, 0, acc, oc_count, px, &stored);
            size_t unused;
            if (done < ch)   /* the channels past the kernel's last whole block */
                (d->dtype == QK_DTYPE_F16 ? qk_dw_sum_f16_scalar
                 : d->dtype == QK_DTYPE_F32 ? qk_dw_sum_f32_scalar : qk_dw_sum_scalar)(
                    dd, count, ptrs, ptr_stride, run_step, done, acc, oc_count, px, &unused);
        }
        if (stored < oc_count)
            output(count, oc_count - stored, acc + stored, oc_count, px, stored, p, c, c_stride);
        px += count;
    }
}
