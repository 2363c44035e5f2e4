/* The table of GEMM micro-kernels, one per ISA, filled at compile time from what
 * this build compiled (x86-64 builds have no NEON kernels and vice versa). */
#include "qk_common.h"

void qs8_gemm_2x4c2_scalar(size_t, const void *, const void *, int32_t *);
void qk_output_scalar(size_t, size_t, const int32_t *, size_t, size_t, size_t, const qk_out_params *, void *, size_t);

static const qk_gemm_kernel scalar_kernel = {"qs8_gemm_2x4c2_scalar", QK_ISA_SCALAR, 2, 4, 2, QK_PACK_I16,
                                             qs8_gemm_2x4c2_scalar, qk_output_scalar};

#if defined(__x86_64__)
void qs8_gemm_6x16c2_avx2(size_t, const void *, const void *, int32_t *);
void qk_output_avx2(size_t, size_t, const int32_t *, size_t, size_t, size_t, const qk_out_params *, void *, size_t);
static const qk_gemm_kernel avx2_kernel = {"qs8_gemm_6x16c2_avx2", QK_ISA_AVX2, 6, 16, 2, QK_PACK_I16,
                                           qs8_gemm_6x16c2_avx2, qk_output_avx2};
#endif

#if defined(__aarch64__)
void qs8_gemm_4x8_neon_mlal(size_t, const void *, const void *, int32_t *);
void qs8_gemm_4x16c4_neondot(size_t, const void *, const void *, int32_t *);
void qs8_gemm_4x8c8_i8mm(size_t, const void *, const void *, int32_t *);
void qk_output_neon(size_t, size_t, const int32_t *, size_t, size_t, size_t, const qk_out_params *, void *, size_t);
static const qk_gemm_kernel neon_kernel = {"qs8_gemm_4x8_neon_mlal", QK_ISA_NEON, 4, 8, 1, QK_PACK_I16,
                                           qs8_gemm_4x8_neon_mlal, qk_output_neon};
static const qk_gemm_kernel neondot_kernel = {"qs8_gemm_4x16c4_neondot", QK_ISA_NEONDOT, 4, 16, 4, QK_PACK_S8,
                                              qs8_gemm_4x16c4_neondot, qk_output_neon};
static const qk_gemm_kernel i8mm_kernel = {"qs8_gemm_4x8c8_i8mm", QK_ISA_I8MM, 4, 8, 8, QK_PACK_S8,
                                           qs8_gemm_4x8c8_i8mm, qk_output_neon};
#endif

const qk_gemm_kernel *qk_gemm_kernel_for_isa(int isa) {
    switch (isa) {
    case QK_ISA_SCALAR: return &scalar_kernel;
#if defined(__x86_64__)
    case QK_ISA_AVX2: return &avx2_kernel;
#endif
#if defined(__aarch64__)
    case QK_ISA_NEON: return &neon_kernel;
    case QK_ISA_NEONDOT: return &neondot_kernel;
    case QK_ISA_I8MM: return &i8mm_kernel;
#endif
    default: return NULL;
    }
}

const char *qk_isa_name(int isa) {
    static const char *names[QK_ISA_COUNT] = {"scalar", "avx2", "neon", "neondot", "i8mm"};
    return isa >= 0 && isa < QK_ISA_COUNT ? names[isa] : "unknown";
}
