# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Cython driver of the int8 GEMM: kernel table, packing, tiling, threads.

Everything here trusts its caller (qkernels._gemm validates shapes, dtypes and
quantization parameters); what it still checks, it checks before releasing the GIL.
"""
from cython.parallel cimport prange, threadid
from libc.stdint cimport int8_t, uint8_t, int16_t, uint16_t, int32_t, uint32_t, int64_t, uint64_t, uintptr_t
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memcpy, memmove, memset
import numpy as np
cimport numpy as cnp

cnp.import_array()

from qk cimport *

OUT_INT32 = QK_OUT_INT32
OUT_FP32 = QK_OUT_FP32
OUT_FIXEDPOINT = QK_OUT_FIXEDPOINT
OUT_FIXEDPOINT_UP = QK_OUT_FIXEDPOINT_UP
OUT_F16 = QK_OUT_F16
OUT_F32 = QK_OUT_F32
OUT_DQ_F32 = QK_OUT_DQ_F32
DTYPE_QS8 = QK_DTYPE_QS8
DTYPE_F16 = QK_DTYPE_F16
DTYPE_F32 = QK_DTYPE_F32
PACK_I16 = QK_PACK_I16
PACK_S8 = QK_PACK_S8
PACK_U8 = QK_PACK_U8
PACK_F16 = QK_PACK_F16
PACK_F32 = QK_PACK_F32
PACK_F32_ROWS = QK_PACK_F32_ROWS
PACK_SRC_F32 = QK_PACK_SRC_F32
KIND_GEMM = QK_KIND_GEMM
KIND_DW_SUM = QK_KIND_DW_SUM
KIND_QUANTIZE = QK_KIND_QUANTIZE
KIND_DEQUANTIZE = QK_KIND_DEQUANTIZE

_FEATURE_BITS = {
    "avx2": 1 << 0, "fma": 1 << 1, "f16c": 1 << 2, "avx512f": 1 << 3, "avx512bw": 1 << 4,
    "avx512vnni": 1 << 5, "avxvnni": 1 << 6, "avx512vl": 1 << 7, "asimd": 1 << 8, "asimddp": 1 << 9,
    "fphp": 1 << 10, "asimdhp": 1 << 11, "i8mm": 1 << 12, "avx512vbmi": 1 << 13,
}


def cpu_arch():
    return qk_cpu_arch().decode()


def cpu_features():
    """The CPU features this process sees, as a dict of name -> bool."""
    cdef unsigned int f = qk_cpu_features()
    return {name: bool(f & bit) for name, bit in _FEATURE_BITS.items()}


def isa_names():
    return [qk_isa_name(i).decode() for i in range(QK_ISA_COUNT)]


def kernel_info(int kid):
    """(name, isa, mr, nr, kr, a_pack, b_pack, max_m, needs_pairs_128, dtype, kind) of micro-kernel
    `kid` (KIND_GEMM, KIND_DW_SUM, KIND_QUANTIZE or KIND_DEQUANTIZE), or None."""
    cdef const qk_ukernel *k = qk_ukernel_get(kid)
    if k == NULL:
        return None
    return (k.name.decode(), qk_isa_name(k.isa).decode(), k.mr, k.nr, k.kr, k.a_pack, k.b_pack, k.max_m,
            bool(k.needs_pairs_128), k.dtype, k.kind)


def select_kernel(int isa, size_t m, bint b_pairs_128=False, int dtype=QK_DTYPE_QS8):
    """Id of the GEMM kernel an ISA uses for M rows of `dtype` (-1: none in this build),
    given whether every stored pair of B along K has |b(k)| + |b(k+1)| <= 128."""
    return qk_gemm_kernel_select(dtype, isa, m, b_pairs_128)


def kernel_count():
    """Number of micro-kernels in the registry (all kinds; ids 0 .. count - 1)."""
    return qk_ukernel_count()


cdef const qk_ukernel *_kernel(int kid) except NULL:
    cdef const qk_ukernel *k = qk_ukernel_get(kid)
    if k == NULL or k.kind != QK_KIND_GEMM:
        raise ValueError(f"no GEMM kernel {kid} in this build")
    return k


def pack_b(int kid, cnp.ndarray b, bint b_signed, const int32_t[::1] zb):
    """Pack B (K, N), any strides, into the panels of the ISA's kernel.

    Returns (packed uint8 buffer, column sums int32[N]). For int16 panels the zero
    points are subtracted here; for int8 panels the sums let the caller fold them."""
    cdef const qk_ukernel *k = _kernel(kid)
    cdef size_t K = b.shape[0], N = b.shape[1]
    cdef Py_ssize_t sk = b.strides[0], sn = b.strides[1]
    cdef size_t nbytes = qk_packed_b_bytes(k.b_pack, k.nr, k.kr, K, N)
    # panels from a 64-byte line: numpy's 16-byte alignment split every zmm load of B in
    # two lines (a 1024 x 1024 int8 GEMV, 1 MB of B from L2: 16 us in place of 9.6,
    # family 6 model 207)
    raw = np.empty(nbytes + 64, np.uint8)
    cdef size_t skip = (64 - <size_t>cnp.PyArray_DATA(raw) % 64) % 64
    packed = raw[skip:skip + nbytes]
    col_sum = np.zeros(N, np.int32)
    cdef uint8_t[::1] pv = packed
    cdef int32_t[::1] cs = col_sum
    cdef const void *src = cnp.PyArray_DATA(b)
    with nogil:
        qk_pack_b(k.b_pack, k.nr, k.kr, K, N, src, b_signed, sk, sn, &zb[0], &pv[0], &cs[0] if N else NULL)
    return packed, col_sum


cdef inline void *_ptr(cnp.ndarray x):
    return cnp.PyArray_DATA(x)


cdef qk_out_params _out_params(int mode, bint out_signed, int32_t zy, int32_t lo, int32_t hi,
                               cnp.ndarray col_add, cnp.ndarray scale, cnp.ndarray mult, cnp.ndarray shift):
    """The output stage's parameters; no B zero-point terms (the caller adds them)."""
    cdef qk_out_params p
    memset(&p, 0, sizeof(p))
    p.mode = mode
    p.out_signed = out_signed
    p.zero_point = zy
    p.lo = lo
    p.hi = hi
    p.col_add = <const int32_t *>_ptr(col_add)
    p.col_zb = NULL
    p.row_sum = NULL
    p.scale = <const float *>_ptr(scale)
    p.mult = <const int32_t *>_ptr(mult)
    p.shift = <const int32_t *>_ptr(shift)
    p.bias_f = p.res_f = NULL
    p.res_stride = 0
    p.act = QK_ACT_NONE
    p.post_b = NULL
    return p


cdef int _set_act(qk_out_params *p, object act) except -1:
    """The activation after the clamp: None, (add, lo, hi, div) of QK_ACT_HSWISH_DIV (fp32),
    or (isa, op) of QK_ACT_ELT: the elementwise op ``op`` (ELTWISE_UNARY) of ISA ``isa``'s
    build over each output row (fp32 and fp16)."""
    if act is None:
        return 0
    if len(act) == 2:
        isa, op = act
        if not (0 <= op < QK_ELT_UNARY_COUNT) or op in (QK_ELT_CLIP, QK_ELT_HARDSIGMOID, QK_ELT_LEAKYRELU):
            raise ValueError("act: an elementwise op without parameters")
        p.act = QK_ACT_ELT
        p.act_fn = qk_eltwise_for_isa(isa).unary_f32
        p.act_op = op
        return 0
    p.act = QK_ACT_HSWISH_DIV
    p.act_add, p.act_lo, p.act_hi, p.act_div = act
    return 0


cdef inline bint _fp32_only_act(object act):
    """An activation only the fp32 stages apply (the hard swish)."""
    return act is not None and len(act) != 2


cdef int _set_residual(qk_out_params *p, cnp.ndarray residual, size_t M, size_t N) except -1:
    """A fused residual Add (fp32): residual (M, N) float32, columns contiguous, any row stride."""
    if residual is None:
        return 0
    if residual.dtype != np.float32 or residual.ndim != 2 or <size_t>residual.shape[0] != M or \
            <size_t>residual.shape[1] != N or (N > 1 and residual.strides[1] != 4) or residual.strides[0] < 0:
        raise ValueError("residual: float32 (M, N), columns contiguous, rows at a non-negative stride")
    p.res_f = <const float *>_ptr(residual)
    p.res_stride = residual.strides[0]
    return 0


cdef class ConvSource:
    """The A operand of a convolution: the input of one group (N, H, W, C view, any
    strides) read as the patch matrix (N*OH*OW, KH*KW*Cg). The caller validates."""
    cdef qk_conv_geom g
    cdef readonly size_t m, k
    cdef object keep      # the array the geometry points into

    def __init__(self, cnp.ndarray x, size_t out_h, size_t out_w, size_t kh, size_t kw, size_t stride_y,
                 size_t stride_x, size_t dil_y, size_t dil_x, Py_ssize_t pad_top, Py_ssize_t pad_left,
                 int pad_byte, size_t elem=1):
        """x: the input viewed as bytes (N, H, W, C * elem), strides in bytes."""
        self.keep = x
        self.g.x = <const uint8_t *>cnp.PyArray_DATA(x)
        self.g.sn, self.g.sh, self.g.sw = x.strides[0], x.strides[1], x.strides[2]
        self.g.sc = x.strides[3] * elem          # channel stride (an fp16 value is 2 bytes)
        self.g.in_h, self.g.in_w, self.g.cg = x.shape[1], x.shape[2], x.shape[3] // elem
        self.g.elem = elem
        self.g.out_h, self.g.out_w, self.g.kh, self.g.kw = out_h, out_w, kh, kw
        self.g.stride_y, self.g.stride_x, self.g.dil_y, self.g.dil_x = stride_y, stride_x, dil_y, dil_x
        self.g.pad_top, self.g.pad_left = pad_top, pad_left
        self.g.pad = <uint8_t>(pad_byte & 0xFF)
        self.m = <size_t>x.shape[0] * out_h * out_w
        self.k = kh * kw * self.g.cg


def gemm(int kid, object a, bint a_signed, int32_t za, cnp.ndarray b_packed, size_t N,
         cnp.ndarray col_add, cnp.ndarray col_zb, bint need_row_sum, int mode, bint out_signed,
         int32_t zy, int32_t lo, int32_t hi, cnp.ndarray scale, cnp.ndarray mult, cnp.ndarray shift,
         cnp.ndarray out, int num_threads, bint bind=False, post=None, cnp.ndarray dq_bias=None):
    """C = output_stage(A (M, K) . packed B) into `out` (M, N): rows contiguous, any
    row stride. A is a matrix (ndarray, any strides) or a ConvSource. `bind`: return
    the call bound (BoundGemm: run() repeats it) instead of running it. ``post``: None,
    or (isa, b, s1, z1, sb, zb, sy, zy), a fused QLinearAdd of each stored tile and b
    (M, N) of the output's dtype, columns contiguous (qk_output.h; int8/uint8 modes).
    ``dq_bias``: QK_OUT_DQ_F32 (float32 out): None or the float32 bias (>= N) added last.

    The caller (qkernels._gemm) guarantees dtypes, contiguity and lengths of the
    per-column arrays (col_add, col_zb, scale, mult, shift: int32/float32, >= N)."""
    cdef const qk_ukernel *k = _kernel(kid)
    cdef qk_out_params p = _out_params(mode, out_signed, zy, lo, hi, col_add, scale, mult, shift)
    cdef cnp.ndarray pb = None
    p.col_zb = <const int32_t *>_ptr(col_zb)
    if mode == QK_OUT_DQ_F32:
        if out.dtype != np.float32 or (dq_bias is not None and (dq_bias.dtype != np.float32 or
                                                              <size_t>dq_bias.shape[0] < N)):
            raise ValueError("QK_OUT_DQ_F32: a float32 output and bias")
        p.bias_f = <const float *>_ptr(dq_bias) if dq_bias is not None else NULL
    if post is not None:
        isa, pb, s1, z1, sb, zb, sy, zy = post
        m = a.m if isinstance(a, ConvSource) else a.shape[0]
        if (mode != QK_OUT_FP32 and mode != QK_OUT_FIXEDPOINT and mode != QK_OUT_FIXEDPOINT_UP) or pb.dtype != out.dtype or pb.ndim != 2 or \
                pb.shape[0] != m or <size_t>pb.shape[1] != N or (N > 1 and pb.strides[1] != 1) or pb.strides[0] < 0:
            raise ValueError("post: an int8/uint8 output and b (M, N) of its dtype, columns contiguous")
        p.post_b, p.post_stride = _ptr(pb), pb.strides[0]
        p.post_s1, p.post_z1, p.post_sb, p.post_zb, p.post_sy, p.post_zy = s1, z1, sb, zb, sy, zy
        p.post_fn = qk_qlinear_binary_for_isa(isa)
    return _gemm_run(k, a, a_signed, za, b_packed, N, need_row_sum, &p, out, num_threads, bind,
                     (col_add, col_zb, scale, mult, shift, pb, dq_bias))


def gemm_float(int kid, object a, cnp.ndarray b_packed, size_t N, cnp.ndarray bias, float flo, float fhi,
               cnp.ndarray out, int num_threads, bint bind=False, cnp.ndarray residual=None, act=None):
    """Float C = clamp(A (M, K) . packed B + bias, flo, fhi) into `out` (M, N), rounded once
    to fp16 by an fp16 kernel, float32 by an fp32 one: the same driver as `gemm`. A: a
    matrix of the kernel's dtype (any strides) or a ConvSource of its elem (2, 4); bias:
    float32 (>= N). `bind`: as `gemm`. `residual` (fp32 kernels): (M, N) float32 added
    after the bias, before the clamp (a fused Add); `act`: (add, lo, hi, div) (fp32), the
    hard swish after the clamp (qk_output.h, QK_ACT_HSWISH_DIV), or (isa, op), an
    elementwise op after the clamp (QK_ACT_ELT, fp32 and fp16: _set_act)."""
    cdef const qk_ukernel *k = _kernel(kid)
    if k.dtype != QK_DTYPE_F16 and k.dtype != QK_DTYPE_F32:
        raise ValueError(f"kernel {kid} is not a float kernel")
    cdef qk_out_params p
    memset(&p, 0, sizeof(p))
    p.mode = QK_OUT_F16 if k.dtype == QK_DTYPE_F16 else QK_OUT_F32
    p.bias_f = <const float *>_ptr(bias)
    p.flo, p.fhi = flo, fhi
    if residual is not None:
        if k.dtype != QK_DTYPE_F32:
            raise ValueError("a residual is fused by fp32 kernels only")
        _set_residual(&p, residual, out.shape[0], N)
    if act is not None:
        if k.dtype != QK_DTYPE_F32 and _fp32_only_act(act):
            raise ValueError("this activation is fused by fp32 kernels only")
        _set_act(&p, act)
    return _gemm_run(k, a, False, 0, b_packed, N, False, &p, out, num_threads, bind, (bias, residual))


cdef class BoundBatchedGemm(Bound):
    """Float C[i] = A[i] . B[i] over a batch of (M, K) x (K, N) products of two activations
    (attention's Q K^T and its weights times V): per product, B packed and A packed into
    this thread's buffers, then the tile loop (qk_gemm_block) with a bias of zeros, all in
    one native loop (no Python per head). Operands at byte offsets from their base arrays,
    any row and column strides (transposed views read in place)."""
    cdef const qk_ukernel *k
    cdef qk_out_params p
    cdef object keep
    cdef const char *a
    cdef const char *b
    cdef char *c
    cdef const Py_ssize_t *ao
    cdef const Py_ssize_t *bo
    cdef const Py_ssize_t *co
    cdef char *buf
    cdef size_t batch, M, K, N, a_bytes, b_bytes, m_direct
    cdef Py_ssize_t sam, sak, sbk, sbn, c_stride
    cdef int nt

    def __dealloc__(self):
        free(self.buf)

    cdef void execute(self) noexcept nogil:
        cdef Py_ssize_t i
        cdef char *pa
        if self.nt == 1:
            for i in range(<Py_ssize_t>self.batch):
                self._one(i, self.buf)
        else:
            for i in prange(<Py_ssize_t>self.batch, num_threads=self.nt, schedule="static"):
                self._one(i, self.buf + threadid() * (self.a_bytes + self.b_bytes))

    cdef inline void _one(self, Py_ssize_t i, char *pa) noexcept nogil:
        cdef const qk_ukernel *k = self.k
        cdef char *pb = pa + self.a_bytes
        cdef const char *a = self.a + self.ao[i]
        cdef char *c = self.c + self.co[i]
        cdef size_t m_direct = self.m_direct
        qk_pack_b(k.b_pack, k.nr, k.kr, self.K, self.N, self.b + self.bo[i], 0, self.sbk, self.sbn, NULL, pb, NULL)
        if m_direct:        # A's full panels read in place, its last rows packed
            qk_gemm_block(k, self.K, 0, m_direct, 0, self.N, a, pb, &self.p, c, self.c_stride)
        if m_direct < self.M:
            qk_pack_a(k.a_pack, k.mr, k.kr, self.M - m_direct, self.K, a + <Py_ssize_t>m_direct * self.sam, 0,
                      self.sam, self.sak, 0, pa, NULL)
            qk_gemm_block(k, self.K, m_direct, self.M, 0, self.N, pa, pb, &self.p, c, self.c_stride)


def gemm_float_batched(int kid, cnp.ndarray a, cnp.ndarray b, cnp.ndarray out, cnp.ndarray a_off,
                       cnp.ndarray b_off, cnp.ndarray c_off, size_t M, size_t K, size_t N, Py_ssize_t sam,
                       Py_ssize_t sak, Py_ssize_t sbk, Py_ssize_t sbn, Py_ssize_t c_stride, cnp.ndarray zeros,
                       int num_threads, bint bind=False):
    """The batch of products out[c_off[i]] (M, N; rows c_stride bytes apart, columns
    contiguous) = a[a_off[i]] (M, K; byte strides sam, sak) . b[b_off[i]] (K, N; sbk, sbn),
    offsets in bytes from each array's data (int64 arrays of one length), in the float
    kernel ``kid``'s dtype; ``zeros``: float32 (>= N), the bias. The caller
    (qkernels._float.batched_matmul) derives every offset and stride from the arrays."""
    cdef const qk_ukernel *k = _kernel(kid)
    if k.dtype != QK_DTYPE_F16 and k.dtype != QK_DTYPE_F32:
        raise ValueError(f"kernel {kid} is not a float kernel")
    if not (a_off.dtype == b_off.dtype == c_off.dtype == np.int64) or not (a_off.flags.c_contiguous and
            b_off.flags.c_contiguous and c_off.flags.c_contiguous) or not (a_off.shape[0] == b_off.shape[0] ==
            c_off.shape[0]) or zeros.dtype != np.float32 or <size_t>zeros.shape[0] < max(N, 1) or K == 0:
        raise ValueError("offsets: int64 arrays of one length; zeros: float32 (>= N); K > 0")
    cdef BoundBatchedGemm g = BoundBatchedGemm.__new__(BoundBatchedGemm)
    memset(&g.p, 0, sizeof(g.p))
    g.p.mode = QK_OUT_F16 if k.dtype == QK_DTYPE_F16 else QK_OUT_F32
    g.p.bias_f = <const float *>_ptr(zeros)
    g.p.flo, g.p.fhi = -np.inf, np.inf
    g.k, g.batch, g.M, g.K, g.N = k, a_off.shape[0], M, K, N
    g.sam, g.sak, g.sbk, g.sbn, g.c_stride = sam, sak, sbk, sbn, c_stride
    # float32 rows of K values one after another are their own row-major A panels (as
    # BoundGemm's m_direct): attention's weights times V no longer copy the weights per head
    g.m_direct = M // k.mr * k.mr if (k.a_pack == (QK_PACK_F32_ROWS | QK_PACK_SRC_F32) and sak == 4 and
                                      sam == <Py_ssize_t>(4 * K)) else 0
    g.a, g.b, g.c = <const char *>_ptr(a), <const char *>_ptr(b), <char *>_ptr(out)
    g.ao, g.bo, g.co = <const Py_ssize_t *>_ptr(a_off), <const Py_ssize_t *>_ptr(b_off), <const Py_ssize_t *>_ptr(c_off)
    g.a_bytes = (qk_packed_a_bytes(k.a_pack, k.mr, k.kr, M, K) + 63) // 64 * 64
    g.b_bytes = (qk_packed_b_bytes(k.b_pack, k.nr, k.kr, K, N) + 63) // 64 * 64
    g.nt = <int>max(1, min(num_threads, <int>g.batch))
    if M * N * K * g.batch < 64 * 64 * 64:
        g.nt = 1               # (waking a second thread costs about 10 us)
    g.buf = <char *>malloc((g.a_bytes + g.b_bytes) * g.nt + 64)
    if g.buf == NULL:
        raise MemoryError("cannot allocate the packing buffers of a batched GEMM")
    g.out, g.keep = out, (a, b, a_off, b_off, c_off, zeros)
    return g if bind else g.run()


cdef object _gemm_run(const qk_ukernel *k, object a, bint a_signed, int32_t za, cnp.ndarray b_packed, size_t N,
                      bint need_row_sum, qk_out_params *pp, cnp.ndarray out, int num_threads, bint bind,
                      tuple keep):
    """The call bound (a BoundGemm) when `bind`, else run once."""
    cdef BoundGemm g = BoundGemm.__new__(BoundGemm)
    g._init(k, a, a_signed, za, b_packed, N, need_row_sum, pp, out, num_threads, keep)
    return g if bind else g.run()


cdef class Bound:
    """A native call bound to fixed arrays (what a graph plan keeps per node): ``execute``
    runs it without the GIL and cannot fail (everything was checked and allocated when
    it was bound). ``run()`` (or calling the object) runs it once and returns its output
    array; :class:`StepLoop` runs a list of them. Not for two threads at once. A call
    that can find its input unfit (dynamic quantization's NaN) sets ``failed`` in
    ``execute``; StepLoop then calls its ``fallback`` (a Python callable that computes
    the output another way) before the next step."""
    cdef object out
    cdef int failed
    cdef public object fallback

    cdef void execute(self) noexcept nogil:
        pass

    def run(self):
        """Run the bound call; returns its output array."""
        with nogil:
            self.execute()
        return self.out

    def __call__(self):
        with nogil:
            self.execute()
        if self.failed and self.fallback is not None:
            self.fallback()


cdef class StepLoop:
    """A plan's steps in one loop: bound native calls (:class:`Bound`) and Python
    callables (no arguments), in order. A run of consecutive native steps runs with the
    GIL released once, with no Python between them."""
    cdef list steps
    cdef void **native          # per step: its Bound (borrowed from `steps`), or NULL
    cdef Py_ssize_t n

    def __cinit__(self, steps):
        self.steps = list(steps)
        self.n = len(self.steps)
        self.native = <void **>malloc(sizeof(void *) * max(1, self.n))
        if self.native == NULL:
            raise MemoryError("cannot allocate the step table")
        cdef Py_ssize_t i
        for i in range(self.n):
            step = self.steps[i]
            if isinstance(step, Bound):
                self.native[i] = <void *>step
            elif callable(step):
                self.native[i] = NULL
            else:
                raise TypeError(f"step {i} is not callable")

    def __dealloc__(self):
        free(self.native)

    def __len__(self):
        return self.n

    @property
    def native_steps(self) -> int:
        """How many of the steps are bound native calls."""
        return sum(1 for i in range(self.n) if self.native[i] != NULL)

    def run(self):
        self._run()

    cdef int _run(self) except -1:
        cdef Py_ssize_t i = 0, j, k, n = self.n
        cdef void **native = self.native
        cdef Bound b
        while i < n:
            if native[i] == NULL:
                self.steps[i]()
                i += 1
                continue
            j = i
            while j < n and native[j] != NULL:
                j += 1
            k = i
            with nogil:
                while k < j:
                    (<Bound>native[k]).execute()
                    k += 1
                    if (<Bound>native[k - 1]).failed:
                        break
            b = <Bound>native[k - 1]
            if b.failed:
                if b.fallback is None:
                    raise RuntimeError(f"step {k - 1} failed and has no fallback")
                b.fallback()
            i = k
        return 0

    def run_io(self, tuple slots, tuple outs, copy_out, dict feeds):
        """A whole run of a plan in one call (the Python around a 1024 x 1024 GEMV's
        session run was about 3 of 12 us): feeds[name] copied into each (name, slot) of
        ``slots`` by memmove, the steps run, and a list of copies of ``outs`` returned
        (C-contiguous ones by memcpy into new arrays, others by ``copy_out``). None, with
        nothing run, unless ``feeds`` holds exactly these names, each an aligned
        C-contiguous ndarray of its slot's shape and type in native byte order (numbers:
        the arena's; the caller then checks them and runs the long way)."""
        cdef Py_ssize_t i, n = len(slots)
        cdef cnp.ndarray slot, x
        cdef tuple pair
        if len(feeds) != n:
            return None
        for i in range(n):
            pair = slots[i]
            v = feeds.get(pair[0])
            if type(v) is not cnp.ndarray:
                return None
            x, slot = v, pair[1]
            if not (cnp.PyArray_ISCARRAY_RO(x) and cnp.PyArray_SAMESHAPE(slot, x) and
                    cnp.PyArray_TYPE(slot) == cnp.PyArray_TYPE(x) and cnp.PyArray_ISNOTSWAPPED(x)):
                return None
            memmove(cnp.PyArray_DATA(slot), cnp.PyArray_DATA(x), <size_t>cnp.PyArray_NBYTES(slot))
        self._run()
        cdef list got = []
        cdef cnp.ndarray o, y
        for o in outs:
            if cnp.PyArray_IS_C_CONTIGUOUS(o) and cnp.PyArray_ISNOTSWAPPED(o):   # (numpy's copy: its casts' set-up)
                y = cnp.PyArray_EMPTY(cnp.PyArray_NDIM(o), cnp.PyArray_DIMS(o), cnp.PyArray_TYPE(o), 0)
                memcpy(cnp.PyArray_DATA(y), cnp.PyArray_DATA(o), <size_t>cnp.PyArray_NBYTES(o))
                got.append(y)
            else:
                got.append(copy_out(o))
        return got


# fp32 and uint8 convolutions through the GEMM kernel's indirect entries where it has them (qk_iconv_block);
# off: the packed patch panels (set_indirect_conv, for A/B measurements and tests)
cdef bint _indirect_conv = True


def set_indirect_conv(bint on):
    """Whether GEMMs bound from now on run fp32 convolutions indirectly (default True); returns
    the previous setting."""
    global _indirect_conv
    prev, _indirect_conv = _indirect_conv, on
    return prev


cdef class BoundGemm(Bound):
    """One GEMM call bound to its arrays (A or a ConvSource, packed B, the output and the
    output stage's terms, all kept alive here): blocking, threads and the packing buffers
    decided and allocated once; ``run()`` repeats the call, with the GIL released. What a
    graph plan keeps per node: a run of it costs no validation and no allocation. Not
    for two threads at once (the packing buffers are its own)."""
    cdef const qk_ukernel *k
    cdef qk_out_params p
    cdef object keep
    cdef const qk_conv_geom *geom
    cdef const char *a_data
    cdef const uint8_t *bp
    cdef char *c
    cdef char *a_packed
    cdef int32_t *row_sum
    cdef uint8_t *scratch
    cdef size_t M, K, N, m_panels, mc_panels, nc_panels, m_blocks, n_blocks, a_panel_bytes, m_direct
    cdef size_t scratch_bytes, c_stride
    cdef Py_ssize_t sm, sk, n_tiles
    cdef int nt, za
    cdef bint a_signed, n_outer
    cdef size_t seg_len           # the indirect convolution's segment (0: A packed)
    cdef const void **iptrs
    cdef uint8_t *izero
    cdef size_t islots            # the tables' row panels per thread

    def __dealloc__(self):
        free(self.a_packed)
        free(self.row_sum)
        free(self.scratch)
        free(self.iptrs)
        free(self.izero)

    cdef _init(self, const qk_ukernel *k, object a, bint a_signed, int32_t za, cnp.ndarray b_packed, size_t N,
               bint need_row_sum, qk_out_params *pp, cnp.ndarray out, int num_threads, tuple keep):
        cdef ConvSource conv = a if isinstance(a, ConvSource) else None
        cdef cnp.ndarray mat = None if conv is not None else a
        self.k, self.p, self.out, self.keep = k, pp[0], out, (a, b_packed, keep)
        self.a_signed, self.za, self.N = a_signed, za, N
        cdef size_t M = conv.m if conv is not None else mat.shape[0]
        cdef size_t K = conv.k if conv is not None else mat.shape[1]
        self.M, self.K = M, K
        self.sm = 0 if conv is not None else mat.strides[0]
        self.sk = 0 if conv is not None else mat.strides[1]
        self.geom = &conv.g if conv is not None else NULL
        cdef size_t mr = k.mr, nr = k.nr
        cdef size_t a_elem = qk_pack_elem_size(k.a_pack)
        cdef size_t b_elem = qk_pack_elem_size(k.b_pack)
        cdef size_t kp = (K + k.kr - 1) // k.kr * k.kr
        if kp == 0:
            kp = k.kr
        if <size_t>b_packed.shape[0] != qk_packed_b_bytes(k.b_pack, k.nr, k.kr, K, N):
            raise ValueError("packed B does not match this kernel and shape")
        if M == 0 or N == 0:
            self.n_tiles = 0
            return

        # (int8 inputs are flipped to uint8 when packed, and row sums come from the packing)
        if conv is not None and _indirect_conv and not a_signed and not need_row_sum:
            self.seg_len = qk_iconv_seg_len(k, &conv.g)
        if self.seg_len and N > qk_iconv_col_block(k, &conv.g) and M * K * conv.g.elem > (8 << 20):
            self.seg_len = 0      # a table per panel (several column blocks) would take too much
        if self.seg_len:
            self.bp = <const uint8_t *>_ptr(b_packed)
            self._init_indirect(M, K, N, num_threads, out, conv.g.elem, conv.g.pad)
            return
        # Blocking: an A block of mc rows stays in L2 while B panels stream past it.
        cdef size_t m_panels = (M + mr - 1) // mr, n_panels = (N + nr - 1) // nr
        cdef size_t mc_panels = max(1, min(m_panels, (192 * 1024) // max(1, kp * mr * a_elem)))
        cdef size_t nc_panels = max(1, min(n_panels, (256 * 1024) // max(1, kp * nr * b_elem)))
        cdef size_t nthreads = max(1, num_threads)
        # Small problems are not worth waking a second thread (about 10 us of sync).
        if M * N * kp < 64 * 64 * 64 * 2:
            nthreads = 1
        cdef size_t m_blocks = (m_panels + mc_panels - 1) // mc_panels
        cdef size_t n_blocks = (n_panels + nc_panels - 1) // nc_panels
        # Enough blocks for every thread: split the wider dimension further. (Measured:
        # equal static shares beat OpenMP's dynamic schedule by 10-50 % on a quiet
        # machine; on a loaded one a thread whose core is taken delays its whole share.)
        while nthreads > 1 and m_blocks * n_blocks < nthreads * 2 and (mc_panels > 1 or nc_panels > 1):
            if mc_panels > 1 and (m_blocks <= n_blocks or nc_panels == 1):
                mc_panels = (mc_panels + 1) // 2
                m_blocks = (m_panels + mc_panels - 1) // mc_panels
            else:
                nc_panels = (nc_panels + 1) // 2
                n_blocks = (n_panels + nc_panels - 1) // nc_panels
        # Blocks of equal size in both dimensions (a cache-sized cut can leave a last block
        # of one panel: 128 rows of fp16 were 21 + 1 panels, and one thread got 21 of them).
        mc_panels = (m_panels + m_blocks - 1) // m_blocks
        m_blocks = (m_panels + mc_panels - 1) // mc_panels
        nc_panels = (n_panels + n_blocks - 1) // n_blocks
        n_blocks = (n_panels + nc_panels - 1) // nc_panels
        # Equal shares: make the block count of the split dimension a multiple of the
        # thread count, with blocks of (nearly) equal size (static schedule, no stealing).
        if nthreads > 1 and m_blocks >= n_blocks and m_panels >= nthreads:
            m_blocks = (m_blocks + nthreads - 1) // nthreads * nthreads
            mc_panels = (m_panels + m_blocks - 1) // m_blocks
            m_blocks = (m_panels + mc_panels - 1) // mc_panels
        elif nthreads > 1 and n_panels >= nthreads:
            n_blocks = (n_blocks + nthreads - 1) // nthreads * nthreads
            nc_panels = (n_panels + n_blocks - 1) // n_blocks
            n_blocks = (n_panels + nc_panels - 1) // nc_panels
        # An fp32 convolution whose weights are one column block, its A panels of at most
        # 32 KiB: row blocks of at most 24 KiB of panels, so the panels gathered for a block
        # are still in L1 when its tiles read them (measured, 1 thread, Xeon family 6 model
        # 207: 3x3 convolutions of 16-64 channels to 64-96 5-7 % faster, the 7x7/2 stem 4 %;
        # larger panels, or several column blocks (the A block reused across them from L2),
        # measured alike or slower)
        cdef size_t l2_m_blocks = m_blocks    # (the tile order below weighs L2-sized blocks)
        if conv is not None and n_blocks == 1 and k.dtype == QK_DTYPE_F32 and kp * mr * a_elem <= 32 * 1024:
            mc_panels = max(1, min(mc_panels, (24 * 1024) // max(1, kp * mr * a_elem)))
            m_blocks = (m_panels + mc_panels - 1) // mc_panels
        self.m_panels, self.mc_panels, self.nc_panels = m_panels, mc_panels, nc_panels
        self.m_blocks, self.n_blocks = m_blocks, n_blocks
        self.n_tiles = m_blocks * n_blocks
        self.nt = <int>min(nthreads, <size_t>self.n_tiles)

        self.a_panel_bytes = qk_packed_a_bytes(k.a_pack, k.mr, k.kr, mr, K)
        # uint8 rows of K bytes (float32 rows of K floats), one after another, K a whole number
        # of groups: the matrix is its own row-major uint8 (float) panels (qk_pack.h), so the
        # full panels are read in place and only a last partial one is packed (a copy as
        # large as A saved: the 1x1 convolutions)
        self.m_direct = 0
        if (self.geom == NULL and k.a_pack == QK_PACK_U8 and not a_signed and not need_row_sum and K > 0 and
                K % k.kr == 0 and self.sk == 1 and self.sm == <Py_ssize_t>K):
            self.m_direct = M // mr * mr
        if (self.geom == NULL and k.a_pack == (QK_PACK_F32_ROWS | QK_PACK_SRC_F32) and K > 0 and self.sk == 4 and
                self.sm == <Py_ssize_t>(4 * K)):
            self.m_direct = M // mr * mr
        # packed A panels: the last partial one (direct rows), a block of mc_panels per
        # thread (each packs its block right before its tiles read it), or all of them
        # (fewer row blocks than threads: packed first, shared by every thread)
        cdef size_t packed_panels = m_panels - self.m_direct // mr
        # Tile order: row blocks outside (each A block packed once, all of B streamed past
        # it) unless B is the larger traffic: few rows and many weights (a late layer's
        # 49 x 4608 x 512 streamed its 9 MB of B from memory once per row block). Then
        # the columns go outside, over all of A packed first (2 MiB at most).
        cdef size_t a_bytes = self.a_panel_bytes * m_panels
        self.n_outer = a_bytes <= (2 << 20) and n_blocks * a_bytes < l2_m_blocks * <size_t>b_packed.shape[0]
        if not self.m_direct and not self.n_outer and (self.nt == 1 or m_blocks >= <size_t>self.nt):
            packed_panels = min(m_panels, mc_panels * <size_t>self.nt)
        self.a_packed = <char *>malloc(self.a_panel_bytes * packed_panels + 64)
        self.row_sum = <int32_t *>malloc(sizeof(int32_t) * m_panels * mr) if need_row_sum else NULL
        self.scratch_bytes = mr * max(K, 1) * (self.geom.elem if self.geom != NULL else 1)
        if self.geom != NULL:
            self.scratch = <uint8_t *>malloc(self.scratch_bytes * self.nt + 64)
        if self.a_packed == NULL or (need_row_sum and self.row_sum == NULL) or \
                (self.geom != NULL and self.scratch == NULL):
            raise MemoryError("cannot allocate the packing buffers of a GEMM")
        self.p.row_sum = self.row_sum
        self.a_data = <const char *>_ptr(mat) if self.geom == NULL else NULL
        self.bp = <const uint8_t *>_ptr(b_packed)
        self.c = <char *>_ptr(out)
        self.c_stride = out.strides[0]

    @property
    def indirect_segment(self):
        """The floats per segment of an indirect convolution (0: its A panels are packed)."""
        return self.seg_len

    cdef _init_indirect(self, size_t M, size_t K, size_t N, int num_threads, cnp.ndarray out, size_t elem,
                        uint8_t pad):
        """The indirect convolution (qk_iconv_block): each thread an equal share of the row
        panels, its pointer table and clipped-row copies, no packed A."""
        cdef size_t mr = self.k.mr, m_panels = (M + mr - 1) // mr, segs = K // self.seg_len
        cdef size_t nthreads = 1 if M * N * K < 64 * 64 * 64 * 2 else max(1, num_threads)
        self.nt = <int>min(nthreads, m_panels)
        self.m_panels, self.mc_panels = m_panels, (m_panels + self.nt - 1) // self.nt
        self.n_tiles = self.nt
        self.islots = self.mc_panels if N > qk_iconv_col_block(self.k, self.geom) else 1
        self.scratch_bytes = self.islots * mr * K * elem
        self.iptrs = <const void **>malloc(sizeof(void *) * self.islots * mr * segs * self.nt)
        self.scratch = <uint8_t *>malloc(self.scratch_bytes * self.nt + 64)
        self.izero = <uint8_t *>malloc(self.seg_len * elem)
        if self.iptrs == NULL or self.scratch == NULL or self.izero == NULL:
            raise MemoryError("cannot allocate the tables of an indirect convolution")
        memset(self.izero, pad, self.seg_len * elem)     # the padding's value (float: +0.0)
        self.c = <char *>_ptr(out)
        self.c_stride = out.strides[0]

    cdef void _execute_indirect(self, Py_ssize_t t) noexcept nogil:
        cdef size_t mr = self.k.mr, segs = self.K // self.seg_len
        cdef size_t m0 = t * self.mc_panels * mr
        if m0 < self.M:
            qk_iconv_block(self.k, self.geom, self.seg_len, m0, min(self.M, m0 + self.mc_panels * mr), self.N,
                           self.bp, &self.p, self.c, self.c_stride, self.iptrs + t * self.islots * mr * segs,
                           self.scratch + t * self.scratch_bytes, self.izero)

    cdef void execute(self) noexcept nogil:
        cdef Py_ssize_t it
        if self.seg_len:
            if self.nt == 1:
                self._execute_indirect(0)
            else:
                for it in prange(self.nt, num_threads=self.nt, schedule="static"):
                    self._execute_indirect(it)
            return
        cdef const qk_ukernel *k = self.k
        cdef size_t M = self.M, K = self.K, N = self.N, mr = k.mr, m_direct = self.m_direct
        cdef size_t mc_panels = self.mc_panels, nc_panels = self.nc_panels, n_blocks = self.n_blocks
        cdef size_t a_panel_bytes = self.a_panel_bytes, scratch_bytes = self.scratch_bytes
        cdef Py_ssize_t sm = self.sm, sk = self.sk, t, mb
        cdef int nt = self.nt
        cdef const qk_conv_geom *geom = self.geom
        cdef const char *a_data = self.a_data
        cdef char *a_packed = self.a_packed
        cdef int32_t *row_sum = self.row_sum
        cdef uint8_t *scratch = self.scratch
        cdef const qk_out_params *p = &self.p
        cdef const uint8_t *bp = self.bp
        cdef char *c = self.c
        cdef size_t c_stride = self.c_stride
        cdef bint a_signed = self.a_signed, n_outer = self.n_outer
        cdef int32_t za = self.za
        cdef Py_ssize_t n_tiles = self.n_tiles, m_blocks = self.m_blocks, m_panels = self.m_panels
        if n_tiles == 0:
            return
        if m_direct:
            if m_direct < M:
                qk_pack_a(k.a_pack, k.mr, k.kr, M - m_direct, K, a_data + m_direct * sm, a_signed, sm, sk,
                          za, a_packed, NULL)
            if nt == 1:         # (an OpenMP region costs a microsecond even for one thread)
                for t in range(n_tiles):
                    _tile_direct(k, K, M, N, t, n_outer, m_blocks, n_blocks, mc_panels, nc_panels, m_direct, a_data,
                                 sm, a_packed, bp, p, c, c_stride)
            else:
                for t in prange(n_tiles, num_threads=nt, schedule="static"):
                    _tile_direct(k, K, M, N, t, n_outer, m_blocks, n_blocks, mc_panels, nc_panels, m_direct, a_data,
                                 sm, a_packed, bp, p, c, c_stride)
        elif not n_outer and (nt == 1 or m_blocks >= nt):
            # a block of rows at a time (each thread its own blocks): its A panels are
            # packed (mc_panels: sized for L2) right before its tiles read them, not all
            # of A first (a conv's 1.8 MB patch matrix had left L2 by then: 1.45x)
            if nt == 1:
                for mb in range(m_blocks):
                    _row_block(k, K, M, N, mb, 0, m_panels, n_blocks, mc_panels, nc_panels, a_data, sm, sk,
                               a_signed, za, geom, scratch, scratch_bytes, a_packed, a_panel_bytes, row_sum, bp, p,
                               c, c_stride)
            else:
                for mb in prange(m_blocks, num_threads=nt, schedule="static"):
                    _row_block(k, K, M, N, mb, threadid(), m_panels, n_blocks, mc_panels, nc_panels, a_data, sm,
                               sk, a_signed, za, geom, scratch, scratch_bytes, a_packed, a_panel_bytes, row_sum, bp,
                               p, c, c_stride)
        elif nt == 1:       # (two OpenMP regions cost a 1024 x 1024 GEMV 1-2 us of its 12)
            _pack_panels(k, 0, m_panels, M, K, a_data, sm, sk, a_signed, za, geom, scratch, a_packed,
                         a_panel_bytes, row_sum)
            for t in range(n_tiles):
                mb = t // n_blocks if not n_outer else t % m_blocks
                _block(k, K, M, N, mb, t % n_blocks if not n_outer else t // m_blocks, mc_panels, nc_panels,
                       a_packed + mb * mc_panels * a_panel_bytes, bp, p, c, c_stride)
        else:
            for t in prange(m_panels, num_threads=nt, schedule="static"):
                if geom == NULL:
                    qk_pack_a(k.a_pack, k.mr, k.kr, min(mr, M - t * mr), K, a_data + t * mr * sm,
                              a_signed, sm, sk, za, a_packed + t * a_panel_bytes,
                              row_sum + t * mr if row_sum != NULL else NULL)
                else:
                    qk_pack_a_conv(k.a_pack, k.mr, k.kr, geom, t * mr, min(mr, M - t * mr), a_signed,
                                   za, scratch + threadid() * scratch_bytes,
                                   a_packed + t * a_panel_bytes,
                                   row_sum + t * mr if row_sum != NULL else NULL, k.isa)
            for t in prange(n_tiles, num_threads=nt, schedule="static"):
                mb = t // n_blocks if not n_outer else t % m_blocks
                _block(k, K, M, N, mb, t % n_blocks if not n_outer else t // m_blocks, mc_panels, nc_panels,
                       a_packed + mb * mc_panels * a_panel_bytes, bp, p, c, c_stride)


cdef inline void _tile_direct(const qk_ukernel *k, size_t K, size_t M, size_t N, Py_ssize_t t, bint n_outer,
                              size_t m_blocks, size_t n_blocks, size_t mc_panels, size_t nc_panels, size_t m_direct,
                              const char *a, Py_ssize_t sm, const char *tail, const void *bp,
                              const qk_out_params *p, char *c, size_t c_stride) noexcept nogil:
    """Tile t of a GEMM reading its full A panels in place (rows or columns outside)."""
    _block_direct(k, K, M, N, t // n_blocks if not n_outer else t % m_blocks,
                  t % n_blocks if not n_outer else t // m_blocks, mc_panels, nc_panels, m_direct, a, sm, tail, bp,
                  p, c, c_stride)


cdef inline void _row_block(const qk_ukernel *k, size_t K, size_t M, size_t N, size_t mb, int tid, size_t m_panels,
                            size_t n_blocks, size_t mc_panels, size_t nc_panels, const char *a_data, Py_ssize_t sm,
                            Py_ssize_t sk, bint a_signed, int32_t za, const qk_conv_geom *geom, uint8_t *scratch,
                            size_t scratch_bytes, char *a_packed, size_t a_panel_bytes, int32_t *row_sum,
                            const void *bp, const qk_out_params *p, char *c, size_t c_stride) noexcept nogil:
    """Row block mb on thread tid: its A panels packed into the thread's slab, then every
    column block against them."""
    cdef char *slab = a_packed + tid * mc_panels * a_panel_bytes
    cdef size_t nb
    _pack_panels(k, mb * mc_panels, min(m_panels, (mb + 1) * mc_panels), M, K, a_data, sm, sk, a_signed, za, geom,
                 scratch + tid * scratch_bytes if scratch != NULL else NULL, slab, a_panel_bytes, row_sum)
    for nb in range(n_blocks):
        _block(k, K, M, N, mb, nb, mc_panels, nc_panels, slab, bp, p, c, c_stride)


cdef inline void _pack_panels(const qk_ukernel *k, size_t p0, size_t p1, size_t M, size_t K, const char *a_data,
                              Py_ssize_t sm, Py_ssize_t sk, bint a_signed, int32_t za, const qk_conv_geom *geom,
                              uint8_t *scratch, char *dst, size_t a_panel_bytes, int32_t *row_sum) noexcept nogil:
    """A panels p0 .. p1 - 1 (of a matrix, or of a convolution's patches) one after another
    from ``dst``."""
    cdef size_t mr = k.mr, t
    if geom == NULL:
        qk_pack_a(k.a_pack, k.mr, k.kr, min(M, p1 * mr) - p0 * mr, K, a_data + <Py_ssize_t>(p0 * mr) * sm, a_signed,
                  sm, sk, za, dst, row_sum + p0 * mr if row_sum != NULL else NULL)
        return
    for t in range(p0, p1):
        qk_pack_a_conv(k.a_pack, k.mr, k.kr, geom, t * mr, min(mr, M - t * mr), a_signed, za, scratch,
                       dst + (t - p0) * a_panel_bytes, row_sum + t * mr if row_sum != NULL else NULL, k.isa)


cdef inline void _block(const qk_ukernel *k, size_t K, size_t M, size_t N, size_t mb, size_t nb,
                        size_t mc_panels, size_t nc_panels, const char *a_block,
                        const void *bp, const qk_out_params *p, char *c, size_t c_stride) noexcept nogil:
    """Tile (mb, nb): row block mb's packed panels (from ``a_block``) times column block nb."""
    cdef size_t m0 = mb * mc_panels * k.mr
    cdef size_t n0 = nb * nc_panels * k.nr
    qk_gemm_block(k, K, m0, min(M, m0 + mc_panels * k.mr), n0, min(N, n0 + nc_panels * k.nr),
                  a_block, bp, p, c, c_stride)


cdef inline void _block_direct(const qk_ukernel *k, size_t K, size_t M, size_t N, size_t mb, size_t nb,
                               size_t mc_panels, size_t nc_panels, size_t m_direct,
                               const char *a, Py_ssize_t sm, const char *tail, const void *bp,
                               const qk_out_params *p, char *c, size_t c_stride) noexcept nogil:
    """_block with rows below m_direct read from the matrix itself, the rest from the
    packed last panel."""
    cdef size_t m0 = mb * mc_panels * k.mr
    cdef size_t m1 = min(M, m0 + mc_panels * k.mr)
    cdef size_t n0 = nb * nc_panels * k.nr
    cdef size_t n1 = min(N, n0 + nc_panels * k.nr)
    if m0 < m_direct:
        qk_gemm_block(k, K, m0, min(m1, m_direct), n0, n1, a + <Py_ssize_t>m0 * sm, bp, p, c, c_stride)
    if m1 > m_direct:
        qk_gemm_block(k, K, m_direct, m1, n0, n1, tail, bp, p, c, c_stride)


def dwconv(int isa, ConvSource src, size_t mult, cnp.ndarray w, bint a_signed, int32_t za,
           cnp.ndarray col_add, int mode, bint out_signed, int32_t zy, int32_t lo, int32_t hi,
           cnp.ndarray scale, cnp.ndarray mult_q, cnp.ndarray shift, cnp.ndarray out, int num_threads,
           bint bind=False):
    """Depthwise convolution of `src` (all channels; its cg = C) by int16 zero-folded
    weights w [KH*KW, C*mult] into out (pixels, C*mult), C-contiguous. The caller
    (qkernels._conv) validates every array. `bind`: the call bound (BoundDw), not run."""
    cdef qk_dw_params d
    memset(&d, 0, sizeof(d))
    d.g = src.g
    d.mult = mult
    d.w = <const int16_t *>_ptr(w)
    d.za = za
    d.a_signed = a_signed
    d.dtype = QK_DTYPE_QS8
    cdef qk_out_params p = _out_params(mode, out_signed, zy, lo, hi, col_add, scale, mult_q, shift)
    return _dw_run(isa, &d, src.m, &p, out, num_threads, bind, (src, w, col_add, scale, mult_q, shift))


def dwconv_float(int isa, int dtype, ConvSource src, cnp.ndarray wf, cnp.ndarray bias, float flo, float fhi,
                 cnp.ndarray out, int num_threads, bint bind=False, cnp.ndarray residual=None, act=None):
    """fp16 or fp32 (`dtype`) depthwise convolution (channel multiplier 1) of `src` (elem 2
    or 4) by float32 weights wf [KH*KW, C] into out (pixels, C) of that dtype: fp32 sums,
    bias and clamp, one rounding (fp16). The caller validates every array."""
    if dtype != QK_DTYPE_F16 and dtype != QK_DTYPE_F32:
        raise ValueError("dtype must be DTYPE_F16 or DTYPE_F32")
    cdef qk_dw_params d
    memset(&d, 0, sizeof(d))
    d.g = src.g
    d.mult = 1
    d.dtype = dtype
    d.wf = <const float *>_ptr(wf)
    cdef qk_out_params p
    memset(&p, 0, sizeof(p))
    p.mode = QK_OUT_F16 if dtype == QK_DTYPE_F16 else QK_OUT_F32
    p.bias_f = <const float *>_ptr(bias)
    p.flo, p.fhi = flo, fhi
    if residual is not None:
        if dtype != QK_DTYPE_F32:
            raise ValueError("a residual is fused by fp32 kernels only")
        _set_residual(&p, residual, src.m, d.g.cg)
    if act is not None:
        if dtype != QK_DTYPE_F32:
            raise ValueError("an activation is fused by fp32 kernels only")
        _set_act(&p, act)
    return _dw_run(isa, &d, src.m, &p, out, num_threads, bind, (src, wf, bias, residual))


cdef object _dw_run(int isa, qk_dw_params *d, size_t pixels, qk_out_params *p, cnp.ndarray out, int num_threads,
                    bint bind, tuple keep):
    """The call bound (a BoundDw) when `bind`, else run once."""
    cdef BoundDw b = BoundDw.__new__(BoundDw)
    b._init(isa, d, pixels, p, out, num_threads, keep)
    return b if bind else b.run()


cdef class BoundDw(Bound):
    """One depthwise convolution bound to its arrays (as BoundGemm): the init sums, the
    zero-point pixel and the accumulators made once; ``run()`` repeats the call."""
    cdef qk_dw_params d
    cdef qk_out_params p
    cdef const qk_ukernel *k
    cdef qk_dw_sum_fn fn
    cdef int32_t *acc
    cdef void *vnni
    cdef size_t pixels, chunk, oc
    cdef int nt
    cdef object keep

    def __dealloc__(self):
        free(self.acc)
        free(self.vnni)

    cdef _init(self, int isa, qk_dw_params *d, size_t pixels, qk_out_params *p, cnp.ndarray out, int num_threads,
               tuple keep):
        self.d, self.p, self.out, self.keep, self.pixels = d[0], p[0], out, keep, pixels
        self.k = _kernel(qk_gemm_kernel_select(d.dtype, isa, 1 << 20, 0))    # its output stage
        self.fn = qk_ukernel_for_isa(QK_KIND_DW_SUM, d.dtype, isa).dw_sum
        cdef size_t ch = d.g.cg
        self.oc = d.g.cg * d.mult
        if pixels == 0 or self.oc == 0:
            return
        self.nt = <int>max(1, min(<size_t>num_threads, pixels // 64 if pixels >= 64 else 1))
        # per thread: the accumulators; once: the init sums and the zero-point pixel
        self.acc = <int32_t *>malloc(sizeof(int32_t) * (self.oc * QK_DW_PIXELS * self.nt + ch) + ch * d.g.elem)
        if self.acc == NULL:
            raise MemoryError("cannot allocate the depthwise accumulators")
        cdef int32_t *init = self.acc + self.oc * QK_DW_PIXELS * self.nt
        if d.dtype != QK_DTYPE_QS8:
            memset(init, 0, sizeof(int32_t) * ch)          # float +0.0: the bias comes in the output stage
        qk_dw_prepare(&self.d, <uint8_t *>(init + ch), init)
        self.d.out, self.d.c, self.d.c_stride = &self.p, _ptr(out), out.strides[0]
        cdef size_t vnni = qk_dw_vnni_size(&self.d)    # the AVX-512 VNNI kernel's int8 layout
        if vnni:
            self.vnni = malloc(vnni)
            if self.vnni == NULL:
                raise MemoryError("cannot allocate the depthwise weights")
            qk_dw_pack_vnni(&self.d, self.vnni)
        self.chunk = (pixels + self.nt - 1) // self.nt

    cdef void execute(self) noexcept nogil:
        cdef Py_ssize_t t
        cdef int nt = self.nt
        cdef size_t chunk = self.chunk, pixels = self.pixels, per = self.oc * QK_DW_PIXELS
        cdef const qk_dw_params *d = &self.d
        cdef qk_dw_sum_fn fn = self.fn
        cdef qk_output_fn output = self.k.output
        cdef const qk_out_params *p = &self.p
        cdef int32_t *acc = self.acc
        if acc == NULL:
            return
        if nt == 1:
            qk_dwconv(d, fn, output, 0, pixels, p, d.c, d.c_stride, acc)
        else:
            for t in prange(nt, num_threads=nt, schedule="static"):
                qk_dwconv(d, fn, output, t * chunk, min(pixels, (t + 1) * chunk), p, d.c, d.c_stride,
                          acc + t * per)


# quantize / dequantize are memory-bound: a thread takes at least this many values (and
# a multiple of 64 of them, so that no two threads write one cache line).
cdef size_t _QUANT_PER_THREAD = 1 << 16


cdef inline int _quant_threads(size_t n, int num_threads, size_t *chunk) noexcept nogil:
    cdef int nt = <int>max(1, min(<size_t>num_threads, n // _QUANT_PER_THREAD))
    chunk[0] = ((n + nt - 1) // nt + 63) // 64 * 64
    return nt


def quantize(int isa, cnp.ndarray x, cnp.ndarray scale, cnp.ndarray zp, size_t channels, size_t inner,
             bint out_signed, cnp.ndarray out, int num_threads):
    """out = saturate(rint(x / scale) + zp) for float32 x viewed as (outer, channels, inner),
    C-contiguous, into int8/uint8 out of x's size; scale float32 and zp int32 hold
    `channels` values. Returns True when x holds a NaN. The caller validates every array."""
    cdef size_t n = x.size, chunk
    cdef qk_quantize_row_fn k = qk_ukernel_for_isa(QK_KIND_QUANTIZE, QK_DTYPE_QS8, isa).quantize
    cdef const float *xp = <const float *>_ptr(x)
    cdef const float *sp = <const float *>_ptr(scale)
    cdef const int32_t *zpp = <const int32_t *>_ptr(zp)
    cdef void *q = _ptr(out)
    cdef int nt = _quant_threads(n, num_threads, &chunk), nan = 0
    cdef Py_ssize_t t
    with nogil:
        if nt == 1:
            nan = qk_quantize_range(k, 0, n, channels, inner, xp, sp, zpp, out_signed, q)
        else:
            for t in prange(nt, num_threads=nt, schedule="static"):
                nan += qk_quantize_range(k, min(n, t * chunk), min(n, (t + 1) * chunk), channels, inner, xp, sp,
                                         zpp, out_signed, q)
    return nan != 0


def dequantize(int isa, cnp.ndarray q, bint in_signed, cnp.ndarray scale, cnp.ndarray zp, size_t channels,
               size_t inner, cnp.ndarray out, int num_threads):
    """out = float32(q - zp) * scale for int8/uint8 q viewed as (outer, channels, inner),
    C-contiguous, into float32 out of q's size. The caller validates every array."""
    cdef size_t n = q.size, chunk
    cdef qk_dequantize_row_fn k = qk_ukernel_for_isa(QK_KIND_DEQUANTIZE, QK_DTYPE_QS8, isa).dequantize
    cdef const void *qp = _ptr(q)
    cdef const float *sp = <const float *>_ptr(scale)
    cdef const int32_t *zpp = <const int32_t *>_ptr(zp)
    cdef float *y = <float *>_ptr(out)
    cdef int nt = _quant_threads(n, num_threads, &chunk)
    cdef Py_ssize_t t
    with nogil:
        if nt == 1:
            qk_dequantize_range(k, 0, n, channels, inner, qp, in_signed, sp, zpp, y)
        else:
            for t in prange(nt, num_threads=nt, schedule="static"):
                qk_dequantize_range(k, min(n, t * chunk), min(n, (t + 1) * chunk), channels, inner, qp, in_signed,
                                    sp, zpp, y)
    return out


# ------------------------------------------------------------------------ layout conversion
# NCHW <-> NHWC (qkernels._layout validates the arrays): per image, the 2-D transpose
# between channels and pixels (kernels/layout.c); per row of pixels when a view's rows
# and columns of pixels do not lie at one stride. One thread: splitting an image's pixels
# between two threads measured no faster here (the transposes run near the memory's
# pace) and, on a busy machine, at times 100x slower (waking the second thread).

def transpose_layout(cnp.ndarray x, cnp.ndarray out, bint to_nhwc, bint simd):
    """out = x.transpose(0, 2, 3, 1) (to_nhwc: x NCHW) or x.transpose(0, 3, 1, 2) (x NHWC)
    for x of any strides (negative and zero included) and out C-contiguous of that shape,
    both of one itemsize (1, 2 or 4 bytes). NHWC out may also be the first channels of
    wider pixels (a channel slice of a C-contiguous array: the bytes past them are kept).
    The caller validates both; this checks the shapes and itemsizes again before it writes."""
    cdef Py_ssize_t pixel = out.strides[2] if out.ndim == 4 else 0    # NHWC out: bytes per pixel
    cdef bint padded = to_nhwc and out.ndim == 4 and out.strides[3] == out.itemsize \
        and pixel >= out.shape[3] * out.itemsize and out.strides[1] == out.shape[2] * pixel \
        and out.strides[0] == out.shape[1] * out.strides[1]
    if x.ndim != 4 or out.ndim != 4 or x.itemsize != out.itemsize or x.itemsize not in (1, 2, 4) \
            or not (out.flags.c_contiguous or padded):
        raise ValueError("transpose_layout: 4-D arrays of one itemsize (1, 2 or 4), out C-contiguous")
    if out.flags.c_contiguous:   # (a size-1 axis's stride is arbitrary: numpy's relaxed strides)
        pixel = out.shape[3] * out.itemsize
    expected = (<object>x).transpose((0, 2, 3, 1) if to_nhwc else (0, 3, 1, 2)).shape
    if (<object>out).shape != expected:
        raise ValueError(f"transpose_layout: out has shape {(<object>out).shape}, expected {expected}")
    if x.size == 0:
        return out
    cdef int ci = 1 if to_nhwc else 3, hi = 2 if to_nhwc else 1, wi = 3 if to_nhwc else 2
    cdef const uint8_t *src = <const uint8_t *>_ptr(x)
    cdef uint8_t *dst = <uint8_t *>_ptr(out)
    cdef size_t elem = x.itemsize, n = x.shape[0], c = x.shape[ci], h = x.shape[hi], w = x.shape[wi]
    cdef Py_ssize_t sn = x.strides[0], sc = x.strides[ci], sh = x.strides[hi]
    cdef Py_ssize_t sp = sh if w == 1 else x.strides[wi]     # the stride between pixels of a row
    # pixels of an image at one stride: one transpose per image, else one per row of pixels
    cdef bint merged = h == 1 or w == 1 or sh == <Py_ssize_t>w * sp
    cdef size_t rows_of_pixels = 1 if merged else h, pixels = h * w if merged else w, image, r, gp
    cdef const uint8_t *s
    with nogil:
        for image in range(n):
            for r in range(rows_of_pixels):
                s = src + <Py_ssize_t>image * sn + <Py_ssize_t>r * sh
                gp = image * h * w + r * w          # the first pixel's index among all images'
                if to_nhwc:   # (C, pixels) -> (pixels, C)
                    qk_transpose(simd, elem, c, pixels, s, sc, sp, dst + gp * pixel, pixel)
                else:         # (pixels, C) -> (C, pixels)
                    qk_transpose(simd, elem, pixels, c, s, sp, sc, dst + (image * c * h * w + r * w) * elem,
                                 h * w * elem)
    return out


def qlinear_binary(int isa, bint mul, cnp.ndarray a, float sa, int32_t za, cnp.ndarray b, float sb, int32_t zb,
                   float sy, int32_t zy, cnp.ndarray y):
    """y = com.microsoft QLinearAdd (QLinearMul with ``mul``) of a and b, elementwise over
    their memory: a, b, y 1-D, contiguous, of one 1-byte dtype and length. The caller
    checks the precondition of kernels/qbinary.c: |(sa (a - za) op sb (b - zb)) / sy| <= 2^22
    for every value of the dtype (else results are wrong, though memory stays safe)."""
    cdef size_t n = a.shape[0]
    if a.ndim != 1 or b.ndim != 1 or y.ndim != 1 or <size_t>b.shape[0] != n or <size_t>y.shape[0] != n or \
            a.itemsize != 1 or b.dtype != a.dtype or y.dtype != a.dtype or not (a.flags.c_contiguous and
            b.flags.c_contiguous and y.flags.c_contiguous and y.flags.writeable):
        raise ValueError("a, b, y: 1-D contiguous int8/uint8 arrays of one length")
    cdef int op = QK_BINARY_MUL if mul else QK_BINARY_ADD
    cdef bint is_signed = a.dtype == np.int8
    cdef const void *ap = _ptr(a)
    cdef const void *bp = _ptr(b)
    cdef void *yp = _ptr(y)
    cdef qk_qbinary_fn fn = qk_qlinear_binary_for_isa(isa)   # ISA path `isa` (the same bits on each)
    with nogil:
        fn(n, op, is_signed, ap, sa, za, bp, sb, zb, sy, zy, yp)
    return y


cdef class BoundTflBinary(Bound):
    """tfl_binary bound to its arrays (the plan's loop runs it without the GIL)."""
    cdef qk_tfl_binary_fn fn
    cdef size_t n
    cdef int op, is_signed
    cdef const void *a
    cdef const void *b
    cdef const int32_t *ta
    cdef const int32_t *tb
    cdef int32_t za, zb, mult, shift, zy, lo, hi
    cdef void *y
    cdef object keep

    cdef void execute(self) noexcept nogil:
        self.fn(self.n, self.op, self.is_signed, self.a, self.b, self.ta, self.tb, self.za, self.zb, self.mult,
                self.shift, self.zy, self.lo, self.hi, self.y)


def tfl_binary(int isa, int op, cnp.ndarray a, cnp.ndarray b, cnp.ndarray ta, cnp.ndarray tb, int32_t za, int32_t zb,
               int32_t mult, int32_t shift, int32_t zy, int32_t lo, int32_t hi, cnp.ndarray y, bint bind=False):
    """y = TFLite's 8-bit ADD (op 0), SUB (1) or MUL (2) of a and b (kernels/tfl_binary.c):
    a, b, y 1-D, contiguous, of one 1-byte dtype and length; ta, tb (ADD, SUB): 512 int32
    values indexed by the input byte (256 for LiteRT's vector loop, then 256 for its tail); za, zb (MUL): the input zero points; then the output
    multiplier, shift, zero point and clamp [lo, hi]; on ISA path ``isa`` (the same bits).
    ``bind``: return the call bound (BoundTflBinary: run() repeats it) instead of running it."""
    cdef size_t n = a.shape[0]
    if a.ndim != 1 or b.ndim != 1 or y.ndim != 1 or <size_t>b.shape[0] != n or <size_t>y.shape[0] != n or \
            a.itemsize != 1 or b.dtype != a.dtype or y.dtype != a.dtype or not (a.flags.c_contiguous and
            b.flags.c_contiguous and y.flags.c_contiguous and y.flags.writeable):
        raise ValueError("a, b, y: 1-D contiguous int8/uint8 arrays of one length")
    if op not in (0, 1, 2) or ta.dtype != np.int32 or tb.dtype != np.int32 or ta.ndim != 1 or tb.ndim != 1 or \
            ta.shape[0] != 512 or tb.shape[0] != 512 or not (ta.flags.c_contiguous and tb.flags.c_contiguous):
        raise ValueError("op 0, 1 or 2; ta, tb: 512 contiguous int32")
    if not (-31 <= shift <= 30) or mult < 0 or lo > hi:
        raise ValueError("shift in [-31, 30], mult >= 0, lo <= hi")
    cdef BoundTflBinary c = BoundTflBinary()
    c.fn, c.n, c.op, c.is_signed = qk_tfl_binary_for_isa(isa), n, op, a.dtype == np.int8
    c.a, c.b, c.ta, c.tb, c.y = _ptr(a), _ptr(b), <const int32_t *>_ptr(ta), <const int32_t *>_ptr(tb), _ptr(y)
    c.za, c.zb, c.mult, c.shift, c.zy, c.lo, c.hi = za, zb, mult, shift, zy, lo, hi
    c.out, c.keep = y, (a, b, ta, tb)
    return c if bind else c.run()


cdef class BoundTflRows(Bound):
    """tfl_mean / tfl_softmax bound to their arrays."""
    cdef int softmax, is_signed, right
    cdef size_t outer, count, inner
    cdef const void *x
    cdef const float *table
    cdef int64_t mult, offset
    cdef int32_t zy
    cdef float fsy, fzy
    cdef int32_t *acc
    cdef void *y
    cdef object keep

    cdef void execute(self) noexcept nogil:
        if self.softmax:
            qk_tfl_softmax(self.outer, self.inner, self.is_signed, self.x, self.table, self.fsy, self.fzy, self.y)
        else:
            qk_tfl_mean(self.outer, self.count, self.inner, self.is_signed, self.x, self.mult, self.offset,
                        self.right, self.zy, self.acc, self.y)


cdef BoundTflRows _tfl_rows(cnp.ndarray x, cnp.ndarray y, size_t n_in, size_t n_out):
    if x.dtype not in (np.int8, np.uint8) or y.dtype != x.dtype or not x.flags.c_contiguous or \
            not y.flags.c_contiguous or not y.flags.writeable or <size_t>x.size != n_in or <size_t>y.size != n_out:
        raise ValueError("x, y: C-contiguous int8/uint8 arrays of one dtype and the stated sizes")
    cdef BoundTflRows c = BoundTflRows()
    c.is_signed, c.x, c.y, c.out = x.dtype == np.int8, _ptr(x), _ptr(y), y
    return c


def tfl_mean(cnp.ndarray x, cnp.ndarray y, size_t outer, size_t count, size_t inner, int64_t mult, int64_t offset,
             int right, int32_t zy, bint bind=False):
    """y (outer x inner) = TFLite's 8-bit MEAN over the ``count`` rows of each of x's
    ``outer`` blocks (x: outer x count x inner, C-contiguous): int32 sums, then
    ((s * mult + offset) >> 31), a rounding right shift by ``right`` (ties away from zero),
    + zy, clamped (kernels/tfl_rows.c; offset = 2^30 - count * z_in * mult)."""
    if count == 0 or count >= (1 << 23) or not (0 <= right <= 62) or not (0 <= mult < (1 << 32)):
        raise ValueError("0 < count < 2^23, 0 <= right <= 62, 0 <= mult < 2^32")
    cdef BoundTflRows c = _tfl_rows(x, y, outer * count * inner, outer * inner)
    acc = np.empty(max(inner, 1), np.int32)
    c.softmax, c.outer, c.count, c.inner = 0, outer, count, inner
    c.mult, c.offset, c.right, c.zy, c.acc = mult, offset, right, zy, <int32_t *>_ptr(acc)
    c.keep = (x, acc)
    return c if bind else c.run()


def tfl_softmax(cnp.ndarray x, cnp.ndarray table, float sy, float zy, cnp.ndarray y, size_t rows, size_t length,
                bint bind=False):
    """y = TFLite's 8-bit SOFTMAX of x's ``rows`` rows of ``length`` (C-contiguous):
    table[max - x] (256 float32), summed in order, times 1 / (sum * sy), rounded half to
    even, + zy, clamped (kernels/tfl_rows.c)."""
    if table.dtype != np.float32 or table.ndim != 1 or table.shape[0] != 256 or not table.flags.c_contiguous or \
            length == 0:
        raise ValueError("table: 256 contiguous float32; length > 0")
    cdef BoundTflRows c = _tfl_rows(x, y, rows * length, rows * length)
    c.softmax, c.outer, c.inner, c.table, c.fsy, c.fzy = 1, rows, length, <const float *>_ptr(table), sy, zy
    c.keep = (x, table)
    return c if bind else c.run()


def global_average_pool(cnp.ndarray x, cnp.ndarray y, float scale=0, int32_t zx=0, int32_t zy=0):
    """Mean over the pixels of x (N, C, P) (any strides, in elements of its dtype) into y
    (N, C) C-contiguous of x's dtype: float32 (the sum in float64), or int8/uint8 as
    onnxruntime's QLinearGlobalAveragePool with float32 ``scale`` = x_scale / (y_scale * P)
    and the zero points (qk_pool.h)."""
    if x.ndim != 3 or y.ndim != 2 or y.shape[0] != x.shape[0] or y.shape[1] != x.shape[1] or \
            y.dtype != x.dtype or not y.flags.c_contiguous or not y.flags.writeable or x.shape[2] == 0 or \
            x.dtype not in (np.float32, np.int8, np.uint8) or any(s % x.itemsize for s in (<object>x).strides):
        raise ValueError("x (N, C, P > 0) float32/int8/uint8, y (N, C) of its dtype, C-contiguous")
    cdef size_t n = x.shape[0], c = x.shape[1], pixels = x.shape[2], e = x.itemsize
    cdef Py_ssize_t sn = x.strides[0] // <Py_ssize_t>e, sc = x.strides[1] // <Py_ssize_t>e
    cdef Py_ssize_t sp = x.strides[2] // <Py_ssize_t>e
    cdef void *acc = malloc(8 * max(c, 1))
    if acc == NULL:
        raise MemoryError("cannot allocate the pooling sums")
    cdef const void *xp = _ptr(x)
    cdef void *yp = _ptr(y)
    cdef bint is_float = x.dtype == np.float32, is_signed = x.dtype == np.int8
    with nogil:
        if is_float:
            qk_global_avg_f32(<const float *>xp, n, c, pixels, sn, sc, sp, <double *>acc, <float *>yp)
        else:
            qk_global_avg_q8(xp, is_signed, n, c, pixels, sn, sc, sp, zx, scale, zy, <int64_t *>acc, yp)
    free(acc)
    return y


def max_pool(cnp.ndarray x, cnp.ndarray y, size_t kh, size_t kw, size_t sy, size_t sx, size_t dy, size_t dx,
             Py_ssize_t pad_top, Py_ssize_t pad_left, int isa=0):
    """2-D max pooling of x (N, C, H, W) into y (N, C, OH, OW), both any strides (whole
    elements), one dtype of float32/int8/uint8 (qk_pool.h). Every window must fit the
    padded input (the caller's geometry); taps outside the input are skipped. ``isa``: the
    ISA path's index (its SIMD loop for NHWC memory; 0: the portable loop)."""
    if x.ndim != 4 or y.ndim != 4 or x.dtype != y.dtype or x.dtype not in (np.float32, np.int8, np.uint8) or \
            y.shape[0] != x.shape[0] or y.shape[1] != x.shape[1] or not y.flags.writeable or \
            min(kh, kw, sy, sx, dy, dx) < 1 or any(s % x.itemsize for s in (<object>x).strides + (<object>y).strides):
        raise ValueError("x, y: 4-D float32/int8/uint8 of one dtype, N and C alike; a window of positive sizes")
    if not 0 <= isa < QK_ISA_COUNT:
        raise ValueError(f"isa: an ISA path's index, got {isa}")
    cdef size_t oh = y.shape[2], ow = y.shape[3]
    if oh and ow and ((oh - 1) * sy + (kh - 1) * dy < <size_t>max(0, -pad_top) or
                      (ow - 1) * sx + (kw - 1) * dx < <size_t>max(0, -pad_left)):
        raise ValueError("the windows do not reach the input")
    cdef Py_ssize_t e = x.itemsize
    cdef Py_ssize_t xs[4]
    cdef Py_ssize_t ys[4]
    cdef Py_ssize_t pad[2]
    cdef size_t geom[6]
    for i in range(4):
        xs[i], ys[i] = x.strides[i] // e, y.strides[i] // e
    pad[0], pad[1] = pad_top, pad_left
    geom[0], geom[1], geom[2], geom[3], geom[4], geom[5] = kh, kw, sy, sx, dy, dx
    cdef size_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    cdef void *xp = _ptr(x)
    cdef void *yp = _ptr(y)
    cdef int kind = 0 if x.dtype == np.float32 else 1 if x.dtype == np.int8 else 2
    with nogil:
        if kind == 0:
            qk_maxpool_f32(isa, <const float *>xp, n, c, h, w, xs, oh, ow, geom, pad, <float *>yp, ys)
        elif kind == 1:
            qk_maxpool_s8(isa, <const int8_t *>xp, n, c, h, w, xs, oh, ow, geom, pad, <int8_t *>yp, ys)
        else:
            qk_maxpool_u8(isa, <const uint8_t *>xp, n, c, h, w, xs, oh, ow, geom, pad, <uint8_t *>yp, ys)
    return y


# ------------------------------------------------------------------------ test entry points
# One micro-kernel on one tile, for tests/test_ukernels.py (XNNPACK's pattern: each kernel
# against the reference on every edge). No validation beyond what keeps memory safe.

cdef size_t _k_groups(const qk_ukernel *k, size_t K):
    """What a kernel's first argument counts: groups of KR along K (K = 0 is one group of zeros)."""
    return max(1, (K + k.kr - 1) // k.kr)


def ukernel_info(int kid):
    """Every field of kernel `kid` as a dict (isa by name), or None past the table."""
    cdef const qk_ukernel *k = qk_ukernel_get(kid)
    if k == NULL:
        return None
    return dict(name=k.name.decode(), kind=k.kind, isa=qk_isa_name(k.isa).decode(), dtype=k.dtype, mr=k.mr,
                nr=k.nr, kr=k.kr, a_pack=k.a_pack, b_pack=k.b_pack, max_m=k.max_m,
                needs_pairs_128=bool(k.needs_pairs_128), needs_fp16_arith=bool(k.needs_fp16_arith),
                fused=k.fused != NULL, width=k.width)


def ukernel_pack_a(int kid, cnp.ndarray a, bint a_signed, int32_t za):
    """One A panel of kernel `kid` from a (rows <= MR, K): (panel bytes, row sums int32[MR])."""
    cdef const qk_ukernel *k = _kernel(kid)
    cdef size_t M = a.shape[0], K = a.shape[1]
    if M > <size_t>k.mr:
        raise ValueError(f"one panel holds at most {k.mr} rows")
    packed = np.zeros(qk_packed_a_bytes(k.a_pack, k.mr, k.kr, k.mr, K), np.uint8)
    row_sum = np.zeros(k.mr, np.int32)
    cdef uint8_t[::1] pv = packed
    cdef int32_t[::1] rs = row_sum
    qk_pack_a(k.a_pack, k.mr, k.kr, M, K, cnp.PyArray_DATA(a), a_signed, a.strides[0], a.strides[1], za,
              &pv[0], &rs[0])
    return packed, row_sum


def ukernel_gemm(int kid, const uint8_t[::1] a_panel, const uint8_t[::1] b_panel, size_t K):
    """The raw MR x NR tile of kernel `kid` over one packed A and one packed B panel:
    int32 sums, or float32 for fp16 kernels."""
    cdef const qk_ukernel *k = _kernel(kid)
    if (<size_t>a_panel.shape[0] != qk_packed_a_bytes(k.a_pack, k.mr, k.kr, k.mr, K) or
            <size_t>b_panel.shape[0] != qk_packed_b_bytes(k.b_pack, k.nr, k.kr, K, k.nr)):
        raise ValueError("panels do not match this kernel and K")
    acc = np.zeros((k.mr, k.nr), np.int32)
    cdef int32_t[:, ::1] av = acc
    k.gemm(_k_groups(k, K), &a_panel[0], &b_panel[0], &av[0, 0])
    return acc.view(np.float32) if k.dtype != QK_DTYPE_QS8 else acc


cdef qk_out_params _tile_params(int mode, bint out_signed, int32_t zy, int32_t lo, int32_t hi, col_add, col_zb,
                                row_sum, scale, mult, shift, bias, float flo, float fhi) except *:
    """Output-stage parameters from optional arrays (None: NULL); the caller keeps them alive."""
    cdef qk_out_params p
    memset(&p, 0, sizeof(p))
    p.mode, p.out_signed, p.zero_point, p.lo, p.hi = mode, out_signed, zy, lo, hi
    p.col_add = <const int32_t *>_opt_ptr(col_add, np.int32)
    p.col_zb = <const int32_t *>_opt_ptr(col_zb, np.int32)
    p.row_sum = <const int32_t *>_opt_ptr(row_sum, np.int32)
    p.scale = <const float *>_opt_ptr(scale, np.float32)
    p.mult = <const int32_t *>_opt_ptr(mult, np.int32)
    p.shift = <const int32_t *>_opt_ptr(shift, np.int32)
    p.bias_f = <const float *>_opt_ptr(bias, np.float32)
    p.flo, p.fhi = flo, fhi
    return p


cdef void *_opt_ptr(x, dtype) except? NULL:
    if x is None:
        return NULL
    if not (isinstance(x, np.ndarray) and x.dtype == dtype and x.flags.c_contiguous):
        raise TypeError(f"expected a C-contiguous {np.dtype(dtype)} array")
    return _ptr(x)


def ukernel_output(int kid, cnp.ndarray acc, cnp.ndarray out, int mode, bint out_signed=False, int32_t zy=0,
                   int32_t lo=0, int32_t hi=0, col_add=None, col_zb=None, row_sum=None, scale=None, mult=None,
                   shift=None, bias=None, float flo=0, float fhi=0, cnp.ndarray residual=None, act=None):
    """Kernel `kid`'s output stage on the tile acc[:mc, :nc] into out (mc, nc), C-contiguous
    (rows 0.., columns 0..: per-row and per-column arrays are indexed from 0); `residual`
    (mc, nc) float32 for an fp32 stage's fused Add."""
    cdef const qk_ukernel *k = _kernel(kid)
    if acc.itemsize != 4 or not acc.flags.c_contiguous or not out.flags.c_contiguous:
        raise ValueError("acc: 4-byte values, C-contiguous; out: C-contiguous")
    if out.shape[0] > acc.shape[0] or out.shape[1] > acc.shape[1]:
        raise ValueError("out is larger than acc")
    cdef qk_out_params p = _tile_params(mode, out_signed, zy, lo, hi, col_add, col_zb, row_sum, scale, mult,
                                        shift, bias, flo, fhi)
    if residual is not None:
        if mode != QK_OUT_F32:
            raise ValueError("a residual is fused by the fp32 stage only")
        _set_residual(&p, residual, out.shape[0], out.shape[1])
    if act is not None:
        if mode != QK_OUT_F32 and (mode != QK_OUT_F16 or _fp32_only_act(act)):
            raise ValueError("this activation is fused by the fp32 stage only")
        _set_act(&p, act)
    k.output(out.shape[0], out.shape[1], <const int32_t *>_ptr(acc), acc.shape[1], 0, 0, &p, _ptr(out),
             out.strides[0])
    return out


def ukernel_fused(int kid, const uint8_t[::1] a_panel, const uint8_t[::1] b_panel, size_t K, cnp.ndarray out,
                  int mode, bint out_signed=False, int32_t zy=0, int32_t lo=0, int32_t hi=0, col_add=None,
                  scale=None, bias=None, float flo=0, float fhi=0, cnp.ndarray residual=None, act=None):
    """Kernel `kid`'s fused entry (gemm and output stage in one) on one full tile into out
    (MR, NR or, fp32 kernels, 16 columns), C-contiguous; int32 or fp32 output, no row sums;
    fp32 kernels (QK_OUT_F32): bias, the clamp and an optional residual (MR, nc)."""
    cdef const qk_ukernel *k = _kernel(kid)
    if k.fused == NULL:
        raise ValueError(f"kernel {kid} has no fused entry")
    if (<size_t>a_panel.shape[0] != qk_packed_a_bytes(k.a_pack, k.mr, k.kr, k.mr, K) or
            <size_t>b_panel.shape[0] != qk_packed_b_bytes(k.b_pack, k.nr, k.kr, K, k.nr)):
        raise ValueError("panels do not match this kernel and K")
    if out.shape[0] != k.mr or (out.shape[1] != k.nr and not (mode == QK_OUT_F32 and out.shape[1] == 16)) or \
            not out.flags.c_contiguous:
        raise ValueError("out must be one full C-contiguous tile (fp32: or its first 16 columns)")
    cdef qk_out_params p = _tile_params(mode, out_signed, zy, lo, hi, col_add, None, None, scale, None, None,
                                        bias, flo, fhi)
    if residual is not None:
        _set_residual(&p, residual, out.shape[0], out.shape[1])
    _set_act(&p, act)
    k.fused(_k_groups(k, K), &a_panel[0], &b_panel[0], 0, 0, out.shape[1], &p, _ptr(out), out.strides[0])
    return out


cdef const qk_ukernel *_kernel_of(int kid, int kind) except NULL:
    cdef const qk_ukernel *k = qk_ukernel_get(kid)
    if k == NULL or k.kind != kind:
        raise ValueError(f"no micro-kernel {kid} of kind {kind} in this build")
    return k


def ukernel_dw_sum(int kid, const uint8_t[:, :, ::1] x, cnp.ndarray w, cnp.ndarray init, bint a_signed, size_t c0,
                   bint run=False, cnp.ndarray out=None, cnp.ndarray bias=None, float flo=0, float fhi=0):
    """Depthwise sum kernel `kid` over `count` pixels: x (count, taps, C * elem bytes) holds each
    tap's input pixel; w (taps, C) int16 (int8 kernels) or float32 (fp16 kernels); init (C)
    int32 or float32. Pointer rows per pixel, or (run) one shared row stepping through x, as
    for an interior run. Returns (acc (count, C): sums of channels [c0, end), zeros elsewhere,
    end). fp32 kernels, with `out` (count, C) float32 and `bias` (C) float32: the fp32
    output stage may be fused (bias, clamp to [flo, fhi]) and stored into `out` for
    channels [c0, stored); returns (acc, end, stored)."""
    cdef const qk_ukernel *k = _kernel_of(kid, QK_KIND_DW_SUM)
    cdef size_t count = x.shape[0], taps = x.shape[1]
    cdef size_t elem = 2 if k.dtype == QK_DTYPE_F16 else 4 if k.dtype == QK_DTYPE_F32 else 1
    cdef size_t ch = x.shape[2] // elem
    w_dtype = np.float32 if k.dtype != QK_DTYPE_QS8 else np.int16
    if (w.dtype != w_dtype or init.dtype.itemsize != 4 or not w.flags.c_contiguous or
            (<object>w).shape != (taps, ch) or init.shape[0] != ch or c0 > ch or count == 0 or taps == 0):
        raise ValueError("w (taps, C) of the kernel's weight type, init (C), c0 <= C, count and taps >= 1")
    init = np.ascontiguousarray(init)
    cdef qk_dw_params d
    memset(&d, 0, sizeof(d))
    d.g.cg, d.g.elem = ch, elem
    d.mult, d.taps, d.a_signed, d.dtype = 1, taps, a_signed, k.dtype
    d.w = <const int16_t *>_ptr(w)
    d.wf = <const float *>_ptr(w)
    d.init = <const int32_t *>_ptr(init)
    ptrs = np.empty(count * taps, np.uintp)
    cdef size_t i, t
    cdef const uint8_t **pp = <const uint8_t **>_ptr(ptrs)
    for i in range(count):
        for t in range(taps):
            pp[i * taps + t] = &x[0, t, 0] if run else &x[i, t, 0]
    acc = np.zeros((count, ch), np.int32)
    cdef int32_t[:, ::1] av = acc
    cdef size_t stored, end
    cdef qk_out_params p
    memset(&p, 0, sizeof(p))
    if out is not None:
        if (k.dtype != QK_DTYPE_F32 or out.dtype != np.float32 or not out.flags.c_contiguous or
                (<object>out).shape != (count, ch) or bias is None or bias.dtype != np.float32 or
                not bias.flags.c_contiguous or bias.shape[0] != ch):
            raise ValueError("out (count, C) and bias (C) float32, C-contiguous, for an fp32 kernel")
        p.mode = QK_OUT_F32
        p.bias_f = <const float *>_ptr(bias)
        p.flo, p.fhi = flo, fhi
        d.out, d.c, d.c_stride = &p, _ptr(out), out.strides[0]
    end = k.dw_sum(&d, count, pp, 0 if run else taps, <Py_ssize_t>(taps * ch * elem) if run else 0, c0, &av[0, 0],
                   ch, 0, &stored)
    if out is not None:
        return acc.view(np.float32), end, stored
    return (acc.view(np.float32) if k.dtype != QK_DTYPE_QS8 else acc), end


def ukernel_quantize(int kid, const float[::1] x, const float[::1] scale, const int32_t[::1] zp, bint per_elem,
                     bint out_signed):
    """Quantize row kernel `kid` on x: (q (n) int8/uint8, values done, NaN seen). scale and zp
    hold one value, or n (per_elem)."""
    cdef const qk_ukernel *k = _kernel_of(kid, QK_KIND_QUANTIZE)
    cdef size_t n = x.shape[0]
    if scale.shape[0] < (n if per_elem else 1) or zp.shape[0] < (n if per_elem else 1) or n == 0:
        raise ValueError("scale and zp: one value, or one per value")
    q = np.zeros(n, np.int8 if out_signed else np.uint8)
    cdef int nan = 0
    cdef size_t done = k.quantize(n, &x[0], &scale[0], &zp[0], per_elem, out_signed, _ptr(q), &nan)
    return q, done, nan != 0


def ukernel_dequantize(int kid, cnp.ndarray q, const float[::1] scale, const int32_t[::1] zp, bint per_elem):
    """Dequantize row kernel `kid` on int8/uint8 q (n), C-contiguous: (y (n) float32, values done)."""
    cdef const qk_ukernel *k = _kernel_of(kid, QK_KIND_DEQUANTIZE)
    cdef size_t n = q.shape[0]
    if (q.itemsize != 1 or not q.flags.c_contiguous or n == 0 or
            scale.shape[0] < (n if per_elem else 1) or zp.shape[0] < (n if per_elem else 1)):
        raise ValueError("q: 1-byte values; scale and zp: one value, or one per value")
    y = np.zeros(n, np.float32)
    cdef float[::1] yv = y
    cdef size_t done = k.dequantize(n, _ptr(q), q.dtype == np.int8, &scale[0], &zp[0], per_elem, &yv[0])
    return y, done
include "_copy.pxi"
include "_pool2.pxi"
include "_eltwise.pxi"
include "_resize.pxi"
include "_recurrent.pxi"
include "_dynquant.pxi"
include "_transformer.pxi"
include "_dconv.pxi"
include "_wconv.pxi"
