/* fp16 -> fp32 row conversion, NEON, 4 values per step (packing uses it on every Arm path). */
#include <arm_neon.h>
#include "qk_f16.h"

void qk_f16_to_f32_row_neon(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(dst + i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(src + i))));
    for (; i < n; i++) dst[i] = qk_f16_to_f32(src[i]);
}
