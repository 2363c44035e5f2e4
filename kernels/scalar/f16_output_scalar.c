/* fp16 output stage, portable C: bias, clamp (NaN kept), one rounding to fp16; the
 * reference of the vector fp16 stages. */
#include "qk_f16.h"
#include "qk_output.h"

void qk_output_f16_scalar(size_t mr, size_t nr, const int32_t *acc, size_t acc_stride, size_t m0, size_t n0,
                          const qk_out_params *p, void *c, size_t c_stride) {
    (void)m0;
    const float *f = (const float *)acc;
    if (p->act == QK_ACT_ELT) {
        qk_f16_out_act(mr, nr, f, acc_stride, m0, n0, p, c, c_stride);
        return;
    }
    for (size_t i = 0; i < mr; i++) {
        uint16_t *row = (uint16_t *)((char *)c + (m0 + i) * c_stride) + n0;
        for (size_t j = 0; j < nr; j++) row[j] = qk_f16_out(f[i * acc_stride + j], p->bias_f[n0 + j], p->flo, p->fhi);
    }
}
