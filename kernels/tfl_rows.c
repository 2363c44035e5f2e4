/* TFLite's 8-bit MEAN (QuantizedMeanOrSum: the count folded into the multiplier, which
 * shifts right) and 8-bit SOFTMAX (LiteRT's optimized kernel: a float table of
 * exp(-s_in beta d) over the distance d to the row's maximum, summed in order, normalised in
 * float32), bit for bit as the reference operators (graph/backends/reference/tflite.py).
 * Portable C, ISO C11 (no contraction to FMA: the float steps are the reference's). */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "qk_tfl.h"

#define QK_TFL_LOAD(x, i) (is_signed ? (int32_t)((const int8_t *)(x))[i] : (int32_t)((const uint8_t *)(x))[i])

void qk_tfl_mean(size_t outer, size_t count, size_t inner, int is_signed, const void *x, int64_t mult,
                 int64_t offset, int right, int32_t zy, int32_t *acc, void *y) {
    const size_t e = 1;   /* one byte a value */
    for (size_t o = 0; o < outer; o++) {
        const uint8_t *xo = (const uint8_t *)x + o * count * inner * e;
        memset(acc, 0, inner * sizeof(int32_t));
        if (is_signed) {
            for (size_t r = 0; r < count; r++) {
                const int8_t *row = (const int8_t *)(xo + r * inner);
                for (size_t i = 0; i < inner; i++) acc[i] += row[i];
            }
        } else {
            for (size_t r = 0; r < count; r++) {
                const uint8_t *row = xo + r * inner;
                for (size_t i = 0; i < inner; i++) acc[i] += row[i];
            }
        }
        const int32_t lo = is_signed ? -128 : 0, hi = is_signed ? 127 : 255;
        for (size_t i = 0; i < inner; i++) {
            /* (s - n z) m + 2^30 >> 31 as one multiply-add, then the rounding right shift
               (ties away from zero), as the reference's int64 passes */
            int64_t v = ((int64_t)acc[i] * mult + offset) >> 31;
            if (right) v = (v + (v >> 63) + ((int64_t)1 << (right - 1))) >> right;
            v += zy;
            v = v < lo ? lo : (v > hi ? hi : v);
            if (is_signed)
                ((int8_t *)y)[o * inner + i] = (int8_t)v;
            else
                ((uint8_t *)y)[o * inner + i] = (uint8_t)v;
        }
    }
}

void qk_tfl_softmax(size_t rows, size_t length, int is_signed, const void *x, const float *table, float sy,
                    float zy, void *y) {
    const float lo = is_signed ? -128.0f : 0.0f, hi = is_signed ? 127.0f : 255.0f;
    for (size_t r = 0; r < rows; r++) {
        const size_t base = r * length;
        int32_t mx = QK_TFL_LOAD(x, base);
        for (size_t j = 1; j < length; j++) {
            const int32_t v = QK_TFL_LOAD(x, base + j);
            mx = v > mx ? v : mx;
        }
        float total = 0.0f;                      /* in order: the reference's cumulative sum */
        for (size_t j = 0; j < length; j++) total += table[mx - QK_TFL_LOAD(x, base + j)];
        const float inv = 1.0f / (total * sy);
        for (size_t j = 0; j < length; j++) {
            float v = rintf(table[mx - QK_TFL_LOAD(x, base + j)] * inv) + zy;   /* half to even */
            v = v < lo ? lo : (v > hi ? hi : v);
            if (is_signed)
                ((int8_t *)y)[base + j] = (int8_t)v;
            else
                ((uint8_t *)y)[base + j] = (uint8_t)v;
        }
    }
}
