/* Direct fp32 convolution of small patches with AVX-512 (qk_dconv.h), in the VNNI
 * kernels' vector vocabulary (qk_vnni.h): built natively and emulated. */
#include "qk_vnni.h"
#include "qk_dconv.h"

/* P pixels (base[p] + off[t]: tap t of pixel p; pixels >= pp are computed, not stored) x
   NV vectors of columns. P, NV constants where inlined. */
static inline __attribute__((always_inline)) void tile(const int P, const int NV, size_t k, const float *const *base,
                                                      const ptrdiff_t *off, const float *w, size_t n, size_t pp,
                                                      const float *bias, qk_v512f lo, qk_v512f hi,
                                                      float *const *out) {
    qk_v512f c[12][4];
#pragma GCC unroll 12
    for (int p = 0; p < P; p++)
#pragma GCC unroll 4
        for (int j = 0; j < NV; j++) c[p][j] = qk512f_zero();
    for (size_t t = 0; t < k; t++) {
        const float *wt = w + t * n;
        const ptrdiff_t o = off[t];
        qk_v512f b[4];
#pragma GCC unroll 4
        for (int j = 0; j < NV; j++) b[j] = qk512f_load(wt + 16 * j);
#pragma GCC unroll 12
        for (int p = 0; p < P; p++) {
            const qk_v512f a = qk512f_bcast(base[p] + o);
#pragma GCC unroll 4
            for (int j = 0; j < NV; j++) c[p][j] = qk512f_fmadd(a, b[j], c[p][j]);
        }
    }
#pragma GCC unroll 12
    for (int p = 0; p < P; p++) {
        if ((size_t)p >= pp) break;
#pragma GCC unroll 4
        for (int j = 0; j < NV; j++)
            qk512f_store(out[p] + 16 * j, qk512f_clamp(qk512f_add(c[p][j], qk512f_load(bias + 16 * j)), lo, hi));
    }
}

/* Pixels per block for NV column vectors: P x NV chains in 24 of the 32 registers. */
#define QK_DC_P(NV) ((NV) == 1 ? 12 : (NV) == 2 ? 8 : 6)

void QK_VNNI_FN(qk_f32_dconv_avx512)(const qk_conv_geom *g, size_t m0, size_t m1, size_t n, const float *w,
                                     const float *bias, float lo, float hi, float *c, size_t c_stride, float *buf) {
    const size_t kh = g->kh, kw = g->kw, cg = g->cg, k = kh * kw * cg;
    const ptrdiff_t in_h = (ptrdiff_t)g->in_h, in_w = (ptrdiff_t)g->in_w;
    const ptrdiff_t ext_y = (ptrdiff_t)((kh - 1) * g->dil_y), ext_x = (ptrdiff_t)((kw - 1) * g->dil_x);
    ptrdiff_t off[QK_DCONV_MAX_K], boff[QK_DCONV_MAX_K];   /* in floats: in the input, in buf */
    if (k == 0 || k > QK_DCONV_MAX_K || n % 16) return;
    for (size_t ky = 0, t = 0; ky < kh; ky++)
        for (size_t kx = 0; kx < kw; kx++)
            for (size_t ch = 0; ch < cg; ch++, t++) {
                off[t] = ((ptrdiff_t)(ky * g->dil_y) * g->sh + (ptrdiff_t)(kx * g->dil_x) * g->sw +
                          (ptrdiff_t)ch * g->sc) / 4;
                boff[t] = (ptrdiff_t)t;
            }
    const qk_v512f vlo = qk512f_set1(lo), vhi = qk512f_set1(hi);
    /* output columns [ox_lo, ox_hi) and rows [oy_lo, oy_hi) have windows inside the input */
    const ptrdiff_t pl = g->pad_left, pt = g->pad_top, sx = (ptrdiff_t)g->stride_x, sy = (ptrdiff_t)g->stride_y;
    const ptrdiff_t ox_lo = pl > 0 ? (pl + sx - 1) / sx : 0, oy_lo = pt > 0 ? (pt + sy - 1) / sy : 0;
    const ptrdiff_t ox_hi = in_w - ext_x + pl > 0 ? (in_w - ext_x + pl + sx - 1) / sx : 0;
    const ptrdiff_t oy_hi = in_h - ext_y + pt > 0 ? (in_h - ext_y + pt + sy - 1) / sy : 0;
    const ptrdiff_t dx = sx * g->sw;   /* bytes from one output column's window to the next */
    for (size_t n0 = 0; n0 < n; n0 += 64) {
        const int nv = n - n0 >= 64 ? 4 : (int)((n - n0) / 16);
        const size_t P = QK_DC_P(nv);
        size_t ox = m0 % g->out_w, oy = (m0 / g->out_w) % g->out_h, img = m0 / (g->out_w * g->out_h);
        /* the window of (img, oy, column 0), and whether row oy's windows are inside */
        const uint8_t *row = g->x + (ptrdiff_t)img * g->sn + ((ptrdiff_t)oy * sy - pt) * g->sh - pl * g->sw;
        int row_in = (ptrdiff_t)oy >= oy_lo && (ptrdiff_t)oy < oy_hi;
        char *outp = (char *)c + m0 * c_stride;
        for (size_t m = m0; m < m1; m += P) {
            const size_t pp = m1 - m < P ? m1 - m : P;
            const float *base[12];
            float *out[12];
            int inside = 1;
            size_t py[12], px[12], pi[12];
            for (size_t p = 0; p < pp; p++) {
                py[p] = oy, px[p] = ox, pi[p] = img;
                inside &= row_in & ((ptrdiff_t)ox >= ox_lo) & ((ptrdiff_t)ox < ox_hi);
                base[p] = (const float *)(const void *)(row + (ptrdiff_t)ox * dx);
                out[p] = (float *)(void *)outp + n0;
                outp += c_stride;
                if (++ox == g->out_w) {
                    ox = 0;
                    if (++oy == g->out_h) {
                        oy = 0;
                        img++;
                    }
                    row = g->x + (ptrdiff_t)img * g->sn + ((ptrdiff_t)oy * sy - pt) * g->sh - pl * g->sw;
                    row_in = (ptrdiff_t)oy >= oy_lo && (ptrdiff_t)oy < oy_hi;
                }
            }
            if (!inside) {   /* the patch rows, zeros in the padding */
                for (size_t p = 0; p < pp; p++) {
                    float *d = buf + p * k;
                    const ptrdiff_t iy0 = (ptrdiff_t)(py[p] * g->stride_y) - g->pad_top;
                    const ptrdiff_t ix0 = (ptrdiff_t)(px[p] * g->stride_x) - g->pad_left;
                    for (size_t ky = 0; ky < kh; ky++) {
                        const ptrdiff_t iy = iy0 + (ptrdiff_t)(ky * g->dil_y);
                        for (size_t kx = 0; kx < kw; kx++, d += cg) {
                            const ptrdiff_t ix = ix0 + (ptrdiff_t)(kx * g->dil_x);
                            const int in = iy >= 0 && iy < in_h && ix >= 0 && ix < in_w;
                            const uint8_t *s = g->x + (ptrdiff_t)pi[p] * g->sn + iy * g->sh + ix * g->sw;
                            for (size_t ch = 0; ch < cg; ch++)
                                d[ch] = in ? *(const float *)(const void *)(s + (ptrdiff_t)ch * g->sc) : 0.0f;
                        }
                    }
                    base[p] = buf + p * k;
                }
            }
            for (size_t p = pp; p < P; p++) base[p] = base[0];
            const ptrdiff_t *o = inside ? off : boff;
            const float *wn = w + n0, *bn = bias + n0;
            switch (nv) {
            case 1: tile(12, 1, k, base, o, wn, n, pp, bn, vlo, vhi, out); break;
            case 2: tile(8, 2, k, base, o, wn, n, pp, bn, vlo, vhi, out); break;
            case 3: tile(6, 3, k, base, o, wn, n, pp, bn, vlo, vhi, out); break;
            default: tile(6, 4, k, base, o, wn, n, pp, bn, vlo, vhi, out); break;
            }
        }
    }
}
