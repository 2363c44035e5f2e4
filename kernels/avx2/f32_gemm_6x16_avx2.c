/* fp32 GEMM micro-kernel, x86 (AVX2, FMA): 6x16 tile; B as float panels (template:
 * float_gemm_avx2.h). */
#define QK_B_TYPE float
#define QK_LOAD_B8(p) _mm256_loadu_ps(p)
#define QK_GEMM_6X16 f32_gemm_6x16_avx2
#include "float_gemm_avx2.h"
