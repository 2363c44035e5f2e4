/* Resize of the two last axes of (N, C, H, W) values at any element strides
 * (kernels/resize.c): separable, the caller's tables per output row and column (the
 * source indices and, for linear, the two taps' weights), computed once.
 *
 * nearest: y[n, c, oy, ox] = x[n, c, iy0[oy], ix0[ox]], any element size (a copy).
 * linear: first along H, then along W, as the reference operator
 * (graph/backends/reference/resize.py) does it: t = x[iy0] * wy0 + x[iy1] * wy1, then
 * y = t[ix0] * wx0 + t[ix1] * wx1, each product and sum rounded in the arithmetic type
 * (float32 for float32 and float16 values, float64 for float64, int8 and uint8 ones), no
 * fused multiply-add; an axis with pass_h / pass_w 0 is not blended (the reference skips
 * an axis that maps onto itself). The result is stored as: float32 as is, float16 rounded
 * to nearest even, float64 as is, int8/uint8 rounded half to even and saturated. */
#ifndef QK_RESIZE_H
#define QK_RESIZE_H
#include <stddef.h>
#include <stdint.h>

enum { QK_RESIZE_NEAREST = 0, QK_RESIZE_F32 = 1, QK_RESIZE_F16 = 2, QK_RESIZE_F64 = 3, QK_RESIZE_U8 = 4,
       QK_RESIZE_S8 = 5 };

typedef struct {
    const void *x;
    ptrdiff_t xs[4];            /* element strides of x (N, C, H, W) */
    void *y;
    ptrdiff_t ys[4];            /* element strides of y (N, C, OH, OW) */
    size_t n, c, h, w, oh, ow;
    size_t elem;                /* bytes per element (nearest: 1, 2, 4 or 8) */
    int kind;                   /* QK_RESIZE_*: nearest, or linear of that dtype */
    int channels_last;          /* the channels in the inner loop (adjacent in memory) */
    int pass_h, pass_w;         /* linear: blend along H / W (0: the axis maps onto itself) */
    const int32_t *iy0, *iy1;   /* per output row (iy1: linear) */
    const int32_t *ix0, *ix1;   /* per output column */
    const void *wy0, *wy1;      /* linear: per output row, float (F32, F16) or double (others) */
    const void *wx0, *wx1;      /* per output column */
} qk_resize_params;

/* The rows a call splits into: N * OH (channels last) or N * C * OH. */
size_t qk_resize_rows(const qk_resize_params *p);
/* Bytes of scratch a call needs (one blended row). */
size_t qk_resize_scratch_bytes(const qk_resize_params *p);
/* Rows r0 .. r1 of qk_resize_rows(p). */
void qk_resize(const qk_resize_params *p, size_t r0, size_t r1, void *scratch);
/* The build of qk_resize for ISA path `isa` (qk_cpu.h): the portable C compiled with AVX2
 * on x86 (ISO C, no contraction: the same bits), else the baseline build. */
typedef void (*qk_resize_fn)(const qk_resize_params *p, size_t r0, size_t r1, void *scratch);
qk_resize_fn qk_resize_for_isa(int isa);
#endif
