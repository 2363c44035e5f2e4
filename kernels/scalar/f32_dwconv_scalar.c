/* fp32 depthwise sum kernel, portable C: fp32 sums of fp32 inputs times float weights
 * (template: float_dwconv_scalar.h). */
#define QK_DW_NAME qk_dw_sum_f32_scalar
#define QK_X_TYPE float
#define QK_X_LOAD(v) (v)
#include "float_dwconv_scalar.h"
