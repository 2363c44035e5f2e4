/* fp32 GEMM micro-kernel, AVX-512: a 8x32 tile (template in f16_gemm_avx512vnni.h), the
 * panels of the 12x32 kernel: M of 7-8 and a 12-row GEMM's last 8 rows (16 tokens:
 * 12 + 4, 128: 10 x 12 + 8) without rows of padding. */
#define QK_MR 8
#define QK_NV 2
#define QK_CHAINS 1
#define QK_GEMM_NAME QK_VNNI_FN(f32_gemm_8x32_avx512vnni)
#define QK_GEMM_FUSED_NAME QK_VNNI_FN(f32_gemm_8x32_fused_avx512vnni)
#define QK_B_F32
#include "f16_gemm_avx512vnni.h"
