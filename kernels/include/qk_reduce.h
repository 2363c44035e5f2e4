/* Reductions over any set of axes, and layer normalization (kernels/reduce.c). The
 * caller describes x as kept axes (nk, their sizes, x and y element strides) and reduced
 * axes (nr, sizes, x strides), each list outermost first, adjacent axes merged where
 * they can be: the loop runs along the kept axis with the smallest stride when it is
 * smaller than the reduced one's (rows of accumulators, vectorised), else along the
 * innermost reduced axis. */
#ifndef QK_REDUCE_H
#define QK_REDUCE_H
#include <stddef.h>
#include <stdint.h>

#define QK_REDUCE_MAXDIM 8
enum { QK_REDUCE_SUM = 0, QK_REDUCE_MEAN = 1, QK_REDUCE_MAX = 2, QK_REDUCE_MIN = 3 };

typedef struct {
    size_t nk, nr;                     /* kept, reduced axes (each <= QK_REDUCE_MAXDIM) */
    size_t kshape[QK_REDUCE_MAXDIM], rshape[QK_REDUCE_MAXDIM];
    ptrdiff_t kxs[QK_REDUCE_MAXDIM], kys[QK_REDUCE_MAXDIM], rxs[QK_REDUCE_MAXDIM];
    size_t count;                      /* elements per result (mean's divisor), > 0 */
} qk_reduce_geom;

/* float32: sum / mean in float64, rounded once; max / min exact, NaN propagating.
   acc: as many doubles as the innermost kept axis has elements (rows mode), or 1. */
void qk_reduce_f32(int op, const qk_reduce_geom *g, const float *x, float *y, double *acc);
/* int8 / uint8 max and min (exact). acc: as qk_reduce_f32's, as int32. */
void qk_reduce_q8(int op, int is_signed, const qk_reduce_geom *g, const void *x, void *y, int32_t *acc);
/* How many accumulators qk_reduce_* use for g. */
size_t qk_reduce_acc_size(const qk_reduce_geom *g);

/* LayerNormalization of rows of n elements (x at row stride xr, element stride xc): the
   mean and variance of each row in float64 (two passes: the sum, then the squared
   deviations, no cancellation), inv =
   1 / sqrt(var + eps) in float64, y = (x - mean) * inv * scale + bias in float64 rounded
   once. scale, bias: n values at strides ss, bs (bias NULL: none); mean, inv: one float32
   per row at strides ms, is (NULL: not wanted). f16: float16 bits for x, scale, bias, y. */
void qk_layernorm_f32(const float *x, size_t rows, size_t n, ptrdiff_t xr, ptrdiff_t xc, const float *scale,
                      ptrdiff_t ss, const float *bias, ptrdiff_t bs, double eps, float *y, ptrdiff_t yr, ptrdiff_t yc,
                      float *mean, ptrdiff_t ms, float *inv, ptrdiff_t is);
/* The float32 LayerNorm of an ISA path (QK_ISA_*): the same bits on every one. */
typedef void (*qk_layernorm_f32_fn)(const float *x, size_t rows, size_t n, ptrdiff_t xr, ptrdiff_t xc,
                                    const float *scale, ptrdiff_t ss, const float *bias, ptrdiff_t bs, double eps,
                                    float *y, ptrdiff_t yr, ptrdiff_t yc, float *mean, ptrdiff_t ms, float *inv,
                                    ptrdiff_t is);
qk_layernorm_f32_fn qk_layernorm_f32_for_isa(int isa);
void qk_layernorm_f16(const uint16_t *x, size_t rows, size_t n, ptrdiff_t xr, ptrdiff_t xc, const uint16_t *scale,
                      ptrdiff_t ss, const uint16_t *bias, ptrdiff_t bs, double eps, uint16_t *y, ptrdiff_t yr,
                      ptrdiff_t yc, float *mean, ptrdiff_t ms, float *inv, ptrdiff_t is);
#endif
