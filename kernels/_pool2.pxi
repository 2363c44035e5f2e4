# Native pooling, reductions and layer normalization (kernels/pool_avg.c, kernels/reduce.c):
# Bound subclasses a graph plan runs without the GIL, and def functions that validate,
# bind (bind=True) or run once. Included at the end of _native.pyx.

cdef extern from "qk_pool_avg.h" nogil:
    ctypedef struct qk_pool2d:
        size_t n, c, h, w, oh, ow, kh, kw, sy, sx, dy, dx
        Py_ssize_t pad_t, pad_l, pad_b, pad_r
        int include_pad
        Py_ssize_t xs[4]
        Py_ssize_t ys[4]
    void qk_avgpool_f32(const qk_pool2d *g, const float *x, float *y, float *acc)
    void qk_avgpool_f16(const qk_pool2d *g, const uint16_t *x, uint16_t *y, float *acc)
    void qk_qavgpool_q8(const qk_pool2d *g, const void *x, int is_signed, const float *lut, float y_scale,
                        int32_t zy, void *y, float *acc)

cdef extern from "qk_reduce.h" nogil:
    enum: QK_REDUCE_MAXDIM
    ctypedef struct qk_reduce_geom:
        size_t nk, nr
        size_t kshape[8]
        size_t rshape[8]
        Py_ssize_t kxs[8]
        Py_ssize_t kys[8]
        Py_ssize_t rxs[8]
        size_t count
    void qk_reduce_f32(int op, const qk_reduce_geom *g, const float *x, float *y, double *acc)
    void qk_reduce_q8(int op, int is_signed, const qk_reduce_geom *g, const void *x, void *y, int32_t *acc)
    size_t qk_reduce_acc_size(const qk_reduce_geom *g)
    void qk_layernorm_f32(const float *x, size_t rows, size_t n, Py_ssize_t xr, Py_ssize_t xc, const float *scale,
                          Py_ssize_t ss, const float *bias, Py_ssize_t bs, double eps, float *y, Py_ssize_t yr,
                          Py_ssize_t yc, float *mean, Py_ssize_t ms, float *inv, Py_ssize_t is_)
    ctypedef void (*qk_layernorm_f32_fn)(const float *x, size_t rows, size_t n, Py_ssize_t xr, Py_ssize_t xc,
                                         const float *scale, Py_ssize_t ss, const float *bias, Py_ssize_t bs,
                                         double eps, float *y, Py_ssize_t yr, Py_ssize_t yc, float *mean,
                                         Py_ssize_t ms, float *inv, Py_ssize_t is_) noexcept nogil
    qk_layernorm_f32_fn qk_layernorm_f32_for_isa(int isa)
    void qk_layernorm_f16(const uint16_t *x, size_t rows, size_t n, Py_ssize_t xr, Py_ssize_t xc,
                          const uint16_t *scale, Py_ssize_t ss, const uint16_t *bias, Py_ssize_t bs, double eps,
                          uint16_t *y, Py_ssize_t yr, Py_ssize_t yc, float *mean, Py_ssize_t ms, float *inv,
                          Py_ssize_t is_)

REDUCE_SUM, REDUCE_MEAN, REDUCE_MAX, REDUCE_MIN = 0, 1, 2, 3


cdef Py_ssize_t _elem_stride(cnp.ndarray a, int axis) except? -1:
    cdef Py_ssize_t s = a.strides[axis], e = a.itemsize
    if s % e:
        raise ValueError("strides must be whole elements")
    return s // e


cdef int _check_out(cnp.ndarray y, object dtype, str what) except -1:
    if y.dtype != dtype or not y.flags.writeable:
        raise ValueError(f"{what} must be a writeable {np.dtype(dtype)} array")
    return 0


cdef class BoundAvgPool(Bound):
    """One 2-D average pooling bound to x and y (float32, float16, or int8/uint8 as
    com.microsoft QLinearAveragePool): the geometry, the channel sums and the dequantizing
    table made once."""
    cdef qk_pool2d g
    cdef int kind                   # 0 float32, 1 float16, 2 uint8, 3 int8
    cdef float lut[256]
    cdef float y_scale
    cdef int32_t zy
    cdef float *acc
    cdef const void *xp
    cdef void *yp
    cdef object keep

    def __dealloc__(self):
        free(self.acc)

    cdef _init(self, cnp.ndarray x, cnp.ndarray y, tuple window, tuple pads, bint include_pad):
        if x.ndim != 4 or y.ndim != 4 or x.dtype != y.dtype or y.shape[0] != x.shape[0] or \
                y.shape[1] != x.shape[1] or not y.flags.writeable:
            raise ValueError("x, y: 4-D (N, C, H, W) arrays of one dtype, N and C alike, y writeable")
        kh, kw, sy, sx, dy, dx = window
        if min(window) < 1:
            raise ValueError("the window, strides and dilations must be positive")
        self.g.n, self.g.c, self.g.h, self.g.w = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
        self.g.oh, self.g.ow = y.shape[2], y.shape[3]
        self.g.kh, self.g.kw, self.g.sy, self.g.sx, self.g.dy, self.g.dx = kh, kw, sy, sx, dy, dx
        self.g.pad_t, self.g.pad_l, self.g.pad_b, self.g.pad_r = pads
        self.g.include_pad = include_pad
        cdef int i
        for i in range(4):
            self.g.xs[i], self.g.ys[i] = _elem_stride(x, i), _elem_stride(y, i)
        self.acc = <float *>malloc(sizeof(float) * max(1, x.shape[1], y.shape[3]))
        if self.acc == NULL:
            raise MemoryError("cannot allocate the pooling sums")
        self.xp, self.yp, self.out, self.keep = _ptr(x), _ptr(y), y, x

    cdef void execute(self) noexcept nogil:
        if self.kind == 0:
            qk_avgpool_f32(&self.g, <const float *>self.xp, <float *>self.yp, self.acc)
        elif self.kind == 1:
            qk_avgpool_f16(&self.g, <const uint16_t *>self.xp, <uint16_t *>self.yp, self.acc)
        else:
            qk_qavgpool_q8(&self.g, self.xp, self.kind == 3, self.lut, self.y_scale, self.zy, self.yp, self.acc)


def avg_pool(cnp.ndarray x, cnp.ndarray y, size_t kh, size_t kw, size_t sy, size_t sx, size_t dy, size_t dx,
             Py_ssize_t pad_top, Py_ssize_t pad_left, Py_ssize_t pad_bottom, Py_ssize_t pad_right,
             bint count_include_pad, bint bind=False):
    """2-D AveragePool of x (N, C, H, W) into y (N, C, OH, OW), float32 or float16, any
    strides (qk_pool_avg.h): the taps inside x summed in float32, divided once by ONNX's
    count. Returns y, or the bound call (a Bound) when ``bind``."""
    if x.dtype not in (np.float32, np.float16):
        raise ValueError("avg_pool takes float32 or float16")
    cdef BoundAvgPool b = BoundAvgPool.__new__(BoundAvgPool)
    b._init(x, y, (kh, kw, sy, sx, dy, dx), (pad_top, pad_left, pad_bottom, pad_right), count_include_pad)
    b.kind = 0 if x.dtype == np.float32 else 1
    return b if bind else b.run()


def qlinear_avg_pool(cnp.ndarray x, cnp.ndarray y, size_t kh, size_t kw, size_t sy, size_t sx, Py_ssize_t pad_top,
                     Py_ssize_t pad_left, Py_ssize_t pad_bottom, Py_ssize_t pad_right, bint count_include_pad,
                     float x_scale, int32_t zx, float y_scale, int32_t zy, bint bind=False):
    """com.microsoft QLinearAveragePool (2-D, NCHW axes order: pass a channels_last
    tensor transposed) of int8/uint8 x into y, as onnxruntime computes it: float32
    dequantized taps summed in window order, divided by the float32 count, then
    nearbyintf(v / y_scale + zy) saturated. Pads must be smaller than the window (as
    onnxruntime requires). Returns y, or the bound call when ``bind``."""
    if x.dtype not in (np.int8, np.uint8):
        raise ValueError("qlinear_avg_pool takes int8 or uint8")
    if pad_top < 0 or pad_left < 0 or pad_bottom < 0 or pad_right < 0 or pad_top >= <Py_ssize_t>kh or \
            pad_bottom >= <Py_ssize_t>kh or pad_left >= <Py_ssize_t>kw or pad_right >= <Py_ssize_t>kw:
        raise ValueError("pads must be at least 0 and smaller than the window")
    lo, hi = (-128, 127) if x.dtype == np.int8 else (0, 255)
    if not lo <= zx <= hi or not lo <= zy <= hi:
        raise ValueError("zero points outside the 8-bit range")
    cdef BoundAvgPool b = BoundAvgPool.__new__(BoundAvgPool)
    b._init(x, y, (kh, kw, sy, sx, 1, 1), (pad_top, pad_left, pad_bottom, pad_right), count_include_pad)
    b.kind = 3 if x.dtype == np.int8 else 2
    b.y_scale, b.zy = y_scale, zy
    cdef int q
    for q in range(256):
        b.lut[q] = x_scale * <float>((q - 256 if q >= 128 else q) - zx if b.kind == 3 else q - zx)
    return b if bind else b.run()


def _reduce_axes_geometry(x, y, axes):
    """(kept, reduced): lists of (size, x stride[, y stride]) in elements, outermost first
    (by x stride), adjacent axes merged where they can be, size-1 axes dropped."""
    e, ey = x.itemsize, y.itemsize
    kept, red = [], []
    for i in range(x.ndim):
        if x.shape[i] == 1:
            continue
        if x.strides[i] % e or y.strides[i] % ey:
            raise ValueError("strides must be whole elements")
        if i in axes:
            red.append([x.shape[i], x.strides[i] // e])
        else:
            kept.append([x.shape[i], x.strides[i] // e, y.strides[i] // ey])
    merged = []
    for group in (kept, red):
        group.sort(key=lambda a: -abs(a[1]))
        out = []
        for a in group:
            last = out[len(out) - 1] if out else None     # (no negative indices: wraparound=False)
            if last is not None and all(p == q * a[0] for p, q in zip(last[1:], a[1:])):
                out[len(out) - 1] = [last[0] * a[0]] + a[1:]
            else:
                out.append(list(a))
        merged.append(out)
    return merged


cdef class BoundReduce(Bound):
    """One reduction bound to x and y (qk_reduce.h): the merged geometry and the
    accumulators made once."""
    cdef qk_reduce_geom g
    cdef int op, kind               # kind: 0 float32, 1 uint8, 2 int8
    cdef void *acc
    cdef const void *xp
    cdef void *yp
    cdef object keep

    def __dealloc__(self):
        free(self.acc)

    cdef void execute(self) noexcept nogil:
        if self.kind == 0:
            qk_reduce_f32(self.op, &self.g, <const float *>self.xp, <float *>self.yp, <double *>self.acc)
        else:
            qk_reduce_q8(self.op, self.kind == 2, &self.g, self.xp, self.yp, <int32_t *>self.acc)


def reduce(cnp.ndarray x, cnp.ndarray y, axes, int op, bint bind=False):
    """Sum, mean (float32: float64 sums rounded once), max or min (float32, int8, uint8:
    exact, NaN propagating) of x over ``axes`` into y, which has x's rank with size 1 on
    the reduced axes (keepdims; pass a view for the other shape); any strides, any
    memory order. Returns y, or the bound call when ``bind``."""
    axes = sorted({int(a) % x.ndim for a in axes}) if x.ndim else []
    if op not in (0, 1, 2, 3) or x.dtype != y.dtype or y.ndim != x.ndim or not y.flags.writeable or \
            any(y.shape[i] != (1 if i in axes else x.shape[i]) for i in range(x.ndim)):
        raise ValueError("y must be x's dtype and shape, 1 on the reduced axes, writeable")
    if x.dtype == np.float32:
        kind = 0
    elif x.dtype in (np.uint8, np.int8) and op >= 2:
        kind = 1 if x.dtype == np.uint8 else 2
    else:
        raise ValueError("reduce takes float32 (sum, mean, max, min) or int8/uint8 (max, min)")
    if x.size == 0:
        raise ValueError("reduce does not take empty arrays")
    kept, red = _reduce_axes_geometry(x, y, axes)
    if len(kept) > QK_REDUCE_MAXDIM or len(red) > QK_REDUCE_MAXDIM:
        raise ValueError(f"at most {QK_REDUCE_MAXDIM} axes that do not merge")
    if not red:
        red = [[1, 0]]
    cdef BoundReduce b = BoundReduce.__new__(BoundReduce)
    b.op, b.kind = op, kind
    b.g.nk, b.g.nr = len(kept), len(red)
    for i, (size, xs, ys) in enumerate(kept):
        b.g.kshape[i], b.g.kxs[i], b.g.kys[i] = size, xs, ys
    for i, (size, xs) in enumerate(red):
        b.g.rshape[i], b.g.rxs[i] = size, xs
    b.g.count = int(np.prod([x.shape[a] for a in axes], dtype=np.int64)) if axes else 1
    b.acc = malloc(8 * qk_reduce_acc_size(&b.g))
    if b.acc == NULL:
        raise MemoryError("cannot allocate the reduction sums")
    b.xp, b.yp, b.out, b.keep = _ptr(x), _ptr(y), y, x
    return b if bind else b.run()


cdef class BoundLayerNorm(Bound):
    """One LayerNormalization bound to its arrays (qk_reduce.h)."""
    cdef size_t rows, n
    cdef Py_ssize_t xr, xc, ss, bs, yr, yc, ms, is_
    cdef double eps
    cdef bint f16
    cdef const void *xp
    cdef const void *sp
    cdef const void *bp
    cdef void *yp
    cdef float *mp
    cdef float *ip
    cdef qk_layernorm_f32_fn fn
    cdef object keep

    cdef void execute(self) noexcept nogil:
        if self.f16:
            qk_layernorm_f16(<const uint16_t *>self.xp, self.rows, self.n, self.xr, self.xc,
                             <const uint16_t *>self.sp, self.ss, <const uint16_t *>self.bp, self.bs, self.eps,
                             <uint16_t *>self.yp, self.yr, self.yc, self.mp, self.ms, self.ip, self.is_)
        else:
            self.fn(<const float *>self.xp, self.rows, self.n, self.xr, self.xc, <const float *>self.sp,
                    self.ss, <const float *>self.bp, self.bs, self.eps, <float *>self.yp, self.yr, self.yc,
                    self.mp, self.ms, self.ip, self.is_)


def layer_norm(cnp.ndarray x, cnp.ndarray scale, object bias, double eps, cnp.ndarray y, object mean=None,
               object inv_std=None, bint bind=False, int isa=0):
    """LayerNormalization of the rows of x (rows, n), float32 or float16, any strides,
    into y (rows, n) of its dtype: float64 row statistics (two passes), the result
    rounded once (qk_reduce.h). scale, bias (or None): (n,) of x's dtype; mean, inv_std
    (or None): (rows,) float32 outputs. ``isa``: the path (QK_ISA_*; float32 rows take its
    build of the loops, the same bits on every one). Returns y, or the bound call when ``bind``."""
    if x.ndim != 2 or x.dtype not in (np.float32, np.float16) or y.ndim != 2 or y.shape[0] != x.shape[0] or \
            y.shape[1] != x.shape[1] or x.shape[1] == 0:
        raise ValueError("x, y: (rows, n > 0) float32 or float16 arrays of one shape")
    _check_out(y, x.dtype, "y")
    cdef size_t rows = x.shape[0], n = x.shape[1]
    for name, v in (("scale", scale), ("bias", bias)):
        if v is not None and (not isinstance(v, np.ndarray) or v.dtype != x.dtype or v.shape != (n,)):
            raise ValueError(f"{name} must be an (n,) array of x's dtype")
    for name, v in (("mean", mean), ("inv_std", inv_std)):
        if v is not None:
            if not isinstance(v, np.ndarray) or v.shape != (rows,):
                raise ValueError(f"{name} must be a (rows,) float32 array")
            _check_out(v, np.float32, name)
    cdef BoundLayerNorm b = BoundLayerNorm.__new__(BoundLayerNorm)
    b.rows, b.n, b.eps, b.f16 = rows, n, eps, x.dtype == np.float16
    b.fn = qk_layernorm_f32_for_isa(isa)
    b.xr, b.xc, b.yr, b.yc = _elem_stride(x, 0), _elem_stride(x, 1), _elem_stride(y, 0), _elem_stride(y, 1)
    b.xp, b.yp, b.sp, b.ss = _ptr(x), _ptr(y), _ptr(scale), _elem_stride(scale, 0)
    if bias is not None:
        b.bp, b.bs = _ptr(bias), _elem_stride(bias, 0)
    if mean is not None:
        b.mp, b.ms = <float *>_ptr(mean), _elem_stride(mean, 0)
    if inv_std is not None:
        b.ip, b.is_ = <float *>_ptr(inv_std), _elem_stride(inv_std, 0)
    b.out, b.keep = y, (x, scale, bias, mean, inv_std)
    return b if bind else b.run()
