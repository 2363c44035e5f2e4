/* TFLite's 8-bit ADD, SUB and MUL (LiteRT's integer arithmetic, bit for bit) over two
 * int8 or uint8 runs of one dtype and length:
 *   ADD / SUB: raw = ta[a] +- tb[b], where the 256-entry tables hold each input value
 *              already shifted left by 20 and scaled by its multiplier (TFLite's first
 *              two MultiplyByQuantizedMultiplierSmallerThanOneExp, made once per node);
 *   MUL:       raw = (a - za) * (b - zb);
 * then y = clamp(MultiplyByQuantizedMultiplier(raw, mult, shift) + zy, lo, hi) with
 * gemmlowp's rounding (ties away from zero: qk_fixedpoint.h), as TFLite's own kernels,
 * the values of LiteRT's vector loop held in its 16-bit lanes (qk_tfl.h).
 * Portable C; the tables make ADD two loads, an add and one fixed-point multiply. */
#include <stddef.h>
#include <stdint.h>
#include "qk_cpu.h"
#include "qk_fixedpoint.h"
#include "qk_tfl.h"

static inline int32_t tfl_out(int32_t raw, int32_t mult, int32_t shift, int32_t zy, int32_t lo, int32_t hi,
                              int lanes) {
    /* LiteRT's x * (1 << left_shift) wraps in int32 (a MUL multiplier above 2^15 does it) */
    if (shift > 0) raw = (int32_t)((uint32_t)raw << shift), shift = 0;
    int64_t v = qk_fixedpoint_scale(raw, mult, shift);
    if (lanes == QK_TFL_LANES16_SAT) v = v < -32768 ? -32768 : (v > 32767 ? 32767 : v);
    v += zy;
    if (lanes != QK_TFL_LANES32) v = (int16_t)(uint16_t)(uint64_t)v;     /* the 16-bit lane's wrap */
    return (int32_t)(v < lo ? lo : (v > hi ? hi : v));
}

#define QK_TFL_LOOP(T, RAW)                                                                   \
    do {                                                                                      \
        const T *pa = (const T *)a, *pb = (const T *)b;                                      \
        T *py = (T *)y;                                                                       \
        for (size_t i = 0; i < n; i++) {                                                      \
            const uint8_t ia = (uint8_t)pa[i], ib = (uint8_t)pb[i];                           \
            (void)ia; (void)ib;                                                               \
            py[i] = (T)tfl_out((RAW), mult, shift, zy, lo, hi, lanes);                        \
        }                                                                                     \
    } while (0)

void qk_tfl_binary_part(QK_TFL_PART_ARGS) {
    if (op == QK_TFL_MUL) {
        if (is_signed)
            QK_TFL_LOOP(int8_t, ((int32_t)pa[i] - za) * ((int32_t)pb[i] - zb));
        else
            QK_TFL_LOOP(uint8_t, ((int32_t)pa[i] - za) * ((int32_t)pb[i] - zb));
    } else if (op == QK_TFL_SUB) {
        if (is_signed)
            QK_TFL_LOOP(int8_t, ta[ia] - tb[ib]);
        else
            QK_TFL_LOOP(uint8_t, ta[ia] - tb[ib]);
    } else {
        if (is_signed)
            QK_TFL_LOOP(int8_t, ta[ia] + tb[ib]);
        else
            QK_TFL_LOOP(uint8_t, ta[ia] + tb[ib]);
    }
}

QK_TFL_ENTRY(qk_tfl_binary, qk_tfl_binary_part)

#if defined(__x86_64__)
void qk_tfl_binary_avx2(size_t n, int op, int is_signed, const void *a, const void *b, const int32_t *ta,
                        const int32_t *tb, int32_t za, int32_t zb, int32_t mult, int32_t shift, int32_t zy, int32_t lo,
                        int32_t hi, void *y);
#endif

#if defined(__x86_64__)
/* kernels/avx2/tfl_binary_vbmi.c: byte-plane lookups where the CPU has AVX512BW and VBMI */
void qk_tfl_binary_vbmi(size_t n, int op, int is_signed, const void *a, const void *b, const int32_t *ta,
                        const int32_t *tb, int32_t za, int32_t zb, int32_t mult, int32_t shift, int32_t zy, int32_t lo,
                        int32_t hi, void *y);
#endif

qk_tfl_binary_fn qk_tfl_binary_for_isa(int isa) {
#if defined(__x86_64__)
    const uint32_t vbmi = QK_CPU_AVX512F | QK_CPU_AVX512BW | QK_CPU_AVX512VBMI;
    if (isa == QK_ISA_AVX512VNNI && (qk_cpu_features() & vbmi) == vbmi)
        return qk_tfl_binary_vbmi;
#endif
    return QK_PICK_AVX2(isa, qk_tfl_binary_avx2, qk_tfl_binary);
}
