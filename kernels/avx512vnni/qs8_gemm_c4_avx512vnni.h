/* Template of the AVX-512 VNNI int8 GEMM micro-kernels: QK_MR rows x 16*QK_NV columns, K in
 * quads. A uint8 (int8 flipped), B int8, both as the AVX2 u8s7 kernel packs them, but for
 * any weights: vpdpbusd adds the four u8 x s8 products of a quad into int32 with no int16
 * step, so it is exact. Zero points and the +128 shift of int8 activations are folded into
 * the column terms and row sums of the output stage (qk_output.h). Per K quad: QK_NV loads
 * of B, QK_MR broadcasts of A, QK_MR * QK_NV vpdpbusd on as many zmm accumulators (the
 * arrays are fully unrolled into registers).
 * zmm, not ymm: on the Intel machine measured (family 6 model 207) independent vpdpbusd
 * retire two per cycle in either width, so zmm doubles the MACs (720 vs 360 GOP/s);
 * Zen 4 splits zmm into two ymm halves, where the two are even. 12x32 (24 accumulators,
 * 14 loads per 24 vpdpbusd) against 8x32, 6x64 and 8x48 on this machine: 12x32 and 6x64
 * led (~750 GOP/s on a quiet core, 1024^3 panels), 8x32 ~15 % behind; 12x32 wastes less
 * on N = 24 or 144 layers. Define before including:
 *   QK_MR, QK_NV                  the tile
 *   QK_GEMM_NAME, QK_FUSED_NAME   the two functions (through QK_VNNI_FN) */
#include "qk_gemm.h"
#include "qk_vnni.h"
/* B panels stream once per tile from L2 or memory: each quad asks for its lines this many
 * bytes ahead (12 and 16 rows of 384 x 1536 / 1536 x 384 weight chains: 1.1-1.25x, 128
 * rows 1.04x, measured A/B in one process on family 6 model 207). */
#ifndef QK_PREFETCH_B
#define QK_PREFETCH_B 2048
#endif

void QK_GEMM_NAME(size_t k_groups, const void *a_, const void *b_, int32_t *acc) {
    const uint8_t *pa = (const uint8_t *)a_, *pb = (const uint8_t *)b_;
    const size_t kp = 4 * k_groups;   /* row stride of the row-major A panel, in bytes */
    qk_v512 c[QK_MR][QK_NV];
#pragma GCC unroll 16
    for (int i = 0; i < QK_MR; i++)
#pragma GCC unroll 4
        for (int j = 0; j < QK_NV; j++) c[i][j] = qk512_zero();
    for (size_t g = 0; g < k_groups; g++, pa += 4, pb += 64 * QK_NV) {
#pragma GCC unroll 4
        for (int j = 0; j < QK_NV; j++) _mm_prefetch((const char *)(pb + 64 * j) + QK_PREFETCH_B, _MM_HINT_T0);
        qk_v512 b[QK_NV];
#pragma GCC unroll 4
        for (int j = 0; j < QK_NV; j++) b[j] = qk512_load(pb + 64 * j);
#pragma GCC unroll 16
        for (int i = 0; i < QK_MR; i++) {
            const qk_v512 a = qk512_bcast32(pa + i * kp);
#pragma GCC unroll 4
            for (int j = 0; j < QK_NV; j++) c[i][j] = qk512_dpbusd(c[i][j], a, b[j]);
        }
    }
#pragma GCC unroll 16
    for (int i = 0; i < QK_MR; i++)
#pragma GCC unroll 4
        for (int j = 0; j < QK_NV; j++) qk512_store(acc + (i * QK_NV + j) * 16, c[i][j]);
}

void QK_VNNI_FN(qk_store_cols_avx512vnni)(size_t mr, size_t strips, const int32_t *acc, size_t acc_stride, size_t m0,
                                          size_t n0, const qk_out_params *p, void *c, size_t c_stride);

/* Tiles of int32 or fp32 output, nc / 16 strips of 16 columns: the zmm epilogue
 * (qs8_output_avx512vnni.c). */
void QK_FUSED_NAME(size_t k_groups, const void *a_, const void *b_, size_t m0, size_t n0, size_t nc,
                   const qk_out_params *p, void *c, size_t c_stride) {
    int32_t acc[QK_MR * QK_NV * 16];
    QK_GEMM_NAME(k_groups, a_, b_, acc);
    QK_VNNI_FN(qk_store_cols_avx512vnni)(QK_MR, nc / 16, acc, 16 * QK_NV, m0, n0, p, c, c_stride);
}
