/* TFLite's 8-bit ADD and SUB (kernels/tfl_binary.c) 64 values at a time with AVX-512 VBMI:
 * the 256-entry int32 tables split into four byte planes once per call, each plane's
 * lookup two vpermi2b over its halves (the index's top bit picks), the planes interleaved
 * back into int32 lanes (unpack bytes, then words: lane order 0-3, 4-7, 8-11, 12-15 of each
 * 128 bits, which the saturating packs at the end undo), then the fixed-point output
 * multiply with gemmlowp's rounding (ties away from zero), clamp, pack. The AVX2 loop
 * gathers: 2-3x the time per value on the machine measured (family 6 model 207). MUL, an
 * output multiplier with a left shift, and the last values take the AVX2 loop: the same
 * bits. Compiled with this directory's AVX2 flags, the function itself targets AVX-512
 * (picked only where the CPU has AVX512BW and VBMI, kernels/tfl_binary.c). */
#include <immintrin.h>
#include <stdint.h>
#include "qk_tfl.h"

void qk_tfl_binary_avx2_part(QK_TFL_PART_ARGS);

#define QK_VBMI __attribute__((target("avx512f,avx512bw,avx512vbmi"), always_inline)) static inline

/* byte j of each of the 256 entries of t, as 4 x 64 bytes */
QK_VBMI void planes(const int32_t *t, uint8_t p[4][256]) {
    for (int i = 0; i < 256; i += 16) {
        const __m512i v = _mm512_loadu_si512(t + i);
        for (int j = 0; j < 4; j++) _mm_storeu_si128((__m128i *)(p[j] + i), _mm512_cvtepi32_epi8(_mm512_srli_epi32(v, 8 * j)));
    }
}

QK_VBMI __m512i lookup(const uint8_t *p, __m512i x, __mmask64 top) {
    const __m512i lo = _mm512_permutex2var_epi8(_mm512_loadu_si512(p), x, _mm512_loadu_si512(p + 64));
    const __m512i hi = _mm512_permutex2var_epi8(_mm512_loadu_si512(p + 128), x, _mm512_loadu_si512(p + 192));
    return _mm512_mask_blend_epi8(top, lo, hi);
}

/* the table values of the 64 bytes x, as four vectors of int32 (lane order above) */
QK_VBMI void values(uint8_t p[4][256], __m512i x, __m512i v[4]) {
    const __mmask64 top = _mm512_movepi8_mask(x);
    const __m512i b0 = lookup(p[0], x, top), b1 = lookup(p[1], x, top);
    const __m512i b2 = lookup(p[2], x, top), b3 = lookup(p[3], x, top);
    const __m512i w01l = _mm512_unpacklo_epi8(b0, b1), w01h = _mm512_unpackhi_epi8(b0, b1);
    const __m512i w23l = _mm512_unpacklo_epi8(b2, b3), w23h = _mm512_unpackhi_epi8(b2, b3);
    v[0] = _mm512_unpacklo_epi16(w01l, w23l);
    v[1] = _mm512_unpackhi_epi16(w01l, w23l);
    v[2] = _mm512_unpacklo_epi16(w01h, w23h);
    v[3] = _mm512_unpackhi_epi16(w01h, w23h);
}

/* clamp(MultiplyByQuantizedMultiplier(raw, m, -r) + zy, lo, hi): (raw m + 2^30) >> 31 in
   64-bit halves, then the rounding right shift, ties away from zero */
QK_VBMI __m512i requant(__m512i raw, __m512i m, __m512i r, __m512i half, __m512i zy, __m512i lo, __m512i hi,
                        int lanes) {
    const __m512i q30 = _mm512_set1_epi64(1LL << 30);
    const __m512i even = _mm512_srli_epi64(_mm512_add_epi64(_mm512_mul_epi32(raw, m), q30), 31);
    const __m512i odd = _mm512_slli_epi64(_mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64(raw, 32), m), q30), 1);
    const __m512i h = _mm512_mask_blend_epi32(0xAAAA, even, odd);
    /* (h + 2^(r-1) - [h < 0]) >> r, or h where r = 0 (half = 0, no sign step) */
    const __mmask16 neg = _mm512_test_epi32_mask(half, half) & _mm512_cmplt_epi32_mask(h, _mm512_setzero_si512());
    const __m512i up = _mm512_add_epi32(h, half);
    const __m512i v = _mm512_srav_epi32(_mm512_mask_sub_epi32(up, neg, up, _mm512_set1_epi32(1)), r);
    __m512i w = _mm512_add_epi32(v, zy);
    if (lanes)      /* ADD's 16-bit lanes: the sum wraps as the scaled value would (qk_tfl.h) */
        w = _mm512_srai_epi32(_mm512_slli_epi32(w, 16), 16);
    return _mm512_min_epi32(_mm512_max_epi32(w, lo), hi);
}

__attribute__((target("avx512f,avx512bw,avx512vbmi")))
static void qk_tfl_binary_vbmi_part(QK_TFL_PART_ARGS) {
    const uint8_t *pa = (const uint8_t *)a, *pb = (const uint8_t *)b;
    uint8_t *py = (uint8_t *)y;
    size_t i = 0;
    if (op != QK_TFL_MUL && shift <= 0 && n >= 64) {
        uint8_t pta[4][256], ptb[4][256];
        planes(ta, pta);
        planes(tb, ptb);
        const __m512i m = _mm512_set1_epi32(mult), r = _mm512_set1_epi32(-shift);
        const __m512i half = _mm512_set1_epi32(shift < 0 ? 1 << (-shift - 1) : 0);
        const __m512i vzy = _mm512_set1_epi32(zy), vlo = _mm512_set1_epi32(lo), vhi = _mm512_set1_epi32(hi);
        for (; i + 64 <= n; i += 64) {
            __m512i va[4], vb[4], out[4];
            values(pta, _mm512_loadu_si512(pa + i), va);
            values(ptb, _mm512_loadu_si512(pb + i), vb);
            /* table entries are below 2^28 in magnitude: their sum and difference fit int32 */
            for (int j = 0; j < 4; j++)
                out[j] = requant(op == QK_TFL_SUB ? _mm512_sub_epi32(va[j], vb[j]) : _mm512_add_epi32(va[j], vb[j]),
                                 m, r, half, vzy, vlo, vhi, lanes);
            const __m512i w0 = _mm512_packs_epi32(out[0], out[1]), w1 = _mm512_packs_epi32(out[2], out[3]);
            _mm512_storeu_si512(py + i, is_signed ? _mm512_packs_epi16(w0, w1) : _mm512_packus_epi16(w0, w1));
        }
    }
    if (i < n)
        qk_tfl_binary_avx2_part(n - i, lanes, op, is_signed, pa + i, pb + i, ta, tb, za, zb, mult, shift, zy, lo, hi,
                                py + i);
}

QK_TFL_ENTRY(qk_tfl_binary_vbmi, qk_tfl_binary_vbmi_part)
