/* 2-D average pooling (kernels/pool_avg.c), the family of qk_pool.h: x (N, C, H, W) and
 * y (N, C, OH, OW) at any element strides; the channels are the inner loop when they are
 * adjacent in both (NHWC memory: it vectorises), else each channel's windows in turn. */
#ifndef QK_POOL_AVG_H
#define QK_POOL_AVG_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
    size_t n, c, h, w, oh, ow;
    size_t kh, kw, sy, sx, dy, dx;  /* window, strides, dilations */
    ptrdiff_t pad_t, pad_l;         /* taps start at o * s - pad */
    ptrdiff_t pad_b, pad_r;         /* the explicit end pads (count_include_pad counts up to them) */
    int include_pad;                /* count_include_pad */
    ptrdiff_t xs[4], ys[4];         /* element strides of x and y */
} qk_pool2d;

/* float32 / float16 (uint16 bits) AveragePool as ONNX: the taps inside x summed in
 * float32 in window order (ky, kx), divided once by the count (taps inside x, or inside x
 * and its explicit pads with count_include_pad; never those past the pads), rounded once
 * to float16. acc: max(c, ow) floats. */
void qk_avgpool_f32(const qk_pool2d *g, const float *x, float *y, float *acc);
void qk_avgpool_f16(const qk_pool2d *g, const uint16_t *x, uint16_t *y, float *acc);

/* com.microsoft QLinearAveragePool as onnxruntime computes it (no dilations): each tap
 * dequantized to float32 (lut[q] = x_scale * (q - zx)), the taps inside x summed in float32
 * in window order, divided by the count as a float32 (kh * kw with count_include_pad, else
 * the taps inside x), then nearbyintf(v / y_scale + zy) saturated. lut: 256 floats indexed
 * by the byte; acc: c floats. */
void qk_qavgpool_q8(const qk_pool2d *g, const void *x, int is_signed, const float *lut, float y_scale, int32_t zy,
                    void *y, float *acc);
#endif
