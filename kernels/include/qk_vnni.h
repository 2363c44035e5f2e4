/* The vector vocabulary of the VNNI micro-kernels (kernels/avx512vnni, kernels/avxvnni).
 *
 * Each VNNI kernel is written once with the names below and compiled twice (setup.py):
 * natively, with its ISA's flags, and with QK_VNNI_EMULATED and AVX2 flags only, where
 * every AVX-512 / VNNI operation is an exact AVX2 equivalent. QEMU cannot run AVX-512, so
 * the emulated build (ISA paths avx512vnni_emu, avxvnni_emu) is what checks the kernels'
 * logic (panels, tails, compensation, output stages) on every machine and in CI; the
 * native build is checked where the CPU has VNNI. Only the instructions differ.
 *
 * vpdpbusd: c.i32[l] += sum_{j<4} a.u8[4l+j] * b.s8[4l+j], no intermediate saturation,
 * wrapping like int32 adds: exact for every input. */
#ifndef QK_VNNI_H
#define QK_VNNI_H
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#ifdef QK_VNNI_EMULATED
#define QK_VNNI_FN(name) name##_emu
#else
#define QK_VNNI_FN(name) name
#endif

static inline int32_t qk_load_i32(const void *p) {   /* unaligned, no aliasing issue */
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* ---- 256-bit: __m256i */
static inline __m256i qk_dpbusd256(__m256i c, __m256i a, __m256i b) {
#if defined(QK_VNNI_EMULATED)
    /* u8 x s8 in 16-bit lanes: even and odd bytes apart, each product |p| <= 32640 and
       vpmaddwd's pair sums <= 65280 fit int32: exact */
    const __m256i lo8 = _mm256_set1_epi16(0x00ff);
    const __m256i a_even = _mm256_and_si256(a, lo8), a_odd = _mm256_srli_epi16(a, 8);
    const __m256i b_even = _mm256_srai_epi16(_mm256_slli_epi16(b, 8), 8), b_odd = _mm256_srai_epi16(b, 8);
    const __m256i s = _mm256_add_epi32(_mm256_madd_epi16(a_even, b_even), _mm256_madd_epi16(a_odd, b_odd));
    return _mm256_add_epi32(c, s);
#elif defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpbusd_epi32(c, a, b);
#else
    return _mm256_dpbusd_avx_epi32(c, a, b);
#endif
}

/* ---- 512-bit: qk_v512, a zmm register (emulated: two ymm halves) */
#if defined(QK_VNNI_EMULATED)
typedef struct { __m256i lo, hi; } qk_v512;
static inline qk_v512 qk512_zero(void) { qk_v512 v = {_mm256_setzero_si256(), _mm256_setzero_si256()}; return v; }
static inline qk_v512 qk512_load(const void *p) {
    qk_v512 v = {_mm256_loadu_si256((const __m256i *)p), _mm256_loadu_si256((const __m256i *)p + 1)};
    return v;
}
static inline qk_v512 qk512_bcast32(const void *p) {
    __m256i x = _mm256_set1_epi32(qk_load_i32(p));
    qk_v512 v = {x, x};
    return v;
}
static inline qk_v512 qk512_add(qk_v512 x, qk_v512 y) {
    qk_v512 v = {_mm256_add_epi32(x.lo, y.lo), _mm256_add_epi32(x.hi, y.hi)};
    return v;
}
static inline qk_v512 qk512_dpbusd(qk_v512 c, qk_v512 a, qk_v512 b) {
    qk_v512 v = {qk_dpbusd256(c.lo, a.lo, b.lo), qk_dpbusd256(c.hi, a.hi, b.hi)};
    return v;
}
static inline void qk512_store(void *p, qk_v512 v) {
    _mm256_storeu_si256((__m256i *)p, v.lo);
    _mm256_storeu_si256((__m256i *)p + 1, v.hi);
}
#elif defined(__AVX512F__)
typedef __m512i qk_v512;
static inline qk_v512 qk512_zero(void) { return _mm512_setzero_si512(); }
static inline qk_v512 qk512_load(const void *p) { return _mm512_loadu_si512(p); }
static inline qk_v512 qk512_bcast32(const void *p) { return _mm512_set1_epi32(qk_load_i32(p)); }
static inline qk_v512 qk512_add(qk_v512 x, qk_v512 y) { return _mm512_add_epi32(x, y); }
static inline qk_v512 qk512_dpbusd(qk_v512 c, qk_v512 a, qk_v512 b) { return _mm512_dpbusd_epi32(c, a, b); }
static inline void qk512_store(void *p, qk_v512 v) { _mm512_storeu_si512(p, v); }
#endif
/* ---- 512-bit, for the fp16 GEMM and depthwise kernels (kernels/avx512vnni/f16_*, qs8_dwconv_*).
 * Emulated, each operation is the AVX2 one on each 256-bit half, with the lanes where
 * zmm has them (per-128-bit-lane unpacks included): one rounding per FMA either way, so
 * the emulated kernel computes the native one's values bit for bit. */
#if defined(QK_VNNI_EMULATED)
typedef struct { __m256 lo, hi; } qk_v512f;
static inline qk_v512f qk512f_zero(void) { qk_v512f v = {_mm256_setzero_ps(), _mm256_setzero_ps()}; return v; }
static inline qk_v512f qk512f_bcast(const float *p) {
    const __m256 x = _mm256_broadcast_ss(p);
    qk_v512f v = {x, x};
    return v;
}
static inline qk_v512f qk512f_load(const float *p) {
    qk_v512f v = {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)};
    return v;
}
static inline qk_v512f qk512f_load_f16(const void *p) {   /* 16 fp16 values, converted exactly */
    qk_v512f v = {_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)),
                  _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p + 1))};
    return v;
}
static inline qk_v512f qk512f_fmadd(qk_v512f a, qk_v512f b, qk_v512f c) {
    qk_v512f v = {_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)};
    return v;
}
static inline qk_v512f qk512f_add(qk_v512f x, qk_v512f y) {
    qk_v512f v = {_mm256_add_ps(x.lo, y.lo), _mm256_add_ps(x.hi, y.hi)};
    return v;
}
static inline qk_v512f qk512f_sub(qk_v512f x, qk_v512f y) {
    qk_v512f v = {_mm256_sub_ps(x.lo, y.lo), _mm256_sub_ps(x.hi, y.hi)};
    return v;
}
static inline void qk512f_store(float *p, qk_v512f v) {
    _mm256_storeu_ps(p, v.lo);
    _mm256_storeu_ps(p + 8, v.hi);
}
/* The first n (<= 16) floats at p, zeros after (nothing past them read); stored likewise. */
static inline qk_v512f qk512f_load_n(const float *p, size_t n) {
    float t[16] = {0};
    memcpy(t, p, n * sizeof(float));
    return qk512f_load(t);
}
static inline void qk512f_store_n(float *p, qk_v512f v, size_t n) {
    float t[16];
    qk512f_store(t, v);
    memcpy(p, t, n * sizeof(float));
}
/* 32 bytes widened to 32 int16, in order */
static inline qk_v512 qk512_widen_u8(const void *p) {
    qk_v512 v = {_mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)p)),
                 _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)p + 1))};
    return v;
}
static inline qk_v512 qk512_widen_s8(const void *p) {
    qk_v512 v = {_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)p)),
                 _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)p + 1))};
    return v;
}
static inline qk_v512 qk512_unpacklo16(qk_v512 x, qk_v512 y) {   /* within each 128-bit lane */
    qk_v512 v = {_mm256_unpacklo_epi16(x.lo, y.lo), _mm256_unpacklo_epi16(x.hi, y.hi)};
    return v;
}
static inline qk_v512 qk512_unpackhi16(qk_v512 x, qk_v512 y) {
    qk_v512 v = {_mm256_unpackhi_epi16(x.lo, y.lo), _mm256_unpackhi_epi16(x.hi, y.hi)};
    return v;
}
/* vpdpwssd: c.i32[l] += x.i16[2l] * y.i16[2l] + x.i16[2l+1] * y.i16[2l+1], wrapping: vpmaddwd
   then vpaddd is the same sum modulo 2^32 for every input */
static inline qk_v512 qk512_dpwssd(qk_v512 c, qk_v512 x, qk_v512 y) {
    qk_v512 v = {_mm256_add_epi32(c.lo, _mm256_madd_epi16(x.lo, y.lo)),
                 _mm256_add_epi32(c.hi, _mm256_madd_epi16(x.hi, y.hi))};
    return v;
}
/* 128-bit lanes interleaved: lo = (x0, y0, x1, y1), hi = (x2, y2, x3, y3) */
static inline qk_v512 qk512_zip128_lo(qk_v512 x, qk_v512 y) {
    qk_v512 v = {_mm256_permute2x128_si256(x.lo, y.lo, 0x20), _mm256_permute2x128_si256(x.lo, y.lo, 0x31)};
    return v;
}
static inline qk_v512 qk512_zip128_hi(qk_v512 x, qk_v512 y) {
    qk_v512 v = {_mm256_permute2x128_si256(x.hi, y.hi, 0x20), _mm256_permute2x128_si256(x.hi, y.hi, 0x31)};
    return v;
}
#elif defined(__AVX512F__)
typedef __m512 qk_v512f;
static inline qk_v512f qk512f_zero(void) { return _mm512_setzero_ps(); }
static inline qk_v512f qk512f_bcast(const float *p) { return _mm512_set1_ps(*p); }
static inline qk_v512f qk512f_load(const float *p) { return _mm512_loadu_ps(p); }
static inline qk_v512f qk512f_load_f16(const void *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}
static inline qk_v512f qk512f_fmadd(qk_v512f a, qk_v512f b, qk_v512f c) { return _mm512_fmadd_ps(a, b, c); }
static inline qk_v512f qk512f_add(qk_v512f x, qk_v512f y) { return _mm512_add_ps(x, y); }
static inline qk_v512f qk512f_sub(qk_v512f x, qk_v512f y) { return _mm512_sub_ps(x, y); }
static inline void qk512f_store(float *p, qk_v512f v) { _mm512_storeu_ps(p, v); }
static inline qk_v512f qk512f_load_n(const float *p, size_t n) {
    return _mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1), p);
}
static inline void qk512f_store_n(float *p, qk_v512f v, size_t n) {
    _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1), v);
}
static inline qk_v512 qk512_widen_u8(const void *p) {
    return _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)p));
}
static inline qk_v512 qk512_widen_s8(const void *p) {
    return _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)p));
}
static inline qk_v512 qk512_unpacklo16(qk_v512 x, qk_v512 y) { return _mm512_unpacklo_epi16(x, y); }
static inline qk_v512 qk512_unpackhi16(qk_v512 x, qk_v512 y) { return _mm512_unpackhi_epi16(x, y); }
static inline qk_v512 qk512_dpwssd(qk_v512 c, qk_v512 x, qk_v512 y) { return _mm512_dpwssd_epi32(c, x, y); }
static inline qk_v512 qk512_zip128_lo(qk_v512 x, qk_v512 y) {
    return _mm512_permutex2var_epi64(x, _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11), y);
}
static inline qk_v512 qk512_zip128_hi(qk_v512 x, qk_v512 y) {
    return _mm512_permutex2var_epi64(x, _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15), y);
}
#endif
/* ---- the output stage (qs8_output_avx512vnni.c) */
#if defined(QK_VNNI_EMULATED)
#include "qk_fixedpoint_avx2.h"
static inline qk_v512f qk512f_set1(float x) { qk_v512f v = {_mm256_set1_ps(x), _mm256_set1_ps(x)}; return v; }
static inline qk_v512 qk512_set1(int32_t x) { qk_v512 v = {_mm256_set1_epi32(x), _mm256_set1_epi32(x)}; return v; }
static inline qk_v512f qk512_to_f32(qk_v512 x) {
    qk_v512f v = {_mm256_cvtepi32_ps(x.lo), _mm256_cvtepi32_ps(x.hi)};
    return v;
}
/* x * s clamped to [lo, hi] (max, then min: NaN-free inputs) */
static inline qk_v512f qk512f_mul_clamp(qk_v512f x, qk_v512f s, qk_v512f lo, qk_v512f hi) {
    qk_v512f v = {_mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(x.lo, s.lo), lo.lo), hi.lo),
                  _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(x.hi, s.hi), lo.hi), hi.hi)};
    return v;
}
static inline qk_v512 qk512_round(qk_v512f x) {   /* to int32, nearest even (MXCSR default) */
    qk_v512 v = {_mm256_cvtps_epi32(x.lo), _mm256_cvtps_epi32(x.hi)};
    return v;
}
/* x clamped to [lo, hi] with x the second operand of max and min: a NaN x passes through
   (the fp32 output stage, qk_f32_out) */
static inline qk_v512f qk512f_clamp(qk_v512f x, qk_v512f lo, qk_v512f hi) {
    qk_v512f v = {_mm256_min_ps(hi.lo, _mm256_max_ps(lo.lo, x.lo)), _mm256_min_ps(hi.hi, _mm256_max_ps(lo.hi, x.hi))};
    return v;
}
static inline qk_v512f qk512f_mul(qk_v512f x, qk_v512f y) {
    qk_v512f v = {_mm256_mul_ps(x.lo, y.lo), _mm256_mul_ps(x.hi, y.hi)};
    return v;
}
static inline qk_v512f qk512f_div(qk_v512f x, qk_v512f y) {
    qk_v512f v = {_mm256_div_ps(x.lo, y.lo), _mm256_div_ps(x.hi, y.hi)};
    return v;
}
/* The low byte of each lane (vpmovdb), 16 bytes stored: masked to 0..255, the unsigned
   saturating packs keep every value. */
static inline qk_v512 qk512_fixedpoint(qk_v512 x, qk_v512 mult, qk_v512 rshift, int ties_up) {
    qk_v512 v = {qk_fixedpoint8_avx2(x.lo, mult.lo, rshift.lo, ties_up),
                 qk_fixedpoint8_avx2(x.hi, mult.hi, rshift.hi, ties_up)};
    return v;
}
static inline qk_v512 qk512_sub(qk_v512 x, qk_v512 y) {
    qk_v512 v = {_mm256_sub_epi32(x.lo, y.lo), _mm256_sub_epi32(x.hi, y.hi)};
    return v;
}
static inline qk_v512 qk512_clamp_i32(qk_v512 x, qk_v512 lo, qk_v512 hi) {
    qk_v512 v = {_mm256_min_epi32(_mm256_max_epi32(x.lo, lo.lo), hi.lo), _mm256_min_epi32(_mm256_max_epi32(x.hi, lo.hi), hi.hi)};
    return v;
}
static inline int qk512_any_positive(qk_v512 x) {
    const __m256i z = _mm256_setzero_si256();
    return !_mm256_testz_si256(_mm256_or_si256(_mm256_cmpgt_epi32(x.lo, z), _mm256_cmpgt_epi32(x.hi, z)), _mm256_set1_epi32(-1));
}
/* 16 bytes, uint8 or int8, widened to int32 lanes */
static inline qk_v512 qk512_load_bytes(const void *p, int is_signed) {
    const __m128i a = _mm_loadl_epi64((const __m128i *)p), b = _mm_loadl_epi64((const __m128i *)((const char *)p + 8));
    qk_v512 v = {is_signed ? _mm256_cvtepi8_epi32(a) : _mm256_cvtepu8_epi32(a),
                 is_signed ? _mm256_cvtepi8_epi32(b) : _mm256_cvtepu8_epi32(b)};
    return v;
}
static inline void qk512_store_bytes(void *p, qk_v512 v) {
    const __m256i ff = _mm256_set1_epi32(0xff);
    __m256i w = _mm256_packus_epi32(_mm256_and_si256(v.lo, ff), _mm256_and_si256(v.hi, ff));
    w = _mm256_permute4x64_epi64(w, 0xD8);   /* undo the per-lane interleave of packs */
    _mm_storeu_si128((__m128i *)p, _mm_packus_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1)));
}
#elif defined(__AVX512F__)
static inline qk_v512f qk512f_set1(float x) { return _mm512_set1_ps(x); }
static inline qk_v512 qk512_set1(int32_t x) { return _mm512_set1_epi32(x); }
static inline qk_v512f qk512_to_f32(qk_v512 x) { return _mm512_cvtepi32_ps(x); }
static inline qk_v512f qk512f_mul_clamp(qk_v512f x, qk_v512f s, qk_v512f lo, qk_v512f hi) {
    return _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(x, s), lo), hi);
}
static inline qk_v512 qk512_round(qk_v512f x) { return _mm512_cvtps_epi32(x); }
static inline qk_v512f qk512f_clamp(qk_v512f x, qk_v512f lo, qk_v512f hi) {
    return _mm512_min_ps(hi, _mm512_max_ps(lo, x));
}
static inline qk_v512f qk512f_mul(qk_v512f x, qk_v512f y) { return _mm512_mul_ps(x, y); }
static inline qk_v512f qk512f_div(qk_v512f x, qk_v512f y) { return _mm512_div_ps(x, y); }
static inline qk_v512 qk512_load_bytes(const void *p, int is_signed) {   /* 16 bytes widened to int32 lanes */
    const __m128i a = _mm_loadu_si128((const __m128i *)p);
    return is_signed ? _mm512_cvtepi8_epi32(a) : _mm512_cvtepu8_epi32(a);
}
static inline void qk512_store_bytes(void *p, qk_v512 v) { _mm_storeu_si128((__m128i *)p, _mm512_cvtepi32_epi8(v)); }
/* qk_fixedpoint8_avx2 on 16 lanes (right shifts only) */
static inline qk_v512 qk512_fixedpoint(qk_v512 x, qk_v512 mult, qk_v512 rshift, int ties_up) {
    const __m512i half = _mm512_set1_epi64(1LL << 30), one = _mm512_set1_epi32(1);
    if (ties_up) {
        /* Both roundings are half up here, (x*m + 2^30) >> 31 and then (h + 2^(s-1)) >> s,
           and floor((floor(y) + k) / 2^s) = floor((y + k) / 2^s) for integer k: one
           rounding of the exact 64-bit product, (x*m + 2^30 + [s > 0] 2^(30+s)) >> (31+s). */
        const __m512i s_e = _mm512_and_si512(rshift, _mm512_set1_epi64(0xffffffffLL));
        const __m512i s_o = _mm512_srli_epi64(rshift, 32), k31 = _mm512_set1_epi64(31);
        const __m512i off_e = _mm512_add_epi64(half, _mm512_maskz_sllv_epi64(_mm512_test_epi64_mask(s_e, s_e), half, s_e));
        const __m512i off_o = _mm512_add_epi64(half, _mm512_maskz_sllv_epi64(_mm512_test_epi64_mask(s_o, s_o), half, s_o));
        __m512i even = _mm512_srav_epi64(_mm512_add_epi64(_mm512_mul_epi32(x, mult), off_e), _mm512_add_epi64(s_e, k31));
        __m512i odd = _mm512_srav_epi64(_mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64(x, 32),
                                                                           _mm512_srli_epi64(mult, 32)), off_o),
                                        _mm512_add_epi64(s_o, k31));
        return _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
    }
    __m512i even = _mm512_add_epi64(_mm512_mul_epi32(x, mult), half);
    __m512i odd = _mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64(x, 32), _mm512_srli_epi64(mult, 32)), half);
    __m512i hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 31), _mm512_slli_epi64(odd, 1));
    __m512i mask = _mm512_sub_epi32(_mm512_sllv_epi32(one, rshift), one);
    __m512i rem = _mm512_and_si512(hi, mask);
    __m512i thr = _mm512_srli_epi32(mask, 1);
    if (!ties_up) thr = _mm512_mask_add_epi32(thr, _mm512_cmplt_epi32_mask(hi, _mm512_setzero_si512()), thr, one);
    __m512i r = _mm512_srav_epi32(hi, rshift);
    return _mm512_mask_add_epi32(r, _mm512_cmpgt_epi32_mask(rem, thr), r, one);
}
static inline qk_v512 qk512_sub(qk_v512 x, qk_v512 y) { return _mm512_sub_epi32(x, y); }
static inline qk_v512 qk512_clamp_i32(qk_v512 x, qk_v512 lo, qk_v512 hi) {
    return _mm512_min_epi32(_mm512_max_epi32(x, lo), hi);
}
static inline int qk512_any_positive(qk_v512 x) { return _mm512_cmpgt_epi32_mask(x, _mm512_setzero_si512()) != 0; }
#endif
#endif
