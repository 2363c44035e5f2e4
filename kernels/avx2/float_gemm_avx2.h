/* Template of the x86 float GEMM micro-kernels (AVX2, FMA): A as float rows
 * (QK_PACK_F32_ROWS); B as panels of QK_B_TYPE values, 8 loaded as a __m256 by QK_LOAD_B8
 * (fp16 converted by F16C as they stream in; fp32 as they are); fp32 FMA. The 6x16 tile
 * sums each output as c = fma(a_k, b_k, c) in increasing k from zero; the 1x16 tile (M <= 2)
 * keeps two chains per half (even and odd k, added at the end) against FMA latency. Both
 * orders are those of the AVX-512 kernels, so the paths give the same floats. Define:
 *   QK_B_TYPE, QK_LOAD_B8(p), and QK_GEMM_6X16 or QK_GEMM_1X16 (the function's name) */
#include <immintrin.h>
#include "qk_gemm.h"

#ifdef QK_GEMM_6X16
void QK_GEMM_6X16(size_t k, const void *a, const void *b, int32_t *acc) {
    const float *a0 = (const float *)a, *a1 = a0 + k, *a2 = a1 + k, *a3 = a2 + k, *a4 = a3 + k, *a5 = a4 + k;
    const QK_B_TYPE *bp = (const QK_B_TYPE *)b;
    __m256 c0l = _mm256_setzero_ps(), c0h = c0l, c1l = c0l, c1h = c0l, c2l = c0l, c2h = c0l;
    __m256 c3l = c0l, c3h = c0l, c4l = c0l, c4h = c0l, c5l = c0l, c5h = c0l;
    for (size_t kk = 0; kk < k; kk++, bp += 16) {
        const __m256 bl = QK_LOAD_B8(bp), bh = QK_LOAD_B8(bp + 8);
        __m256 x;
        x = _mm256_broadcast_ss(a0 + kk);
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
    _mm256_storeu_ps(c + 0, c0l); _mm256_storeu_ps(c + 8, c0h);
    _mm256_storeu_ps(c + 16, c1l); _mm256_storeu_ps(c + 24, c1h);
    _mm256_storeu_ps(c + 32, c2l); _mm256_storeu_ps(c + 40, c2h);
    _mm256_storeu_ps(c + 48, c3l); _mm256_storeu_ps(c + 56, c3h);
    _mm256_storeu_ps(c + 64, c4l); _mm256_storeu_ps(c + 72, c4h);
    _mm256_storeu_ps(c + 80, c5l); _mm256_storeu_ps(c + 88, c5h);
}

#endif

#ifdef QK_GEMM_1X16
void QK_GEMM_1X16(size_t k, const void *a, const void *b, int32_t *acc) {
    const float *ap = (const float *)a;
    const QK_B_TYPE *bp = (const QK_B_TYPE *)b;
    __m256 l0 = _mm256_setzero_ps(), h0 = l0, l1 = l0, h1 = l0;
    size_t kk = 0;
    for (; kk + 2 <= k; kk += 2, ap += 2, bp += 32) {
        const __m256 x0 = _mm256_broadcast_ss(ap), x1 = _mm256_broadcast_ss(ap + 1);
        l0 = _mm256_fmadd_ps(x0, QK_LOAD_B8(bp), l0);
        h0 = _mm256_fmadd_ps(x0, QK_LOAD_B8(bp + 8), h0);
        l1 = _mm256_fmadd_ps(x1, QK_LOAD_B8(bp + 16), l1);
        h1 = _mm256_fmadd_ps(x1, QK_LOAD_B8(bp + 24), h1);
    }
    if (kk < k) {
        const __m256 x0 = _mm256_broadcast_ss(ap);
        l0 = _mm256_fmadd_ps(x0, QK_LOAD_B8(bp), l0);
        h0 = _mm256_fmadd_ps(x0, QK_LOAD_B8(bp + 8), h0);
    }
    float *c = (float *)acc;
    _mm256_storeu_ps(c, _mm256_add_ps(l0, l1));
    _mm256_storeu_ps(c + 8, _mm256_add_ps(h0, h1));
}
#endif
