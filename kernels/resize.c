/* Resize (nearest, linear) of (N, C, H, W) values: see qk_resize.h. Portable C, ISO C (no
 * contraction to FMA: every product and sum rounds as numpy's do, so linear float32
 * results are the reference operator's bit for bit); the inner loops run along the
 * channels when they are adjacent in memory (NHWC memory), else along W, and vectorise. */
#include <math.h>
#include <string.h>
#include "qk_f16.h"
#include "qk_resize.h"
#ifndef QK_RESIZE_NAME   /* the portable build; kernels/avx2/resize_avx2.c includes this file for AVX2 */
#define QK_RESIZE_NAME qk_resize
#define QK_RESIZE_PORTABLE
#include "qk_cpu.h"

size_t qk_resize_rows(const qk_resize_params *p) {
    return p->n * (p->channels_last ? 1 : p->c) * p->oh;
}

size_t qk_resize_scratch_bytes(const qk_resize_params *p) {
    const size_t cc = p->channels_last ? p->c : 1;
    return (p->w * cc + 1) * sizeof(double);
}
#endif

/* row r -> (image, channel block, output row); the x and y pointers (in elements) */
#define QK_RESIZE_ROW(T)                                                                        \
    const size_t planes = p->channels_last ? 1 : p->c, cc = p->channels_last ? p->c : 1;       \
    const size_t n = r / (planes * p->oh), pl = (r / p->oh) % planes, oy = r % p->oh;           \
    const T *xb = (const T *)p->x + (ptrdiff_t)n * p->xs[0] + (ptrdiff_t)pl * p->xs[1];        \
    T *yb = (T *)p->y + (ptrdiff_t)n * p->ys[0] + (ptrdiff_t)pl * p->ys[1] + (ptrdiff_t)oy * p->ys[2]; \
    const ptrdiff_t xc = p->xs[1], xw = p->xs[3], yc = p->ys[1], yw = p->ys[3];                 \
    (void)cc; (void)xc; (void)yc

#define QK_RESIZE_NEAREST_FN(NAME, T)                                                           \
    static void NAME(const qk_resize_params *p, size_t r0, size_t r1) {                         \
        for (size_t r = r0; r < r1; r++) {                                                      \
            QK_RESIZE_ROW(T);                                                                   \
            const T *src = xb + (ptrdiff_t)p->iy0[oy] * p->xs[2];                               \
            if (r > r0 && oy > 0 && p->iy0[oy] == p->iy0[oy - 1] &&                             \
                (cc == 1 ? yw == 1 : (yc == 1 && yw == (ptrdiff_t)cc))) {                       \
                /* the row above, already written, is this one (upsampling): one copy */       \
                memcpy(yb, yb - p->ys[2], p->ow * cc * sizeof(T));                              \
            } else if (cc == 1 && xw == 1 && yw == 1) {                                         \
                for (size_t ox = 0; ox < p->ow; ox++) yb[ox] = src[p->ix0[ox]];                 \
            } else if (cc > 1 && xc == 1 && yc == 1) {                                          \
                for (size_t ox = 0; ox < p->ow; ox++)                                           \
                    memcpy(yb + (ptrdiff_t)ox * yw, src + (ptrdiff_t)p->ix0[ox] * xw, cc * sizeof(T)); \
            } else {                                                                            \
                for (size_t ox = 0; ox < p->ow; ox++) {                                         \
                    const T *s = src + (ptrdiff_t)p->ix0[ox] * xw;                              \
                    T *d = yb + (ptrdiff_t)ox * yw;                                             \
                    for (size_t c = 0; c < cc; c++) d[(ptrdiff_t)c * yc] = s[(ptrdiff_t)c * xc]; \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
    }

QK_RESIZE_NEAREST_FN(nearest8, uint8_t)
QK_RESIZE_NEAREST_FN(nearest16, uint16_t)
QK_RESIZE_NEAREST_FN(nearest32, uint32_t)
QK_RESIZE_NEAREST_FN(nearest64, uint64_t)

#define LOAD_SAME(v) (v)
#define LOAD_F16(v) qk_f16_to_f32(v)
#define LOAD_INT(v) ((double)(v))
#define STORE_SAME(v) (v)
#define STORE_F16(v) qk_f32_to_f16(v)
static inline uint8_t store_u8(double v) {
    v = nearbyint(v);
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}
static inline int8_t store_s8(double v) {
    v = nearbyint(v);
    return (int8_t)(v < -128 ? -128 : v > 127 ? 127 : v);
}

/* One output row: the H blend of the two source rows into t (cc values per pixel,
   adjacent), then the W blend of t into y. a * w0 + b * w1: two roundings of products,
   one of the sum, as numpy's `take * w` then `+`. */
#define QK_RESIZE_LINEAR_FN(NAME, T, A, LOAD, STORE)                                            \
    static void NAME(const qk_resize_params *p, size_t r0, size_t r1, A *t) {                   \
        const A *wy0 = (const A *)p->wy0, *wy1 = (const A *)p->wy1;                             \
        const A *wx0 = (const A *)p->wx0, *wx1 = (const A *)p->wx1;                             \
        for (size_t r = r0; r < r1; r++) {                                                      \
            QK_RESIZE_ROW(T);                                                                   \
            const size_t w = p->w;                                                              \
            if (p->pass_h) {                                                                    \
                const T *a = xb + (ptrdiff_t)p->iy0[oy] * p->xs[2];                             \
                const T *b = xb + (ptrdiff_t)p->iy1[oy] * p->xs[2];                             \
                const A u = wy0[oy], v = wy1[oy];                                               \
                if (cc == 1 && xw == 1) {                                                       \
                    for (size_t i = 0; i < w; i++) t[i] = LOAD(a[i]) * u + LOAD(b[i]) * v;      \
                } else if (xc == 1) {                                                           \
                    for (size_t i = 0; i < w; i++) {                                            \
                        const T *ai = a + (ptrdiff_t)i * xw, *bi = b + (ptrdiff_t)i * xw;       \
                        A *ti = t + i * cc;                                                     \
                        for (size_t c = 0; c < cc; c++) ti[c] = LOAD(ai[c]) * u + LOAD(bi[c]) * v; \
                    }                                                                           \
                } else {                                                                        \
                    for (size_t i = 0; i < w; i++)                                              \
                        for (size_t c = 0; c < cc; c++) {                                       \
                            const ptrdiff_t at = (ptrdiff_t)i * xw + (ptrdiff_t)c * xc;         \
                            t[i * cc + c] = LOAD(a[at]) * u + LOAD(b[at]) * v;                  \
                        }                                                                       \
                }                                                                               \
            } else {                                                                            \
                const T *a = xb + (ptrdiff_t)oy * p->xs[2];                                     \
                for (size_t i = 0; i < w; i++)                                                  \
                    for (size_t c = 0; c < cc; c++)                                             \
                        t[i * cc + c] = LOAD(a[(ptrdiff_t)i * xw + (ptrdiff_t)c * xc]);         \
            }                                                                                   \
            if (!p->pass_w) {                                                                   \
                for (size_t o = 0; o < p->ow; o++)                                              \
                    for (size_t c = 0; c < cc; c++)                                             \
                        yb[(ptrdiff_t)o * yw + (ptrdiff_t)c * yc] = STORE(t[o * cc + c]);       \
            } else if (cc == 1) {                                                               \
                for (size_t o = 0; o < p->ow; o++)                                              \
                    yb[(ptrdiff_t)o * yw] = STORE(t[p->ix0[o]] * wx0[o] + t[p->ix1[o]] * wx1[o]); \
            } else {                                                                            \
                for (size_t o = 0; o < p->ow; o++) {                                            \
                    const A *a = t + (size_t)p->ix0[o] * cc, *b = t + (size_t)p->ix1[o] * cc;   \
                    const A u = wx0[o], v = wx1[o];                                             \
                    T *d = yb + (ptrdiff_t)o * yw;                                              \
                    if (yc == 1)                                                                \
                        for (size_t c = 0; c < cc; c++) d[c] = STORE(a[c] * u + b[c] * v);      \
                    else                                                                        \
                        for (size_t c = 0; c < cc; c++) d[(ptrdiff_t)c * yc] = STORE(a[c] * u + b[c] * v); \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
    }

QK_RESIZE_LINEAR_FN(linear_f32, float, float, LOAD_SAME, STORE_SAME)
QK_RESIZE_LINEAR_FN(linear_f16, uint16_t, float, LOAD_F16, STORE_F16)
QK_RESIZE_LINEAR_FN(linear_f64, double, double, LOAD_SAME, STORE_SAME)
QK_RESIZE_LINEAR_FN(linear_u8, uint8_t, double, LOAD_INT, store_u8)
QK_RESIZE_LINEAR_FN(linear_s8, int8_t, double, LOAD_INT, store_s8)

void QK_RESIZE_NAME(const qk_resize_params *p, size_t r0, size_t r1, void *scratch) {
    switch (p->kind) {
    case QK_RESIZE_NEAREST:
        if (p->elem == 1) nearest8(p, r0, r1);
        else if (p->elem == 2) nearest16(p, r0, r1);
        else if (p->elem == 4) nearest32(p, r0, r1);
        else if (p->elem == 8) nearest64(p, r0, r1);
        break;
    case QK_RESIZE_F32: linear_f32(p, r0, r1, (float *)scratch); break;
    case QK_RESIZE_F16: linear_f16(p, r0, r1, (float *)scratch); break;
    case QK_RESIZE_F64: linear_f64(p, r0, r1, (double *)scratch); break;
    case QK_RESIZE_U8: linear_u8(p, r0, r1, (double *)scratch); break;
    case QK_RESIZE_S8: linear_s8(p, r0, r1, (double *)scratch); break;
    default: break;
    }
}

#ifdef QK_RESIZE_PORTABLE
#if defined(__x86_64__)
void qk_resize_avx2(const qk_resize_params *p, size_t r0, size_t r1, void *scratch);
#endif

qk_resize_fn qk_resize_for_isa(int isa) {
    return QK_PICK_AVX2(isa, qk_resize_avx2, qk_resize);
}
#endif
