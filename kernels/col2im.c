/* col2im of a transposed convolution: see qk_col2im.h. Portable C (ISO C: no contraction),
 * the channel loops run over adjacent floats and vectorise. Each output value is summed
 * in the reference operator's order (graph/backends/reference/conv.py: zeros, then every
 * tap in (ky, kx) order, then the bias). */
#include "qk_col2im.h"
#include "qk_f16.h"
#ifndef QK_COL2IM_NAME   /* the portable build; kernels/avx2/col2im_avx2.c includes this file for AVX2 */
#define QK_COL2IM_NAME qk_col2im
#define QK_COL2IM_PORTABLE
#include "qk_cpu.h"
#endif

/* one output pixel's og channels of one group: the taps summed from +0 in (ky, kx) order,
   then the bias (+0 for none: a sum from +0 is never -0, so adding +0 changes nothing),
   then the clamp (comparisons with NaN are false: NaN passes) */
static inline void pixel(const qk_col2im_params *p, const float *line0, const int32_t *rt, const int32_t *rs,
                         int32_t nr, const int32_t *ct, const int32_t *cs, int32_t nc, const float *b, float *acc,
                         float *y, ptrdiff_t yc) {
    const size_t og = p->og, kw = p->kw, stride = p->cols_stride;
    const float lo = p->lo, hi = p->hi;
    if (nr == 1 && nc == 1 && yc == 1 && !p->out_f16) {   /* one tap lands here (stride >= kernel) */
        const float *src = line0 + ((size_t)rs[0] * p->w + (size_t)cs[0]) * stride
                           + ((size_t)rt[0] * kw + (size_t)ct[0]) * og;
        for (size_t o = 0; o < og; o++) {
            float v = (0.0f + src[o]) + b[o];
            v = v < lo ? lo : v;
            y[o] = v > hi ? hi : v;
        }
        return;
    }
    for (size_t o = 0; o < og; o++) acc[o] = 0.0f;
    for (int32_t i = 0; i < nr; i++) {
        const float *line = line0 + (size_t)rs[i] * p->w * stride + (size_t)rt[i] * kw * og;
        for (int32_t j = 0; j < nc; j++) {
            const float *src = line + (size_t)cs[j] * stride + (size_t)ct[j] * og;
            for (size_t o = 0; o < og; o++) acc[o] += src[o];
        }
    }
    for (size_t o = 0; o < og; o++) {
        float v = acc[o] + b[o];
        v = v < lo ? lo : v;
        acc[o] = v > hi ? hi : v;
    }
    if (p->out_f16) {
        uint16_t *h = (uint16_t *)(void *)y;
        for (size_t o = 0; o < og; o++) h[(ptrdiff_t)o * yc] = qk_f32_to_f16(acc[o]);
    } else if (yc == 1) {
        for (size_t o = 0; o < og; o++) y[o] = acc[o];
    } else {
        for (size_t o = 0; o < og; o++) y[(ptrdiff_t)o * yc] = acc[o];
    }
}

void QK_COL2IM_NAME(const qk_col2im_params *p, size_t r0, size_t r1, float *acc) {
    const size_t og = p->og, kh = p->kh, kw = p->kw, taps = kh * kw, oh = p->oh, ow = p->ow, groups = p->groups;
    const size_t stride = p->cols_stride, w = p->w;
    const ptrdiff_t yc = p->ys[3], yw = p->ys[2];
    const float lo = p->lo, hi = p->hi;
    const float *bias = p->bias;
    const int32_t *col_cnt = p->col_cnt, *col_tap = p->col_tap, *col_src = p->col_src;
    const int fast = groups == 1 && !p->out_f16 && yc == 1;
    for (size_t r = r0; r < r1; r++) {
        const size_t n = r / oh, oy = r % oh;
        const int32_t nr = p->row_cnt[oy];
        const int32_t *rt = p->row_tap + oy * kh, *rs = p->row_src + oy * kh;
        const ptrdiff_t ybase = (ptrdiff_t)n * p->ys[0] + (ptrdiff_t)oy * p->ys[1];
        const float *image = p->cols + n * p->h * w * stride;
        if (fast && nr == 1) {   /* one kernel row lands on this output row: the usual case */
            const float *line = image + (size_t)rs[0] * w * stride + (size_t)rt[0] * kw * og;
            float *yrow = (float *)p->y + ybase;
            for (size_t ox = 0; ox < ow; ox++) {
                float *y = yrow + (ptrdiff_t)ox * yw;
                if (col_cnt[ox] == 1) {
                    const float *src = line + (size_t)col_src[ox * kw] * stride + (size_t)col_tap[ox * kw] * og;
                    for (size_t o = 0; o < og; o++) {
                        float v = (0.0f + src[o]) + bias[o];
                        v = v < lo ? lo : v;
                        y[o] = v > hi ? hi : v;
                    }
                } else {
                    pixel(p, image, rt, rs, nr, col_tap + ox * kw, col_src + ox * kw, col_cnt[ox], bias, acc, y, yc);
                }
            }
            continue;
        }
        for (size_t ox = 0; ox < ow; ox++) {
            const int32_t nc = col_cnt[ox];
            const int32_t *ct = col_tap + ox * kw, *cs = col_src + ox * kw;
            const ptrdiff_t ypix = ybase + (ptrdiff_t)ox * yw;
            for (size_t g = 0; g < groups; g++) {
                const ptrdiff_t at = ypix + (ptrdiff_t)(g * og) * yc;
                float *y = p->out_f16 ? (float *)(void *)((uint16_t *)p->y + at) : (float *)p->y + at;
                pixel(p, image + g * taps * og, rt, rs, nr, ct, cs, nc, bias + g * og, acc, y, yc);
            }
        }
    }
}

#ifdef QK_COL2IM_PORTABLE
#if defined(__x86_64__)
void qk_col2im_avx2(const qk_col2im_params *p, size_t r0, size_t r1, float *acc);
#endif

qk_col2im_fn qk_col2im_for_isa(int isa) {
    return QK_PICK_AVX2(isa, qk_col2im_avx2, qk_col2im);
}
#endif
