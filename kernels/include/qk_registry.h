/* The registry (kernels/registry.c): one table of every micro-kernel this build compiled,
 * of every kind, each described by its fields; the drivers pick from it at run time.
 * x86-64 builds hold no NEON kernels and vice versa. */
#ifndef QK_REGISTRY_H
#define QK_REGISTRY_H
#include <stddef.h>
#include <stdint.h>
#include "qk_conv.h"
#include "qk_cpu.h"
#include "qk_gemm.h"
#include "qk_quant.h"

enum qk_ukernel_kind {
    QK_KIND_GEMM = 0,        /* gemm (+ output, fused): one MR x NR tile (qk_gemm.h) */
    QK_KIND_DW_SUM = 1,      /* dw_sum: depthwise sums over channel blocks (qk_conv.h) */
    QK_KIND_QUANTIZE = 2,    /* quantize: float32 row -> int8/uint8 (qk_quant.h) */
    QK_KIND_DEQUANTIZE = 3,  /* dequantize: int8/uint8 row -> float32 (qk_quant.h) */
};

struct qk_ukernel {
    const char *name;         /* what it is: op, dtype, tile and K-group, ISA (its file's name) */
    int kind;                 /* enum qk_ukernel_kind */
    int isa;                  /* enum qk_isa: the path it belongs to */
    int dtype;                /* enum qk_dtype (fp16 GEMM kernels: acc holds float sums) */
    /* QK_KIND_GEMM */
    int mr, nr, kr;
    int a_pack, b_pack;       /* enum qk_pack of each operand's panels */
    size_t max_m;             /* used only for M <= max_m (0: any M) */
    int needs_pairs_128;      /* exact only if every stored B pair along K has
                                 |b(k)| + |b(k+1)| <= 128 (vpmaddubsw cannot saturate) */
    int needs_fp16_arith;     /* uses ARMv8.2 FP16 arithmetic (CPU feature asimdhp) */
    int k_chains;             /* float sums split over this many chains along K (0: one); kernels
                                 of one packing with equal chains give the same bits per element */
    qk_gemm_ukernel_fn gemm;
    qk_output_fn output;      /* the output stage of its ISA */
    qk_gemm_fused_fn fused;   /* or NULL */
    /* QK_KIND_DW_SUM: covers every channel from c0 (whole blocks, the last shifted to end at C)
       once at least `width` of them are left, none otherwise */
    qk_dw_sum_fn dw_sum;
    int width;
    /* QK_KIND_QUANTIZE, QK_KIND_DEQUANTIZE */
    qk_quantize_row_fn quantize;
    qk_dequantize_row_fn dequantize;
    /* QK_KIND_GEMM, fp32 and int8: the indirect entries (qk_gemm.h), or NULL */
    qk_igemm_fn igemm;
    qk_igemm_fused_fn igemm_fused;
    /* fp32, NR 32: the fused entries for a tile's first 16 columns only (a last panel of 16), or NULL */
    qk_gemm_fused_fn fused16;
    qk_igemm_fused_fn igemm_fused16;
    /* int8 GEMV: the fused entry over a row's nc / NR whole panels at once (nc a multiple
       of NR; the panels one after another), or NULL */
    qk_gemm_fused_fn fused_panels;
    /* int8: its fused entries (fused, fused_panels, igemm_fused) also apply a fused QLinearAdd
       (qk_out_params.post_b) in the QK_OUT_FP32 mode, before storing; the drivers then leave
       those tiles alone (qk_gemm_post_done) */
    int fused_post;
};

/* Whether kern's fused entries applied p's fused QLinearAdd to the tiles they stored. */
static inline int qk_gemm_post_done(const qk_ukernel *kern, const qk_out_params *p) {
    return kern->fused_post && p->mode == QK_OUT_FP32;
}

/* Every kernel by id, 0 .. count - 1. */
int qk_ukernel_count(void);
const qk_ukernel *qk_ukernel_get(int id);
/* The GEMM kernel an ISA path uses for M rows (-1: none in this build): the first whose
 * max_m admits M and whose condition on the weights holds, so the table lists small-M and
 * weight-specific kernels before the general one. Mixed packing (A int16 zero-folded,
 * B int8) serves small M, where B's memory traffic dominates: the output stage then
 * subtracts zb * row_sum(A). An int8 kernel is never borrowed from another path (an ISA
 * path without one is not available); fp16 and the other kinds fall back to the nearest
 * lesser path that has one (i8mm -> neondot -> neon -> scalar;
 * avx512vnni, avxvnni and their emulations -> avx2 -> scalar): the
 * FP16-arithmetic kernel is registered under neondot (every CPU with dot product so far
 * has FP16 arithmetic, and it is checked at selection), the plain-NEON one converts. */
int qk_gemm_kernel_select(int dtype, int isa, size_t m, int b_pairs_128);
/* The kernel of another kind (not GEMM) an ISA path uses; never NULL (scalar ones exist). */
const qk_ukernel *qk_ukernel_for_isa(int kind, int dtype, int isa);
#endif
