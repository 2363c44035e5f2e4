/* fp32 GEMM micro-kernel, AVX-512: a 1x32 tile for M <= 2 (GEMV), the panels of the 12x32
 * kernel; K split over two accumulator sets (four chains) against FMA latency. */
#define QK_MR 1
#define QK_NV 2
#define QK_CHAINS 2
#define QK_GEMM_NAME QK_VNNI_FN(f32_gemm_1x32_avx512vnni)
#define QK_B_F32
#include "f16_gemm_avx512vnni.h"
