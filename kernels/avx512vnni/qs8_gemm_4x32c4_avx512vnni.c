/* int8 GEMM micro-kernel, AVX-512 VNNI: a 4x32 tile (template in qs8_gemm_c4_avx512vnni.h) on
 * the 12x32 kernel's row-major panels: M of 3-4 and a 12-row GEMM's last 4 rows
 * (16 tokens: 12 + 4; 128: 10 x 12 + 8) without rows of padding. */
#define QK_MR 4
#define QK_NV 2
#define QK_GEMM_NAME QK_VNNI_FN(qs8_gemm_4x32c4_avx512vnni)
#define QK_FUSED_NAME QK_VNNI_FN(qs8_gemm_4x32c4_fused_avx512vnni)
#include "qs8_gemm_c4_avx512vnni.h"
