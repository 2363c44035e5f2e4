/* A byte table lookup (qk_copy.h) with AVX-512 VBMI: vpermi2b picks from 128 table bytes
 * held in two registers by the low 7 bits of each index, so two of them cover the table's
 * halves and the index's top bit chooses between them; 64 bytes per step, the tail masked.
 * Compiled with this directory's AVX2 flags, the function itself targets AVX-512 (picked
 * only where the CPU has AVX512BW and VBMI, kernels/copy.c). The same bytes as the C loop. */
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

__attribute__((target("avx512f,avx512bw,avx512vbmi")))
void qk_table_row_vbmi(const uint8_t *t, size_t n, uint8_t *d, const uint8_t *s) {
    const __m512i t0 = _mm512_loadu_si512(t), t1 = _mm512_loadu_si512(t + 64);
    const __m512i t2 = _mm512_loadu_si512(t + 128), t3 = _mm512_loadu_si512(t + 192);
    for (size_t i = 0; i < n; i += 64) {
        const __mmask64 k = n - i >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (n - i)) - 1);
        const __m512i x = _mm512_maskz_loadu_epi8(k, s + i);
        const __m512i lo = _mm512_permutex2var_epi8(t0, x, t1), hi = _mm512_permutex2var_epi8(t2, x, t3);
        _mm512_mask_storeu_epi8(d + i, k, _mm512_mask_blend_epi8(_mm512_movepi8_mask(x), lo, hi));
    }
}
