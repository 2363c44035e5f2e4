/* fp32 GEMM micro-kernel, AVX-512: the first 16 columns of a 12x32 tile, from the 12x32
 * kernel's B panels (template in f16_gemm_avx512vnni.h): a last column panel of 16 (N = 16,
 * 48, ...) no longer costs 32 columns of FMAs. Fused and indirect entries; the same floats
 * as the 12x32 kernel's first 16 columns. */
#define QK_MR 12
#define QK_NV 1
#define QK_B_NV 2
#define QK_CHAINS 1
#define QK_GEMM_NAME QK_VNNI_FN(f32_gemm_12x16of32_avx512vnni)
#define QK_GEMM_FUSED_NAME QK_VNNI_FN(f32_gemm_12x16of32_fused_avx512vnni)
#define QK_IGEMM_NAME QK_VNNI_FN(f32_igemm_12x16of32_avx512vnni)
#define QK_IGEMM_FUSED_NAME QK_VNNI_FN(f32_igemm_12x16of32_fused_avx512vnni)
#define QK_B_F32
#include "f16_gemm_avx512vnni.h"
