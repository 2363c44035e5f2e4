/* IEEE binary16 <-> binary32 in portable C (no compiler _Float16 needed): the scalar
 * reference path and packing use these; SIMD paths use F16C / NEON conversions, which
 * round the same way (to nearest, ties to even; overflow to infinity; NaN stays NaN). */
#ifndef QK_F16_H
#define QK_F16_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline float qk_f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1F, m = h & 0x3FF;
    uint32_t bits;
    if (e == 0x1F) {
        bits = sign | 0x7F800000u | (m << 13);            /* inf, NaN (payload kept) */
    } else if (e) {
        bits = sign | ((e + 112) << 23) | (m << 13);        /* rebias 15 -> 127 */
    } else {
        const float f = (float)m * 5.9604644775390625e-08f; /* subnormal or zero: m * 2^-24, exact */
        return sign ? -f : f;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t qk_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    const uint32_t ax = x & 0x7FFFFFFFu;
    if (ax > 0x7F800000u) return sign | 0x7E00 | (uint16_t)((ax >> 13) & 0x3FF);   /* NaN, quiet */
    if (ax >= 0x477FF000u) return sign | 0x7C00;            /* >= 65520 (and inf): infinity */
    if (ax < 0x38800000u) {                                 /* below 2^-14: subnormal half */
        if (ax < 0x33000000u) return sign;                  /* below 2^-25: zero (2^-25 itself: tie to 0) */
        const uint32_t shift = 126 - (ax >> 23), m = (ax & 0x7FFFFF) | 0x800000;
        uint32_t r = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return sign | (uint16_t)r;
    }
    uint32_t r = (ax - 0x38000000u) >> 13;                  /* rebias 127 -> 15, drop 13 bits */
    const uint32_t rem = ax & 0x1FFF;
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) r++;    /* a carry moves to the next binade */
    return sign | (uint16_t)r;
}

/* fp16 -> fp32 of a contiguous row (exact: every fp16 value is a float), with F16C or
 * NEON where the CPU has it, whatever ISA path is in use (kernels/registry.c). */
typedef void (*qk_f16_row_fn)(const uint16_t *src, float *dst, size_t n);
qk_f16_row_fn qk_f16_row_converter(void);

/* The fp16 output stage for one value: bias added in float, clamp keeping NaN, one rounding. */
static inline uint16_t qk_f16_out(float acc, float bias, float lo, float hi) {
    float v = acc + bias;
    v = v < lo ? lo : v;   /* comparisons with NaN are false: NaN passes through */
    v = v > hi ? hi : v;
    return qk_f32_to_f16(v);
}
#endif
