/* Max pooling of NHWC memory with AVX-512 (template: kernels/include/qk_pool_simd.h); the
 * emulated build (QK_VNNI_EMULATED, AVX2 flags) takes the template's 256-bit vocabulary. */
#include "qk_vnni.h"
#define QK_MP_NAME(name) QK_VNNI_FN(name##_avx512)
#ifndef QK_VNNI_EMULATED
#define QK_MP_512
#endif
#include "qk_pool_simd.h"
