/* The table of GEMM micro-kernels, filled at compile time from what this build
 * compiled (x86-64 builds have no NEON kernels and vice versa). For each ISA the
 * selection takes the first kernel whose max_m admits M and whose condition on the
 * weights holds, so small-M and weight-specific kernels come before the general one. */
#include "qk_common.h"
#include "qk_f16.h"

typedef void ukernel(size_t, const void *, const void *, int32_t *);
typedef void output_stage(size_t, size_t, const int32_t *, size_t, size_t, size_t, const qk_out_params *,
                          void *, size_t);

ukernel qs8_gemm_2x4c2_scalar;
output_stage qk_output_scalar, qk_output_f16_scalar;
ukernel f16_gemm_4x8_scalar;
#if defined(__x86_64__)
ukernel f16_gemm_6x16_avx2, f16_gemm_1x16_avx2;
output_stage qk_output_f16_avx2;
ukernel qs8_gemm_6x16c2_avx2, qs8_gemm_1x16c2_avx2, qs8_gemm_6x16c4_u8s7_avx2;
void qs8_gemm_6x16c2_fused_avx2(size_t, const void *, const void *, size_t, size_t, const qk_out_params *,
                                void *, size_t);
void qs8_gemm_6x16c4_u8s7_fused_avx2(size_t, const void *, const void *, size_t, size_t,
                                     const qk_out_params *, void *, size_t);
output_stage qk_output_avx2;
#endif
#if defined(__aarch64__)
ukernel qs8_gemm_4x8_neon_mlal, qs8_gemm_4x16c4_neondot, qs8_gemm_4x8c8_i8mm;
ukernel f16_gemm_8x8_neon, f16_gemm_8x8_neonfp16;
output_stage qk_output_neon, qk_output_f16_neon;
#endif

#define I16 QK_PACK_I16
#define S8 QK_PACK_S8
#define U8 QK_PACK_U8
#define F32 QK_PACK_F32
#define F32R QK_PACK_F32_ROWS
#define F16 QK_PACK_F16
#define FP16 QK_DTYPE_F16
static const qk_gemm_kernel kernels[] = {
    /* name                       ISA              mr nr kr  A    B   max_m pairs<=128 */
    {"qs8_gemm_2x4c2_scalar", QK_ISA_SCALAR, 2, 4, 2, I16, I16, 0, 0, qs8_gemm_2x4c2_scalar, qk_output_scalar},
    {"f16_gemm_4x8_scalar", QK_ISA_SCALAR, 4, 8, 1, F32R, F32, 0, 0, f16_gemm_4x8_scalar, qk_output_f16_scalar,
     NULL, FP16, 0},
#if defined(__x86_64__)
    {"f16_gemm_1x16_avx2", QK_ISA_AVX2, 1, 16, 1, F32R, F16, 2, 0, f16_gemm_1x16_avx2, qk_output_f16_avx2,
     NULL, FP16, 0},
    {"f16_gemm_6x16_avx2", QK_ISA_AVX2, 6, 16, 1, F32R, F16, 0, 0, f16_gemm_6x16_avx2, qk_output_f16_avx2,
     NULL, FP16, 0},
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
    {"f16_gemm_8x8_neonfp16", QK_ISA_NEONDOT, 8, 8, 1, F16, F16, 0, 0, f16_gemm_8x8_neonfp16, qk_output_f16_neon,
     NULL, FP16, 1},
    {"f16_gemm_8x8_neon", QK_ISA_NEON, 8, 8, 1, F32, F16, 0, 0, f16_gemm_8x8_neon, qk_output_f16_neon,
     NULL, FP16, 0},
#endif
};

int qk_gemm_kernel_count(void) { return (int)(sizeof(kernels) / sizeof(kernels[0])); }

const qk_gemm_kernel *qk_gemm_kernel_get(int id) {
    return id >= 0 && id < qk_gemm_kernel_count() ? &kernels[id] : NULL;
}

/* CPU features once: cpuid traps to the hypervisor in VMs (tens of microseconds). */
static uint32_t features(void) {
    static volatile int64_t cached = -1;   /* benign race: every thread stores the same value */
    if (cached < 0) cached = qk_cpu_features();
    return (uint32_t)cached;
}

static int select_exact(int dtype, int isa, size_t m, int b_pairs_128) {
    const int fp16_arith = (features() & QK_CPU_ASIMDHP) != 0;
    for (int id = 0; id < qk_gemm_kernel_count(); id++) {
        const qk_gemm_kernel *k = &kernels[id];
        if (k->dtype == dtype && k->isa == isa && (k->max_m == 0 || m <= k->max_m) &&
            (!k->needs_pairs_128 || b_pairs_128) && (!k->needs_fp16_arith || fp16_arith))
            return id;
    }
    return -1;
}

int qk_gemm_kernel_select(int dtype, int isa, size_t m, int b_pairs_128) {
    int id = select_exact(dtype, isa, m, b_pairs_128);
    if (dtype == QK_DTYPE_F16)   /* i8mm -> neondot -> neon */
        for (int fallback = isa; id < 0 && (fallback == QK_ISA_I8MM || fallback == QK_ISA_NEONDOT);)
            id = select_exact(dtype, --fallback, m, b_pairs_128);
    return id;
}

const char *qk_isa_name(int isa) {
    static const char *names[QK_ISA_COUNT] = {"scalar", "avx2", "neon", "neondot", "i8mm"};
    return isa >= 0 && isa < QK_ISA_COUNT ? names[isa] : "unknown";
}

#if defined(__x86_64__)
size_t qk_dw_sum_avx2(const qk_dw_params *, size_t, const uint8_t *const *, size_t, ptrdiff_t, size_t, int32_t *,
                      size_t, size_t, size_t *);
size_t qk_dw_sum_f16_avx2(const qk_dw_params *, size_t, const uint8_t *const *, size_t, ptrdiff_t, size_t,
                          int32_t *, size_t, size_t, size_t *);
#elif defined(__aarch64__)
size_t qk_dw_sum_neon(const qk_dw_params *, size_t, const uint8_t *const *, size_t, ptrdiff_t, size_t, int32_t *,
                      size_t, size_t, size_t *);
size_t qk_dw_sum_f16_neon(const qk_dw_params *, size_t, const uint8_t *const *, size_t, ptrdiff_t, size_t,
                          int32_t *, size_t, size_t, size_t *);
#endif

#if defined(__x86_64__)
void qk_f16_to_f32_row_f16c(const uint16_t *, float *, size_t);
#elif defined(__aarch64__)
void qk_f16_to_f32_row_neon(const uint16_t *, float *, size_t);
#endif

static void f16_to_f32_row_portable(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = qk_f16_to_f32(src[i]);
}

qk_f16_row_fn qk_f16_row_converter(void) {
#if defined(__x86_64__)
    if (features() & QK_CPU_F16C) return qk_f16_to_f32_row_f16c;
#elif defined(__aarch64__)
    return qk_f16_to_f32_row_neon;
#endif
    return f16_to_f32_row_portable;
}

qk_dw_sum_fn qk_dw_sum_for_isa(int dtype, int isa) {
    const int f16 = dtype == QK_DTYPE_F16;
#if defined(__x86_64__)
    if (isa == QK_ISA_AVX2) return f16 ? qk_dw_sum_f16_avx2 : qk_dw_sum_avx2;
#elif defined(__aarch64__)
    if (isa == QK_ISA_NEON || isa == QK_ISA_NEONDOT || isa == QK_ISA_I8MM) return f16 ? qk_dw_sum_f16_neon : qk_dw_sum_neon;
#endif
    return f16 ? qk_dw_sum_f16_scalar : qk_dw_sum_scalar;
}
