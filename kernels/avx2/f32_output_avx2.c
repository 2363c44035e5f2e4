/* fp32 output stage, x86 (AVX2): 8 columns at a time, bias, clamp (NaN kept); the
 * same float operations as the scalar stage, so the same floats. */
#include <immintrin.h>
#include "qk_output.h"

/* The activation after the clamp, in place on a row (qk_f32_act's operations). */
static void act_row(float *row, size_t nr, const qk_out_params *p) {
    const __m256 add = _mm256_set1_ps(p->act_add), lo = _mm256_set1_ps(p->act_lo), hi = _mm256_set1_ps(p->act_hi),
                 div = _mm256_set1_ps(p->act_div);
    size_t j = 0;
    for (; j + 8 <= nr; j += 8) {   /* max/min with the value second: NaN passes through */
        const __m256 v = _mm256_loadu_ps(row + j);
        const __m256 t = _mm256_min_ps(hi, _mm256_max_ps(lo, _mm256_add_ps(v, add)));
        _mm256_storeu_ps(row + j, _mm256_div_ps(_mm256_mul_ps(v, t), div));
    }
    for (; j < nr; j++) row[j] = qk_f32_act(row[j], p);
}

void qk_output_f32_avx2(size_t mr, size_t nr, const int32_t *acc, size_t acc_stride, size_t m0, size_t n0,
                        const qk_out_params *p, void *c, size_t c_stride) {
    const float *f = (const float *)acc;
    const __m256 lo = _mm256_set1_ps(p->flo), hi = _mm256_set1_ps(p->fhi);
    const float *bias = p->bias_f + n0;
    for (size_t i = 0; i < mr; i++) {
        float *row = (float *)((char *)c + (m0 + i) * c_stride) + n0;
        const float *a = f + i * acc_stride;
        const float *r = qk_f32_res_row(p, m0 + i, n0);
        size_t j = 0;
        if (r) {   /* a fused residual Add: after the bias, before the clamp */
            for (; j + 8 <= nr; j += 8) {
                __m256 v = _mm256_add_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(bias + j));
                v = _mm256_add_ps(v, _mm256_loadu_ps(r + j));
                _mm256_storeu_ps(row + j, _mm256_min_ps(hi, _mm256_max_ps(lo, v)));
            }
            for (; j < nr; j++) row[j] = qk_f32_out_res(a[j], bias[j], r[j], p->flo, p->fhi);
        } else {
            for (; j + 8 <= nr; j += 8) {   /* max/min with the value second: a NaN value passes through */
                const __m256 v = _mm256_add_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(bias + j));
                _mm256_storeu_ps(row + j, _mm256_min_ps(hi, _mm256_max_ps(lo, v)));
            }
            for (; j < nr; j++) row[j] = qk_f32_out(a[j], bias[j], p->flo, p->fhi);
        }
        if (p->act == QK_ACT_ELT) p->act_fn(p->act_op, 0.0f, 0.0f, nr, row, row);
        else if (p->act) act_row(row, nr, p);
    }
}
