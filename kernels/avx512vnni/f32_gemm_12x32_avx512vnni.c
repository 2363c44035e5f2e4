/* fp32 GEMM micro-kernel, AVX-512: a 12x32 tile (template in f16_gemm_avx512vnni.h):
 * 24 zmm accumulators, 2 loads and 12 broadcasts per 24 FMAs; also the indirect entries
 * (convolutions read in place). */
#define QK_MR 12
#define QK_NV 2
#define QK_CHAINS 1
#define QK_GEMM_NAME QK_VNNI_FN(f32_gemm_12x32_avx512vnni)
#define QK_GEMM_FUSED_NAME QK_VNNI_FN(f32_gemm_12x32_fused_avx512vnni)
#define QK_IGEMM_NAME QK_VNNI_FN(f32_igemm_12x32_avx512vnni)
#define QK_IGEMM_FUSED_NAME QK_VNNI_FN(f32_igemm_12x32_fused_avx512vnni)
#define QK_B_F32
#include "f16_gemm_avx512vnni.h"
