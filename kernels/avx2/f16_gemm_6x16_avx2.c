/* fp16 GEMM micro-kernel, x86 (AVX2, FMA, F16C): 6x16 tile. A as float rows
 * (QK_PACK_F32_ROWS), B as fp16 panels, half the memory of float weights, converted with
 * vcvtph2ps as they stream in; fp32 FMA. */
#include <immintrin.h>
#include "qk_gemm.h"

void f16_gemm_6x16_avx2(size_t k, const void *a, const void *b, int32_t *acc) {
    /* A: 6 rows of k floats (QK_PACK_F32_ROWS) */
    const float *a0 = (const float *)a, *a1 = a0 + k, *a2 = a1 + k, *a3 = a2 + k, *a4 = a3 + k, *a5 = a4 + k;
    const uint16_t *bp = (const uint16_t *)b;
    __m256 c0l = _mm256_setzero_ps(), c0h = c0l, c1l = c0l, c1h = c0l, c2l = c0l, c2h = c0l;
    __m256 c3l = c0l, c3h = c0l, c4l = c0l, c4h = c0l, c5l = c0l, c5h = c0l;
    for (size_t kk = 0; kk < k; kk++, bp += 16) {
        const __m256 bl = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)bp));
        const __m256 bh = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(bp + 8)));
        __m256 x = _mm256_broadcast_ss(a0 + kk);
        c0l = _mm256_fmadd_ps(x, bl, c0l); c0h = _mm256_fmadd_ps(x, bh, c0h);
        x = _mm256_broadcast_ss(a1 + kk);
        c1l = _mm256_fmadd_ps(x, bl, c1l); c1h = _mm256_fmadd_ps(x, bh, c1h);
        x = _mm256_broadcast_ss(a2 + kk);
        c2l = _mm256_fmadd_ps(x, bl, c2l); c2h = _mm256_fmadd_ps(x, bh, c2h);
        x = _mm256_broadcast_ss(a3 + kk);
        c3l = _mm256_fmadd_ps(x, bl, c3l); c3h = _mm256_fmadd_ps(x, bh, c3h);
        x = _mm256_broadcast_ss(a4 + kk);
        c4l = _mm256_fmadd_ps(x, bl, c4l); c4h = _mm256_fmadd_ps(x, bh, c4h);
        x = _mm256_broadcast_ss(a5 + kk);
        c5l = _mm256_fmadd_ps(x, bl, c5l); c5h = _mm256_fmadd_ps(x, bh, c5h);
    }
    float *c = (float *)acc;
    _mm256_storeu_ps(c, c0l); _mm256_storeu_ps(c + 8, c0h);
    _mm256_storeu_ps(c + 16, c1l); _mm256_storeu_ps(c + 24, c1h);
    _mm256_storeu_ps(c + 32, c2l); _mm256_storeu_ps(c + 40, c2h);
    _mm256_storeu_ps(c + 48, c3l); _mm256_storeu_ps(c + 56, c3h);
    _mm256_storeu_ps(c + 64, c4l); _mm256_storeu_ps(c + 72, c4h);
    _mm256_storeu_ps(c + 80, c5l); _mm256_storeu_ps(c + 88, c5h);
}
