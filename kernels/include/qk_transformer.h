/* The transformer operators of onnxruntime's com.microsoft domain that the cpu backend runs
 * natively (kernels/transformer.c; graph/backends/cpu_transformer.py):
 * SkipLayerNormalization and the attention core of Attention (scores, mask, softmax, AV
 * per batch and head; the QKV projection is the float GEMM's). */
#ifndef QK_TRANSFORMER_H
#define QK_TRANSFORMER_H
#include <stddef.h>
#include <stdint.h>

/* SkipLayerNormalization of `rows` rows of n values: s = float32(x + skip) (+ bias, float32),
 * then s's LayerNormalization as qk_layernorm_f32 computes it (float64 statistics, two
 * passes, the result rounded once). Rows are contiguous (element stride 1) at row strides
 * xr, sr, yr, sumr; row r reads skip row r % srows (skip broadcast over the batch). bias,
 * beta, sum, mean, inv may be NULL; mean/inv one float32 per row. tmp: n floats. The f16
 * build reads and writes float16 bits (x, skip, bias, gamma, beta, y, sum), s in float32. */
void qk_skip_layernorm_f32(const float *x, ptrdiff_t xr, const float *skip, ptrdiff_t sr, size_t srows,
                           const float *bias, const float *gamma, const float *beta, size_t rows, size_t n,
                           double eps, float *y, ptrdiff_t yr, float *sum, ptrdiff_t sumr, float *mean, float *inv,
                           float *tmp);
void qk_skip_layernorm_f16(const uint16_t *x, ptrdiff_t xr, const uint16_t *skip, ptrdiff_t sr, size_t srows,
                           const uint16_t *bias, const uint16_t *gamma, const uint16_t *beta, size_t rows, size_t n,
                           double eps, uint16_t *y, ptrdiff_t yr, uint16_t *sum, ptrdiff_t sumr, float *mean,
                           float *inv, float *tmp);

/* One self-attention's geometry: batch b, heads, s query rows, t key rows, head sizes hq
 * (q and k) and hv (v). q, k, v: row (batch, position) at row stride ld, head n at
 * columns n * hq (q, k) and n * hv (v) from each base; out: row stride ldo, head n at
 * columns n * hv. mask: float32 added to the scaled scores, element (batch, i, j) at
 * mb * batch + ms * i + j (NULL: none). */
typedef struct {
    size_t b, heads, s, t, hq, hv;
    const float *q, *k, *v;
    ptrdiff_t ld;
    const float *mask;
    ptrdiff_t mb, ms;
    float scale;
    float *out;
    ptrdiff_t ldo;
} qk_attention;

/* Heads [h0, h1) of the (batch * heads) of g: per head softmax(scale * q k^T + mask) v,
 * the scores summed in float32 over the head size in order, softmax with this library's
 * exp (qk_eltmath.h) and float32 sums in 16 lanes. scratch: qk_attention_scratch(g) floats. */
typedef void (*qk_attention_fn)(const qk_attention *g, size_t h0, size_t h1, float *scratch);
size_t qk_attention_scratch(const qk_attention *g);
/* The build for ISA path `isa` (the AVX2 build where it has AVX2: the same bits). */
qk_attention_fn qk_attention_for_isa(int isa);
#endif
