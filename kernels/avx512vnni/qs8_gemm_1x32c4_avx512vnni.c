/* int8 GEMV micro-kernel, AVX-512 VNNI: 1x32 tile for M <= 2, the panels of the 8x32
 * kernel. One row gives only two accumulator chains, and vpdpbusd's latency (5 cycles)
 * would bound them: four K quads per step on independent accumulators, summed at the end
 * (int32 adds wrap alike in any order: exact). */
#include "qk_gemm.h"
#include "qk_vnni.h"

void QK_VNNI_FN(qs8_gemm_1x32c4_avx512vnni)(size_t k_groups, const void *a_, const void *b_, int32_t *acc) {
    const uint8_t *pa = (const uint8_t *)a_, *pb = (const uint8_t *)b_;
    qk_v512 c0 = qk512_zero(), c1 = c0, d0 = c0, d1 = c0, e0 = c0, e1 = c0, f0 = c0, f1 = c0;
    size_t g = 0;
    for (; g + 4 <= k_groups; g += 4, pa += 16, pb += 512) {
        const qk_v512 a0 = qk512_bcast32(pa), a1 = qk512_bcast32(pa + 4);
        const qk_v512 a2 = qk512_bcast32(pa + 8), a3 = qk512_bcast32(pa + 12);
        c0 = qk512_dpbusd(c0, a0, qk512_load(pb));
        c1 = qk512_dpbusd(c1, a0, qk512_load(pb + 64));
        d0 = qk512_dpbusd(d0, a1, qk512_load(pb + 128));
        d1 = qk512_dpbusd(d1, a1, qk512_load(pb + 192));
        e0 = qk512_dpbusd(e0, a2, qk512_load(pb + 256));
        e1 = qk512_dpbusd(e1, a2, qk512_load(pb + 320));
        f0 = qk512_dpbusd(f0, a3, qk512_load(pb + 384));
        f1 = qk512_dpbusd(f1, a3, qk512_load(pb + 448));
    }
    for (; g < k_groups; g++, pa += 4, pb += 128) {
        const qk_v512 a0 = qk512_bcast32(pa);
        c0 = qk512_dpbusd(c0, a0, qk512_load(pb));
        c1 = qk512_dpbusd(c1, a0, qk512_load(pb + 64));
    }
    qk512_store(acc, qk512_add(qk512_add(c0, d0), qk512_add(e0, f0)));
    qk512_store(acc + 16, qk512_add(qk512_add(c1, d1), qk512_add(e1, f1)));
}

void QK_VNNI_FN(qk_store_cols_avx512vnni)(size_t mr, size_t strips, const int32_t *acc, size_t acc_stride, size_t m0,
                                          size_t n0, const qk_out_params *p, void *c, size_t c_stride);

/* The row through the zmm epilogue (qs8_output_avx512vnni.c), not the generic AVX2
 * stage: a GEMV's 1024 outputs took 5 % of its time there. */
void QK_VNNI_FN(qs8_gemm_1x32c4_fused_avx512vnni)(size_t k_groups, const void *a_, const void *b_, size_t m0, size_t n0,
                                                  size_t nc, const qk_out_params *p, void *c, size_t c_stride) {
    int32_t acc[32];
    QK_VNNI_FN(qs8_gemm_1x32c4_avx512vnni)(k_groups, a_, b_, acc);
    QK_VNNI_FN(qk_store_cols_avx512vnni)(1, nc / 16, acc, 32, m0, n0, p, c, c_stride);
}

/* The row across nc / 32 whole panels (laid one after another, 128 k_groups bytes each):
 * four panels at a time, each two accumulators (eight independent chains), so four
 * streams of B come from L2 at once: a 1024 x 1024 GEMV's 1 MB of panels read 6-7 %
 * faster than panel by panel (7.1-7.3 us against 7.6-7.9 in a C harness; 2, 8 panels
 * or two quads per step did worse), and one call per row block in place of one per
 * panel: the bound GEMV 8.45 us against 9.12 (family 6 model 207, 1 thread). Each group of four stores through the zmm
 * epilogue at once (128 columns); fewer than four panels left go one by one. */
void QK_VNNI_FN(qs8_gemm_1x32c4_panels_avx512vnni)(size_t k_groups, const void *a_, const void *b_, size_t m0,
                                                   size_t n0, size_t nc, const qk_out_params *p, void *c,
                                                   size_t c_stride) {
    const size_t panel = 128 * k_groups;
    const uint8_t *pb = (const uint8_t *)b_;
    size_t n = 0;
    for (; n + 128 <= nc; n += 128, pb += 4 * panel) {
        qk_v512 s[4][2];
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) s[j][0] = s[j][1] = qk512_zero();
        const uint8_t *pa = (const uint8_t *)a_, *q = pb;
        for (size_t g = 0; g < k_groups; g++, pa += 4, q += 128) {
            const qk_v512 a0 = qk512_bcast32(pa);
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                s[j][0] = qk512_dpbusd(s[j][0], a0, qk512_load(q + j * panel));
                s[j][1] = qk512_dpbusd(s[j][1], a0, qk512_load(q + j * panel + 64));
            }
        }
        int32_t acc[128];
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            qk512_store(acc + 32 * j, s[j][0]);
            qk512_store(acc + 32 * j + 16, s[j][1]);
        }
        QK_VNNI_FN(qk_store_cols_avx512vnni)(1, 8, acc, 128, m0, n0 + n, p, c, c_stride);
    }
    for (; n < nc; n += 32, pb += panel)
        QK_VNNI_FN(qs8_gemm_1x32c4_fused_avx512vnni)(k_groups, a_, pb, m0, n0 + n, 32, p, c, c_stride);
}
