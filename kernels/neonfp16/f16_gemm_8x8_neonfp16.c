/* fp16 GEMM micro-kernel 8x8 with ARMv8.2 FP16 arithmetic: fp16 FMA (8 lanes, twice the
 * fp32 rate) into fp16 accumulators, flushed every QK_F16_CHUNK steps of K into fp32
 * accumulators. Chunks of 8 keep the error within about twice that of fp32
 * accumulation at every K, where whole-K fp16 accumulation is 7-30x worse
 * (docs/design.md, "fp16"; bench/f16_accumulation.py measures it). A and B are fp16 panels.
 *
 * A whole chunk is inline assembly: by-element FMLA (GCC 12 turns vfmaq_laneq_f16 into
 * a DUP and a vector FMLA: 15 instructions a k step instead of 8), the loads of step
 * k+1 between the FMLAs of step k, and FMUL for the first step instead of zeroing the
 * accumulators (fma(b, a, +0) and b * a differ only in the sign of a zero, which the
 * fp32 sums, starting at +0, never show). With named fp32 accumulators (arrays went to
 * the stack at every flush). docs/performance.md, "Arm kernels by simulation". */
#include <arm_neon.h>
#include "qk_gemm.h"

#define QK_F16_CHUNK 8

#define QK_NL "\n\t"
/* step of K: h_i (op)= b * a[i] for the 8 rows i, A in register a (v0-v15: by-element
 * fp16 operands), B in b; `ld` (the next step's loads) between them */
#define QK_H_STEP(op, a, b, ld0, ld1)                                                     \
    #op " %[h0].8h, v" #b ".8h, v" #a ".h[0]" QK_NL #op " %[h1].8h, v" #b ".8h, v" #a ".h[1]" QK_NL \
    ld0                                                                                   \
    #op " %[h2].8h, v" #b ".8h, v" #a ".h[2]" QK_NL #op " %[h3].8h, v" #b ".8h, v" #a ".h[3]" QK_NL \
    ld1                                                                                   \
    #op " %[h4].8h, v" #b ".8h, v" #a ".h[4]" QK_NL #op " %[h5].8h, v" #b ".8h, v" #a ".h[5]" QK_NL \
    #op " %[h6].8h, v" #b ".8h, v" #a ".h[6]" QK_NL #op " %[h7].8h, v" #b ".8h, v" #a ".h[7]" QK_NL
#define QK_H_LD(r, p, off) "ldr q" #r ", [%[" #p "], #" #off "]" QK_NL
/* step s (registers a = v(s%2), b = v(2 + s%2)) loading step s+1 into the others */
#define QK_H_FMLA(a, b, na, nb, off) QK_H_STEP(fmla, a, b, QK_H_LD(na, pa, off), QK_H_LD(nb, pb, off))

/* fp32 rows i (8 columns: low and high halves) += the fp16 accumulator of row i */
#define QK_H_FLUSH(i)                                                                     \
    do {                                                                                  \
        c##i##l = vaddq_f32(c##i##l, vcvt_f32_f16(vget_low_f16(h##i)));                   \
        c##i##h = vaddq_f32(c##i##h, vcvt_high_f32_f16(h##i));                            \
    } while (0)
#define QK_H_STORE(i)                                                                     \
    do {                                                                                  \
        vst1q_f32(c + 8 * i, c##i##l);                                                    \
        vst1q_f32(c + 8 * i + 4, c##i##h);                                                \
    } while (0)

void f16_gemm_8x8_neonfp16(size_t k, const void *a, const void *b, int32_t *acc) {
    const float16_t *ap = (const float16_t *)a, *bp = (const float16_t *)b;
    float32x4_t c0l = vdupq_n_f32(0.0f), c0h = c0l, c1l = c0l, c1h = c0l, c2l = c0l, c2h = c0l;
    float32x4_t c3l = c0l, c3h = c0l, c4l = c0l, c4h = c0l, c5l = c0l, c5h = c0l;
    float32x4_t c6l = c0l, c6h = c0l, c7l = c0l, c7h = c0l;
    float16x8_t h0, h1, h2, h3, h4, h5, h6, h7;
    size_t k0 = 0;
    for (; k0 + QK_F16_CHUNK <= k; k0 += QK_F16_CHUNK) {
        __asm__("ldr q0, [%[pa]]" QK_NL "ldr q2, [%[pb]]" QK_NL
                QK_H_STEP(fmul, 0, 2, QK_H_LD(1, pa, 16), QK_H_LD(3, pb, 16))
                QK_H_FMLA(1, 3, 0, 2, 32) QK_H_FMLA(0, 2, 1, 3, 48) QK_H_FMLA(1, 3, 0, 2, 64)
                QK_H_FMLA(0, 2, 1, 3, 80) QK_H_FMLA(1, 3, 0, 2, 96) QK_H_FMLA(0, 2, 1, 3, 112)
                QK_H_STEP(fmla, 1, 3, "add %[pa], %[pa], #128" QK_NL, "add %[pb], %[pb], #128" QK_NL)
                : [h0] "=&w"(h0), [h1] "=&w"(h1), [h2] "=&w"(h2), [h3] "=&w"(h3),
                  [h4] "=&w"(h4), [h5] "=&w"(h5), [h6] "=&w"(h6), [h7] "=&w"(h7),
                  [pa] "+r"(ap), [pb] "+r"(bp)
                :
                : "memory", "v0", "v1", "v2", "v3");
        QK_H_FLUSH(0); QK_H_FLUSH(1); QK_H_FLUSH(2); QK_H_FLUSH(3);
        QK_H_FLUSH(4); QK_H_FLUSH(5); QK_H_FLUSH(6); QK_H_FLUSH(7);
    }
    if (k0 < k) {   /* the last, shorter chunk */
        h0 = h1 = h2 = h3 = h4 = h5 = h6 = h7 = vdupq_n_f16(0);
        for (; k0 < k; k0++, ap += 8, bp += 8) {
            const float16x8_t av = vld1q_f16(ap), bv = vld1q_f16(bp);
            h0 = vfmaq_laneq_f16(h0, bv, av, 0);
            h1 = vfmaq_laneq_f16(h1, bv, av, 1);
            h2 = vfmaq_laneq_f16(h2, bv, av, 2);
            h3 = vfmaq_laneq_f16(h3, bv, av, 3);
            h4 = vfmaq_laneq_f16(h4, bv, av, 4);
            h5 = vfmaq_laneq_f16(h5, bv, av, 5);
            h6 = vfmaq_laneq_f16(h6, bv, av, 6);
            h7 = vfmaq_laneq_f16(h7, bv, av, 7);
        }
        QK_H_FLUSH(0); QK_H_FLUSH(1); QK_H_FLUSH(2); QK_H_FLUSH(3);
        QK_H_FLUSH(4); QK_H_FLUSH(5); QK_H_FLUSH(6); QK_H_FLUSH(7);
    }
    float *c = (float *)acc;
    QK_H_STORE(0); QK_H_STORE(1); QK_H_STORE(2); QK_H_STORE(3);
    QK_H_STORE(4); QK_H_STORE(5); QK_H_STORE(6); QK_H_STORE(7);
}
