/* 2-D max pooling of NHWC memory (channels adjacent in x and y) with SIMD, included by the
 * ISA files (kernels/avx2/pool_avx2.c, kernels/avx512vnni/pool_avx512vnni.c), which define
 * QK_MP_NAME and, with QK_MP_512, take the 512-bit vocabulary (else 256-bit AVX2). The same
 * contract and the same bits as the portable loop (qk_pool.h): per output pixel, channel
 * blocks held in registers over the window's taps (the portable loop read and wrote the
 * output once per tap); float max as (v > m || v != v) ? v : m, NaN kept, ties keep m.
 * Channels past the last whole vector: one vector ending at c (it recomputes some
 * channels: the same values), or the scalar select when c is narrower than a vector. */
#ifndef QK_POOL_SIMD_H
#define QK_POOL_SIMD_H
#include <immintrin.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#ifdef QK_MP_512
/* vmaxps(v, m) is (v > m) ? v : m (m when either is NaN); the mask keeps a NaN v */
#define QK_MP_F32 __m512, 16, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps(-INFINITY), \
    qk_mp_max_f32
static inline __m512 qk_mp_max_f32(__m512 m, __m512 v) {
    return _mm512_mask_max_ps(v, _mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), v, m);
}
static inline __m512i qk_mp_load_i(const void *p) { return _mm512_loadu_si512(p); }
static inline void qk_mp_store_i(void *p, __m512i v) { _mm512_storeu_si512(p, v); }
#define QK_MP_S8 __m512i, 64, qk_mp_load_i, qk_mp_store_i, _mm512_set1_epi8(INT8_MIN), _mm512_max_epi8
#define QK_MP_U8 __m512i, 64, qk_mp_load_i, qk_mp_store_i, _mm512_setzero_si512(), _mm512_max_epu8
#else
#define QK_MP_F32 __m256, 8, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps(-INFINITY), qk_mp_max_f32
static inline __m256 qk_mp_max_f32(__m256 m, __m256 v) {
    return _mm256_blendv_ps(_mm256_max_ps(v, m), v, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
}
static inline __m256i qk_mp_load_i(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }
static inline void qk_mp_store_i(void *p, __m256i v) { _mm256_storeu_si256((__m256i *)p, v); }
#define QK_MP_S8 __m256i, 32, qk_mp_load_i, qk_mp_store_i, _mm256_set1_epi8(INT8_MIN), _mm256_max_epi8
#define QK_MP_U8 __m256i, 32, qk_mp_load_i, qk_mp_store_i, _mm256_setzero_si256(), _mm256_max_epu8
#endif

/* The taps [k0, k1) of a window at o * s - pad (step d) inside [0, size). */
static inline void qk_mp_taps(size_t o, size_t s, size_t d, size_t k, ptrdiff_t pad, size_t size, size_t *k0,
                              size_t *k1) {
    const ptrdiff_t at = (ptrdiff_t)(o * s) - pad;
    size_t lo = at < 0 ? (size_t)(-at + (ptrdiff_t)d - 1) / d : 0, hi = 0;
    if (at < (ptrdiff_t)size) hi = ((size_t)((ptrdiff_t)size - at) + d - 1) / d;
    *k0 = lo < k ? lo : k;
    *k1 = hi < k ? hi : k;
    if (*k1 < *k0) *k1 = *k0;
}

/* NV vectors of channels from `ch` over the window's taps into out. */
#define QK_MP_BLOCK(NV, V, VL, LOAD, STORE, LOWEST, MAX)                                  \
    do {                                                                                  \
        V acc[NV];                                                                        \
        for (int j = 0; j < NV; j++) acc[j] = LOWEST;                                     \
        for (size_t ky = ky0; ky < ky1; ky++) {                                           \
            const T *row = img + (ptrdiff_t)(oy * sy + ky * dy - pad[0]) * xs[2] + ch;   \
            for (size_t kx = kx0; kx < kx1; kx++) {                                       \
                const T *p = row + (ptrdiff_t)(ox * sx + kx * dx - pad[1]) * xs[3];       \
                for (int j = 0; j < NV; j++) acc[j] = MAX(acc[j], LOAD(p + j * VL));      \
            }                                                                             \
        }                                                                                 \
        for (int j = 0; j < NV; j++) STORE(out + ch + j * VL, acc[j]);                    \
    } while (0)

#define QK_MP_KERNEL(...) QK_MP_KERNEL_(__VA_ARGS__)
#define QK_MP_KERNEL_(NAME, TT, SLOWEST, SMAX, V, VL, LOAD, STORE, LOWEST, MAX)                              \
    void NAME(const TT *x, size_t n, size_t c, size_t h, size_t w, const ptrdiff_t *xs, size_t oh, size_t ow,  \
              const size_t *geom, const ptrdiff_t *pad, TT *y, const ptrdiff_t *ys) {                        \
        typedef TT T;                                                                                        \
        const size_t kh = geom[0], kw = geom[1], sy = geom[2], sx = geom[3], dy = geom[4], dx = geom[5];       \
        for (size_t i = 0; i < n; i++) {                                                                     \
            const T *img = x + (ptrdiff_t)i * xs[0];                                                         \
            for (size_t oy = 0; oy < oh; oy++) {                                                             \
                size_t ky0, ky1;                                                                             \
                qk_mp_taps(oy, sy, dy, kh, pad[0], h, &ky0, &ky1);                                           \
                for (size_t ox = 0; ox < ow; ox++) {                                                         \
                    size_t kx0, kx1, ch = 0;                                                                 \
                    qk_mp_taps(ox, sx, dx, kw, pad[1], w, &kx0, &kx1);                                       \
                    T *out = y + (ptrdiff_t)i * ys[0] + (ptrdiff_t)oy * ys[2] + (ptrdiff_t)ox * ys[3];        \
                    for (; ch + 4 * VL <= c; ch += 4 * VL) QK_MP_BLOCK(4, V, VL, LOAD, STORE, LOWEST, MAX);   \
                    for (; ch + VL <= c; ch += VL) QK_MP_BLOCK(1, V, VL, LOAD, STORE, LOWEST, MAX);           \
                    if (ch < c && c >= VL) {                                                                 \
                        ch = c - VL;                                                                         \
                        QK_MP_BLOCK(1, V, VL, LOAD, STORE, LOWEST, MAX);                                     \
                    } else {                                                                                 \
                        for (; ch < c; ch++) {                                                               \
                            T m = SLOWEST;                                                                   \
                            for (size_t ky = ky0; ky < ky1; ky++)                                            \
                                for (size_t kx = kx0; kx < kx1; kx++) {                                      \
                                    const T v = img[(ptrdiff_t)(oy * sy + ky * dy - pad[0]) * xs[2] +         \
                                                    (ptrdiff_t)(ox * sx + kx * dx - pad[1]) * xs[3] + ch];    \
                                    m = SMAX(v, m);                                                          \
                                }                                                                            \
                            out[ch] = m;                                                                     \
                        }                                                                                    \
                    }                                                                                        \
                }                                                                                            \
            }                                                                                                \
        }                                                                                                    \
    }

#define QK_MP_FMAX(v, m) (((v) > (m) || (v) != (v)) ? (v) : (m))
#define QK_MP_IMAX(v, m) ((v) > (m) ? (v) : (m))
QK_MP_KERNEL(QK_MP_NAME(qk_maxpool_nhwc_f32), float, -INFINITY, QK_MP_FMAX, QK_MP_F32)
QK_MP_KERNEL(QK_MP_NAME(qk_maxpool_nhwc_s8), int8_t, INT8_MIN, QK_MP_IMAX, QK_MP_S8)
QK_MP_KERNEL(QK_MP_NAME(qk_maxpool_nhwc_u8), uint8_t, 0, QK_MP_IMAX, QK_MP_U8)
#endif
