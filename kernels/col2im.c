/* col2im of a transposed convolution: see qk_col2im.h. Portable C (ISO C: no contraction),
 * the channel loops run over adjacent floats and vectorise. Each output value is summed
 * in the reference operator's order (graph/backends/reference/conv.py: zeros, then every
 * tap in (ky, kx) order, then the bias). */
#include "qk_col2im.h"
#include "qk_f16.h"

void qk_col2im(const qk_col2im_params *p, size_t r0, size_t r1, float *acc) {
    const size_t og = p->og, kh = p->kh, kw = p->kw, taps = kh * kw;
    const ptrdiff_t yc = p->ys[3];
    for (size_t r = r0; r < r1; r++) {
        const size_t n = r / p->oh, oy = r % p->oh;
        const int32_t nr = p->row_cnt[oy];
        const int32_t *rt = p->row_tap + oy * kh, *rs = p->row_src + oy * kh;
        char *yrow = (char *)p->y;
        const ptrdiff_t ybase = (ptrdiff_t)n * p->ys[0] + (ptrdiff_t)oy * p->ys[1];
        for (size_t ox = 0; ox < p->ow; ox++) {
            const int32_t nc = p->col_cnt[ox];
            const int32_t *ct = p->col_tap + ox * kw, *cs = p->col_src + ox * kw;
            const ptrdiff_t ypix = ybase + (ptrdiff_t)ox * p->ys[2];
            for (size_t g = 0; g < p->groups; g++) {
                for (size_t o = 0; o < og; o++) acc[o] = 0.0f;
                for (int32_t i = 0; i < nr; i++) {
                    const float *line = p->cols + ((n * p->h + (size_t)rs[i]) * p->w) * p->cols_stride
                                        + g * taps * og + (size_t)rt[i] * kw * og;
                    for (int32_t j = 0; j < nc; j++) {
                        const float *src = line + (size_t)cs[j] * p->cols_stride + (size_t)ct[j] * og;
                        for (size_t o = 0; o < og; o++) acc[o] += src[o];
                    }
                }
                if (p->bias) {
                    const float *b = p->bias + g * og;
                    for (size_t o = 0; o < og; o++) acc[o] += b[o];
                }
                const float lo = p->lo, hi = p->hi;
                for (size_t o = 0; o < og; o++) {   /* comparisons with NaN are false: NaN passes */
                    float v = acc[o];
                    v = v < lo ? lo : v;
                    acc[o] = v > hi ? hi : v;
                }
                const ptrdiff_t at = ypix + (ptrdiff_t)(g * og) * yc;
                if (p->out_f16) {
                    uint16_t *y = (uint16_t *)yrow + at;
                    for (size_t o = 0; o < og; o++) y[(ptrdiff_t)o * yc] = qk_f32_to_f16(acc[o]);
                } else if (yc == 1) {
                    float *y = (float *)yrow + at;
                    for (size_t o = 0; o < og; o++) y[o] = acc[o];
                } else {
                    float *y = (float *)yrow + at;
                    for (size_t o = 0; o < og; o++) y[(ptrdiff_t)o * yc] = acc[o];
                }
            }
        }
    }
}
