/* Max pooling of NHWC memory with AVX2 (template: kernels/include/qk_pool_simd.h). */
#define QK_MP_NAME(name) name##_avx2
#include "qk_pool_simd.h"
