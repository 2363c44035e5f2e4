/* int8 GEMM micro-kernel, AVX2: 6x16 tile, K in pairs, int16 zero-folded panels (A and
 * B): vpmaddwd multiplies and adds pairs exactly, for any input. */
#define QK_GEMM_NAME qs8_gemm_6x16c2_avx2
#define QK_FUSED_NAME qs8_gemm_6x16c2_fused_avx2
#define QK_DOT(a, b) _mm256_madd_epi16(a, b)
#include "qs8_gemm_6x16_avx2.h"
