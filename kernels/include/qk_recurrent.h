/* The gate math of the recurrent layers (kernels/recurrent.c): one time step of an RNN,
 * GRU or LSTM cell over the rows of a batch, after the GEMMs that the driver runs
 * (kernels/_recurrent.pxi): the input projection of every step at once (x W^T + biases)
 * and, per step, h R^T. ONNX's gate order (LSTM i, o, f, c; GRU z, r, h) and activation
 * list; float32 throughout. A row whose sequence has ended (step >= its length) is left
 * alone: its state is kept, its output row is not written. Every build (portable, AVX2)
 * gives the same bits (ISO C float semantics, the helpers of qk_eltmath.h). */
#ifndef QK_RECURRENT_H
#define QK_RECURRENT_H
#include <stddef.h>
#include <stdint.h>

enum qk_rnn_cell_kind { QK_CELL_RNN = 0, QK_CELL_GRU = 1, QK_CELL_LSTM = 2 };
enum qk_rnn_act_kind {
    QK_RNN_RELU = 0, QK_RNN_TANH, QK_RNN_SIGMOID, QK_RNN_AFFINE, QK_RNN_LEAKYRELU, QK_RNN_THRESHOLDEDRELU,
    QK_RNN_SCALEDTANH, QK_RNN_HARDSIGMOID, QK_RNN_ELU, QK_RNN_SOFTSIGN, QK_RNN_SOFTPLUS, QK_RNN_ACT_COUNT
};

typedef struct {
    int kind;           /* qk_rnn_act_kind */
    float alpha, beta;
} qk_rnn_act;

typedef struct {
    int cell;                   /* qk_rnn_cell_kind */
    size_t hidden;              /* H */
    float clip;                 /* gate inputs bounded to [-clip, clip] before their activation; +inf: none */
    int input_forget;           /* LSTM: f = 1 - i */
    int linear_before_reset;    /* GRU: h~ = g(x Wh + r * (h Rh + Rbh)); else g(x Wh + (r * h) Rh + Rbh) */
    qk_rnn_act act[3];          /* LSTM f, g, h; GRU f, g; RNN f */
    const float *peephole;      /* LSTM Pi, Po, Pf (3 H values), or NULL */
} qk_rnn_cell;

/* One direction's sequence: where its projected inputs and its outputs lie. */
typedef struct {
    size_t rows;                /* N, the batch */
    int reverse;                /* a row runs from its last valid step back */
    const int32_t *lens;        /* per row, each in [0, steps]; NULL: all rows run every step */
    size_t steps;               /* T */
    const float *xw;            /* row (t, n): x_t W^T + biases, G*H values at xw + t * xw_t + n * xw_n */
    ptrdiff_t xw_t, xw_n;
    float *y;                   /* row (t, n) of Y at y + t * y_t + n * y_n (H values); NULL: not written */
    ptrdiff_t y_t, y_n;
} qk_rnn_seq;

typedef struct {
    /* Step s of every row: g (rows, gs) holds h R^T (+ the GEMM's bias) on entry, gs = 2 H for a
     * GRU with linear_before_reset = 0 (its z, r columns), G * H otherwise; h, c (rows, H): the
     * state, updated. A GRU with linear_before_reset = 0 stops after its gates: z stays in g,
     * r * h goes to rh (rows, H) for the driver's (r * h) Rh^T GEMM, then step_b finishes. */
    void (*step_a)(const qk_rnn_cell *cell, const qk_rnn_seq *seq, size_t s, float *g, float *h, float *c,
                   float *rh);
    /* GRU, linear_before_reset = 0: rhg (rows, H) = (r * h) Rh^T + Rbh; h~, then h. */
    void (*step_b)(const qk_rnn_cell *cell, const qk_rnn_seq *seq, size_t s, const float *g, const float *rhg,
                   float *h);
    /* onnxruntime's per-call quantization of a GEMM operand (DynamicQuantizeLSTM): x (rows x cols)
     * -> q uint8 with *scale = (max - min) / 255 (1 when max = min), *zp = round-half-even(clamp(
     * -min / scale, 0, 255)), q = clamp(rint(x / scale) + zp, 0, 255); float32 throughout. The
     * range [min, max] holds 0 and the first range_rows rows, of those only the rows r with
     * step <= lens[r] when lens is given (the rows onnxruntime's GEMM sees: X's first max(lens)
     * steps; at step s, h of the rows that ran step s - 1, the others being 0 there). */
    void (*quantize)(size_t rows, size_t cols, const float *x, size_t range_rows, const int32_t *lens, size_t s,
                     uint8_t *q, float *scale, int32_t *zp);
    /* out (rows, cols; row stride out_stride floats) = float(acc - za * colsum) * (sa * sw[col])
     * (+ bias[col] when bias): the dequantized integer product of a zero-point-0 GEMM. */
    void (*dequantize)(size_t rows, size_t cols, const int32_t *acc, int32_t za, const int32_t *colsum, float sa,
                       const float *sw, const float *bias, float *out, size_t out_stride);
} qk_recurrent_kernels;

/* The kernels for ISA index `isa` (qk_cpu.h): the AVX2 build on x86 paths with AVX2, else
 * the portable one (the same bits). */
const qk_recurrent_kernels *qk_recurrent_for_isa(int isa);
#endif
