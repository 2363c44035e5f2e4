/* Packing of A and B into micro-kernel panels (layouts described in qk_pack.h).
 * Portable C, compiled without ISA flags. */
#include <string.h>
#include "qk_f16.h"
#include "qk_cpu.h"
#include "qk_pack.h"

static inline size_t round_up(size_t x, size_t q) { return (x + q - 1) / q * q; }

static inline int32_t load_q8(const void *base, int is_signed, ptrdiff_t offset) {
    return is_signed ? (int32_t)((const int8_t *)base)[offset] : (int32_t)((const uint8_t *)base)[offset];
}

size_t qk_packed_b_bytes(int pack, int nr, int kr, size_t k, size_t n) {
    size_t elems = round_up(n, nr) * round_up(k ? k : 1, kr);
    return elems * qk_pack_elem_size(pack);
}

size_t qk_packed_a_bytes(int pack, int mr, int kr, size_t m, size_t k) {
    size_t elems = round_up(m, mr) * round_up(k ? k : 1, kr);
    return elems * qk_pack_elem_size(pack);
}

/* A row-major float A panel (QK_PACK_F32_ROWS) of `rows` fp16 rows, zero rows below:
 * contiguous rows convert with F16C/NEON (qk_f16_row_converter). */
static void pack_rows_f32(int mr, size_t rows, size_t k, const void *src, ptrdiff_t stride_m, ptrdiff_t stride_k,
                          float *dst, int src_f32) {
    const size_t kp = k ? k : 1;
    const qk_f16_row_fn convert = qk_f16_row_converter();
    for (int r = 0; r < mr; r++, dst += kp) {
        const char *row = (const char *)src + (ptrdiff_t)r * stride_m;
        if ((size_t)r >= rows || k == 0) {   /* K = 0: the one padded step must be 0 too */
            memset(dst, 0, kp * sizeof(float));
        } else if (src_f32) {                /* float32 source: a copy */
            if (stride_k == 4)
                memcpy(dst, row, k * sizeof(float));
            else
                for (size_t kk = 0; kk < k; kk++) memcpy(dst + kk, row + (ptrdiff_t)kk * stride_k, 4);
        } else if (stride_k == 2 && ((uintptr_t)row & 1) == 0) {
            convert((const uint16_t *)(const void *)row, dst, k);
        } else {
            for (size_t kk = 0; kk < k; kk++) {
                uint16_t v;
                memcpy(&v, row + (ptrdiff_t)kk * stride_k, 2);
                dst[kk] = qk_f16_to_f32(v);
            }
        }
    }
}

#if defined(__x86_64__)
/* kernels/avx2/pack_rows_avx512.c: contiguous rows without sums, where the CPU has AVX512BW */
void qk_pack_rows_u8_avx512(size_t rows, size_t mr, size_t k, size_t kp, const uint8_t *a, ptrdiff_t stride_m,
                            uint8_t flip, uint8_t *dst);
/* kernels/avx2/pack_f32_cols_avx512.c: float32 rows along k into a B panel (16 x 16 transposes) */
void qk_pack_f32_cols_avx512(size_t rows, size_t k, const char *src, ptrdiff_t stride_row, size_t tile, float *dst);

static int has_avx512bw(void) {
    return (qk_cpu_features() & (QK_CPU_AVX512F | QK_CPU_AVX512BW)) == (QK_CPU_AVX512F | QK_CPU_AVX512BW);
}
#endif

/* A float panel (QK_PACK_F32 or QK_PACK_F16) of `rows` fp16 source rows: k-major,
 * `tile` values per k step, zero-padded. Strides in bytes. */
static void pack_panel_float(int pack, int tile, size_t rows, size_t k, const void *src,
                             ptrdiff_t stride_row, ptrdiff_t stride_k, void *dst, int src_f32) {
    float *f = (float *)dst;
    uint16_t *h = (uint16_t *)dst;

    if (src_f32) {   /* float32 source into float panels (QK_PACK_F32) */
        /* the padding zeroed first, then the values copied without a test per value: a k
           step of contiguous values as one copy (attention's V per head), or each source
           row along k (K transposed): packing was half of a 16-token attention's products */
        if ((size_t)tile > rows || k == 0) memset(f, 0, (k ? k : 1) * (size_t)tile * sizeof(float));
        if (stride_row == 4) {
            for (size_t kk = 0; kk < k; kk++)
                memcpy(f + kk * (size_t)tile, (const char *)src + (ptrdiff_t)kk * stride_k, rows * sizeof(float));
        } else {
#if defined(__x86_64__)
            if (stride_k == 4 && tile % 16 == 0 && has_avx512bw()) {
                qk_pack_f32_cols_avx512(rows, k, (const char *)src, stride_row, (size_t)tile, f);
                return;
            }
#endif
            for (size_t r = 0; r < rows; r++) {
                const char *row = (const char *)src + (ptrdiff_t)r * stride_row;
                for (size_t kk = 0; kk < k; kk++) memcpy(f + kk * (size_t)tile + r, row + (ptrdiff_t)kk * stride_k, 4);
            }
        }
        return;
    }
    for (size_t kk = 0; kk < (k ? k : 1); kk++) {
        for (int r = 0; r < tile; r++) {
            uint16_t v = 0;
            if ((size_t)r < rows && kk < k)
                memcpy(&v, (const char *)src + (ptrdiff_t)r * stride_row + (ptrdiff_t)kk * stride_k, 2);
            if (pack == QK_PACK_F32)
                f[kk * tile + r] = qk_f16_to_f32(v);
            else
                h[kk * tile + r] = v;
        }
    }
}

/* uint8 A panels: row-major, int8 flipped to uint8, with the sums of what is stored. */

static void pack_a_rows_u8(int mr, int kr, size_t rows, size_t k, const void *a, int a_signed,
                           ptrdiff_t stride_m, ptrdiff_t stride_k, uint8_t *dst, int32_t *row_sum) {
    size_t kp = round_up(k ? k : 1, kr);
    const uint8_t flip = a_signed ? 0x80 : 0;
#if defined(__x86_64__)
    if (stride_k == 1 && row_sum == NULL && has_avx512bw()) {
        qk_pack_rows_u8_avx512(rows, (size_t)mr, k, kp, (const uint8_t *)a, stride_m, flip, dst);
        return;
    }
#endif
    for (int r = 0; r < mr; r++, dst += kp) {
        size_t kk = 0;
        if ((size_t)r < rows) {
            const uint8_t *src = (const uint8_t *)a + (ptrdiff_t)r * stride_m;
            uint32_t sum = 0;
            if (stride_k == 1) {   /* contiguous rows: a loop the compiler vectorises */
                for (; kk < k; kk++) {
                    uint8_t v = (uint8_t)(src[kk] ^ flip);
                    dst[kk] = v;
                    sum += v;
                }
            }
            for (; kk < k; kk++) {
                uint8_t v = (uint8_t)(src[(ptrdiff_t)kk * stride_k] ^ flip);
                dst[kk] = v;
                sum += v;
            }
            if (row_sum) row_sum[r] = (int32_t)sum;
        }
        for (; kk < kp; kk++) dst[kk] = 0;
    }
}

/* One panel of `rows` source rows (along the panel's long axis: rows of A or
 * columns of B) into `tile` lanes x K. `zp` is per lane (NULL when none).
 * QK_PACK_I16 stores value - zp as int16; QK_PACK_S8 stores the value as int8
 * (uint8 xor 0x80) and returns the sums of what it stored. */
static void pack_panel(int pack, int tile, int kr, size_t rows, size_t k,
                       const void *src, int is_signed, ptrdiff_t stride_row, ptrdiff_t stride_k,
                       const int32_t *zp, int32_t zp_all, void *dst, int32_t *sums) {
    size_t k_groups = round_up(k ? k : 1, kr) / kr;
    int16_t *d16 = (int16_t *)dst;
    int8_t *d8 = (int8_t *)dst;
    for (int r = 0; r < tile && sums; r++) sums[r] = 0;
    for (size_t g = 0; g < k_groups; g++) {
        for (int r = 0; r < tile; r++) {
            for (int j = 0; j < kr; j++) {
                size_t kk = g * kr + j;
                size_t out = (g * tile + r) * kr + j;
                int32_t v = 0;
                int real = (size_t)r < rows && kk < k;
                if (real) v = load_q8(src, is_signed, (ptrdiff_t)r * stride_row + (ptrdiff_t)kk * stride_k);
                if (pack == QK_PACK_I16) {
                    d16[out] = real ? (int16_t)(v - (zp ? zp[r] : zp_all)) : 0;
                } else {
                    int8_t s = real ? (int8_t)(is_signed ? v : v - 128) : 0;
                    d8[out] = s;
                    if (sums && real) sums[r] += s;
                }
            }
        }
    }
}

void qk_pack_b(int pack, int nr, int kr, size_t k, size_t n,
               const void *b, int b_signed, ptrdiff_t stride_k, ptrdiff_t stride_n,
               const int32_t *zb, void *packed, int32_t *col_sum) {
    const int src_f32 = pack & QK_PACK_SRC_F32;
    pack &= ~QK_PACK_SRC_F32;
    size_t panel_bytes = qk_packed_b_bytes(pack, nr, kr, k, nr);
    int32_t sums[64];   /* NR <= 64 */
    for (size_t n0 = 0; n0 < n; n0 += nr) {
        size_t cols = n - n0 < (size_t)nr ? n - n0 : (size_t)nr;
        const void *src = (const char *)b + (ptrdiff_t)n0 * stride_n * 1;
        if (pack == QK_PACK_F32 || pack == QK_PACK_F16) {
            pack_panel_float(pack, nr, cols, k, src, stride_n, stride_k, (char *)packed + (n0 / nr) * panel_bytes,
                             src_f32);
            continue;
        }
        pack_panel(pack, nr, kr, cols, k, src, b_signed, stride_n, stride_k,
                   zb ? zb + n0 : NULL, 0, (char *)packed + (n0 / nr) * panel_bytes,
                   pack == QK_PACK_S8 ? sums : NULL);
        if (pack == QK_PACK_S8 && col_sum)
            for (size_t j = 0; j < cols; j++) col_sum[n0 + j] = sums[j];
    }
}

/* int16 A panels are row-major (MR rows of K padded to KR) so that packing is a
 * contiguous widen-and-subtract that the compiler vectorises; the kernels broadcast
 * from MR row streams. */
static void pack_a_rows_i16(int mr, int kr, size_t rows, size_t k, const void *a, int a_signed,
                            ptrdiff_t stride_m, ptrdiff_t stride_k, int32_t za, int16_t *dst,
                            int32_t *row_sum) {
    size_t kp = round_up(k ? k : 1, kr);
    for (int r = 0; r < mr; r++, dst += kp) {
        if (row_sum && (size_t)r < rows) {   /* before the loop below pads dst */
            uint32_t sum = 0;
            const char *src = (const char *)a + (ptrdiff_t)r * stride_m;
            for (size_t kk = 0; kk < k; kk++) sum += (uint32_t)(load_q8(src, a_signed, (ptrdiff_t)kk * stride_k) - za);
            row_sum[r] = (int32_t)sum;
        }
        size_t kk = 0;
        if ((size_t)r < rows) {
            const char *src = (const char *)a + (ptrdiff_t)r * stride_m;
            const int16_t z = (int16_t)za;
            if (stride_k == 1 && a_signed) {
                const int8_t *s8 = (const int8_t *)src;
                for (; kk < k; kk++) dst[kk] = (int16_t)(s8[kk] - z);
            } else if (stride_k == 1) {
                const uint8_t *u8 = (const uint8_t *)src;
                for (; kk < k; kk++) dst[kk] = (int16_t)(u8[kk] - z);
            } else {
                for (; kk < k; kk++) dst[kk] = (int16_t)(load_q8(src, a_signed, (ptrdiff_t)kk * stride_k) - z);
            }
        }
        for (; kk < kp; kk++) dst[kk] = 0;
    }
}

void qk_pack_a(int pack, int mr, int kr, size_t m, size_t k,
               const void *a, int a_signed, ptrdiff_t stride_m, ptrdiff_t stride_k,
               int32_t za, void *packed, int32_t *row_sum) {
    const int src_f32 = pack & QK_PACK_SRC_F32;
    pack &= ~QK_PACK_SRC_F32;
    size_t panel_bytes = qk_packed_a_bytes(pack, mr, kr, mr, k);
    int32_t sums[16];   /* MR <= 16 */
    for (size_t m0 = 0; m0 < m; m0 += mr) {
        size_t rows = m - m0 < (size_t)mr ? m - m0 : (size_t)mr;
        const void *src = (const char *)a + (ptrdiff_t)m0 * stride_m;
        void *dst = (char *)packed + (m0 / mr) * panel_bytes;
        if (pack == QK_PACK_F32_ROWS) {
            pack_rows_f32(mr, rows, k, src, stride_m, stride_k, (float *)dst, src_f32);
            continue;
        }
        if (pack == QK_PACK_F32 || pack == QK_PACK_F16) {
            pack_panel_float(pack, mr, rows, k, src, stride_m, stride_k, dst, src_f32);
            continue;
        }
        if (pack == QK_PACK_U8) {
            pack_a_rows_u8(mr, kr, rows, k, src, a_signed, stride_m, stride_k, (uint8_t *)dst,
                           row_sum ? row_sum + m0 : NULL);
            continue;
        }
        if (pack == QK_PACK_I16) {
            pack_a_rows_i16(mr, kr, rows, k, src, a_signed, stride_m, stride_k, za, (int16_t *)dst,
                            row_sum ? row_sum + m0 : NULL);
            continue;
        }
        pack_panel(pack, mr, kr, rows, k, src, a_signed, stride_m, stride_k, NULL, za, dst, sums);
        if (row_sum)
            for (size_t i = 0; i < rows; i++) row_sum[m0 + i] = sums[i];
    }
}
