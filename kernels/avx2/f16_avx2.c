/* fp16 path on x86: F16C converts, FMA computes in fp32. GEMM micro-kernel 6x16
 * (A as float panels, B as fp16 panels: half the memory of float weights, converted
 * with vcvtph2ps as they stream in), the fp16 output stage and the depthwise sum
 * kernel (16 channels per step). */
#include <immintrin.h>
#include "qk_common.h"
#include "qk_f16.h"

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

/* max/min with the value second: a NaN value passes through, as in numpy. */
static inline __m128i out8(__m256 v, __m256 bias, __m256 lo, __m256 hi) {
    v = _mm256_min_ps(hi, _mm256_max_ps(lo, _mm256_add_ps(v, bias)));
    return _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

void qk_output_f16_avx2(size_t mr, size_t nr, const int32_t *acc, size_t acc_stride, size_t m0, size_t n0,
                        const qk_out_params *p, void *c, size_t c_stride) {
    const float *f = (const float *)acc;
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

static inline __m256 load8h(const uint8_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }

size_t qk_dw_sum_f16_avx2(const qk_dw_params *d, size_t count, const uint8_t *const *ptrs, size_t ps,
                          ptrdiff_t step, size_t c0, int32_t *acc, size_t as, size_t m0, size_t *stored) {
    const size_t taps = d->taps, ch = d->g.cg;
    const float *init = (const float *)d->init;
    (void)m0;
    *stored = c0;
    const size_t end = qk_dw_blocks_end(c0, 16, ch);
    for (size_t b = c0; b < end; b += 16) {
        const size_t c = qk_dw_block(b, 16, ch);
        for (size_t i = 0; i < count; i++) {
            const uint8_t *const *pp = ptrs + i * ps;
            const ptrdiff_t off = (ptrdiff_t)i * step + (ptrdiff_t)(2 * c);
            __m256 lo = _mm256_loadu_ps(init + c), hi = _mm256_loadu_ps(init + c + 8);
            for (size_t t = 0; t < taps; t++) {
                const float *w = d->wf + t * ch + c;
                lo = _mm256_fmadd_ps(load8h(pp[t] + off), _mm256_loadu_ps(w), lo);
                hi = _mm256_fmadd_ps(load8h(pp[t] + off + 16), _mm256_loadu_ps(w + 8), hi);
            }
            float *o = (float *)acc + i * as + c;
            _mm256_storeu_ps(o, lo);
            _mm256_storeu_ps(o + 8, hi);
        }
    }
    return end;
}

void qk_f16_to_f32_row_f16c(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = qk_f16_to_f32(src[i]);
}

/* 1 x 16 tile for M <= 2 (GEMV): the 6-row kernel would compute five rows of padding. */
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
