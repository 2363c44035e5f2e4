/* Depthwise sum kernel, AVX-512BW + VNNI: the AVX2 kernel's scheme (qs8_dwconv_avx2.c) on 32
 * channels per zmm step: inputs widened to int16, taps in pairs, vpdpwssd adding both
 * products onto the int32 sums in one instruction (exact: every product is below 2^16 in
 * magnitude, and the adds wrap like the AVX2 kernel's); each block's output through the zmm
 * epilogue (qs8_output_avx512vnni.c). 1.2-1.5x the AVX2 kernel on the conv suite's
 * depthwise layers (docs/design.md, "AVX-512 tier"). */
#include "qk_avx2.h"
#include "qk_vnni.h"
#include <stdint.h>

#define ALWAYS_INLINE static inline __attribute__((always_inline))

size_t qk_dw_sum_avx2(const qk_dw_params *d, size_t count, const uint8_t *const *ptrs, size_t ps, ptrdiff_t step,
                      size_t c0, int32_t *acc, size_t as, size_t m0, size_t *stored);
void QK_VNNI_FN(qk_store_cols_avx512vnni)(size_t mr, size_t strips, const int32_t *acc, size_t acc_stride, size_t m0,
                                          size_t n0, const qk_out_params *p, void *c, size_t c_stride);

/* In-lane byte shuffles, 8-bit packs and partial loads and stores of the 4-tap kernel */
#if defined(QK_VNNI_EMULATED)
#define QK_HALVES(f, x, y) { f((x).lo, (y).lo), f((x).hi, (y).hi) }
ALWAYS_INLINE qk_v512 unpacklo8(qk_v512 x, qk_v512 y) { qk_v512 v = QK_HALVES(_mm256_unpacklo_epi8, x, y); return v; }
ALWAYS_INLINE qk_v512 unpackhi8(qk_v512 x, qk_v512 y) { qk_v512 v = QK_HALVES(_mm256_unpackhi_epi8, x, y); return v; }
ALWAYS_INLINE qk_v512 packs32(qk_v512 x, qk_v512 y) { qk_v512 v = QK_HALVES(_mm256_packs_epi32, x, y); return v; }
ALWAYS_INLINE qk_v512 add16(qk_v512 x, qk_v512 y) { qk_v512 v = QK_HALVES(_mm256_add_epi16, x, y); return v; }
ALWAYS_INLINE qk_v512 packs16(qk_v512 x, qk_v512 y, int sgn) {
    qk_v512 v = sgn ? (qk_v512)QK_HALVES(_mm256_packs_epi16, x, y) : (qk_v512)QK_HALVES(_mm256_packus_epi16, x, y);
    return v;
}
ALWAYS_INLINE qk_v512 flip(qk_v512 x) { qk_v512 v = QK_HALVES(_mm256_xor_si256, x, qk512_set1((int32_t)0x80808080)); return v; }
#undef QK_HALVES
ALWAYS_INLINE qk_v512 load_n(const void *p, size_t n) {
    uint8_t b[64] = {0};
    memcpy(b, p, n);
    return qk512_load(b);
}
ALWAYS_INLINE void store_n(void *p, qk_v512 v, size_t n) {
    uint8_t b[64];
    qk512_store(b, v);
    memcpy(p, b, n);
}
ALWAYS_INLINE qk_v512 load_rows(const uint8_t *const *x, size_t ppv, size_t n) {
    uint8_t b[64] = {0};
    for (size_t q = 0; q < ppv; q++) memcpy(b + q * (64 / ppv), x[q], n);
    return qk512_load(b);
}
ALWAYS_INLINE void store_rows(char *row, size_t stride, size_t rows, qk_v512 v, size_t ppv, size_t n) {
    uint8_t b[64];
    qk512_store(b, v);
    for (size_t q = 0; q < rows; q++) memcpy(row + q * stride, b + q * (64 / ppv), n);
}
#else
ALWAYS_INLINE qk_v512 unpacklo8(qk_v512 x, qk_v512 y) { return _mm512_unpacklo_epi8(x, y); }
ALWAYS_INLINE qk_v512 unpackhi8(qk_v512 x, qk_v512 y) { return _mm512_unpackhi_epi8(x, y); }
ALWAYS_INLINE qk_v512 packs32(qk_v512 x, qk_v512 y) { return _mm512_packs_epi32(x, y); }
ALWAYS_INLINE qk_v512 add16(qk_v512 x, qk_v512 y) { return _mm512_add_epi16(x, y); }
ALWAYS_INLINE qk_v512 packs16(qk_v512 x, qk_v512 y, int sgn) {
    return sgn ? _mm512_packs_epi16(x, y) : _mm512_packus_epi16(x, y);
}
ALWAYS_INLINE qk_v512 flip(qk_v512 x) { return _mm512_xor_si512(x, _mm512_set1_epi8((char)0x80)); }
ALWAYS_INLINE __mmask64 bytes_mask(size_t n) { return n >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << n) - 1; }
ALWAYS_INLINE qk_v512 load_n(const void *p, size_t n) { return _mm512_maskz_loadu_epi8(bytes_mask(n), p); }
ALWAYS_INLINE void store_n(void *p, qk_v512 v, size_t n) { _mm512_mask_storeu_epi8(p, bytes_mask(n), v); }
/* ppv (1, 2 or 4) pixels' rows of n <= 64 / ppv bytes side by side, pixel q at byte q * 64 / ppv */
ALWAYS_INLINE __m256i load32_n(const void *p, size_t n) {
    return n == 32 ? _mm256_loadu_si256((const __m256i *)p) : _mm256_maskz_loadu_epi8((__mmask32)bytes_mask(n), p);
}
ALWAYS_INLINE __m128i load16_n(const void *p, size_t n) {
    return n == 16 ? _mm_loadu_si128((const __m128i *)p) : _mm_maskz_loadu_epi8((__mmask16)bytes_mask(n), p);
}
ALWAYS_INLINE qk_v512 load_rows(const uint8_t *const *x, size_t ppv, size_t n) {
    if (ppv == 1) return n == 64 ? qk512_load(x[0]) : load_n(x[0], n);
    if (ppv == 2) return _mm512_inserti64x4(_mm512_castsi256_si512(load32_n(x[0], n)), load32_n(x[1], n), 1);
    const __m256i lo = _mm256_inserti128_si256(_mm256_castsi128_si256(load16_n(x[0], n)), load16_n(x[1], n), 1);
    const __m256i hi = _mm256_inserti128_si256(_mm256_castsi128_si256(load16_n(x[2], n)), load16_n(x[3], n), 1);
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}
ALWAYS_INLINE void store_rows(char *row, size_t stride, size_t rows, qk_v512 v, size_t ppv, size_t n) {
    if (ppv == 1) {
        if (n == 64) qk512_store(row, v); else store_n(row, v, n);
        return;
    }
    for (size_t q = 0; q < rows; q++, row += stride) {
        if (ppv == 2) {
            const __m256i h = q ? _mm512_extracti64x4_epi64(v, 1) : _mm512_castsi512_si256(v);
            if (n == 32) _mm256_storeu_si256((__m256i *)(void *)row, h);
            else _mm256_mask_storeu_epi8(row, (__mmask32)bytes_mask(n), h);
        } else {
            __m128i l;
            switch (q) {
            case 0: l = _mm512_castsi512_si128(v); break;
            case 1: l = _mm512_extracti32x4_epi32(v, 1); break;
            case 2: l = _mm512_extracti32x4_epi32(v, 2); break;
            default: l = _mm512_extracti32x4_epi32(v, 3); break;
            }
            if (n == 16) _mm_storeu_si128((__m128i *)(void *)row, l);
            else _mm_mask_storeu_epi8(row, (__mmask16)bytes_mask(n), l);
        }
    }
}
#endif

/* The 4-tap kernel (d->vnni, qk_dw_pack_vnni's layout): for each pixel and 64 channels,
 * the inputs of 4 taps interleaved byte by byte in 128-bit lanes (two rounds of unpacks:
 * lane L dword j of vector k is channel 16L + 4k + j, its 4 bytes the 4 taps), one
 * vpdpbusd per vector adding 4 taps of 16 channels at once, exact (u8 x s8; s8 inputs
 * flipped to u8, the start sums compensate). The output stage (fp32: multiply, clamp,
 * round half to even, as qk_store_cols_avx512vnni) runs on the 4 sum vectors, and two
 * rounds of in-lane packs undo the unpacks' order, so 64 output bytes store in one go.
 * A last block of n < 64 channels loads and stores under a mask; one of n <= 32 (<= 16)
 * holds 2 (4) pixels per vector, its layout's lanes repeated (ppv, pixels per vector). */
ALWAYS_INLINE void vnni4_block(const qk_dw_params *d, size_t count, size_t taps, int sgn, size_t ppv,
                               const uint8_t *const *ptrs, size_t ps, ptrdiff_t step, size_t c, size_t n,
                               const uint8_t *blk, size_t m0) {
    const size_t groups = (taps + 3) / 4;
    const qk_out_params *p = d->out;
    const int32_t *init = (const int32_t *)(const void *)(blk + groups * 256);
    const float *scale = (const float *)(init + 64);
    const qk_v512f flo = qk512f_set1((float)(p->lo - p->zero_point)), fhi = qk512f_set1((float)(p->hi - p->zero_point));
    const qk_v512 zp = qk512_set1((int32_t)(((uint32_t)p->zero_point & 0xffff) * 0x10001u));
    const int osgn = p->out_signed;
    const size_t cs = d->c_stride;
    char *row = (char *)d->c + m0 * cs + c;
    for (size_t i = 0; i < count; i += ppv, row += ppv * cs) {
        const size_t rows = count - i < ppv ? count - i : ppv;
        const uint8_t *const *pp[4];
        ptrdiff_t off[4];
        for (size_t q = 0; q < ppv; q++) {   /* past the last pixel: the last pixel again, not stored */
            const size_t at = i + (q < rows ? q : rows - 1);
            pp[q] = ptrs + at * ps;
            off[q] = (ptrdiff_t)at * step + (ptrdiff_t)c;
        }
        qk_v512 acc[4];
        for (int k = 0; k < 4; k++) acc[k] = qk512_load(init + 16 * k);
        for (size_t g = 0; g < groups; g++) {
            qk_v512 r[4];
            for (size_t t = 0; t < 4; t++) {
                if (4 * g + t >= taps) { r[t] = qk512_zero(); continue; }
                const uint8_t *x[4];
                for (size_t q = 0; q < ppv; q++) x[q] = pp[q][4 * g + t] + off[q];
                r[t] = load_rows(x, ppv, n);
                if (sgn) r[t] = flip(r[t]);
            }
            const qk_v512 ab_lo = unpacklo8(r[0], r[1]), ab_hi = unpackhi8(r[0], r[1]);
            const qk_v512 cd_lo = unpacklo8(r[2], r[3]), cd_hi = unpackhi8(r[2], r[3]);
            const uint8_t *w = blk + g * 256;
            acc[0] = qk512_dpbusd(acc[0], qk512_unpacklo16(ab_lo, cd_lo), qk512_load(w));
            acc[1] = qk512_dpbusd(acc[1], qk512_unpackhi16(ab_lo, cd_lo), qk512_load(w + 64));
            acc[2] = qk512_dpbusd(acc[2], qk512_unpacklo16(ab_hi, cd_hi), qk512_load(w + 128));
            acc[3] = qk512_dpbusd(acc[3], qk512_unpackhi16(ab_hi, cd_hi), qk512_load(w + 192));
        }
        qk_v512 y[4];
        for (int k = 0; k < 4; k++)   /* in [lo - zy, hi - zy]: the packs below are exact */
            y[k] = qk512_round(qk512f_mul_clamp(qk512_to_f32(acc[k]), qk512f_load(scale + 16 * k), flo, fhi));
        store_rows(row, cs, rows, packs16(add16(packs32(y[0], y[1]), zp), add16(packs32(y[2], y[3]), zp), osgn),
                   ppv, n);
    }
}

ALWAYS_INLINE void vnni4(const qk_dw_params *d, size_t count, size_t taps, int sgn, const uint8_t *const *ptrs,
                         size_t ps, ptrdiff_t step, size_t m0) {
    const size_t ch = d->g.cg, blk_bytes = (taps + 3) / 4 * 256 + 512;
    const uint8_t *blk = d->vnni;
    size_t c = 0;
    for (; c + 64 <= ch; c += 64, blk += blk_bytes)
        vnni4_block(d, count, taps, sgn, 1, ptrs, ps, step, c, 64, blk, m0);
    const size_t n = ch - c;   /* the last block: 2 or 4 pixels per vector where it fits */
    if (n > 32)
        vnni4_block(d, count, taps, sgn, 1, ptrs, ps, step, c, n, blk, m0);
    else if (n > 16)
        vnni4_block(d, count, taps, sgn, 2, ptrs, ps, step, c, n, blk, m0);
    else if (n)
        vnni4_block(d, count, taps, sgn, 4, ptrs, ps, step, c, n, blk, m0);
}

ALWAYS_INLINE qk_v512 widen(const uint8_t *p, int sgn) { return sgn ? qk512_widen_s8(p) : qk512_widen_u8(p); }

/* Channels c .. c + 31 of count pixels. vpdpwssd lanes hold, per 128-bit lane L, channels
   8L + 0..3 (lo) and 8L + 4..7 (hi); zip128 puts them back in order for the stores. */
ALWAYS_INLINE void sum_block32(const qk_dw_params *d, size_t count, size_t taps, int sgn, const uint8_t *const *ptrs,
                               size_t ps, ptrdiff_t step, size_t c, int32_t *acc, size_t as) {
    enum { MAX_PAIRS = (QK_DW_MAX_TAPS + 1) / 2 };
    qk_v512 wlo[MAX_PAIRS], whi[MAX_PAIRS];
    const size_t pairs = (taps + 1) / 2, ch = d->g.cg;
    const int16_t *w = d->w;
    for (size_t q = 0; q < pairs; q++) {
        const qk_v512 w0 = qk512_load(w + 2 * q * ch + c);
        const qk_v512 w1 = 2 * q + 1 < taps ? qk512_load(w + (2 * q + 1) * ch + c) : qk512_zero();
        wlo[q] = qk512_unpacklo16(w0, w1);
        whi[q] = qk512_unpackhi16(w0, w1);
    }
    int32_t init_perm[2][32];   /* init in the lanes of lo and hi: built once per block */
    for (int l = 0; l < 16; l++) {
        init_perm[0][l] = d->init[c + (size_t)(l / 4 * 8 + l % 4)];
        init_perm[1][l] = d->init[c + (size_t)(l / 4 * 8 + 4 + l % 4)];
    }
    const qk_v512 init_lo = qk512_load(init_perm[0]), init_hi = qk512_load(init_perm[1]);
    for (size_t i = 0; i < count; i++) {
        const uint8_t *const *pp = ptrs + i * ps;
        const ptrdiff_t off = (ptrdiff_t)i * step + (ptrdiff_t)c;
        qk_v512 lo = init_lo, hi = init_hi;
        for (size_t q = 0; q < pairs; q++) {
            const qk_v512 x0 = widen(pp[2 * q] + off, sgn);
            const qk_v512 x1 = 2 * q + 1 < taps ? widen(pp[2 * q + 1] + off, sgn) : qk512_zero();
            lo = qk512_dpwssd(lo, qk512_unpacklo16(x0, x1), wlo[q]);
            hi = qk512_dpwssd(hi, qk512_unpackhi16(x0, x1), whi[q]);
        }
        qk512_store(acc + i * as + c, qk512_zip128_lo(lo, hi));
        qk512_store(acc + i * as + c + 16, qk512_zip128_hi(lo, hi));
    }
}

/* One block and, when the kernel stores, its output while its sums are in L1. */
ALWAYS_INLINE void block_out(const qk_dw_params *d, size_t count, size_t taps, int sgn, const uint8_t *const *ptrs,
                             size_t ps, ptrdiff_t step, size_t c, int32_t *acc, size_t as, size_t m0,
                             const qk_out_params *out) {
    sum_block32(d, count, taps, sgn, ptrs, ps, step, c, acc, as);
    if (out) QK_VNNI_FN(qk_store_cols_avx512vnni)(count, 2, acc + c, as, m0, c, out, d->c, d->c_stride);
}

/* The 32-channel block to compute after [c0, b) is covered, or SIZE_MAX: whole blocks, then
   under 16 channels left, one block shifted to end at C (its overlap gets the same sums);
   16 to 31 left are the AVX2 kernel's (a shifted block would redo up to 31 channels). */
static inline size_t next_block32(size_t c0, size_t b, size_t ch) {
    if (ch - b >= 32) return b;
    return b > c0 && b < ch && ch - b < 16 ? ch - 32 : SIZE_MAX;
}

ALWAYS_INLINE size_t sum_blocks(const qk_dw_params *d, size_t count, size_t taps, int sgn, const uint8_t *const *ptrs,
                                size_t ps, ptrdiff_t step, size_t c0, int32_t *acc, size_t as, size_t m0,
                                size_t *stored) {
    const size_t ch = d->g.cg;
    const qk_out_params *out = d->out;
    size_t b = c0, c;
    for (; (c = next_block32(c0, b, ch)) != SIZE_MAX; b = c + 32)
        block_out(d, count, taps, sgn, ptrs, ps, step, c, acc, as, m0, out);
    const size_t end = ch - b >= 16 ? qk_dw_sum_avx2(d, count, ptrs, ps, step, b, acc, as, m0, stored) : b;
    *stored = out ? end : c0;
    return end;
}

size_t QK_VNNI_FN(qk_dw_sum_avx512vnni)(const qk_dw_params *d, size_t count, const uint8_t *const *ptrs, size_t ps,
                                        ptrdiff_t step, size_t c0, int32_t *acc, size_t as, size_t m0,
                                        size_t *stored) {
    /* constant tap counts and signedness let the compiler unroll and drop the branches */
#define QK_DW_SUM(T, S) sum_blocks(d, count, T, S, ptrs, ps, step, c0, acc, as, m0, stored)
    const int sgn = d->a_signed;
    if (d->vnni && c0 == 0) {
#define QK_DW_VNNI(T, S) vnni4(d, count, T, S, ptrs, ps, step, m0)
        if (d->taps == 9) sgn ? QK_DW_VNNI(9, 1) : QK_DW_VNNI(9, 0);
        else if (d->taps == 25) sgn ? QK_DW_VNNI(25, 1) : QK_DW_VNNI(25, 0);
        else sgn ? QK_DW_VNNI(d->taps, 1) : QK_DW_VNNI(d->taps, 0);
#undef QK_DW_VNNI
        *stored = d->g.cg;
        return d->g.cg;
    }
    if (d->taps == 9) return sgn ? QK_DW_SUM(9, 1) : QK_DW_SUM(9, 0);
    if (d->taps == 25) return sgn ? QK_DW_SUM(25, 1) : QK_DW_SUM(25, 0);
    return sgn ? QK_DW_SUM(d->taps, 1) : QK_DW_SUM(d->taps, 0);
#undef QK_DW_SUM
}
