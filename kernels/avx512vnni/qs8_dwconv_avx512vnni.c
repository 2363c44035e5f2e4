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
    if (d->taps == 9) return sgn ? QK_DW_SUM(9, 1) : QK_DW_SUM(9, 0);
    if (d->taps == 25) return sgn ? QK_DW_SUM(25, 1) : QK_DW_SUM(25, 0);
    return sgn ? QK_DW_SUM(d->taps, 1) : QK_DW_SUM(d->taps, 0);
#undef QK_DW_SUM
}
