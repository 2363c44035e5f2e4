/* fp16 depthwise sum kernel, NEON: fp16 inputs converted as they load (template:
 * float_dwconv_neon.h). */
#define QK_DW_NAME qk_dw_sum_f16_neon
#define QK_X_ELEM 2
#define QK_X_LOAD4(p) vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)(const void *)(p))))
#include "float_dwconv_neon.h"
