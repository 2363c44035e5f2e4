/* int8 GEMM micro-kernel, AVX2: 6x16 tile, K in pairs, int16 zero-folded panels.
 * The fused entry (full tiles, int32 or fp32 output) requantizes the tile with a
 * 16-wide epilogue instead of the generic output stage. (Requantizing straight from
 * the accumulator registers made GCC spill them inside the loop.) */
#include <immintrin.h>
#include "qk_common.h"

#define BCAST(p) _mm256_set1_epi32(*(const int32_t *)(p))
#define ROW(i)                                                           \
    a = BCAST(pa + (i) * kp);                                             \
    c##i##0 = _mm256_add_epi32(c##i##0, _mm256_madd_epi16(a, b0));      \
    c##i##1 = _mm256_add_epi32(c##i##1, _mm256_madd_epi16(a, b1));
#define STORE(i)                                                         \
    _mm256_storeu_si256((__m256i *)(acc + 16 * (i)), c##i##0);           \
    _mm256_storeu_si256((__m256i *)(acc + 16 * (i) + 8), c##i##1);

#define GEMM_LOOP                                                                            \
    const int16_t *pa = (const int16_t *)a_, *pb = (const int16_t *)b_;                     \
    __m256i c00 = _mm256_setzero_si256(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00; \
    __m256i c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;                 \
    __m256i a, b0, b1;                                                                       \
    const size_t kp = 2 * k_groups; /* row stride of the row-major A panel */                \
    for (size_t g = 0; g < k_groups; g++) {                                                  \
        b0 = _mm256_loadu_si256((const __m256i *)pb);                                        \
        b1 = _mm256_loadu_si256((const __m256i *)(pb + 16));                                 \
        ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5)                                            \
        pa += 2;                                                                             \
        pb += 32;                                                                            \
    }

void qs8_gemm_6x16c2_avx2(size_t k_groups, const void *a_, const void *b_, int32_t *acc) {
    GEMM_LOOP
    STORE(0) STORE(1) STORE(2) STORE(3) STORE(4) STORE(5)
}

/* The fused epilogue: add the column terms; store int32, or requantize exactly as
 * the output stage does (float32 multiply, clamp, round half to even) and store 16
 * bytes per row. Column terms are loaded once for the six rows. */
void qs8_gemm_6x16c2_fused_avx2(size_t k_groups, const void *a_, const void *b_, size_t m0, size_t n0,
                                const qk_out_params *p, void *c, size_t c_stride) {
    int32_t acc[6 * 16];
    qs8_gemm_6x16c2_avx2(k_groups, a_, b_, acc);
    const __m256i add0 = _mm256_loadu_si256((const __m256i *)(p->col_add + n0));
    const __m256i add1 = _mm256_loadu_si256((const __m256i *)(p->col_add + n0 + 8));
    char *row = (char *)c + m0 * c_stride;
    if (p->mode == QK_OUT_INT32) {
        row += n0 * 4;
        for (int i = 0; i < 6; i++, row += c_stride) {
            _mm256_storeu_si256((__m256i *)row, _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)(acc + 16 * i)), add0));
            _mm256_storeu_si256((__m256i *)(row + 32), _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)(acc + 16 * i + 8)), add1));
        }
        return;
    }
    const __m256 scale0 = _mm256_loadu_ps(p->scale + n0), scale1 = _mm256_loadu_ps(p->scale + n0 + 8);
    const __m256 flo = _mm256_set1_ps((float)(p->lo - p->zero_point));
    const __m256 fhi = _mm256_set1_ps((float)(p->hi - p->zero_point));
    const __m256i zp = _mm256_set1_epi32(p->zero_point);
    const int out_signed = p->out_signed;
    row += n0;
    for (int i = 0; i < 6; i++, row += c_stride) {
        __m256i v0 = _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)(acc + 16 * i)), add0);
        __m256i v1 = _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)(acc + 16 * i + 8)), add1);
        __m256 f0 = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(v0), scale0), flo), fhi);
        __m256 f1 = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(v1), scale1), flo), fhi);
        __m256i w = _mm256_packs_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(f0), zp),
                                       _mm256_add_epi32(_mm256_cvtps_epi32(f1), zp));
        w = _mm256_permute4x64_epi64(w, 0xD8);   /* undo the per-lane interleave of packs */
        __m128i lo = _mm256_castsi256_si128(w), hi = _mm256_extracti128_si256(w, 1);
        _mm_storeu_si128((__m128i *)row, out_signed ? _mm_packs_epi16(lo, hi) : _mm_packus_epi16(lo, hi));
    }
}
