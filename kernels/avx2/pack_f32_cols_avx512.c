/* A float32 B panel from source rows that run along k (kernels/pack.c, QK_PACK_F32 of K
 * transposed: attention's keys, each key's head values contiguous): dst[kk * tile + r] =
 * row r's value kk, 16 rows x 16 k steps at a time through a 16 x 16 transpose in
 * registers (masked loads for the last k steps and rows; rows past `rows` give zeros). A
 * 4-byte copy per value was a quarter of attention's Q K^T. Compiled with this directory's
 * AVX2 flags, the function targets AVX-512 (picked only where the CPU has it); tile: a
 * multiple of 16. The same floats as the C loop. */
#include <immintrin.h>
#include <stddef.h>

__attribute__((target("avx512f"))) static inline void transpose16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 8; i++) {   /* per 128-bit lane: a0 b0 a1 b1 and a2 b2 a3 b3 */
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {   /* r[4i + j], lane L: column 4L + j of rows 4i .. 4i + 3 */
        const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
        const __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
        r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    for (int j = 0; j < 4; j++) {   /* lanes 0, 2 (0x88) and 1, 3 (0xdd) of two sources */
        t[j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88);
        t[4 + j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xdd);
        t[8 + j] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88);
        t[12 + j] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xdd);
    }
    for (int j = 0; j < 4; j++) {   /* column c of the 16 rows into r[c] */
        r[j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88);
        r[8 + j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0xdd);
        r[4 + j] = _mm512_shuffle_f32x4(t[4 + j], t[12 + j], 0x88);
        r[12 + j] = _mm512_shuffle_f32x4(t[4 + j], t[12 + j], 0xdd);
    }
}

__attribute__((target("avx512f")))
void qk_pack_f32_cols_avx512(size_t rows, size_t k, const char *src, ptrdiff_t stride_row, size_t tile, float *dst) {
    for (size_t r0 = 0; r0 < rows; r0 += 16) {
        const size_t nr = rows - r0 < 16 ? rows - r0 : 16;
        for (size_t k0 = 0; k0 < k; k0 += 16) {
            const size_t nk = k - k0 < 16 ? k - k0 : 16;
            const __mmask16 km = nk == 16 ? (__mmask16)0xffff : (__mmask16)((1u << nk) - 1);
            __m512 v[16];
            for (size_t i = 0; i < 16; i++)
                v[i] = i < nr ? _mm512_maskz_loadu_ps(km, src + (ptrdiff_t)(r0 + i) * stride_row + (ptrdiff_t)k0 * 4)
                              : _mm512_setzero_ps();
            transpose16(v);
            for (size_t j = 0; j < nk; j++) _mm512_storeu_ps(dst + (k0 + j) * tile + r0, v[j]);
        }
    }
}
