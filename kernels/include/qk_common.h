/* qkernels: the contract between micro-kernels, packing and the Cython drivers.
 *
 * A GEMM micro-kernel computes one MR x NR tile of raw int32 dot products from
 * packed A (MR rows) and packed B (NR columns) and stores it, row-major with row
 * stride NR, into `acc`. It knows nothing of zero points, bias or output types:
 * the output stage (one per ISA) turns the tile into the caller's result.
 *
 * Two packed layouts exist; each kernel names the one it reads for A and for B:
 *   QK_PACK_I16: values widened to int16 with the zero point already subtracted,
 *                so the dot product is the exact answer (AVX2 vpmaddwd, NEON vmlal).
 *   QK_PACK_S8:  values kept as int8 (uint8 flipped to int8 by xor 0x80); zero
 *                points are applied afterwards with column and row sums (NEON
 *                dot product, i8mm).
 * Within a B panel (and an int8 A panel), K is split into groups of KR consecutive
 * values; for each group the panel stores NR (MR) lanes of KR values. int16 A panels
 * are instead row-major: MR rows of K values, K padded to KR (row stride
 * k_groups * KR), which makes packing A a vectorised copy. K is padded with zeros.
 */
#ifndef QK_COMMON_H
#define QK_COMMON_H

#include <stddef.h>
#include <stdint.h>

enum qk_isa { QK_ISA_SCALAR = 0, QK_ISA_AVX2, QK_ISA_NEON, QK_ISA_NEONDOT, QK_ISA_I8MM, QK_ISA_COUNT };
enum qk_pack { QK_PACK_I16 = 0, QK_PACK_S8 = 1, QK_PACK_U8 = 2, QK_PACK_F32 = 3, QK_PACK_F16 = 4,
               QK_PACK_F32_ROWS = 5 };
enum qk_out_mode { QK_OUT_INT32 = 0, QK_OUT_FP32 = 1, QK_OUT_FIXEDPOINT = 2, QK_OUT_F16 = 3 };
/* What a kernel computes: int8 (exact int32 sums) or fp16 (fp32 sums of fp16 values). */
enum qk_dtype { QK_DTYPE_QS8 = 0, QK_DTYPE_F16 = 1 };
/* Bytes per packed value of a pack kind. */
static inline size_t qk_pack_elem_size(int pack) {
    return (pack == QK_PACK_F32 || pack == QK_PACK_F32_ROWS) ? 4 : (pack == QK_PACK_I16 || pack == QK_PACK_F16) ? 2 : 1;
}

typedef void (*qk_gemm_ukernel_fn)(size_t k_groups, const void *a, const void *b, int32_t *acc);

/* How the int32 accumulators of one tile become the output. Per-column arrays are
 * indexed by the absolute column, per-row arrays by the absolute row. */
typedef struct {
    int mode;                 /* enum qk_out_mode */
    int out_signed;           /* output int8 (1) or uint8 (0); unused for INT32 */
    int32_t zero_point;       /* output zero point */
    int32_t lo, hi;           /* clamp, in output units (activation fused here);
                                 precondition: lo <= hi, both inside the output type */
    const int32_t *col_add;   /* [N] added to every row: bias and zero-point terms */
    const int32_t *col_zb;    /* [N] or NULL: B zero point times row sum, subtracted */
    const int32_t *row_sum;   /* [M] or NULL: sum of packed A over K (QK_PACK_S8 only) */
    const float *scale;       /* [N] fp32 mode: sa*sb[n]/sy */
    const int32_t *mult;      /* [N] fixed-point mode: Q31 multiplier */
    const int32_t *shift;     /* [N] fixed-point mode: left shift (>0) or right shift (<0) */
    /* QK_OUT_F16 (fp16 kernels: acc holds float sums): out = fp16(min(max(acc + bias, flo), fhi)),
       NaN kept, round half to even */
    const float *bias_f;      /* [N] */
    float flo, fhi;
} qk_out_params;

/* Turn an mr x nr tile (row stride acc_stride) at rows m0.., columns n0.. into output
 * rows of c (row stride c_stride bytes). */
typedef void (*qk_output_fn)(size_t mr, size_t nr, const int32_t *acc, size_t acc_stride,
                             size_t m0, size_t n0, const qk_out_params *p,
                             void *c, size_t c_stride);

/* A micro-kernel with the output stage fused in, for full tiles of int32 or fp32
 * output without row sums; bit-identical to gemm + output. */
typedef void (*qk_gemm_fused_fn)(size_t k_groups, const void *a, const void *b, size_t m0, size_t n0,
                                 const qk_out_params *p, void *c, size_t c_stride);

typedef struct {
    const char *name;         /* what it is: op, dtype, tile, ISA */
    int isa;
    int mr, nr, kr;
    int a_pack, b_pack;       /* enum qk_pack of each operand's panels */
    size_t max_m;             /* used only for M <= max_m (0: any M) */
    int needs_pairs_128;      /* exact only if every stored B pair along K has
                                 |b(k)| + |b(k+1)| <= 128 (vpmaddubsw cannot saturate) */
    qk_gemm_ukernel_fn gemm;
    qk_output_fn output;
    qk_gemm_fused_fn fused;   /* or NULL */
    int dtype;                /* enum qk_dtype (fp16 kernels: acc holds float sums) */
    int needs_fp16_arith;     /* uses ARMv8.2 FP16 arithmetic (CPU feature asimdhp) */
} qk_gemm_kernel;

/* Registry (kernels/registry.c): kernels by id (0..count-1), and the one to use
 * for an ISA and a row count M (-1 if this build has none for the ISA).
 * Mixed packing (A int16 zero-folded, B int8) serves small M, where B's memory
 * traffic dominates: the output stage then subtracts zb * row_sum(A). */
int qk_gemm_kernel_count(void);
const qk_gemm_kernel *qk_gemm_kernel_get(int id);
int qk_gemm_kernel_select(int dtype, int isa, size_t m, int b_pairs_128);
/* fp16 kernels fall back along i8mm -> neondot -> neon: the FP16-arithmetic kernel is
 * registered under neondot (every CPU with dot product so far has FP16 arithmetic, and
 * it is checked at selection) and the plain-NEON one converts to fp32. */
const char *qk_isa_name(int isa);

/* fp16 -> fp32 of a contiguous row (exact: every fp16 value is a float), with F16C or
 * NEON where the CPU has it, whatever ISA path is in use (registry.c). */
typedef void (*qk_f16_row_fn)(const uint16_t *src, float *dst, size_t n);
qk_f16_row_fn qk_f16_row_converter(void);

/* CPU detection (kernels/cpu.c). Bit set of features; see QK_CPU_* below. */
enum {
    QK_CPU_AVX2 = 1 << 0, QK_CPU_FMA = 1 << 1, QK_CPU_F16C = 1 << 2,
    QK_CPU_AVX512F = 1 << 3, QK_CPU_AVX512BW = 1 << 4, QK_CPU_AVX512VNNI = 1 << 5,
    QK_CPU_AVXVNNI = 1 << 6,
    QK_CPU_ASIMD = 1 << 8, QK_CPU_ASIMDDP = 1 << 9, QK_CPU_FPHP = 1 << 10,
    QK_CPU_ASIMDHP = 1 << 11, QK_CPU_I8MM = 1 << 12,
};
uint32_t qk_cpu_features(void);
const char *qk_cpu_arch(void);

/* Packing (kernels/pack.c). Strides are in bytes. int8 kinds read uint8/int8 sources;
 * QK_PACK_F32 and QK_PACK_F16 read fp16 (IEEE binary16 bits) and store k-major panels
 * (kr = 1): MR (NR) values per k step, as float or as fp16 bits, zero-padded.
 * QK_PACK_F32_ROWS (A only) stores MR rows of K floats, row-major (x86 kernels
 * broadcast from row streams; packing is then a plain vector conversion per row). */
void qk_pack_b(int pack, int nr, int kr, size_t k, size_t n,
               const void *b, int b_signed, ptrdiff_t stride_k, ptrdiff_t stride_n,
               const int32_t *zb, void *packed, int32_t *col_sum);
void qk_pack_a(int pack, int mr, int kr, size_t m, size_t k,
               const void *a, int a_signed, ptrdiff_t stride_m, ptrdiff_t stride_k,
               int32_t za, void *packed, int32_t *row_sum);
size_t qk_packed_b_bytes(int pack, int nr, int kr, size_t k, size_t n);
size_t qk_packed_a_bytes(int pack, int mr, int kr, size_t m, size_t k);

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
void qk_im2col_rows(const qk_conv_geom *g, size_t r0, size_t rows, uint8_t *dst);
/* Pack rows [r0, r0 + rows) (at most MR) of the patch matrix into one A panel;
 * scratch holds MR * K * elem bytes. */
void qk_pack_a_conv(int pack, int mr, int kr, const qk_conv_geom *g, size_t r0, size_t rows, int a_signed,
                    int32_t za, uint8_t *scratch, void *packed, int32_t *row_sum);

/* Depthwise convolution (kernels/dwconv.c): g describes the whole input (cg = all C
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
    int dtype;                        /* enum qk_dtype; QK_DTYPE_F16: fp16 input, weights wf */
    const float *wf;                  /* fp16 path: float weights [ky][kx][C] */
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
} qk_dw_params;
/* Fill the prepared fields; zero_pixel and init are caller buffers of C * elem bytes and C int32. */
void qk_dw_prepare(qk_dw_params *d, uint8_t *zero_pixel, int32_t *init);
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
/* Channel blocks of a sum kernel of width w over [c0, ch): block b starts at
 * qk_dw_block(b, w, ch), so that a partial last block becomes the w channels ending at ch
 * (a few channels computed twice, to the same values) and no channel is left to the
 * portable kernel once ch - c0 >= w; the kernel covers [c0, qk_dw_blocks_end(c0, w, ch)). */
static inline size_t qk_dw_blocks_end(size_t c0, size_t w, size_t ch) { return ch - c0 >= w ? ch : c0; }
static inline size_t qk_dw_block(size_t b, size_t w, size_t ch) { return b + w <= ch ? b : ch - w; }
/* The sum kernel of an ISA (the portable one where none is specialised). */
qk_dw_sum_fn qk_dw_sum_for_isa(int dtype, int isa);
/* The general path: sums of one output pixel (n, oy, ox), channels [c_begin, c_end),
 * acc[c * mult + j] (any multiplier, strides and tap count). */
void qk_dw_channels_scalar(const qk_dw_params *d, size_t n, size_t oy, size_t ox, size_t c_begin, size_t c_end,
                           int32_t *acc);
/* Output pixels [p0, p1): sums, then the output stage, QK_DW_PIXELS pixels at a time;
 * acc holds QK_DW_PIXELS * C * mult int32. */
#define QK_DW_PIXELS 8
void qk_dwconv(const qk_dw_params *d, qk_dw_sum_fn sum, qk_output_fn output, size_t p0, size_t p1,
               const qk_out_params *p, void *c, size_t c_stride, int32_t *acc);

/* One block of output: rows [m0, m1) x columns [n0, n1), both starting on a tile edge. */
void qk_gemm_block(const qk_gemm_kernel *kern, size_t k, size_t m0, size_t m1,
                   size_t n0, size_t n1, const void *a_packed, const void *b_packed,
                   const qk_out_params *p, void *c, size_t c_stride);

/* Fixed-point requantization (shared by the scalar stage and tests' reference):
 * the gemmlowp/TFLite scheme, saturating rounding doubling high multiply followed by
 * a rounding (half away from zero) right shift. */
static inline int32_t qk_srdhm(int32_t a, int32_t b) {
    if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
    int64_t ab = (int64_t)a * (int64_t)b;
    int64_t nudge = ab >= 0 ? (1LL << 30) : (1 - (1LL << 30));
    return (int32_t)((ab + nudge) / (1LL << 31));
}
static inline int32_t qk_rdbpot(int32_t x, int exponent) {
    if (exponent <= 0) return x;
    int32_t mask = (int32_t)((1LL << exponent) - 1);
    int32_t remainder = x & mask;
    int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}
static inline int32_t qk_fixedpoint_scale(int32_t acc, int32_t mult, int32_t shift) {
    int64_t x = (int64_t)acc * ((int64_t)1 << (shift > 0 ? shift : 0));
    if (x > INT32_MAX) x = INT32_MAX;
    if (x < INT32_MIN) x = INT32_MIN;
    return qk_rdbpot(qk_srdhm((int32_t)x, mult), shift < 0 ? -shift : 0);
}

#endif
