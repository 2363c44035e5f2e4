/* Global average pooling (kernels/pool.c): the mean over the pixels of each image and
 * channel, for values at any element strides (sn: image, sc: channel, sp: pixel); the
 * loops run along whichever of channels or pixels is adjacent in memory. */
#ifndef QK_POOL_H
#define QK_POOL_H
#include <stddef.h>
#include <stdint.h>

/* float32: y[i * c + ch] = float32(sum in float64 of the pixels / pixels). acc: c doubles. */
void qk_global_avg_f32(const float *x, size_t n, size_t c, size_t pixels, ptrdiff_t sn, ptrdiff_t sc, ptrdiff_t sp,
                       double *acc, float *y);
/* int8/uint8, onnxruntime's QLinearGlobalAveragePool: the exact sum minus zx * pixels,
 * wrapped to int32, times the float32 scale (x_scale / (y_scale * pixels)), rounded half to
 * even, plus zy, saturated. acc: c int64. */
void qk_global_avg_q8(const void *x, int is_signed, size_t n, size_t c, size_t pixels, ptrdiff_t sn, ptrdiff_t sc,
                      ptrdiff_t sp, int32_t zx, float scale, int32_t zy, int64_t *acc, void *y);
/* 2-D max pooling of x (N, C, H, W at element strides xs) into y (N, C, OH, OW at element
 * strides ys): window (kh, kw), strides, dilations, padding (top, left); taps in the
 * padding are skipped (as the lowest value), NaN propagates (as numpy's maximum). NHWC
 * memory (channel strides 1) runs ISA path `isa`'s SIMD loop where it has one: the same
 * values. */
#define QK_MAXPOOL_DECL(NAME, T)                                                                          \
    void NAME(const T *x, size_t n, size_t c, size_t h, size_t w, const ptrdiff_t *xs, size_t oh, size_t ow, \
              const size_t *geom, const ptrdiff_t *pad, T *y, const ptrdiff_t *ys);
#define QK_MAXPOOL_ISA_DECL(NAME, T)                                                                      \
    void NAME(int isa, const T *x, size_t n, size_t c, size_t h, size_t w, const ptrdiff_t *xs, size_t oh,  \
              size_t ow, const size_t *geom, const ptrdiff_t *pad, T *y, const ptrdiff_t *ys);
QK_MAXPOOL_ISA_DECL(qk_maxpool_f32, float)
QK_MAXPOOL_ISA_DECL(qk_maxpool_s8, int8_t)
QK_MAXPOOL_ISA_DECL(qk_maxpool_u8, uint8_t)
#endif
