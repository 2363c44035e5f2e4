/* col2im of a transposed convolution (kernels/col2im.c): the GEMM gave, per input pixel,
 * every tap's contribution to the output (cols: one row per input pixel (N, H, W), group
 * g's columns at g * kh * kw * og, ordered (ky, kx, o)); each output pixel (NHWC) gathers
 * the taps that land on it and sums them. Output pixel oy receives input row iy through
 * tap ky when oy = iy * stride + ky * dilation - pad: the caller's tables list, per output
 * row (column), those (ky, iy) pairs in increasing ky. */
#ifndef QK_COL2IM_H
#define QK_COL2IM_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const float *cols;          /* n * h * w rows of cols_stride floats */
    size_t cols_stride;
    size_t n, h, w, groups, og, kh, kw, oh, ow;
    const int32_t *row_cnt;     /* per output row: how many taps land on it (<= kh) */
    const int32_t *row_tap;     /* per output row, kh entries: ky, then iy in row_src */
    const int32_t *row_src;
    const int32_t *col_cnt;     /* the same per output column (<= kw) */
    const int32_t *col_tap;
    const int32_t *col_src;
    const float *bias;          /* groups * og floats (zeros for none) */
    float lo, hi;               /* the clamp (an activation; -inf, inf for none), NaN kept */
    void *y;                    /* (N, OH, OW, groups * og) at element strides ys */
    ptrdiff_t ys[4];
    int out_f16;                /* y is IEEE binary16 (rounded once), else float32 */
} qk_col2im_params;

/* Output rows r0 .. r1 of the N * OH rows: y = clamp(sum of taps in increasing (ky, kx)
 * from +0, in float32, + bias). acc: og floats of scratch. */
void qk_col2im(const qk_col2im_params *p, size_t r0, size_t r1, float *acc);
/* The build of qk_col2im for ISA path `isa` (as qk_resize_for_isa). */
typedef void (*qk_col2im_fn)(const qk_col2im_params *p, size_t r0, size_t r1, float *acc);
qk_col2im_fn qk_col2im_for_isa(int isa);
#endif
