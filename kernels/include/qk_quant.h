/* qkernels: quantize and dequantize (ONNX QuantizeLinear / DequantizeLinear in float32).
 *
 *   quantize:   q = saturate(round_half_even(x / scale) + zero_point)   (x / scale in float32)
 *   dequantize: y = float32(q - zero_point) * scale                     (one float32 rounding)
 *
 * A row kernel handles n contiguous values with one scale and zero point (per_elem 0)
 * or one per value (per_elem 1: per-channel parameters along the last axis). The range
 * driver (kernels/quantize.c) walks a flat range of an array viewed as
 * (outer, channels, inner) and hands each run of values that share a channel (inner > 1),
 * or each row of channels (inner == 1), to the row kernel; per tensor, channels == 1.
 * Every ISA's row kernel is bit-identical to the scalar one.
 */
#ifndef QK_QUANT_H
#define QK_QUANT_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

/* A row kernel covers whole steps of its width and returns how many values it did (<= n);
 * the range driver gives the rest to the scalar kernel, which does all n. quantize sets
 * *nan when some x is NaN (its q is then unspecified). */
typedef size_t (*qk_quantize_row_fn)(size_t n, const float *x, const float *scale, const int32_t *zp, int per_elem,
                                     int out_signed, void *q, int *nan);
typedef size_t (*qk_dequantize_row_fn)(size_t n, const void *q, int in_signed, const float *scale, const int32_t *zp,
                                       int per_elem, float *y);

/* Values [i0, i1) of an array viewed as (outer, channels, inner) with an ISA's row kernel
 * (the registry's, qk_registry.h); scale and zp hold `channels` values. quantize returns
 * nonzero when it met a NaN. */
int qk_quantize_range(qk_quantize_row_fn row, size_t i0, size_t i1, size_t channels, size_t inner,
                      const float *x, const float *scale, const int32_t *zp, int out_signed, void *q);
void qk_dequantize_range(qk_dequantize_row_fn row, size_t i0, size_t i1, size_t channels, size_t inner,
                         const void *q, int in_signed, const float *scale, const int32_t *zp, float *y);

size_t qk_quantize_row_scalar(size_t n, const float *x, const float *scale, const int32_t *zp, int per_elem,
                              int out_signed, void *q, int *nan);
size_t qk_dequantize_row_scalar(size_t n, const void *q, int in_signed, const float *scale, const int32_t *zp,
                                int per_elem, float *y);

/* One value: the definition every kernel matches (also their tails). */
static inline int32_t qk_quantize_one(float x, float scale, int32_t zp, int out_signed) {
    const float lo = out_signed ? -128.0f : 0.0f, hi = out_signed ? 127.0f : 255.0f;
    float v = rintf(x / scale) + (float)zp;     /* beyond 2^24 the sum may round: it saturates anyway */
    v = v < lo ? lo : v;
    v = v > hi ? hi : v;
    return (int32_t)v;                          /* NaN: unspecified, the caller raises */
}

/* Quantized elementwise Add / Mul of n values (kernels/qbinary.c): y = saturate(round(
 * (sa (a - za) op sb (b - zb)) / sy) + zy), each step in float32, a, b and y of one dtype. */
enum { QK_BINARY_ADD = 0, QK_BINARY_MUL = 1 };
void qk_qlinear_binary(size_t n, int op, int is_signed, const void *a, float sa, int32_t za, const void *b, float sb,
                       int32_t zb, float sy, int32_t zy, void *y);
/* The same C compiled for AVX2 (kernels/avx2/qbinary_avx2.c: 8 lanes, the same floats);
 * qk_qlinear_binary_for_isa picks it on the x86 paths that have AVX2. */
typedef void (*qk_qbinary_fn)(size_t, int, int, const void *, float, int32_t, const void *, float, int32_t, float,
                              int32_t, void *);
qk_qbinary_fn qk_qlinear_binary_for_isa(int isa);
#endif
