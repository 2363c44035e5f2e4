/* Implicit im2col: the rows of the convolution's patch matrix, gathered on demand
 * into a small scratch buffer that the ordinary A packing then reads. Row r is the
 * output pixel (n, oy, ox); its K = kh * kw * cg bytes are the input channels of one
 * group under each kernel tap, in (ky, kx, c) order (OHWI weights). Taps that fall
 * in the padding read the input zero point, as ONNX QLinearConv requires, so padded
 * cells contribute exactly zero. */
#include <string.h>
#include "qk_conv.h"

/* n bytes from s to d, each xor flip (int8 <-> uint8 when flip = 0x80): a loop the
 * compiler vectorises; memcpy when there is nothing to flip. */
static inline void copy_flip(uint8_t *d, const uint8_t *s, size_t n, uint8_t flip) {
    if (!flip && n <= 64) {   /* a stem's window row (3 channels x 3-7 taps): inline moves, not a call */
        size_t i = 0;
        for (; i + 16 <= n; i += 16) memcpy(d + i, s + i, 16);
        for (; i + 4 <= n; i += 4) memcpy(d + i, s + i, 4);
        for (; i < n; i++) d[i] = s[i];
        return;
    }
    if (!flip) {
        memcpy(d, s, n);
        return;
    }
    for (size_t i = 0; i < n; i++) d[i] = (uint8_t)(s[i] ^ flip);
}

/* One output pixel's patch row, any geometry: tap by tap. */
static void gather_pixel(const qk_conv_geom *g, size_t n, size_t oy, size_t ox, uint8_t *d, uint8_t flip) {
    const size_t es = g->elem, tap_bytes = g->cg * es;
    for (size_t ky = 0; ky < g->kh; ky++) {
        const ptrdiff_t iy = (ptrdiff_t)(oy * g->stride_y + ky * g->dil_y) - g->pad_top;
        for (size_t kx = 0; kx < g->kw; kx++, d += tap_bytes) {
            const ptrdiff_t ix = (ptrdiff_t)(ox * g->stride_x + kx * g->dil_x) - g->pad_left;
            if (iy < 0 || ix < 0 || iy >= (ptrdiff_t)g->in_h || ix >= (ptrdiff_t)g->in_w) {
                memset(d, g->pad ^ flip, tap_bytes);
                continue;
            }
            const uint8_t *s = g->x + (ptrdiff_t)n * g->sn + iy * g->sh + ix * g->sw;
            if (g->sc == (ptrdiff_t)es) {
                copy_flip(d, s, tap_bytes, flip);
            } else {
                for (size_t c = 0; c < g->cg; c++) memcpy(d + c * es, s + (ptrdiff_t)c * g->sc, es);
                if (flip)   /* flip is given for 1-byte values only */
                    for (size_t c = 0; c < g->cg; c++) d[c] ^= flip;
            }
        }
    }
}

/* `run` pixels of one output row (image n, row oy, from column ox) whose input pixels
 * and channels are adjacent (no dilation along x): each kernel row of a window is
 * kw * cg consecutive bytes, one copy (few channels, as in RGB stems and 1-channel
 * inputs, would otherwise cost one tiny copy per tap), clipped by the left or right
 * padding to the taps inside; kernel rows outer, so each source row is found once. */
static void gather_row_run(const qk_conv_geom *g, size_t n, size_t oy, size_t ox, size_t run, uint8_t *dst,
                           size_t dst_stride, uint8_t flip) {
    const size_t tap_bytes = g->cg * g->elem, row_bytes = g->kw * tap_bytes, kw = g->kw;
    const ptrdiff_t sx = (ptrdiff_t)g->stride_x * g->sw;
    for (size_t ky = 0; ky < g->kh; ky++) {
        const ptrdiff_t iy = (ptrdiff_t)(oy * g->stride_y + ky * g->dil_y) - g->pad_top;
        uint8_t *d = dst + ky * row_bytes;
        if (iy < 0 || iy >= (ptrdiff_t)g->in_h) {      /* a kernel row in the top or bottom padding */
            for (size_t p = 0; p < run; p++, d += dst_stride) memset(d, g->pad ^ flip, row_bytes);
            continue;
        }
        ptrdiff_t ix0 = (ptrdiff_t)(ox * g->stride_x) - g->pad_left;
        const uint8_t *s = g->x + (ptrdiff_t)n * g->sn + iy * g->sh + ix0 * g->sw;
        for (size_t p = 0; p < run; p++, d += dst_stride, s += sx, ix0 += (ptrdiff_t)g->stride_x) {
            if (ix0 >= 0 && ix0 + (ptrdiff_t)kw <= (ptrdiff_t)g->in_w) {
                copy_flip(d, s, row_bytes, flip);
                continue;
            }
            /* taps [lo, hi) read the input, the others the padding */
            const ptrdiff_t room = (ptrdiff_t)g->in_w - ix0;
            size_t lo = ix0 < 0 ? (size_t)(-ix0) : 0, hi = room <= 0 ? 0 : (size_t)room;
            lo = lo < kw ? lo : kw;
            hi = hi < kw ? hi : kw;
            hi = hi > lo ? hi : lo;
            memset(d, g->pad ^ flip, lo * tap_bytes);
            if (hi > lo) copy_flip(d + lo * tap_bytes, s + (ptrdiff_t)(lo * tap_bytes), (hi - lo) * tap_bytes, flip);
            memset(d + hi * tap_bytes, g->pad ^ flip, (kw - hi) * tap_bytes);
        }
    }
}

void qk_im2col_rows(const qk_conv_geom *g, size_t r0, size_t rows, uint8_t *dst, size_t dst_stride, uint8_t flip) {
    const size_t es = g->elem, tap_bytes = g->cg * es;
    /* pixels of a row are adjacent, channels too, no dilation along x */
    const int contiguous = g->sc == (ptrdiff_t)es && g->sw == (ptrdiff_t)tap_bytes && g->dil_x == 1;
    /* the coordinates of row r0, then stepped a run of one output row at a time: no
       divisions per row (three of them cost as much as the gather of a small-channel row) */
    size_t ox = r0 % g->out_w, oy = (r0 / g->out_w) % g->out_h, n = r0 / (g->out_w * g->out_h);
    for (size_t i = 0; i < rows;) {
        const size_t run = rows - i < g->out_w - ox ? rows - i : g->out_w - ox;
        if (contiguous) {
            gather_row_run(g, n, oy, ox, run, dst + i * dst_stride, dst_stride, flip);
        } else {
            for (size_t p = 0; p < run; p++) gather_pixel(g, n, oy, ox + p, dst + (i + p) * dst_stride, flip);
        }
        i += run;
        ox += run;
        if (ox == g->out_w) {
            ox = 0;
            if (++oy == g->out_h) {
                oy = 0;
                n++;
            }
        }
    }
}

void qk_pack_a_conv(int pack, int mr, int kr, const qk_conv_geom *g, size_t r0, size_t rows, int a_signed,
                    int32_t za, uint8_t *scratch, void *packed, int32_t *row_sum) {
    const size_t k = g->kh * g->kw * g->cg;   /* values; a scratch row holds k * elem bytes */
    if (pack == QK_PACK_U8 && g->elem == 1) {
        /* uint8 A panels are row-major bytes: gather straight into them, then flip int8
           inputs and sum in place (one pass over the panel, not two) */
        const size_t kp = (k + kr - 1) / kr * kr, stride = kp ? kp : (size_t)kr;
        uint8_t *dst = (uint8_t *)packed;
        qk_im2col_rows(g, r0, rows, dst, stride, a_signed ? 0x80 : 0);   /* int8 flipped while copied */
        for (size_t i = 0; i < (size_t)mr; i++, dst += stride) {
            if (i >= rows) {
                memset(dst, 0, stride);
                continue;
            }
            if (row_sum) {
                uint32_t sum = 0;
                for (size_t kk = 0; kk < k; kk++) sum += dst[kk];
                row_sum[i] = (int32_t)sum;
            }
            memset(dst + k, 0, stride - k);
        }
        return;
    }
    if (pack == (QK_PACK_F32_ROWS | QK_PACK_SRC_F32) && g->elem == 4 && k) {
        /* float32 rows of K values are the panel's own layout: gather straight into it */
        qk_im2col_rows(g, r0, rows, (uint8_t *)packed, k * 4, 0);
        memset((uint8_t *)packed + rows * k * 4, 0, ((size_t)mr - rows) * k * 4);
        return;
    }
    qk_im2col_rows(g, r0, rows, scratch, k * g->elem, 0);
    qk_pack_a(pack, mr, kr, rows, k, scratch, a_signed, (ptrdiff_t)(k * g->elem), (ptrdiff_t)g->elem, za, packed,
              row_sum);
}
