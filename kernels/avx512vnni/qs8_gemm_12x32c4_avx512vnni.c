/* int8 GEMM micro-kernel, AVX-512 VNNI: a 12x32 tile (template and why in qs8_gemm_c4_avx512vnni.h),
 * with the indirect entries (uint8 convolutions read in place). */
#define QK_MR 12
#define QK_NV 2
#define QK_GEMM_NAME QK_VNNI_FN(qs8_gemm_12x32c4_avx512vnni)
#define QK_FUSED_NAME QK_VNNI_FN(qs8_gemm_12x32c4_fused_avx512vnni)
#define QK_IGEMM_NAME QK_VNNI_FN(qs8_igemm_12x32c4_avx512vnni)
#define QK_IGEMM_FUSED_NAME QK_VNNI_FN(qs8_igemm_12x32c4_fused_avx512vnni)
#include "qs8_gemm_c4_avx512vnni.h"
