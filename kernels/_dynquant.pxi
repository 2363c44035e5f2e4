# Dynamic quantization (kernels/dynquant.c, qkernels._dynamic): a float32 matrix times
# int8 weights as one bound call: its activations quantized on the fly (per tensor as
# ONNX DynamicQuantizeLinear, or per row), the int8 GEMM, the dequantizing pass. Included
# by _native.pyx.

DYNQ_OK, DYNQ_NONFINITE, DYNQ_RANGE = 0, 1, 2


def dynq_params(float mn, float mx):
    """(scale, zero point, status) of DynamicQuantizeLinear for a range [mn, mx] (kernels/dynquant.c)."""
    cdef float s = 0
    cdef int32_t z = 0
    cdef int st = qk_dynq_params(mn, mx, &s, &z)
    return s, z, st


def dynq_minmax(int isa, const float[::1] x):
    """(min, max, non-finite) of x, from 0 (the path's min / max loop; for tests)."""
    cdef float mn = 0, mx = 0
    cdef int bad = qk_dynq_for_isa(isa).minmax(x.shape[0], &x[0] if x.shape[0] else NULL, &mn, &mx)
    return mn, mx, bool(bad)


cdef class BoundDynq(Bound):
    """y (M, N) float32 = dequantize(gemm(quantize(x))): x (M, K) float32 (columns
    contiguous, any row stride) quantized into q (the buffer the bound GEMM reads),
    per tensor or per row, into sa / za; then the bound int8 GEMM (A's zero point taken
    as 0). Per tensor its output stage dequantizes (QK_OUT_DQ_F32, into y): this call
    first sets its column terms (add, scale) from za and sa. Per row its output stage
    runs the dequantizing pass (qk_dynquant.h) on each tile (qk_out_params dq_rows, set
    by dynq_bind), or, with ``acc`` (weights with zero points: row sums), it stores int32
    into acc and the pass writes y after it. With ``x`` None, q
    already holds the activations and sa / za their parameters (com.microsoft
    MatMulIntegerToFloat). ``status`` after a run: DYNQ_OK, or DYNQ_NONFINITE /
    DYNQ_RANGE (nothing computed: the caller raises or falls back; in a StepLoop the
    bound ``fallback``)."""
    cdef const float *x
    cdef Py_ssize_t x_stride
    cdef size_t M, K, N, acc_stride, y_stride
    cdef int per_row
    cdef uint8_t *q
    cdef float *sa
    cdef int32_t *za
    cdef Bound gemm
    cdef const int32_t *acc
    cdef const int32_t *cb
    cdef const float *sw
    cdef const float *bias
    cdef const int32_t *add0
    cdef int32_t *add
    cdef float *scale
    cdef float *y
    cdef qk_dynq_fns fns
    cdef qk_quantize_row_fn qrow
    cdef readonly int status
    cdef object keep
    cdef BoundDynq lead

    cdef void execute(self) noexcept nogil:
        self.status = 0
        self.failed = 0
        if self.lead is not None and self.lead.status:   # q not made this run: nothing here either
            self.status = self.lead.status
            self.failed = 1
            return
        if self.x != NULL and self.M:
            self.status = qk_dynq_quantize(self.fns.minmax, self.qrow, self.M, self.K, self.x, self.x_stride,
                                           self.per_row, self.q, self.sa, self.za)
            if self.status:
                self.failed = 1
                return
        if self.M == 0 or self.N == 0:
            return
        if self.acc == NULL:
            if not self.per_row:
                qk_dynq_columns(self.N, self.sa[0], self.za[0], self.add0, self.cb, self.sw, self.add, self.scale)
            self.gemm.execute()
            return
        self.gemm.execute()
        self.fns.dq_rows(self.M, self.N, self.acc, self.acc_stride, NULL, self.sa, self.za, self.per_row, self.cb,
                         self.sw, self.bias, self.y, self.y_stride)


cdef bint _vec(cnp.ndarray v, dtype, size_t n):
    return v is not None and v.dtype == dtype and v.ndim == 1 and v.flags.c_contiguous and <size_t>v.shape[0] >= n


def dynq_bind(int isa, cnp.ndarray x, bint per_row, cnp.ndarray q, cnp.ndarray sa, cnp.ndarray za, Bound gemm,
              cnp.ndarray cb, cnp.ndarray sw, cnp.ndarray y, cnp.ndarray acc=None, cnp.ndarray bias=None,
              cnp.ndarray add0=None, cnp.ndarray add=None, cnp.ndarray scale=None, BoundDynq lead=None):
    """The BoundDynq of these arrays (qkernels._dynamic makes them): x float32 (M, K) with
    contiguous columns (or None: q given), q (M, K) (C-contiguous uint8 when x is given:
    what ``gemm`` reads), sa float32 / za int32 (M when per_row, else 1), cb int32 and sw
    float32 (N), y float32 (M, N), columns contiguous. Per row: ``gemm`` a BoundGemm of
    QK_OUT_DQ_F32 into y (scale sw, bias, no row sums), whose tiles this call has
    dequantized per row; or acc int32 (M, N) C-contiguous (``gemm``'s int32 output) and
    bias (float32 N, or None) for the pass after it. Per tensor (acc None): ``gemm``
    writes y in QK_OUT_DQ_F32 with the column terms add / scale (int32 / float32, N),
    which each run sets from add0 (A's zero point 0) and cb, sw. ``lead``: None, or the
    call (run before this one, x None here) whose q, sa, za this one reads: its failure
    (NaN, infinity) is this one's too."""
    cdef BoundDynq b = BoundDynq.__new__(BoundDynq)
    cdef BoundGemm g
    cdef size_t M = q.shape[0], N = y.shape[1]
    cdef size_t rows = M if per_row else 1
    if y.dtype != np.float32 or y.ndim != 2 or <size_t>y.shape[0] != M or (N > 1 and M > 0 and y.strides[1] != 4) or \
            y.strides[0] < 0 or not _vec(sa, np.float32, rows) or not _vec(za, np.int32, rows) or \
            not _vec(cb, np.int32, N) or not _vec(sw, np.float32, N) or \
            (bias is not None and not _vec(bias, np.float32, N)):
        raise ValueError("dynq_bind: arrays of the wrong kind")
    if acc is None and per_row:
        g = gemm if isinstance(gemm, BoundGemm) else None
        if g is None or g.p.mode != QK_OUT_DQ_F32 or g.p.row_sum != NULL or g.c != <char *>_ptr(y) or \
                g.p.scale != <const float *>_ptr(sw) or g.p.bias_f != (<const float *>_ptr(bias) if bias is not None else NULL):
            raise ValueError("dynq_bind: per row, a GEMM of QK_OUT_DQ_F32 into y (scale sw, bias), no row sums")
    elif acc is None:
        if not _vec(add0, np.int32, N) or not _vec(add, np.int32, N) or not _vec(scale, np.float32, N):
            raise ValueError("dynq_bind: per tensor, the output stage's column terms")
        b.add0, b.add, b.scale = <const int32_t *>_ptr(add0), <int32_t *>_ptr(add), <float *>_ptr(scale)
    elif acc.dtype != np.int32 or not acc.flags.c_contiguous or acc.ndim != 2 or <size_t>acc.shape[0] != M or \
            <size_t>acc.shape[1] != N:
        raise ValueError("dynq_bind: acc must be int32 (M, N), C-contiguous")
    else:
        b.acc, b.acc_stride = <const int32_t *>_ptr(acc), N
    if x is not None:
        if x.dtype != np.float32 or x.ndim != 2 or <size_t>x.shape[0] != M or x.shape[1] != q.shape[1] or \
                (x.shape[1] > 1 and M > 0 and x.strides[1] != 4) or q.dtype != np.uint8 or not q.flags.c_contiguous:
            raise ValueError("dynq_bind: x must be float32 (M, K), columns contiguous, q uint8 (M, K)")
        b.x = <const float *>_ptr(x)
        b.x_stride = x.strides[0]
    b.M, b.K, b.N = M, q.shape[1], N
    b.per_row = per_row
    b.q = <uint8_t *>_ptr(q)
    b.sa, b.za = <float *>_ptr(sa), <int32_t *>_ptr(za)
    b.gemm = gemm
    b.lead = lead
    b.cb, b.sw = <const int32_t *>_ptr(cb), <const float *>_ptr(sw)
    b.bias = <const float *>_ptr(bias) if bias is not None else NULL
    b.y, b.y_stride = <float *>_ptr(y), y.strides[0]
    b.fns = qk_dynq_for_isa(isa)
    if acc is None and per_row:     # the GEMM's tiles dequantized with these rows' parameters
        g.p.dq_rows, g.p.dq_sa, g.p.dq_za, g.p.dq_cb = b.fns.dq_rows, b.sa, b.za, b.cb
    b.qrow = qk_ukernel_for_isa(QK_KIND_QUANTIZE, QK_DTYPE_QS8, isa).quantize
    b.out = y
    b.keep = (x, q, sa, za, gemm, acc, cb, sw, bias, add0, add, scale)
    return b
