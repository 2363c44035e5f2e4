/* The table of GEMM micro-kernels, filled at compile time from what this build
 * compiled (x86-64 builds have no NEON kernels and vice versa). For each ISA the
 * selection takes the first kernel whose max_m admits M and whose condition on the
 * weights holds, so small-M and weight-specific kernels come before the general one. */
#include "qk_common.h"

typedef void ukernel(size_t, const void *, const void *, int32_t *);
typedef void output_stage(size_t, size_t, const int32_t *, size_t, size_t, size_t, const qk_out_params *,
                          void *, size_t);

ukernel qs8_gemm_2x4c2_scalar;
output_stage qk_output_scalar;
#if defined(__x86_64__)
ukernel qs8_gemm_6x16c2_avx2, qs8_gemm_1x16c2_avx2, qs8_gemm_6x16c4_u8s7_avx2;
void qs8_gemm_6x16c2_fused_avx2(size_t, const void *, const void *, size_t, size_t, const qk_out_params *,
                                void *, size_t);
void qs8_gemm_6x16c4_u8s7_fused_avx2(size_t, const void *, const void *, size_t, size_t,
                                     const qk_out_params *, void *, size_t);
output_stage qk_output_avx2;
#endif
#if defined(__aarch64__)
ukernel qs8_gemm_4x8_neon_mlal, qs8_gemm_4x16c4_neondot, qs8_gemm_4x8c8_i8mm;
output_stage qk_output_neon;
#endif

#define I16 QK_PACK_I16
#define S8 QK_PACK_S8
#define U8 QK_PACK_U8
static const qk_gemm_kernel kernels[] = {
    /* name                       ISA              mr nr kr  A    B   max_m pairs<=128 */
    {"qs8_gemm_2x4c2_scalar", QK_ISA_SCALAR, 2, 4, 2, I16, I16, 0, 0, qs8_gemm_2x4c2_scalar, qk_output_scalar},
#if defined(__x86_64__)
    {"qs8_gemm_1x16c2_avx2", QK_ISA_AVX2, 1, 16, 2, I16, S8, 2, 0, qs8_gemm_1x16c2_avx2, qk_output_avx2},
    {"qs8_gemm_6x16c4_u8s7_avx2", QK_ISA_AVX2, 6, 16, 4, U8, S8, 0, 1, qs8_gemm_6x16c4_u8s7_avx2,
     qk_output_avx2, qs8_gemm_6x16c4_u8s7_fused_avx2},
    {"qs8_gemm_6x16c2_avx2", QK_ISA_AVX2, 6, 16, 2, I16, I16, 0, 0, qs8_gemm_6x16c2_avx2, qk_output_avx2,
     qs8_gemm_6x16c2_fused_avx2},
#endif
#if defined(__aarch64__)
    {"qs8_gemm_4x8_neon_mlal", QK_ISA_NEON, 4, 8, 1, I16, I16, 0, 0, qs8_gemm_4x8_neon_mlal, qk_output_neon},
    {"qs8_gemm_4x16c4_neondot", QK_ISA_NEONDOT, 4, 16, 4, S8, S8, 0, 0, qs8_gemm_4x16c4_neondot, qk_output_neon},
    {"qs8_gemm_4x8c8_i8mm", QK_ISA_I8MM, 4, 8, 8, S8, S8, 0, 0, qs8_gemm_4x8c8_i8mm, qk_output_neon},
#endif
};

int qk_gemm_kernel_count(void) { return (int)(sizeof(kernels) / sizeof(kernels[0])); }

const qk_gemm_kernel *qk_gemm_kernel_get(int id) {
    return id >= 0 && id < qk_gemm_kernel_count() ? &kernels[id] : NULL;
}

int qk_gemm_kernel_select(int isa, size_t m, int b_pairs_128) {
    for (int id = 0; id < qk_gemm_kernel_count(); id++) {
        const qk_gemm_kernel *k = &kernels[id];
        if (k->isa == isa && (k->max_m == 0 || m <= k->max_m) && (!k->needs_pairs_128 || b_pairs_128))
            return id;
    }
    return -1;
}

const char *qk_isa_name(int isa) {
    static const char *names[QK_ISA_COUNT] = {"scalar", "avx2", "neon", "neondot", "i8mm"};
    return isa >= 0 && isa < QK_ISA_COUNT ? names[isa] : "unknown";
}

#if defined(__x86_64__)
size_t qk_dw_sum_avx2(const qk_dw_params *, size_t, const uint8_t *const *, size_t, ptrdiff_t, size_t, int32_t *,
                      size_t, size_t, size_t *);
#elif defined(__aarch64__)
size_t qk_dw_sum_neon(const qk_dw_params *, size_t, const uint8_t *const *, size_t, ptrdiff_t, size_t, int32_t *,
                      size_t, size_t, size_t *);
#endif

qk_dw_sum_fn qk_dw_sum_for_isa(int isa) {
#if defined(__x86_64__)
    if (isa == QK_ISA_AVX2) return qk_dw_sum_avx2;
#elif defined(__aarch64__)
    if (isa == QK_ISA_NEON || isa == QK_ISA_NEONDOT || isa == QK_ISA_I8MM) return qk_dw_sum_neon;
#endif
    return qk_dw_sum_scalar;
}
