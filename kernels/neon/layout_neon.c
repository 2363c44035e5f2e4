/* NCHW <-> NHWC transposes with NEON (qk_layout.h): a tile is R = 16 / elem source rows
 * of 16 bytes; log2(R) rounds of zips (the perfect shuffle: after them, register k
 * holds column k), each register stored as 16 bytes of one destination row. */
#include <arm_neon.h>
#include "qk_layout.h"

static inline __attribute__((always_inline)) uint8x16_t zip(size_t elem, int hi, uint8x16_t a, uint8x16_t b) {
    switch (elem) {
    case 1: return hi ? vzip2q_u8(a, b) : vzip1q_u8(a, b);
    case 2: return vreinterpretq_u8_u16(hi ? vzip2q_u16(vreinterpretq_u16_u8(a), vreinterpretq_u16_u8(b))
                                           : vzip1q_u16(vreinterpretq_u16_u8(a), vreinterpretq_u16_u8(b)));
    default: return vreinterpretq_u8_u32(hi ? vzip2q_u32(vreinterpretq_u32_u8(a), vreinterpretq_u32_u8(b))
                                            : vzip1q_u32(vreinterpretq_u32_u8(a), vreinterpretq_u32_u8(b)));
    }
}

static inline __attribute__((always_inline)) void tile(size_t elem, const uint8_t *src, ptrdiff_t s_row, uint8_t *dst,
                                                      ptrdiff_t d_row) {
    const size_t r = 16 / elem;
    uint8x16_t v[16], t[16];
#pragma GCC unroll 16
    for (size_t i = 0; i < r; i++) v[i] = vld1q_u8(src + (ptrdiff_t)i * s_row);
#pragma GCC unroll 4
    for (size_t round = 1; round < r; round *= 2) {
#pragma GCC unroll 16
        for (size_t i = 0; i < r; i++) t[i] = zip(elem, i & 1, v[i / 2], v[i / 2 + r / 2]);
#pragma GCC unroll 16
        for (size_t i = 0; i < r; i++) v[i] = t[i];
    }
#pragma GCC unroll 16
    for (size_t k = 0; k < r; k++) vst1q_u8(dst + (ptrdiff_t)k * d_row, v[k]);
}

/* One tile width (R columns): `narrow` changes nothing here. */
#define TILE_FN(E)                                                                                        \
    static inline __attribute__((always_inline)) void tile##E(size_t elem, int narrow, const uint8_t *src,  \
                                                              ptrdiff_t s_row, uint8_t *dst, ptrdiff_t d_row) { \
        (void)elem, (void)narrow;                                                                         \
        tile(E, src, s_row, dst, d_row);                                                                  \
    }
TILE_FN(1)
TILE_FN(2)
TILE_FN(4)

void qk_transpose_neon(size_t elem, size_t rows, size_t cols, const uint8_t *src, ptrdiff_t s_row, uint8_t *dst,
                       ptrdiff_t d_row) {
    switch (elem) {
    case 1: qk_transpose_walk(1, 16, rows, cols, src, s_row, dst, d_row, tile1); break;
    case 2: qk_transpose_walk(2, 8, rows, cols, src, s_row, dst, d_row, tile2); break;
    default: qk_transpose_walk(4, 4, rows, cols, src, s_row, dst, d_row, tile4); break;
    }
}
