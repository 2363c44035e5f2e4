/* fp32 GEMM micro-kernel, AVX-512: a 6x32 tile for 3 <= M <= 6 (template in
 * f16_gemm_avx512vnni.h), the panels of the 12x32 kernel, which would compute up to nine
 * rows of padding there. */
#define QK_MR 6
#define QK_NV 2
#define QK_CHAINS 1
#define QK_GEMM_NAME QK_VNNI_FN(f32_gemm_6x32_avx512vnni)
#define QK_GEMM_FUSED_NAME QK_VNNI_FN(f32_gemm_6x32_fused_avx512vnni)
#define QK_B_F32
#include "f16_gemm_avx512vnni.h"
