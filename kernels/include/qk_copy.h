/* Data movement (kernels/copy.c): one n-D strided copy of elements of 1, 2, 4 or 8
 * bytes, a fill of a strided region with one value, and a copy through a 256-entry
 * lookup table (1-byte elements). What the graph runner's Concat, Split, Slice, Pad,
 * Transpose, DepthToSpace, SpaceToDepth and QLinearConcat are made of.
 *
 * Elements are moved as bytes, so every copy is bit-exact (-0.0 and NaN payloads
 * included). Strides are in bytes, of any sign and any value; the source's may be zero
 * (broadcasting). The destination must not overlap the source, nor itself. */
#ifndef QK_COPY_H
#define QK_COPY_H
#include <stddef.h>
#include <stdint.h>

/* The most dimensions a prepared copy keeps (after dropping dimensions of size 1 and
 * merging those that are contiguous in both arrays). */
#define QK_COPY_MAX_DIMS 8

/* A prepared copy: dst[i] = src[i] (src NULL: dst[i] = value; table: dst[i] = table[src[i]])
 * over ndim dimensions, outermost first, in the destination's memory order. */
/* d[i] = t[s[i]] for i < n: a contiguous row through a 256-byte table. */
typedef void (*qk_table_row_fn)(const uint8_t *t, size_t n, uint8_t *d, const uint8_t *s);
#if defined(__x86_64__)
/* AVX-512 VBMI (kernels/avx2/table_vbmi.c): 64 bytes at a time, two vpermi2b over the
 * table's halves and a blend by the top bit. */
void qk_table_row_vbmi(const uint8_t *t, size_t n, uint8_t *d, const uint8_t *s);
#endif

typedef struct {
    uint8_t *dst;
    const uint8_t *src;          /* NULL: a fill */
    const uint8_t *table;        /* non-NULL: 1-byte elements mapped through table[256] */
    size_t elem;                 /* 1, 2, 4 or 8 */
    size_t ndim;                 /* 0: nothing to do (an empty region) */
    size_t shape[QK_COPY_MAX_DIMS];
    ptrdiff_t s_src[QK_COPY_MAX_DIMS], s_dst[QK_COPY_MAX_DIMS];
    int transpose;               /* >= 0: the dimension read contiguously, swapped with the last through
                                    qk_transpose (kernels/layout.c); -1: none */
    uint8_t value[8];            /* a fill's element */
    qk_table_row_fn table_row;   /* the SIMD lookup of a contiguous row, or NULL (the C loop) */
} qk_copy_op;

/* Prepares `op` for the copy of the region `shape` (ndim <= 64 dimensions) from src (byte
 * strides s_src) to dst (byte strides s_dst); src NULL: a fill with the `elem` bytes at
 * `value`; table non-NULL (elem 1): through the table. Returns 0, or -1 when the copy
 * cannot be prepared (an element size other than 1, 2, 4, 8, a table with another, a
 * destination stride of 0 over more than one element, or more than QK_COPY_MAX_DIMS
 * dimensions left). `op` keeps the pointers: the arrays must outlive its runs. */
int qk_copy_prepare(qk_copy_op *op, size_t elem, size_t ndim, const size_t *shape, uint8_t *dst,
                    const ptrdiff_t *s_dst, const uint8_t *src, const ptrdiff_t *s_src, const uint8_t *table,
                    const uint8_t *value);

/* Runs a prepared copy; `simd`: the blocked transpose may use the CPU's SIMD tiles
 * (qk_transpose; the same bytes either way). */
void qk_copy_run(const qk_copy_op *op, int simd);
#endif
