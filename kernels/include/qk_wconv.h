/* fp32 3x3 convolution of stride 1 by Winograd's minimal filtering F(2x2, 3x3) (Lavin &
 * Gray, 2016): each 2x2 block of output pixels ("tile") comes from its 4x4 input window d
 * and each (output, input) channel's 3x3 weights g as
 *     Y = A^T [ (G g G^T) . (B^T d B) ] A      (. elementwise over the 4x4 positions xi)
 * so the 9 multiply-adds per pixel and channel pair become 16 / 4 = 4 (2.25x fewer): the
 * products are 16 GEMMs, one per position xi, of the tiles' transformed inputs V[xi]
 * (tiles x cg) by the transformed weights U[xi] = (G g G^T)[xi] (cg x n, made once at
 * load). Sizes where it pays (many tiles, weights that stay in the caches) are chosen by
 * the caller (qkernels/_float.py).
 *
 * Per block of tiles a thread transforms the inputs into its scratch (V: per xi, the
 * tiles' rows of cg floats, which are the fp32 kernels' A panels as they are), runs the
 * ISA path's fp32 GEMM kernel over each xi, row panel and column panel (the raw MR x NR
 * tiles into scratch M), then transforms those back into output pixels, adding the bias
 * (and a fused residual) and clamping. AVX2 runs the AVX-512 transforms' emulated build
 * (pairs of ymm) around its 6 x 16 kernel. Floats: U rounded once from float64; V with 3 adds per
 * value; the GEMM's sums in increasing input channel; Y with 4 adds per value (A's
 * sums), then + bias (+ residual), clamped: within (cg + 16) * 2^-23 * Y' of the exact
 * result, Y' the same computation on absolute values (docs/api.md). */
#ifndef QK_WCONV_H
#define QK_WCONV_H
#include <stddef.h>
#include <stdint.h>
#include "qk_conv.h"
#include "qk_gemm.h"

#define QK_WCONV_MR 12   /* tiles per block: whole panels of any kernel of at most 12 rows dividing 12 */
#define QK_WCONV_NR 32   /* the widest column panel (scratch M) */

typedef struct {
    qk_conv_geom g;              /* fp32 NHWC input, channels adjacent (sc 4), kh = kw = 3, stride and dilation 1 */
    size_t n;                    /* output channels, a multiple of 16 */
    size_t tiles_h, tiles_w;     /* tiles per image: ceil(out_h / 2) x ceil(out_w / 2) */
    const float *u;              /* U[xi] packed as the kernel's B (panels of cg x nr), xi = 0..15 */
    size_t u_stride;             /* floats from U[xi] to U[xi + 1] */
    qk_gemm_ukernel_fn gemm;     /* the fp32 kernel (row-major A panels) and its tile */
    size_t mr, nr;
    const float *bias;           /* n floats */
    float lo, hi;
    const float *residual;       /* NULL, or the (pixels, n) floats added before the clamp */
    size_t r_stride;             /* bytes from pixel to pixel of the residual */
    float *c;                    /* the output (pixels, n) */
    size_t c_stride;             /* bytes */
    const float *zero;           /* cg zeros: the taps in the padding */
} qk_wconv;

/* Tiles per block: 12-row panels whose V (16 x tiles x cg floats) stays near 1 MiB (L2). */
static inline size_t qk_wconv_block_tiles(size_t cg) {
    size_t panels = ((size_t)1 << 20) / (16 * QK_WCONV_MR * 4 * (cg ? cg : 1));
    return QK_WCONV_MR * (panels < 1 ? 1 : panels > 8 ? 8 : panels);
}
/* Scratch floats per thread: V and M of one block. */
static inline size_t qk_wconv_scratch_floats(size_t cg) {
    return 16 * qk_wconv_block_tiles(cg) * (cg + QK_WCONV_NR);
}

/* Tiles [t0, t1) (image-major, then tile row, tile column) into the output. NULL from
 * qk_f32_wconv_for_isa: ISA path `isa` has no Winograd transforms. */
typedef void (*qk_f32_wconv_fn)(const qk_wconv *w, size_t t0, size_t t1, float *scratch);
qk_f32_wconv_fn qk_f32_wconv_for_isa(int isa);
/* w->gemm, mr and nr from kern where it is an fp32 GEMM kernel of row-major A panels, MR
 * dividing 12 and NR 16 or 32 (1), else 0. */
int qk_wconv_set_kernel(qk_wconv *w, const qk_ukernel *kern);
#endif
