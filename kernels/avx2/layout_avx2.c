/* NCHW <-> NHWC transposes with AVX2 (qk_layout.h): a tile is R = 16 / elem source rows
 * of 32 bytes; log2(R) rounds of in-lane unpacks (the perfect shuffle: after them,
 * register k holds column k) transpose both 128-bit lanes at once, each lane stored as
 * 16 bytes of one destination row. The narrow tile loads and stores the low lane only. */
#include <immintrin.h>
#include "qk_layout.h"

static inline __attribute__((always_inline)) __m256i unpack(size_t elem, int hi, __m256i a, __m256i b) {
    switch (elem) {
    case 1: return hi ? _mm256_unpackhi_epi8(a, b) : _mm256_unpacklo_epi8(a, b);
    case 2: return hi ? _mm256_unpackhi_epi16(a, b) : _mm256_unpacklo_epi16(a, b);
    default: return hi ? _mm256_unpackhi_epi32(a, b) : _mm256_unpacklo_epi32(a, b);
    }
}

static inline __attribute__((always_inline)) void tile(size_t elem, int narrow, const uint8_t *src, ptrdiff_t s_row,
                                                      uint8_t *dst, ptrdiff_t d_row) {
    const size_t r = 16 / elem;
    __m256i v[16], t[16];
#pragma GCC unroll 16
    for (size_t i = 0; i < r; i++)
        v[i] = narrow ? _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(src + (ptrdiff_t)i * s_row)))
                      : _mm256_loadu_si256((const __m256i *)(src + (ptrdiff_t)i * s_row));
#pragma GCC unroll 4
    for (size_t round = 1; round < r; round *= 2) {
#pragma GCC unroll 16
        for (size_t i = 0; i < r; i++) t[i] = unpack(elem, i & 1, v[i / 2], v[i / 2 + r / 2]);
#pragma GCC unroll 16
        for (size_t i = 0; i < r; i++) v[i] = t[i];
    }
#pragma GCC unroll 16
    for (size_t k = 0; k < r; k++) {
        _mm_storeu_si128((__m128i *)(dst + (ptrdiff_t)k * d_row), _mm256_castsi256_si128(v[k]));
        if (!narrow) _mm_storeu_si128((__m128i *)(dst + (ptrdiff_t)(k + r) * d_row), _mm256_extracti128_si256(v[k], 1));
    }
}

#define TILE_FN(E)                                                                                        \
    static inline __attribute__((always_inline)) void tile##E(size_t elem, int narrow, const uint8_t *src,  \
                                                              ptrdiff_t s_row, uint8_t *dst, ptrdiff_t d_row) { \
        (void)elem;                                                                                       \
        if (narrow) tile(E, 1, src, s_row, dst, d_row); else tile(E, 0, src, s_row, dst, d_row);         \
    }
TILE_FN(1)
TILE_FN(2)
TILE_FN(4)

void qk_transpose_avx2(size_t elem, size_t rows, size_t cols, const uint8_t *src, ptrdiff_t s_row, uint8_t *dst,
                       ptrdiff_t d_row) {
    switch (elem) {   /* a tile is 32 bytes of each source row: 2R columns */
    case 1: qk_transpose_walk(1, 32, rows, cols, src, s_row, dst, d_row, tile1); break;
    case 2: qk_transpose_walk(2, 16, rows, cols, src, s_row, dst, d_row, tile2); break;
    default: qk_transpose_walk(4, 8, rows, cols, src, s_row, dst, d_row, tile4); break;
    }
}
