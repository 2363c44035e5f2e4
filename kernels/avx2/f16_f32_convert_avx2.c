/* fp16 -> fp32 row conversion with F16C, 8 values per step (packing uses it whatever the
 * ISA path, when the CPU has F16C). */
#include <immintrin.h>
#include "qk_f16.h"

void qk_f16_to_f32_row_f16c(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = qk_f16_to_f32(src[i]);
}
