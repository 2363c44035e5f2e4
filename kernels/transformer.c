/* com.microsoft SkipLayerNormalization and the attention core (qk_transformer.h): portable
 * C11, the attention compiled once as it is and once with AVX2 flags
 * (kernels/avx2/transformer_avx2.c includes this file). The inner loops are axpy loops
 * (no reductions across lanes) and the reductions run in 16 fixed lanes, so that the
 * compiler vectorises them without reassociating: the same float32 operations in the same
 * order in both builds (ISO C, no contraction to FMA), the same bits. */
#include <math.h>
#include <string.h>

#include "qk_cpu.h"
#include "qk_f16.h"
#include "qk_transformer.h"

#ifdef __clang__
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("no-trapping-math")
#endif

#include "qk_eltmath.h"

#ifndef QK_TF_NAME   /* the portable build */
#define QK_TF_NAME(name) name##_portable
#define QK_TF_PORTABLE
#endif

#define QK_LANES 16

static float lanes_max(const float *x, size_t n) {
    float m[QK_LANES];
    for (size_t l = 0; l < QK_LANES; l++) m[l] = -INFINITY;
    size_t j = 0;
    for (; j + QK_LANES <= n; j += QK_LANES)
        for (size_t l = 0; l < QK_LANES; l++) m[l] = x[j + l] > m[l] ? x[j + l] : m[l];
    for (; j < n; j++) m[0] = x[j] > m[0] ? x[j] : m[0];
    float r = m[0];
    for (size_t l = 1; l < QK_LANES; l++) r = m[l] > r ? m[l] : r;
    return r;
}

static float lanes_sum(const float *x, size_t n) {
    float s[QK_LANES] = {0};
    size_t j = 0;
    for (; j + QK_LANES <= n; j += QK_LANES)
        for (size_t l = 0; l < QK_LANES; l++) s[l] += x[j + l];
    for (; j < n; j++) s[0] += x[j];
    float r = 0.0f;
    for (size_t l = 0; l < QK_LANES; l++) r += s[l];
    return r;
}

#define QK_JB 16   /* score columns (and output columns) kept in registers: 2 AVX2 vectors */

static size_t padded(size_t t) { return (t + QK_JB - 1) / QK_JB * QK_JB; }

/* One head at a time: kt (hq x tp, tp = t rounded up to QK_JB, zero padded) the head's keys
 * transposed, row (tp) the scores of one query, v (t x hv) the head's values. The scores
 * and the output are summed in blocks of QK_JB columns held in registers over the whole
 * head size (each sum in order over h or j, so both builds give the same bits). */
static void attention_heads(const qk_attention *g, size_t h0, size_t h1, float *scratch) {
    const size_t s = g->s, t = g->t, hq = g->hq, hv = g->hv, tp = padded(t);
    float *kt = scratch, *row = scratch + hq * tp, *v = row + tp;
    for (size_t bh = h0; bh < h1; bh++) {
        const size_t b = bh / g->heads, n = bh % g->heads;
        const float *q = g->q + (ptrdiff_t)(b * s) * g->ld + n * hq;
        const float *k = g->k + (ptrdiff_t)(b * t) * g->ld + n * hq;
        const float *vsrc = g->v + (ptrdiff_t)(b * t) * g->ld + n * hv;
        for (size_t h = 0; h < hq; h++) {
            for (size_t j = 0; j < t; j++) kt[h * tp + j] = k[(ptrdiff_t)j * g->ld + h];
            for (size_t j = t; j < tp; j++) kt[h * tp + j] = 0.0f;
        }
        /* the head's values side by side (t x hv): rows of a packed QKV matrix lie a
         * cache-set stride apart and would evict each other for every query */
        for (size_t j = 0; j < t; j++) memcpy(v + j * hv, vsrc + (ptrdiff_t)j * g->ld, hv * sizeof(float));
        for (size_t i = 0; i < s; i++) {
            const float *qi = q + (ptrdiff_t)i * g->ld;
            for (size_t j0 = 0; j0 < tp; j0 += QK_JB) {
                float acc[QK_JB] = {0};
                for (size_t h = 0; h < hq; h++) {
                    const float a = qi[h];
                    const float *kh = kt + h * tp + j0;
                    for (size_t l = 0; l < QK_JB; l++) acc[l] += a * kh[l];
                }
                for (size_t l = 0; l < QK_JB; l++) row[j0 + l] = acc[l];
            }
            const float sc = g->scale;
            if (g->mask) {
                const float *mi = g->mask + (ptrdiff_t)b * g->mb + (ptrdiff_t)i * g->ms;
                for (size_t j = 0; j < t; j++) row[j] = row[j] * sc + mi[j];
            } else {
                for (size_t j = 0; j < t; j++) row[j] = row[j] * sc;
            }
            const float m = lanes_max(row, t);
            for (size_t j = 0; j < t; j++) row[j] = qk_elt_exp(row[j] - m);
            const float inv = 1.0f / lanes_sum(row, t);
            for (size_t j = 0; j < t; j++) row[j] = row[j] * inv;
            float *o = g->out + (ptrdiff_t)(b * s + i) * g->ldo + n * hv;
            size_t c0 = 0;
            for (; c0 + QK_JB <= hv; c0 += QK_JB) {
                float acc[QK_JB] = {0};
                for (size_t j = 0; j < t; j++) {
                    const float p = row[j];
                    const float *vj = v + j * hv + c0;
                    for (size_t l = 0; l < QK_JB; l++) acc[l] += p * vj[l];
                }
                for (size_t l = 0; l < QK_JB; l++) o[c0 + l] = acc[l];
            }
            if (c0 < hv) {
                for (size_t c = c0; c < hv; c++) o[c] = 0.0f;
                for (size_t j = 0; j < t; j++) {
                    const float p = row[j];
                    const float *vj = v + j * hv;
                    for (size_t c = c0; c < hv; c++) o[c] += p * vj[c];
                }
            }
        }
    }
}

void QK_TF_NAME(qk_attention_f32)(const qk_attention *g, size_t h0, size_t h1, float *scratch) {
    attention_heads(g, h0, h1, scratch);
}

#ifdef QK_TF_PORTABLE
size_t qk_attention_scratch(const qk_attention *g) { return (g->hq + 1) * padded(g->t) + g->t * g->hv; }

#if defined(__x86_64__)
void qk_attention_f32_avx2(const qk_attention *g, size_t h0, size_t h1, float *scratch);
#endif

qk_attention_fn qk_attention_for_isa(int isa) {
    return QK_PICK_AVX2(isa, qk_attention_f32_avx2, qk_attention_f32_portable);
}

#define QK_SKIP_LN(NAME, T, LOAD, STORE)                                                                          \
    void NAME(const T *x, ptrdiff_t xr, const T *skip, ptrdiff_t sr, size_t srows, const T *bias, const T *gamma, \
              const T *beta, size_t rows, size_t n, double eps, T *y, ptrdiff_t yr, T *sum, ptrdiff_t sumr,       \
              float *mean, float *inv, float *tmp) {                                                              \
        for (size_t r = 0; r < rows; r++) {                                                                       \
            const T *xi = x + (ptrdiff_t)r * xr, *si = skip + (ptrdiff_t)(r % srows) * sr;                        \
            double acc = 0.0, sq = 0.0;                                                                           \
            for (size_t j = 0; j < n; j++) {                                                                      \
                float v = LOAD(xi[j]) + LOAD(si[j]);                                                              \
                if (bias) v += LOAD(bias[j]);                                                                     \
                tmp[j] = v;                                                                                       \
                acc += (double)v;                                                                                 \
            }                                                                                                     \
            const double m = acc / (double)n;                                                                     \
            for (size_t j = 0; j < n; j++) { /* two passes: no cancellation in E[x^2] - m^2 */                   \
                const double d = (double)tmp[j] - m;                                                              \
                sq += d * d;                                                                                      \
            }                                                                                                     \
            const double k = 1.0 / sqrt(sq / (double)n + eps);                                                    \
            T *yi = y + (ptrdiff_t)r * yr;                                                                        \
            for (size_t j = 0; j < n; j++) {                                                                      \
                double v = ((double)tmp[j] - m) * k * (double)LOAD(gamma[j]);                                     \
                if (beta) v += (double)LOAD(beta[j]);                                                             \
                yi[j] = STORE((float)v);                                                                          \
            }                                                                                                     \
            if (sum)                                                                                              \
                for (size_t j = 0; j < n; j++) sum[(ptrdiff_t)r * sumr + j] = STORE(tmp[j]);                      \
            if (mean) mean[r] = (float)m;                                                                         \
            if (inv) inv[r] = (float)k;                                                                           \
        }                                                                                                         \
    }
#define QK_TF_SAME(v) (v)
QK_SKIP_LN(qk_skip_layernorm_f32, float, QK_TF_SAME, QK_TF_SAME)
QK_SKIP_LN(qk_skip_layernorm_f16, uint16_t, qk_f16_to_f32, qk_f32_to_f16)
#endif
