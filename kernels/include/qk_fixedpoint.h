/* Fixed-point requantization, the gemmlowp/TFLite scheme: saturating rounding doubling
 * high multiply, then a rounding (half away from zero) right shift. The scalar output
 * stage and the vector stages' tails use it; the vector stages match it bit for bit. */
#ifndef QK_FIXEDPOINT_H
#define QK_FIXEDPOINT_H
#include <stdint.h>

static inline int32_t qk_srdhm(int32_t a, int32_t b) {
    if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
    int64_t ab = (int64_t)a * (int64_t)b;
    int64_t nudge = ab >= 0 ? (1LL << 30) : (1 - (1LL << 30));
    return (int32_t)((ab + nudge) / (1LL << 31));
}

static inline int32_t qk_rdbpot(int32_t x, int exponent) {
    if (exponent <= 0) return x;
    int32_t mask = (int32_t)((1LL << exponent) - 1);
    int32_t remainder = x & mask;
    int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* The rounding right shift with ties upward (ruy's, and NEON's SRSHL): what LiteRT's
 * int8 convolutions and fully connected layers do on x86. */
static inline int32_t qk_rdbpot_up(int32_t x, int exponent) {
    if (exponent <= 0) return x;
    return (int32_t)(((int64_t)x + ((int64_t)1 << (exponent - 1))) >> exponent);
}

/* acc * mult * 2^(shift - 31): a saturating left shift (shift > 0), SRDHM, then the
 * rounding right shift (shift < 0): ties away from zero, or upward when ties_up. */
static inline int32_t qk_fixedpoint_scale_r(int32_t acc, int32_t mult, int32_t shift, int ties_up) {
    int64_t x = (int64_t)acc * ((int64_t)1 << (shift > 0 ? shift : 0));
    if (x > INT32_MAX) x = INT32_MAX;
    if (x < INT32_MIN) x = INT32_MIN;
    int32_t h = qk_srdhm((int32_t)x, mult);
    return ties_up ? qk_rdbpot_up(h, shift < 0 ? -shift : 0) : qk_rdbpot(h, shift < 0 ? -shift : 0);
}

static inline int32_t qk_fixedpoint_scale(int32_t acc, int32_t mult, int32_t shift) {
    return qk_fixedpoint_scale_r(acc, mult, shift, 0);
}
#endif
