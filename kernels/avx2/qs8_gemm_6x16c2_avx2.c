/* int8 GEMM micro-kernel, AVX2: 6x16 tile, K in pairs, int16 zero-folded panels.
 * The fused entry (full tiles, int32 or fp32 output) requantizes the tile with the
 * 16-wide epilogue instead of the generic output stage. (Requantizing straight from
 * the accumulator registers made GCC spill them inside the loop.) */
#include <immintrin.h>
#include "qk_common.h"
#include "qk_avx2.h"

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

void qs8_gemm_6x16c2_fused_avx2(size_t k_groups, const void *a_, const void *b_, size_t m0, size_t n0,
                                const qk_out_params *p, void *c, size_t c_stride) {
    int32_t acc[6 * 16];
    qs8_gemm_6x16c2_avx2(k_groups, a_, b_, acc);
    qk_store_16cols_avx2(6, acc, 16, m0, n0, p, c, c_stride);
}
