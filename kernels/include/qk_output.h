/* The output stage of one element, shared by the scalar stage and the tails of the
 * vector stages, so every ISA rounds exactly alike. */
#ifndef QK_OUTPUT_H
#define QK_OUTPUT_H
#include <math.h>
#include "qk_common.h"

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
    int32_t r = qk_fixedpoint_scale(v, p->mult[n], p->shift[n]);
    int64_t y = (int64_t)r + p->zero_point;
    return (int32_t)(y < p->lo ? p->lo : (y > p->hi ? p->hi : y));
}

static inline void qk_out_store(void *row, size_t n, int32_t v, const qk_out_params *p) {
    if (p->mode == QK_OUT_INT32) ((int32_t *)row)[n] = v;
    else if (p->out_signed) ((int8_t *)row)[n] = (int8_t)v;
    else ((uint8_t *)row)[n] = (uint8_t)v;
}

static inline size_t qk_out_elem_size(const qk_out_params *p) { return p->mode == QK_OUT_INT32 ? 4 : 1; }

/* Elements [j0, nr) of one row, the scalar way. */
static inline void qk_out_row_tail(size_t j0, size_t nr, const int32_t *acc, size_t m, size_t n0,
                                   const qk_out_params *p, void *row) {
    for (size_t j = j0; j < nr; j++) {
        int32_t v = qk_out_acc(acc[j], m, n0 + j, p);
        if (p->mode != QK_OUT_INT32) v = qk_out_requant(v, n0 + j, p);
        qk_out_store(row, j, v, p);
    }
}
#endif
