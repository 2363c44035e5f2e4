/* TFLite's 8-bit ADD and SUB (kernels/tfl_binary.c), 8 values at a time, AVX2: the two
 * table gathers, the fixed-point output multiply with gemmlowp's rounding
 * (qk_fixedpoint_avx2.h, ties away from zero), clamp, pack. MUL, an output multiplier with
 * a left shift and the last values take the portable loop: the same bits. */
#include <immintrin.h>
#include "qk_fixedpoint_avx2.h"
#include "qk_tfl.h"

void qk_tfl_binary_avx2_part(QK_TFL_PART_ARGS) {
    const uint8_t *pa = (const uint8_t *)a, *pb = (const uint8_t *)b;
    uint8_t *py = (uint8_t *)y;
    size_t i = 0;
    if (op != QK_TFL_MUL && shift <= 0) {
        const __m256i m = _mm256_set1_epi32(mult), rshift = _mm256_set1_epi32(-shift);
        const __m256i vzy = _mm256_set1_epi32(zy), vlo = _mm256_set1_epi32(lo), vhi = _mm256_set1_epi32(hi);
        for (; i + 8 <= n; i += 8) {
            /* table entries are below 2^28 in magnitude: their sum and difference fit int32 */
            const __m256i ia = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(pa + i)));
            const __m256i ib = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(pb + i)));
            const __m256i ra = _mm256_i32gather_epi32((const int *)ta, ia, 4);
            const __m256i rb = _mm256_i32gather_epi32((const int *)tb, ib, 4);
            const __m256i raw = op == QK_TFL_SUB ? _mm256_sub_epi32(ra, rb) : _mm256_add_epi32(ra, rb);
            __m256i v = _mm256_add_epi32(qk_fixedpoint8_avx2(raw, m, rshift, 0), vzy);
            if (lanes)          /* ADD's 16-bit lanes: the sum wraps as the scaled value would */
                v = _mm256_srai_epi32(_mm256_slli_epi32(v, 16), 16);
            v = _mm256_min_epi32(_mm256_max_epi32(v, vlo), vhi);
            __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
            w = is_signed ? _mm_packs_epi16(w, w) : _mm_packus_epi16(w, w);
            _mm_storel_epi64((__m128i *)(py + i), w);
        }
    }
    if (i < n)
        qk_tfl_binary_part(n - i, lanes, op, is_signed, pa + i, pb + i, ta, tb, za, zb, mult, shift, zy, lo, hi,
                           py + i);
}

QK_TFL_ENTRY(qk_tfl_binary_avx2, qk_tfl_binary_avx2_part)
