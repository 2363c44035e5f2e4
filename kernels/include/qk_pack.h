/* Packing (kernels/pack.c): operands rearranged into the panels a micro-kernel reads.
 * Portable C; strides are in bytes; K is padded with zeros (to KR, and K = 0 packs one
 * zero group), and so are the rows (columns) of a last partial panel.
 *
 * Six layouts exist; each kernel names the one it reads for A and for B (qk_ukernel):
 *   QK_PACK_I16       int16, value minus its zero point, so the dot product is the exact
 *                     answer (AVX2 vpmaddwd, NEON vmlal). B: grouped (below); A: row-major,
 *                     MR rows of K padded to KR (packing A is then a vectorised widen).
 *   QK_PACK_S8        int8, uint8 flipped by xor 0x80; zero points are applied afterwards
 *                     with column and row sums (NEON dot product, i8mm, AVX2 GEMV's B).
 *                     Grouped, for A and for B.
 *   QK_PACK_U8        A only: uint8, int8 flipped by xor 0x80, row-major like int16 A
 *                     (AVX2 vpmaddubsw, which multiplies u8 by s8).
 *   QK_PACK_F32       fp16 values as floats, k-major: MR (NR) values per step of K (KR = 1).
 *   QK_PACK_F16       fp16 bits, k-major like QK_PACK_F32.
 *   QK_PACK_F32_ROWS  A only: MR rows of K floats, row-major (x86 fp16 kernels broadcast from
 *                     row streams; packing is a plain vector conversion per row).
 * The float layouts read fp16 sources; with QK_PACK_SRC_F32 or-ed in (the fp32 kernels'
 * layouts) they read float32 sources, copied as they are.
 * Grouped: K is split into groups of KR consecutive values; for each group the panel stores
 * NR (MR) lanes of KR values: element (group g, lane r, j) at (g * lanes + r) * KR + j.
 */
#ifndef QK_PACK_H
#define QK_PACK_H
#include <stddef.h>
#include <stdint.h>

enum qk_pack { QK_PACK_I16 = 0, QK_PACK_S8 = 1, QK_PACK_U8 = 2, QK_PACK_F32 = 3, QK_PACK_F16 = 4,
               QK_PACK_F32_ROWS = 5, QK_PACK_SRC_F32 = 0x10 };

/* Bytes per packed value of a layout. */
static inline size_t qk_pack_elem_size(int pack) {
    pack &= ~QK_PACK_SRC_F32;
    return (pack == QK_PACK_F32 || pack == QK_PACK_F32_ROWS) ? 4 : (pack == QK_PACK_I16 || pack == QK_PACK_F16) ? 2 : 1;
}

/* int8 layouts read uint8/int8 sources (zb per column, za per tensor) and return the sums of
 * what they stored (QK_PACK_S8 and QK_PACK_U8; QK_PACK_I16 A: sums of value - za); float
 * layouts read fp16 (IEEE binary16 bits). */
void qk_pack_b(int pack, int nr, int kr, size_t k, size_t n,
               const void *b, int b_signed, ptrdiff_t stride_k, ptrdiff_t stride_n,
               const int32_t *zb, void *packed, int32_t *col_sum);
void qk_pack_a(int pack, int mr, int kr, size_t m, size_t k,
               const void *a, int a_signed, ptrdiff_t stride_m, ptrdiff_t stride_k,
               int32_t za, void *packed, int32_t *row_sum);
size_t qk_packed_b_bytes(int pack, int nr, int kr, size_t k, size_t n);
size_t qk_packed_a_bytes(int pack, int mr, int kr, size_t m, size_t k);
#endif
