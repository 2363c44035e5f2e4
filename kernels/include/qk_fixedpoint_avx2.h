/* The fixed-point requantization of 8 int32 lanes, AVX2 (qk_fixedpoint.h's arithmetic bit
 * for bit, for right shifts; columns with a left shift take the scalar route). Shared by
 * the AVX2 output stages and the emulated AVX-512 build (compiled with AVX2 flags). */
#ifndef QK_FIXEDPOINT_AVX2_H
#define QK_FIXEDPOINT_AVX2_H
#include <immintrin.h>

static inline __m256i qk_fixedpoint8_avx2(__m256i x, __m256i mult, __m256i rshift, int ties_up) {
    /* Saturating rounding doubling high multiply == (x*mult + 2^30) >> 31 except for
     * x == mult == INT32_MIN, which the API never produces (multipliers are > 0). */
    const __m256i half = _mm256_set1_epi64x(1LL << 30);
    __m256i even = _mm256_add_epi64(_mm256_mul_epi32(x, mult), half);
    __m256i odd = _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(x, 32), _mm256_srli_epi64(mult, 32)), half);
    __m256i hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 31), _mm256_slli_epi64(odd, 1), 0xAA);
    /* Rounding right shift, ties away from zero (or upward: no step for negatives). */
    __m256i mask = _mm256_sub_epi32(_mm256_sllv_epi32(_mm256_set1_epi32(1), rshift), _mm256_set1_epi32(1));
    __m256i rem = _mm256_and_si256(hi, mask);
    __m256i thr = _mm256_srli_epi32(mask, 1);
    if (!ties_up) thr = _mm256_sub_epi32(thr, _mm256_cmpgt_epi32(_mm256_setzero_si256(), hi));
    return _mm256_sub_epi32(_mm256_srav_epi32(hi, rshift), _mm256_cmpgt_epi32(rem, thr));
}
#endif
