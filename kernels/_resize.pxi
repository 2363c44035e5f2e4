# Resize (nearest, linear) and the col2im of ConvTranspose: native bound calls
# (kernels/resize.c, kernels/col2im.c), included at the end of _native.pyx.

cdef extern from "qk_resize.h" nogil:
    enum:
        QK_RESIZE_NEAREST
        QK_RESIZE_F32
        QK_RESIZE_F16
        QK_RESIZE_F64
        QK_RESIZE_U8
        QK_RESIZE_S8
    ctypedef struct qk_resize_params:
        const void *x
        Py_ssize_t xs[4]
        void *y
        Py_ssize_t ys[4]
        size_t n, c, h, w, oh, ow, elem
        int kind, channels_last, pass_h, pass_w
        const int32_t *iy0
        const int32_t *iy1
        const int32_t *ix0
        const int32_t *ix1
        const void *wy0
        const void *wy1
        const void *wx0
        const void *wx1
    size_t qk_resize_rows(const qk_resize_params *p)
    size_t qk_resize_scratch_bytes(const qk_resize_params *p)
    ctypedef void (*qk_resize_fn)(const qk_resize_params *p, size_t r0, size_t r1, void *scratch)
    qk_resize_fn qk_resize_for_isa(int isa)

cdef extern from "qk_col2im.h" nogil:
    ctypedef struct qk_col2im_params:
        const float *cols
        size_t cols_stride
        size_t n, h, w, groups, og, kh, kw, oh, ow
        const int32_t *row_cnt
        const int32_t *row_tap
        const int32_t *row_src
        const int32_t *col_cnt
        const int32_t *col_tap
        const int32_t *col_src
        const float *bias
        float lo, hi
        void *y
        Py_ssize_t ys[4]
        int out_f16
    ctypedef void (*qk_col2im_fn)(const qk_col2im_params *p, size_t r0, size_t r1, float *acc)
    qk_col2im_fn qk_col2im_for_isa(int isa)

RESIZE_NEAREST = QK_RESIZE_NEAREST
_RESIZE_KINDS = {np.dtype(np.float32): QK_RESIZE_F32, np.dtype(np.float16): QK_RESIZE_F16,
                 np.dtype(np.float64): QK_RESIZE_F64, np.dtype(np.uint8): QK_RESIZE_U8,
                 np.dtype(np.int8): QK_RESIZE_S8}
# a thread takes at least this many output values (the loops are memory-bound)
cdef size_t _RESIZE_PER_THREAD = 1 << 16


cdef int _elem_strides(cnp.ndarray a, Py_ssize_t *out) except -1:
    cdef Py_ssize_t e = a.itemsize
    cdef int i
    for i in range(a.ndim):
        if a.strides[i] % e:
            raise ValueError("strides must be whole elements")
        out[i] = a.strides[i] // e
    return 0


cdef cnp.ndarray _table(object v, size_t n, object dtype, size_t bound, str what):
    """v as a C-contiguous (n,) array of dtype; int32 entries within [0, bound)."""
    cdef cnp.ndarray t = np.ascontiguousarray(v, dtype)
    if t.ndim != 1 or <size_t>t.shape[0] != n:
        raise ValueError(f"{what} must have {n} entries")
    if dtype == np.int32 and n and (t.min() < 0 or <size_t>t.max() >= bound):
        raise ValueError(f"{what} must lie in [0, {bound})")
    return t


cdef class _ThreadedRows(Bound):
    """A bound call split into rows over threads (static shares), a scratch per thread."""
    cdef object keep
    cdef char *scratch
    cdef size_t rows, chunk, scratch_bytes
    cdef int nt

    def __dealloc__(self):
        free(self.scratch)

    cdef int _threads(self, size_t rows, size_t per_row, size_t scratch_bytes, int num_threads) except -1:
        self.rows, self.scratch_bytes = rows, (scratch_bytes + 63) // 64 * 64
        cdef size_t work = rows * max(per_row, 1)
        self.nt = <int>max(1, min(<size_t>max(num_threads, 1), min(rows, work // _RESIZE_PER_THREAD)))
        self.chunk = (rows + self.nt - 1) // self.nt if rows else 0
        self.scratch = <char *>malloc(self.scratch_bytes * self.nt + 64)
        if self.scratch == NULL:
            raise MemoryError("cannot allocate the scratch rows")
        return 0

    cdef void rows_(self, size_t r0, size_t r1, char *scratch) noexcept nogil:
        pass

    cdef void execute(self) noexcept nogil:
        cdef Py_ssize_t t
        cdef int nt = self.nt
        cdef size_t chunk = self.chunk, rows = self.rows
        if rows == 0:
            return
        if nt == 1:
            self.rows_(0, rows, self.scratch)
        else:
            for t in prange(nt, num_threads=nt, schedule="static"):
                self.rows_(t * chunk, min(rows, (t + 1) * chunk), self.scratch + t * self.scratch_bytes)


cdef class BoundResize(_ThreadedRows):
    """A Resize of (N, C, H, W) into (N, C, OH, OW) bound to its arrays and tables
    (qk_resize.h); ``run()`` repeats it."""
    cdef qk_resize_params p
    cdef qk_resize_fn fn

    cdef void rows_(self, size_t r0, size_t r1, char *scratch) noexcept nogil:
        self.fn(&self.p, r0, r1, scratch)


def resize(cnp.ndarray x, cnp.ndarray y, iy0=None, ix0=None, iy1=None, ix1=None, wy0=None, wy1=None, wx0=None, wx1=None,
           bint linear=False, bint pass_h=True, bint pass_w=True, int num_threads=1, bint bind=False,
           int isa=0):
    """Resize x (N, C, H, W) into y (N, C, OH, OW), both any strides (whole elements):
    nearest (y = x at the source indices iy0 per output row, ix0 per column; any dtype of
    1, 2, 4 or 8 bytes) or ``linear`` (float32, float16, float64, int8, uint8: the blend of
    rows iy0, iy1 by wy0, wy1, then of columns ix0, ix1 by wx0, wx1 -- float32 weights for
    float32/float16, float64 for the others; ``pass_h``/``pass_w`` False: that axis maps onto
    itself, not blended). qk_resize.h. ``bind``: the call bound (a BoundResize), not run;
    ``isa``: the ISA path's build of the loops (the same bits on each)."""
    if x.ndim != 4 or y.ndim != 4 or x.dtype != y.dtype or x.shape[0] != y.shape[0] or x.shape[1] != y.shape[1] \
            or not y.flags.writeable:
        raise ValueError("x (N, C, H, W) and y (N, C, OH, OW) of one dtype, y writeable")
    cdef BoundResize b = BoundResize.__new__(BoundResize)
    b.fn = qk_resize_for_isa(isa)
    cdef qk_resize_params *p = &b.p
    memset(p, 0, sizeof(qk_resize_params))
    p.n, p.c, p.h, p.w, p.oh, p.ow = x.shape[0], x.shape[1], x.shape[2], x.shape[3], y.shape[2], y.shape[3]
    p.elem = x.itemsize
    _elem_strides(x, p.xs)
    _elem_strides(y, p.ys)
    cdef object wdtype = None
    cdef cnp.ndarray t, u, v
    if linear:
        if x.dtype not in _RESIZE_KINDS:
            raise TypeError(f"linear Resize takes float32, float16, float64, int8 or uint8 values, got {x.dtype}")
        p.kind = _RESIZE_KINDS[x.dtype]
        wdtype = np.float32 if p.kind in (QK_RESIZE_F32, QK_RESIZE_F16) else np.float64
    else:
        if x.itemsize not in (1, 2, 4, 8) or x.dtype.hasobject:
            raise TypeError(f"nearest Resize takes values of 1, 2, 4 or 8 bytes, got {x.dtype}")
        p.kind = QK_RESIZE_NEAREST
    if (p.h == 0 and p.oh) or (p.w == 0 and p.ow):
        raise ValueError("an empty axis cannot be resized to a non-empty one")
    if p.oh and p.ow and p.n and p.c:
        if linear and not pass_h and p.oh != p.h or linear and not pass_w and p.ow != p.w:
            raise ValueError("an axis left unblended must keep its length")
        keep = [x, y]
        if not linear or pass_h:
            t = _table(iy0, p.oh, np.int32, p.h, "iy0")
            p.iy0 = <const int32_t *>_ptr(t)
            keep.append(t)
        if not linear or pass_w:
            t = _table(ix0, p.ow, np.int32, p.w, "ix0")
            p.ix0 = <const int32_t *>_ptr(t)
            keep.append(t)
        if linear and pass_h:
            t, u, v = _table(iy1, p.oh, np.int32, p.h, "iy1"), _table(wy0, p.oh, wdtype, 0, "wy0"), \
                _table(wy1, p.oh, wdtype, 0, "wy1")
            p.iy1, p.wy0, p.wy1 = <const int32_t *>_ptr(t), _ptr(u), _ptr(v)
            keep += [t, u, v]
        if linear and pass_w:
            t, u, v = _table(ix1, p.ow, np.int32, p.w, "ix1"), _table(wx0, p.ow, wdtype, 0, "wx0"), \
                _table(wx1, p.ow, wdtype, 0, "wx1")
            p.ix1, p.wx0, p.wx1 = <const int32_t *>_ptr(t), _ptr(u), _ptr(v)
            keep += [t, u, v]
        p.pass_h, p.pass_w = pass_h, pass_w
        # channels in the inner loop when they lie adjacent (NHWC memory) and there are several
        p.channels_last = p.c > 1 and abs(p.xs[1]) == 1
        p.x, p.y = _ptr(x), _ptr(y)
        b.keep = keep
        b._threads(qk_resize_rows(p), p.ow * (p.c if p.channels_last else 1), qk_resize_scratch_bytes(p),
                   num_threads)
    else:
        b.keep = (x, y)
        b._threads(0, 0, 0, 1)
    b.out = y
    return b if bind else b.run()


cdef inline const int32_t *_i32(cnp.ndarray a):
    return <const int32_t *>_ptr(a)


cdef class BoundCol2im(_ThreadedRows):
    """The col2im of a transposed convolution bound to its arrays (qk_col2im.h)."""
    cdef qk_col2im_params p
    cdef qk_col2im_fn fn

    cdef void rows_(self, size_t r0, size_t r1, char *scratch) noexcept nogil:
        self.fn(&self.p, r0, r1, <float *>scratch)


cdef tuple _landing(size_t out, size_t k, size_t size, Py_ssize_t stride, Py_ssize_t dil, Py_ssize_t pad):
    """Per output position o: the (tap, input) pairs with o = i * stride + tap * dil - pad."""
    cnt = np.zeros(max(out, 1), np.int32)
    tap = np.zeros(max(out * k, 1), np.int32)
    src = np.zeros(max(out * k, 1), np.int32)
    cdef int32_t[::1] c = cnt, t = tap, s = src
    cdef Py_ssize_t o, j, v, i
    for o in range(<Py_ssize_t>out):
        for j in range(<Py_ssize_t>k):
            v = o + pad - j * dil
            if v < 0 or v % stride:
                continue
            i = v // stride
            if i < <Py_ssize_t>size:
                t[o * k + c[o]] = <int32_t>j
                s[o * k + c[o]] = <int32_t>i
                c[o] += 1
    return cnt, tap, src


def col2im(cnp.ndarray cols, cnp.ndarray y, size_t h, size_t w, size_t groups, size_t kh, size_t kw,
           Py_ssize_t sy, Py_ssize_t sx, Py_ssize_t dy, Py_ssize_t dx, Py_ssize_t pad_top, Py_ssize_t pad_left,
           cnp.ndarray bias=None, float lo=-np.inf, float hi=np.inf, int num_threads=1, bint bind=False,
           int isa=0):
    """The output y (N, OH, OW, groups * og) of a transposed convolution (float32, or float16
    rounded once) from ``cols`` (N * h * w, >= groups * kh * kw * og) float32, group g's
    columns at g * kh * kw * og ordered (ky, kx, o): each output pixel sums the taps landing
    on it (qk_col2im.h), then the bias (float32, groups * og, or None), then the clamp.
    ``bind``: the call bound (a BoundCol2im), not run; ``isa``: as :func:`resize`."""
    if cols.ndim != 2 or cols.dtype != np.float32 or y.ndim != 4 or y.dtype not in (np.float32, np.float16) \
            or not y.flags.writeable or min(sy, sx, dy, dx) < 1 or groups < 1 or kh < 1 or kw < 1:
        raise ValueError("cols (rows, taps) float32, y (N, OH, OW, O) float32/float16 writeable, "
                         "strides and dilations >= 1")
    cdef size_t n = y.shape[0], oh = y.shape[1], ow = y.shape[2], o = y.shape[3]
    if o % groups or <size_t>cols.shape[0] != n * h * w or <size_t>cols.shape[1] < kh * kw * o or \
            (cols.shape[0] > 1 and cols.strides[1] != 4) or cols.strides[0] % 4 or cols.strides[0] < 0:
        raise ValueError(f"cols {(<object>cols).shape} do not fit y {(<object>y).shape} with {groups} group(s) "
                         f"of {kh}x{kw} taps")
    if bias is None:
        bias = np.zeros(o, np.float32)     # +0 added: no change (qk_col2im.h)
    bias = np.ascontiguousarray(bias, np.float32)
    if bias.ndim != 1 or <size_t>bias.shape[0] != o:
        raise ValueError(f"bias must have {o} values")
    cdef BoundCol2im b = BoundCol2im.__new__(BoundCol2im)
    b.fn = qk_col2im_for_isa(isa)
    cdef qk_col2im_params *p = &b.p
    memset(p, 0, sizeof(qk_col2im_params))
    rows_t, cols_t = _landing(oh, kh, h, sy, dy, pad_top), _landing(ow, kw, w, sx, dx, pad_left)
    b.keep = (cols, y, bias, rows_t, cols_t)
    p.cols, p.cols_stride = <const float *>_ptr(cols), cols.strides[0] // 4
    p.n, p.h, p.w, p.groups, p.og, p.kh, p.kw, p.oh, p.ow = n, h, w, groups, o // groups, kh, kw, oh, ow
    p.row_cnt, p.row_tap, p.row_src = _i32(rows_t[0]), _i32(rows_t[1]), _i32(rows_t[2])
    p.col_cnt, p.col_tap, p.col_src = _i32(cols_t[0]), _i32(cols_t[1]), _i32(cols_t[2])
    p.bias = <const float *>_ptr(bias)
    p.lo, p.hi = lo, hi
    p.y = _ptr(y)
    _elem_strides(y, p.ys)
    p.out_f16 = y.dtype == np.float16
    b._threads(n * oh if o else 0, ow * o, 4 * (o // groups + 16), num_threads)
    b.out = y
    return b if bind else b.run()
