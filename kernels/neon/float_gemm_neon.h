/* Template of the NEON float GEMM micro-kernels: 8x8 tile, A as float panels
 * (QK_PACK_F32), B as panels of QK_B_ELEM (fp16 converted as they stream in, for Arm
 * without FP16 arithmetic; fp32 as they are), fp32 FMA by element into 16 named
 * accumulators (with arrays, GCC 12 kept them on the stack and stored them back at every
 * k step), the loads (and conversion) of step k+1 issued before the FMAs of step k (for
 * in-order cores). Each accumulator takes its products in k order. docs/performance.md,
 * "Arm kernels by simulation". Define before including:
 *   QK_GEMM_NAME, QK_B_ELEM (stored type), QK_B_RAW (one k step's 8 values as loaded),
 *   QK_B_LOAD(p), QK_B_LO(raw), QK_B_HI(raw) (its columns 0-3 and 4-7 as float32x4_t) */
#include <arm_neon.h>
#include "qk_gemm.h"

/* row i: its 8 columns (b0: 0-3, b1: 4-7) += b * lane l of the A register a */
#define QK_F32_ROW(i, a, l)                                                      \
    do {                                                                         \
        c##i##l_ = vfmaq_laneq_f32(c##i##l_, b0, a, l);                          \
        c##i##h_ = vfmaq_laneq_f32(c##i##h_, b1, a, l);                          \
    } while (0)
#define QK_F32_STORE(i)                                                          \
    do {                                                                         \
        vst1q_f32(c + 8 * i, c##i##l_);                                          \
        vst1q_f32(c + 8 * i + 4, c##i##h_);                                      \
    } while (0)

void QK_GEMM_NAME(size_t k, const void *a, const void *b, int32_t *acc) {
    const float *ap = (const float *)a;
    const QK_B_ELEM *bp = (const QK_B_ELEM *)b;
    float32x4_t c0l_ = vdupq_n_f32(0.0f), c0h_ = c0l_, c1l_ = c0l_, c1h_ = c0l_, c2l_ = c0l_, c2h_ = c0l_;
    float32x4_t c3l_ = c0l_, c3h_ = c0l_, c4l_ = c0l_, c4h_ = c0l_, c5l_ = c0l_, c5h_ = c0l_;
    float32x4_t c6l_ = c0l_, c6h_ = c0l_, c7l_ = c0l_, c7h_ = c0l_;
    if (k) {   /* step k is in (bh, a0, a1) when step k+1 is loaded */
        QK_B_RAW bh = QK_B_LOAD(bp);
        float32x4_t a0 = vld1q_f32(ap), a1 = vld1q_f32(ap + 4);
        for (size_t kk = 1; kk < k; kk++) {
            ap += 8, bp += 8;
            const float32x4_t b0 = QK_B_LO(bh), b1 = QK_B_HI(bh);
            const QK_B_RAW nbh = QK_B_LOAD(bp);
            const float32x4_t na0 = vld1q_f32(ap), na1 = vld1q_f32(ap + 4);
            QK_F32_ROW(0, a0, 0); QK_F32_ROW(1, a0, 1); QK_F32_ROW(2, a0, 2); QK_F32_ROW(3, a0, 3);
            QK_F32_ROW(4, a1, 0); QK_F32_ROW(5, a1, 1); QK_F32_ROW(6, a1, 2); QK_F32_ROW(7, a1, 3);
            bh = nbh, a0 = na0, a1 = na1;
        }
        const float32x4_t b0 = QK_B_LO(bh), b1 = QK_B_HI(bh);
        QK_F32_ROW(0, a0, 0); QK_F32_ROW(1, a0, 1); QK_F32_ROW(2, a0, 2); QK_F32_ROW(3, a0, 3);
        QK_F32_ROW(4, a1, 0); QK_F32_ROW(5, a1, 1); QK_F32_ROW(6, a1, 2); QK_F32_ROW(7, a1, 3);
    }
    float *c = (float *)acc;
    QK_F32_STORE(0); QK_F32_STORE(1); QK_F32_STORE(2); QK_F32_STORE(3);
    QK_F32_STORE(4); QK_F32_STORE(5); QK_F32_STORE(6); QK_F32_STORE(7);
}
