/* Dynamic quantization (qk_dynquant.h): min / max and the dequantizing pass as portable C
 * whose loops vectorise (the dequantizing pass by the compiler, min / max in explicit
 * vector types: selects, no reassociation), compiled without ISA flags and again for AVX2
 * (kernels/avx2/dynquant_avx2.c); ISO C (-std=c11): no contraction to FMA, so both
 * builds round every step alike: the same bits. The quantizing itself is the
 * registry's row kernel of each ISA (qk_quant.h). */
#include <math.h>
#include "qk_dynquant.h"
#ifndef QK_DYNQ_NAME
#define QK_DYNQ_NAME(f) f##_scalar
#define QK_DYNQ_PORTABLE
#include "qk_cpu.h"
#endif

/* Float lanes as GCC / Clang vector types of the target's register width (16 bytes:
   SSE2, NEON; 32: the AVX2 build): the selects become compares and blends everywhere. */
#ifndef QK_DYNQ_VBYTES
#define QK_DYNQ_VBYTES 16
#endif
#define QK_DYNQ_L (QK_DYNQ_VBYTES / 4)
typedef float qk_vf __attribute__((vector_size(QK_DYNQ_VBYTES)));
typedef int32_t qk_vi __attribute__((vector_size(QK_DYNQ_VBYTES)));
/* (a macro: a function of 32-byte vectors changes the ABI without AVX) */
#define QK_V_SELECT(m, a, b) ((qk_vf)(((qk_vi)(a) & (m)) | ((qk_vi)(b) & ~(m))))

int QK_DYNQ_NAME(qk_minmax)(size_t n, const float *x, float *mn, float *mx) {
    /* four independent chains: a compare and a blend per step would otherwise wait on
       the previous step's (measured 3.5x slower with one) */
    qk_vf lo[4], hi[4], chk[4];
    for (int c = 0; c < 4; c++)
        for (int j = 0; j < QK_DYNQ_L; j++) lo[c][j] = *mn, hi[c][j] = *mx, chk[c][j] = 0.0f;
    size_t i = 0;
    for (; i + 4 * QK_DYNQ_L <= n; i += 4 * QK_DYNQ_L)
        for (int c = 0; c < 4; c++) {
            qk_vf v;
            __builtin_memcpy(&v, x + i + c * QK_DYNQ_L, sizeof v);
            lo[c] = QK_V_SELECT(v < lo[c], v, lo[c]);
            hi[c] = QK_V_SELECT(v > hi[c], v, hi[c]);
            chk[c] += v - v;            /* 0, or NaN once a value is NaN or infinite */
        }
    /* the chains, then the lanes, folded in halves (min / max in any order: the same
       values, and -0 / +0 give the same parameters); a row of 384 spent more on a
       lane-by-lane fold than on its loop (per-row quantization) */
    for (int c = 1; c < 4; c++) {
        lo[0] = QK_V_SELECT(lo[c] < lo[0], lo[c], lo[0]);
        hi[0] = QK_V_SELECT(hi[c] > hi[0], hi[c], hi[0]);
        chk[0] += chk[c];
    }
    float fl[QK_DYNQ_L], fh[QK_DYNQ_L], fc[QK_DYNQ_L];
    __builtin_memcpy(fl, &lo[0], sizeof fl);
    __builtin_memcpy(fh, &hi[0], sizeof fh);
    __builtin_memcpy(fc, &chk[0], sizeof fc);
    for (int w = QK_DYNQ_L / 2; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) {
            fl[j] = fl[j + w] < fl[j] ? fl[j + w] : fl[j];
            fh[j] = fh[j + w] > fh[j] ? fh[j + w] : fh[j];
            fc[j] += fc[j + w];
        }
    float l = fl[0], h = fh[0], s = fc[0];
    for (; i < n; i++) {
        const float v = x[i];
        l = v < l ? v : l;
        h = v > h ? v : h;
        s += v - v;
    }
    *mn = l, *mx = h;
    return s != s;
}

/* One row: y[j] = float32(a[j] (+ add[j]) - z * cb[j]) * (s * sw[j]) (+ bias[j]), int32
   arithmetic wrapping; a loop per case so that each vectorises. */
#define QK_DQ_LOOP(ADD, Y)                                                                                       \
    for (size_t j = 0; j < n; j++) {                                                                             \
        const float f = (float)(int32_t)((uint32_t)a[j] + (ADD) - z * (uint32_t)cb[j]) * (s * sw[j]);           \
        yr[j] = Y;                                                                                               \
    }
static inline void dq_row(size_t n, const int32_t *a, const int32_t *add, float s, uint32_t z, const int32_t *cb,
                          const float *sw, const float *bias, float *yr) {
    if (add && bias) QK_DQ_LOOP((uint32_t)add[j], f + bias[j])
    else if (add) QK_DQ_LOOP((uint32_t)add[j], f)
    else if (bias) QK_DQ_LOOP(0u, f + bias[j])
    else QK_DQ_LOOP(0u, f)
}
#undef QK_DQ_LOOP

void QK_DYNQ_NAME(qk_dq_rows)(size_t m, size_t n, const int32_t *acc, size_t acc_stride, const int32_t *add,
                              const float *sa, const int32_t *za, int per_row, const int32_t *cb, const float *sw,
                              const float *bias, float *y, size_t y_stride) {
    for (size_t i = 0; i < m; i++)
        dq_row(n, acc + i * acc_stride, add, sa[per_row ? i : 0], (uint32_t)za[per_row ? i : 0], cb, sw, bias,
               (float *)(void *)((char *)y + i * y_stride));
}

#ifdef QK_DYNQ_PORTABLE
#if defined(__x86_64__)
int qk_minmax_avx2(size_t n, const float *x, float *mn, float *mx);
void qk_dq_rows_avx2(size_t m, size_t n, const int32_t *acc, size_t acc_stride, const int32_t *add, const float *sa,
                     const int32_t *za, int per_row, const int32_t *cb, const float *sw, const float *bias, float *y,
                     size_t y_stride);
#define QK_DYNQ_DECLARE(SUFFIX)                                                                                    \
    int qk_minmax_##SUFFIX(size_t n, const float *x, float *mn, float *mx);                                        \
    void qk_dq_rows_##SUFFIX(size_t m, size_t n, const int32_t *acc, size_t acc_stride, const int32_t *add,       \
                             const float *sa,                                                                      \
                             const int32_t *za, int per_row, const int32_t *cb, const float *sw, const float *bias, \
                             float *y, size_t y_stride);
QK_DYNQ_DECLARE(avx512)
QK_DYNQ_DECLARE(avx512_emu)
#endif

qk_dynq_fns qk_dynq_for_isa(int isa) {
    qk_dynq_fns f;
#if defined(__x86_64__)
    /* AVX-512: the same loops in 16 lanes (the emulated path: that C in AVX2) */
    if (isa == QK_ISA_AVX512VNNI || isa == QK_ISA_AVX512VNNI_EMU) {
        const int emu = isa == QK_ISA_AVX512VNNI_EMU;
        f.minmax = emu ? qk_minmax_avx512_emu : qk_minmax_avx512;
        f.dq_rows = emu ? qk_dq_rows_avx512_emu : qk_dq_rows_avx512;
        return f;
    }
#endif
    f.minmax = QK_PICK_AVX2(isa, qk_minmax_avx2, qk_minmax_scalar);
    f.dq_rows = QK_PICK_AVX2(isa, qk_dq_rows_avx2, qk_dq_rows_scalar);
    return f;
}

int qk_dynq_params(float mn, float mx, float *scale, int32_t *zp) {
    const float hi = mx > 0.0f ? mx : 0.0f, lo = mn < 0.0f ? mn : 0.0f;
    /* ONNX Runtime takes scale 1 for an all-zero range, where the formula divides by 0 */
    const float s = hi == lo ? 1.0f : (hi - lo) / 255.0f;
    if (!(s > 0.0f) || !isfinite(s) || !isnormal(s)) return 2;
    float z = 0.0f - lo / s;
    z = z < 0.0f ? 0.0f : (z > 255.0f ? 255.0f : z);
    *scale = s;
    *zp = (int32_t)rintf(z);
    return 0;
}

void qk_dynq_columns(size_t n, float sa, int32_t za, const int32_t *add0, const int32_t *cb, const float *sw,
                     int32_t *add, float *scale) {
    for (size_t j = 0; j < n; j++) {
        add[j] = (int32_t)((uint32_t)add0[j] - (uint32_t)za * (uint32_t)cb[j]);
        scale[j] = sa * sw[j];
    }
}

int qk_dynq_quantize(qk_minmax_fn minmax, qk_quantize_row_fn qrow, size_t m, size_t k, const float *x,
                     ptrdiff_t x_stride, int per_row, uint8_t *q, float *sa, int32_t *za) {
    if (!per_row) {
        float mn = 0.0f, mx = 0.0f;
        if (x_stride == (ptrdiff_t)(k * sizeof(float))) {    /* one run of memory: one pass, one range */
            if (minmax(m * k, x, &mn, &mx)) return 1;
            if (qk_dynq_params(mn, mx, &sa[0], &za[0])) return 2;
            qk_quantize_range(qrow, 0, m * k, 1, 1, x, &sa[0], &za[0], 0, q);
            return 0;
        }
        for (size_t i = 0; i < m; i++)
            if (minmax(k, (const float *)(const void *)((const char *)x + (ptrdiff_t)i * x_stride), &mn, &mx))
                return 1;
        if (qk_dynq_params(mn, mx, &sa[0], &za[0])) return 2;
    }
    for (size_t i = 0; i < m; i++) {
        const float *row = (const float *)(const void *)((const char *)x + (ptrdiff_t)i * x_stride);
        const size_t p = per_row ? i : 0;
        if (per_row) {
            float mn = 0.0f, mx = 0.0f;
            if (minmax(k, row, &mn, &mx)) return 1;
            if (qk_dynq_params(mn, mx, &sa[i], &za[i])) return 2;
        }
        qk_quantize_range(qrow, 0, k, 1, 1, row, &sa[p], &za[p], 0, q + i * k);
    }
    return 0;
}
#endif
