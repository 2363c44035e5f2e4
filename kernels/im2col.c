/* Implicit im2col: the rows of the convolution's patch matrix, gathered on demand
 * into a small scratch buffer that the ordinary A packing then reads. Row r is the
 * output pixel (n, oy, ox); its K = kh * kw * cg bytes are the input channels of one
 * group under each kernel tap, in (ky, kx, c) order (OHWI weights). Taps that fall
 * in the padding read the input zero point, as ONNX QLinearConv requires, so padded
 * cells contribute exactly zero. */
#include <string.h>
#include "qk_conv.h"
#include "qk_dconv.h"
#include "qk_cpu.h"
#include "qk_registry.h"
#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* n <= 16 bytes from s to d, each xor flip: two overlapping moves of the largest
 * power of two within n (a 1-channel input's window row is 3 or 12 bytes: a loop, or a
 * call to memcpy or memset, cost more than the row): the first and the last sizeof(T)
 * bytes of the n, each xor flip (they may overlap). */
#define QK_COPY_TWO(T, ONES)                                                                  \
    do {                                                                                      \
        const T f = (T)(flip * (ONES));                                                       \
        T lo, hi;                                                                             \
        memcpy(&lo, s, sizeof(T));                                                            \
        memcpy(&hi, s + n - sizeof(T), sizeof(T));                                            \
        lo ^= f;                                                                              \
        hi ^= f;                                                                              \
        memcpy(d, &lo, sizeof(T));                                                            \
        memcpy(d + n - sizeof(T), &hi, sizeof(T));                                            \
    } while (0)

static inline void copy_small(uint8_t *d, const uint8_t *s, size_t n, uint8_t flip) {
    if (n >= 8)
        QK_COPY_TWO(uint64_t, 0x0101010101010101ull);
    else if (n >= 4)
        QK_COPY_TWO(uint32_t, 0x01010101u);
    else if (n >= 2)
        QK_COPY_TWO(uint16_t, 0x0101u);
    else if (n)
        d[0] = (uint8_t)(s[0] ^ flip);
}

/* n bytes of value v at d: overlapping stores up to 16 bytes (a padded tap, a row's
 * tail), as in copy_small (a byte loop compiles to a call to memset) */
static inline void fill(uint8_t *d, uint8_t v, size_t n) {
    const uint64_t p = v * 0x0101010101010101ull;
    if (n > 16) {
        memset(d, v, n);
    } else if (n >= 8) {
        memcpy(d, &p, 8);
        memcpy(d + n - 8, &p, 8);
    } else if (n >= 4) {
        const uint32_t q = (uint32_t)p;
        memcpy(d, &q, 4);
        memcpy(d + n - 4, &q, 4);
    } else if (n >= 2) {
        const uint16_t q = (uint16_t)p;
        memcpy(d, &q, 2);
        memcpy(d + n - 2, &q, 2);
    } else if (n) {
        d[0] = v;
    }
}

#if defined(__x86_64__)
/* n >= 32 bytes from s to d (not overlapping), each xor flip: 32-byte steps, the last one
 * overlapping the one before. An int8 input's window row of 3 taps x 64 channels (192
 * bytes) was 12 steps of the portable build's 16-byte loop, the most of a 3x3 conv's
 * packing (the gather's share of a 56x56x64 -> 64 layer's samples: 16 -> 12 %). */
__attribute__((target("avx2"))) static void copy_flip_avx2(uint8_t *d, const uint8_t *s, size_t n, uint8_t flip) {
    const __m256i f = _mm256_set1_epi8((char)flip);
    size_t i = 0;
    for (; i + 32 <= n; i += 32)
        _mm256_storeu_si256((__m256i *)(void *)(d + i),
                            _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(const void *)(s + i)), f));
    if (i < n)
        _mm256_storeu_si256((__m256i *)(void *)(d + n - 32),
                            _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(const void *)(s + n - 32)), f));
}
#endif

/* n bytes from s to d, each xor flip (int8 <-> uint8 when flip = 0x80): a loop the
 * compiler vectorises (32-byte AVX2 steps where `wide`: the ISA path has AVX2); memcpy
 * when there is nothing to flip. */
static inline void copy_flip(uint8_t *d, const uint8_t *s, size_t n, uint8_t flip, int wide) {
#if defined(__x86_64__)
    if (wide && flip && n >= 32) {
        copy_flip_avx2(d, s, n, flip);
        return;
    }
#else
    (void)wide;
#endif
    if (n <= 16) {
        copy_small(d, s, n, flip);
        return;
    }
    if (!flip && n <= 64) {   /* a stem's window row (3 channels x 3-7 taps): inline moves, not a call */
        size_t i = 0;
        for (; i + 16 <= n; i += 16) memcpy(d + i, s + i, 16);
        for (; i + 4 <= n; i += 4) memcpy(d + i, s + i, 4);
        for (; i < n; i++) d[i] = s[i];
        return;
    }
    if (!flip) {
        memcpy(d, s, n);
        return;
    }
    for (size_t i = 0; i < n; i++) d[i] = (uint8_t)(s[i] ^ flip);
}

/* One output pixel's patch row, any geometry: tap by tap. */
static void gather_pixel(const qk_conv_geom *g, size_t n, size_t oy, size_t ox, uint8_t *d, uint8_t flip, int wide) {
    const size_t es = g->elem, tap_bytes = g->cg * es;
    for (size_t ky = 0; ky < g->kh; ky++) {
        const ptrdiff_t iy = (ptrdiff_t)(oy * g->stride_y + ky * g->dil_y) - g->pad_top;
        for (size_t kx = 0; kx < g->kw; kx++, d += tap_bytes) {
            const ptrdiff_t ix = (ptrdiff_t)(ox * g->stride_x + kx * g->dil_x) - g->pad_left;
            if (iy < 0 || ix < 0 || iy >= (ptrdiff_t)g->in_h || ix >= (ptrdiff_t)g->in_w) {
                fill(d, g->pad ^ flip, tap_bytes);
                continue;
            }
            const uint8_t *s = g->x + (ptrdiff_t)n * g->sn + iy * g->sh + ix * g->sw;
            if (g->sc == (ptrdiff_t)es) {
                copy_flip(d, s, tap_bytes, flip, wide);
            } else {
                for (size_t c = 0; c < g->cg; c++) memcpy(d + c * es, s + (ptrdiff_t)c * g->sc, es);
                if (flip)   /* flip is given for 1-byte values only */
                    for (size_t c = 0; c < g->cg; c++) d[c] ^= flip;
            }
        }
    }
}

/* `run` pixels of one output row (image n, row oy, from column ox) whose input pixels
 * and channels are adjacent (no dilation along x): each kernel row of a window is
 * kw * cg consecutive bytes, one copy (few channels, as in RGB stems and 1-channel
 * inputs, would otherwise cost one tiny copy per tap), clipped by the left or right
 * padding to the taps inside; kernel rows outer, so each source row is found once. */
static void gather_row_run(const qk_conv_geom *g, size_t n, size_t oy, size_t ox, size_t run, uint8_t *dst,
                           size_t dst_stride, uint8_t flip, int wide) {
    /* the geometry in locals: stores through uint8_t pointers may alias *g, which made
       the compiler reload it on every pixel */
    const size_t tap_bytes = g->cg * g->elem, row_bytes = g->kw * tap_bytes, kw = g->kw, kh = g->kh;
    const ptrdiff_t step = (ptrdiff_t)g->stride_x, sx = step * g->sw, in_w = (ptrdiff_t)g->in_w;
    const ptrdiff_t in_h = (ptrdiff_t)g->in_h, sh = g->sh, sw = g->sw, dil_y = (ptrdiff_t)g->dil_y;
    const uint8_t pad = (uint8_t)(g->pad ^ flip);
    const ptrdiff_t ix_first = (ptrdiff_t)(ox * g->stride_x) - g->pad_left;
    /* pixels [inner_lo, inner_hi) of the run have their whole window row inside */
    const ptrdiff_t last = in_w - (ptrdiff_t)kw - ix_first;   /* ix_first + p * step <= in_w - kw */
    size_t inner_lo, inner_hi;
    if (step == 1) {         /* (no divisions: a run of a small image is a few pixels) */
        inner_lo = ix_first >= 0 ? 0 : (size_t)-ix_first;
        inner_hi = last < 0 ? 0 : (size_t)last + 1;
    } else {
        inner_lo = ix_first >= 0 ? 0 : (size_t)((-ix_first + step - 1) / step);
        inner_hi = last < 0 ? 0 : (size_t)(last / step) + 1;
    }
    inner_lo = inner_lo < run ? inner_lo : run;
    inner_hi = inner_hi < run ? inner_hi : run;
    inner_hi = inner_hi > inner_lo ? inner_hi : inner_lo;
    const uint8_t *x = g->x + (ptrdiff_t)n * g->sn;
    const ptrdiff_t iy0 = (ptrdiff_t)(oy * g->stride_y) - g->pad_top;
    for (size_t ky = 0; ky < kh; ky++) {
        const ptrdiff_t iy = iy0 + (ptrdiff_t)ky * dil_y;
        uint8_t *d = dst + ky * row_bytes;
        if (iy < 0 || iy >= in_h) {      /* a kernel row in the top or bottom padding */
            for (size_t p = 0; p < run; p++, d += dst_stride) fill(d, pad, row_bytes);
            continue;
        }
        const uint8_t *s = x + iy * sh + ix_first * sw;
        for (size_t p = inner_lo; p < inner_hi; p++)
            copy_flip(d + p * dst_stride, s + (ptrdiff_t)p * sx, row_bytes, flip, wide);
        for (size_t p = 0; p < run; p++) {
            if (p == inner_lo) {
                p = inner_hi;
                if (p >= run) break;
            }
            /* a window clipped by the side padding: taps [lo, hi) read the input */
            const ptrdiff_t ix0 = ix_first + (ptrdiff_t)p * step, room = in_w - ix0;
            size_t lo = ix0 < 0 ? (size_t)(-ix0) : 0, hi = room <= 0 ? 0 : (size_t)room;
            lo = lo < kw ? lo : kw;
            hi = hi < kw ? hi : kw;
            hi = hi > lo ? hi : lo;
            uint8_t *dp = d + p * dst_stride;
            fill(dp, pad, lo * tap_bytes);
            if (hi > lo) copy_flip(dp + lo * tap_bytes, s + (ptrdiff_t)p * sx + (ptrdiff_t)(lo * tap_bytes),
                                   (hi - lo) * tap_bytes, flip, wide);
            fill(dp + hi * tap_bytes, pad, (kw - hi) * tap_bytes);
        }
    }
}

static void im2col_rows(const qk_conv_geom *g, size_t r0, size_t rows, uint8_t *dst, size_t dst_stride, uint8_t flip,
                        int wide) {
    const size_t es = g->elem, tap_bytes = g->cg * es;
    /* pixels of a row are adjacent, channels too, no dilation along x */
    const int contiguous = g->sc == (ptrdiff_t)es && g->sw == (ptrdiff_t)tap_bytes && g->dil_x == 1;
    /* the coordinates of row r0, then stepped a run of one output row at a time: no
       divisions per row (three of them cost as much as the gather of a small-channel row) */
    size_t ox = r0 % g->out_w, oy = (r0 / g->out_w) % g->out_h, n = r0 / (g->out_w * g->out_h);
    for (size_t i = 0; i < rows;) {
        const size_t run = rows - i < g->out_w - ox ? rows - i : g->out_w - ox;
        if (contiguous) {
            gather_row_run(g, n, oy, ox, run, dst + i * dst_stride, dst_stride, flip, wide);
        } else {
            for (size_t p = 0; p < run; p++) gather_pixel(g, n, oy, ox + p, dst + (i + p) * dst_stride, flip, wide);
        }
        i += run;
        ox += run;
        if (ox == g->out_w) {
            ox = 0;
            if (++oy == g->out_h) {
                oy = 0;
                n++;
            }
        }
    }
}

void qk_im2col_rows(const qk_conv_geom *g, size_t r0, size_t rows, uint8_t *dst, size_t dst_stride, uint8_t flip) {
    im2col_rows(g, r0, rows, dst, dst_stride, flip, 0);
}

void qk_pack_a_conv(int pack, int mr, int kr, const qk_conv_geom *g, size_t r0, size_t rows, int a_signed,
                    int32_t za, uint8_t *scratch, void *packed, int32_t *row_sum, int isa) {
    const int wide = qk_isa_has_avx2(isa);
    const size_t k = g->kh * g->kw * g->cg;   /* values; a scratch row holds k * elem bytes */
    if (pack == QK_PACK_U8 && g->elem == 1) {
        /* uint8 A panels are row-major bytes: gather straight into them, then flip int8
           inputs and sum in place (one pass over the panel, not two) */
        const size_t kp = (k + kr - 1) / kr * kr, stride = kp ? kp : (size_t)kr;
        uint8_t *dst = (uint8_t *)packed;
        im2col_rows(g, r0, rows, dst, stride, a_signed ? 0x80 : 0, wide);   /* int8 flipped while copied */
        for (size_t i = 0; i < (size_t)mr; i++, dst += stride) {
            if (i >= rows) {
                fill(dst, 0, stride);
                continue;
            }
            if (row_sum) {
                uint32_t sum = 0;
                for (size_t kk = 0; kk < k; kk++) sum += dst[kk];
                row_sum[i] = (int32_t)sum;
            }
            fill(dst + k, 0, stride - k);
        }
        return;
    }
    if (pack == (QK_PACK_F32_ROWS | QK_PACK_SRC_F32) && g->elem == 4 && k) {
        /* float32 rows of K values are the panel's own layout: gather straight into it */
        im2col_rows(g, r0, rows, (uint8_t *)packed, k * 4, 0, wide);
        fill((uint8_t *)packed + rows * k * 4, 0, ((size_t)mr - rows) * k * 4);
        return;
    }
    im2col_rows(g, r0, rows, scratch, k * g->elem, 0, wide);
    qk_pack_a(pack, mr, kr, rows, k, scratch, a_signed, (ptrdiff_t)(k * g->elem), (ptrdiff_t)g->elem, za, packed,
              row_sum);
}

size_t qk_iconv_seg_len(const qk_ukernel *kern, const qk_conv_geom *g) {
    if (!kern->igemm || !kern->igemm_fused || !g->cg || !g->kh || !g->kw)
        return 0;
    const int f32 = kern->dtype == QK_DTYPE_F32 && kern->kr == 1 && g->elem == 4;
    /* int8: uint8 bytes read as they are (the caller leaves int8 inputs, which the packing
       flips, and row sums to the packed path), a segment of whole K quads */
    const int u8 = kern->dtype == QK_DTYPE_QS8 && kern->a_pack == QK_PACK_U8 && g->elem == 1;
    if ((!f32 && !u8) || g->sc != (ptrdiff_t)g->elem)
        return 0;
    const size_t seg_len = g->sw == (ptrdiff_t)(g->elem * g->cg) && g->dil_x == 1 ? g->kw * g->cg : g->cg;
    if (seg_len % (size_t)kern->kr)
        return 0;
    /* 32 bytes a segment at least: switching the rows' pointers costs more than the copy (a
       1-channel 3x3's kernel rows of 3 floats: 0.75x of the packed path); uint8 from 28: a
       7-tap kernel row of 4-byte pixels (an RGB stem read as 4 channels, graph/backends/cpu.py:
       ResNet-18 u8s8 0.976x with it, in one process) */
    return seg_len * g->elem >= (u8 ? 28 : 32) ? seg_len : 0;
}

/* The segments of output pixel (n, oy, ox) into row i of the table (segs entries MR apart).
 * The geometry in locals: stores through the table may alias *g (no strict aliasing in
 * extension builds), which made the compiler reload it on every entry. */
static void iconv_row(const qk_conv_geom *g, size_t seg_len, size_t n, size_t oy, size_t ox, const void **t,
                      size_t mr, uint8_t *scratch, const void *zero) {
    const size_t kh = g->kh, kw = g->kw, tap = g->cg * g->elem, dil_y = g->dil_y, dil_x = g->dil_x;
    const ptrdiff_t sh = g->sh, sw = g->sw, in_h = (ptrdiff_t)g->in_h, in_w = (ptrdiff_t)g->in_w;
    const uint8_t pad = g->pad;   /* (float: 0, i.e. +0.0) */
    const int whole_rows = seg_len != g->cg || kw == 1;   /* a segment is a kernel row */
    const uint8_t *x = g->x + (ptrdiff_t)n * g->sn;
    const ptrdiff_t iy0 = (ptrdiff_t)(oy * g->stride_y) - g->pad_top, ix0 = (ptrdiff_t)(ox * g->stride_x) - g->pad_left;
    if (whole_rows) {
        const int inside = ix0 >= 0 && ix0 + (ptrdiff_t)kw <= in_w;
        const uint8_t *row = x + ix0 * sw;
        for (size_t ky = 0; ky < kh; ky++, t += mr) {
            const ptrdiff_t iy = iy0 + (ptrdiff_t)(ky * dil_y);
            if (iy < 0 || iy >= in_h) {
                *t = zero;
            } else if (inside) {
                *t = row + iy * sh;
            } else {   /* clipped by the side padding: the taps inside (one run) copied between pad values */
                uint8_t *d = scratch + ky * kw * tap;
                /* taps [lo, hi) inside; a kernel row's pixels are adjacent (or it is one tap) */
                const ptrdiff_t k = (ptrdiff_t)kw, lo = ix0 < 0 ? (-ix0 < k ? -ix0 : k) : 0;
                const ptrdiff_t hi = in_w - ix0 < k ? (in_w - ix0 > lo ? in_w - ix0 : lo) : k;
                memset(d, pad, (size_t)lo * tap);
                memcpy(d + (size_t)lo * tap, x + iy * sh + (ix0 + lo) * sw, (size_t)(hi - lo) * tap);
                memset(d + (size_t)hi * tap, pad, (size_t)(k - hi) * tap);
                *t = d;
            }
        }
        return;
    }
    for (size_t ky = 0; ky < kh; ky++) {
        const ptrdiff_t iy = iy0 + (ptrdiff_t)(ky * dil_y);
        const int row_in = iy >= 0 && iy < in_h;
        for (size_t kx = 0; kx < kw; kx++, t += mr) {
            const ptrdiff_t ix = ix0 + (ptrdiff_t)(kx * dil_x);
            *t = row_in && ix >= 0 && ix < in_w ? (const void *)(x + iy * sh + ix * sw) : zero;
        }
    }
}

size_t qk_iconv_col_block(const qk_ukernel *kern, const qk_conv_geom *g) {
    /* column blocks of B of at most 512 KiB stay in L2 while every row panel passes (a late
       layer's 9 MB of weights were otherwise streamed from memory once per panel) */
    const size_t b_panel = g->kh * g->kw * g->cg * (size_t)kern->nr * g->elem;
    return (512 * 1024 / b_panel > 1 ? 512 * 1024 / b_panel : 1) * (size_t)kern->nr;
}

void qk_iconv_block(const qk_ukernel *kern, const qk_conv_geom *g, size_t seg_len, size_t m0, size_t m1, size_t n,
                    const void *b_packed, const qk_out_params *p, void *c, size_t c_stride, const void **ptrs,
                    uint8_t *scratch, const void *zero) {
    const size_t mr = (size_t)kern->mr, nr = (size_t)kern->nr, k = g->kh * g->kw * g->cg, segs = k / seg_len;
    const size_t row_bytes = k * g->elem, b_panel = row_bytes * nr, nb = qk_iconv_col_block(kern, g);
    /* several column blocks: every panel's table is built once, into its own slot, before
       the first (a small image's clipped rows, copied again per block, cost 6 % at 7 x 7) */
    const int all = n > nb, fuse = qk_out_fusable(p);
    const ptrdiff_t dx = (ptrdiff_t)g->stride_x * g->sw, span = (ptrdiff_t)((g->kw - 1) * g->dil_x + 1);
    /* (in locals: the pointer tables' stores may alias *g, which the compiler then read again per row) */
    const ptrdiff_t stride_x = (ptrdiff_t)g->stride_x, pad_left = g->pad_left, in_w = (ptrdiff_t)g->in_w;
    const size_t out_w = g->out_w, out_h = g->out_h;
    int32_t acc[12 * 32];
    if ((size_t)kern->mr * nr > sizeof acc / sizeof acc[0]) return;   /* (no such kernel registered) */
    /* several column blocks (B past L2, from memory): row tile r of a panel asks L2 for slice r of
       the next panel as it goes (qk_gemm.h); the same sums (ResNet-18 in one process, Xeon 6/207,
       1 thread: its 7 x 7 x 512 convolutions 0.85-0.89x, 14 x 14 x 256 0.92-0.95x) */
    qk_out_params pt = *p;
    const size_t slice = k * QK_B_NEXT_RATE;
    size_t ox = m0 % g->out_w, oy = (m0 / g->out_w) % g->out_h, img = m0 / (g->out_w * g->out_h);
    for (size_t n_lo = 0; n_lo < n; n_lo += nb) {
        const size_t n_hi = n - n_lo < nb ? n : n_lo + nb;
        for (size_t m = m0, slot = 0, at = 0; m < m1; m += mr, slot += all, at += slice) {
            const size_t mc = m1 - m < mr ? m1 - m : mr;
            const void **t = ptrs + slot * mr * segs;
            uint8_t *sc = scratch + slot * mr * row_bytes;
            if (mc < mr) {   /* a last partial panel: packed, for the narrowest kernel that fits (the same sums) */
                if (n_lo == 0)
                    qk_pack_a_conv(kern->a_pack, kern->mr, kern->kr, g, m, mc, 0, 0, NULL, sc, NULL, kern->isa);
                qk_gemm_block(kern, k, m, m1, n_lo, n_hi, sc, b_packed, p, c, c_stride);
                continue;
            }
            int prev_inside = 0;
            for (size_t i = 0; i < mr && (n_lo == 0 || !all); i++) {
                /* a window inside the input along x after another in the same output row:
                   the previous row's pointers one stride on (the building was a third of a
                   3-channel stem's time) */
                const ptrdiff_t ix0 = (ptrdiff_t)ox * stride_x - pad_left;
                const int inside = ix0 >= 0 && ix0 + span <= in_w;
                if (inside && prev_inside) {
                    for (size_t s = 0; s < segs; s++) {
                        const uint8_t *q = (const uint8_t *)t[s * mr + i - 1];
                        t[s * mr + i] = q == zero ? zero : (const void *)(q + dx);
                    }
                } else {
                    iconv_row(g, seg_len, img, oy, ox, t + i, mr, sc + i * row_bytes, zero);
                }
                prev_inside = inside;
                if (++ox == out_w) {
                    prev_inside = 0;
                    ox = 0;
                    if (++oy == out_h) {
                        oy = 0;
                        img++;
                    }
                }
            }
            for (size_t n0 = n_lo; n0 < n_hi; n0 += nr) {
                const char *bp = (const char *)b_packed + (n0 / nr) * b_panel;
                const size_t nc = n - n0 < nr ? n - n0 : nr;
                pt.b_next = all && n0 + nr < n && at < b_panel ? bp + b_panel + at : NULL;
                if (fuse && nc <= 16 && kern->igemm_fused16) {   /* half a panel (or less): half the FMAs */
                    kern->igemm_fused16(segs, seg_len, t, bp, m, n0, nc, &pt, c, c_stride);
                } else if (fuse && (nc % 16 == 0 || kern->dtype == QK_DTYPE_F32)) {   /* fp32: masked last panel */
                    kern->igemm_fused(segs, seg_len, t, bp, m, n0, nc, &pt, c, c_stride);
                } else {
                    kern->igemm(segs, seg_len, t, bp, acc);
                    kern->output(mr, nc, acc, nr, m, n0, p, c, c_stride);
                    if (p->post_b) qk_gemm_post_tile(p, m, n0, mr, nc, c, c_stride);
                    continue;
                }
                /* the fused QLinearAdd, where the fused entry's stage did not */
                if (p->post_b && !qk_gemm_post_done(kern, p)) qk_gemm_post_tile(p, m, n0, mr, nc, c, c_stride);
            }
        }
    }
}

#if defined(__x86_64__)
void qk_f32_dconv_avx512(const qk_conv_geom *g, size_t m0, size_t m1, size_t n, const float *w, const float *bias,
                         float lo, float hi, float *c, size_t c_stride, float *buf);
void qk_f32_dconv_avx512_emu(const qk_conv_geom *g, size_t m0, size_t m1, size_t n, const float *w,
                             const float *bias, float lo, float hi, float *c, size_t c_stride, float *buf);
#endif

qk_f32_dconv_fn qk_f32_dconv_for_isa(int isa) {
#if defined(__x86_64__)
    if (isa == QK_ISA_AVX512VNNI) return qk_f32_dconv_avx512;
    if (isa == QK_ISA_AVX512VNNI_EMU) return qk_f32_dconv_avx512_emu;
#endif
    (void)isa;
    return NULL;
}
