/* fp32 GEMM micro-kernel, NEON: 8x8 tile, B as float panels (template: float_gemm_neon.h). */
#include <arm_neon.h>
#define QK_GEMM_NAME f32_gemm_8x8_neon
#define QK_B_ELEM float
#define QK_B_RAW float32x4x2_t
#define QK_B_LOAD(p) ((float32x4x2_t){{vld1q_f32(p), vld1q_f32((p) + 4)}})
#define QK_B_LO(raw) ((raw).val[0])
#define QK_B_HI(raw) ((raw).val[1])
#include "float_gemm_neon.h"
