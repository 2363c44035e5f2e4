/* int8 GEMM micro-kernel, AVX2: 6x16 tile, K in quads; A uint8, B int8 whose every
 * pair along K has |b(k)| + |b(k+1)| <= 128 (7-bit weights, as ONNX Runtime advises
 * for AVX2, always qualify). Then vpmaddubsw's int16 pair sums cannot saturate
 * (255 * 128 = 32640), so it is exact, and it multiplies twice the pairs per
 * instruction of vpmaddwd. The pack-time check on the weights decides; zero points
 * are applied by the output stage with column and row sums. */
#define QK_GEMM_NAME qs8_gemm_6x16c4_u8s7_avx2
#define QK_FUSED_NAME qs8_gemm_6x16c4_u8s7_fused_avx2
#define QK_DOT(a, b) _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), ones)
#include "qs8_gemm_6x16_avx2.h"
