/* Template of the AVX-512 fp16 and fp32 GEMM micro-kernels: QK_MR rows x 16*QK_NV columns. A
 * as float rows (QK_PACK_F32_ROWS), broadcast one value at a time; B as fp16 panels, 16 values
 * converted per vcvtph2ps zmm as they stream in (QK_B_F32 defined: float panels, loaded as
 * they are); fp32 FMA. QK_CHAINS > 1 (small M) splits
 * K over that many independent accumulator sets, summed at the end, so that FMA latency
 * does not bound a tile with few accumulators; with QK_CHAINS 1 every sum is
 * c = fma(a_k, b_k, c) in increasing k from zero, the order of f16_gemm_6x16_avx2, so both
 * give the same floats. Define before including:
 *   QK_MR, QK_NV, QK_CHAINS    the tile and the K split; QK_B_NV (optional): the B panels' width
 *   QK_GEMM_NAME               the function (through QK_VNNI_FN)
 *   QK_GEMM_FUSED_NAME         optional (fp32): also the fused entry, whose output stage
 *                              (bias, residual, clamp) works on the sums in registers: the
 *                              operations of qk_output_f32_avx2 in its order, the same floats
 *   QK_IGEMM_NAME, QK_IGEMM_FUSED_NAME  optional (fp32): the indirect entries (qk_gemm.h),
 *                              A rows read through pointers, no packed panel */
#include "qk_gemm.h"
#include "qk_vnni.h"
/* B is streamed once per tile from L2 or memory (weights of a 16-token transformer layer do
 * not stay in any cache): each k step asks for its lines QK_PREFETCH_B bytes ahead. The
 * hardware prefetcher alone left a 12-row fp32 tile at 0.6-0.8x of this on 384 x 1536
 * weights (family 6 model 207; 2048 and 4096 bytes ahead measured alike, 512 less). */
/* B panels of QK_B_NV vectors a row, of which the tile computes the first QK_NV (a last
   panel of 16 columns in 32-column panels: half the FMAs) */
#ifndef QK_B_NV
#define QK_B_NV QK_NV
#endif
#ifndef QK_PREFETCH_B
#define QK_PREFETCH_B 2048
#endif
#ifdef QK_B_F32
typedef float qk_b_elem;
#define QK_LOAD_B(p) qk512f_load(p)
#else
typedef uint16_t qk_b_elem;
#define QK_LOAD_B(p) qk512f_load_f16(p)
#endif

/* Adds the sums over k steps of the QK_MR rows rows[i][0 .. k) onto c (B from pb on).
 * next (a constant NULL where inlined without): QK_B_NEXT_RATE bytes a k step from there
 * asked into L2 (the next column panel: B from memory, read by the panel's first row tile
 * alone, had that tile wait on it; fetched while earlier tiles compute, it overlaps them). */
static inline __attribute__((always_inline)) void tile_add(size_t k, const float *const rows[QK_MR],
                                                           const qk_b_elem *pb, qk_v512f c[QK_CHAINS][QK_MR][QK_NV],
                                                           const char *next) {
    size_t kk = 0;
    for (; kk + QK_CHAINS <= k; kk += QK_CHAINS) {
#pragma GCC unroll 4
        for (int s = 0; s < QK_CHAINS; s++) {
            const qk_b_elem *bk = pb + (kk + s) * 16 * QK_B_NV;
#pragma GCC unroll 4
            for (int j = 0; j < QK_NV; j++)
                if (j * 16 * sizeof(qk_b_elem) % 64 == 0)   /* once per 64-byte line */
                    _mm_prefetch((const char *)(bk + 16 * j) + QK_PREFETCH_B, _MM_HINT_T0);
            if (next) _mm_prefetch(next + (kk + s) * QK_B_NEXT_RATE, _MM_HINT_T1);
            qk_v512f b[QK_NV];
#pragma GCC unroll 4
            for (int j = 0; j < QK_NV; j++) b[j] = QK_LOAD_B(bk + 16 * j);
#pragma GCC unroll 16
            for (int i = 0; i < QK_MR; i++) {
                const qk_v512f a = qk512f_bcast(rows[i] + kk + s);
#pragma GCC unroll 4
                for (int j = 0; j < QK_NV; j++) c[s][i][j] = qk512f_fmadd(a, b[j], c[s][i][j]);
            }
        }
    }
    for (; kk < k; kk++) {   /* the last k % QK_CHAINS on the first set */
        const qk_b_elem *bk = pb + kk * 16 * QK_B_NV;
#pragma GCC unroll 16
        for (int i = 0; i < QK_MR; i++) {
            const qk_v512f a = qk512f_bcast(rows[i] + kk);
#pragma GCC unroll 4
            for (int j = 0; j < QK_NV; j++) c[0][i][j] = qk512f_fmadd(a, QK_LOAD_B(bk + 16 * j), c[0][i][j]);
        }
    }
}

static inline __attribute__((always_inline)) void tile_zero(qk_v512f c[QK_CHAINS][QK_MR][QK_NV]) {
#pragma GCC unroll 4
    for (int s = 0; s < QK_CHAINS; s++)
#pragma GCC unroll 16
        for (int i = 0; i < QK_MR; i++)
#pragma GCC unroll 4
            for (int j = 0; j < QK_NV; j++) c[s][i][j] = qk512f_zero();
}

static inline __attribute__((always_inline)) void tile_reduce(qk_v512f c[QK_CHAINS][QK_MR][QK_NV],
                                                              qk_v512f v[QK_MR][QK_NV]) {
#pragma GCC unroll 16
    for (int i = 0; i < QK_MR; i++)
#pragma GCC unroll 4
        for (int j = 0; j < QK_NV; j++) {
            v[i][j] = c[0][i][j];
#pragma GCC unroll 4
            for (int s = 1; s < QK_CHAINS; s++) v[i][j] = qk512f_add(v[i][j], c[s][i][j]);
        }
}

/* The tile's sums, into v. */
static inline __attribute__((always_inline)) void tile_sums(size_t k, const void *a_, const void *b_,
                                                             qk_v512f v[QK_MR][QK_NV]) {
    const float *pa = (const float *)a_;   /* QK_MR rows of k floats */
    const float *rows[QK_MR];
#pragma GCC unroll 16
    for (int i = 0; i < QK_MR; i++) rows[i] = pa + i * k;
    qk_v512f c[QK_CHAINS][QK_MR][QK_NV];
    tile_zero(c);
    tile_add(k, rows, (const qk_b_elem *)b_, c, NULL);
    tile_reduce(c, v);
}

#ifdef QK_IGEMM_NAME
/* The indirect tile (qk_gemm.h, qk_igemm_fn): the sums of tile_sums over the segments each
   row's pointers give, in the same order (the same floats as the packed rows, QK_CHAINS 1). */
static inline __attribute__((always_inline)) void itile_sums(size_t segs, size_t seg_len,
                                                              const void *const *ptrs, const void *b_,
                                                              qk_v512f v[QK_MR][QK_NV], const char *next) {
    const qk_b_elem *pb = (const qk_b_elem *)b_;
    qk_v512f c[QK_CHAINS][QK_MR][QK_NV];
    tile_zero(c);
    for (size_t s = 0; s < segs; s++, ptrs += QK_MR, pb += seg_len * 16 * QK_B_NV) {
        const float *rows[QK_MR];
#pragma GCC unroll 16
        for (int i = 0; i < QK_MR; i++) rows[i] = (const float *)ptrs[i];
        if (next) {
            tile_add(seg_len, rows, pb, c, next);
            next += seg_len * QK_B_NEXT_RATE;
        } else {
            tile_add(seg_len, rows, pb, c, NULL);
        }
    }
    tile_reduce(c, v);
}

void QK_IGEMM_NAME(size_t segs, size_t seg_len, const void *const *ptrs, const void *b_, int32_t *acc) {
    qk_v512f v[QK_MR][QK_NV];
    itile_sums(segs, seg_len, ptrs, b_, v, NULL);
    float *out = (float *)acc;
#pragma GCC unroll 16
    for (int i = 0; i < QK_MR; i++)
#pragma GCC unroll 4
        for (int j = 0; j < QK_NV; j++) qk512f_store(out + (i * QK_NV + j) * 16, v[i][j]);
}
#endif

void QK_GEMM_NAME(size_t k, const void *a_, const void *b_, int32_t *acc) {
    qk_v512f v[QK_MR][QK_NV];
    tile_sums(k, a_, b_, v);
    float *out = (float *)acc;
#pragma GCC unroll 16
    for (int i = 0; i < QK_MR; i++)
#pragma GCC unroll 4
        for (int j = 0; j < QK_NV; j++) qk512f_store(out + (i * QK_NV + j) * 16, v[i][j]);
}

#ifdef QK_GEMM_FUSED_NAME
#include "qk_output.h"
/* The tile's QK_OUT_F32 output straight from the sums: columns [n0, n0 + nc), any nc up to
   the tile's width; where nc is not a multiple of 16 (``tail``: a last panel of 24 columns, a
   2x2 ConvTranspose's 4) the last vector's bias and residual are read, and its rows stored,
   masked to the columns there are. */
static inline __attribute__((always_inline)) void fused_rows(qk_v512f v[QK_MR][QK_NV], size_t m0, size_t n0,
                                                             size_t nc, const qk_out_params *p, void *c,
                                                             size_t c_stride, const int tail) {
    const qk_v512f lo = qk512f_set1(p->flo), hi = qk512f_set1(p->fhi);
    const int act = p->act == QK_ACT_HSWISH_DIV;
    const qk_v512f a_add = qk512f_set1(p->act_add), a_lo = qk512f_set1(p->act_lo), a_hi = qk512f_set1(p->act_hi),
                   a_div = qk512f_set1(p->act_div);
#pragma GCC unroll 16
    for (int i = 0; i < QK_MR; i++) {
        float *row = (float *)(void *)((char *)c + (m0 + (size_t)i) * c_stride) + n0;
        const float *r = qk_f32_res_row(p, m0 + (size_t)i, n0);
#pragma GCC unroll 4
        for (int j = 0; j < QK_NV; j++) {
            const size_t at = (size_t)(16 * j);
            if (at >= nc) break;
            const int part = tail && nc - at < 16;
            qk_v512f x = qk512f_add(v[i][j], part ? qk512f_load_n(p->bias_f + n0 + at, nc - at)
                                                  : qk512f_load(p->bias_f + n0 + at));
            if (r) x = qk512f_add(x, part ? qk512f_load_n(r + at, nc - at) : qk512f_load(r + at));
            x = qk512f_clamp(x, lo, hi);
            if (act)   /* qk_f32_act's operations, in its order */
                x = qk512f_div(qk512f_mul(x, qk512f_clamp(qk512f_add(x, a_add), a_lo, a_hi)), a_div);
            if (part)
                qk512f_store_n(row + at, x, nc - at);
            else
                qk512f_store(row + at, x);
        }
        if (p->act == QK_ACT_ELT) p->act_fn(p->act_op, 0.0f, 0.0f, nc, row, row);   /* the eltwise op's loop */
    }
}
static inline __attribute__((always_inline)) void fused_store(qk_v512f v[QK_MR][QK_NV], size_t m0, size_t n0,
                                                              size_t nc, const qk_out_params *p, void *c,
                                                              size_t c_stride) {
    if (nc % 16)
        fused_rows(v, m0, n0, nc, p, c, c_stride, 1);
    else
        fused_rows(v, m0, n0, nc, p, c, c_stride, 0);
}
void QK_GEMM_FUSED_NAME(size_t k, const void *a_, const void *b_, size_t m0, size_t n0, size_t nc,
                        const qk_out_params *p, void *c, size_t c_stride) {
    qk_v512f v[QK_MR][QK_NV];
    tile_sums(k, a_, b_, v);
    fused_store(v, m0, n0, nc, p, c, c_stride);
}

#ifdef QK_IGEMM_FUSED_NAME
void QK_IGEMM_FUSED_NAME(size_t segs, size_t seg_len, const void *const *ptrs, const void *b_, size_t m0, size_t n0,
                         size_t nc, const qk_out_params *p, void *c, size_t c_stride) {
    qk_v512f v[QK_MR][QK_NV];
    itile_sums(segs, seg_len, ptrs, b_, v, (const char *)p->b_next);
    fused_store(v, m0, n0, nc, p, c, c_stride);
}
#endif
#endif
#undef QK_LOAD_B
