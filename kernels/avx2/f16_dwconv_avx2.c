/* fp16 depthwise sum kernel, x86 (F16C, FMA): fp16 inputs converted as they load
 * (template: float_dwconv_avx2.h). */
#define QK_DW_NAME qk_dw_sum_f16_avx2
#define QK_X_ELEM 2
#define QK_X_LOAD8(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(p)))
#include "float_dwconv_avx2.h"
