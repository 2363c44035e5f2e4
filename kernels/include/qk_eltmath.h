/* The scalar float32 helpers of the elementwise ops (kernels/eltwise.c, whose header comment
 * states the approximations' error) and of the recurrent cells (kernels/recurrent.c):
 * numpy's maximum / minimum / clip, exp, sigmoid, tanh, erf and GELU from basic operations only (no
 * libm), branch-free so that loops over them vectorise; the same bits in every build that
 * keeps ISO C's float semantics (no contraction to FMA, no reassociation). */
#ifndef QK_ELTMATH_H
#define QK_ELTMATH_H
#include <stdint.h>
#include <string.h>

static inline uint32_t qk_elt_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float qk_elt_float(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
/* numpy's maximum / minimum (the NaN of a kept; equal values give b) */
static inline float qk_elt_max(float a, float b) {
    const float t = a > b ? a : b;   /* two selects, no branch (short-circuit || made one) */
    return a != a ? a : t;
}
static inline float qk_elt_min(float a, float b) {
    const float t = a < b ? a : b;
    return a != a ? a : t;
}
/* numpy's clip(v, 0, 1): v unless strictly outside (clip(-0.0, 0, 1) = -0.0), NaN kept */
static inline float qk_elt_clip01(float v) {
    const float c = v < 0.0f ? 0.0f : v;
    return c > 1.0f ? 1.0f : c;
}

/* exp(x) for any float x, NaN -> NaN (see the top of the file for its error) */
static inline float qk_elt_exp(float x) {
    float xc = x < -104.0f ? -104.0f : x;     /* NaN compares false: stays NaN */
    xc = xc > 89.0f ? 89.0f : xc;
    const float t = xc * 1.44269504088896341f + 12582912.0f;   /* + 1.5 * 2^23: round to an integer */
    const float n = t - 12582912.0f;
    const int32_t ni = (int32_t)(qk_elt_bits(t) - 0x4B400000u);  /* that integer, in [-150, 129] */
    float r = xc - n * 0.693359375f;          /* ln 2 in two parts: n * 0.693359375 is exact */
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    const int32_t n1 = ni / 2, n2 = ni - n1;  /* 2^n as 2^n1 * 2^n2, both normal: one rounding at the end */
    const float s1 = qk_elt_float((uint32_t)(n1 + 127) << 23), s2 = qk_elt_float((uint32_t)(n2 + 127) << 23);
    return (p * s1) * s2;
}

static inline float qk_elt_sigmoid(float x) {
    const float e = qk_elt_exp(x > 0 ? -x : x);
    return (x >= 0 ? 1.0f : e) / (1.0f + e);
}

static inline float qk_elt_tanh(float x) {
    const float z = x * x;
    float p = -5.70498872745e-3f;
    p = p * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    const float small = p * z * x + x;
    float a = x < 0 ? -x : x;
    const float ac = a > 9.5f ? 9.5f : a;
    const float big = 1.0f - 2.0f / (qk_elt_exp(ac + ac) + 1.0f);
    /* below 2^-12 tanh(x) rounds to x (keeps -0.0 and subnormals exact) */
    return a < 0.625f ? (a < 0x1p-12f ? x : small) : (x < 0 ? -big : big);
}
/* erf(x): |x| < 1: x P(x^2) (Cephes' erff polynomial); 1 <= |x| < 4: 1 - Q(t), Q a
 * degree-12 Chebyshev fit of erfc on [1, 4] in t = (|x| - 2.5) / 1.5 (|x| clamped at 4;
 * from 3.92 erf rounds to 1), the sign of x put back; NaN -> NaN, erf(+-inf) = +-1, erf(-0) = -0 */
static inline float qk_elt_erf(float x) {
    const float z = x * x;
    float p = 7.853861353153693e-5f;
    p = p * z - 8.010193625184903e-4f;
    p = p * z + 5.188327685732524e-3f;
    p = p * z - 2.685381193529856e-2f;
    p = p * z + 1.128358514861418e-1f;
    p = p * z - 3.761262582423300e-1f;
    p = p * z + 1.128379165726710e0f;
    const float small = x * p;
    const float a = x < 0 ? -x : x;
    const float ac = a > 4.0f ? 4.0f : a;     /* NaN compares false: stays NaN */
    const float t = (ac - 2.5f) * 0.666666686534881591796875f;
    float q = 1.129985546383912e-3f;
    q = q * t - 1.8515751563948392e-3f;
    q = q * t - 3.426010367141899e-3f;
    q = q * t + 1.0797679465475088e-2f;
    q = q * t - 7.483717372205854e-3f;
    q = q * t - 9.810808183756993e-3f;
    q = q * t + 3.2164368643323976e-2f;
    q = q * t - 4.632206171706124e-2f;
    q = q * t + 4.360218710080444e-2f;
    q = q * t - 2.8195846555801433e-2f;
    q = q * t + 1.225590877635208e-2f;
    q = q * t - 3.266968915232607e-3f;
    q = q * t + 4.06920638952115e-4f;
    const float big = ac > 3.92f ? 1.0f : 1.0f - q;   /* erfc below half an ulp of 1 */
    return a < 1.0f ? small : (x < 0 ? -big : big);
}

/* GELU, exact: (x / 2) (1 + erf(x / sqrt 2)) (x * 0.70710677: within an ulp of the division) */
static inline float qk_elt_gelu(float x) {
    return (0.5f * x) * (1.0f + qk_elt_erf(x * 0.707106769084930419921875f));
}

/* GELU, tanh form: (x / 2) (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) */
static inline float qk_elt_gelu_tanh(float x) {
    const float u = 0.797884583473205566406250f * (x + 0.044715f * (x * x * x));
    return (0.5f * x) * (1.0f + qk_elt_tanh(u));
}
#endif
