/* TFLite's own 8-bit arithmetic where it is not a GEMM's (kernels/tfl_binary.c). */
#ifndef QK_TFL_H
#define QK_TFL_H
#include <stddef.h>
#include <stdint.h>

enum { QK_TFL_ADD = 0, QK_TFL_SUB = 1, QK_TFL_MUL = 2 };

/* y = clamp(MultiplyByQuantizedMultiplier(raw, mult, shift) + zy, lo, hi) of raw = ta[a] + tb[b]
 * (ADD), ta[a] - tb[b] (SUB) or (a - za) * (b - zb) (MUL); tables indexed by the input byte. */
void qk_tfl_binary(size_t n, int op, int is_signed, const void *a, const void *b, const int32_t *ta,
                   const int32_t *tb, int32_t za, int32_t zb, int32_t mult, int32_t shift, int32_t zy, int32_t lo,
                   int32_t hi, void *y);

typedef void (*qk_tfl_binary_fn)(size_t, int, int, const void *, const void *, const int32_t *, const int32_t *,
                                 int32_t, int32_t, int32_t, int32_t, int32_t, int32_t, int32_t, void *);

/* The loop of ISA path isa (an AVX2 one where the CPU has it; the same bits on each). */
qk_tfl_binary_fn qk_tfl_binary_for_isa(int isa);
#endif
