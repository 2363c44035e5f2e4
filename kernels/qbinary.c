/* Quantized elementwise Add and Mul (com.microsoft QLinearAdd / QLinearMul) of two int8 or
 * uint8 runs of one dtype: each value dequantized in float32 (scale * (q - zero point)),
 * added or multiplied in float32, divided by the output scale, rounded half to even, the
 * zero point added and saturated: the float32 steps of onnxruntime's lookup-table order,
 * one by one as the reference operator (graph/backends/reference/ort_contrib.py) takes
 * them, so the results are its bit for bit. Portable C, compiled without ISA flags and
 * without contraction to FMA (ISO C); no branch in the loops, which vectorise.
 *
 * Precondition (the caller checks it from the scales): every |(fa op fb) / sy| is at most
 * 2^22, so rounding by adding and subtracting 1.5 * 2^23 is exact (round half to even in
 * the default rounding mode, no libm call) and the conversion to int32 cannot overflow. */
#include "qk_quant.h"
#ifndef QK_QBINARY_NAME   /* the portable build; kernels/avx2/qbinary_avx2.c includes this file for AVX2 */
#define QK_QBINARY_NAME qk_qlinear_binary
#define QK_QBINARY_PORTABLE
#include "qk_cpu.h"
#endif

#define QK_QBINARY_LOOP(T, OP, LO, HI)                                                        \
    do {                                                                                      \
        const T *pa = (const T *)a, *pb = (const T *)b;                                      \
        T *py = (T *)y;                                                                       \
        for (size_t i = 0; i < n; i++) {                                                      \
            const float fa = sa * (float)((int32_t)pa[i] - za), fb = sb * (float)((int32_t)pb[i] - zb); \
            const int32_t q = (int32_t)(((fa OP fb) / sy + 12582912.0f) - 12582912.0f) + zy;  \
            py[i] = (T)(q < (LO) ? (LO) : (q > (HI) ? (HI) : q));                             \
        }                                                                                     \
    } while (0)

void QK_QBINARY_NAME(size_t n, int op, int is_signed, const void *a, float sa, int32_t za, const void *b, float sb,
                     int32_t zb, float sy, int32_t zy, void *y) {
    if (is_signed && op == QK_BINARY_MUL)
        QK_QBINARY_LOOP(int8_t, *, -128, 127);
    else if (is_signed)
        QK_QBINARY_LOOP(int8_t, +, -128, 127);
    else if (op == QK_BINARY_MUL)
        QK_QBINARY_LOOP(uint8_t, *, 0, 255);
    else
        QK_QBINARY_LOOP(uint8_t, +, 0, 255);
}

#ifdef QK_QBINARY_PORTABLE
#if defined(__x86_64__)
#define QK_QBINARY_DECL(name)                                                                  \
    void name(size_t n, int op, int is_signed, const void *a, float sa, int32_t za, const void *b, float sb, \
              int32_t zb, float sy, int32_t zy, void *y);
QK_QBINARY_DECL(qk_qlinear_binary_avx2)
QK_QBINARY_DECL(qk_qlinear_binary_avx512)
QK_QBINARY_DECL(qk_qlinear_binary_avx512_emu)
#endif

qk_qbinary_fn qk_qlinear_binary_for_isa(int isa) {
#if defined(__x86_64__)
    if (isa == QK_ISA_AVX512VNNI) return qk_qlinear_binary_avx512;
    if (isa == QK_ISA_AVX512VNNI_EMU) return qk_qlinear_binary_avx512_emu;
#endif
    return QK_PICK_AVX2(isa, qk_qlinear_binary_avx2, qk_qlinear_binary);
}
#endif
