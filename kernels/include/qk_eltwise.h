/* Elementwise float ops (kernels/eltwise.c): float32 (and float16, computed in float32 and
 * rounded once) unary activations over one run of n values, PRelu and Add/Sub/Mul/Div with
 * a per-channel or scalar operand, Softmax/LogSoftmax along contiguous rows, and the
 * 256-entry lookup table that int8 activations apply.
 *
 * Exact ops (Relu, Clip, LeakyRelu, PRelu, HardSigmoid, HardSwish, Add..Div) take the
 * numpy reference's float32 steps in its order (no contraction to FMA: ISO C), so they
 * give its bits: max(a, b) = (a > b || a != a) ? a : b and min likewise, as numpy's
 * maximum/minimum (NaN of a kept, equal values -> b). Exp, Sigmoid, Tanh, Erf and Gelu are polynomial
 * approximations of basic operations only (no libm), the same bits in every build; their
 * error bounds are in kernels/eltwise.c. Every build of this C (portable, AVX2) gives the
 * same bits: the loops are written so that the compiler vectorises them without
 * reassociating anything. In-place calls (x == y) are allowed. */
#ifndef QK_ELTWISE_H
#define QK_ELTWISE_H
#include <stddef.h>
#include <stdint.h>

enum qk_elt_unary {
    QK_ELT_RELU = 0, QK_ELT_CLIP, QK_ELT_HARDSIGMOID, QK_ELT_HARDSWISH, QK_ELT_LEAKYRELU,
    QK_ELT_SIGMOID, QK_ELT_TANH, QK_ELT_EXP, QK_ELT_ERF, QK_ELT_GELU, QK_ELT_GELU_TANH, QK_ELT_UNARY_COUNT
};
enum qk_elt_binary { QK_ELT_ADD = 0, QK_ELT_SUB, QK_ELT_MUL, QK_ELT_DIV };
/* how a binary operand is laid against the (outer, channels, inner) run of the result */
enum qk_elt_operand { QK_ELT_FULL = 0, QK_ELT_CHANNEL = 1 };

/* y = op(x) over n float32 values; p0, p1: Clip (lo, hi), HardSigmoid (alpha, beta),
 * LeakyRelu (alpha) */
typedef void (*qk_elt_unary_f32_fn)(int op, float p0, float p1, size_t n, const float *x, float *y);

typedef struct {
    qk_elt_unary_f32_fn unary_f32;
    /* the same over float16 (IEEE binary16 bits): each value widened, op in float32, rounded once */
    void (*unary_f16)(int op, float p0, float p1, size_t n, const uint16_t *x, uint16_t *y);
    /* PRelu: y = x < 0 ? x * slope[ch] : x over the run (outer, channels, inner) */
    void (*prelu_f32)(size_t outer, size_t channels, size_t inner, const float *x, const float *slope, float *y);
    /* y = a op b over the run (outer, channels, inner) of y: each operand QK_ELT_FULL (that
     * run) or QK_ELT_CHANNEL (one value per channel; a scalar is channels = 1); not both CHANNEL */
    void (*binary_f32)(int op, size_t outer, size_t channels, size_t inner, const float *a, int a_kind,
                       const float *b, int b_kind, float *y);
    /* Softmax (LogSoftmax with `log`) of each of `rows` contiguous rows of `len` values */
    void (*softmax_f32)(int log, size_t rows, size_t len, const float *x, float *y);
    /* attention's Softmax(x / s + mask) (x * s with div = 0) of `rows` contiguous rows of
     * `len` float32 (half: float16) values, each row's mask at mask + mask_off[r] values,
     * every mask_step-th (0: one value for the row); scratch: 2 len floats (half) */
    void (*softmax_masked)(size_t rows, size_t len, const void *x, const void *mask, const int64_t *mask_off,
                           ptrdiff_t mask_step, float s, int div, int half, void *y, float *scratch);
    /* binary_f32 over float16 (IEEE binary16 bits): widened, op in float32, rounded once */
    void (*binary_f16)(int op, size_t outer, size_t channels, size_t inner, const uint16_t *a, int a_kind,
                       const uint16_t *b, int b_kind, uint16_t *y);
} qk_eltwise_kernels;

/* The kernels for ISA index `isa` (qk_cpu.h): the AVX2 build on x86 paths with AVX2, else
 * the portable one. Every entry gives the portable build's bits. */
const qk_eltwise_kernels *qk_eltwise_for_isa(int isa);
#endif
