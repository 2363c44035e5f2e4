/* Layout conversion (qk_layout.h): the portable blocked transpose and the dispatcher to
 * the SIMD tiles. Compiled without ISA flags: runs on any CPU of its architecture. */
#include <string.h>
#include "qk_cpu.h"
#include "qk_layout.h"

#if defined(__x86_64__)
void qk_transpose_avx2(size_t elem, size_t rows, size_t cols, const uint8_t *src, ptrdiff_t s_row, uint8_t *dst,
                       ptrdiff_t d_row);
void qk_interleave3_avx2(size_t cols, const uint8_t *src, ptrdiff_t s_row, uint8_t *dst, ptrdiff_t d_row);
#elif defined(__aarch64__)
void qk_transpose_neon(size_t elem, size_t rows, size_t cols, const uint8_t *src, ptrdiff_t s_row, uint8_t *dst,
                       ptrdiff_t d_row);
#endif

/* Square blocks of this many elements: a block's source rows and destination rows stay
 * in L1 while it is copied (16 x 16 x 4 bytes: 1 KiB each side). */
#define QK_LAYOUT_BLOCK 16

/* One piece for every element size: `elem` is a constant where it is inlined, so the
 * memcpy is one load and one store. */
static inline __attribute__((always_inline)) void transpose_blocked(size_t elem, size_t rows, size_t cols,
                                                                    const uint8_t *src, ptrdiff_t s_row,
                                                                    ptrdiff_t s_col, uint8_t *dst, ptrdiff_t d_row) {
    for (size_t j0 = 0; j0 < cols; j0 += QK_LAYOUT_BLOCK) {
        const size_t j1 = cols - j0 < QK_LAYOUT_BLOCK ? cols : j0 + QK_LAYOUT_BLOCK;
        for (size_t i0 = 0; i0 < rows; i0 += QK_LAYOUT_BLOCK) {
            const size_t i1 = rows - i0 < QK_LAYOUT_BLOCK ? rows : i0 + QK_LAYOUT_BLOCK;
            for (size_t j = j0; j < j1; j++) {
                const uint8_t *s = src + (ptrdiff_t)i0 * s_row + (ptrdiff_t)j * s_col;
                uint8_t *d = dst + (ptrdiff_t)j * d_row + i0 * elem;
                for (size_t i = i0; i < i1; i++, s += s_row, d += elem) memcpy(d, s, elem);
            }
        }
    }
}

/* Fewer source rows than a tile (an RGB image's 3 channels to NHWC): each destination row
 * written whole from R adjacent-column streams, R and elem constants where inlined (the
 * blocked loop's inner loop of 3 cost 5 cycles an element: 240 us for a 224 x 224 image). */
static inline __attribute__((always_inline)) void transpose_few(size_t elem, size_t r, size_t cols, const uint8_t *src,
                                                                ptrdiff_t s_row, uint8_t *dst, ptrdiff_t d_row) {
    for (size_t j = 0; j < cols; j++, src += elem, dst += d_row)
        for (size_t i = 0; i < r; i++) memcpy(dst + i * elem, src + (ptrdiff_t)i * s_row, elem);
}

#define QK_FEW(E)                                                                                    \
    static void transpose_few##E(size_t rows, size_t cols, const uint8_t *src, ptrdiff_t s_row,       \
                                 uint8_t *dst, ptrdiff_t d_row) {                                      \
        if (rows == 2) transpose_few(E, 2, cols, src, s_row, dst, d_row);                               \
        else transpose_few(E, 3, cols, src, s_row, dst, d_row);                                         \
    }
QK_FEW(1)
QK_FEW(2)
QK_FEW(4)

static void transpose_portable(size_t elem, size_t rows, size_t cols, const uint8_t *src, ptrdiff_t s_row,
                               ptrdiff_t s_col, uint8_t *dst, ptrdiff_t d_row) {
    if ((rows == 2 || rows == 3) && s_col == (ptrdiff_t)elem) {
        switch (elem) {
        case 1: transpose_few1(rows, cols, src, s_row, dst, d_row); return;
        case 2: transpose_few2(rows, cols, src, s_row, dst, d_row); return;
        case 4: transpose_few4(rows, cols, src, s_row, dst, d_row); return;
        default: break;
        }
    }
    switch (elem) {
    case 1: transpose_blocked(1, rows, cols, src, s_row, s_col, dst, d_row); break;
    case 2: transpose_blocked(2, rows, cols, src, s_row, s_col, dst, d_row); break;
    case 4: transpose_blocked(4, rows, cols, src, s_row, s_col, dst, d_row); break;
    default: transpose_blocked(elem, rows, cols, src, s_row, s_col, dst, d_row); break;
    }
}

/* Three byte rows into pixels (an RGB input's NCHW -> NHWC: below a SIMD tile's 16 rows,
 * where the blocked loop moved one byte per memcpy, 90 us for 224 x 224 x 3). */
static void interleave3(int simd, size_t cols, const uint8_t *src, ptrdiff_t s_row, uint8_t *dst, ptrdiff_t d_row) {
#if defined(__x86_64__)
    if (simd && (qk_cpu_features() & QK_CPU_AVX2)) {
        qk_interleave3_avx2(cols, src, s_row, dst, d_row);
        return;
    }
#endif
    (void)simd;
    for (size_t j = 0; j < cols; j++, dst += d_row)
        for (size_t i = 0; i < 3; i++) dst[i] = src[(ptrdiff_t)i * s_row + (ptrdiff_t)j];
}

qk_transpose_fn qk_transpose_simd(void) {
    /* CPU features once: cpuid traps to the hypervisor in VMs (tens of microseconds). */
    static volatile int64_t cached = -1;   /* benign race: every thread stores the same value */
    if (cached < 0) cached = qk_cpu_features();
#if defined(__x86_64__)
    if (cached & QK_CPU_AVX2) return qk_transpose_avx2;
#elif defined(__aarch64__)
    return qk_transpose_neon;   /* NEON is part of AArch64 */
#endif
    return NULL;
}

void qk_transpose(int simd, size_t elem, size_t rows, size_t cols, const uint8_t *src, ptrdiff_t s_row,
                  ptrdiff_t s_col, uint8_t *dst, ptrdiff_t d_row) {
    const size_t tile = elem == 1 || elem == 2 || elem == 4 ? qk_transpose_tile(elem) : 0;
    qk_transpose_fn k = simd && tile && s_col == (ptrdiff_t)elem && rows >= tile && cols >= tile
                            ? qk_transpose_simd() : NULL;
    if (k)
        k(elem, rows, cols, src, s_row, dst, d_row);
    else if (elem == 1 && s_col == 1 && rows == 3)
        interleave3(simd, cols, src, s_row, dst, d_row);
    else
        transpose_portable(elem, rows, cols, src, s_row, s_col, dst, d_row);
}
