# The recurrent layers' driver (kernels/recurrent.c, qk_recurrent.h): a whole RNN / GRU /
# LSTM sequence in one Bound — the input projection of every step (one fp32 GEMM, bound by
# the caller), then per direction and step the h R^T GEMM(s) (bound on this Bound's own
# state buffers, R packed once) and the gate math in C; no Python per step. The graph
# runner (graph/backends/cpu_recurrent.py) makes the GEMMs and the views; this checks the
# views' shapes and strides before anything runs.

from libc.string cimport memcpy

cdef extern from "qk_recurrent.h" nogil:
    int QK_CELL_RNN, QK_CELL_GRU, QK_CELL_LSTM
    int QK_RNN_RELU, QK_RNN_TANH, QK_RNN_SIGMOID, QK_RNN_AFFINE, QK_RNN_LEAKYRELU, QK_RNN_THRESHOLDEDRELU
    int QK_RNN_SCALEDTANH, QK_RNN_HARDSIGMOID, QK_RNN_ELU, QK_RNN_SOFTSIGN, QK_RNN_SOFTPLUS
    ctypedef struct qk_rnn_act:
        int kind
        float alpha, beta
    ctypedef struct qk_rnn_cell:
        int cell
        size_t hidden
        float clip
        int input_forget, linear_before_reset
        qk_rnn_act act[3]
        const float *peephole
    ctypedef struct qk_rnn_seq:
        size_t rows
        int reverse
        const int32_t *lens
        size_t steps
        const float *xw
        Py_ssize_t xw_t, xw_n
        float *y
        Py_ssize_t y_t, y_n
    ctypedef void (*qk_rnn_step_a_fn)(const qk_rnn_cell *, const qk_rnn_seq *, size_t, float *, float *, float *,
                                      float *) noexcept nogil
    ctypedef void (*qk_rnn_step_b_fn)(const qk_rnn_cell *, const qk_rnn_seq *, size_t, const float *, const float *,
                                      float *) noexcept nogil
    ctypedef void (*qk_rnn_quantize_fn)(size_t, size_t, const float *, size_t, const int32_t *, size_t, uint8_t *,
                                        float *, int32_t *) noexcept nogil
    ctypedef void (*qk_rnn_dequantize_fn)(size_t, size_t, const int32_t *, int32_t, const int32_t *, float,
                                          const float *, const float *, float *, size_t) noexcept nogil
    ctypedef struct qk_recurrent_kernels:
        qk_rnn_step_a_fn step_a
        qk_rnn_step_b_fn step_b
        qk_rnn_quantize_fn quantize
        qk_rnn_dequantize_fn dequantize
    const qk_recurrent_kernels *qk_recurrent_for_isa(int isa)

#: cell name -> its code; activation name (ONNX's spelling) -> its code
RNN_CELLS = {"RNN": QK_CELL_RNN, "GRU": QK_CELL_GRU, "LSTM": QK_CELL_LSTM}
RNN_ACTIVATIONS = {"Relu": QK_RNN_RELU, "Tanh": QK_RNN_TANH, "Sigmoid": QK_RNN_SIGMOID, "Affine": QK_RNN_AFFINE,
                   "LeakyRelu": QK_RNN_LEAKYRELU, "ThresholdedRelu": QK_RNN_THRESHOLDEDRELU,
                   "ScaledTanh": QK_RNN_SCALEDTANH, "HardSigmoid": QK_RNN_HARDSIGMOID, "Elu": QK_RNN_ELU,
                   "Softsign": QK_RNN_SOFTSIGN, "Softplus": QK_RNN_SOFTPLUS}


cdef inline bint _f32_rows(cnp.ndarray v, int ndim, bint write=False):
    """v: float32 of ``ndim`` axes, the last contiguous, the others whole floats apart."""
    if v.dtype != np.float32 or v.ndim != ndim or (write and not v.flags.writeable):
        return False
    if v.shape[ndim - 1] > 1 and v.strides[ndim - 1] != 4:
        return False
    for k in range(ndim - 1):
        if v.strides[k] % 4:
            return False
    return True


cdef inline bint _c_rows(cnp.ndarray v, size_t rows, size_t cols):
    return v.dtype == np.float32 and v.ndim == 2 and <size_t>v.shape[0] == rows and \
        <size_t>v.shape[1] == cols and v.flags.c_contiguous and v.flags.writeable


cdef class BoundRecurrent(Bound):
    """A whole recurrent layer over a sequence (see the top of this file)."""
    cdef const qk_recurrent_kernels *k
    cdef int D
    cdef size_t T, N, H
    cdef qk_rnn_cell cell[2]
    cdef qk_rnn_seq seq[2]
    cdef void *xgemm
    cdef void *rgemm[2]
    cdef void *rhgemm[2]
    cdef float *g[2]
    cdef float *h[2]
    cdef float *c[2]
    cdef float *rh[2]
    cdef float *rhg[2]
    # initial states and final-state outputs: (D, N, H) views (NULL: absent), strides in floats
    cdef const float *h0
    cdef const float *c0
    cdef float *yh
    cdef float *yc
    cdef Py_ssize_t h0s[2]
    cdef Py_ssize_t c0s[2]
    cdef Py_ssize_t yhs[2]
    cdef Py_ssize_t ycs[2]
    cdef float *y
    cdef Py_ssize_t ys[3]          # Y (T, D, N, H): strides of t, d, n in floats
    cdef object keep
    # dynamically quantized GEMMs (DynamicQuantizeLSTM): X and h quantized per call, the
    # bound GEMMs integer (zero point 0, raw int32), the products dequantized here
    cdef bint dq
    cdef const float *dq_x
    cdef size_t dq_xn, dq_rows, dq_cols
    cdef uint8_t *dq_xq
    cdef int32_t *dq_xacc
    cdef const int32_t *dq_wcs
    cdef const float *dq_wsw
    cdef const float *dq_xb
    cdef uint8_t *dq_hq[2]
    cdef int32_t *dq_hacc[2]
    cdef const int32_t *dq_rcs[2]
    cdef const float *dq_rsw[2]

    cdef void _state_in(self, float *dst, const float *src, Py_ssize_t sd, Py_ssize_t sn, int d) noexcept nogil:
        cdef size_t n
        for n in range(self.N):
            if src == NULL:
                memset(dst + n * self.H, 0, self.H * sizeof(float))
            else:
                memcpy(dst + n * self.H, src + d * sd + <Py_ssize_t>n * sn, self.H * sizeof(float))

    cdef void _state_out(self, float *dst, const float *src, Py_ssize_t sd, Py_ssize_t sn, int d) noexcept nogil:
        cdef size_t n
        cdef const int32_t *lens = self.seq[d].lens
        for n in range(self.N):
            if lens != NULL and lens[n] == 0:        # onnxruntime's: an empty row's states are 0
                memset(dst + d * sd + <Py_ssize_t>n * sn, 0, self.H * sizeof(float))
            else:
                memcpy(dst + d * sd + <Py_ssize_t>n * sn, src + n * self.H, self.H * sizeof(float))

    cdef void execute(self) noexcept nogil:
        cdef size_t s, n, t, steps
        cdef int d, dd
        cdef const int32_t *lens = self.seq[0].lens
        if self.y != NULL and lens != NULL:           # rows past their length stay 0
            for t in range(self.T):
                for dd in range(self.D):
                    for n in range(self.N):
                        memset(self.y + <Py_ssize_t>t * self.ys[0] + dd * self.ys[1] + <Py_ssize_t>n * self.ys[2],
                               0, self.H * sizeof(float))
        steps = self.T
        if lens != NULL:
            steps = 0
            for n in range(self.N):
                if lens[n] > 0:
                    steps = max(steps, <size_t>lens[n])
            steps = min(steps, self.T)
        cdef float sa
        cdef int32_t za
        cdef size_t gh = self.dq_cols // self.D if self.dq else 0
        if self.dq:     # X's range: its first max(lens) steps (layout 0: rows (t, n))
            self.k.quantize(self.dq_rows, self.dq_xn // self.dq_rows, self.dq_x, steps * self.N, NULL, 0,
                            self.dq_xq, &sa, &za)
        (<Bound>self.xgemm).execute()
        if self.dq:
            self.k.dequantize(self.dq_rows, self.dq_cols, self.dq_xacc, za, self.dq_wcs, sa, self.dq_wsw, self.dq_xb,
                              <float *>self.seq[0].xw, self.dq_cols)
        for d in range(self.D):
            self._state_in(self.h[d], self.h0, self.h0s[0], self.h0s[1], d)
            if self.c[d] != NULL:
                self._state_in(self.c[d], self.c0, self.c0s[0], self.c0s[1], d)
            for s in range(steps):
                if self.dq:     # h's range: the rows that ran step s - 1 (all at s = 0)
                    self.k.quantize(self.N, self.H, self.h[d], self.N, lens, s, self.dq_hq[d], &sa, &za)
                (<Bound>self.rgemm[d]).execute()
                if self.dq:
                    self.k.dequantize(self.N, gh, self.dq_hacc[d], za, self.dq_rcs[d], sa, self.dq_rsw[d], NULL,
                                      self.g[d], gh)
                self.k.step_a(&self.cell[d], &self.seq[d], s, self.g[d], self.h[d], self.c[d], self.rh[d])
                if self.rhgemm[d] != NULL:
                    (<Bound>self.rhgemm[d]).execute()
                    self.k.step_b(&self.cell[d], &self.seq[d], s, self.g[d], self.rhg[d], self.h[d])
            if self.yh != NULL:
                self._state_out(self.yh, self.h[d], self.yhs[0], self.yhs[1], d)
            if self.yc != NULL and self.c[d] != NULL:
                self._state_out(self.yc, self.c[d], self.ycs[0], self.ycs[1], d)


def recurrent(int isa, str cell, tuple reverse, size_t hidden, float clip, bint input_forget, bint linear_before_reset,
              list activations, list peepholes, Bound xgemm, cnp.ndarray xw, Py_ssize_t xw_t, Py_ssize_t xw_n,
              list rgemms, list rhgemms, list g, list h, list c, list rh, list rhg, size_t T, cnp.ndarray lens,
              cnp.ndarray h0, cnp.ndarray c0, cnp.ndarray y, cnp.ndarray yh, cnp.ndarray yc, bint bind=False,
              tuple dq=None):
    """Bind (``bind``) or run a recurrent layer of D = len(rgemms) directions (``reverse``:
    per direction, whether it runs from the end), hidden size H, over T steps of N rows.

    activations: per direction, 3 (code, alpha, beta) (RNN_ACTIVATIONS; unused ones
    anything); peepholes: per direction a float32 (3 H) or None. xgemm: the bound input
    projection writing xw (rows, D * G * H) float32, C order; direction d's row (t, n) at
    column d * G * H of row t * xw_t + n * xw_n. rgemms / rhgemms (None, or GRU with
    linear_before_reset = 0): per direction the bound h R^T GEMM reading h[d] (N, H) into
    g[d] (N, G * H; 2 * H for such a GRU), and the (r * h) Rh^T GEMM reading rh[d] into
    rhg[d] (N, H); c[d]: the LSTM cell state (N, H) (None otherwise); all C-contiguous
    float32. lens: int32 (N,), each in [0, T] (the caller checks), or None. h0, c0, yh, yc:
    (D, N, H) views (any whole-float strides, last axis contiguous) or None; y: (T, D, N,
    H) such a view, or None (Y not wanted). Returns (y, yh, yc), or the Bound.

    dq (DynamicQuantizeLSTM): (x (rows, I) float32, xq (rows, I) uint8, xacc (rows, D * G * H)
    int32, wcolsum, wscale, xbias (D * G * H) int32 / float32 / float32, and per direction
    lists hq (N, H) uint8, hacc (N, G * H) int32, rcolsum, rscale (G * H)), all C-contiguous:
    xgemm then reads xq into xacc and rgemms[d] hq[d] into hacc[d] (integer GEMMs, zero point
    0); x and h[d] are quantized into them per call (onnxruntime's arithmetic), the products
    dequantized (``float(acc - za * colsum) * (sa * scale)``, + xbias for x) into xw and g[d]."""
    cdef BoundRecurrent b = BoundRecurrent()
    cdef int D = len(rgemms), d, k
    cdef size_t G = {"RNN": 1, "GRU": 3, "LSTM": 4}[cell], H = hidden, N
    cdef bint two_phase = cell == "GRU" and not linear_before_reset
    if D not in (1, 2) or len(rhgemms) != D or len(g) != D or len(h) != D or len(c) != D or len(rh) != D or \
            len(rhg) != D or len(activations) != D or len(peepholes) != D or len(reverse) != D or H == 0:
        raise ValueError("one or two directions, every per-direction list of that length, hidden > 0")
    N = h[0].shape[0] if h[0].ndim == 2 else 0
    if not _c_rows(xw, xw.shape[0] if xw.ndim == 2 else 0, D * G * H) or N == 0:
        raise ValueError("xw: float32 (rows, D * G * H), C order")
    for d in range(D):
        if not (_c_rows(h[d], N, H) and _c_rows(g[d], N, (2 if two_phase else G) * H)
                and (c[d] is None) == (cell != "LSTM") and (c[d] is None or _c_rows(c[d], N, H))
                and (rhgemms[d] is None) == (not two_phase)
                and (not two_phase or (_c_rows(rh[d], N, H) and _c_rows(rhg[d], N, H)))
                and isinstance(rgemms[d], Bound) and (rhgemms[d] is None or isinstance(rhgemms[d], Bound))
                and len(activations[d]) == 3):
            raise ValueError(f"direction {d}: state buffers (N, H), g (N, G*H) C-contiguous float32, "
                             "bound GEMMs, three activations")
        if peepholes[d] is not None and not (peepholes[d].dtype == np.float32 and peepholes[d].ndim == 1 and
                                             <size_t>peepholes[d].shape[0] == 3 * H and
                                             peepholes[d].flags.c_contiguous):
            raise ValueError("peepholes: float32 (3 H), contiguous")
    for v, name in ((h0, "h0"), (c0, "c0"), (yh, "yh"), (yc, "yc")):
        if v is not None and not (_f32_rows(v, 3, name[0] == "y") and v.shape[0] == D and <size_t>v.shape[1] == N
                                  and <size_t>v.shape[2] == H):
            raise ValueError(f"{name}: float32 (D, N, H), last axis contiguous")
    if y is not None and not (_f32_rows(y, 4, True) and <size_t>y.shape[0] == T and y.shape[1] == D and
                              <size_t>y.shape[2] == N and <size_t>y.shape[3] == H):
        raise ValueError("y: float32 (T, D, N, H), last axis contiguous")
    if lens is not None and not (lens.dtype == np.int32 and lens.ndim == 1 and <size_t>lens.shape[0] == N and
                                 lens.flags.c_contiguous):
        raise ValueError("lens: int32 (N,), contiguous")
    if <size_t>xw.shape[0] != T * N or xw_t < 0 or xw_n < 0 or \
            (T and N and <size_t>((T - 1) * xw_t + (N - 1) * xw_n) >= <size_t>xw.shape[0]):
        raise ValueError("xw: T * N rows, row (t, n) at t * xw_t + n * xw_n")
    b.k, b.D, b.T, b.N, b.H = qk_recurrent_for_isa(isa), D, T, N, H
    b.xgemm = <void *>xgemm
    for d in range(D):
        b.cell[d].cell = RNN_CELLS[cell]
        b.cell[d].hidden = H
        b.cell[d].clip = clip
        b.cell[d].input_forget = input_forget
        b.cell[d].linear_before_reset = linear_before_reset
        for k in range(3):
            b.cell[d].act[k].kind, b.cell[d].act[k].alpha, b.cell[d].act[k].beta = activations[d][k]
        b.cell[d].peephole = NULL if peepholes[d] is None else <const float *>_ptr(peepholes[d])
        b.seq[d].rows, b.seq[d].reverse, b.seq[d].steps = N, bool(reverse[d]), T
        b.seq[d].lens = NULL if lens is None else <const int32_t *>_ptr(lens)
        b.seq[d].xw = <const float *>_ptr(xw) + d * G * H
        b.seq[d].xw_t, b.seq[d].xw_n = xw_t * D * G * H, xw_n * D * G * H
        if y is not None:
            b.seq[d].y = <float *>_ptr(y) + d * (y.strides[1] // 4)
            b.seq[d].y_t, b.seq[d].y_n = y.strides[0] // 4, y.strides[2] // 4
        else:
            b.seq[d].y = NULL
        b.rgemm[d] = <void *>rgemms[d]
        b.rhgemm[d] = NULL if rhgemms[d] is None else <void *>rhgemms[d]
        b.g[d], b.h[d] = <float *>_ptr(g[d]), <float *>_ptr(h[d])
        b.c[d] = NULL if c[d] is None else <float *>_ptr(c[d])
        b.rh[d] = <float *>_ptr(rh[d]) if two_phase else NULL
        b.rhg[d] = <float *>_ptr(rhg[d]) if two_phase else NULL
    b.y = NULL
    if y is not None:
        b.y = <float *>_ptr(y)
        b.ys[0], b.ys[1], b.ys[2] = y.strides[0] // 4, y.strides[1] // 4, y.strides[2] // 4
    b.h0 = NULL if h0 is None else <const float *>_ptr(h0)
    b.c0 = NULL if c0 is None else <const float *>_ptr(c0)
    b.yh = NULL if yh is None else <float *>_ptr(yh)
    b.yc = NULL if yc is None else <float *>_ptr(yc)
    if h0 is not None:
        b.h0s[0], b.h0s[1] = h0.strides[0] // 4, h0.strides[1] // 4
    if c0 is not None:
        b.c0s[0], b.c0s[1] = c0.strides[0] // 4, c0.strides[1] // 4
    if yh is not None:
        b.yhs[0], b.yhs[1] = yh.strides[0] // 4, yh.strides[1] // 4
    if yc is not None:
        b.ycs[0], b.ycs[1] = yc.strides[0] // 4, yc.strides[1] // 4
    b.out = (y, yh, yc)
    b.keep = (xgemm, xw, rgemms, rhgemms, g, h, c, rh, rhg, lens, h0, c0, y, yh, yc, peepholes, dq)
    b.dq = dq is not None
    if dq is not None:
        _bind_dq(b, dq, D, G * H, N, H)
    return b if bind else b.run()


def _c_arr(v, dtype, shape):
    return isinstance(v, np.ndarray) and v.dtype == dtype and v.shape == shape and v.flags.c_contiguous


cdef int _bind_dq(BoundRecurrent b, tuple dq, int D, size_t gh, size_t N, size_t H) except -1:
    x, xq, xacc, wcs, wsw, xb, hq, hacc, rcs, rsw = dq
    cdef size_t rows = x.shape[0] if x.ndim == 2 else 0, I = x.shape[1] if x.ndim == 2 else 0
    cdef int d
    c_arr = _c_arr
    if not (c_arr(x, np.float32, (rows, I)) and c_arr(xq, np.uint8, (rows, I)) and
            c_arr(xacc, np.int32, (rows, D * gh)) and rows == <size_t>b.seq[0].steps * N and
            c_arr(wcs, np.int32, (D * gh,)) and c_arr(wsw, np.float32, (D * gh,)) and
            c_arr(xb, np.float32, (D * gh,)) and len(hq) == D and len(hacc) == D and len(rcs) == D and
            len(rsw) == D and b.seq[0].xw_n == <Py_ssize_t>(D * gh) and b.seq[0].xw_t == <Py_ssize_t>(N * D * gh)):
        raise ValueError("dq: x, xq (T * N, I), xacc (T * N, D * G * H), per-column terms, layout 0")
    for d in range(D):
        if not (c_arr(hq[d], np.uint8, (N, H)) and c_arr(hacc[d], np.int32, (N, gh)) and
                c_arr(rcs[d], np.int32, (gh,)) and c_arr(rsw[d], np.float32, (gh,))):
            raise ValueError("dq: hq (N, H) uint8, hacc (N, G * H) int32, rcolsum, rscale (G * H) per direction")
        b.dq_hq[d], b.dq_hacc[d] = <uint8_t *>_ptr(hq[d]), <int32_t *>_ptr(hacc[d])
        b.dq_rcs[d], b.dq_rsw[d] = <const int32_t *>_ptr(rcs[d]), <const float *>_ptr(rsw[d])
    b.dq_x, b.dq_xn, b.dq_rows, b.dq_cols = <const float *>_ptr(x), rows * I, rows, D * gh
    b.dq_xq, b.dq_xacc = <uint8_t *>_ptr(xq), <int32_t *>_ptr(xacc)
    b.dq_wcs, b.dq_wsw, b.dq_xb = <const int32_t *>_ptr(wcs), <const float *>_ptr(wsw), <const float *>_ptr(xb)
    return 0
