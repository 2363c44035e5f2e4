/* Data movement (qk_copy.h): the n-D strided copy, fill and table copy. Portable C11;
 * the only SIMD is the blocked transpose's tiles (kernels/layout.c picks them). */
#include <string.h>
#include "qk_copy.h"
#include "qk_cpu.h"
#include "qk_layout.h"

/* A contiguous run at least this long is one memcpy; shorter ones a loop the compiler
 * unrolls (memcpy's call costs more than a few elements). */
#define QK_COPY_MEMCPY_BYTES 64
/* The blocked transpose for a swap of the innermost axes of at least this many elements
 * each way (below, the element loop is as fast). */
#define QK_COPY_TRANSPOSE_MIN 4

int qk_copy_prepare(qk_copy_op *op, size_t elem, size_t ndim, const size_t *shape, uint8_t *dst,
                    const ptrdiff_t *s_dst, const uint8_t *src, const ptrdiff_t *s_src, const uint8_t *table,
                    const uint8_t *value) {
    if ((elem != 1 && elem != 2 && elem != 4 && elem != 8) || (table != NULL && (elem != 1 || src == NULL)) ||
        ndim > 64)
        return -1;
    memset(op, 0, sizeof *op);
    op->elem = elem;
    op->table = table;
#if defined(__x86_64__)
    if (table && (qk_cpu_features() & (QK_CPU_AVX512BW | QK_CPU_AVX512VBMI)) == (QK_CPU_AVX512BW | QK_CPU_AVX512VBMI))
        op->table_row = qk_table_row_vbmi;
#endif
    op->transpose = -1;
    if (src == NULL) memcpy(op->value, value, elem);
    size_t n[64];
    ptrdiff_t ss[64], ds[64];
    size_t m = 0;
    for (size_t i = 0; i < ndim; i++)
        if (shape[i] == 0) return 0;                       /* an empty region: ndim 0, nothing to do */
    for (size_t i = 0; i < ndim; i++) {
        if (shape[i] == 1) continue;
        ptrdiff_t d = s_dst[i], s = src ? s_src[i] : 0;
        if (d == 0) return -1;                             /* one element written twice */
        if (d < 0) {                                       /* walk the destination forwards */
            dst += (ptrdiff_t)(shape[i] - 1) * d;
            if (src) src += (ptrdiff_t)(shape[i] - 1) * s;
            d = -d;
            s = -s;
        }
        /* insertion in order of decreasing destination stride (the destination written in
           memory order) */
        size_t j = m++;
        while (j > 0 && ds[j - 1] < d) {
            n[j] = n[j - 1], ds[j] = ds[j - 1], ss[j] = ss[j - 1];
            j--;
        }
        n[j] = shape[i], ds[j] = d, ss[j] = s;
    }
    /* merge each dimension into the next inner one where both arrays continue at its stride */
    size_t k = 0;
    for (size_t i = 0; i < m; i++) {
        if (k > 0 && ds[k - 1] == (ptrdiff_t)n[i] * ds[i] && (!src || ss[k - 1] == (ptrdiff_t)n[i] * ss[i])) {
            n[k - 1] *= n[i];
            ds[k - 1] = ds[i];
            ss[k - 1] = ss[i];
            continue;
        }
        n[k] = n[i], ds[k] = ds[i], ss[k] = ss[i];
        k++;
    }
    if (k == 0) {                                          /* one element */
        n[0] = 1, ds[0] = (ptrdiff_t)elem, ss[0] = (ptrdiff_t)elem;
        k = 1;
    }
    if (k > QK_COPY_MAX_DIMS) return -1;
    for (size_t i = 0; i < k; i++) op->shape[i] = n[i], op->s_dst[i] = ds[i], op->s_src[i] = ss[i];
    op->ndim = k;
    op->dst = dst;
    op->src = src;
    /* the innermost destination run strided in the source, while another axis is read
       contiguously: a 2-D transpose of those two axes per position of the others */
    const size_t last = k - 1;
    const ptrdiff_t e = (ptrdiff_t)elem;
    if (src && !table && elem <= 4 && ds[last] == e && ss[last] != e && n[last] >= QK_COPY_TRANSPOSE_MIN) {
        for (size_t a = last; a-- > 0;) {
            if (ss[a] == e && n[a] >= QK_COPY_TRANSPOSE_MIN && ds[a] >= (ptrdiff_t)n[last] * e) {
                op->transpose = (int)a;
                break;
            }
        }
    }
    return 0;
}

/* One row of n elements: `elem` is a constant where this is inlined (one piece of code
 * for every element size; each element's memcpy is one load and one store). */
static inline __attribute__((always_inline)) void copy_row(size_t elem, size_t n, uint8_t *d, ptrdiff_t ds,
                                                           const uint8_t *s, ptrdiff_t ss) {
    const ptrdiff_t e = (ptrdiff_t)elem;
    if (ss == e && ds == e) {
        if (n * elem >= QK_COPY_MEMCPY_BYTES) {
            memcpy(d, s, n * elem);
        } else {
            for (size_t i = 0; i < n; i++) memcpy(d + i * elem, s + i * elem, elem);
        }
    } else if (ss == 0) {                                  /* broadcast: one element repeated */
        uint8_t v[8];
        memcpy(v, s, elem);
        for (size_t i = 0; i < n; i++, d += ds) memcpy(d, v, elem);
    } else {
        for (size_t i = 0; i < n; i++, d += ds, s += ss) memcpy(d, s, elem);
    }
}

static inline __attribute__((always_inline)) void fill_row(size_t elem, size_t n, uint8_t *d, ptrdiff_t ds,
                                                           const uint8_t *value) {
    uint8_t v[8];
    memcpy(v, value, elem);
    int bytes_alike = 1;
    for (size_t b = 1; b < elem; b++) bytes_alike &= v[b] == v[0];
    if (ds == (ptrdiff_t)elem && bytes_alike) {
        memset(d, v[0], n * elem);
    } else {
        for (size_t i = 0; i < n; i++, d += ds) memcpy(d, v, elem);
    }
}

static void row(const qk_copy_op *op, uint8_t *d, const uint8_t *s, int simd) {
    const size_t last = op->ndim - 1, n = op->shape[last];
    const ptrdiff_t ds = op->s_dst[last], ss = op->s_src[last];
    if (op->transpose >= 0) {
        const size_t a = (size_t)op->transpose;
        qk_transpose(simd, op->elem, n, op->shape[a], s, ss, op->s_src[a], d, op->s_dst[a]);
    } else if (s == NULL) {
        switch (op->elem) {
        case 1: fill_row(1, n, d, ds, op->value); break;
        case 2: fill_row(2, n, d, ds, op->value); break;
        case 4: fill_row(4, n, d, ds, op->value); break;
        default: fill_row(8, n, d, ds, op->value); break;
        }
    } else if (op->table != NULL) {
        const uint8_t *t = op->table;
        if (simd && op->table_row && ds == 1 && ss == 1)
            op->table_row(t, n, d, s);
        else
            for (size_t i = 0; i < n; i++, d += ds, s += ss) *d = t[*s];
    } else {
        switch (op->elem) {
        case 1: copy_row(1, n, d, ds, s, ss); break;
        case 2: copy_row(2, n, d, ds, s, ss); break;
        case 4: copy_row(4, n, d, ds, s, ss); break;
        default: copy_row(8, n, d, ds, s, ss); break;
        }
    }
}

void qk_copy_run(const qk_copy_op *op, int simd) {
    if (op->ndim == 0) return;
    /* the dimensions walked around each row (all but the row's, and the transposed one) */
    size_t outer[QK_COPY_MAX_DIMS], idx[QK_COPY_MAX_DIMS], m = 0;
    const size_t last = op->ndim - 1;
    for (size_t i = 0; i < last; i++)
        if ((int)i != op->transpose) outer[m] = i, idx[m++] = 0;
    uint8_t *d = op->dst;
    const uint8_t *s = op->src;
    for (;;) {
        row(op, d, s, simd);
        size_t j = m;
        for (; j > 0; j--) {                               /* the next position, innermost first */
            const size_t a = outer[j - 1];
            if (++idx[j - 1] < op->shape[a]) {
                d += op->s_dst[a];
                if (s) s += op->s_src[a];
                break;
            }
            idx[j - 1] = 0;
            d -= (ptrdiff_t)(op->shape[a] - 1) * op->s_dst[a];
            if (s) s -= (ptrdiff_t)(op->shape[a] - 1) * op->s_src[a];
        }
        if (j == 0) return;
    }
}
