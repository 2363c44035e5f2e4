/* The tile loop: runs a GEMM micro-kernel over the tiles of one block and hands each
 * tile to its output stage (or its fused entry, for full tiles where it has one).
 * Portable C, compiled without ISA flags. */
#include "qk_registry.h"

#define QK_MAX_TILE (12 * 32)   /* the largest MR x NR in the registry */

static inline size_t round_up(size_t x, size_t q) { return (x + q - 1) / q * q; }

void qk_gemm_block(const qk_ukernel *kern, size_t k, size_t m0, size_t m1,
                   size_t n0, size_t n1, const void *a_packed, const void *b_packed,
                   const qk_out_params *p, void *c, size_t c_stride) {
    const size_t mr = kern->mr, nr = kern->nr, kr = kern->kr;
    const size_t k_groups = round_up(k ? k : 1, kr) / kr;
    const size_t a_panel = k_groups * kr * mr * qk_pack_elem_size(kern->a_pack);
    const size_t b_panel = k_groups * kr * nr * qk_pack_elem_size(kern->b_pack);
    int32_t acc[QK_MAX_TILE];
    const int fuse = kern->fused && !p->row_sum &&
                     (p->mode == QK_OUT_INT32 || p->mode == QK_OUT_FP32 || p->mode == QK_OUT_F32);
    /* A panel outer: it stays in L1 while the block's B panels (L1/L2) pass by. */
    for (size_t m = m0; m < m1; m += mr) {
        const char *ap = (const char *)a_packed + ((m - m0) / mr) * a_panel;
        size_t mc = m1 - m < mr ? m1 - m : mr;
        for (size_t n = n0; n < n1; n += nr) {
            const char *bp = (const char *)b_packed + (n / nr) * b_panel;
            size_t nc = n1 - n < nr ? n1 - n : nr;
            if (fuse && mc == mr && nc % 16 == 0) {   /* a last panel's 16-column strips too */
                kern->fused(k_groups, ap, bp, m, n, nc, p, c, c_stride);
                continue;
            }
            kern->gemm(k_groups, ap, bp, acc);
            kern->output(mc, nc, acc, nr, m, n, p, c, c_stride);
        }
    }
}
