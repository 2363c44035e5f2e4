/* Output stage, AVX2: 8 columns at a time; fp32 and fixed-point requantization
 * bit-identical to the scalar stage (qk_output.h). Columns with a left shift
 * (fixed-point scale >= 1, rare) take the scalar route. */
#include <immintrin.h>
#include "qk_output.h"
#include "qk_avx2.h"
#include "qk_fixedpoint_avx2.h"

void qk_output_avx2(size_t mr, size_t nr, const int32_t *acc, size_t acc_stride,
                    size_t m0, size_t n0, const qk_out_params *p, void *c, size_t c_stride) {
    /* Locals, not p->...: stores through the char output pointer may alias anything,
     * which would force a reload of every parameter after every store. */
    const int mode = p->mode, out_signed = p->out_signed;
    const int32_t *row_sum = p->row_sum;
    const size_t es = qk_out_elem_size(p);
    const __m256i zp = _mm256_set1_epi32(p->zero_point);
    const __m256i lo_zp = _mm256_set1_epi32(p->lo - p->zero_point), hi_zp = _mm256_set1_epi32(p->hi - p->zero_point);
    const __m256 flo = _mm256_set1_ps((float)(p->lo - p->zero_point));
    const __m256 fhi = _mm256_set1_ps((float)(p->hi - p->zero_point));
    size_t j = 0;
    /* Column blocks outer, rows inner: per-column terms are loaded once per tile. */
    for (; j + 8 <= nr; j += 8) {
        const size_t n = n0 + j;
        const __m256i add = _mm256_loadu_si256((const __m256i *)(p->col_add + n));
        const __m256i zb = row_sum ? _mm256_loadu_si256((const __m256i *)(p->col_zb + n)) : add;
        __m256 scale = _mm256_setzero_ps();
        __m256i mult = add, rshift = add;
        int scalar_cols = 0;
        __m256 bias = _mm256_setzero_ps();
        if (mode == QK_OUT_FP32 || mode == QK_OUT_DQ_F32) {
            scale = _mm256_loadu_ps(p->scale + n);
            if (mode == QK_OUT_DQ_F32 && p->bias_f) bias = _mm256_loadu_ps(p->bias_f + n);
        } else if (qk_out_is_fixedpoint(mode)) {
            const __m256i shift = _mm256_loadu_si256((const __m256i *)(p->shift + n));
            scalar_cols = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(shift, _mm256_setzero_si256())));
            mult = _mm256_loadu_si256((const __m256i *)(p->mult + n));
            rshift = _mm256_sub_epi32(_mm256_setzero_si256(), shift);
        }
        for (size_t i = 0; i < mr; i++) {
            const int32_t *a = acc + i * acc_stride;
            char *row = (char *)c + (m0 + i) * c_stride + n0 * es;
            if (scalar_cols) {
                qk_out_row_tail(j, j + 8, a, m0 + i, n0, p, row);
                continue;
            }
            __m256i v = _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)(a + j)), add);
            if (row_sum)
                v = _mm256_sub_epi32(v, _mm256_mullo_epi32(zb, _mm256_set1_epi32(row_sum[m0 + i])));
            if (mode == QK_OUT_INT32) {
                _mm256_storeu_si256((__m256i *)(row + 4 * j), v);
                continue;
            }
            if (mode == QK_OUT_DQ_F32) {   /* two roundings, as qk_out_dq: no FMA */
                __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(v), scale);
                if (p->bias_f) f = _mm256_add_ps(f, bias);
                _mm256_storeu_ps((float *)(void *)(row + 4 * j), f);
                continue;
            }
            __m256i r;
            if (mode == QK_OUT_FP32) {
                __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(v), scale);
                f = _mm256_min_ps(_mm256_max_ps(f, flo), fhi);
                r = _mm256_add_epi32(_mm256_cvtps_epi32(f), zp);   /* MXCSR default: half to even */
            } else {
                /* clamp before adding the zero point: no int32 wrap-around */
                r = qk_fixedpoint8_avx2(v, mult, rshift, mode == QK_OUT_FIXEDPOINT_UP);
                r = _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(r, lo_zp), hi_zp), zp);
            }
            __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
            w = out_signed ? _mm_packs_epi16(w, w) : _mm_packus_epi16(w, w);
            _mm_storel_epi64((__m128i *)(row + j), w);
        }
    }
    if (j < nr)
        for (size_t i = 0; i < mr; i++)
            qk_out_row_tail(j, nr, acc + i * acc_stride, m0 + i, n0, p,
                            (char *)c + (m0 + i) * c_stride + n0 * es);
}

/* The epilogue of the fused kernels: mr full rows of 16 columns (row stride acc_stride), int32
 * or 8-bit output, no row sums. Adds the column terms; stores int32, or requantizes
 * exactly as the output stage does (float32 multiply, clamp, round half to even; or fixed
 * point, columns with a left shift the scalar way) and stores 16 bytes per row. Column
 * terms are loaded once for all rows. */
void qk_store_16cols_avx2(size_t mr, const int32_t *acc, size_t acc_stride, size_t m0, size_t n0, const qk_out_params *p,
                          void *c, size_t c_stride) {
    const __m256i add0 = _mm256_loadu_si256((const __m256i *)(p->col_add + n0));
    const __m256i add1 = _mm256_loadu_si256((const __m256i *)(p->col_add + n0 + 8));
    char *row = (char *)c + m0 * c_stride;
    if (p->mode == QK_OUT_INT32) {
        row += n0 * 4;
        for (size_t i = 0; i < mr; i++, row += c_stride) {
            _mm256_storeu_si256((__m256i *)row, _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)(acc + acc_stride * i)), add0));
            _mm256_storeu_si256((__m256i *)(row + 32), _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)(acc + acc_stride * i + 8)), add1));
        }
        return;
    }
    if (p->mode == QK_OUT_DQ_F32) {   /* float32(v) * scale (+ bias): two roundings, as qk_out_dq */
        const __m256 s0 = _mm256_loadu_ps(p->scale + n0), s1 = _mm256_loadu_ps(p->scale + n0 + 8);
        const float *bias = p->bias_f;
        row += n0 * 4;
        for (size_t i = 0; i < mr; i++, row += c_stride) {
            __m256 f0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_loadu_si256((const __m256i *)(acc + acc_stride * i)), add0)), s0);
            __m256 f1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_loadu_si256((const __m256i *)(acc + acc_stride * i + 8)), add1)), s1);
            if (bias) {
                f0 = _mm256_add_ps(f0, _mm256_loadu_ps(bias + n0));
                f1 = _mm256_add_ps(f1, _mm256_loadu_ps(bias + n0 + 8));
            }
            _mm256_storeu_ps((float *)(void *)row, f0);
            _mm256_storeu_ps((float *)(void *)(row + 32), f1);
        }
        return;
    }
    if (qk_out_is_fixedpoint(p->mode)) {
        const __m256i sh0 = _mm256_loadu_si256((const __m256i *)(p->shift + n0));
        const __m256i sh1 = _mm256_loadu_si256((const __m256i *)(p->shift + n0 + 8));
        const __m256i m0v = _mm256_loadu_si256((const __m256i *)(p->mult + n0));
        const __m256i m1v = _mm256_loadu_si256((const __m256i *)(p->mult + n0 + 8));
        const __m256i zero = _mm256_setzero_si256();
        const int left = !_mm256_testz_si256(_mm256_or_si256(_mm256_cmpgt_epi32(sh0, zero), _mm256_cmpgt_epi32(sh1, zero)),
                                             _mm256_set1_epi32(-1));
        const __m256i r0 = _mm256_sub_epi32(zero, sh0), r1 = _mm256_sub_epi32(zero, sh1);
        const __m256i zp = _mm256_set1_epi32(p->zero_point);
        const __m256i lo_zp = _mm256_set1_epi32(p->lo - p->zero_point), hi_zp = _mm256_set1_epi32(p->hi - p->zero_point);
        const int up = p->mode == QK_OUT_FIXEDPOINT_UP, out_signed = p->out_signed;
        row += n0;
        if (left) {   /* a column with a left shift: the scalar stage */
            for (size_t i = 0; i < mr; i++, row += c_stride)
                qk_out_row_tail(0, 16, acc + acc_stride * i, m0 + i, n0, p, row);
            return;
        }
        /* loops without calls, one per rounding: the column terms stay in registers
           across the rows (a call would clobber every ymm) */
#define QK_FIXEDPOINT_ROWS(UP)                                                                                     \
        for (size_t i = 0; i < mr; i++, row += c_stride) {                                                         \
            __m256i v0 = _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)(acc + acc_stride * i)), add0);      \
            __m256i v1 = _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)(acc + acc_stride * i + 8)), add1);  \
            v0 = _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(qk_fixedpoint8_avx2(v0, m0v, r0, UP), lo_zp), hi_zp), zp); \
            v1 = _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(qk_fixedpoint8_avx2(v1, m1v, r1, UP), lo_zp), hi_zp), zp); \
            __m256i w = _mm256_permute4x64_epi64(_mm256_packs_epi32(v0, v1), 0xD8);                               \
            __m128i lo = _mm256_castsi256_si128(w), hi = _mm256_extracti128_si256(w, 1);                           \
            _mm_storeu_si128((__m128i *)row, out_signed ? _mm_packs_epi16(lo, hi) : _mm_packus_epi16(lo, hi));     \
        }
        if (up) {
            QK_FIXEDPOINT_ROWS(1)
        } else {
            QK_FIXEDPOINT_ROWS(0)
        }
#undef QK_FIXEDPOINT_ROWS
        return;
    }
    const __m256 scale0 = _mm256_loadu_ps(p->scale + n0), scale1 = _mm256_loadu_ps(p->scale + n0 + 8);
    const __m256 flo = _mm256_set1_ps((float)(p->lo - p->zero_point));
    const __m256 fhi = _mm256_set1_ps((float)(p->hi - p->zero_point));
    const __m256i zp = _mm256_set1_epi32(p->zero_point);
    const int out_signed = p->out_signed;
    row += n0;
    for (size_t i = 0; i < mr; i++, row += c_stride) {
        __m256i v0 = _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)(acc + acc_stride * i)), add0);
        __m256i v1 = _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)(acc + acc_stride * i + 8)), add1);
        __m256 f0 = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(v0), scale0), flo), fhi);
        __m256 f1 = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(v1), scale1), flo), fhi);
        __m256i w = _mm256_packs_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(f0), zp),
                                       _mm256_add_epi32(_mm256_cvtps_epi32(f1), zp));
        w = _mm256_permute4x64_epi64(w, 0xD8);   /* undo the per-lane interleave of packs */
        __m128i lo = _mm256_castsi256_si128(w), hi = _mm256_extracti128_si256(w, 1);
        _mm_storeu_si128((__m128i *)row, out_signed ? _mm_packs_epi16(lo, hi) : _mm_packus_epi16(lo, hi));
    }
}
