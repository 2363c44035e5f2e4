/* Layout conversion: the batched 2-D transpose behind NCHW <-> NHWC (kernels/layout.c,
 * SIMD tiles in kernels/avx2/layout_avx2.c and kernels/neon/layout_neon.c).
 *
 * NCHW -> NHWC is, per image, the (C, H*W) -> (H*W, C) transpose; NHWC -> NCHW the
 * reverse. Elements are moved as bytes: 1, 2 or 4 bytes each (u8/s8, fp16, fp32 and any
 * other type of that size), so every result is bit-exact. */
#ifndef QK_LAYOUT_H
#define QK_LAYOUT_H
#include <stddef.h>
#include <stdint.h>

/* dst[j][i] = src[i][j] for i < rows, j < cols, elements of `elem` bytes (1, 2 or 4).
 * The source may be any view: s_row and s_col are byte strides of any sign, zero
 * included (broadcast). The destination's rows hold adjacent elements, d_row bytes apart
 * (d_row >= rows * elem). src and dst must not overlap. With `simd`, the SIMD tiles run
 * where the CPU has them and the source's columns are adjacent (s_col == elem); the
 * portable blocked loop does the rest (strided columns, blocks smaller than a tile, and
 * everything without `simd`: the scalar ISA path). */
void qk_transpose(int simd, size_t elem, size_t rows, size_t cols, const uint8_t *src, ptrdiff_t s_row,
                  ptrdiff_t s_col, uint8_t *dst, ptrdiff_t d_row);

/* A SIMD tile kernel: the same contract with s_col == elem, for rows >= qk_transpose_tile(elem)
 * and cols >= qk_transpose_tile(elem) (edges are covered by tiles shifted back over
 * already written ones). */
typedef void (*qk_transpose_fn)(size_t elem, size_t rows, size_t cols, const uint8_t *src, ptrdiff_t s_row,
                                uint8_t *dst, ptrdiff_t d_row);

/* Rows (and columns) of a SIMD tile for `elem`-byte elements: 16 bytes of one row. */
static inline size_t qk_transpose_tile(size_t elem) { return 16 / elem; }

/* One SIMD tile (in the ISA files; inlined into the walk below: no call per tile):
 * R = qk_transpose_tile(elem) source rows of 16 bytes (narrow) or of `wide` elements, to
 * as many destination rows of R elements. */
typedef void (*qk_transpose_tile_fn)(size_t elem, int narrow, const uint8_t *src, ptrdiff_t s_row, uint8_t *dst,
                                     ptrdiff_t d_row);

/* Source rows per block of the tile walk: the source lines a column step touches stay in
 * L1 (256 lines of 64 bytes: 16 KiB). */
#define QK_LAYOUT_ROW_BLOCK 256

/* The walk over the tiles of a rows x cols transpose (rows, cols >= R), shared by the ISA
 * files: columns in steps of `wide` (R when the ISA has one tile width), the edges by
 * tiles shifted back over ones already written (the same values again: no scalar tail);
 * a block of rows at a time, its tiles in row order, so the destination is written
 * sequentially. `tile` is a constant where this is inlined. */
static inline __attribute__((always_inline)) void qk_transpose_walk(size_t elem, size_t wide, size_t rows,
                                                                    size_t cols, const uint8_t *src,
                                                                    ptrdiff_t s_row, uint8_t *dst, ptrdiff_t d_row,
                                                                    qk_transpose_tile_fn tile) {
    const size_t r = qk_transpose_tile(elem);
    for (size_t i0 = 0; i0 < rows; i0 += QK_LAYOUT_ROW_BLOCK) {
        const size_t i1 = rows - i0 < QK_LAYOUT_ROW_BLOCK ? rows : i0 + QK_LAYOUT_ROW_BLOCK;   /* >= r */
        for (size_t j = 0; j < cols;) {
            const int narrow = cols < wide;
            const size_t w = narrow ? r : wide, jj = j + w <= cols ? j : cols - w;
            for (size_t i = i0; i < i1;) {
                const size_t ii = i + r <= i1 ? i : i1 - r;
                tile(elem, narrow, src + (ptrdiff_t)ii * s_row + jj * elem, s_row,
                     dst + (ptrdiff_t)jj * d_row + ii * elem, d_row);
                i = ii + r;
            }
            j = jj + w;
        }
    }
}

/* The SIMD tile kernel this CPU runs (NULL: none; picked by qk_cpu_features()). */
qk_transpose_fn qk_transpose_simd(void);
#endif
