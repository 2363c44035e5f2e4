/* Dynamic quantization of a float32 GEMM's activations (kernels/dynquant.c): the
 * activations quantized on the fly, per tensor exactly as ONNX DynamicQuantizeLinear
 * (uint8; scale = (max(0, max x) - min(0, min x)) / 255, 1 when that range is 0;
 * zero point = round_half_even(clamp(0 - min / scale, 0, 255)); q = saturate(
 * round_half_even(x / scale) + zero point)) or per row (the same over each row), then the
 * exact int8 GEMM, then the dequantization
 *     y[m, n] = float32(acc[m, n] - za[m] * cb[n]) * (sa[m] * sw[n]) (+ bias[n]):
 * per tensor in the GEMM's output stage (QK_OUT_DQ_F32, its column terms from
 * qk_dynq_columns), per row by qk_dq_rows on each tile in the output stage (the
 * qk_out_params dq_rows; over the whole int32 result where B has zero points);
 * each step one float32 rounding in the order of ONNX Runtime's quantize_dynamic graph
 * (MatMulInteger -> Cast -> Mul(a_scale * w_scale) -> Add bias). acc holds the GEMM's
 * sums with the activations' zero point taken as 0 (B's zero points already folded in);
 * cb[n] = sum_k (B[k, n] - zb[n]) brings in the dynamic za (int32 arithmetic, wrapping). */
#ifndef QK_DYNQUANT_H
#define QK_DYNQUANT_H
#include <stddef.h>
#include <stdint.h>
#include "qk_quant.h"

/* Running min / max of n float32 values into *mn, *mx; returns nonzero when some value
   is NaN or infinite (*mn, *mx then unspecified). */
typedef int (*qk_minmax_fn)(size_t n, const float *x, float *mn, float *mx);
/* The dequantizing pass over rows [0, m) of n columns (acc row stride in elements, y in
   bytes), add NULL or int32 column terms added to acc first: the pass over a whole int32
   result, or over one GEMM tile in its output stage (qk_output.h, dq_rows). */
typedef void (*qk_dq_rows_fn)(size_t m, size_t n, const int32_t *acc, size_t acc_stride, const int32_t *add,
                              const float *sa, const int32_t *za, int per_row, const int32_t *cb, const float *sw,
                              const float *bias, float *y, size_t y_stride);

typedef struct { qk_minmax_fn minmax; qk_dq_rows_fn dq_rows; } qk_dynq_fns;
/* The portable loops, or the same C compiled for AVX2 (AVX-512) on the x86 paths that have it. */
qk_dynq_fns qk_dynq_for_isa(int isa);

/* DynamicQuantizeLinear's scale and zero point of a range [mn, mx]; returns nonzero when
   the scale is not a positive finite float32 (a range too wide or too narrow for it). */
int qk_dynq_params(float mn, float mx, float *scale, int32_t *zp);

/* Quantize m rows of k float32 (row stride x_stride bytes, columns contiguous) into q
   (m x k, contiguous), per tensor (sa[0], za[0]) or per row (sa[i], za[i]). Returns 0,
   1 for a NaN or infinite value, 2 for a range whose scale is not a finite float32 > 0. */
int qk_dynq_quantize(qk_minmax_fn minmax, qk_quantize_row_fn qrow, size_t m, size_t k, const float *x,
                     ptrdiff_t x_stride, int per_row, uint8_t *q, float *sa, int32_t *za);

/* The output stage's per-column terms of one call (per tensor, QK_OUT_DQ_F32):
   add[n] = add0[n] - za * cb[n] (int32, wrapping), scale[n] = float32(sa * sw[n]). */
void qk_dynq_columns(size_t n, float sa, int32_t za, const int32_t *add0, const int32_t *cb, const float *sw,
                     int32_t *add, float *scale);

int qk_minmax_scalar(size_t n, const float *x, float *mn, float *mx);
void qk_dq_rows_scalar(size_t m, size_t n, const int32_t *acc, size_t acc_stride, const int32_t *add, const float *sa,
                       const int32_t *za, int per_row, const int32_t *cb, const float *sw, const float *bias, float *y,
                       size_t y_stride);
#endif
