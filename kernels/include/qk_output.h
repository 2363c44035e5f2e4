/* The output stage: what turns a tile of int32 sums (fp32 sums for fp16 kernels) into
 * the caller's output, one stage per ISA; and the stage of one element, shared by the
 * scalar stage and the tails of the vector stages, so every ISA rounds exactly alike. */
#ifndef QK_OUTPUT_H
#define QK_OUTPUT_H
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include "qk_f16.h"
#include "qk_fixedpoint.h"

/* QK_OUT_FIXEDPOINT_UP: fixed point whose final rounding shift rounds ties upward (LiteRT's
   int8 convolutions on x86: ruy's rounding) instead of away from zero (gemmlowp's). */
/* QK_OUT_DQ_F32: int8 sums dequantized to float32, out = float32(v) * scale[n] (+ bias_f[n]
   when bias_f is not NULL), v the int32 sum with the column and row terms: dynamic
   quantization's output (qk_dynquant.h), each step one float32 rounding. */
enum qk_out_mode { QK_OUT_INT32 = 0, QK_OUT_FP32 = 1, QK_OUT_FIXEDPOINT = 2, QK_OUT_F16 = 3, QK_OUT_F32 = 4,
                   QK_OUT_FIXEDPOINT_UP = 5, QK_OUT_DQ_F32 = 6 };

static inline int qk_out_is_fixedpoint(int mode) { return mode == QK_OUT_FIXEDPOINT || mode == QK_OUT_FIXEDPOINT_UP; }

/* How the sums of one tile become the output. Per-column arrays are indexed by the
 * absolute column, per-row arrays by the absolute row. */
typedef struct {
    int mode;                 /* enum qk_out_mode */
    int out_signed;           /* output int8 (1) or uint8 (0); unused for INT32 */
    int32_t zero_point;       /* output zero point */
    int32_t lo, hi;           /* clamp, in output units (activation fused here);
                                 precondition: lo <= hi, both inside the output type */
    const int32_t *col_add;   /* [N] added to every row: bias and zero-point terms */
    const int32_t *col_zb;    /* [N] or NULL: B zero point times row sum, subtracted */
    const int32_t *row_sum;   /* [M] or NULL: sum of packed A over K (QK_PACK_S8, QK_PACK_U8) */
    const float *scale;       /* [N] fp32 mode: sa*sb[n]/sy */
    const int32_t *mult;      /* [N] fixed-point mode: Q31 multiplier */
    const int32_t *shift;     /* [N] fixed-point mode: left shift (>0) or right shift (<0) */
    /* QK_OUT_F16 (fp16 kernels: acc holds float sums): out = fp16(min(max(acc + bias, flo), fhi)),
       NaN kept, round half to even; QK_OUT_F32 (fp32 kernels): the same in float32, no rounding */
    const float *bias_f;      /* [N] */
    float flo, fhi;
    /* QK_OUT_F32 only: NULL, or a residual added after the bias, before the clamp (a fused
       Add): row m at (const char *)res_f + m * res_stride, column n contiguous */
    const float *res_f;
    size_t res_stride;
    /* QK_OUT_F32 only, after the clamp: 0, or QK_ACT_HSWISH_DIV, PaddlePaddle's hard swish
       as its exports spell it (Add, Clip, Mul, Div): v = (v * min(max(v + add, lo), hi)) / div */
    int act;
    float act_add, act_lo, act_hi, act_div;
    /* QK_ACT_ELT (QK_OUT_F32 and QK_OUT_F16, after the clamp): act_fn(act_op, 0, 0, n, row, row)
       over each row's float32 values, an elementwise op of kernels/eltwise.c (the unfused
       op's own loop: the same floats); fp16 rounds once after it */
    void (*act_fn)(int op, float p0, float p1, size_t n, const float *x, float *y);
    int act_op;
    /* int8/uint8 modes (GEMM tiles, kernels/gemm_block.c): NULL, or a fused com.microsoft
       QLinearAdd after each stored tile: the tile (this GEMM's quantized result, read as
       scale post_s1 / zero point post_z1) plus an int8/uint8 tensor of the output's layout
       (row m at (const char *)post_b + m * post_stride, columns contiguous, post_sb /
       post_zb), quantized by post_sy / post_zy and written in place by post_fn (the
       QLinearAdd loop of kernels/qbinary.c, so its bits): a quantized CNN's residual Add
       while the tile is in cache. */
    const void *post_b;
    size_t post_stride;
    float post_s1, post_sb, post_sy;
    int32_t post_z1, post_zb, post_zy;
    void (*post_fn)(size_t n, int op, int is_signed, const void *a, float sa, int32_t za, const void *b, float sb,
                    int32_t zb, float sy, int32_t zy, void *y);
    /* QK_OUT_DQ_F32 with a scale and zero point per row (dynamic quantization per row),
       no row sums: NULL, or the dequantizing pass of qk_dynquant.h (qk_dq_rows_fn) that
       kernels/gemm_block.c runs on each tile's sums while they are in L1 (col_add added,
       scale the weights' sw, bias_f the bias), with these rows' dq_sa / dq_za and
       columns' dq_cb (no separate pass over an M x N int32 matrix) */
    void (*dq_rows)(size_t m, size_t n, const int32_t *acc, size_t acc_stride, const int32_t *add, const float *sa,
                    const int32_t *za, int per_row, const int32_t *cb, const float *sw, const float *bias, float *y,
                    size_t y_stride);
    const float *dq_sa;
    const int32_t *dq_za, *dq_cb;
    /* fp32 indirect tiles (qk_iconv_block sets it per tile; others never read it): NULL, or
       where the tile asks L2 for QK_B_NEXT_RATE bytes of B a k step (the next column panel) */
    const void *b_next;
} qk_out_params;

enum { QK_ACT_NONE = 0, QK_ACT_HSWISH_DIV = 1, QK_ACT_ELT = 2 };

/* Turn an mr x nr tile (row stride acc_stride) at rows m0.., columns n0.. into output
 * rows of c (row stride c_stride bytes). */
typedef void (*qk_output_fn)(size_t mr, size_t nr, const int32_t *acc, size_t acc_stride,
                             size_t m0, size_t n0, const qk_out_params *p,
                             void *c, size_t c_stride);

/* The float32 output stage for one value: bias added, clamp keeping NaN (fp32 kernels). */
static inline float qk_f32_out(float acc, float bias, float lo, float hi) {
    float v = acc + bias;
    v = v < lo ? lo : v;   /* comparisons with NaN are false: NaN passes through */
    return v > hi ? hi : v;
}

/* The same with a residual r added after the bias (two roundings, as the unfused Add). */
static inline float qk_f32_out_res(float acc, float bias, float r, float lo, float hi) {
    float v = (acc + bias) + r;
    v = v < lo ? lo : v;
    return v > hi ? hi : v;
}

/* The activation after the clamp (QK_OUT_F32), each step one float32 operation in the
   order of the nodes it replaces; NaN propagates as through numpy's maximum/minimum. */
static inline float qk_f32_act(float v, const qk_out_params *p) {
    if (p->act != QK_ACT_HSWISH_DIV) return v;
    float t = v + p->act_add;
    t = (t != t || t >= p->act_lo) ? t : p->act_lo;   /* ties keep t: numpy's maximum(t, lo), and vmaxps(lo, t) */
    t = (t != t || t <= p->act_hi) ? t : p->act_hi;
    return (v * t) / p->act_div;
}

/* The fp16 stage with an activation (QK_ACT_ELT): per row, the float32 stage's values
   (bias, clamp), act_fn over them, one rounding to fp16 (so every ISA stores the same bits). */
static inline void qk_f16_out_act(size_t mr, size_t nr, const float *f, size_t acc_stride, size_t m0, size_t n0,
                                  const qk_out_params *p, void *c, size_t c_stride) {
    float buf[64];
    for (size_t i = 0; i < mr; i++) {
        uint16_t *row = (uint16_t *)((char *)c + (m0 + i) * c_stride) + n0;
        for (size_t j0 = 0; j0 < nr; j0 += 64) {
            const size_t k = nr - j0 < 64 ? nr - j0 : 64;
            for (size_t j = 0; j < k; j++) buf[j] = qk_f32_out(f[i * acc_stride + j0 + j], p->bias_f[n0 + j0 + j], p->flo, p->fhi);
            p->act_fn(p->act_op, 0.0f, 0.0f, k, buf, buf);
            for (size_t j = 0; j < k; j++) row[j0 + j] = qk_f32_to_f16(buf[j]);
        }
    }
}

/* The residual row of output row m (QK_OUT_F32), from column n0; NULL without one. */
static inline const float *qk_f32_res_row(const qk_out_params *p, size_t m, size_t n0) {
    return p->res_f ? (const float *)(const void *)((const char *)p->res_f + m * p->res_stride) + n0 : NULL;
}

/* acc plus bias and zero-point terms, wrapping like int32 arithmetic. */
static inline int32_t qk_out_acc(int32_t acc, size_t m, size_t n, const qk_out_params *p) {
    uint32_t v = (uint32_t)acc + (uint32_t)p->col_add[n];
    if (p->row_sum) v -= (uint32_t)p->col_zb[n] * (uint32_t)p->row_sum[m];
    return (int32_t)v;
}

/* Requantize: fp32 (ONNX QLinearMatMul: float(acc) * scale, clamp, round half to even)
 * or fixed point; returns the clamped output value. */
static inline int32_t qk_out_requant(int32_t v, size_t n, const qk_out_params *p) {
    if (p->mode == QK_OUT_FP32) {
        float f = (float)v * p->scale[n];
        float lo = (float)(p->lo - p->zero_point), hi = (float)(p->hi - p->zero_point);
        f = f < lo ? lo : f;
        f = f > hi ? hi : f;
        return (int32_t)nearbyintf(f) + p->zero_point;
    }
    int32_t r = qk_fixedpoint_scale_r(v, p->mult[n], p->shift[n], p->mode == QK_OUT_FIXEDPOINT_UP);
    int64_t y = (int64_t)r + p->zero_point;
    return (int32_t)(y < p->lo ? p->lo : (y > p->hi ? p->hi : y));
}

static inline void qk_out_store(void *row, size_t n, int32_t v, const qk_out_params *p) {
    if (p->mode == QK_OUT_INT32) ((int32_t *)row)[n] = v;
    else if (p->out_signed) ((int8_t *)row)[n] = (int8_t)v;
    else ((uint8_t *)row)[n] = (uint8_t)v;
}

static inline size_t qk_out_elem_size(const qk_out_params *p) {
    return p->mode == QK_OUT_INT32 || p->mode == QK_OUT_DQ_F32 ? 4 : 1;
}

/* QK_OUT_DQ_F32 of one value (v: the int32 sum with its column and row terms). */
static inline float qk_out_dq(int32_t v, size_t n, const qk_out_params *p) {
    const float f = (float)v * p->scale[n];
    return p->bias_f ? f + p->bias_f[n] : f;
}

/* Elements [j0, nr) of one row, the scalar way. */
static inline void qk_out_row_tail(size_t j0, size_t nr, const int32_t *acc, size_t m, size_t n0,
                                   const qk_out_params *p, void *row) {
    for (size_t j = j0; j < nr; j++) {
        int32_t v = qk_out_acc(acc[j], m, n0 + j, p);
        if (p->mode == QK_OUT_DQ_F32) {
            ((float *)row)[j] = qk_out_dq(v, n0 + j, p);
            continue;
        }
        if (p->mode != QK_OUT_INT32) v = qk_out_requant(v, n0 + j, p);
        qk_out_store(row, j, v, p);
    }
}
#endif
