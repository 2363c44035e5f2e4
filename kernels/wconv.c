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
    /* the emulated build: AVX2 and FMA instructions only */
    if (isa == QK_ISA_AVX512VNNI_EMU || isa == QK_ISA_AVX2) return qk_f32_wconv_avx512_emu;
#endif
    (void)isa;
    return NULL;
}

int qk_wconv_set_kernel(qk_wconv *w, const qk_ukernel *kern) {
    if (!kern || kern->kind != QK_KIND_GEMM || kern->dtype != QK_DTYPE_F32 || !kern->gemm || kern->kr != 1 ||
        (kern->a_pack & ~QK_PACK_SRC_F32) != QK_PACK_F32_ROWS || kern->mr < 1 || QK_WCONV_MR % kern->mr ||
        (kern->nr != 16 && kern->nr != 32))
        return 0;
    w->gemm = kern->gemm;
    w->mr = (size_t)kern->mr;
    w->nr = (size_t)kern->nr;
    return 1;
}
