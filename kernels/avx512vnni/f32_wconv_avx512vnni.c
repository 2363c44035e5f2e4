/* Winograd F(2x2, 3x3) fp32 convolution with AVX-512 (qk_wconv.h): the input and output
 * transforms, 16 channels a vector, around the ISA path's fp32 GEMM kernel; in the VNNI
 * kernels' vector vocabulary (qk_vnni.h): built natively and emulated (the AVX2 path's). */
#include <string.h>
#include "qk_vnni.h"
#include "qk_wconv.h"

/* B^T x B of one 4x4 block, in place: rows then columns, each (x0 - x2, x1 + x2, x2 - x1, x1 - x3). */
static inline __attribute__((always_inline)) void input_transform(qk_v512f d[4][4]) {
    qk_v512f t[4][4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        t[i][0] = qk512f_sub(d[i][0], d[i][2]);
        t[i][1] = qk512f_add(d[i][1], d[i][2]);
        t[i][2] = qk512f_sub(d[i][2], d[i][1]);
        t[i][3] = qk512f_sub(d[i][1], d[i][3]);
    }
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        d[0][j] = qk512f_sub(t[0][j], t[2][j]);
        d[1][j] = qk512f_add(t[1][j], t[2][j]);
        d[2][j] = qk512f_sub(t[2][j], t[1][j]);
        d[3][j] = qk512f_sub(t[1][j], t[3][j]);
    }
}

/* The tile's image and its first output row and column. */
static inline void tile_origin(const qk_wconv *w, size_t t, size_t *img, size_t *oy, size_t *ox) {
    const size_t per_img = w->tiles_h * w->tiles_w, r = t % per_img;
    *img = t / per_img;
    *oy = 2 * (r / w->tiles_w);
    *ox = 2 * (r % w->tiles_w);
}

/* V[xi][i] (at v + xi * xi_stride, cg floats) of tile t. */
static void input_tile(const qk_wconv *w, size_t t, float *v, size_t xi_stride) {
    const qk_conv_geom *g = &w->g;
    size_t img, oy, ox;
    tile_origin(w, t, &img, &oy, &ox);
    const ptrdiff_t y0 = (ptrdiff_t)oy - g->pad_top, x0 = (ptrdiff_t)ox - g->pad_left;
    const uint8_t *base = g->x + (ptrdiff_t)img * g->sn + y0 * g->sh + x0 * g->sw;
    /* a window inside the input skips the tap checks (the taps in the padding read zeros) */
    const int inside = y0 >= 0 && y0 + 4 <= (ptrdiff_t)g->in_h && x0 >= 0 && x0 + 4 <= (ptrdiff_t)g->in_w;
    const float *p[16];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            const ptrdiff_t y = y0 + i, x = x0 + j;
            p[4 * i + j] = inside || (y >= 0 && y < (ptrdiff_t)g->in_h && x >= 0 && x < (ptrdiff_t)g->in_w)
                               ? (const float *)(const void *)(base + i * g->sh + j * g->sw)
                               : w->zero;
        }
    for (size_t c = 0; c < g->cg; c += 16) {
        qk_v512f d[4][4];
#pragma GCC unroll 16
        for (int k = 0; k < 16; k++) d[k / 4][k % 4] = qk512f_load(p[k] + c);
        input_transform(d);
#pragma GCC unroll 16
        for (int k = 0; k < 16; k++) qk512f_store(v + k * xi_stride + c, d[k / 4][k % 4]);
    }
}

/* Output pixels of tile t, columns [n0, n0 + nc): A^T M A from M[xi] (at m + xi * xi_stride),
 * + bias (+ residual), clamped. */
static void output_tile(const qk_wconv *w, size_t t, const float *m, size_t xi_stride, size_t n0, size_t nc,
                        qk_v512f lo, qk_v512f hi) {
    const qk_conv_geom *g = &w->g;
    size_t img, oy, ox;
    tile_origin(w, t, &img, &oy, &ox);
    const size_t rows = g->out_h - oy < 2 ? 1 : 2, cols = g->out_w - ox < 2 ? 1 : 2;
    const size_t pix0 = (img * g->out_h + oy) * g->out_w + ox;
    for (size_t j = 0; j < nc; j += 16) {
        qk_v512f s[2][4], y[2][2];
#pragma GCC unroll 4
        for (int b = 0; b < 4; b++) {   /* A^T over the rows of M */
            const qk_v512f m0 = qk512f_load(m + (0 + b) * xi_stride + j), m1 = qk512f_load(m + (4 + b) * xi_stride + j);
            const qk_v512f m2 = qk512f_load(m + (8 + b) * xi_stride + j), m3 = qk512f_load(m + (12 + b) * xi_stride + j);
            s[0][b] = qk512f_add(qk512f_add(m0, m1), m2);
            s[1][b] = qk512f_sub(qk512f_sub(m1, m2), m3);
        }
#pragma GCC unroll 2
        for (int a = 0; a < 2; a++) {   /* then over its columns */
            y[a][0] = qk512f_add(qk512f_add(s[a][0], s[a][1]), s[a][2]);
            y[a][1] = qk512f_sub(qk512f_sub(s[a][1], s[a][2]), s[a][3]);
        }
        const qk_v512f bias = qk512f_load(w->bias + n0 + j);
        for (size_t a = 0; a < rows; a++)
            for (size_t b = 0; b < cols; b++) {
                const size_t pix = pix0 + a * g->out_w + b;
                qk_v512f r = qk512f_add(y[a][b], bias);
                if (w->residual)
                    r = qk512f_add(r, qk512f_load((const float *)(const void *)((const char *)w->residual +
                                                                                pix * w->r_stride) + n0 + j));
                qk512f_store((float *)(void *)((char *)w->c + pix * w->c_stride) + n0 + j, qk512f_clamp(r, lo, hi));
            }
    }
}

void QK_VNNI_FN(qk_f32_wconv_avx512)(const qk_wconv *w, size_t t0, size_t t1, float *scratch) {
    const size_t cg = w->g.cg, tb = qk_wconv_block_tiles(cg), mr = w->mr, nr = w->nr;
    float *v = scratch, *m = scratch + 16 * tb * cg;
    const qk_v512f lo = qk512f_set1(w->lo), hi = qk512f_set1(w->hi);
    for (size_t b0 = t0; b0 < t1; b0 += tb) {
        const size_t nt = t1 - b0 < tb ? t1 - b0 : tb;
        for (size_t i = 0; i < nt; i++) input_tile(w, b0 + i, v + i * cg, tb * cg);
        const size_t rows = (nt + mr - 1) / mr * mr;   /* a last panel's rows past the tiles: zeros, */
        if (rows > nt)                                  /* not whatever the scratch held (subnormals) */
            for (size_t xi = 0; xi < 16; xi++) memset(v + (xi * tb + nt) * cg, 0, (rows - nt) * cg * sizeof(float));
        for (size_t n0 = 0; n0 < w->n; n0 += nr) {
            /* panel n0 / nr of every U[xi]: nr columns (zero past n) of cg floats each */
            const float *u = w->u + n0 * cg;
            for (size_t xi = 0; xi < 16; xi++)   /* V[xi]'s rows are A panels (past nt: unused rows of the block) */
                for (size_t i0 = 0; i0 < nt; i0 += mr)
                    w->gemm(cg, v + (xi * tb + i0) * cg, u + xi * w->u_stride, (int32_t *)(void *)(m + (xi * tb + i0) * nr));
            const size_t nc = w->n - n0 < nr ? w->n - n0 : nr;
            for (size_t i = 0; i < nt; i++) output_tile(w, b0 + i, m + i * nr, tb * nr, n0, nc, lo, hi);
        }
    }
}
