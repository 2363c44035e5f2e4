/* LiteRT's ties-up requantization (QK_OUT_FIXEDPOINT_UP) of 16 columns in float32 with an
 * exact check: the stage of qk_store_cols_avx512vnni and of the fused GEMM kernels' tiles
 * (qs8_gemm_c4_avx512vnni.h). Native builds only (the emulated ones take the 64-bit
 * fixed point of qk_vnni.h).
 *
 * Exactly, y = floor((v m + 2^30 + 2^(30+s)) / 2^(31+s)) = floor(v M + c), M = m 2^-(31+s)
 * < 2^-s, c = 1/2 + 2^(-1-s): qk512_fixedpoint's one rounding of the 64-bit product, for
 * right shifts s >= 2. Here t- and t+ are fma(float(v), float(M), c + zy -+ e) with
 * e = 2^-11: where the true t + zy is within 600 of zero, |acc M| < 860 and the three
 * float32 roundings (v, M, the fma; c + zy's) move it by under 2^-12.5, so t- < t + zy < t+,
 * and equal floors of t- and t+ are the exact result; beyond 600 both lie past the clamp on
 * t's side (relative error 2^-22). A row whose floors differ somewhere (about 1 in 60
 * rows at random: an integer within 2^-11) takes the 64-bit path. |t| < 2^29 + 2^9: no
 * conversion overflows. Fewer port-0 operations than the 64-bit multiplies and shifts. */
#ifndef QS8_TFLITE_STAGE_AVX512VNNI_H
#define QS8_TFLITE_STAGE_AVX512VNNI_H
#include "qk_output.h"
#include "qk_vnni.h"

typedef struct {
    __m512 m, c_lo, c_hi;
    __m512i mult, rshift, add;
} qk_tfl_stage;

/* The stage of 16 columns (their column terms add, multipliers mult, right shifts
 * rshift), or 0 where some column has s < 2. */
static inline int qk_tfl_stage_make(qk_tfl_stage *st, __m512i add, __m512i mult, __m512i rshift,
                                    const qk_out_params *p) {
    if (_mm512_cmplt_epi32_mask(rshift, _mm512_set1_epi32(2)))
        return 0;
    st->m = _mm512_scalef_ps(_mm512_cvtepi32_ps(mult), _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_set1_epi32(-31), rshift)));
    const __m512 c = _mm512_add_ps(_mm512_set1_ps(0.5f + (float)p->zero_point),
                                   _mm512_scalef_ps(_mm512_set1_ps(1.0f), _mm512_cvtepi32_ps(
                                       _mm512_sub_epi32(_mm512_set1_epi32(-1), rshift))));
    const __m512 e = _mm512_set1_ps(1.0f / 2048);
    st->c_lo = _mm512_sub_ps(c, e);
    st->c_hi = _mm512_add_ps(c, e);
    st->mult = mult;
    st->rshift = rshift;
    st->add = add;
    return 1;
}

/* The stage of columns n0 .. n0 + 15 of p (column terms, multipliers, shifts), or 0. */
static inline int qk_tfl_stage_at(qk_tfl_stage *st, size_t n0, const qk_out_params *p) {
    return qk_tfl_stage_make(st, _mm512_loadu_si512(p->col_add + n0), _mm512_loadu_si512(p->mult + n0),
                             _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_loadu_si512(p->shift + n0)), p);
}

/* One row's 16 results of v (the column terms added), zero point added: unclamped where
 * both floors agree (|y| < 2^30, so 8-bit saturation is the clamp to the type), clamped
 * to [lo, hi] where the 64-bit path decided. */
static inline __m512i qk_tfl_stage_floor(const qk_tfl_stage *st, __m512i v, const qk_out_params *p) {
    const __m512 vf = _mm512_cvtepi32_ps(v);
    const __m512i f_lo = _mm512_cvt_roundps_epi32(_mm512_fmadd_ps(vf, st->m, st->c_lo), _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    const __m512i f_hi = _mm512_cvt_roundps_epi32(_mm512_fmadd_ps(vf, st->m, st->c_hi), _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    if (__builtin_expect(_mm512_cmpneq_epi32_mask(f_lo, f_hi) != 0, 0)) {
        const __m512i zp = _mm512_set1_epi32(p->zero_point);
        return _mm512_add_epi32(qk512_clamp_i32(qk512_fixedpoint(v, st->mult, st->rshift, 1),
                                                _mm512_sub_epi32(_mm512_set1_epi32(p->lo), zp),
                                                _mm512_sub_epi32(_mm512_set1_epi32(p->hi), zp)), zp);
    }
    return f_lo;
}

/* The same clamped to [lo, hi]. */
static inline __m512i qk_tfl_stage_row(const qk_tfl_stage *st, __m512i v, const qk_out_params *p) {
    return _mm512_min_epi32(_mm512_max_epi32(qk_tfl_stage_floor(st, v, p), _mm512_set1_epi32(p->lo)),
                            _mm512_set1_epi32(p->hi));
}
#endif
