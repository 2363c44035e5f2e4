/* The epilogue of the fused AVX-512 VNNI kernels: mr full rows of 16-column strips
 * (zmm), int32 or requantized 8-bit output, no row sums. Bit-identical to
 * qk_store_16cols_avx2 and the scalar stage (qk_output.h): column terms added in int32,
 * float32 multiply, clamp in float to [lo - zy, hi - zy], round half to even, + zy (or
 * fixed point: the high multiply and rounding shift in int32 lanes, clamp, + zy);
 * the clamped value fits the 8-bit type, so vpmovdb's truncation stores it exactly.
 * Half the instructions of the AVX2 epilogue per output (the stage is a quarter of a
 * 3136x64x64 call). In the float32 mode a fused QLinearAdd (post_b) is done here too
 * (post_add_rows): the drivers leave such tiles alone (qk_ukernel.fused_post). */
#include "qk_cpu.h"
#include "qk_output.h"
#include "qk_vnni.h"

#if !defined(QK_VNNI_EMULATED)
#include "qs8_tflite_stage_avx512vnni.h"

/* The float32 stage (qs8_tflite_stage_avx512vnni.h) of mr rows of 16 columns, or 0 where
 * some column has s < 2, or for under 8 rows (its setup costs about what it saves on 6:
 * depthwise borders come one pixel at a time). */
static int fixedpoint_up_f32(size_t mr, const int32_t *acc, size_t acc_stride, qk_v512 add, qk_v512 mult,
                             qk_v512 rshift, const qk_out_params *p, char *row, size_t c_stride) {
    qk_tfl_stage st;
    if (mr < 8 || !qk_tfl_stage_make(&st, add, mult, rshift, p))
        return 0;
    for (size_t i = 0; i < mr; i++, row += c_stride)
        qk512_store_bytes(row, qk_tfl_stage_row(&st, _mm512_add_epi32(_mm512_loadu_si512(acc + acc_stride * i), add), p));
    return 1;
}

/* Two strips (a 32-column tile) at once where the CPU has VBMI: one vpermt2b takes the low
 * byte of each of the 32 int32 results (clamped, so exact) for one 32-byte store, in place
 * of two vpmovdb (two operations each) and two stores. */
__attribute__((target("avx512vbmi")))
static int fixedpoint_up_f32_pair(size_t mr, const int32_t *acc, size_t acc_stride, size_t n0, const qk_out_params *p,
                                  char *row, size_t c_stride) {
    qk_tfl_stage a, b;
    if (mr < 8 || !qk_tfl_stage_at(&a, n0, p) || !qk_tfl_stage_at(&b, n0 + 16, p))
        return 0;
    const __m512i low_bytes = _mm512_set_epi8(124, 120, 116, 112, 108, 104, 100, 96, 92, 88, 84, 80, 76, 72, 68, 64,
                                              60, 56, 52, 48, 44, 40, 36, 32, 28, 24, 20, 16, 12, 8, 4, 0,
                                              124, 120, 116, 112, 108, 104, 100, 96, 92, 88, 84, 80, 76, 72, 68, 64,
                                              60, 56, 52, 48, 44, 40, 36, 32, 28, 24, 20, 16, 12, 8, 4, 0);
    for (size_t i = 0; i < mr; i++, row += c_stride) {
        const __m512i y = _mm512_permutex2var_epi8(
            qk_tfl_stage_row(&a, _mm512_add_epi32(_mm512_loadu_si512(acc + acc_stride * i), a.add), p), low_bytes,
            qk_tfl_stage_row(&b, _mm512_add_epi32(_mm512_loadu_si512(acc + acc_stride * i + 16), b.add), p));
        _mm256_storeu_si256((__m256i *)(void *)row, _mm512_castsi512_si256(y));
    }
    return 1;
}

static int has_vbmi(void) { return (qk_cpu_features() & QK_CPU_AVX512VBMI) != 0; }
#endif

/* The fused QLinearAdd (qk_output.h, post_b) of 16 columns of mr rows in the float32
 * stage, before anything is stored: each requantized value y (clamped, as its byte would
 * be) and the other operand's byte b taken by the QLinearAdd loop's float32 steps
 * (kernels/qbinary.c: s1 (y - z1) + sb (b - zb), divided by sy, rounded half to even,
 * + zy, saturated): the same bytes, one store, no pass over the stored tile. The division's
 * float by Markstein's correction, q + (v - q sy) r with q = v r, r = 1 / sy rounded, which
 * is v / sy correctly rounded wherever it can matter (for 2^-60 <= sy <= 2^60 a quotient of
 * magnitude 1/2 or more has its products and residual far from the subnormals and from
 * overflow; a smaller one rounds to 0 either way): 24 vdivps were a seventh of a 12x32
 * tile of K = 576. */
static inline void post_add_rows(size_t mr, const int32_t *acc, size_t acc_stride, qk_v512 add, qk_v512f scale,
                                 qk_v512f flo, qk_v512f fhi, qk_v512 zp, size_t m0, size_t n0, const qk_out_params *p,
                                 char *row, size_t c_stride) {
    const int is_signed = p->out_signed;
    const qk_v512f s1 = qk512f_set1(p->post_s1), sb = qk512f_set1(p->post_sb), sy = qk512f_set1(p->post_sy);
    const qk_v512 z1 = qk512_set1(p->post_z1), zb = qk512_set1(p->post_zb), zy = qk512_set1(p->post_zy);
    const qk_v512 lo = qk512_set1(is_signed ? -128 : 0), hi = qk512_set1(is_signed ? 127 : 255);
    const int markstein = p->post_sy >= 0x1p-60f && p->post_sy <= 0x1p60f;
    const qk_v512f r = qk512f_set1(1.0f / p->post_sy), nsy = qk512f_set1(-p->post_sy);
    const char *b = (const char *)p->post_b + m0 * p->post_stride + n0;
    for (size_t i = 0; i < mr; i++, row += c_stride, b += p->post_stride) {
        const qk_v512 v = qk512_add(qk512_load(acc + acc_stride * i), add);
        const qk_v512 y = qk512_add(qk512_round(qk512f_mul_clamp(qk512_to_f32(v), scale, flo, fhi)), zp);
        const qk_v512f fa = qk512f_mul(s1, qk512_to_f32(qk512_sub(y, z1)));
        const qk_v512f fb = qk512f_mul(sb, qk512_to_f32(qk512_sub(qk512_load_bytes(b, is_signed), zb)));
        const qk_v512f x = qk512f_add(fa, fb), q0 = qk512f_mul(x, r);
        const qk_v512f d = markstein ? qk512f_fmadd(qk512f_fmadd(q0, nsy, x), r, q0) : qk512f_div(x, sy);
        qk512_store_bytes(row, qk512_clamp_i32(qk512_add(qk512_round(d), zy), lo, hi));
    }
}

void QK_VNNI_FN(qk_store_cols_avx512vnni)(size_t mr, size_t strips, const int32_t *acc, size_t acc_stride, size_t m0,
                                          size_t n0, const qk_out_params *p, void *c, size_t c_stride) {
#if !defined(QK_VNNI_EMULATED)
    if (p->mode == QK_OUT_FIXEDPOINT_UP && strips == 2 && has_vbmi() &&
        fixedpoint_up_f32_pair(mr, acc, acc_stride, n0, p, (char *)c + m0 * c_stride + n0, c_stride))
        return;
#endif
    for (size_t s = 0; s < strips; s++, acc += 16, n0 += 16) {
        const qk_v512 add = qk512_load(p->col_add + n0);
        char *row = (char *)c + m0 * c_stride;
        if (p->mode == QK_OUT_INT32) {
            row += n0 * 4;
            for (size_t i = 0; i < mr; i++, row += c_stride)
                qk512_store(row, qk512_add(qk512_load(acc + acc_stride * i), add));
            continue;
        }
        if (p->mode == QK_OUT_DQ_F32) {   /* float32(v) * scale (+ bias): two roundings, as qk_out_dq */
            const qk_v512f scale = qk512f_load(p->scale + n0);
            row += n0 * 4;
            if (p->bias_f) {
                const qk_v512f bias = qk512f_load(p->bias_f + n0);
                for (size_t i = 0; i < mr; i++, row += c_stride)
                    qk512f_store((float *)(void *)row, qk512f_add(qk512f_mul(qk512_to_f32(qk512_add(qk512_load(acc + acc_stride * i), add)),
                                                            scale), bias));
            } else {
                for (size_t i = 0; i < mr; i++, row += c_stride)
                    qk512f_store((float *)(void *)row, qk512f_mul(qk512_to_f32(qk512_add(qk512_load(acc + acc_stride * i), add)), scale));
            }
            continue;
        }
        if (qk_out_is_fixedpoint(p->mode)) {
            const qk_v512 shift = qk512_load(p->shift + n0), mult = qk512_load(p->mult + n0);
            const qk_v512 rshift = qk512_sub(qk512_zero(), shift);
            const qk_v512 lo_zp = qk512_set1(p->lo - p->zero_point), hi_zp = qk512_set1(p->hi - p->zero_point);
            const qk_v512 zp = qk512_set1(p->zero_point);
            const int left = qk512_any_positive(shift), up = p->mode == QK_OUT_FIXEDPOINT_UP;
            row += n0;
            if (left) {   /* a column with a left shift: the scalar stage */
                for (size_t i = 0; i < mr; i++, row += c_stride)
                    qk_out_row_tail(0, 16, acc + acc_stride * i, m0 + i, n0, p, row);
                continue;
            }
            /* loops without calls, one per rounding: the multiplier's lanes and offsets
               stay in registers across the rows (a call would clobber every zmm) */
#define QK_FIXEDPOINT_ROWS(UP)                                                                        \
            for (size_t i = 0; i < mr; i++, row += c_stride) {                                        \
                const qk_v512 v = qk512_add(qk512_load(acc + acc_stride * i), add);                   \
                qk512_store_bytes(row, qk512_add(qk512_clamp_i32(qk512_fixedpoint(v, mult, rshift, UP), \
                                                                 lo_zp, hi_zp), zp));                  \
            }
            if (up) {
#if !defined(QK_VNNI_EMULATED)
                if (fixedpoint_up_f32(mr, acc, acc_stride, add, mult, rshift, p, row, c_stride))
                    continue;
#endif
                QK_FIXEDPOINT_ROWS(1)
            } else {
                QK_FIXEDPOINT_ROWS(0)
            }
#undef QK_FIXEDPOINT_ROWS
            continue;
        }
        const qk_v512f scale = qk512f_load(p->scale + n0);
        const qk_v512f flo = qk512f_set1((float)(p->lo - p->zero_point));
        const qk_v512f fhi = qk512f_set1((float)(p->hi - p->zero_point));
        const qk_v512 zp = qk512_set1(p->zero_point);
        row += n0;
        if (p->post_b) {
            post_add_rows(mr, acc, acc_stride, add, scale, flo, fhi, zp, m0, n0, p, row, c_stride);
            continue;
        }
        for (size_t i = 0; i < mr; i++, row += c_stride) {
            const qk_v512 v = qk512_add(qk512_load(acc + acc_stride * i), add);
            qk512_store_bytes(row, qk512_add(qk512_round(qk512f_mul_clamp(qk512_to_f32(v), scale, flo, fhi)), zp));
        }
    }
}
