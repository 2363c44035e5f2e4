/* fp16 GEMM micro-kernel, x86 (AVX2, FMA, F16C): 1x16 tile for M <= 2 (GEMV): the 6-row
 * kernel would compute five rows of padding. Two FMA chains per half hide the latency. */
#include <immintrin.h>
#include "qk_gemm.h"

void f16_gemm_1x16_avx2(size_t k, const void *a, const void *b, int32_t *acc) {
    const float *ap = (const float *)a;
    const uint16_t *bp = (const uint16_t *)b;
    __m256 l0 = _mm256_setzero_ps(), h0 = l0, l1 = l0, h1 = l0;   /* two chains per half: latency */
    size_t kk = 0;
    for (; kk + 2 <= k; kk += 2, ap += 2, bp += 32) {
        const __m256 x0 = _mm256_broadcast_ss(ap), x1 = _mm256_broadcast_ss(ap + 1);
        l0 = _mm256_fmadd_ps(x0, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)bp)), l0);
        h0 = _mm256_fmadd_ps(x0, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(bp + 8))), h0);
        l1 = _mm256_fmadd_ps(x1, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(bp + 16))), l1);
        h1 = _mm256_fmadd_ps(x1, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(bp + 24))), h1);
    }
    if (kk < k) {
        const __m256 x0 = _mm256_broadcast_ss(ap);
        l0 = _mm256_fmadd_ps(x0, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)bp)), l0);
        h0 = _mm256_fmadd_ps(x0, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(bp + 8))), h0);
    }
    float *c = (float *)acc;
    _mm256_storeu_ps(c, _mm256_add_ps(l0, l1));
    _mm256_storeu_ps(c + 8, _mm256_add_ps(h0, h1));
}
