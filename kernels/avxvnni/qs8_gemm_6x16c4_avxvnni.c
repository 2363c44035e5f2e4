/* int8 GEMM micro-kernel, AVX-VNNI (VEX, ymm; Alder Lake and later, Zen 5): the AVX2 6x16
 * u8 x s8 kernel with vpdpbusd as the multiply-add of a K quad, so exact for any weights
 * (no 7-bit condition). VEX encodings reach only ymm0-15: 12 accumulators, 2 of B, 1 of A. */
#include "qk_vnni.h"
#define QK_GEMM_NAME QK_VNNI_FN(qs8_gemm_6x16c4_avxvnni)
#define QK_FUSED_NAME QK_VNNI_FN(qs8_gemm_6x16c4_fused_avxvnni)
#define QK_MAC(c, a, b) qk_dpbusd256(c, a, b)
#include "../avx2/qs8_gemm_6x16_avx2.h"
