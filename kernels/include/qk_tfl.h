/* TFLite's own 8-bit arithmetic where it is not a GEMM's (kernels/tfl_binary.c). */
#ifndef QK_TFL_H
#define QK_TFL_H
#include <stddef.h>
#include <stdint.h>

enum { QK_TFL_ADD = 0, QK_TFL_SUB = 1, QK_TFL_MUL = 2 };

/* y = clamp(MultiplyByQuantizedMultiplier(raw, mult, shift) + zy, lo, hi) of raw = ta[a] + tb[b]
 * (ADD), ta[a] - tb[b] (SUB) or (a - za) * (b - zb) (MUL); tables of 512 indexed by the input
 * byte: the first 256 for LiteRT's vector loop (whose uint8 ADD scales its inputs with a
 * truncating shift), the next 256 for its scalar tail. */
void qk_tfl_binary(size_t n, int op, int is_signed, const void *a, const void *b, const int32_t *ta,
                   const int32_t *tb, int32_t za, int32_t zb, int32_t mult, int32_t shift, int32_t zy, int32_t lo,
                   int32_t hi, void *y);

typedef void (*qk_tfl_binary_fn)(size_t, int, int, const void *, const void *, const int32_t *, const int32_t *,
                                 int32_t, int32_t, int32_t, int32_t, int32_t, int32_t, int32_t, void *);

/* The loop of ISA path isa (an AVX2 one where the CPU has it; the same bits on each). */
qk_tfl_binary_fn qk_tfl_binary_for_isa(int isa);

/* TFLite's 8-bit MEAN of `outer` blocks of `count` rows of `inner` values (contiguous; the
 * mean over the rows) into y (outer x inner): the sums in int32 (acc: `inner` values of
 * scratch), then v = ((s * mult + offset) >> 31) with offset = 2^30 - count * z_in * mult,
 * a rounding right shift by `right` (ties away from zero), + zy, clamped to the type
 * (kernels/tfl_rows.c). */
void qk_tfl_mean(size_t outer, size_t count, size_t inner, int is_signed, const void *x, int64_t mult,
                 int64_t offset, int right, int32_t zy, int32_t *acc, void *y);

/* TFLite's 8-bit SOFTMAX of `rows` contiguous rows of `length`: table[max - x] (256 float32
 * values), their sum in order, each times 1 / (sum * sy), rounded half to even, + zy,
 * clamped to the type. */
void qk_tfl_softmax(size_t rows, size_t length, int is_signed, const void *x, const float *table, float sy,
                    float zy, void *y);

/* How LiteRT's built-in ADD / MUL hold a scaled result before adding the output zero
 * point: in 32 bits (their scalar tail; SUB everywhere), or in their vector loop in 16-bit
 * lanes, narrowed by truncation (ADD) or saturation (MUL), the zero point added with a
 * wrap (found against LiteRT on results beyond int16; graph/backends/reference/tflite.py
 * simd_body). Its vector loop takes blocks of 16 int8 or 8 uint8 values of a run. */
enum { QK_TFL_LANES32 = 0, QK_TFL_LANES16_WRAP = 1, QK_TFL_LANES16_SAT = 2 };
static inline size_t qk_tfl_body(size_t n, int op, int is_signed) {
    return op == QK_TFL_SUB ? 0 : n - n % (is_signed ? 16 : 8);
}

/* One ISA's loop over values held as `lanes` says; the entry (qk_tfl_binary_fn) runs it on
 * LiteRT's vector-loop values, then on the tail. */
#define QK_TFL_PART_ARGS                                                                       \
    size_t n, int lanes, int op, int is_signed, const void *a, const void *b, const int32_t *ta, \
        const int32_t *tb, int32_t za, int32_t zb, int32_t mult, int32_t shift, int32_t zy, int32_t lo, \
        int32_t hi, void *y
void qk_tfl_binary_part(QK_TFL_PART_ARGS);
#define QK_TFL_ENTRY(NAME, PART)                                                               \
    void NAME(size_t n, int op, int is_signed, const void *a, const void *b, const int32_t *ta, \
              const int32_t *tb, int32_t za, int32_t zb, int32_t mult, int32_t shift, int32_t zy, int32_t lo, \
              int32_t hi, void *y) {                                                           \
        const size_t body = qk_tfl_body(n, op, is_signed);                                     \
        const int lanes = op == QK_TFL_MUL ? QK_TFL_LANES16_SAT : QK_TFL_LANES16_WRAP;         \
        if (body)                                                                              \
            PART(body, lanes, op, is_signed, a, b, ta, tb, za, zb, mult, shift, zy, lo, hi, y); \
        if (n > body)                                                                          \
            PART(n - body, QK_TFL_LANES32, op, is_signed, (const uint8_t *)a + body, (const uint8_t *)b + body, \
                 ta + 256, tb + 256, za, zb, mult, shift, zy, lo, hi, (uint8_t *)y + body);    \
    }
#endif
