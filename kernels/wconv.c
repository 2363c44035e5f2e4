/* Winograd F(2x2, 3x3) fp32 convolution (qk_wconv.h): each ISA path's block function and
 * the GEMM kernel it drives. */
#include "qk_registry.h"
#include "qk_wconv.h"

#if defined(__x86_64__)
void qk_f32_wconv_avx512(const qk_wconv *w, size_t t0, size_t t1, float *scratch);
void qk_f32_wconv_avx512_emu(const qk_wconv *w, size_t t0, size_t t1, float *scratch);
#endif

qk_f32_wconv_fn qk_f32_wconv_for_isa(int isa) {
#if defined(__x86_64__)
    if (isa == QK_ISA_AVX512VNNI) return qk_f32_wconv_avx512;
    if (isa == QK_ISA_AVX512VNNI_EMU) return qk_f32_wconv_avx512_emu;
#endif
    (void)isa;
    return NULL;
}

int qk_wconv_set_kernel(qk_wconv *w, const qk_ukernel *kern) {
    if (!kern || kern->kind != QK_KIND_GEMM || kern->dtype != QK_DTYPE_F32 || kern->mr != QK_WCONV_MR ||
        kern->nr != QK_WCONV_NR || !kern->igemm)
        return 0;
    w->igemm = kern->igemm;
    return 1;
}
