/* fp32 depthwise sum kernel, AVX-512 (with its emulated AVX2 twin, qk_vnni.h): 16 channels
 * per zmm, two zmm per step where C allows, the block's weights held in registers over its
 * pixels; the output stage fused: bias, a residual, clamp, the hard swish and the store
 * while the sums are in registers (no pass over an accumulator buffer). The operations of
 * the AVX2 kernel and the fp32 output stage, in their order (an fma per tap from init,
 * then + bias, + residual, the clamp keeping NaN, qk_f32_act's steps): the same floats. */
#include "qk_conv.h"
#include "qk_output.h"
#include "qk_vnni.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

size_t qk_dw_sum_f32_avx2(const qk_dw_params *d, size_t count, const uint8_t *const *ptrs, size_t ps, ptrdiff_t step,
                          size_t c0, int32_t *acc, size_t as, size_t m0, size_t *stored);

/* Channels [c, c + 16 * NB) of count pixels, stored as output rows m0.. */
ALWAYS_INLINE void block(const qk_dw_params *d, size_t count, size_t taps, int nb, const uint8_t *const *ptrs,
                         size_t ps, ptrdiff_t step, size_t c, size_t m0, int act) {
    const qk_out_params *p = d->out;
    const size_t ch = d->g.cg;
    qk_v512f w[2][QK_DW_MAX_TAPS];
    for (size_t t = 0; t < taps; t++)
        for (int b = 0; b < nb; b++) w[b][t] = qk512f_load(d->wf + t * ch + c + 16 * (size_t)b);
    qk_v512f bias[2], init[2];
    for (int b = 0; b < nb; b++) {
        bias[b] = qk512f_load(p->bias_f + c + 16 * (size_t)b);
        init[b] = qk512f_load((const float *)(const void *)d->init + c + 16 * (size_t)b);
    }
    const qk_v512f lo = qk512f_set1(p->flo), hi = qk512f_set1(p->fhi);
    const qk_v512f a_add = qk512f_set1(p->act_add), a_lo = qk512f_set1(p->act_lo), a_hi = qk512f_set1(p->act_hi),
                   a_div = qk512f_set1(p->act_div);
    for (size_t i = 0; i < count; i++) {
        const uint8_t *const *pp = ptrs + i * ps;
        const ptrdiff_t off = (ptrdiff_t)i * step + (ptrdiff_t)(4 * c);
        qk_v512f s[2] = {init[0], init[nb - 1]};
        for (size_t t = 0; t < taps; t++)
            for (int b = 0; b < nb; b++)
                s[b] = qk512f_fmadd(qk512f_load((const float *)(const void *)(pp[t] + off) + 16 * b), w[b][t], s[b]);
        float *row = (float *)(void *)((char *)d->c + (m0 + i) * d->c_stride) + c;
        const float *r = qk_f32_res_row(p, m0 + i, c);
        for (int b = 0; b < nb; b++) {
            qk_v512f x = qk512f_add(s[b], bias[b]);
            if (r) x = qk512f_add(x, qk512f_load(r + 16 * b));
            x = qk512f_clamp(x, lo, hi);
            if (act)   /* qk_f32_act's operations, in its order */
                x = qk512f_div(qk512f_mul(x, qk512f_clamp(qk512f_add(x, a_add), a_lo, a_hi)), a_div);
            qk512f_store(row + 16 * b, x);
        }
    }
}

/* Every channel from c0 (at least 16 of them): blocks of 32, one of 16, and under 16 left
   one block of 16 shifted to end at C (its overlap stores the same values again). */
ALWAYS_INLINE size_t blocks(const qk_dw_params *d, size_t count, size_t taps, const uint8_t *const *ptrs, size_t ps,
                            ptrdiff_t step, size_t c0, size_t m0, int act) {
    const size_t ch = d->g.cg;
    size_t c = c0;
    for (; ch - c >= 32; c += 32) block(d, count, taps, 2, ptrs, ps, step, c, m0, act);
    if (ch - c >= 16) {
        block(d, count, taps, 1, ptrs, ps, step, c, m0, act);
        c += 16;
    }
    if (c < ch) block(d, count, taps, 1, ptrs, ps, step, ch - 16, m0, act);
    return ch;
}

ALWAYS_INLINE size_t by_taps(const qk_dw_params *d, size_t count, const uint8_t *const *ptrs, size_t ps,
                             ptrdiff_t step, size_t c0, size_t m0, int act) {
    /* constant tap counts let the compiler unroll and keep the weights in registers */
    return d->taps == 9 ? blocks(d, count, 9, ptrs, ps, step, c0, m0, act)
           : d->taps == 25 ? blocks(d, count, 25, ptrs, ps, step, c0, m0, act)
                           : blocks(d, count, d->taps, ptrs, ps, step, c0, m0, act);
}

size_t QK_VNNI_FN(qk_dw_sum_f32_avx512vnni)(const qk_dw_params *d, size_t count, const uint8_t *const *ptrs,
                                            size_t ps, ptrdiff_t step, size_t c0, int32_t *acc, size_t as, size_t m0,
                                            size_t *stored) {
    const qk_out_params *p = d->out;
    /* an elementwise act_fn runs over stored rows (the shifted last block would apply it
       twice), and a residual that may be the output itself must not be read back there */
    if (p == NULL || p->mode != QK_OUT_F32 || p->act == QK_ACT_ELT || (p->res_f && (d->g.cg - c0) % 16) ||
        d->g.cg - c0 < 16)
        return qk_dw_sum_f32_avx2(d, count, ptrs, ps, step, c0, acc, as, m0, stored);
    const size_t end = p->act == QK_ACT_HSWISH_DIV ? by_taps(d, count, ptrs, ps, step, c0, m0, 1)
                                                   : by_taps(d, count, ptrs, ps, step, c0, m0, 0);
    *stored = end;
    return end;
}
