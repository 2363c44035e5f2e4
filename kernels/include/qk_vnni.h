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
#endif
