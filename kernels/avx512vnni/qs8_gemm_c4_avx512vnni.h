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
 *   QK_GEMM_NAME, QK_FUSED_NAME   the two functions (through QK_VNNI_FN)
 *   QK_IGEMM_NAME, QK_IGEMM_FUSED_NAME  optional: the indirect entries (qk_gemm.h), uint8 A
 *                                 rows read in place through pointers (a convolution's
 *                                 input), no packed panel */
#include "qk_gemm.h"
#include "qk_vnni.h"
/* B panels stream once per tile from L2 or memory: each quad asks for its lines this many
 * bytes ahead (12 and 16 rows of 384 x 1536 / 1536 x 384 weight chains: 1.1-1.25x, 128
 * rows 1.04x, measured A/B in one process on family 6 model 207). */
#ifndef QK_PREFETCH_B
#define QK_PREFETCH_B 2048
#endif

/* c += one K quad's products: row i's four bytes at a[i], B's quad at pb. */
static inline __attribute__((always_inline)) void quad_dot(const uint8_t *const a[QK_MR], const uint8_t *pb,
                                                           qk_v512 c[QK_MR][QK_NV]) {
#pragma GCC unroll 4
    for (int j = 0; j < QK_NV; j++) _mm_prefetch((const char *)(pb + 64 * j) + QK_PREFETCH_B, _MM_HINT_T0);
    qk_v512 b[QK_NV];
#pragma GCC unroll 4
    for (int j = 0; j < QK_NV; j++) b[j] = qk512_load(pb + 64 * j);
#pragma GCC unroll 16
    for (int i = 0; i < QK_MR; i++) {
        const qk_v512 ai = qk512_bcast32(a[i]);
#pragma GCC unroll 4
        for (int j = 0; j < QK_NV; j++) c[i][j] = qk512_dpbusd(c[i][j], ai, b[j]);
    }
}

/* c += the tile's products (inlined into both entries: c stays in registers). */
static inline __attribute__((always_inline)) void tile_dot(size_t k_groups, const uint8_t *pa, const uint8_t *pb,
                                                           qk_v512 c[QK_MR][QK_NV]) {
    const size_t kp = 4 * k_groups;   /* row stride of the row-major A panel, in bytes */
    for (size_t g = 0; g < k_groups; g++, pa += 4, pb += 64 * QK_NV) {
        const uint8_t *a[QK_MR];
#pragma GCC unroll 16
        for (int i = 0; i < QK_MR; i++) a[i] = pa + i * kp;
        quad_dot(a, pb, c);
    }
}

#ifdef QK_IGEMM_NAME
/* c += the products of the indirect tile: row i's K bytes are segs segments of seg_len
 * (a multiple of 4) at ptrs[s * QK_MR + i]; B's quads run on across the segments. The
 * same sums as tile_dot on the rows packed. */
static inline __attribute__((always_inline)) void itile_dot(size_t segs, size_t seg_len, const void *const *ptrs,
                                                            const uint8_t *pb, qk_v512 c[QK_MR][QK_NV]) {
    for (size_t s = 0; s < segs; s++, ptrs += QK_MR) {
        const uint8_t *rows[QK_MR];
#pragma GCC unroll 16
        for (int i = 0; i < QK_MR - 2; i++) rows[i] = (const uint8_t *)ptrs[i];
        /* 12 row pointers, k, B and the loop's end are one value more than the 15 general
           registers: GCC kept one in an xmm register, moved back twice a quad by vmovq on the
           vpdpbusd port. Two rows' pointers and the end read from the stack each quad (load
           ports) instead: a 56 x 56 x 64 3 x 3 layer's dot products 0.93x (in one process,
           family 6 model 207; 732 of the GEMM's 750 GOP/s). */
        const uint8_t *volatile last[2] = {(const uint8_t *)ptrs[QK_MR - 2], (const uint8_t *)ptrs[QK_MR - 1]};
        volatile size_t end = seg_len;
        for (size_t kk = 0; kk < end; kk += 4, pb += 64 * QK_NV) {
            const uint8_t *a[QK_MR];
#pragma GCC unroll 16
            for (int i = 0; i < QK_MR - 2; i++) a[i] = rows[i] + kk;
            a[QK_MR - 2] = last[0] + kk;
            a[QK_MR - 1] = last[1] + kk;
            quad_dot(a, pb, c);
        }
    }
}
#endif

void QK_GEMM_NAME(size_t k_groups, const void *a_, const void *b_, int32_t *acc) {
    qk_v512 c[QK_MR][QK_NV];
#pragma GCC unroll 16
    for (int i = 0; i < QK_MR; i++)
#pragma GCC unroll 4
        for (int j = 0; j < QK_NV; j++) c[i][j] = qk512_zero();
    tile_dot(k_groups, (const uint8_t *)a_, (const uint8_t *)b_, c);
#pragma GCC unroll 16
    for (int i = 0; i < QK_MR; i++)
#pragma GCC unroll 4
        for (int j = 0; j < QK_NV; j++) qk512_store(acc + (i * QK_NV + j) * 16, c[i][j]);
}

void QK_VNNI_FN(qk_store_cols_avx512vnni)(size_t mr, size_t strips, const int32_t *acc, size_t acc_stride, size_t m0,
                                          size_t n0, const qk_out_params *p, void *c, size_t c_stride);

#if !defined(QK_VNNI_EMULATED) && QK_NV == 2
#include "qs8_tflite_stage_avx512vnni.h"
/* One row of tile_tflite: its 32 bytes stored from the float32 floors; returns 1 where
 * they disagree somewhere (the row is then stored again from the exact path). */
static inline __attribute__((always_inline)) uint32_t tfl_row(__m512i v0, __m512i v1, const qk_tfl_stage *s0,
                                                              const qk_tfl_stage *s1, __m512i order, __m256i lo,
                                                              __m256i hi, int out_signed, char *row) {
    const __m512 f0 = _mm512_cvtepi32_ps(v0), f1 = _mm512_cvtepi32_ps(v1);
    const int rd = _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC;
    const __m512i l0 = _mm512_cvt_roundps_epi32(_mm512_fmadd_ps(f0, s0->m, s0->c_lo), rd);
    const __m512i h0 = _mm512_cvt_roundps_epi32(_mm512_fmadd_ps(f0, s0->m, s0->c_hi), rd);
    const __m512i l1 = _mm512_cvt_roundps_epi32(_mm512_fmadd_ps(f1, s1->m, s1->c_lo), rd);
    const __m512i h1 = _mm512_cvt_roundps_epi32(_mm512_fmadd_ps(f1, s1->m, s1->c_hi), rd);
    const __m512i w = _mm512_packs_epi32(l0, l1);
    const __m256i y = _mm512_castsi512_si256(
        _mm512_permutexvar_epi32(order, out_signed ? _mm512_packs_epi16(w, w) : _mm512_packus_epi16(w, w)));
    _mm256_storeu_si256((__m256i *)(void *)row, out_signed ? _mm256_min_epi8(_mm256_max_epi8(y, lo), hi)
                                                           : _mm256_min_epu8(_mm256_max_epu8(y, lo), hi));
    return (_mm512_cmpneq_epi32_mask(l0, h0) | _mm512_cmpneq_epi32_mask(l1, h1)) != 0;
}

/* LiteRT's requantization (QK_OUT_FIXEDPOINT_UP) of a full 32-column tile straight from
 * the accumulators, which start at the column terms (as XNNPACK's start at its bias): no
 * int32 tile stored and read back, no add per value, and per row vpackssdw + vpacksswb
 * (saturating to the 8-bit type) + vpermd in place of four int32 clamps and a permute;
 * [lo, hi] then clamps the 32 bytes at once. Rows whose float32 floors disagree somewhere
 * (qs8_tflite_stage_avx512vnni.h; about 1 in 60) are stored again from the exact path after
 * the tile, and a tile whose columns have a shift under 2 takes qk_store_cols_avx512vnni:
 * no branch and no indexing by row in the unrolled rows, so the 24 accumulators stay in
 * registers (a branch per row made GCC keep them in memory too: 1.3x slower). Measured A/B
 * in one process (family 6 model 207, 1 thread): 1-5 % of a 3136 x 256 x 64 layer, whose
 * epilogue is still a third of its time (the exact check's second fma and conversion). */
static inline __attribute__((always_inline)) void tile_tflite_start(const qk_out_params *p, size_t n0,
                                                                    __m512i add[2], qk_v512 acc[QK_MR][2]) {
    add[0] = _mm512_loadu_si512(p->col_add + n0), add[1] = _mm512_loadu_si512(p->col_add + n0 + 16);
#pragma GCC unroll 16
    for (int i = 0; i < QK_MR; i++) acc[i][0] = add[0], acc[i][1] = add[1];
}

/* (The tile's stores: from the accumulators tile_tflite_start began, after a tile's
   products, tile_dot or itile_dot, were added to them.) */
static inline __attribute__((always_inline)) void tile_tflite_store(qk_v512 acc[QK_MR][2], const __m512i add[2],
                                                                    size_t m0, size_t n0, const qk_out_params *p,
                                                                    void *c, size_t c_stride) {
    const __m512i add0 = add[0], add1 = add[1];
    qk_tfl_stage s0, s1;
    if (!qk_tfl_stage_at(&s0, n0, p) || !qk_tfl_stage_at(&s1, n0 + 16, p)) {
        int32_t t[QK_MR * 32];
#pragma GCC unroll 16
        for (int i = 0; i < QK_MR; i++) {
            _mm512_storeu_si512(t + 32 * i, _mm512_sub_epi32(acc[i][0], add0));
            _mm512_storeu_si512(t + 32 * i + 16, _mm512_sub_epi32(acc[i][1], add1));
        }
        QK_VNNI_FN(qk_store_cols_avx512vnni)(QK_MR, 2, t, 32, m0, n0, p, c, c_stride);
        return;
    }
    /* after the packs, dword 4L of each 128-bit lane L holds a's columns 4L..4L+3, dword
       4L+1 b's */
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m256i lo = _mm256_set1_epi8((char)p->lo), hi = _mm256_set1_epi8((char)p->hi);
    const int out_signed = p->out_signed;
    char *row = (char *)c + m0 * c_stride + n0;
    uint32_t redo = 0;   /* bit i: row i's floors disagree */
    if (out_signed) {
#pragma GCC unroll 16
        for (int i = 0; i < QK_MR; i++) redo |= tfl_row(acc[i][0], acc[i][1], &s0, &s1, order, lo, hi, 1, row + i * c_stride) << i;
    } else {
#pragma GCC unroll 16
        for (int i = 0; i < QK_MR; i++) redo |= tfl_row(acc[i][0], acc[i][1], &s0, &s1, order, lo, hi, 0, row + i * c_stride) << i;
    }
    if (__builtin_expect(redo != 0, 0)) {
        int32_t t[QK_MR * 32];
#pragma GCC unroll 16
        for (int i = 0; i < QK_MR; i++) {
            _mm512_storeu_si512(t + 32 * i, acc[i][0]);
            _mm512_storeu_si512(t + 32 * i + 16, acc[i][1]);
        }
        for (; redo; redo &= redo - 1) {
            const int i = __builtin_ctz(redo);
            const __m512i w = _mm512_packs_epi32(qk_tfl_stage_row(&s0, _mm512_loadu_si512(t + 32 * i), p),
                                                 qk_tfl_stage_row(&s1, _mm512_loadu_si512(t + 32 * i + 16), p));
            /* clamped to [lo, hi] already: the packs saturate nothing */
            const __m256i y = _mm512_castsi512_si256(_mm512_permutexvar_epi32(
                order, out_signed ? _mm512_packs_epi16(w, w) : _mm512_packus_epi16(w, w)));
            _mm256_storeu_si256((__m256i *)(void *)(row + i * c_stride), y);
        }
    }
}

/* The fp32 requantization (QK_OUT_FP32) of a 32-column tile: per row the column terms,
 * two multiplies, the upper clamp in float (hi - zy: the conversion of anything above 2^31
 * would give INT_MIN), two conversions (round half to even), vpackssdw, + zy saturating,
 * vpackuswb / vpacksswb (anything below the 8-bit type saturates to its floor) and vpermd,
 * then the lower clamp on the 32 bytes: the same bytes as qk_store_cols_avx512vnni's
 * clamp-then-round in about two thirds of its operations (its stage was two thirds of a
 * 12 x 32 tile's work at K = 16, MobileNetV2's expand layers: 0.84x there, measured A/B in
 * one process on family 6 model 207; a 16-column tile stays qk_store_cols', the packs'
 * second half would be wasted). The sums pass through memory: kept in registers from the
 * dot (as tile_tflite does), GCC spilled and copied accumulators inside the K loop, 2x
 * slower at K = 160. t: the tile's QK_MR rows of 32 int32 sums. */
static inline __attribute__((always_inline)) void tile_fp32_store(const int32_t *t, size_t m0, size_t n0,
                                                                  const qk_out_params *p, void *c, size_t c_stride) {
    const __m512i add0 = _mm512_loadu_si512(p->col_add + n0), add1 = _mm512_loadu_si512(p->col_add + n0 + 16);
    const __m512 s0 = _mm512_loadu_ps(p->scale + n0), s1 = _mm512_loadu_ps(p->scale + n0 + 16);
    const __m512 fhi = _mm512_set1_ps((float)(p->hi - p->zero_point));
    const __m512i zp = _mm512_set1_epi16((short)p->zero_point);
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m256i lo = _mm256_set1_epi8((char)p->lo);
    const int out_signed = p->out_signed;
    char *row = (char *)c + m0 * c_stride + n0;
#pragma GCC unroll 16
    for (int i = 0; i < QK_MR; i++, row += c_stride) {
        const __m512 f0 = _mm512_cvtepi32_ps(_mm512_add_epi32(_mm512_loadu_si512(t + 32 * i), add0));
        const __m512 f1 = _mm512_cvtepi32_ps(_mm512_add_epi32(_mm512_loadu_si512(t + 32 * i + 16), add1));
        const __m512i r0 = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_mul_ps(f0, s0), fhi));
        const __m512i r1 = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_mul_ps(f1, s1), fhi));
        const __m512i w = _mm512_adds_epi16(_mm512_packs_epi32(r0, r1), zp);
        const __m256i y = _mm512_castsi512_si256(
            _mm512_permutexvar_epi32(order, out_signed ? _mm512_packs_epi16(w, w) : _mm512_packus_epi16(w, w)));
        _mm256_storeu_si256((__m256i *)(void *)row, out_signed ? _mm256_max_epi8(y, lo) : _mm256_max_epu8(y, lo));
    }
}
#endif

/* A tile's stored sums (QK_MR rows of 16 * QK_NV) into the output: tile_fp32_store for 32
 * columns of ONNX's fp32 requantization without a fused QLinearAdd, else the zmm epilogue
 * (which adds one in registers). */
static inline __attribute__((always_inline)) void store_sums(const int32_t *acc, size_t m0, size_t n0, size_t nc,
                                                             const qk_out_params *p, void *c, size_t c_stride) {
#if !defined(QK_VNNI_EMULATED) && QK_NV == 2
    if (p->mode == QK_OUT_FP32 && nc == 32 && !p->post_b) {
        tile_fp32_store(acc, m0, n0, p, c, c_stride);
        return;
    }
#endif
    QK_VNNI_FN(qk_store_cols_avx512vnni)(QK_MR, nc / 16, acc, 16 * QK_NV, m0, n0, p, c, c_stride);
}

/* Tiles of int32 or fp32 output, nc / 16 strips of 16 columns: the zmm epilogue
 * (qs8_output_avx512vnni.c); 32 columns of 8-bit output: tile_tflite_store (TFLite's),
 * tile_fp32_store (ONNX's fp32 requantization). */
void QK_FUSED_NAME(size_t k_groups, const void *a_, const void *b_, size_t m0, size_t n0, size_t nc,
                   const qk_out_params *p, void *c, size_t c_stride) {
#if !defined(QK_VNNI_EMULATED) && QK_NV == 2
    if (p->mode == QK_OUT_FIXEDPOINT_UP && nc == 32) {
        __m512i add[2];
        qk_v512 acc[QK_MR][2];
        tile_tflite_start(p, n0, add, acc);
        tile_dot(k_groups, (const uint8_t *)a_, (const uint8_t *)b_, acc);
        tile_tflite_store(acc, add, m0, n0, p, c, c_stride);
        return;
    }
#endif
    int32_t acc[QK_MR * QK_NV * 16];
    QK_GEMM_NAME(k_groups, a_, b_, acc);
    store_sums(acc, m0, n0, nc, p, c, c_stride);
}

#ifdef QK_IGEMM_NAME
void QK_IGEMM_NAME(size_t segs, size_t seg_len, const void *const *ptrs, const void *b_, int32_t *acc) {
    qk_v512 c[QK_MR][QK_NV];
#pragma GCC unroll 16
    for (int i = 0; i < QK_MR; i++)
#pragma GCC unroll 4
        for (int j = 0; j < QK_NV; j++) c[i][j] = qk512_zero();
    itile_dot(segs, seg_len, ptrs, (const uint8_t *)b_, c);
#pragma GCC unroll 16
    for (int i = 0; i < QK_MR; i++)
#pragma GCC unroll 4
        for (int j = 0; j < QK_NV; j++) qk512_store(acc + (i * QK_NV + j) * 16, c[i][j]);
}

/* The fused entry of the indirect tile, as QK_FUSED_NAME's. */
void QK_IGEMM_FUSED_NAME(size_t segs, size_t seg_len, const void *const *ptrs, const void *b_, size_t m0, size_t n0,
                         size_t nc, const qk_out_params *p, void *c, size_t c_stride) {
#if !defined(QK_VNNI_EMULATED) && QK_NV == 2
    if (p->mode == QK_OUT_FIXEDPOINT_UP && nc == 32) {
        __m512i add[2];
        qk_v512 acc[QK_MR][2];
        tile_tflite_start(p, n0, add, acc);
        itile_dot(segs, seg_len, ptrs, (const uint8_t *)b_, acc);
        tile_tflite_store(acc, add, m0, n0, p, c, c_stride);
        return;
    }
#endif
    int32_t acc[QK_MR * QK_NV * 16];
    QK_IGEMM_NAME(segs, seg_len, ptrs, b_, acc);
    store_sums(acc, m0, n0, nc, p, c, c_stride);
}
#endif
