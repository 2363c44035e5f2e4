/* Global average pooling: see qk_pool.h. Portable C; the inner loops vectorise. */
#include <math.h>
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
