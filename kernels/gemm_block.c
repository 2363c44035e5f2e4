/* The tile loop: runs a GEMM micro-kernel over the tiles of one block and hands each
 * tile to its output stage (or its fused entry, for full tiles where it has one).
 * Portable C, compiled without ISA flags. */
#include "qk_quant.h"
#include "qk_registry.h"

#define QK_MAX_TILE (12 * 32)   /* the largest MR x NR in the registry */

static inline size_t round_up(size_t x, size_t q) { return (x + q - 1) / q * q; }

/* For a last panel of mc < MR rows: the kernel of fewest rows >= mc of the same family
 * (ISA, dtype, packing, NR, the same K chains, so the same bits per element), or kern.
 * Row-major A panels (float QK_PACK_F32_ROWS, uint8 QK_PACK_U8) are MR rows of K values one
 * after another, so a narrower kernel reads the first rows of the same panel: a 49-row GEMM's last row
 * no longer costs a 12-row tile (nor did a 16-row fp32 one's last 4 rows: the test once
 * missed the fp32 kernels' QK_PACK_SRC_F32 bit, and they paid 24 rows for 16). */
static const qk_ukernel *narrowest(const qk_ukernel *kern, size_t mc) {
    /* the last answer of this thread kept (the registry never changes): the scan was 8 % of
       a 16-token attention's batched products, one per head */
    static _Thread_local const qk_ukernel *last_kern, *last_best;
    static _Thread_local size_t last_mc;
    if (kern == last_kern && mc == last_mc) return last_best;
    const qk_ukernel *best = kern;
    const int pack = kern->a_pack & ~QK_PACK_SRC_F32;   /* fp16 and fp32 sources */
    last_kern = kern, last_mc = mc, last_best = kern;
    if (pack != QK_PACK_F32_ROWS && pack != QK_PACK_U8) return kern;
    for (int i = 0, n = qk_ukernel_count(); i < n; i++) {
        const qk_ukernel *u = qk_ukernel_get(i);
        if (u->kind == kern->kind && u->isa == kern->isa && u->dtype == kern->dtype && u->a_pack == kern->a_pack &&
            u->b_pack == kern->b_pack && u->nr == kern->nr && u->kr == kern->kr && u->k_chains == kern->k_chains &&
            u->needs_pairs_128 == kern->needs_pairs_128 && u->needs_fp16_arith == kern->needs_fp16_arith &&
            (size_t)u->mr >= mc && u->mr < best->mr)
            best = u;
    }
    last_best = best;
    return best;
}

/* The fused QLinearAdd of a stored tile (qk_output.h, post_b), row by row, in place; a
 * strip of whole rows lying contiguous in both tensors in one call (a 24-channel
 * convolution's rows one by one spent twice its GEMM in the calls). */
void qk_gemm_post_tile(const qk_out_params *p, size_t m, size_t n, size_t mc, size_t nc, void *c, size_t c_stride) {
    if (n == 0 && nc == c_stride && p->post_stride == c_stride) {
        char *rows = (char *)c + m * c_stride;
        p->post_fn(mc * nc, QK_BINARY_ADD, p->out_signed, rows, p->post_s1, p->post_z1,
                   (const char *)p->post_b + m * p->post_stride, p->post_sb, p->post_zb, p->post_sy, p->post_zy, rows);
        return;
    }
    for (size_t i = 0; i < mc; i++) {
        char *row = (char *)c + (m + i) * c_stride + n;
        p->post_fn(nc, QK_BINARY_ADD, p->out_signed, row, p->post_s1, p->post_z1,
                   (const char *)p->post_b + (m + i) * p->post_stride + n, p->post_sb, p->post_zb, p->post_sy,
                   p->post_zy, row);
    }
}

void qk_gemm_block(const qk_ukernel *kern, size_t k, size_t m0, size_t m1,
                   size_t n0, size_t n1, const void *a_packed, const void *b_packed,
                   const qk_out_params *p, void *c, size_t c_stride) {
    const size_t mr = kern->mr, nr = kern->nr, kr = kern->kr;
    const size_t k_groups = round_up(k ? k : 1, kr) / kr;
    const size_t a_panel = k_groups * kr * mr * qk_pack_elem_size(kern->a_pack);
    const size_t b_panel = k_groups * kr * nr * qk_pack_elem_size(kern->b_pack);
    int32_t acc[QK_MAX_TILE];
    const int fuse = kern->fused && qk_out_fusable(p);
    /* the fused QLinearAdd: by the fused entries that do it in their stage (the tiles they
       store), else over a strip of whole rows once, after its tiles, else tile by tile */
    const int post_in_fused = p->post_b && fuse && qk_gemm_post_done(kern, p);
    const int post_rows = p->post_b && !post_in_fused && n0 == 0 && n1 == c_stride && p->post_stride == c_stride;
    /* A panel outer: it stays in L1 while the block's B panels (L1/L2) pass by. */
    for (size_t m = m0; m < m1; m += mr) {
        const char *ap = (const char *)a_packed + ((m - m0) / mr) * a_panel;
        size_t mc = m1 - m < mr ? m1 - m : mr;
        const qk_ukernel *u = mc < mr ? narrowest(kern, mc) : kern;
        const int fuse_u = fuse && u->fused && (size_t)u->mr == mc;
        const int post_u = p->post_b && !post_rows && !(fuse_u && post_in_fused && qk_gemm_post_done(u, p));
        size_t n = n0;
        if (fuse_u && u->fused_panels && !p->dq_rows && n1 - n0 >= nr) {   /* a GEMV's whole panels at once */
            const size_t nw = (n1 - n0) / nr * nr;
            u->fused_panels(k_groups, ap, (const char *)b_packed + (n0 / nr) * b_panel, m, n0, nw, p, c, c_stride);
            if (post_u) qk_gemm_post_tile(p, m, n0, mc, nw, c, c_stride);
            n += nw;
        }
        for (; n < n1; n += nr) {
            const char *bp = (const char *)b_packed + (n / nr) * b_panel;
            size_t nc = n1 - n < nr ? n1 - n : nr;
            if (p->dq_rows) {               /* per-row dequantization of the tile in L1 */
                u->gemm(k_groups, ap, bp, acc);
                p->dq_rows(mc, nc, acc, nr, p->col_add + n, p->dq_sa + m, p->dq_za + m, 1, p->dq_cb + n,
                           p->scale + n, p->bias_f ? p->bias_f + n : NULL,
                           (float *)(void *)((char *)c + m * c_stride) + n, c_stride);
            } else if (fuse_u && nc <= 16 && u->fused16) {   /* half a panel (or less): half the FMAs */
                u->fused16(k_groups, ap, bp, m, n, nc, p, c, c_stride);
            } else if (fuse_u && (nc % 16 == 0 || u->dtype == QK_DTYPE_F32)) {   /* fp32: any last panel (masked) */
                u->fused(k_groups, ap, bp, m, n, nc, p, c, c_stride);
            } else {
                u->gemm(k_groups, ap, bp, acc);
                u->output(mc, nc, acc, nr, m, n, p, c, c_stride);
                if (p->post_b && !post_rows) qk_gemm_post_tile(p, m, n, mc, nc, c, c_stride);
                continue;
            }
            if (post_u) qk_gemm_post_tile(p, m, n, mc, nc, c, c_stride);
        }
        if (post_rows)
            qk_gemm_post_tile(p, m, 0, mc, n1, c, c_stride);     /* the strip's whole rows at once */
    }
}
