/* fp16 reference path, portable C: GEMM micro-kernel on float panels, the fp16 output
 * stage, and the depthwise sum kernel. Sums are float (fp32), products of fp16 values
 * exact in fp32; one rounding to fp16 at the end. */
#include "qk_common.h"
#include "qk_f16.h"

/* 4 x 8 tile; A a QK_PACK_F32_ROWS panel (4 rows of k), B a QK_PACK_F32 panel
 * (k-major). acc holds floats. */
void f16_gemm_4x8_scalar(size_t k, const void *a, const void *b, int32_t *acc) {
    const float *ap = (const float *)a, *bp = (const float *)b;
    float c[4][8] = {{0}};
    for (size_t kk = 0; kk < k; kk++, bp += 8)
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 8; j++) c[i][j] += ap[i * k + kk] * bp[j];
    memcpy(acc, c, sizeof c);
}

void qk_output_f16_scalar(size_t mr, size_t nr, const int32_t *acc, size_t acc_stride, size_t m0, size_t n0,
                          const qk_out_params *p, void *c, size_t c_stride) {
    (void)m0;
    const float *f = (const float *)acc;
    for (size_t i = 0; i < mr; i++) {
        uint16_t *row = (uint16_t *)((char *)c + (m0 + i) * c_stride) + n0;
        for (size_t j = 0; j < nr; j++) row[j] = qk_f16_out(f[i * acc_stride + j], p->bias_f[n0 + j], p->flo, p->fhi);
    }
}

size_t qk_dw_sum_f16_scalar(const qk_dw_params *d, size_t count, const uint8_t *const *ptrs, size_t ptr_stride,
                            ptrdiff_t step, size_t c0, int32_t *acc, size_t acc_stride, size_t m0, size_t *stored) {
    const size_t taps = d->taps, ch = d->g.cg;
    const float *init = (const float *)d->init;
    (void)m0;
    *stored = c0;
    for (size_t i = 0; i < count; i++) {
        float *a = (float *)acc + i * acc_stride;
        for (size_t c = c0; c < ch; c++) a[c] = init[c];
        for (size_t t = 0; t < taps; t++) {
            const uint16_t *x = (const uint16_t *)(const void *)(ptrs[i * ptr_stride + t] + (ptrdiff_t)i * step);
            const float *wt = d->wf + t * ch;
            for (size_t c = c0; c < ch; c++) a[c] += qk_f16_to_f32(x[c]) * wt[c];
        }
    }
    return ch;
}
