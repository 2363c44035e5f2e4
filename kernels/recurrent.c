/* The gate math of the recurrent cells (qk_recurrent.h): portable C11, compiled once as it
 * is and once with AVX2 flags (kernels/avx2/recurrent_avx2.c includes this file). Each row's
 * gates go through a few passes over H values (sum, clip, activation, update), each a loop
 * the compiler vectorises; the activation is picked once per pass, outside the loop.
 * Sigmoid and Tanh are the elementwise ops' approximations (qk_eltmath.h: 3 and 2 ulp);
 * Softplus uses libm's log1pf (scalar calls, the same bits in both builds). */
#include <math.h>
#include <string.h>

#include "qk_recurrent.h"
#include "qk_cpu.h"

#ifdef __clang__
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("no-trapping-math")   /* both sides of a select computed: the selects vectorise */
#endif

#include "qk_eltmath.h"

#ifndef QK_RNN_NAME   /* the portable build; kernels/avx2/recurrent_avx2.c includes this file for AVX2 */
#define QK_RNN_NAME(name) name##_portable
#define QK_RNN_PORTABLE
#endif

#define QK_RNN_LOOP(EXPR)                       \
    for (size_t i = 0; i < n; i++) {            \
        const float x = v[i];                   \
        v[i] = (EXPR);                          \
    }

/* v = act(v) over n values */
static void QK_RNN_NAME(qk_rnn_activate)(const qk_rnn_act *act, size_t n, float *v) {
    const float a = act->alpha, b = act->beta;
    switch (act->kind) {
    case QK_RNN_RELU: QK_RNN_LOOP(x > 0.0f ? x : 0.0f); break;
    case QK_RNN_TANH: QK_RNN_LOOP(qk_elt_tanh(x)); break;
    case QK_RNN_SIGMOID: QK_RNN_LOOP(qk_elt_sigmoid(x)); break;
    case QK_RNN_AFFINE: QK_RNN_LOOP(a * x + b); break;
    case QK_RNN_LEAKYRELU: QK_RNN_LOOP(x >= 0.0f ? x : a * x); break;
    case QK_RNN_THRESHOLDEDRELU: QK_RNN_LOOP(x > a ? x : 0.0f); break;
    case QK_RNN_SCALEDTANH: QK_RNN_LOOP(a * qk_elt_tanh(b * x)); break;
    case QK_RNN_HARDSIGMOID: QK_RNN_LOOP(qk_elt_clip01(a * x + b)); break;
    case QK_RNN_ELU: QK_RNN_LOOP(x >= 0.0f ? x : a * (qk_elt_exp(x) - 1.0f)); break;
    case QK_RNN_SOFTSIGN: QK_RNN_LOOP(x / (1.0f + (x < 0.0f ? -x : x))); break;
    case QK_RNN_SOFTPLUS:   /* log(1 + e^x) = max(x, 0) + log1p(e^-|x|) */
        for (size_t i = 0; i < n; i++) {
            const float x = v[i];
            v[i] = (x > 0.0f ? x : 0.0f) + log1pf(qk_elt_exp(x < 0.0f ? x : -x));
        }
        break;
    default: break;
    }
}

/* v = act(clip(v)) */
static inline void QK_RNN_NAME(qk_rnn_gate)(const qk_rnn_cell *cell, const qk_rnn_act *act, size_t n, float *v) {
    const float lim = cell->clip;
    if (lim < INFINITY) {
        for (size_t i = 0; i < n; i++) {
            const float x = v[i];
            const float lo = x < -lim ? -lim : x;
            v[i] = lo > lim ? lim : lo;
        }
    }
    QK_RNN_NAME(qk_rnn_activate)(act, n, v);
}

/* the time step row n takes at step s, or -1 when its sequence has ended (a length outside
 * [0, steps], which the driver's caller refuses, is clamped: never a read out of bounds) */
static inline ptrdiff_t qk_rnn_time(const qk_rnn_seq *seq, size_t n, size_t s) {
    const int32_t l = seq->lens ? seq->lens[n] : (int32_t)seq->steps;
    const size_t len = l < 0 ? 0 : (size_t)l > seq->steps ? seq->steps : (size_t)l;
    if (s >= len) return -1;
    return (ptrdiff_t)(seq->reverse ? len - 1 - s : s);
}

static inline void qk_rnn_store(const qk_rnn_seq *seq, ptrdiff_t t, size_t n, const float *h, size_t H) {
    if (seq->y) memcpy(seq->y + t * seq->y_t + (ptrdiff_t)n * seq->y_n, h, H * sizeof(float));
}

static void QK_RNN_NAME(qk_rnn_step_a)(const qk_rnn_cell *cell, const qk_rnn_seq *seq, size_t s, float *g,
                                       float *h, float *c, float *rh) {
    const size_t H = cell->hidden;
    const int two_phase = cell->cell == QK_CELL_GRU && !cell->linear_before_reset;
    const size_t gs = cell->cell == QK_CELL_LSTM ? 4 * H : cell->cell == QK_CELL_GRU ? (two_phase ? 2 * H : 3 * H) : H;
    for (size_t n = 0; n < seq->rows; n++) {
        const ptrdiff_t t = qk_rnn_time(seq, n, s);
        if (t < 0) continue;
        const float *xr = seq->xw + t * seq->xw_t + (ptrdiff_t)n * seq->xw_n;
        float *gr = g + n * gs, *hr = h + n * H;
        if (cell->cell == QK_CELL_RNN) {
            for (size_t i = 0; i < H; i++) gr[i] += xr[i];
            QK_RNN_NAME(qk_rnn_gate)(cell, &cell->act[0], H, gr);
            memcpy(hr, gr, H * sizeof(float));
        } else if (cell->cell == QK_CELL_GRU) {
            float *z = gr, *r = gr + H;
            for (size_t i = 0; i < 2 * H; i++) gr[i] += xr[i];
            QK_RNN_NAME(qk_rnn_gate)(cell, &cell->act[0], 2 * H, gr);
            if (two_phase) {
                float *rhr = rh + n * H;
                for (size_t i = 0; i < H; i++) rhr[i] = r[i] * hr[i];
                continue;                       /* step_b finishes the row */
            }
            float *hh = gr + 2 * H;             /* r * (h Rh^T + Rbh) + x Wh^T + Wbh */
            for (size_t i = 0; i < H; i++) hh[i] = r[i] * hh[i] + xr[2 * H + i];
            QK_RNN_NAME(qk_rnn_gate)(cell, &cell->act[1], H, hh);
            for (size_t i = 0; i < H; i++) hr[i] = (1.0f - z[i]) * hh[i] + z[i] * hr[i];
        } else {
            float *gi = gr, *go = gr + H, *gf = gr + 2 * H, *gc = gr + 3 * H, *cr = c + n * H;
            const float *p = cell->peephole;
            for (size_t i = 0; i < 4 * H; i++) gr[i] += xr[i];
            if (p) {
                for (size_t i = 0; i < H; i++) gi[i] += p[i] * cr[i];
                for (size_t i = 0; i < H; i++) gf[i] += p[2 * H + i] * cr[i];
            }
            QK_RNN_NAME(qk_rnn_gate)(cell, &cell->act[0], H, gi);
            if (cell->input_forget) {
                for (size_t i = 0; i < H; i++) gf[i] = 1.0f - gi[i];
            } else {
                QK_RNN_NAME(qk_rnn_gate)(cell, &cell->act[0], H, gf);
            }
            QK_RNN_NAME(qk_rnn_gate)(cell, &cell->act[1], H, gc);
            for (size_t i = 0; i < H; i++) cr[i] = gf[i] * cr[i] + gi[i] * gc[i];
            if (p) for (size_t i = 0; i < H; i++) go[i] += p[H + i] * cr[i];
            QK_RNN_NAME(qk_rnn_gate)(cell, &cell->act[0], H, go);
            memcpy(gc, cr, H * sizeof(float));
            QK_RNN_NAME(qk_rnn_activate)(&cell->act[2], H, gc);   /* h(C_t): no clip (onnxruntime's) */
            for (size_t i = 0; i < H; i++) hr[i] = go[i] * gc[i];
        }
        qk_rnn_store(seq, t, n, hr, H);
    }
}

static void QK_RNN_NAME(qk_rnn_step_b)(const qk_rnn_cell *cell, const qk_rnn_seq *seq, size_t s, const float *g,
                                       const float *rhg, float *h) {
    const size_t H = cell->hidden;
    float hh[256];
    for (size_t n = 0; n < seq->rows; n++) {
        const ptrdiff_t t = qk_rnn_time(seq, n, s);
        if (t < 0) continue;
        const float *xr = seq->xw + t * seq->xw_t + (ptrdiff_t)n * seq->xw_n + 2 * H;
        const float *z = g + n * 2 * H, *rr = rhg + n * H;
        float *hr = h + n * H;
        for (size_t i0 = 0; i0 < H; i0 += 256) {      /* h~ in blocks on the stack */
            const size_t m = H - i0 < 256 ? H - i0 : 256;
            for (size_t i = 0; i < m; i++) hh[i] = xr[i0 + i] + rr[i0 + i];
            QK_RNN_NAME(qk_rnn_gate)(cell, &cell->act[1], m, hh);
            for (size_t i = 0; i < m; i++) hr[i0 + i] = (1.0f - z[i0 + i]) * hh[i] + z[i0 + i] * hr[i0 + i];
        }
        qk_rnn_store(seq, t, n, hr, H);
    }
}

/* round half to even of |v| < 2^22 (the default rounding of the float add) */
static inline float qk_rnn_rint(float v) {
    const float big = v < 0.0f ? -12582912.0f : 12582912.0f;   /* 1.5 * 2^23 */
    return (v + big) - big;
}

static void QK_RNN_NAME(qk_rnn_quantize)(size_t rows, size_t cols, const float *x, size_t range_rows,
                                        const int32_t *lens, size_t step, uint8_t *q, float *scale, int32_t *zp) {
    float lo = 0.0f, hi = 0.0f;          /* the range holds 0 */
    const size_t n = rows * cols;
    for (size_t r = 0; r < range_rows && r < rows; r++) {
        if (lens && !(lens[r] >= 0 && step <= (size_t)lens[r])) continue;
        const float *xr = x + r * cols;
        for (size_t i = 0; i < cols; i++) {
            lo = xr[i] < lo ? xr[i] : lo;
            hi = xr[i] > hi ? xr[i] : hi;
        }
    }
    const float s = hi == lo ? 1.0f : (hi - lo) / 255.0f;
    float z0 = 0.0f - lo / s;
    z0 = z0 < 0.0f ? 0.0f : z0 > 255.0f ? 255.0f : z0;
    const float z = qk_rnn_rint(z0);
    for (size_t i = 0; i < n; i++) {
        float v = qk_rnn_rint(x[i] / s) + z;
        v = v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v;
        q[i] = (uint8_t)(int32_t)v;
    }
    *scale = s;
    *zp = (int32_t)z;
}

static void QK_RNN_NAME(qk_rnn_dequantize)(size_t rows, size_t cols, const int32_t *acc, int32_t za,
                                           const int32_t *colsum, float sa, const float *sw, const float *bias,
                                           float *out, size_t out_stride) {
    for (size_t r = 0; r < rows; r++) {
        const int32_t *ar = acc + r * cols;
        float *o = out + r * out_stride;
        for (size_t j = 0; j < cols; j++) {
            const float v = (float)(ar[j] - za * colsum[j]) * (sa * sw[j]);
            o[j] = bias ? v + bias[j] : v;
        }
    }
}

const qk_recurrent_kernels QK_RNN_NAME(qk_recurrent) = {
    QK_RNN_NAME(qk_rnn_step_a), QK_RNN_NAME(qk_rnn_step_b), QK_RNN_NAME(qk_rnn_quantize),
    QK_RNN_NAME(qk_rnn_dequantize),
};

#ifdef QK_RNN_PORTABLE
#if defined(__x86_64__)
extern const qk_recurrent_kernels qk_recurrent_avx2;
#endif

const qk_recurrent_kernels *qk_recurrent_for_isa(int isa) {
    return QK_PICK_AVX2(isa, &qk_recurrent_avx2, &qk_recurrent_portable);
}
#endif
