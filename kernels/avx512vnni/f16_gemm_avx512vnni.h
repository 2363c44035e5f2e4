/* Template of the AVX-512 fp16 and fp32 GEMM micro-kernels: QK_MR rows x 16*QK_NV columns. A
 * as float rows (QK_PACK_F32_ROWS), broadcast one value at a time; B as fp16 panels, 16 values
 * converted per vcvtph2ps zmm as they stream in (QK_B_F32 defined: float panels, loaded as
 * they are); fp32 FMA. QK_CHAINS > 1 (small M) splits
 * K over that many independent accumulator sets, summed at the end, so that FMA latency
 * does not bound a tile with few accumulators; with QK_CHAINS 1 every sum is
 * c = fma(a_k, b_k, c) in increasing k from zero, the order of f16_gemm_6x16_avx2, so both
 * give the same floats. Define before including:
 *   QK_MR, QK_NV, QK_CHAINS    the tile and the K split
 *   QK_GEMM_NAME               the function (through QK_VNNI_FN) */
#include "qk_gemm.h"
#include "qk_vnni.h"
#ifdef QK_B_F32
typedef float qk_b_elem;
#define QK_LOAD_B(p) qk512f_load(p)
#else
typedef uint16_t qk_b_elem;
#define QK_LOAD_B(p) qk512f_load_f16(p)
#endif

void QK_GEMM_NAME(size_t k, const void *a_, const void *b_, int32_t *acc) {
    const float *pa = (const float *)a_;   /* QK_MR rows of k floats */
    const qk_b_elem *pb = (const qk_b_elem *)b_;
    qk_v512f c[QK_CHAINS][QK_MR][QK_NV];
#pragma GCC unroll 4
    for (int s = 0; s < QK_CHAINS; s++)
#pragma GCC unroll 16
        for (int i = 0; i < QK_MR; i++)
#pragma GCC unroll 4
            for (int j = 0; j < QK_NV; j++) c[s][i][j] = qk512f_zero();
    size_t kk = 0;
    for (; kk + QK_CHAINS <= k; kk += QK_CHAINS) {
#pragma GCC unroll 4
        for (int s = 0; s < QK_CHAINS; s++) {
            const qk_b_elem *bk = pb + (kk + s) * 16 * QK_NV;
            qk_v512f b[QK_NV];
#pragma GCC unroll 4
            for (int j = 0; j < QK_NV; j++) b[j] = QK_LOAD_B(bk + 16 * j);
#pragma GCC unroll 16
            for (int i = 0; i < QK_MR; i++) {
                const qk_v512f a = qk512f_bcast(pa + i * k + kk + s);
#pragma GCC unroll 4
                for (int j = 0; j < QK_NV; j++) c[s][i][j] = qk512f_fmadd(a, b[j], c[s][i][j]);
            }
        }
    }
    for (; kk < k; kk++) {   /* the last k % QK_CHAINS on the first set */
        const qk_b_elem *bk = pb + kk * 16 * QK_NV;
#pragma GCC unroll 16
        for (int i = 0; i < QK_MR; i++) {
            const qk_v512f a = qk512f_bcast(pa + i * k + kk);
#pragma GCC unroll 4
            for (int j = 0; j < QK_NV; j++) c[0][i][j] = qk512f_fmadd(a, QK_LOAD_B(bk + 16 * j), c[0][i][j]);
        }
    }
    float *out = (float *)acc;
#pragma GCC unroll 16
    for (int i = 0; i < QK_MR; i++)
#pragma GCC unroll 4
        for (int j = 0; j < QK_NV; j++) {
            qk_v512f v = c[0][i][j];
#pragma GCC unroll 4
            for (int s = 1; s < QK_CHAINS; s++) v = qk512f_add(v, c[s][i][j]);
            qk512f_store(out + (i * QK_NV + j) * 16, v);
        }
}
#undef QK_LOAD_B
