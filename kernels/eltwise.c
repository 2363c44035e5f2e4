/* Elementwise float ops (qk_eltwise.h): portable C11, compiled once as it is and once
 * with AVX2 flags (kernels/avx2/eltwise_avx2.c includes this file). Every loop is
 * branch-free per element (selects, no early exits) so that the compiler vectorises it,
 * and every value goes through the same float32 operations in the same order in both
 * builds: no contraction to FMA (ISO C, -std=c11; the clang pragma below), no libm, no
 * reassociation. The results are therefore the same bits on every ISA path, but for the
 * AVX-512 build's softmax exp (qk_elt_exp16) and exact GELU (qk_elt_gelu_avx512): fused
 * multiply-adds, its own bits (the same in every run, whatever a value's place in a call),
 * within the bounds below (cross-build bit identity is not a promise: stated tolerances are).
 *
 * Exact ops follow the numpy reference operators (graph/backends/reference) step by step:
 *   Relu       max(x, 0)                      HardSwish  x * clip(x / 6 + 0.5, 0, 1)
 *   Clip       min(max(x, lo), hi)            LeakyRelu  x < 0 ? x * alpha : x
 *   HardSigmoid clip(alpha * x + beta, 0, 1)              PRelu      x < 0 ? x * slope : x
 * with numpy's maximum/minimum: max(a, b) = (a > b || a != a) ? a : b (a NaN a is kept,
 * equal values give b: max(-0.0, 0) = +0.0), min likewise; and numpy's clip, which keeps
 * v unless it is strictly outside (clip(-0.0, 0, 1) = -0.0).
 *
 * Approximations (error in float32 ulps of the exact value, measured against float64 on one
 * float32 bit pattern in 97 over all binades: the maximum seen, then the bound the tests
 * hold, tests/test_eltwise.py):
 *   Exp      Cody-Waite reduction by ln 2 (two constants), degree-7 polynomial
 *            (Cephes' expf coefficients) on |r| <= ln2/2, scaled by 2^n in two steps so
 *            that subnormal results round once: 0.97 ulp (bound 1.5); x > 88.72... -> +inf,
 *            x < -103.98 -> 0, NaN -> NaN. AVX-512 softmax rows: the same steps in FMA
 *            (0.83 ulp seen below -17.5); Softmax itself within 3 ulp of float64 of the
 *            same x - max in every build (2.3 seen).
 *   Sigmoid  numpy's formula on that exp: e = exp(-|x|), (x >= 0 ? 1 : e) / (1 + e): 2.3 ulp
 *            (bound 3); sigmoid(-inf) = 0, sigmoid(+inf) = 1.
 *   Tanh     |x| < 2^-12: x; |x| < 0.625: odd polynomial x + x^3 P(x^2) (Cephes' tanhf);
 *            else sign(x) (1 - 2 / (exp(2|x|) + 1)), |x| clamped at 9.5 (tanh rounds to 1
 *            from 9.01): 1.3 ulp (bound 2); tanh(+-inf) = +-1, tanh(-0) = -0.
 *   Erf      |x| < 1: x P(x^2) (Cephes' erff); else 1 - Q((|x| - 2.5) / 1.5), Q a degree-12
 *            fit of erfc on [1, 4], |x| clamped at 4 (erf rounds to 1 from 3.92), sign put
 *            back: 2.6 ulp (bound 3); erf(+-inf) = +-1, erf(-0) = -0.
 *   Gelu     (x / 2) (1 + erf(x * 0.70710677)) and the tanh form (x / 2) (1 + tanh(0.7978846
 *            (x + 0.044715 x^3))), on those erf and tanh (tests/test_transformer_ops.py states
 *            the bound against float64: 1.21 of it seen; the AVX-512 build's, 16 pieces of
 *            erfc as 2 - erfc and erfc with no cancellation, 0.81). */
#include <string.h>

#include "qk_eltwise.h"
#include "qk_f16.h"
#include "qk_cpu.h"

#ifdef __clang__
#pragma clang fp contract(off)
#elif defined(__GNUC__)
/* values unchanged (no reassociation, no contraction): only lets both sides of a select be
 * computed, so that the per-element selects vectorise (FP exception flags are not kept) */
#pragma GCC optimize("no-trapping-math")
#endif

#ifndef QK_ELT_NAME   /* the portable build; kernels/avx2/eltwise_avx2.c includes this file for AVX2 */
#define QK_ELT_NAME(name) name##_portable
#define QK_ELT_PORTABLE
#endif

/* fp16 rows <-> float32 (the AVX2 build defines these with F16C: the same rounding) */
#ifndef QK_ELT_F16_TO_F32
static inline void qk_elt_f16_to_f32(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = qk_f16_to_f32(src[i]);
}
static inline void qk_elt_f32_to_f16(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = qk_f32_to_f16(src[i]);
}
#define QK_ELT_F16_TO_F32 qk_elt_f16_to_f32
#define QK_ELT_F32_TO_F16 qk_elt_f32_to_f16
#endif

#include "qk_eltmath.h"   /* the scalar helpers (once per translation unit) */

#define QK_ELT_LOOP(EXPR)                                   \
    for (size_t i = 0; i < n; i++) {                        \
        const float v = x[i];                               \
        y[i] = (EXPR);                                      \
    }

#if defined(__AVX512F__)
#include <immintrin.h>
/* Exact GELU, the AVX-512 build's own evaluation (its bits differ from the other builds',
 * within the stated bound): (x / 2) w with w = 1 + erf(z), z = x / sqrt 2, written with
 * c = erfc(|z|) as 2 - c for x >= 0 and c for x < 0 (no cancellation). c is one of 16
 * degree-5 polynomials, |z| in [j / 4, (j + 1) / 4), in u = 4 |z| - j in [0, 1): Chebyshev
 * fits of erfc in float64 rounded to float32 (c(0) = 1 exactly), coefficients picked per
 * lane by vpermps, Horner in fused multiply-adds: 0.59 2^-23 of absolute error in
 * float32 arithmetic, where the GELU's bound allows 2^-23 of w. From |z| = 3.92, c = 0
 * (qk_elt_erf's 1: -inf gives NaN, as the formula). One evaluation for every lane: no
 * blend of qk_elt_erf's two polynomials (most vectors of a layer's values hold both
 * ranges), about 24 operations a vector where the ISO C steps took 50. The tail goes
 * through lane masks: a value's bits depend on nothing but the value. */
static void qk_elt_gelu_avx512(size_t n, const float *x, float *y) {
    static const float erfc_tab[6][16] = {   /* [k][j]: u^k on interval j (scripts/gelu_erfc_table.py) */
        {1.0f, 0.7236735820770264f, 0.4795001149177551f, 0.28884437680244446f, 0.15729920566082f, 0.07709987461566925f, 0.0338948555290699f, 0.013328329659998417f, 0.004677734803408384f, 0.0014627162599936128f, 0.0004069517308380455f, 0.00010062177898362279f, 2.2090440324973315e-05f, 4.30276122642681e-06f, 7.430933237628778e-07f, 1.1372609520776678e-07f},
        {-0.2820947766304016f, -0.26500311493873596f, -0.2196952849626541f, -0.1607326716184616f, -0.10377699881792068f, -0.0591304711997509f, -0.029732700437307358f, -0.013193788006901741f, -0.005166732706129551f, -0.0017855531768873334f, -0.0005445512942969799f, -0.00014655909035354853f, -3.4809148928616196e-05f, -7.295906470972113e-06f, -1.3494874337993679e-06f, -2.2027271029401163e-07f},
        {-4.103051196580054e-07f, 0.016557816416025162f, 0.02745768427848816f, 0.03013613261282444f, 0.0259456355124712f, 0.01848042942583561f, 0.011151227168738842f, 0.00577273964881897f, 0.002583218738436699f, 0.0010040780762210488f, 0.0003401242138352245f, 0.0001006454840535298f, 2.6061041353386827e-05f, 5.912913820793619e-06f, 1.1767042451538146e-06f, 2.055607808415516e-07f},
        {0.005880058277398348f, 0.004851558245718479f, 0.0023069665767252445f, -0.0004128116415813565f, -0.0021678442135453224f, -0.0026272092945873737f, -0.002174573251977563f, -0.001410838682204485f, -0.0007528699934482574f, -0.0003381222195457667f, -0.00012946392234880477f, -4.260385321686044e-05f, -1.2115076970076188e-05f, -2.9884463401685935e-06f, -6.412593620552798e-07f, -1.1995676629794616e-07f},
        {-7.695963176956866e-06f, -0.0005354881286621094f, -0.0007515257457271218f, -0.0006009610369801521f, -0.000259758293395862f, 4.230694321449846e-05f, 0.00018727239512372762f, 0.00019235574291087687f, 0.00013351780944503844f, 7.19972958904691e-05f, 3.169803676428273e-05f, 1.1673263543343637e-05f, 3.6460403407545527e-06f, 9.74434783529432e-07f, 2.2418321066197677e-07f, 4.4591654813075365e-08f},
        {-0.00010356894927099347f, -4.426381929079071e-05f, 2.6401414288557135e-05f, 6.514568667626008e-05f, 5.9630074247252196e-05f, 2.9925698981969617e-05f, 2.2492695279652253e-06f, -1.1062521480198484e-05f, -1.2152550880273338e-05f, -8.16462761576986e-06f, -4.1371231418452226e-06f, -1.6872141941348673e-06f, -5.705683747692092e-07f, -1.6267556190996402e-07f, -3.951130977952744e-08f, -8.232828641041579e-09f},
    };
    __m512 c[6];
    for (int k = 0; k < 6; k++) c[k] = _mm512_loadu_ps(erfc_tab[k]);
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        const __m512 v = _mm512_maskz_loadu_ps(k, x + i);
        const __m512 a = _mm512_abs_ps(_mm512_mul_ps(v, _mm512_set1_ps(0.707106769084930419921875f)));
        /* 4 |z| (exact), below 16 (NaN passes) */
        const __m512 a4 = _mm512_mul_ps(_mm512_min_ps(_mm512_set1_ps(3.99999976f), a), _mm512_set1_ps(4.0f));
        const __m512 jf = _mm512_roundscale_ps(a4, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
        const __m512 u = _mm512_sub_ps(a4, jf);
        const __m512i j = _mm512_cvttps_epi32(jf);   /* (NaN: lane 0's; u NaN) */
        __m512 e = _mm512_permutexvar_ps(j, c[5]);
        for (int d = 4; d >= 0; d--) e = _mm512_fmadd_ps(e, u, _mm512_permutexvar_ps(j, c[d]));
        e = _mm512_maskz_mov_ps(~_mm512_cmp_ps_mask(a, _mm512_set1_ps(3.92f), _CMP_GT_OQ), e);
        const __m512 w = _mm512_mask_sub_ps(e, _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GE_OQ),
                                            _mm512_set1_ps(2.0f), e);
        _mm512_mask_storeu_ps(y + i, k, _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), v), w));
    }
}
#endif

static void QK_ELT_NAME(qk_elt_unary_f32)(int op, float p0, float p1, size_t n, const float *x, float *y) {
    switch (op) {
    case QK_ELT_RELU:
        QK_ELT_LOOP(qk_elt_max(v, 0.0f));
        break;
    case QK_ELT_CLIP:
        QK_ELT_LOOP(qk_elt_min(qk_elt_max(v, p0), p1));
        break;
    case QK_ELT_HARDSIGMOID:
        QK_ELT_LOOP(qk_elt_clip01(p0 * v + p1));
        break;
    case QK_ELT_HARDSWISH:
        QK_ELT_LOOP(v * qk_elt_clip01(v / 6.0f + 0.5f));
        break;
    case QK_ELT_LEAKYRELU:
        QK_ELT_LOOP(v < 0 ? v * p0 : v);
        break;
    case QK_ELT_SIGMOID:
        QK_ELT_LOOP(qk_elt_sigmoid(v));
        break;
    case QK_ELT_TANH:
        QK_ELT_LOOP(qk_elt_tanh(v));
        break;
    case QK_ELT_EXP:
        QK_ELT_LOOP(qk_elt_exp(v));
        break;
    case QK_ELT_ERF:
        QK_ELT_LOOP(qk_elt_erf(v));
        break;
    case QK_ELT_GELU:
#if defined(__AVX512F__)
        qk_elt_gelu_avx512(n, x, y);
#else
        QK_ELT_LOOP(qk_elt_gelu(v));
#endif
        break;
    case QK_ELT_GELU_TANH:
        QK_ELT_LOOP(qk_elt_gelu_tanh(v));
        break;
    default:
        break;
    }
}

static void QK_ELT_NAME(qk_elt_unary_f16)(int op, float p0, float p1, size_t n, const uint16_t *x, uint16_t *y) {
    float buf[256];
    for (size_t i = 0; i < n; i += 256) {
        const size_t m = n - i < 256 ? n - i : 256;
        QK_ELT_F16_TO_F32(x + i, buf, m);
        QK_ELT_NAME(qk_elt_unary_f32)(op, p0, p1, m, buf, buf);
        QK_ELT_F32_TO_F16(buf, y + i, m);
    }
}

static void QK_ELT_NAME(qk_elt_prelu_f32)(size_t outer, size_t channels, size_t inner, const float *x,
                                          const float *slope, float *y) {
    for (size_t o = 0; o < outer; o++) {
        const size_t base = o * channels * inner;
        if (inner == 1) {
            const float *xp = x + base;
            float *yp = y + base;
            for (size_t c = 0; c < channels; c++) yp[c] = xp[c] < 0 ? xp[c] * slope[c] : xp[c];
            continue;
        }
        for (size_t c = 0; c < channels; c++) {
            const float s = slope[c];
            const float *xp = x + base + c * inner;
            float *yp = y + base + c * inner;
            for (size_t i = 0; i < inner; i++) yp[i] = xp[i] < 0 ? xp[i] * s : xp[i];
        }
    }
}

/* y = a op b over m values: vector-vector, vector-scalar, scalar-vector */
#define QK_ELT_BINARY_LOOPS(NAME, OP)                                                              \
    static void NAME##_vv(size_t m, const float *a, const float *b, float *y) {                   \
        for (size_t i = 0; i < m; i++) y[i] = a[i] OP b[i];                                        \
    }                                                                                              \
    static void NAME##_vs(size_t m, const float *a, float b, float *y) {                          \
        for (size_t i = 0; i < m; i++) y[i] = a[i] OP b;                                           \
    }                                                                                              \
    static void NAME##_sv(size_t m, float a, const float *b, float *y) {                          \
        for (size_t i = 0; i < m; i++) y[i] = a OP b[i];                                           \
    }
QK_ELT_BINARY_LOOPS(qk_elt_add, +)
QK_ELT_BINARY_LOOPS(qk_elt_sub, -)
QK_ELT_BINARY_LOOPS(qk_elt_mul, *)
QK_ELT_BINARY_LOOPS(qk_elt_div, /)

#define QK_ELT_BINARY_DRIVE(NAME)                                                                  \
    do {                                                                                           \
        if (a_kind == QK_ELT_FULL && b_kind == QK_ELT_FULL) {                                     \
            NAME##_vv(outer * channels * inner, a, b, y);                                          \
            return;                                                                                \
        }                                                                                          \
        for (size_t o = 0; o < outer; o++) {                                                       \
            const size_t base = o * channels * inner;                                              \
            if (inner == 1) {                                                                      \
                if (a_kind == QK_ELT_FULL)                                                         \
                    NAME##_vv(channels, a + base, b, y + base);                                    \
                else                                                                               \
                    NAME##_vv(channels, a, b + base, y + base);                                    \
                continue;                                                                          \
            }                                                                                      \
            for (size_t c = 0; c < channels; c++) {                                                \
                const size_t at = base + c * inner;                                                \
                if (a_kind == QK_ELT_FULL)                                                         \
                    NAME##_vs(inner, a + at, b[c], y + at);                                        \
                else                                                                               \
                    NAME##_sv(inner, a[c], b + at, y + at);                                        \
            }                                                                                      \
        }                                                                                          \
    } while (0)

static void QK_ELT_NAME(qk_elt_binary_f32)(int op, size_t outer, size_t channels, size_t inner, const float *a,
                                           int a_kind, const float *b, int b_kind, float *y) {
    switch (op) {
    case QK_ELT_ADD:
        QK_ELT_BINARY_DRIVE(qk_elt_add);
        break;
    case QK_ELT_SUB:
        QK_ELT_BINARY_DRIVE(qk_elt_sub);
        break;
    case QK_ELT_MUL:
        QK_ELT_BINARY_DRIVE(qk_elt_mul);
        break;
    default:
        QK_ELT_BINARY_DRIVE(qk_elt_div);
        break;
    }
}

/* The same over float16 runs: values widened in blocks, the float32 op, rounded once --
 * numpy's float16 loops' bits (float32 holds 2 * 11 + 2 bits: rounding a float32 sum,
 * difference, product or quotient of two halves to half is the correctly rounded result). */
#define QK_ELT_F16_BLOCK 256
static void QK_ELT_NAME(qk_elt_binary_f16_run)(int op, size_t m, const uint16_t *a, const uint16_t *b, float bs,
                                               int b_scalar, int swap, uint16_t *y) {
    float fa[QK_ELT_F16_BLOCK], fb[QK_ELT_F16_BLOCK];
    for (size_t i = 0; i < m; i += QK_ELT_F16_BLOCK) {
        const size_t k = m - i < QK_ELT_F16_BLOCK ? m - i : QK_ELT_F16_BLOCK;
        QK_ELT_F16_TO_F32(a + i, fa, k);
        if (!b_scalar) QK_ELT_F16_TO_F32(b + i, fb, k);
        if (b_scalar && swap)        /* the scalar is the left operand */
            QK_ELT_NAME(qk_elt_binary_f32)(op, 1, 1, k, &bs, QK_ELT_CHANNEL, fa, QK_ELT_FULL, fa);
        else
            QK_ELT_NAME(qk_elt_binary_f32)(op, 1, 1, k, fa, QK_ELT_FULL, b_scalar ? &bs : fb,
                                           b_scalar ? QK_ELT_CHANNEL : QK_ELT_FULL, fa);
        QK_ELT_F32_TO_F16(fa, y + i, k);
    }
}

static void QK_ELT_NAME(qk_elt_binary_f16)(int op, size_t outer, size_t channels, size_t inner, const uint16_t *a,
                                           int a_kind, const uint16_t *b, int b_kind, uint16_t *y) {
    if (a_kind == QK_ELT_FULL && b_kind == QK_ELT_FULL) {
        QK_ELT_NAME(qk_elt_binary_f16_run)(op, outer * channels * inner, a, b, 0.0f, 0, 0, y);
        return;
    }
    const int swap = a_kind != QK_ELT_FULL;          /* a per channel: b is the run */
    const uint16_t *full = swap ? b : a, *chan = swap ? a : b;
    for (size_t o = 0; o < outer; o++) {
        const size_t base = o * channels * inner;
        if (inner == 1) {            /* the channel vector lies along the run: both full */
            if (swap)
                QK_ELT_NAME(qk_elt_binary_f16_run)(op, channels, chan, full + base, 0.0f, 0, 0, y + base);
            else
                QK_ELT_NAME(qk_elt_binary_f16_run)(op, channels, full + base, chan, 0.0f, 0, 0, y + base);
            continue;
        }
        for (size_t c = 0; c < channels; c++)
            QK_ELT_NAME(qk_elt_binary_f16_run)(op, inner, full + base + c * inner, NULL, qk_f16_to_f32(chan[c]), 1,
                                               swap, y + base + c * inner);
    }
}

/* Softmax / LogSoftmax of contiguous rows: the row's maximum (NaN propagating, as
 * np.max), e = exp(x - max) in float32, their sum in float64 (8 running sums, the same
 * order in every build: no rounding error worth the name, where the reference's float32
 * pairwise sum has its own), then e / float32(sum) (the reference's float32 division), or
 * (x - max) - float32(log(sum)) for LogSoftmax (log of the float64 sum by a series: no libm). */
static double qk_elt_log_pos(double s) {      /* log of a finite s >= 1 (the sum holds exp(0) = 1) */
    int k = 0;
    while (s >= 2.0) { s *= 0.5; k++; }       /* s in [1, 2) */
    const double u = (s - 1.0) / (s + 1.0), u2 = u * u;   /* log s = 2 atanh(u), u in [0, 1/3) */
    double term = u, sum = 0.0;
    for (int j = 1; j < 60; j += 2) {
        sum += term / j;
        term *= u2;
    }
    return 2.0 * sum + k * 0.69314718055994530942;
}

static float qk_elt_row_max_lanes(const float *xr, size_t len) {
    float mx[8];
    for (int l = 0; l < 8; l++) mx[l] = xr[0];
    size_t i = 0;
    for (; i + 8 <= len; i += 8)
        for (int l = 0; l < 8; l++) mx[l] = qk_elt_max(xr[i + l], mx[l]);
    for (; i < len; i++) mx[0] = qk_elt_max(xr[i], mx[0]);
    float m = mx[0];
    for (int l = 1; l < 8; l++) m = qk_elt_max(mx[l], m);
    return m;
}

#if defined(__AVX512F__)
#include <immintrin.h>
/* 16 lanes, two chains (one vmaxps chain waited on its own latency: 15 % of attention's
 * softmax); NaNs looked for apart as below. The lanes order changes only which of two
 * equal values is kept (+0 / -0), and x - m and exp give the same bits for either. */
static float qk_elt_row_max(const float *xr, size_t len) {
    if (len < 32) return qk_elt_row_max_lanes(xr, len);
    __m512 m0 = _mm512_set1_ps(xr[0]), m1 = m0;
    __mmask16 nan = 0;
    size_t i = 0;
    for (; i + 32 <= len; i += 32) {
        const __m512 a = _mm512_loadu_ps(xr + i), b = _mm512_loadu_ps(xr + i + 16);
        m0 = _mm512_max_ps(a, m0);
        m1 = _mm512_max_ps(b, m1);
        nan |= _mm512_cmp_ps_mask(a, b, _CMP_UNORD_Q);
    }
    for (size_t j = i; j < len; j++) nan |= xr[j] != xr[j];
    if (nan) return qk_elt_row_max_lanes(xr, len);   /* (which NaN: the lanes' choice) */
    float r = _mm512_reduce_max_ps(_mm512_max_ps(m1, m0));
    for (; i < len; i++) r = qk_elt_max(xr[i], r);
    return r;
}
#elif defined(__AVX2__)
#include <immintrin.h>
/* The same 8 lanes with vmaxps: max(x, m) keeps m on equal values (qk_elt_max's choice)
 * and on a NaN x, so NaNs are looked for apart, and a row that has one takes the lane
 * loop (its NaN, the same bits). gcc kept the lane loop scalar (vmaxss and branches:
 * a third of attention's softmax). */
static float qk_elt_row_max(const float *xr, size_t len) {
    if (len < 16) return qk_elt_row_max_lanes(xr, len);
    __m256 m = _mm256_set1_ps(xr[0]), nan = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        const __m256 a = _mm256_loadu_ps(xr + i);
        m = _mm256_max_ps(a, m);
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
    }
    if (_mm256_movemask_ps(nan)) return qk_elt_row_max_lanes(xr, len);
    float mx[8];
    _mm256_storeu_ps(mx, m);
    for (; i < len; i++) mx[0] = qk_elt_max(xr[i], mx[0]);
    float r = mx[0];
    for (int l = 1; l < 8; l++) r = qk_elt_max(mx[l], r);
    return r;
}
#else
#define qk_elt_row_max qk_elt_row_max_lanes
#endif

#if defined(__AVX512F__)
/* exp(x) of 16 softmax values (x <= 0, -inf or NaN: a row's x - max), the AVX-512 build's own
 * evaluation (its bits differ from the other builds' qk_elt_exp, within the stated bound):
 * qk_elt_exp's reduction and Cephes polynomial in fused multiply-adds (Horner to the end),
 * 2^n by vscalefps (one rounding, subnormals included). Below -104 (exp rounds to 0) the lane
 * is masked off, not clamped: vscalefps underflowing to 0 took a microcode assist (masked
 * keys made attention's softmax 3x slower). 15 operations where the ISO C steps took 26 (the
 * loop is bound by the two 512-bit ports). No upper clamp: x <= 0. */
static inline __m512 qk_elt_exp16(__mmask16 k, __m512 x) {   /* (lanes outside k: 0) */
    const __m512 magic = _mm512_set1_ps(12582912.0f);
    const __mmask16 live = _mm512_mask_cmp_ps_mask(k, x, _mm512_set1_ps(-104.0f), _CMP_NLT_UQ);   /* (NaN: live) */
    const __m512 xc = _mm512_maskz_mov_ps(live, x);
    const __m512 n = _mm512_sub_ps(_mm512_fmadd_ps(xc, _mm512_set1_ps(1.44269504088896341f), magic), magic);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xc);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_maskz_scalef_ps(live, p, n);
}

/* lanes of e (>= 0 or NaN) in (0, 2^-90), as unsigned bits */
static inline __mmask16 qk_elt_deep16(__mmask16 k, __m512 e) {
    return _mm512_mask_cmplt_epu32_mask(k, _mm512_sub_epi32(_mm512_castps_si512(e), _mm512_set1_epi32(1)),
                                        _mm512_set1_epi32(0x12800000 - 1));   /* 2^-90's bits - 1 */
}
#endif

/* v[i] = exp(v[i] - m) (m NaN: NaN) over a softmax row; returns whether some result lies
 * in (0, 2^-90) (qk_elt_row_div's check). AVX-512: qk_elt_exp16 over the whole row, its
 * tail through lane masks (a value's bits do not depend on its place in the row). */
static int qk_elt_exp_row(float *v, size_t len, float m) {
#if defined(__AVX512F__)
    if (m == m) {
        const __m512 vm = _mm512_set1_ps(m);
        __mmask16 dk = 0;
        for (size_t i = 0; i < len; i += 16) {
            const __mmask16 k = len - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (len - i)) - 1);
            const __m512 e = qk_elt_exp16(k, _mm512_sub_ps(_mm512_maskz_loadu_ps(k, v + i), vm));
            _mm512_mask_storeu_ps(v + i, k, e);
            dk |= qk_elt_deep16(k, e);
        }
        return dk != 0;
    }
#endif
    int deep = 0;
    for (size_t i = 0; i < len; i++) {
        v[i] = qk_elt_exp(m == m ? v[i] - m : m);
        deep |= (v[i] < 0x1p-90f) & (v[i] > 0.0f);
    }
    return deep;
}

static double qk_elt_row_sum(const float *e, size_t len) {   /* 8 running float64 sums, then pairs */
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= len; i += 8)
        for (int l = 0; l < 8; l++) acc[l] += (double)e[i + l];
    for (; i < len; i++) acc[i & 7] += (double)e[i];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* A softmax row's v / fs (fs the float32 sum, >= 1; v its exp values). Where the build
 * has fused multiply-add and every v is 0 or at least 2^-90 (``deep`` 0: no quotient near
 * the subnormals), the division's float by Markstein's correction: r = 1 / fs rounded,
 * q = v r, then q + (v - q fs) r in two fused operations is v / fs correctly rounded
 * (Markstein's theorem; checked against the division on every v of [1/4, 1] for 24
 * sums and on 4e8 random pairs down to 2^-90). A vdivps a value cost a third of
 * attention's softmax; three multiply-adds cost a fraction. */
#if defined(__FMA__) || defined(__ARM_FEATURE_FMA)
/* v[i] = x[i] / s by Markstein's correction (x may be v): r = 1 / s, q = x r, q + (x - q s) r
 * in two fused operations; the callers check the operands' ranges. */
static inline void qk_elt_markstein_div(const float *x, float *v, size_t len, float s) {
    const float r = 1.0f / s;
    for (size_t i = 0; i < len; i++) {
        const float q = x[i] * r;
        v[i] = __builtin_fmaf(__builtin_fmaf(-q, s, x[i]), r, q);
    }
}
#endif

static inline void qk_elt_row_div(float *v, size_t len, float fs, int deep) {
#if defined(__FMA__) || defined(__ARM_FEATURE_FMA)
    if (!deep && fs >= 1.0f && fs <= 3.0e38f) {
        qk_elt_markstein_div(v, v, len, fs);
        return;
    }
#else
    (void)deep;
#endif
    for (size_t i = 0; i < len; i++) v[i] = v[i] / fs;
}

/* v[i] = x[i] / s (x may be v): Markstein's correction as above, where the build has FMA,
 * 2^-20 <= |s| <= 2^20 and every x is 0 or of magnitude in [2^-90, 2^90] (quotients far
 * from the subnormals and from overflow: a first pass looks); else the division. The
 * scores' scaling by sqrt(head size) was a third of attention's softmax as vdivps. */
static inline void qk_elt_div_by(const float *x, float *v, size_t len, float s) {
#if defined(__FMA__) || defined(__ARM_FEATURE_FMA)
    const float as = s < 0.0f ? -s : s;
    if (as >= 0x1p-20f && as <= 0x1p20f) {
        int bad = 0;
        for (size_t i = 0; i < len; i++) {
            const float a = x[i] < 0.0f ? -x[i] : x[i];
            bad |= (a > 0x1p90f) | (a != a) | ((a < 0x1p-90f) & (a != 0.0f));
        }
        if (!bad) {
            qk_elt_markstein_div(x, v, len, s);
            return;
        }
    }
#endif
    for (size_t i = 0; i < len; i++) v[i] = x[i] / s;
}

static void QK_ELT_NAME(qk_elt_softmax_f32)(int log, size_t rows, size_t len, const float *x, float *y) {
    if (!log) {
        /* three passes over blocks of rows: y = x - max (a NaN maximum: NaN), y = exp(y) as
         * one run, then y / float32(sum) per row */
        const size_t block = len >= 4096 ? 1 : 4096 / len;
        for (size_t r0 = 0; r0 < rows; r0 += block) {
            const size_t nr = rows - r0 < block ? rows - r0 : block;
            for (size_t r = r0; r < r0 + nr; r++) {
                const float *xr = x + r * len;
                float *yr = y + r * len;
                const float m = qk_elt_row_max(xr, len);
                for (size_t i = 0; i < len; i++) yr[i] = m == m ? xr[i] - m : m;
            }
            float *yb = y + r0 * len;
            const int deep = qk_elt_exp_row(yb, nr * len, 0.0f);   /* (y - 0: the same floats) */
            for (size_t r = 0; r < nr; r++) {
                float *yr = yb + r * len;
                qk_elt_row_div(yr, len, (float)qk_elt_row_sum(yr, len), deep);
            }
        }
        return;
    }
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * len;
        float *yr = y + r * len;
        const float m = qk_elt_row_max(xr, len);
        if (m != m) {            /* a NaN: NaN everywhere, as the reference */
            for (size_t i = 0; i < len; i++) yr[i] = m;
            continue;
        }
        double s = 0.0;
        float buf[256];
        for (size_t c = 0; c < len; c += 256) {      /* chunks of exp(x - m), summed (x may be y) */
            const size_t k = len - c < 256 ? len - c : 256;
            for (size_t i = 0; i < k; i++) buf[i] = qk_elt_exp(xr[c + i] - m);
            s += qk_elt_row_sum(buf, k);
        }
        /* s is NaN when the maximum is infinite (inf - inf): NaN, as the reference */
        const float ls = s == s && s < 1e300 ? (float)qk_elt_log_pos(s) : (float)(s - s);
        for (size_t i = 0; i < len; i++) yr[i] = (xr[i] - m) - ls;
    }
}

#if defined(__AVX512F__)
/* The float32 masked softmax of one block of rows in three fused passes, 16 lanes at a
 * time, the row's tail through lane masks: (1) v = x op s (Markstein's quotient as
 * qk_elt_div_by, or vdivps for a vector with a score it does not cover), v + mask, the
 * row's maximum and whether v has a NaN; (2) e = exp(v - m) (qk_elt_exp_row's operations:
 * v - m <= 0, so its upper clamp is void) and the float64 sum in qk_elt_row_sum's order
 * (lane l of 8 adds e[l], e[8 + l], ... in turn; the same pair tree); (3) e / float32(sum)
 * (qk_elt_row_div). The same floats as the per-step loops (the tests compare the bits with
 * the Softmax node's on the same scores), without their passes' separate loads, stores and reductions (the
 * steps at 128 keys were half of attention's softmax). A row with a NaN takes those loops
 * from v (returns 0); returns 1 when done. */
static int qk_elt_sm_pass1(const float *xr, const float *mr, ptrdiff_t mask_step, float s, int div, float *v,
                           size_t len, float *m) {
    const __m512 vs = _mm512_set1_ps(s), vr = _mm512_set1_ps(1.0f / s), mb = _mm512_set1_ps(mr[0]);
    const __m512 big = _mm512_set1_ps(0x1p90f), tiny = _mm512_set1_ps(0x1p-90f);
    const float as = s < 0.0f ? -s : s;
    const int markstein = div && as >= 0x1p-20f && as <= 0x1p20f;
    __m512 m0 = _mm512_set1_ps(-__builtin_inff()), m1 = m0;
    __mmask16 nan = 0;
    for (size_t i = 0; i < len; i += 16) {
        const __mmask16 k = len - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (len - i)) - 1);
        const __m512 x = _mm512_maskz_loadu_ps(k, xr + i);
        __m512 q;
        if (!div) {
            q = _mm512_mul_ps(x, vs);
        } else {
            /* a score of magnitude outside [2^-90, 2^90] (not 0), or NaN: the division */
            const __m512 a = _mm512_abs_ps(x);
            const __mmask16 bad = _mm512_cmp_ps_mask(a, big, _CMP_NLE_UQ) |
                                  _mm512_mask_cmp_ps_mask(_mm512_cmp_ps_mask(a, _mm512_setzero_ps(), _CMP_NEQ_UQ), a,
                                                          tiny, _CMP_LT_OQ);
            if (markstein && !(bad & k)) {
                const __m512 q0 = _mm512_mul_ps(x, vr);
                q = _mm512_fmadd_ps(_mm512_fnmadd_ps(q0, vs, x), vr, q0);
            } else {
                q = _mm512_div_ps(x, vs);
            }
        }
        q = _mm512_add_ps(q, mask_step ? _mm512_maskz_loadu_ps(k, mr + i) : mb);
        _mm512_mask_storeu_ps(v + i, k, q);
        nan |= _mm512_mask_cmp_ps_mask(k, q, q, _CMP_UNORD_Q);
        if ((i / 16) & 1)
            m1 = _mm512_mask_max_ps(m1, k, q, m1);
        else
            m0 = _mm512_mask_max_ps(m0, k, q, m0);
    }
    *m = _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
    return !nan;
}

/* exp(v - m) over the row (qk_elt_exp_row's values), its float64 sum; returns whether some e
 * lies in (0, 2^-90) */
static int qk_elt_sm_pass2(float *v, size_t len, float m, double *sum) {
    const __m512 vm = _mm512_set1_ps(m);
    __m512d acc = _mm512_setzero_pd();
    __mmask16 dk = 0;
    for (size_t i = 0; i < len; i += 16) {
        const size_t left = len - i;
        const __mmask16 k = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
        const __m512 e = qk_elt_exp16(k, _mm512_sub_ps(_mm512_maskz_loadu_ps(k, v + i), vm));   /* (past the row: 0) */
        _mm512_mask_storeu_ps(v + i, k, e);
        dk |= qk_elt_deep16(k, e);
        /* lanes past the row add +0: the sums unchanged (they are >= +0) */
        acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        if (left > 8) acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
    }
    double a[8];
    _mm512_storeu_pd(a, acc);
    *sum = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    return dk != 0;
}

static void qk_elt_sm_rows_avx512(size_t r0, size_t nr, size_t len, const float *x, const float *mask,
                                  const int64_t *mask_off, ptrdiff_t mask_step, float s, int div, float *y) {
    float m[32];   /* nr <= 32 (the caller's blocks) */
    int ok[32];
    for (size_t b = 0; b < nr; b++) {
        const size_t r = r0 + b;
        ok[b] = qk_elt_sm_pass1(x + r * len, mask + mask_off[r], mask_step, s, div, y + r * len, len, &m[b]);
    }
    for (size_t b = 0; b < nr; b++) {
        float *v = y + (r0 + b) * len;
        if (!ok[b]) {   /* a NaN: the steps' loops (their NaN propagation) */
            const float mx = qk_elt_row_max(v, len);
            const int deep = qk_elt_exp_row(v, len, mx);
            qk_elt_row_div(v, len, (float)qk_elt_row_sum(v, len), deep);
            continue;
        }
        double sum;
        const int deep = qk_elt_sm_pass2(v, len, m[b], &sum);
        qk_elt_row_div(v, len, (float)sum, deep);
    }
}
#endif

/* Attention's softmax in one pass per row: v = x op s (op: / or *, the scores' scaling
 * node), v + mask (the additive mask's row at mask + mask_off[r], every mask_step-th
 * value: 0 broadcasts one value), then the Softmax above (its max, exp, float64 sum,
 * division). float16 rows (half): widened, computed in float32, rounded once; scratch:
 * 2 len floats. */
static void QK_ELT_NAME(qk_elt_softmax_masked)(size_t rows, size_t len, const void *x, const void *mask,
                                               const int64_t *mask_off, ptrdiff_t mask_step, float s, int div,
                                               int half, void *y, float *scratch) {
    if (!half) {
        /* float32: blocks of rows (16 KiB at most), each step over the block's rows in turn:
           a row's steps wait on its reductions (max, sum), another row's need not (one row
           at a time left attention's softmax waiting on latencies: 1.5x) */
        enum { QK_SM_ROWS = 32 };
        size_t nb = 4096 / (len ? len : 1);
        nb = nb < 1 ? 1 : (nb > QK_SM_ROWS ? QK_SM_ROWS : nb);
        for (size_t r0 = 0; r0 < rows; r0 += nb) {
            const size_t nr = rows - r0 < nb ? rows - r0 : nb;
#if defined(__AVX512F__)
            qk_elt_sm_rows_avx512(r0, nr, len, (const float *)x, (const float *)mask, mask_off, mask_step, s, div,
                                  (float *)y);
#else
            float m[QK_SM_ROWS];
            int deep[QK_SM_ROWS];
            for (size_t b = 0; b < nr; b++) {
                const size_t r = r0 + b;
                float *v = (float *)y + r * len;
                const float *xr = (const float *)x + r * len, *mr = (const float *)mask + mask_off[r];
                if (div)
                    qk_elt_div_by(xr, v, len, s);
                else
                    for (size_t i = 0; i < len; i++) v[i] = xr[i] * s;
                if (mask_step == 1)
                    for (size_t i = 0; i < len; i++) v[i] = v[i] + mr[i];
                else
                    for (size_t i = 0; i < len; i++) v[i] = v[i] + mr[0];
                m[b] = qk_elt_row_max(v, len);
            }
            for (size_t b = 0; b < nr; b++) deep[b] = qk_elt_exp_row((float *)y + (r0 + b) * len, len, m[b]);
            for (size_t b = 0; b < nr; b++) {
                float *v = (float *)y + (r0 + b) * len;
                qk_elt_row_div(v, len, (float)qk_elt_row_sum(v, len), deep[b]);
            }
#endif
        }
        return;
    }
    for (size_t r = 0; r < rows; r++) {
        float *v = half ? scratch : (float *)y + r * len;
        const float *xr = half ? scratch + len : (const float *)x + r * len;
        const float *mr = half ? scratch + len : (const float *)mask + mask_off[r];
        if (half) {
            QK_ELT_F16_TO_F32((const uint16_t *)x + r * len, v, len);
            xr = v;
        }
        if (div)
            qk_elt_div_by(xr, v, len, s);
        else
            for (size_t i = 0; i < len; i++) v[i] = xr[i] * s;
        if (half) {   /* the mask's values widened (exact), then added */
            const uint16_t *mh = (const uint16_t *)mask + mask_off[r];
            for (size_t i = 0; i < len; i++) scratch[len + i] = qk_f16_to_f32(mh[i * mask_step]);
            mr = scratch + len;
            for (size_t i = 0; i < len; i++) v[i] = v[i] + mr[i];
        } else if (mask_step == 1) {
            for (size_t i = 0; i < len; i++) v[i] = v[i] + mr[i];
        } else {
            for (size_t i = 0; i < len; i++) v[i] = v[i] + mr[0];
        }
        const float m = qk_elt_row_max(v, len);
        const int deep = qk_elt_exp_row(v, len, m);
        qk_elt_row_div(v, len, (float)qk_elt_row_sum(v, len), deep);
        if (half) QK_ELT_F32_TO_F16(v, (uint16_t *)y + r * len, len);
    }
}

const qk_eltwise_kernels QK_ELT_NAME(qk_eltwise) = {
    QK_ELT_NAME(qk_elt_unary_f32), QK_ELT_NAME(qk_elt_unary_f16), QK_ELT_NAME(qk_elt_prelu_f32),
    QK_ELT_NAME(qk_elt_binary_f32), QK_ELT_NAME(qk_elt_softmax_f32), QK_ELT_NAME(qk_elt_softmax_masked),
    QK_ELT_NAME(qk_elt_binary_f16),
};

#ifdef QK_ELT_PORTABLE
#if defined(__x86_64__)
extern const qk_eltwise_kernels qk_eltwise_avx2, qk_eltwise_avx512, qk_eltwise_avx512_emu;
#endif

const qk_eltwise_kernels *qk_eltwise_for_isa(int isa) {
#if defined(__x86_64__)
    if (isa == QK_ISA_AVX512VNNI) return &qk_eltwise_avx512;
    if (isa == QK_ISA_AVX512VNNI_EMU) return &qk_eltwise_avx512_emu;
#endif
    return QK_PICK_AVX2(isa, &qk_eltwise_avx2, &qk_eltwise_portable);
}

#endif
