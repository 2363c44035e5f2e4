/* 2-D average pooling: see qk_pool_avg.h. Portable C; the channel loops vectorise. */
#include <math.h>
#include "qk_f16.h"
#include "qk_pool_avg.h"

/* The valid tap range [k0, k1) of output position o along one axis (size n, stride s,
   dilation d, padding p before): taps o*s + k*d - p inside [0, n). */
static inline void tap_range(size_t o, size_t s, size_t d, ptrdiff_t p, size_t k, size_t n, size_t *k0, size_t *k1) {
    const ptrdiff_t start = (ptrdiff_t)(o * s) - p;
    size_t a = 0, b = k;
    while (a < k && start + (ptrdiff_t)(a * d) < 0) a++;
    while (b > a && start + (ptrdiff_t)((b - 1) * d) >= (ptrdiff_t)n) b--;
    *k0 = a;
    *k1 = b;
}

/* ONNX's divisor along one axis: taps inside x, or inside x and its explicit pads. */
static inline size_t axis_count(size_t o, size_t s, size_t d, ptrdiff_t p, ptrdiff_t pe, size_t k, size_t n, int inc) {
    if (!inc) {
        size_t a, b;
        tap_range(o, s, d, p, k, n, &a, &b);
        return b - a;
    }
    size_t m = 0;
    const ptrdiff_t start = (ptrdiff_t)(o * s) - p;
    for (size_t t = 0; t < k; t++) {
        const ptrdiff_t i = start + (ptrdiff_t)(t * d);
        m += i >= -p && i < (ptrdiff_t)n + pe;
    }
    return m;
}

/* The windows of one output row of one channel (NCHW and other memory orders): taps
   summed in window order (ky, kx), the same order as the channel-vector path, so the
   same bits. Where the rows are contiguous at stride 1, the outputs whose windows lie
   inside x in width run as vectors along the row (acc: ow floats). */
#define QK_AVGPOOL_ROW(T, LOAD, STORE)                                                                         \
    do {                                                                                                          \
        size_t lo = 0, hi = 0;                                                                                    \
        if (g->sx == 1 && xs[3] == 1 && ys[3] == 1) {                                                             \
            const ptrdiff_t a = g->pad_l > 0 ? g->pad_l : 0;                                                      \
            const ptrdiff_t b = (ptrdiff_t)g->w - (ptrdiff_t)((g->kw - 1) * g->dx) + g->pad_l;                    \
            lo = (size_t)a < g->ow ? (size_t)a : g->ow;                                                           \
            hi = b > (ptrdiff_t)lo ? ((size_t)b < g->ow ? (size_t)b : g->ow) : lo;                                \
        }                                                                                                         \
        for (size_t ox = 0; ox < g->ow; ox++) {                                                                   \
            if (ox == lo && hi > lo) {                                                                            \
                const size_t len = hi - lo;                                                                       \
                const float count = (float)(cy * g->kw);                                                          \
                const ptrdiff_t ix0 = (ptrdiff_t)lo - g->pad_l;                                                   \
                for (size_t j = 0; j < len; j++) acc[j] = 0.0f;                                                   \
                for (size_t ky = ky0; ky < ky1; ky++) {                                                           \
                    const T *row = plane + (iy0 + (ptrdiff_t)(ky * g->dy)) * xs[2] + ix0;                         \
                    for (size_t kx = 0; kx < g->kw; kx++) {                                                       \
                        const T *in = row + (ptrdiff_t)(kx * g->dx);                                              \
                        for (size_t j = 0; j < len; j++) acc[j] += LOAD(in[j]);                                   \
                    }                                                                                             \
                }                                                                                                 \
                for (size_t j = 0; j < len; j++) orow[lo + j] = STORE(acc[j] / count);                            \
                ox = hi - 1;                                                                                      \
                continue;                                                                                         \
            }                                                                                                     \
            size_t kx0, kx1;                                                                                      \
            tap_range(ox, g->sx, g->dx, g->pad_l, g->kw, g->w, &kx0, &kx1);                                       \
            const float count = (float)(cy * axis_count(ox, g->sx, g->dx, g->pad_l, g->pad_r, g->kw, g->w,        \
                                                         g->include_pad));                                       \
            const ptrdiff_t ix0 = (ptrdiff_t)(ox * g->sx) - g->pad_l;                                              \
            float s = 0.0f;                                                                                       \
            for (size_t ky = ky0; ky < ky1; ky++) {                                                               \
                const T *row = plane + (iy0 + (ptrdiff_t)(ky * g->dy)) * xs[2];                                   \
                for (size_t kx = kx0; kx < kx1; kx++) s += LOAD(row[(ix0 + (ptrdiff_t)(kx * g->dx)) * xs[3]]);    \
            }                                                                                                     \
            orow[(ptrdiff_t)ox * ys[3]] = STORE(s / count);                                                       \
        }                                                                                                         \
    } while (0)

#define QK_AVGPOOL(NAME, T, LOAD, STORE)                                                                         \
    void NAME(const qk_pool2d *g, const T *x, T *y, float *acc) {                                                 \
        const ptrdiff_t *xs = g->xs, *ys = g->ys;                                                                 \
        const int adjacent = xs[1] == 1 && ys[1] == 1;                                                            \
        for (size_t i = 0; i < g->n; i++)                                                                         \
            for (size_t oy = 0; oy < g->oh; oy++) {                                                               \
                size_t ky0, ky1;                                                                                  \
                tap_range(oy, g->sy, g->dy, g->pad_t, g->kh, g->h, &ky0, &ky1);                                   \
                const size_t cy = axis_count(oy, g->sy, g->dy, g->pad_t, g->pad_b, g->kh, g->h, g->include_pad);  \
                const ptrdiff_t iy0 = (ptrdiff_t)(oy * g->sy) - g->pad_t;                                          \
                const T *img = x + (ptrdiff_t)i * xs[0];                                                          \
                if (!adjacent) {                                                                                  \
                    for (size_t ch = 0; ch < g->c; ch++) {                                                        \
                        const T *plane = img + (ptrdiff_t)ch * xs[1];                                             \
                        T *orow = y + (ptrdiff_t)i * ys[0] + (ptrdiff_t)ch * ys[1] + (ptrdiff_t)oy * ys[2];       \
                        QK_AVGPOOL_ROW(T, LOAD, STORE);                                                           \
                    }                                                                                             \
                    continue;                                                                                     \
                }                                                                                                 \
                for (size_t ox = 0; ox < g->ow; ox++) { /* NHWC memory: a row of channels per tap */              \
                    size_t kx0, kx1;                                                                              \
                    tap_range(ox, g->sx, g->dx, g->pad_l, g->kw, g->w, &kx0, &kx1);                               \
                    const float count = (float)(cy * axis_count(ox, g->sx, g->dx, g->pad_l, g->pad_r, g->kw, g->w,  \
                                                                 g->include_pad));                               \
                    const ptrdiff_t ix0 = (ptrdiff_t)(ox * g->sx) - g->pad_l;                                      \
                    T *out = y + (ptrdiff_t)i * ys[0] + (ptrdiff_t)oy * ys[2] + (ptrdiff_t)ox * ys[3];            \
                    for (size_t ch = 0; ch < g->c; ch++) acc[ch] = 0.0f;                                          \
                    for (size_t ky = ky0; ky < ky1; ky++)                                                         \
                        for (size_t kx = kx0; kx < kx1; kx++) {                                                   \
                            const T *in = img + (iy0 + (ptrdiff_t)(ky * g->dy)) * xs[2] +                         \
                                          (ix0 + (ptrdiff_t)(kx * g->dx)) * xs[3];                                \
                            for (size_t ch = 0; ch < g->c; ch++) acc[ch] += LOAD(in[ch]);                         \
                        }                                                                                         \
                    for (size_t ch = 0; ch < g->c; ch++) out[ch] = STORE(acc[ch] / count);                        \
                }                                                                                                 \
            }                                                                                                     \
    }
#define QK_ID(v) (v)
QK_AVGPOOL(qk_avgpool_f32, float, QK_ID, QK_ID)
QK_AVGPOOL(qk_avgpool_f16, uint16_t, qk_f16_to_f32, qk_f32_to_f16)

/* onnxruntime's quantize_value: nearbyintf(v / y_scale + zy), then int32 and saturated
   (NaN: the lowest value, as the x86 conversion gives; the conversion's overflow is
   saturated here). */
static inline int32_t qavg_out(float v, float y_scale, int32_t zy, int32_t lo, int32_t hi) {
    const float r = nearbyintf(v / y_scale + (float)zy);
    if (!(r >= (float)lo)) return lo;
    return r > (float)hi ? hi : (int32_t)r;
}

#define QK_QAVGPOOL(T, LO, HI)                                                                                   \
    do {                                                                                                          \
        const T *xb = (const T *)x;                                                                               \
        T *yb = (T *)y;                                                                                           \
        for (size_t i = 0; i < g->n; i++)                                                                         \
            for (size_t oy = 0; oy < g->oh; oy++) {                                                               \
                const ptrdiff_t hs = (ptrdiff_t)(oy * g->sy) - g->pad_t;                                           \
                const ptrdiff_t h0 = hs < 0 ? 0 : hs;                                                             \
                const ptrdiff_t h1 = hs + (ptrdiff_t)g->kh < (ptrdiff_t)g->h ? hs + (ptrdiff_t)g->kh : (ptrdiff_t)g->h; \
                for (size_t ox = 0; ox < g->ow; ox++) {                                                           \
                    const ptrdiff_t ws = (ptrdiff_t)(ox * g->sx) - g->pad_l;                                       \
                    const ptrdiff_t w0 = ws < 0 ? 0 : ws;                                                         \
                    const ptrdiff_t w1 = ws + (ptrdiff_t)g->kw < (ptrdiff_t)g->w ? ws + (ptrdiff_t)g->kw : (ptrdiff_t)g->w; \
                    const float count = g->include_pad ? (float)(int64_t)(g->kh * g->kw)                          \
                                                       : (float)(int64_t)((h1 - h0) * (w1 - w0));                 \
                    const T *img = xb + (ptrdiff_t)i * xs[0];                                                     \
                    T *out = yb + (ptrdiff_t)i * ys[0] + (ptrdiff_t)oy * ys[2] + (ptrdiff_t)ox * ys[3];           \
                    if (adjacent) {                                                                               \
                        for (size_t ch = 0; ch < g->c; ch++) acc[ch] = 0.0f;                                      \
                        for (ptrdiff_t iy = h0; iy < h1; iy++)                                                    \
                            for (ptrdiff_t ix = w0; ix < w1; ix++) {                                              \
                                const T *in = img + iy * xs[2] + ix * xs[3];                                      \
                                for (size_t ch = 0; ch < g->c; ch++) acc[ch] += lut[(uint8_t)in[ch]];             \
                            }                                                                                     \
                        for (size_t ch = 0; ch < g->c; ch++)                                                      \
                            out[ch] = (T)qavg_out(acc[ch] / count, y_scale, zy, LO, HI);                          \
                        continue;                                                                                 \
                    }                                                                                             \
                    for (size_t ch = 0; ch < g->c; ch++) {                                                        \
                        const T *plane = img + (ptrdiff_t)ch * xs[1];                                             \
                        float s = 0.0f;                                                                           \
                        for (ptrdiff_t iy = h0; iy < h1; iy++)                                                    \
                            for (ptrdiff_t ix = w0; ix < w1; ix++) s += lut[(uint8_t)plane[iy * xs[2] + ix * xs[3]]]; \
                        out[(ptrdiff_t)ch * ys[1]] = (T)qavg_out(s / count, y_scale, zy, LO, HI);                 \
                    }                                                                                             \
                }                                                                                                 \
            }                                                                                                     \
    } while (0)

void qk_qavgpool_q8(const qk_pool2d *g, const void *x, int is_signed, const float *lut, float y_scale, int32_t zy,
                    void *y, float *acc) {
    const ptrdiff_t *xs = g->xs, *ys = g->ys;
    const int adjacent = xs[1] == 1 && ys[1] == 1;
    if (is_signed)
        QK_QAVGPOOL(int8_t, -128, 127);
    else
        QK_QAVGPOOL(uint8_t, 0, 255);
}
