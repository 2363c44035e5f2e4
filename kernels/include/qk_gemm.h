/* The GEMM micro-kernel contract, and the tile loop that drives one (kernels/gemm_block.c).
 *
 * A micro-kernel computes one MR x NR tile of raw dot products from one packed A panel
 * (MR rows) and one packed B panel (NR columns), layouts in qk_pack.h, and stores it
 * row-major with row stride NR into `acc`: int32 sums for int8 kernels, fp32 sums (in
 * the same buffer) for fp16 kernels. It knows nothing of zero points, bias or output
 * types: the output stage of its ISA (qk_output.h) turns the tile into the result. */
#ifndef QK_GEMM_H
#define QK_GEMM_H
#include <stddef.h>
#include <stdint.h>
#include "qk_output.h"
#include "qk_pack.h"

/* What a kernel computes: int8 (exact int32 sums), fp16 (fp32 sums of fp16 values) or
 * fp32 (fp32 sums of fp32 products). The float kinds keep float sums in `acc`. */
enum qk_dtype { QK_DTYPE_QS8 = 0, QK_DTYPE_F16 = 1, QK_DTYPE_F32 = 2 };

/* k_groups: groups of KR along K (fp16 kernels: KR = 1, so the steps of K). */
typedef void (*qk_gemm_ukernel_fn)(size_t k_groups, const void *a, const void *b, int32_t *acc);

/* A micro-kernel with the output stage fused in, for tiles of all MR rows and nc columns
 * (nc: NR, or a multiple of 16 below it) of int32 or fp32 output without row sums;
 * bit-identical to gemm + output. */
typedef void (*qk_gemm_fused_fn)(size_t k_groups, const void *a, const void *b, size_t m0, size_t n0, size_t nc,
                                 const qk_out_params *p, void *c, size_t c_stride);

/* Indirect entries (fp32 and int8 convolutions read in place, no packed A): the sums of MR
 * rows whose K = segs * seg_len values are segs runs of seg_len adjacent values (int8: uint8
 * bytes, seg_len a multiple of KR), run s of row i at ptrs[s * MR + i]; B packed as for gemm.
 * The igemm stores its tile as gemm does (acc); the fused one as the fused entry (all MR
 * rows). The same sums as gemm on the rows packed. */
/* p->b_next of the fused indirect fp32 entry: QK_B_NEXT_RATE bytes a k step from there asked
 * into L2 (qk_iconv_block: a quarter of the next fp32 B panel of K x 32 floats per tile, so
 * that the panel's first 4 row tiles fetch all of it as they go) */
#define QK_B_NEXT_RATE 32
typedef void (*qk_igemm_fn)(size_t segs, size_t seg_len, const void *const *ptrs, const void *b, int32_t *acc);
typedef void (*qk_igemm_fused_fn)(size_t segs, size_t seg_len, const void *const *ptrs, const void *b, size_t m0,
                                  size_t n0, size_t nc, const qk_out_params *p, void *c, size_t c_stride);

/* Whether the fused entries serve this output stage (no row sums; the modes they store). */
static inline int qk_out_fusable(const qk_out_params *p) {
    return !p->row_sum && (p->mode == QK_OUT_INT32 || p->mode == QK_OUT_FP32 || p->mode == QK_OUT_F32 ||
                           p->mode == QK_OUT_DQ_F32 || qk_out_is_fixedpoint(p->mode));
}

/* The fused QLinearAdd (qk_output.h, post_b) of the stored rows [m, m + mc) x columns
 * [n, n + nc), in place (kernels/gemm_block.c). */
void qk_gemm_post_tile(const qk_out_params *p, size_t m, size_t n, size_t mc, size_t nc, void *c, size_t c_stride);

/* One block of output: rows [m0, m1) x columns [n0, n1), both starting on a tile edge,
 * with a GEMM kernel of the registry (qk_registry.h). a_packed: the A panels of rows
 * [m0, m1), one after another; b_packed: all B panels (column n in panel n / NR). */
typedef struct qk_ukernel qk_ukernel;
void qk_gemm_block(const qk_ukernel *kern, size_t k, size_t m0, size_t m1,
                   size_t n0, size_t n1, const void *a_packed, const void *b_packed,
                   const qk_out_params *p, void *c, size_t c_stride);
#endif
