/* Output stage, NEON (armv8-a): 8 then 4 columns at a time, the rest scalar;
 * fp32 and fixed-point requantization bit-identical to the scalar stage
 * (qk_output.h), left shifts included. Shared by the neon, neondot and i8mm GEMM
 * kernels, so it also applies the row-sum term of int8 (QK_PACK_S8) panels. */
#include <string.h>
#include <arm_neon.h>
#include "qk_output.h"

/* Per-column terms of 4 columns, loaded once per tile (column blocks outer, rows inner). */
typedef struct {
    int32x4_t add, zb, mult, lshift, rshift;
    float32x4_t scale;
} qk_cols4;

/* Tile-wide terms, copied out of p: stores through the output pointer may alias p. */
typedef struct {
    int mode;
    int32x4_t zp, lo_zp, hi_zp;
    float32x4_t flo, fhi;
} qk_consts;

static inline qk_cols4 load_cols4(const qk_out_params *p, int mode, size_t n) {
    qk_cols4 k;
    k.add = vld1q_s32(p->col_add + n);
    k.zb = p->row_sum ? vld1q_s32(p->col_zb + n) : vdupq_n_s32(0);
    k.scale = mode == QK_OUT_FP32 ? vld1q_f32(p->scale + n) : vdupq_n_f32(0.0f);
    k.mult = k.lshift = k.rshift = vdupq_n_s32(0);
    if (qk_out_is_fixedpoint(mode)) {
        const int32x4_t shift = vld1q_s32(p->shift + n);
        k.mult = vld1q_s32(p->mult + n);
        k.lshift = vmaxq_s32(shift, vdupq_n_s32(0));
        k.rshift = vminq_s32(shift, vdupq_n_s32(0));   /* <= 0: shift right by -rshift */
    }
    return k;
}

/* 4 accumulators of one row -> int32 sums, or clamped output values. */
static inline int32x4_t out4(int32x4_t v, const qk_cols4 *k, const qk_consts *q, int32_t rsum) {
    v = vmlsq_n_s32(vaddq_s32(v, k->add), k->zb, rsum);   /* wraps like the scalar; zb 0 without row sums */
    if (q->mode == QK_OUT_INT32) return v;
    if (q->mode == QK_OUT_FP32) {
        float32x4_t f = vmulq_f32(vcvtq_f32_s32(v), k->scale);
        f = vminq_f32(vmaxq_f32(f, q->flo), q->fhi);
        return vaddq_s32(vcvtnq_s32_f32(f), q->zp);            /* round half to even */
    }
    /* Fixed point: saturating left shift, SRDHM (== SQRDMULH for every input), then a
     * rounding right shift with ties away from zero: SRSHL rounds ties up, so negative
     * values first step down by one (gemmlowp's fixup; SQADD keeps INT32_MIN exact). */
    int32x4_t x = vqrdmulhq_s32(vqshlq_s32(v, k->lshift), k->mult);
    if (q->mode == QK_OUT_FIXEDPOINT) x = vqaddq_s32(x, vshrq_n_s32(vandq_s32(x, k->rshift), 31));
    x = vrshlq_s32(x, k->rshift);
    /* clamp like the scalar (y < lo ? lo : y > hi ? hi : y), before adding zp: no wrap */
    x = vbslq_s32(vcltq_s32(x, q->lo_zp), q->lo_zp, vminq_s32(x, q->hi_zp));
    return vaddq_s32(x, q->zp);
}

void qk_output_neon(size_t mr, size_t nr, const int32_t *acc, size_t acc_stride,
                    size_t m0, size_t n0, const qk_out_params *p, void *c, size_t c_stride) {
    const int32_t *row_sum = p->row_sum;
    const size_t es = qk_out_elem_size(p);
    if (p->mode == QK_OUT_DQ_F32) {   /* float32(v) * scale (+ bias): two roundings, as qk_out_dq */
        const float *bias = p->bias_f;
        char *c0 = (char *)c + m0 * c_stride + n0 * 4;
        size_t j = 0;
        for (; j + 4 <= nr; j += 4) {
            const int32x4_t add = vld1q_s32(p->col_add + n0 + j);
            const int32x4_t zb = row_sum ? vld1q_s32(p->col_zb + n0 + j) : vdupq_n_s32(0);
            const float32x4_t s = vld1q_f32(p->scale + n0 + j);
            const float32x4_t b = bias ? vld1q_f32(bias + n0 + j) : vdupq_n_f32(0.0f);
            for (size_t i = 0; i < mr; i++) {
                const int32x4_t v = vmlsq_n_s32(vaddq_s32(vld1q_s32(acc + i * acc_stride + j), add), zb,
                                                row_sum ? row_sum[m0 + i] : 0);
                float32x4_t f = vmulq_f32(vcvtq_f32_s32(v), s);   /* int -> float rounds to nearest, as C */
                if (bias) f = vaddq_f32(f, b);
                vst1q_f32((float *)(void *)(c0 + i * c_stride) + j, f);
            }
        }
        if (j < nr)
            for (size_t i = 0; i < mr; i++)
                qk_out_row_tail(j, nr, acc + i * acc_stride, m0 + i, n0, p, c0 + i * c_stride);
        return;
    }
    qk_consts q;
    q.mode = p->mode;
    q.zp = vdupq_n_s32(p->zero_point);
    q.lo_zp = vdupq_n_s32(p->lo - p->zero_point);
    q.hi_zp = vdupq_n_s32(p->hi - p->zero_point);
    q.flo = vdupq_n_f32((float)(p->lo - p->zero_point));
    q.fhi = vdupq_n_f32((float)(p->hi - p->zero_point));
    char *c0 = (char *)c + m0 * c_stride + n0 * es;
    size_t j = 0;
    for (; j + 8 <= nr; j += 8) {
        const qk_cols4 k0 = load_cols4(p, q.mode, n0 + j), k1 = load_cols4(p, q.mode, n0 + j + 4);
        for (size_t i = 0; i < mr; i++) {
            const int32_t *a = acc + i * acc_stride + j;
            const int32_t rsum = row_sum ? row_sum[m0 + i] : 0;
            const int32x4_t r0 = out4(vld1q_s32(a), &k0, &q, rsum), r1 = out4(vld1q_s32(a + 4), &k1, &q, rsum);
            char *row = c0 + i * c_stride;
            if (q.mode == QK_OUT_INT32) {
                vst1q_s32((int32_t *)row + j, r0);
                vst1q_s32((int32_t *)row + j + 4, r1);
            } else {   /* values lie in [lo, hi]: truncating narrows == the scalar's casts */
                vst1_s8((int8_t *)row + j, vmovn_s16(vcombine_s16(vmovn_s32(r0), vmovn_s32(r1))));
            }
        }
    }
    if (j + 4 <= nr) {
        const qk_cols4 k0 = load_cols4(p, q.mode, n0 + j);
        for (size_t i = 0; i < mr; i++) {
            const int32x4_t r = out4(vld1q_s32(acc + i * acc_stride + j), &k0, &q, row_sum ? row_sum[m0 + i] : 0);
            char *row = c0 + i * c_stride;
            if (q.mode == QK_OUT_INT32) {
                vst1q_s32((int32_t *)row + j, r);
            } else {
                const int16x4_t h = vmovn_s32(r);
                const uint32_t w = vget_lane_u32(vreinterpret_u32_s8(vmovn_s16(vcombine_s16(h, h))), 0);
                memcpy(row + j, &w, 4);
            }
        }
        j += 4;
    }
    if (j < nr)
        for (size_t i = 0; i < mr; i++)
            qk_out_row_tail(j, nr, acc + i * acc_stride, m0 + i, n0, p, c0 + i * c_stride);
}
