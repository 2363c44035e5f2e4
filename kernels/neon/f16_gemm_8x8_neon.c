/* fp16 GEMM micro-kernel, Arm without FP16 arithmetic (ARMv8.0 NEON converts fp16 <->
 * fp32): 8x8 tile, B as fp16 panels converted as they stream in (template:
 * float_gemm_neon.h). */
#include <arm_neon.h>
#define QK_GEMM_NAME f16_gemm_8x8_neon
#define QK_B_ELEM uint16_t
#define QK_B_RAW float16x8_t
#define QK_B_LOAD(p) vreinterpretq_f16_u16(vld1q_u16(p))
#define QK_B_LO(raw) vcvt_f32_f16(vget_low_f16(raw))
#define QK_B_HI(raw) vcvt_high_f32_f16(raw)
#include "float_gemm_neon.h"
