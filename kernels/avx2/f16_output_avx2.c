/* fp16 output stage, x86 (F16C): 8 columns at a time, bias, clamp (NaN kept), vcvtps2ph
 * rounding to nearest even; bit-identical to the scalar stage. */
#include <immintrin.h>
#include "qk_f16.h"
#include "qk_output.h"

/* max/min with the value second: a NaN value passes through, as in numpy. */
static inline __m128i out8(__m256 v, __m256 bias, __m256 lo, __m256 hi) {
    v = _mm256_min_ps(hi, _mm256_max_ps(lo, _mm256_add_ps(v, bias)));
    return _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

void qk_output_f16_avx2(size_t mr, size_t nr, const int32_t *acc, size_t acc_stride, size_t m0, size_t n0,
                        const qk_out_params *p, void *c, size_t c_stride) {
    const float *f = (const float *)acc;
    if (p->act == QK_ACT_ELT) {
        qk_f16_out_act(mr, nr, f, acc_stride, m0, n0, p, c, c_stride);
        return;
    }
    const __m256 lo = _mm256_set1_ps(p->flo), hi = _mm256_set1_ps(p->fhi);
    const float *bias = p->bias_f + n0;
    for (size_t i = 0; i < mr; i++) {
        uint16_t *row = (uint16_t *)((char *)c + (m0 + i) * c_stride) + n0;
        const float *a = f + i * acc_stride;
        size_t j = 0;
        for (; j + 8 <= nr; j += 8)
            _mm_storeu_si128((__m128i *)(row + j), out8(_mm256_loadu_ps(a + j), _mm256_loadu_ps(bias + j), lo, hi));
        for (; j < nr; j++) row[j] = qk_f16_out(a[j], bias[j], p->flo, p->fhi);
    }
}
