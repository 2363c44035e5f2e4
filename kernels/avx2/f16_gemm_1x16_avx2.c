/* fp16 GEMM micro-kernel, x86 (AVX2, FMA, F16C): 1x16 tile for M <= 2 (GEMV): the 6-row
 * kernel would compute five rows of padding; B as fp16 panels, half the memory of float
 * weights, converted with vcvtph2ps as they stream in (template: float_gemm_avx2.h). */
#define QK_B_TYPE uint16_t
#define QK_LOAD_B8(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(p)))
#define QK_GEMM_1X16 f16_gemm_1x16_avx2
#include "float_gemm_avx2.h"
