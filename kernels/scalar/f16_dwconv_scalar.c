/* fp16 depthwise sum kernel, portable C: fp32 sums of fp16 inputs (converted exactly)
 * times float weights (template: float_dwconv_scalar.h). */
#include "qk_f16.h"
#define QK_DW_NAME qk_dw_sum_f16_scalar
#define QK_X_TYPE uint16_t
#define QK_X_LOAD(v) qk_f16_to_f32(v)
#include "float_dwconv_scalar.h"
