/* A panel of rows of 8-bit A as the VNNI GEMM kernels read it (kernels/pack.c,
 * QK_PACK_U8 without row sums): each row's k contiguous bytes, xor `flip`, then zeros to
 * kp; AVX-512BW masked loads and stores, 64 bytes a step. The compiler's SSE2 loop of the
 * portable build spent 30-60 instructions on a row of a MobileNet layer (k = 16 to 160),
 * 8 % of that model's time. Compiled with this directory's AVX2 flags, the function itself
 * targets AVX-512 (picked only where the CPU has AVX512BW). The same bytes as the C loop. */
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

static inline __mmask64 first_bytes(size_t n) { return n >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << n) - 1); }

__attribute__((target("avx512f,avx512bw")))
void qk_pack_rows_u8_avx512(size_t rows, size_t mr, size_t k, size_t kp, const uint8_t *a, ptrdiff_t stride_m,
                            uint8_t flip, uint8_t *dst) {
    const __m512i f = _mm512_set1_epi8((char)flip);
    for (size_t r = 0; r < mr; r++, dst += kp) {
        const uint8_t *src = a + (ptrdiff_t)r * stride_m;
        const size_t n = r < rows ? k : 0;   /* rows past the last: zeros */
        for (size_t c = 0; c < kp; c += 64) {
            const __mmask64 valid = first_bytes(n > c ? n - c : 0);
            const __m512i v = _mm512_xor_si512(_mm512_maskz_loadu_epi8(valid, src + c), f);
            _mm512_mask_storeu_epi8(dst + c, first_bytes(kp - c), _mm512_maskz_mov_epi8(valid, v));
        }
    }
}
