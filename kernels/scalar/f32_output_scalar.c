/* fp32 output stage, portable C: bias, clamp (NaN kept); the reference of the vector
 * fp32 stages (the same two float operations, so every path stores the same floats). */
#include "qk_output.h"

void qk_output_f32_scalar(size_t mr, size_t nr, const int32_t *acc, size_t acc_stride, size_t m0, size_t n0,
                          const qk_out_params *p, void *c, size_t c_stride) {
    const float *f = (const float *)acc;
    for (size_t i = 0; i < mr; i++) {
        float *row = (float *)((char *)c + (m0 + i) * c_stride) + n0;
        const float *r = qk_f32_res_row(p, m0 + i, n0);
        if (r)
            for (size_t j = 0; j < nr; j++)
                row[j] = qk_f32_out_res(f[i * acc_stride + j], p->bias_f[n0 + j], r[j], p->flo, p->fhi);
        else
            for (size_t j = 0; j < nr; j++) row[j] = qk_f32_out(f[i * acc_stride + j], p->bias_f[n0 + j], p->flo, p->fhi);
        if (p->act == QK_ACT_ELT)
            p->act_fn(p->act_op, 0.0f, 0.0f, nr, row, row);
        else if (p->act)
            for (size_t j = 0; j < nr; j++) row[j] = qk_f32_act(row[j], p);
    }
}
