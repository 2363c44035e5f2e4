/* Global average pooling: see qk_pool.h. Portable C; the inner loops vectorise. */
#include <math.h>
#include "qk_cpu.h"
#include "qk_pool.h"

#define QK_POOL_SUMS(T, ACC)                                                               \
    do {                                                                                   \
        for (size_t ch = 0; ch < c; ch++) acc[ch] = 0;                                     \
        if (sc == 1) {       /* NHWC memory: a row of channels per pixel */                \
            for (size_t p = 0; p < pixels; p++) {                                          \
                const T *row = img + (ptrdiff_t)p * sp;                                    \
                for (size_t ch = 0; ch < c; ch++) acc[ch] += (ACC)row[ch];                 \
            }                                                                              \
        } else {             /* NCHW memory (or any other): a run of pixels per channel */ \
            for (size_t ch = 0; ch < c; ch++) {                                            \
                const T *col = img + (ptrdiff_t)ch * sc;                                   \
                ACC s = 0;                                                                 \
                for (size_t p = 0; p < pixels; p++) s += (ACC)col[(ptrdiff_t)p * sp];      \
                acc[ch] = s;                                                               \
            }                                                                              \
        }                                                                                  \
    } while (0)

void qk_global_avg_f32(const float *x, size_t n, size_t c, size_t pixels, ptrdiff_t sn, ptrdiff_t sc, ptrdiff_t sp,
                       double *acc, float *y) {
    for (size_t i = 0; i < n; i++) {
        const float *img = x + (ptrdiff_t)i * sn;
        QK_POOL_SUMS(float, double);
        for (size_t ch = 0; ch < c; ch++) y[i * c + ch] = (float)(acc[ch] / (double)pixels);
    }
}

static inline int32_t requant(int64_t sum, int32_t zx, size_t pixels, float scale, int32_t zy, int lo, int hi) {
    const int32_t acc = (int32_t)(uint32_t)((uint64_t)sum - (uint64_t)zx * (uint64_t)pixels);   /* int32 wrap */
    const double v = (double)nearbyintf((float)acc * scale) + (double)zy;
    return v < lo ? lo : v > hi ? hi : (int32_t)v;
}

void qk_global_avg_q8(const void *x, int is_signed, size_t n, size_t c, size_t pixels, ptrdiff_t sn, ptrdiff_t sc,
                      ptrdiff_t sp, int32_t zx, float scale, int32_t zy, int64_t *acc, void *y) {
    for (size_t i = 0; i < n; i++) {
        if (is_signed) {
            const int8_t *img = (const int8_t *)x + (ptrdiff_t)i * sn;
            QK_POOL_SUMS(int8_t, int64_t);
            for (size_t ch = 0; ch < c; ch++)
                ((int8_t *)y)[i * c + ch] = (int8_t)requant(acc[ch], zx, pixels, scale, zy, -128, 127);
        } else {
            const uint8_t *img = (const uint8_t *)x + (ptrdiff_t)i * sn;
            QK_POOL_SUMS(uint8_t, int64_t);
            for (size_t ch = 0; ch < c; ch++)
                ((uint8_t *)y)[i * c + ch] = (uint8_t)requant(acc[ch], zx, pixels, scale, zy, 0, 255);
        }
    }
}

/* geom: kh, kw, stride_y, stride_x, dil_y, dil_x. Per output pixel, the channels in the
   inner loop (adjacent in NHWC memory: it vectorises). */
#define QK_MAXPOOL(NAME, T, LOWEST, D)                                                                     \
    void NAME(int isa, const T *x, size_t n, size_t c, size_t h, size_t w, const ptrdiff_t *xs, size_t oh,   \
              size_t ow, const size_t *geom, const ptrdiff_t *pad, T *y, const ptrdiff_t *ys) {            \
        const size_t kh = geom[0], kw = geom[1], sy = geom[2], sx = geom[3], dy = geom[4], dx = geom[5];     \
        if (xs[1] == 1 && ys[1] == 1) {   /* NHWC memory: the ISA's loop (qk_pool_simd.h) */                 \
            void (*simd)(const T *, size_t, size_t, size_t, size_t, const ptrdiff_t *, size_t, size_t,       \
                         const size_t *, const ptrdiff_t *, T *, const ptrdiff_t *) = QK_MAXPOOL_SIMD(D, isa);  \
            if (simd) {                                                                                    \
                simd(x, n, c, h, w, xs, oh, ow, geom, pad, y, ys);                                         \
                return;                                                                                    \
            }                                                                                              \
        }                                                                                                  \
        for (size_t i = 0; i < n; i++)                                                                     \
            for (size_t oy = 0; oy < oh; oy++)                                                             \
                for (size_t ox = 0; ox < ow; ox++) {                                                       \
                    T *out = y + (ptrdiff_t)i * ys[0] + (ptrdiff_t)oy * ys[2] + (ptrdiff_t)ox * ys[3];      \
                    for (size_t ch = 0; ch < c; ch++) out[(ptrdiff_t)ch * ys[1]] = LOWEST;                 \
                    for (size_t ky = 0; ky < kh; ky++) {                                                   \
                        const ptrdiff_t iy = (ptrdiff_t)(oy * sy + ky * dy) - pad[0];                      \
                        if (iy < 0 || iy >= (ptrdiff_t)h) continue;                                        \
                        for (size_t kx = 0; kx < kw; kx++) {                                               \
                            const ptrdiff_t ix = (ptrdiff_t)(ox * sx + kx * dx) - pad[1];                  \
                            if (ix < 0 || ix >= (ptrdiff_t)w) continue;                                    \
                            const T *in = x + (ptrdiff_t)i * xs[0] + iy * xs[2] + ix * xs[3];              \
                            if (xs[1] == 1 && ys[1] == 1) { /* NHWC memory: adjacent channels, vectorised */ \
                                for (size_t ch = 0; ch < c; ch++) {                                        \
                                    const T v = in[ch], m = out[ch];                                       \
                                    out[ch] = (v > m || v != v) ? v : m;                                   \
                                }                                                                          \
                                continue;                                                                  \
                            }                                                                              \
                            for (size_t ch = 0; ch < c; ch++) {                                            \
                                const T v = in[(ptrdiff_t)ch * xs[1]], m = out[(ptrdiff_t)ch * ys[1]];     \
                                out[(ptrdiff_t)ch * ys[1]] = (v > m || v != v) ? v : m;                    \
                            }                                                                              \
                        }                                                                                  \
                    }                                                                                      \
                }                                                                                          \
    }
/* The SIMD loops of NHWC memory (kernels/avx2/pool_avx2.c, kernels/avx512vnni/pool_avx512vnni.c)
   for ISA path `isa`; NULL: the portable loop. */
#if defined(__x86_64__)
#define QK_MAXPOOL_SIMD_DECLS(T, D)                                                                          \
    QK_MAXPOOL_DECL(qk_maxpool_nhwc_##D##_avx2, T) QK_MAXPOOL_DECL(qk_maxpool_nhwc_##D##_avx512, T)           \
    QK_MAXPOOL_DECL(qk_maxpool_nhwc_##D##_avx512_emu, T)
QK_MAXPOOL_SIMD_DECLS(float, f32)
QK_MAXPOOL_SIMD_DECLS(int8_t, s8)
QK_MAXPOOL_SIMD_DECLS(uint8_t, u8)
#define QK_MAXPOOL_SIMD(D, isa)                                                                              \
    ((isa) == QK_ISA_AVX512VNNI ? qk_maxpool_nhwc_##D##_avx512                                               \
     : (isa) == QK_ISA_AVX512VNNI_EMU ? qk_maxpool_nhwc_##D##_avx512_emu                                     \
     : qk_isa_has_avx2(isa) ? qk_maxpool_nhwc_##D##_avx2 : NULL)
#else
#define QK_MAXPOOL_SIMD(D, isa) ((void)(isa), NULL)
#endif

QK_MAXPOOL(qk_maxpool_f32, float, -INFINITY, f32)
QK_MAXPOOL(qk_maxpool_s8, int8_t, INT8_MIN, s8)
QK_MAXPOOL(qk_maxpool_u8, uint8_t, 0, u8)
