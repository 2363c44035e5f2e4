/* fp32 GEMM micro-kernel, x86 (AVX2, FMA): 1x16 tile for M <= 2 (GEMV): the 6-row kernel
 * would compute five rows of padding; B as float panels (template: float_gemm_avx2.h). */
#define QK_B_TYPE float
#define QK_LOAD_B8(p) _mm256_loadu_ps(p)
#define QK_GEMM_1X16 f32_gemm_1x16_avx2
#include "float_gemm_avx2.h"
