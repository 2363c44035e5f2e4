# Elementwise float ops and int8 lookup tables (kernels/eltwise.c, qk_eltwise.h): thin
# entry points for the graph runner (graph/backends/cpu_eltwise.py) and the tests. Each
# takes flat runs (1-D, contiguous: the caller lays its arrays out as one run of memory)
# and either runs once (bind=False: returns y) or returns the call bound to its arrays
# (a Bound: the plan's loop runs it without the GIL). ``isa``: the ISA index whose build
# runs (every build gives the same bits).

cdef extern from "qk_eltwise.h" nogil:
    int QK_ELT_RELU, QK_ELT_CLIP, QK_ELT_HARDSIGMOID, QK_ELT_HARDSWISH, QK_ELT_LEAKYRELU
    int QK_ELT_SIGMOID, QK_ELT_TANH, QK_ELT_EXP, QK_ELT_ERF, QK_ELT_GELU, QK_ELT_GELU_TANH, QK_ELT_UNARY_COUNT
    int QK_ELT_ADD, QK_ELT_SUB, QK_ELT_MUL, QK_ELT_DIV, QK_ELT_FULL, QK_ELT_CHANNEL
    ctypedef void (*qk_elt_unary_f32_fn)(int, float, float, size_t, const float *, float *) noexcept nogil
    ctypedef void (*qk_elt_unary_f16_fn)(int, float, float, size_t, const uint16_t *, uint16_t *) noexcept nogil
    ctypedef void (*qk_elt_prelu_fn)(size_t, size_t, size_t, const float *, const float *, float *) noexcept nogil
    ctypedef void (*qk_elt_binary_fn)(int, size_t, size_t, size_t, const float *, int, const float *, int,
                                      float *) noexcept nogil
    ctypedef void (*qk_elt_softmax_fn)(int, size_t, size_t, const float *, float *) noexcept nogil
    ctypedef struct qk_eltwise_kernels:
        qk_elt_unary_f32_fn unary_f32
        qk_elt_unary_f16_fn unary_f16
        qk_elt_prelu_fn prelu_f32
        qk_elt_binary_fn binary_f32
        qk_elt_softmax_fn softmax_f32
        void (*softmax_masked)(size_t, size_t, const void *, const void *, const int64_t *, Py_ssize_t, float, int,
                               int, void *, float *) noexcept nogil
        void (*binary_f16)(int, size_t, size_t, size_t, const uint16_t *, int, const uint16_t *, int,
                           uint16_t *) noexcept nogil
    const qk_eltwise_kernels *qk_eltwise_for_isa(int isa)

#: op name -> its code in qk_eltwise.h (eltwise_unary's ``op``)
ELTWISE_UNARY = {"Relu": QK_ELT_RELU, "Clip": QK_ELT_CLIP, "HardSigmoid": QK_ELT_HARDSIGMOID,
                 "HardSwish": QK_ELT_HARDSWISH, "LeakyRelu": QK_ELT_LEAKYRELU, "Sigmoid": QK_ELT_SIGMOID,
                 "Tanh": QK_ELT_TANH, "Exp": QK_ELT_EXP, "Erf": QK_ELT_ERF, "Gelu": QK_ELT_GELU,
                 "GeluTanh": QK_ELT_GELU_TANH}
ELTWISE_BINARY = {"Add": QK_ELT_ADD, "Sub": QK_ELT_SUB, "Mul": QK_ELT_MUL, "Div": QK_ELT_DIV}


cdef inline bint _run1d(cnp.ndarray v, object dtype, bint write=False):
    """v is a 1-D contiguous array of ``dtype`` (writeable when ``write``)."""
    return v.ndim == 1 and v.dtype == dtype and v.flags.c_contiguous and (v.flags.writeable or not write)


cdef class BoundUnary(Bound):
    """y = op(x) over one run of float32 or float16 values (in place allowed)."""
    cdef const qk_eltwise_kernels *k
    cdef int op, half
    cdef float p0, p1
    cdef size_t n
    cdef const void *x
    cdef void *y
    cdef object keep

    cdef void execute(self) noexcept nogil:
        if self.half:
            self.k.unary_f16(self.op, self.p0, self.p1, self.n, <const uint16_t *>self.x, <uint16_t *>self.y)
        else:
            self.k.unary_f32(self.op, self.p0, self.p1, self.n, <const float *>self.x, <float *>self.y)


def eltwise_unary(int isa, int op, cnp.ndarray x, cnp.ndarray y, float p0=0, float p1=0, bint bind=False):
    """y = op(x) (ELTWISE_UNARY codes; p0, p1: Clip's lo, hi, HardSigmoid's alpha, beta,
    LeakyRelu's alpha) over x, y: 1-D contiguous, one length, both float32 or both float16
    (computed in float32, rounded once)."""
    if not (0 <= op < QK_ELT_UNARY_COUNT) or x.dtype not in (np.float32, np.float16) or not _run1d(x, x.dtype) \
            or not _run1d(y, x.dtype, True) or y.shape[0] != x.shape[0]:
        raise ValueError("x, y: 1-D contiguous float32 or float16 runs of one length and dtype; a known op")
    cdef BoundUnary b = BoundUnary()
    b.k, b.op, b.half, b.p0, b.p1 = qk_eltwise_for_isa(isa), op, x.dtype == np.float16, p0, p1
    b.n, b.x, b.y, b.out, b.keep = x.shape[0], _ptr(x), _ptr(y), y, x
    return b if bind else b.run()


cdef class BoundPRelu(Bound):
    """PRelu over the run (outer, channels, inner) with a slope per channel."""
    cdef const qk_eltwise_kernels *k
    cdef size_t outer, channels, inner
    cdef const float *x
    cdef const float *s
    cdef float *y
    cdef object keep

    cdef void execute(self) noexcept nogil:
        self.k.prelu_f32(self.outer, self.channels, self.inner, self.x, self.s, self.y)


def eltwise_prelu(int isa, cnp.ndarray x, cnp.ndarray slope, cnp.ndarray y, size_t outer, size_t channels,
                  size_t inner, bint bind=False):
    """y = x < 0 ? x * slope[c] : x over float32 runs x, y of outer * channels * inner values
    (c the middle index); slope: 1-D contiguous float32 of ``channels`` values."""
    if not _run1d(x, np.float32) or not _run1d(y, np.float32, True) or not _run1d(slope, np.float32) or \
            <size_t>x.shape[0] != outer * channels * inner or y.shape[0] != x.shape[0] or \
            <size_t>slope.shape[0] != channels:
        raise ValueError("x, y: float32 runs of outer * channels * inner values; slope: channels values")
    cdef BoundPRelu b = BoundPRelu()
    b.k, b.outer, b.channels, b.inner = qk_eltwise_for_isa(isa), outer, channels, inner
    b.x, b.s, b.y, b.out, b.keep = <const float *>_ptr(x), <const float *>_ptr(slope), <float *>_ptr(y), y, (x, slope)
    return b if bind else b.run()


cdef class BoundBinary(Bound):
    """y = a op b, an operand per channel or scalar, or both full runs (float32 or float16)."""
    cdef const qk_eltwise_kernels *k
    cdef int op, ak, bk
    cdef bint half
    cdef size_t outer, channels, inner
    cdef const void *a
    cdef const void *b
    cdef void *y
    cdef object keep

    cdef void execute(self) noexcept nogil:
        if self.half:
            self.k.binary_f16(self.op, self.outer, self.channels, self.inner, <const uint16_t *>self.a, self.ak,
                              <const uint16_t *>self.b, self.bk, <uint16_t *>self.y)
        else:
            self.k.binary_f32(self.op, self.outer, self.channels, self.inner, <const float *>self.a, self.ak,
                              <const float *>self.b, self.bk, <float *>self.y)


def eltwise_binary(int isa, int op, cnp.ndarray a, bint a_channel, cnp.ndarray b, bint b_channel, cnp.ndarray y,
                   size_t outer, size_t channels, size_t inner, bint bind=False):
    """y = a op b (ELTWISE_BINARY codes) over the float32 (or float16: computed in float32,
    rounded once) run y of outer * channels * inner values: each operand that run (in y's
    order) or, when ``*_channel``, one value per channel (``channels`` values; a scalar:
    channels = 1). Not both per channel; one dtype."""
    cdef size_t n = outer * channels * inner
    dt = y.dtype if y.dtype in (np.float32, np.float16) else np.float32
    if not (QK_ELT_ADD <= op <= QK_ELT_DIV) or (a_channel and b_channel) or not _run1d(a, dt) or \
            not _run1d(b, dt) or not _run1d(y, dt, True) or <size_t>y.shape[0] != n or \
            <size_t>a.shape[0] != (channels if a_channel else n) or <size_t>b.shape[0] != (channels if b_channel else n):
        raise ValueError("a, b, y: float32 or float16 runs of outer * channels * inner values of one dtype "
                         "(channels for a per-channel one)")
    cdef BoundBinary bb = BoundBinary()
    bb.k, bb.op, bb.outer, bb.channels, bb.inner = qk_eltwise_for_isa(isa), op, outer, channels, inner
    bb.half = dt == np.float16
    bb.ak = QK_ELT_CHANNEL if a_channel else QK_ELT_FULL
    bb.bk = QK_ELT_CHANNEL if b_channel else QK_ELT_FULL
    bb.a, bb.b, bb.y = <const void *>_ptr(a), <const void *>_ptr(b), <void *>_ptr(y)
    bb.out, bb.keep = y, (a, b)
    return bb if bind else bb.run()


cdef class BoundSoftmax(Bound):
    """Softmax or LogSoftmax of contiguous rows."""
    cdef const qk_eltwise_kernels *k
    cdef int log
    cdef size_t rows, length
    cdef const float *x
    cdef float *y
    cdef object keep

    cdef void execute(self) noexcept nogil:
        self.k.softmax_f32(self.log, self.rows, self.length, self.x, self.y)


def softmax(int isa, cnp.ndarray x, cnp.ndarray y, size_t rows, size_t length, bint log=False, bint bind=False):
    """Softmax (LogSoftmax with ``log``) of each of ``rows`` rows of ``length`` float32
    values: x, y 1-D contiguous of rows * length values (in place allowed)."""
    if not _run1d(x, np.float32) or not _run1d(y, np.float32, True) or <size_t>x.shape[0] != rows * length or \
            y.shape[0] != x.shape[0] or (rows and not length):
        raise ValueError("x, y: float32 runs of rows * length values, length > 0")
    cdef BoundSoftmax b = BoundSoftmax()
    b.k, b.log, b.rows, b.length = qk_eltwise_for_isa(isa), log, rows, length
    b.x, b.y, b.out, b.keep = <const float *>_ptr(x), <float *>_ptr(y), y, x
    return b if bind else b.run()


cdef class BoundMaskedSoftmax(Bound):
    """Attention's Softmax(x / s + mask) (or x * s) of contiguous rows."""
    cdef const qk_eltwise_kernels *k
    cdef size_t rows, length
    cdef const void *x
    cdef const void *m
    cdef const int64_t *off
    cdef Py_ssize_t step
    cdef float s
    cdef int div, half
    cdef void *y
    cdef float *scratch
    cdef object keep

    def __dealloc__(self):
        free(self.scratch)

    cdef void execute(self) noexcept nogil:
        self.k.softmax_masked(self.rows, self.length, self.x, self.m, self.off, self.step, self.s, self.div,
                              self.half, self.y, self.scratch)


def softmax_masked(int isa, cnp.ndarray x, cnp.ndarray mask, cnp.ndarray mask_off, Py_ssize_t mask_step,
                   cnp.ndarray y, size_t rows, size_t length, float s, bint div, bint bind=False):
    """Softmax(x / s + mask) (x * s when not ``div``) of each of ``rows`` rows of ``length``
    values: x, y 1-D contiguous float32 or float16 runs of rows * length values (in place
    allowed); mask: any array of their dtype, row r's values at element offset mask_off[r]
    (int64, ``rows`` of them) every ``mask_step`` (0 or 1) elements; every offset checked
    against the mask's size."""
    if x.dtype not in (np.float32, np.float16) or not _run1d(x, x.dtype) or not _run1d(y, x.dtype, True) or \
            <size_t>x.shape[0] != rows * length or y.shape[0] != x.shape[0] or (rows and not length) or \
            mask.dtype != x.dtype or not mask.flags.c_contiguous or mask_off.dtype != np.int64 or \
            not _run1d(mask_off, np.int64) or <size_t>mask_off.shape[0] != rows or mask_step not in (0, 1):
        raise ValueError("x, y: float runs of rows * length values; mask: C-contiguous, x's dtype; "
                         "mask_off: int64 per row; mask_step 0 or 1")
    if rows and (mask_off.min() < 0 or mask_off.max() + (length - 1) * mask_step >= mask.size):
        raise ValueError("mask offsets outside the mask")
    cdef BoundMaskedSoftmax b = BoundMaskedSoftmax()
    b.k, b.rows, b.length, b.step, b.s, b.div = qk_eltwise_for_isa(isa), rows, length, mask_step, s, div
    b.half = x.dtype == np.float16
    b.scratch = <float *>malloc(sizeof(float) * 2 * max(length, 1))
    if b.scratch == NULL:
        raise MemoryError("cannot allocate a softmax row")
    b.x, b.m, b.off, b.y = _ptr(x), _ptr(mask), <const int64_t *>_ptr(mask_off), _ptr(y)
    b.out, b.keep = y, (x, mask, mask_off)
    return b if bind else b.run()
