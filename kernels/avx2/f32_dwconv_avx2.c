/* fp32 depthwise sum kernel, x86 (AVX2, FMA): float inputs (template: float_dwconv_avx2.h). */
#define QK_DW_NAME qk_dw_sum_f32_avx2
#define QK_X_ELEM 4
#define QK_X_LOAD8(p) _mm256_loadu_ps((const float *)(const void *)(p))
#include "float_dwconv_avx2.h"
