# com.microsoft transformer operators (kernels/transformer.c, qk_transformer.h):
# SkipLayerNormalization and the attention core, as Bound calls a graph plan runs without
# the GIL, and def functions that validate, bind (bind=True) or run once. Included at the
# end of _native.pyx.

cdef extern from "qk_transformer.h" nogil:
    void qk_skip_layernorm_f32(const float *x, Py_ssize_t xr, const float *skip, Py_ssize_t sr, size_t srows,
                               const float *bias, const float *gamma, const float *beta, size_t rows, size_t n,
                               double eps, float *y, Py_ssize_t yr, float *sum, Py_ssize_t sumr, float *mean,
                               float *inv, float *tmp)
    void qk_skip_layernorm_f16(const uint16_t *x, Py_ssize_t xr, const uint16_t *skip, Py_ssize_t sr, size_t srows,
                               const uint16_t *bias, const uint16_t *gamma, const uint16_t *beta, size_t rows,
                               size_t n, double eps, uint16_t *y, Py_ssize_t yr, uint16_t *sum, Py_ssize_t sumr,
                               float *mean, float *inv, float *tmp)
    ctypedef struct qk_attention:
        size_t b, heads, s, t, hq, hv
        const float *q
        const float *k
        const float *v
        Py_ssize_t ld
        const float *mask
        Py_ssize_t mb, ms
        float scale
        float *out
        Py_ssize_t ldo
    ctypedef void (*qk_attention_fn)(const qk_attention *g, size_t h0, size_t h1, float *scratch) noexcept nogil
    size_t qk_attention_scratch(const qk_attention *g)
    qk_attention_fn qk_attention_for_isa(int isa)


cdef Py_ssize_t _row_stride(cnp.ndarray a, str what, Py_ssize_t n) except -1:
    """a's row stride in elements, for a 2-D array of n contiguous columns."""
    if a.ndim != 2 or a.shape[1] != n or (n > 1 and a.strides[1] != a.itemsize):
        raise ValueError(f"{what} must be 2-D with {n} contiguous columns")
    return _elem_stride(a, 0)


cdef class BoundSkipLayerNorm(Bound):
    """One SkipLayerNormalization bound to its arrays (qk_transformer.h)."""
    cdef size_t rows, n, srows
    cdef Py_ssize_t xr, sr, yr, sumr
    cdef double eps
    cdef bint f16
    cdef const void *xp
    cdef const void *skp
    cdef const void *bp
    cdef const void *gp
    cdef const void *btp
    cdef void *yp
    cdef void *sump
    cdef float *mp
    cdef float *ip
    cdef float *tmp
    cdef object keep

    def __dealloc__(self):
        free(self.tmp)

    cdef void execute(self) noexcept nogil:
        if self.f16:
            qk_skip_layernorm_f16(<const uint16_t *>self.xp, self.xr, <const uint16_t *>self.skp, self.sr, self.srows,
                                  <const uint16_t *>self.bp, <const uint16_t *>self.gp, <const uint16_t *>self.btp,
                                  self.rows, self.n, self.eps, <uint16_t *>self.yp, self.yr, <uint16_t *>self.sump,
                                  self.sumr, self.mp, self.ip, self.tmp)
        else:
            qk_skip_layernorm_f32(<const float *>self.xp, self.xr, <const float *>self.skp, self.sr, self.srows,
                                  <const float *>self.bp, <const float *>self.gp, <const float *>self.btp,
                                  self.rows, self.n, self.eps, <float *>self.yp, self.yr, <float *>self.sump,
                                  self.sumr, self.mp, self.ip, self.tmp)


def skip_layer_norm(cnp.ndarray x, cnp.ndarray skip, object bias, cnp.ndarray gamma, object beta, double eps,
                    cnp.ndarray y, object sum=None, object mean=None, object inv_std=None, bint bind=False):
    """com.microsoft SkipLayerNormalization of the rows of x (rows, n), float32 or float16,
    columns contiguous: s = x + skip (+ bias) in float32, y = LayerNorm(s) * gamma (+ beta)
    (float64 statistics, rounded once). skip: (srows, n) with rows a multiple of srows
    (row r reads skip row r % srows); bias, gamma, beta: (n,) contiguous of x's dtype;
    sum: (rows, n) s in x's dtype; mean, inv_std: (rows,) contiguous float32 (or None).
    Returns y, or the bound call when ``bind``."""
    if x.dtype not in (np.float32, np.float16) or x.ndim != 2 or x.shape[1] == 0:
        raise ValueError("x must be a (rows, n > 0) float32 or float16 array")
    cdef size_t rows = x.shape[0], n = x.shape[1]
    _check_out(y, x.dtype, "y")
    if skip.dtype != x.dtype or y.shape[0] != x.shape[0]:
        raise ValueError("skip must have x's dtype, y x's shape")
    cdef BoundSkipLayerNorm b = BoundSkipLayerNorm.__new__(BoundSkipLayerNorm)
    b.xr, b.sr, b.yr = _row_stride(x, "x", n), _row_stride(skip, "skip", n), _row_stride(y, "y", n)
    if skip.shape[0] == 0 or rows % skip.shape[0]:
        raise ValueError(f"skip's {skip.shape[0]} rows must divide x's {rows}")
    for name, v in (("bias", bias), ("gamma", gamma), ("beta", beta)):
        if v is not None and (not isinstance(v, np.ndarray) or v.dtype != x.dtype or v.shape != (n,)
                              or not v.flags.c_contiguous):
            raise ValueError(f"{name} must be a contiguous (n,) array of x's dtype")
    if sum is not None:
        _check_out(sum, x.dtype, "sum")
        if sum.shape[0] != x.shape[0]:
            raise ValueError("sum must have x's shape")
        b.sumr, b.sump = _row_stride(sum, "sum", n), _ptr(sum)
    for name, v in (("mean", mean), ("inv_std", inv_std)):
        if v is not None:
            if not isinstance(v, np.ndarray) or v.shape != (rows,) or not v.flags.c_contiguous:
                raise ValueError(f"{name} must be a contiguous (rows,) float32 array")
            _check_out(v, np.float32, name)
    b.rows, b.n, b.srows, b.eps, b.f16 = rows, n, skip.shape[0], eps, x.dtype == np.float16
    b.tmp = <float *>malloc(sizeof(float) * n)
    if b.tmp == NULL:
        raise MemoryError("cannot allocate a row")
    b.xp, b.skp, b.gp, b.yp = _ptr(x), _ptr(skip), _ptr(gamma), _ptr(y)
    if bias is not None:
        b.bp = _ptr(bias)
    if beta is not None:
        b.btp = _ptr(beta)
    if mean is not None:
        b.mp = <float *>_ptr(mean)
    if inv_std is not None:
        b.ip = <float *>_ptr(inv_std)
    b.out, b.keep = y, (x, skip, bias, gamma, beta, sum, mean, inv_std)
    return b if bind else b.run()


cdef class BoundAttention(Bound):
    """One attention core bound to its arrays; its heads split over ``threads`` threads."""
    cdef qk_attention g
    cdef qk_attention_fn fn
    cdef int threads
    cdef size_t per
    cdef float *scratch
    cdef object keep

    def __dealloc__(self):
        free(self.scratch)

    cdef void execute(self) noexcept nogil:
        cdef size_t total = self.g.b * self.g.heads
        cdef int t
        if self.threads <= 1:
            self.fn(&self.g, 0, total, self.scratch)
            return
        for t in prange(self.threads, num_threads=self.threads, schedule="static"):
            self.fn(&self.g, total * t // self.threads, total * (t + 1) // self.threads,
                    self.scratch + t * self.per)


def attention(int isa, cnp.ndarray q, cnp.ndarray k, cnp.ndarray v, size_t batch, size_t heads,
              object mask, float scale, cnp.ndarray out, int threads=1, bint bind=False):
    """softmax(scale * q k^T + mask) v per batch and head, float32. q (batch * s, heads *
    hq), k (batch * t, heads * hq), v (batch * t, heads * hv): 2-D views with contiguous
    columns and one row stride (e.g. column slices of one packed QKV matrix); mask: None
    or a float32 (batch, s, t) array with contiguous last axis (other strides any, 0
    included: a broadcast view); out: (batch * s, heads * hv). Returns out, or the bound
    call when ``bind``."""
    for name, a in (("q", q), ("k", k), ("v", v), ("out", out)):
        if a.dtype != np.float32 or a.ndim != 2 or a.shape[1] == 0 or a.strides[1] != 4:
            raise ValueError(f"{name} must be a 2-D float32 array with contiguous columns")
    _check_out(out, np.float32, "out")
    if batch == 0 or heads == 0 or q.shape[0] % batch or k.shape[0] % batch or k.shape[0] != v.shape[0] \
            or q.shape[1] % heads or v.shape[1] % heads or k.shape[1] != q.shape[1] \
            or not (q.strides[0] == k.strides[0] == v.strides[0]) or out.shape[0] != q.shape[0] \
            or out.shape[1] != v.shape[1] or k.shape[0] == 0:
        raise ValueError("q, k, v, out disagree: q (batch*s, heads*hq), k (batch*t, heads*hq), "
                         "v (batch*t, heads*hv) of one row stride, out (batch*s, heads*hv)")
    cdef BoundAttention b = BoundAttention.__new__(BoundAttention)
    b.g.b, b.g.heads, b.g.s, b.g.t = batch, heads, q.shape[0] // batch, k.shape[0] // batch
    b.g.hq, b.g.hv = q.shape[1] // heads, v.shape[1] // heads
    b.g.q, b.g.k, b.g.v = <const float *>_ptr(q), <const float *>_ptr(k), <const float *>_ptr(v)
    b.g.ld, b.g.out, b.g.ldo, b.g.scale = _elem_stride(q, 0), <float *>_ptr(out), _elem_stride(out, 0), scale
    if mask is not None:
        if not isinstance(mask, np.ndarray) or mask.dtype != np.float32 or \
                mask.shape != (batch, b.g.s, b.g.t) or (b.g.t > 1 and mask.strides[2] != 4):
            raise ValueError(f"mask must be a float32 ({batch}, {b.g.s}, {b.g.t}) array with a contiguous last axis")
        b.g.mask, b.g.mb, b.g.ms = <const float *>_ptr(mask), _elem_stride(mask, 0), _elem_stride(mask, 1)
    if threads < 1:
        raise ValueError("threads must be at least 1")
    b.threads = <int>min(<size_t>threads, batch * heads)
    b.per = qk_attention_scratch(&b.g)
    b.scratch = <float *>malloc(sizeof(float) * b.per * b.threads)
    if b.scratch == NULL:
        raise MemoryError("cannot allocate the attention scratch")
    b.fn = qk_attention_for_isa(isa)
    b.out, b.keep = out, (q, k, v, mask)
    return b if bind else b.run()
