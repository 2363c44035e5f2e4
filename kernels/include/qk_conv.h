/* Convolution: the input geometry, the implicit im2col that feeds the GEMM, and the
 * direct depthwise convolution with its per-ISA sum kernels. */
#ifndef QK_CONV_H
#define QK_CONV_H
#include <stddef.h>
#include <stdint.h>
#include "qk_gemm.h"

/* Convolution as GEMM (kernels/im2col.c): the input of one group, NHWC with byte
 * strides, read as the virtual patch matrix (rows: output pixels; K = kh*kw*cg). */
typedef struct {
    const uint8_t *x;                 /* first channel of the group */
    ptrdiff_t sn, sh, sw, sc;         /* byte strides of N, H, W, C */
    size_t in_h, in_w, out_h, out_w, kh, kw, cg;
    size_t stride_y, stride_x, dil_y, dil_x;
    ptrdiff_t pad_top, pad_left;
    uint8_t pad;                      /* the input zero point, as a byte (fp16: 0, i.e. +0.0) */
    size_t elem;                      /* bytes per value: 1 (int8) or 2 (fp16) */
} qk_conv_geom;
/* Rows [r0, r0 + rows) of the patch matrix, dst_stride bytes apart, every byte xor flip
 * (padding too). */
void qk_im2col_rows(const qk_conv_geom *g, size_t r0, size_t rows, uint8_t *dst, size_t dst_stride, uint8_t flip);
/* Pack rows [r0, r0 + rows) (at most MR) of the patch matrix into one A panel;
 * scratch holds MR * K * elem bytes; isa: the kernel's ISA path (its copies' width). */
void qk_pack_a_conv(int pack, int mr, int kr, const qk_conv_geom *g, size_t r0, size_t rows, int a_signed,
                    int32_t za, uint8_t *scratch, void *packed, int32_t *row_sum, int isa);

/* Indirect convolution (kernels/im2col.c), fp32 and uint8: the GEMM kernel's indirect
 * entries (qk_gemm.h) read the patch rows in place through a table of pointers, no panel
 * packed. A row's K values are segments of seg_len adjacent values: a whole kernel row
 * (kw * cg) where pixels and channels are adjacent and x is not dilated, else a tap (cg). */
/* seg_len for this geometry and kernel (0: the indirect path does not serve them). The
 * caller sends int8 inputs (flipped when packed) and GEMMs with row sums the packed way. */
size_t qk_iconv_seg_len(const qk_ukernel *kern, const qk_conv_geom *g);
/* Columns per block of B that qk_iconv_block keeps in L2. */
size_t qk_iconv_col_block(const qk_ukernel *kern, const qk_conv_geom *g);
/* Output rows [m0, m1) (m0 on a panel edge) x all n columns: per MR-row panel, its table
 * (MR * K / seg_len pointers in ptrs) points into the input, at `zero` (seg_len values of
 * the pad byte) for a segment in the top or bottom padding, or at a copy in scratch (MR * K
 * values) of a kernel row clipped by the side padding; then the kernel over every column
 * panel, and the fused QLinearAdd (post_b) of its rows. A last partial panel is packed
 * into its scratch for the narrowest kernel of the family. One such slot of ptrs and
 * scratch, or one per panel where n exceeds qk_iconv_col_block. */
void qk_iconv_block(const qk_ukernel *kern, const qk_conv_geom *g, size_t seg_len, size_t m0, size_t m1, size_t n,
                    const void *b_packed, const qk_out_params *p, void *c, size_t c_stride, const void **ptrs,
                    uint8_t *scratch, const void *zero);

/* Depthwise convolution (kernels/dwconv.c; sum kernels in kernels/<isa>/): g describes the whole input (cg = all C
 * channels); w holds int16 weights minus their zero points, [ky][kx][C * mult].
 *
 * The fast path (channel multiplier 1, contiguous channels, at most QK_DW_MAX_TAPS
 * taps) gives every output pixel an indirection row of tap pointers (QNNPACK): into the
 * input, or, for taps in the padding, to a pixel of zero-point bytes. The ISA's sum
 * kernel then adds raw inputs times weights onto init[c] = -za * sum_t w[t][c], which
 * makes padded taps exact zeros with no branch; strides and dilations live only in the
 * pointers, so one kernel per tap count serves them all. */
#define QK_DW_MAX_TAPS 64
typedef struct {
    qk_conv_geom g;
    size_t mult;                      /* channel multiplier: output channel c * mult + j */
    const int16_t *w;
    int32_t za;
    int a_signed;
    int dtype;                        /* enum qk_dtype; QK_DTYPE_F16 / F32: fp16 / fp32 input, weights wf */
    const float *wf;                  /* float paths: float weights [ky][kx][C] */
    /* Filled by qk_dw_prepare: */
    size_t taps;                      /* kh * kw when the fast path serves, else 0 */
    ptrdiff_t tap_offset[QK_DW_MAX_TAPS];   /* byte offsets of the taps from a window origin */
    size_t oy_lo, oy_hi, ox_lo, ox_hi;      /* output pixels whose window is inside the input */
    const uint8_t *zero_pixel;        /* C values of the input zero point (fp16: +0.0) */
    const int32_t *init;              /* [C]; fp16 path: float bits, filled by the caller */
    /* Set by the caller: the output, for sum kernels that store it themselves (NULL: never) */
    const qk_out_params *out;
    void *c;
    size_t c_stride;
    /* Set by qk_dw_pack_vnni: the int8 weights and output terms in the 4-tap layout of the
       AVX-512 VNNI kernel, or NULL (that kernel then takes the int16 path) */
    const uint8_t *vnni;
} qk_dw_params;
/* Fill the prepared fields; zero_pixel and init are caller buffers of C * elem bytes and C int32. */
void qk_dw_prepare(qk_dw_params *d, uint8_t *zero_pixel, int32_t *init);
/* The 4-tap layout (qs8_dwconv_avx512vnni.c): per block of 64 channels, per group of 4
 * taps, 4 vectors of 64 bytes (vector k, 128-bit lane L, dword j: channel 16L + 4k + j,
 * its byte t tap 4g + t; 0 past C or the taps), then the channels' int32 start sums
 * (init + col_add, and - 128 * sum_t w for s8 inputs, which the kernel flips to u8) and
 * float32 scales in the same order. Only for the fp32 output stage with no row or
 * zero-point terms and weights inside int8 (vpdpbusd's operand): qk_dw_vnni_size is 0
 * otherwise. Call after d->out is set; buf holds qk_dw_vnni_size bytes. */
size_t qk_dw_vnni_size(const qk_dw_params *d);
void qk_dw_pack_vnni(qk_dw_params *d, void *buf);
/* Sum kernel: for count pixels and channels from c0, acc[i * acc_stride + c] =
 * init[c] + sum_t x_t[c] * w[t][c], where tap t of pixel i is at
 * ptrs[i * ptr_stride + t] + i * step (an interior run shares one row of pointers,
 * ptr_stride 0, and steps through the input; border pixels have a row each, step 0).
 * It covers whole blocks of its width and returns the end of what it covered (<= C);
 * the portable kernel covers everything. A kernel may also requantize and store the
 * output of those channels (pixel i is output row m0 + i) when d->out is set: it then
 * sets *stored to the end of what it stored, else to c0. */
typedef size_t (*qk_dw_sum_fn)(const qk_dw_params *d, size_t count, const uint8_t *const *ptrs, size_t ptr_stride,
                               ptrdiff_t step, size_t c0, int32_t *acc, size_t acc_stride, size_t m0, size_t *stored);
size_t qk_dw_sum_scalar(const qk_dw_params *d, size_t count, const uint8_t *const *ptrs, size_t ptr_stride,
                        ptrdiff_t step, size_t c0, int32_t *acc, size_t acc_stride, size_t m0, size_t *stored);
size_t qk_dw_sum_f16_scalar(const qk_dw_params *d, size_t count, const uint8_t *const *ptrs, size_t ptr_stride,
                            ptrdiff_t step, size_t c0, int32_t *acc, size_t acc_stride, size_t m0, size_t *stored);
size_t qk_dw_sum_f32_scalar(const qk_dw_params *d, size_t count, const uint8_t *const *ptrs, size_t ptr_stride,
                            ptrdiff_t step, size_t c0, int32_t *acc, size_t acc_stride, size_t m0, size_t *stored);
/* Channel blocks of a sum kernel of width w over [c0, ch): block b starts at
 * qk_dw_block(b, w, ch), so that a partial last block becomes the w channels ending at ch
 * (a few channels computed twice, to the same values) and no channel is left to the
 * portable kernel once ch - c0 >= w; the kernel covers [c0, qk_dw_blocks_end(c0, w, ch)). */
static inline size_t qk_dw_blocks_end(size_t c0, size_t w, size_t ch) { return ch - c0 >= w ? ch : c0; }
static inline size_t qk_dw_block(size_t b, size_t w, size_t ch) { return b + w <= ch ? b : ch - w; }
/* The general path: sums of one output pixel (n, oy, ox), channels [c_begin, c_end),
 * acc[c * mult + j] (any multiplier, strides and tap count). */
void qk_dw_channels_scalar(const qk_dw_params *d, size_t n, size_t oy, size_t ox, size_t c_begin, size_t c_end,
                           int32_t *acc);
/* Output pixels [p0, p1): sums, then the output stage, QK_DW_PIXELS pixels at a time;
 * acc holds QK_DW_PIXELS * C * mult int32. */
#define QK_DW_PIXELS 8
void qk_dwconv(const qk_dw_params *d, qk_dw_sum_fn sum, qk_output_fn output, size_t p0, size_t p1,
               const qk_out_params *p, void *c, size_t c_stride, int32_t *acc);
#endif
