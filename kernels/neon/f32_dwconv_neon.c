/* fp32 depthwise sum kernel, NEON: float inputs (template: float_dwconv_neon.h). */
#define QK_DW_NAME qk_dw_sum_f32_neon
#define QK_X_ELEM 4
#define QK_X_LOAD4(p) vld1q_f32((const float *)(const void *)(p))
#include "float_dwconv_neon.h"
