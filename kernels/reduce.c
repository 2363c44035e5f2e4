/* Reductions and layer normalization: see qk_reduce.h. Portable C; the float32 LayerNorm
 * is compiled again with AVX2 and with AVX-512 flags (kernels/avx2/layernorm_avx2.c,
 * kernels/avx512vnni/layernorm_avx512vnni.c define QK_LN_NAME and include this file for
 * it alone): the compiler's vectorisation of the same float64 loops, ISO C (no contraction
 * to FMA, no reassociation), the same bits. */
#include <math.h>
#include <stdlib.h>
#include "qk_f16.h"
#include "qk_reduce.h"

#ifndef QK_LN_NAME   /* the portable build: everything */
#define QK_LN_NAME(name) name##_portable
#define QK_LN_PORTABLE
#include "qk_cpu.h"

/* The offsets (in x, and in y when ys is not NULL) of multi-index number `lin` over
   `nd` axes of sizes `shape`, the last one fastest. */
static inline void offsets(size_t lin, size_t nd, const size_t *shape, const ptrdiff_t *xs, const ptrdiff_t *ys,
                           ptrdiff_t *ox, ptrdiff_t *oy) {
    ptrdiff_t a = 0, b = 0;
    for (size_t d = nd; d-- > 0;) {
        const size_t i = lin % shape[d];
        lin /= shape[d];
        a += (ptrdiff_t)i * xs[d];
        if (ys) b += (ptrdiff_t)i * ys[d];
    }
    *ox = a;
    *oy = b;
}

static inline size_t prod(size_t nd, const size_t *shape) {
    size_t p = 1;
    for (size_t d = 0; d < nd; d++) p *= shape[d];
    return p;
}

static inline ptrdiff_t mag(ptrdiff_t s) { return s < 0 ? -s : s; }

/* rows mode: the innermost kept axis is the inner loop */
static inline int rows_mode(const qk_reduce_geom *g) {
    return g->nk > 0 && (g->nr == 0 || mag(g->kxs[g->nk - 1]) < mag(g->rxs[g->nr - 1]));
}

size_t qk_reduce_acc_size(const qk_reduce_geom *g) { return rows_mode(g) ? g->kshape[g->nk - 1] : 1; }

/* The reduction loops for element type T, accumulator A: INIT the start value, STEP(a, v)
   one element in, DONE(a) the result stored. */
#define QK_REDUCE_LOOPS(T, A, INIT, STEP, DONE)                                                                  \
    do {                                                                                                          \
        if (rows_mode(g)) {                                                                                       \
            const size_t len = g->kshape[g->nk - 1], outer = prod(g->nk - 1, g->kshape);                          \
            const size_t red = prod(g->nr, g->rshape);                                                            \
            const ptrdiff_t sx = g->kxs[g->nk - 1], sy = g->kys[g->nk - 1];                                       \
            for (size_t o = 0; o < outer; o++) {                                                                  \
                ptrdiff_t bx, by, rx, unused;                                                                     \
                offsets(o, g->nk - 1, g->kshape, g->kxs, g->kys, &bx, &by);                                       \
                for (size_t l = 0; l < len; l++) acc[l] = INIT;                                                   \
                for (size_t r = 0; r < red; r++) {                                                                \
                    offsets(r, g->nr, g->rshape, g->rxs, NULL, &rx, &unused);                                     \
                    const T *p = x + bx + rx;                                                                     \
                    if (sx == 1)                                                                                  \
                        for (size_t l = 0; l < len; l++) { const A v = (A)p[l]; STEP(acc[l], v); }                \
                    else                                                                                          \
                        for (size_t l = 0; l < len; l++) { const A v = (A)p[(ptrdiff_t)l * sx]; STEP(acc[l], v); } \
                }                                                                                                 \
                T *q = y + by;                                                                                    \
                for (size_t l = 0; l < len; l++) q[(ptrdiff_t)l * sy] = DONE(acc[l]);                             \
            }                                                                                                     \
        } else {                                                                                                  \
            const size_t len = g->rshape[g->nr - 1], outer = prod(g->nr - 1, g->rshape);                          \
            const size_t kept = prod(g->nk, g->kshape);                                                           \
            const ptrdiff_t sx = g->rxs[g->nr - 1];                                                               \
            for (size_t k = 0; k < kept; k++) {                                                                   \
                ptrdiff_t bx, by, rx, unused;                                                                     \
                offsets(k, g->nk, g->kshape, g->kxs, g->kys, &bx, &by);                                           \
                A a0 = INIT, a1 = INIT, a2 = INIT, a3 = INIT;                                                     \
                for (size_t o = 0; o < outer; o++) {                                                              \
                    offsets(o, g->nr - 1, g->rshape, g->rxs, NULL, &rx, &unused);                                 \
                    const T *p = x + bx + rx;                                                                     \
                    size_t l = 0;                                                                                 \
                    for (; l + 4 <= len; l += 4) {                                                                \
                        const A v0 = (A)p[(ptrdiff_t)l * sx], v1 = (A)p[(ptrdiff_t)(l + 1) * sx];                 \
                        const A v2 = (A)p[(ptrdiff_t)(l + 2) * sx], v3 = (A)p[(ptrdiff_t)(l + 3) * sx];           \
                        STEP(a0, v0); STEP(a1, v1); STEP(a2, v2); STEP(a3, v3);                                   \
                    }                                                                                             \
                    for (; l < len; l++) { const A v = (A)p[(ptrdiff_t)l * sx]; STEP(a0, v); }                    \
                }                                                                                                 \
                STEP(a0, a1); STEP(a2, a3); STEP(a0, a2);                                                         \
                y[by] = DONE(a0);                                                                                 \
            }                                                                                                     \
        }                                                                                                         \
    } while (0)

#define QK_ADD(a, v) ((a) += (v))
#define QK_MAX(a, v) ((a) = ((v) > (a) || (v) != (v)) ? (v) : (a))
#define QK_MIN(a, v) ((a) = ((v) < (a) || (v) != (v)) ? (v) : (a))
#define QK_F32(a) ((float)(a))

void qk_reduce_f32(int op, const qk_reduce_geom *g, const float *x, float *y, double *dacc) {
    if (op == QK_REDUCE_SUM || op == QK_REDUCE_MEAN) {
        double *acc = dacc;
        const double div = op == QK_REDUCE_MEAN ? (double)g->count : 1.0;
#define QK_DIV(a) ((float)((a) / div))
        QK_REDUCE_LOOPS(float, double, 0.0, QK_ADD, QK_DIV);
#undef QK_DIV
    } else {
        float *acc = (float *)dacc;
        if (op == QK_REDUCE_MAX)
            QK_REDUCE_LOOPS(float, float, -INFINITY, QK_MAX, QK_F32);
        else
            QK_REDUCE_LOOPS(float, float, INFINITY, QK_MIN, QK_F32);
    }
}

void qk_reduce_q8(int op, int is_signed, const qk_reduce_geom *g, const void *xv, void *yv, int32_t *acc) {
    if (is_signed) {
        const int8_t *x = (const int8_t *)xv;
        int8_t *y = (int8_t *)yv;
#define QK_S8(a) ((int8_t)(a))
        if (op == QK_REDUCE_MAX)
            QK_REDUCE_LOOPS(int8_t, int32_t, INT8_MIN, QK_MAX, QK_S8);
        else
            QK_REDUCE_LOOPS(int8_t, int32_t, INT8_MAX, QK_MIN, QK_S8);
#undef QK_S8
    } else {
        const uint8_t *x = (const uint8_t *)xv;
        uint8_t *y = (uint8_t *)yv;
#define QK_U8(a) ((uint8_t)(a))
        if (op == QK_REDUCE_MAX)
            QK_REDUCE_LOOPS(uint8_t, int32_t, 0, QK_MAX, QK_U8);
        else
            QK_REDUCE_LOOPS(uint8_t, int32_t, UINT8_MAX, QK_MIN, QK_U8);
#undef QK_U8
    }
}

#endif

/* Row sums in float64 over QK_LN_LANES interleaved partial sums (element j into lane j %
 * QK_LN_LANES, the lanes then added in order, then the tail): a fixed order whatever the
 * strides, so a view and its contiguous copy give the same bits, and lanes the compiler
 * turns into vector adds (one running sum was a chain of dependent float64 adds: 13 us
 * per 16 x 384 LayerNorm). */
#define QK_LN_LANES 8
#define QK_LN_SUM(OUT, EXPR)                                                                          \
    do {                                                                                              \
        double lanes_[QK_LN_LANES] = {0};                                                             \
        size_t j = 0;                                                                                 \
        for (; j + QK_LN_LANES <= n; j += QK_LN_LANES)                                                \
            for (size_t l_ = 0; l_ < QK_LN_LANES; l_++) {                                             \
                const size_t jj = j + l_;                                                             \
                lanes_[l_] += (EXPR(jj));                                                             \
            }                                                                                         \
        double t_ = 0.0;                                                                              \
        for (size_t l_ = 0; l_ < QK_LN_LANES; l_++) t_ += lanes_[l_];                                 \
        for (; j < n; j++) t_ += (EXPR(j));                                                           \
        OUT = t_;                                                                                     \
    } while (0)

/* The rows of a LayerNorm with the strides in scope (xc, ss, bs, yc: elements) */
#define QK_LN_ROWS(T, LOAD, STORE)                                                                                \
    for (size_t r = 0; r < rows; r++) {                                                                           \
        const T *row = x + (ptrdiff_t)r * xr;                                                                     \
        double s, sq;                                                                                             \
        QK_LN_SUM(s, QK_LN_X);                                                                                    \
        const double m = s / (double)n;                                                                           \
        QK_LN_SUM(sq, QK_LN_D2); /* two passes: no cancellation in E[x^2] - m^2 */                                \
        const double var = sq / (double)n;                                                                        \
        const double k = 1.0 / sqrt(var + eps);                                                                   \
        T *out = y + (ptrdiff_t)r * yr;                                                                           \
        for (size_t j = 0; j < n; j++) {                                                                          \
            double v = ((double)LOAD(row[(ptrdiff_t)j * xc]) - m) * k * (double)LOAD(scale[(ptrdiff_t)j * ss]);  \
            if (bias) v += (double)LOAD(bias[(ptrdiff_t)j * bs]);                                                 \
            out[(ptrdiff_t)j * yc] = STORE((float)v);                                                             \
        }                                                                                                         \
        if (mean) mean[(ptrdiff_t)r * ms] = (float)m;                                                             \
        if (inv) inv[(ptrdiff_t)r * is] = (float)k;                                                               \
    }

/* Contiguous rows (the common case) take a copy of the loops with unit strides known to the
 * compiler, which then vectorises them (with the strides unknown every value was loaded
 * alone: 1.5 ns per value of a 128 x 384 LayerNorm); the same operations, the same bits. */
#define QK_LAYERNORM(NAME, T, LOAD, STORE)                                                                       \
    void NAME(const T *x, size_t rows, size_t n, ptrdiff_t xr, ptrdiff_t xc, const T *scale, ptrdiff_t ss,         \
              const T *bias, ptrdiff_t bs, double eps, T *y, ptrdiff_t yr, ptrdiff_t yc, float *mean, ptrdiff_t ms, \
              float *inv, ptrdiff_t is) {                                                                         \
        if (xc == 1 && ss == 1 && (bs == 1 || !bias) && yc == 1) {                                                \
            const ptrdiff_t xc = 1, ss = 1, bs = 1, yc = 1;                                                       \
            QK_LN_ROWS(T, LOAD, STORE)                                                                            \
        } else {                                                                                                  \
            QK_LN_ROWS(T, LOAD, STORE)                                                                            \
        }                                                                                                         \
    }
#define QK_SAME(v) (v)
#define QK_LN_X(j) (double)QK_LN_LOAD(row[(ptrdiff_t)(j) * xc])
#define QK_LN_D2(j) (((double)QK_LN_LOAD(row[(ptrdiff_t)(j) * xc]) - m) * ((double)QK_LN_LOAD(row[(ptrdiff_t)(j) * xc]) - m))
#define QK_LN_LOAD QK_SAME
QK_LAYERNORM(QK_LN_NAME(qk_layernorm_f32), float, QK_SAME, QK_SAME)
#undef QK_LN_LOAD

#ifdef QK_LN_PORTABLE
#if defined(__x86_64__)
void qk_layernorm_f32_avx2(const float *x, size_t rows, size_t n, ptrdiff_t xr, ptrdiff_t xc, const float *scale,
                           ptrdiff_t ss, const float *bias, ptrdiff_t bs, double eps, float *y, ptrdiff_t yr,
                           ptrdiff_t yc, float *mean, ptrdiff_t ms, float *inv, ptrdiff_t is);
void qk_layernorm_f32_avx512(const float *x, size_t rows, size_t n, ptrdiff_t xr, ptrdiff_t xc, const float *scale,
                             ptrdiff_t ss, const float *bias, ptrdiff_t bs, double eps, float *y, ptrdiff_t yr,
                             ptrdiff_t yc, float *mean, ptrdiff_t ms, float *inv, ptrdiff_t is);
void qk_layernorm_f32_avx512_emu(const float *x, size_t rows, size_t n, ptrdiff_t xr, ptrdiff_t xc,
                                 const float *scale, ptrdiff_t ss, const float *bias, ptrdiff_t bs, double eps,
                                 float *y, ptrdiff_t yr, ptrdiff_t yc, float *mean, ptrdiff_t ms, float *inv,
                                 ptrdiff_t is);
#endif

qk_layernorm_f32_fn qk_layernorm_f32_for_isa(int isa) {
#if defined(__x86_64__)
    if (isa == QK_ISA_AVX512VNNI) return qk_layernorm_f32_avx512;
    if (isa == QK_ISA_AVX512VNNI_EMU) return qk_layernorm_f32_avx512_emu;
#endif
    return QK_PICK_AVX2(isa, qk_layernorm_f32_avx2, qk_layernorm_f32_portable);
}

void qk_layernorm_f32(const float *x, size_t rows, size_t n, ptrdiff_t xr, ptrdiff_t xc, const float *scale,
                      ptrdiff_t ss, const float *bias, ptrdiff_t bs, double eps, float *y, ptrdiff_t yr, ptrdiff_t yc,
                      float *mean, ptrdiff_t ms, float *inv, ptrdiff_t is) {
    qk_layernorm_f32_portable(x, rows, n, xr, xc, scale, ss, bias, bs, eps, y, yr, yc, mean, ms, inv, is);
}
#define QK_LN_LOAD qk_f16_to_f32
static QK_LAYERNORM(qk_layernorm_f16_direct, uint16_t, qk_f16_to_f32, qk_f32_to_f16)
#undef QK_LN_LOAD

/* float16 rows: each widened once into float32 (exact), scale and bias once for all rows,
 * the float32 routine run on them, its float32 results rounded to float16: the bits of
 * the direct form (which widened every value three times per row, and scale and bias
 * again for every row: 16 % of an fp16 encoder). The direct form where memory is short. */
void qk_layernorm_f16(const uint16_t *x, size_t rows, size_t n, ptrdiff_t xr, ptrdiff_t xc, const uint16_t *scale,
                      ptrdiff_t ss, const uint16_t *bias, ptrdiff_t bs, double eps, uint16_t *y, ptrdiff_t yr,
                      ptrdiff_t yc, float *mean, ptrdiff_t ms, float *inv, ptrdiff_t is) {
    float *buf = (float *)malloc(sizeof(float) * 4 * (n ? n : 1));
    if (buf == NULL) {
        qk_layernorm_f16_direct(x, rows, n, xr, xc, scale, ss, bias, bs, eps, y, yr, yc, mean, ms, inv, is);
        return;
    }
    float *xf = buf, *sf = buf + n, *bf = buf + 2 * n, *of = buf + 3 * n;
    for (size_t j = 0; j < n; j++) {
        sf[j] = qk_f16_to_f32(scale[(ptrdiff_t)j * ss]);
        if (bias) bf[j] = qk_f16_to_f32(bias[(ptrdiff_t)j * bs]);
    }
    for (size_t r = 0; r < rows; r++) {
        const uint16_t *row = x + (ptrdiff_t)r * xr;
        for (size_t j = 0; j < n; j++) xf[j] = qk_f16_to_f32(row[(ptrdiff_t)j * xc]);
        qk_layernorm_f32(xf, 1, n, 0, 1, sf, 1, bias ? bf : NULL, 1, eps, of, 0, 1, mean ? mean + (ptrdiff_t)r * ms : NULL,
                         0, inv ? inv + (ptrdiff_t)r * is : NULL, 0);
        uint16_t *out = y + (ptrdiff_t)r * yr;
        for (size_t j = 0; j < n; j++) out[(ptrdiff_t)j * yc] = qk_f32_to_f16(of[j]);
    }
    free(buf);
}
#endif
