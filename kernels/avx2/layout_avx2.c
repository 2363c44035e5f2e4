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

/* Three byte rows (an RGB image's NCHW planes) into pixels of 3 bytes: per 16 columns,
 * each of the 3 destination vectors ORs one byte shuffle of each row (pshufb's zeroing
 * index -1 where the other rows' bytes go). */
void qk_interleave3_avx2(size_t cols, const uint8_t *src, ptrdiff_t s_row, uint8_t *dst, ptrdiff_t d_row) {
    /* destination byte 16v + b takes row (16v + b) % 3, column (16v + b) / 3 */
    __m128i m[3][3];
    for (int v = 0; v < 3; v++)
        for (int r = 0; r < 3; r++) {
            int8_t idx[16];
            for (int b = 0; b < 16; b++) idx[b] = (16 * v + b) % 3 == r ? (int8_t)((16 * v + b) / 3) : -1;
            m[v][r] = _mm_loadu_si128((const __m128i *)(const void *)idx);
        }
    const uint8_t *a = src, *b = src + s_row, *c = src + 2 * s_row;
    size_t j = 0;
    if (d_row == 3) {
        for (; j + 16 <= cols; j += 16) {
            const __m128i x = _mm_loadu_si128((const __m128i *)(a + j)), y = _mm_loadu_si128((const __m128i *)(b + j)),
                          z = _mm_loadu_si128((const __m128i *)(c + j));
            for (int v = 0; v < 3; v++)
                _mm_storeu_si128((__m128i *)(dst + 3 * j + 16 * v),
                                 _mm_or_si128(_mm_or_si128(_mm_shuffle_epi8(x, m[v][0]), _mm_shuffle_epi8(y, m[v][1])),
                                              _mm_shuffle_epi8(z, m[v][2])));
        }
    } else if (d_row == 4) {   /* pixels of 4 bytes (a channel added for the int8 kernels' quads): the 4th kept */
        const __m128i keep = _mm_set1_epi32((int)0xFF000000u);
        for (; j + 16 <= cols; j += 16) {
            const __m128i x = _mm_loadu_si128((const __m128i *)(a + j)), y = _mm_loadu_si128((const __m128i *)(b + j)),
                          z = _mm_loadu_si128((const __m128i *)(c + j));
            const __m128i xy_lo = _mm_unpacklo_epi8(x, y), xy_hi = _mm_unpackhi_epi8(x, y);
            const __m128i zz_lo = _mm_unpacklo_epi8(z, z), zz_hi = _mm_unpackhi_epi8(z, z);
            const __m128i v[4] = {_mm_unpacklo_epi16(xy_lo, zz_lo), _mm_unpackhi_epi16(xy_lo, zz_lo),
                                  _mm_unpacklo_epi16(xy_hi, zz_hi), _mm_unpackhi_epi16(xy_hi, zz_hi)};
            for (int k = 0; k < 4; k++) {   /* r g b b per pixel: the last byte from what dst held */
                __m128i *d = (__m128i *)(dst + 4 * j + 16 * k);
                _mm_storeu_si128(d, _mm_blendv_epi8(v[k], _mm_loadu_si128(d), keep));
            }
        }
    }
    for (uint8_t *d = dst + (ptrdiff_t)j * d_row; j < cols; j++, d += d_row) {
        d[0] = a[j];
        d[1] = b[j];
        d[2] = c[j];
    }
}
