/* fp16 rows <-> float32 with F16C (round to nearest even: the portable conversion's results),
 * for the x86 builds of kernels/eltwise.c. */
#ifndef QK_ELT_F16C_H
#define QK_ELT_F16C_H
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#include "qk_f16.h"

static inline void qk_elt_f16_to_f32_f16c(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = qk_f16_to_f32(src[i]);
}
static inline void qk_elt_f32_to_f16_f16c(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) dst[i] = qk_f32_to_f16(src[i]);
}
#define QK_ELT_F16_TO_F32 qk_elt_f16_to_f32_f16c
#define QK_ELT_F32_TO_F16 qk_elt_f32_to_f16_f16c
#endif
