/* int8 GEMV micro-kernel, AVX-VNNI: 1x16 tile for M <= 2, the panels of the 6x16c4
 * kernel; four K quads per step on independent accumulators (vpdpbusd's latency would
 * bound two chains), summed at the end (int32 adds wrap alike in any order: exact). */
#include "qk_gemm.h"
#include "qk_vnni.h"

#define QK_B(off) _mm256_loadu_si256((const __m256i *)(pb + (off)))

void QK_VNNI_FN(qs8_gemm_1x16c4_avxvnni)(size_t k_groups, const void *a_, const void *b_, int32_t *acc) {
    const uint8_t *pa = (const uint8_t *)a_, *pb = (const uint8_t *)b_;
    __m256i c0 = _mm256_setzero_si256(), c1 = c0, d0 = c0, d1 = c0, e0 = c0, e1 = c0, f0 = c0, f1 = c0;
    size_t g = 0;
    for (; g + 4 <= k_groups; g += 4, pa += 16, pb += 256) {
        const __m256i a0 = _mm256_set1_epi32(qk_load_i32(pa)), a1 = _mm256_set1_epi32(qk_load_i32(pa + 4));
        const __m256i a2 = _mm256_set1_epi32(qk_load_i32(pa + 8)), a3 = _mm256_set1_epi32(qk_load_i32(pa + 12));
        c0 = qk_dpbusd256(c0, a0, QK_B(0));
        c1 = qk_dpbusd256(c1, a0, QK_B(32));
        d0 = qk_dpbusd256(d0, a1, QK_B(64));
        d1 = qk_dpbusd256(d1, a1, QK_B(96));
        e0 = qk_dpbusd256(e0, a2, QK_B(128));
        e1 = qk_dpbusd256(e1, a2, QK_B(160));
        f0 = qk_dpbusd256(f0, a3, QK_B(192));
        f1 = qk_dpbusd256(f1, a3, QK_B(224));
    }
    for (; g < k_groups; g++, pa += 4, pb += 64) {
        const __m256i a0 = _mm256_set1_epi32(qk_load_i32(pa));
        c0 = qk_dpbusd256(c0, a0, QK_B(0));
        c1 = qk_dpbusd256(c1, a0, QK_B(32));
    }
    _mm256_storeu_si256((__m256i *)acc, _mm256_add_epi32(_mm256_add_epi32(c0, d0), _mm256_add_epi32(e0, f0)));
    _mm256_storeu_si256((__m256i *)(acc + 8), _mm256_add_epi32(_mm256_add_epi32(c1, d1), _mm256_add_epi32(e1, f1)));
}
