"""int8 matrix multiplication: numpy-like calls over the native GEMM driver.

``C = requant(sum_k (A[m,k] - za) * (B[k,n] - zb[n]) + bias[n])``: exact int32
accumulation, then fp32 (ONNX QLinearMatMul) or fixed-point (gemmlowp/TFLite)
requantization with a fused clamp; or the raw int32 sums (ONNX MatMulInteger).

The GEMM layer of the package: :class:`PackedWeights` (B packed once) and
:class:`GemmCall` (one prepared configuration, run many times) serve ``matmul`` here,
the int8 convolution (qkernels._conv) and the graph runner alike.
"""
from __future__ import annotations

import math
import threading

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import _dispatch, _native
from ._common import Activation, check_out, check_size
from ._qtensor import QTensor, check_qdtype, check_zero_point
from ._requant import INT32_OUTPUT, OutputSpec, output_spec, requant_terms, result_params

_EMPTY_I32 = np.zeros(1, np.int32)


def _as_int_array(x, name: str) -> np.ndarray:
    if isinstance(x, QTensor):
        raise TypeError(f"{name} is a QTensor; pass its .data or use qkernels.matmul")
    arr = np.asarray(x)
    check_qdtype(arr.dtype, f"{name} dtype")
    return arr


class PackedWeights:
    """B (K, N) of a GEMM, packed once into micro-kernel panels and reused.

    Made by :func:`pack_weights`. Holds the quantization parameters of B (per tensor
    or per column), an optional int32 bias, and one packed copy per ISA path used
    (packed lazily, so a forced ISA switch just packs again). Pickles as its source.
    """

    def __init__(self, b: QTensor, bias=None):
        if not isinstance(b, QTensor):
            raise TypeError(f"pack_weights needs a QTensor, got {type(b).__name__}")
        if b.ndim != 2:
            raise ValueError(f"weights must be 2-D (K, N), got shape {b.shape}")
        if b.axis not in (None, 1):
            raise ValueError("weights may be quantized per tensor or per column (axis=1 or -1), "
                             f"not along axis {b.axis}")
        self.k, self.n = (int(d) for d in b.shape)
        check_size(max(self.k, 1), max(self.n, 1), itemsize=4, what="weights")   # packed size, sums
        self.dtype = b.dtype
        self._params = (b.scale, b.zero_point, b.axis)
        self.signed = b.dtype == np.int8
        self.scale = np.broadcast_to(b.scale, (self.n,)).astype(np.float32)
        self.zero_point = np.broadcast_to(b.zero_point, (self.n,)).astype(np.int32)
        self.bias = None if bias is None else check_bias(bias, self.n)
        self.pairs_128 = _pairs_fit_128(b.data, self.signed)
        self._panels: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}   # (B pack, NR, KR) -> panels, sums
        self._packed: dict[int, tuple[np.ndarray, np.ndarray]] = {}     # kernel id -> its panels, sums
        self._prepared: dict[tuple, GemmCall] = {}   # validated parameters -> prepared call
        self._calls: dict[tuple, GemmCall] = {}      # matmul's fast path: its raw arguments -> call
        self._lock = threading.Lock()
        # The panels of this thread's ISA for many rows are packed now, from the caller's
        # array (not written meanwhile), and are then the only copy kept: other kernels'
        # panels are packed from the weights unpacked from them (``data``).
        kid = _native.select_kernel(_dispatch.isa_index(), 1 << 20, self.pairs_128)
        self._source = None
        if kid >= 0 and self.n:
            self._pack(kid, b.data)
        else:
            self._source = np.array(b.data, copy=True)
            self._source.flags.writeable = False

    shape = property(lambda self: (self.k, self.n))

    @property
    def data(self) -> np.ndarray:
        """The weights (K, N), read-only, rebuilt from the panels (exactly: each panel
        layout stores every value, or the value minus its column's zero point)."""
        if self._source is not None:
            return self._source
        (pack, nr, kr), (panels, _) = next(iter(self._panels.items()))
        kp = -(-max(self.k, 1) // kr) * kr
        stored = panels.view(np.int16 if pack == _native.PACK_I16 else np.int8)
        stored = stored.reshape(-1, kp // kr, nr, kr).transpose(1, 3, 0, 2).reshape(kp, -1)[:self.k, :self.n]
        if pack == _native.PACK_I16:
            out = (stored + self.zero_point).astype(self.dtype)
        else:   # int8 as stored; uint8 stored minus 128
            out = stored.astype(np.int8) if self.signed else (stored.view(np.uint8) ^ np.uint8(0x80))
        out = np.ascontiguousarray(out, self.dtype)
        out.flags.writeable = False
        return out

    @property
    def qtensor(self) -> QTensor:
        """The weights as the QTensor they were packed from (rebuilt: ``data``)."""
        scale, zero_point, axis = self._params
        return QTensor(self.data, scale, zero_point, axis)

    @property
    def nbytes(self) -> int:
        """Bytes held: the panels and column sums (and the source, where no kernel packed)."""
        return sum(p.nbytes + s.nbytes for p, s in self._panels.values()) + \
            (0 if self._source is None else self._source.nbytes)

    def __repr__(self):
        kernels = sorted(_native.kernel_info(kid)[0] for kid in self._packed)
        return f"PackedWeights(K={self.k}, N={self.n}, dtype={self.dtype}, packed_for={kernels})"

    def __reduce__(self):
        return (PackedWeights, (self.qtensor, self.bias))

    def packed_for(self, kid: int) -> tuple[np.ndarray, np.ndarray]:
        """(panels, column sums) for GEMM kernel ``kid``, packed on first use."""
        got = self._packed.get(kid)
        if got is None:
            with self._lock:
                got = self._packed.get(kid)
                if got is None:
                    got = self._pack(kid, None)
        return got

    def _pack(self, kid: int, source) -> tuple[np.ndarray, np.ndarray]:
        """Kernel ``kid``'s panels (kernels of one B layout share them), packed from
        ``source`` (default: ``data``); the caller holds the lock or is __init__."""
        info = _native.kernel_info(kid)
        key = (info[6], info[3], info[4])
        got = self._panels.get(key)
        if got is None:
            got = _native.pack_b(kid, self.data if source is None else source, self.signed, self.zero_point)
            self._panels[key] = got
        self._packed[kid] = got
        return got

    def prepare(self, rows: int, a_signed: bool, za: int, sa: float, spec: OutputSpec, bias=None,
                isa: int | None = None) -> GemmCall:
        """The call computing ``spec``'s output of A (``rows`` rows: they pick the
        micro-kernel; int8 if ``a_signed`` else uint8; zero point ``za``, scale ``sa``)
        times these weights, on ISA path ``isa`` (an index; default: this thread's).
        Without ``bias`` the weights' own bias applies and the call is kept here for the
        next caller; a ``bias`` (from :func:`check_bias`) makes a fresh call."""
        kid = _native.select_kernel(_dispatch.isa_index() if isa is None else isa, rows, self.pairs_128)
        if bias is not None:
            return GemmCall(self, kid, a_signed, za, sa, bias, spec)
        key = (kid, a_signed, za, float(sa), spec)
        call = self._prepared.get(key)
        if call is None:
            call = GemmCall(self, kid, a_signed, za, sa, self.bias, spec)
            if len(self._prepared) > 64:
                self._prepared.clear()
            self._prepared[key] = call
        return call


class GemmCall:
    """One GEMM configuration prepared for repeated runs: the packed B of one
    micro-kernel, A's parameters and the output stage (bias and zero points folded into
    per-column terms, requantization terms, clamp, dtype). Made by
    :meth:`PackedWeights.prepare`; ``run`` goes straight to the native driver.
    """
    __slots__ = ("kid", "packed", "n", "a_signed", "za", "col_add", "col_zb", "need_row_sum", "mode",
                 "out_signed", "zy", "lo", "hi", "scale", "mult", "shift", "out_dtype", "result_params")

    def __init__(self, pw: PackedWeights, kid: int, a_signed: bool, za: int, sa, bias, spec: OutputSpec):
        a_pack, b_pack = _native.kernel_info(kid)[5:7]
        packed, col_sum = pw.packed_for(kid)
        b = np.zeros(pw.n, np.int64) if bias is None else bias.astype(np.int64)
        # int8 panels hold uint8 values minus 128: shift the zero points alike.
        zb_s = pw.zero_point.astype(np.int64) - (0 if pw.signed or b_pack == _native.PACK_I16 else 128)
        if b_pack == _native.PACK_I16:
            # Both zero points were subtracted while packing: the sum is already exact.
            col_add, zb_s = b, np.zeros(1, np.int64)
        elif a_pack == _native.PACK_I16:
            # A was zero-folded, B was not: subtract zb * sum_k(a - za) per row.
            col_add = b
        else:
            # A stored as int8 (uint8 minus 128) or as uint8 (int8 plus 128): shift za alike.
            if a_pack == _native.PACK_U8:
                za_s = za + (128 if a_signed else 0)
            else:
                za_s = za - (0 if a_signed else 128)
            col_add = b - za_s * col_sum.astype(np.int64) + pw.k * za_s * zb_s
        need_row = bool(np.any(zb_s != 0))
        self.kid, self.packed, self.n, self.a_signed, self.za = kid, packed, pw.n, a_signed, za
        # int32 wrap-around, as the hardware sums wrap
        self.col_add = np.ascontiguousarray(((col_add + 2**31) % 2**32 - 2**31).astype(np.int32))
        self.col_zb = zb_s.astype(np.int32) if need_row else _EMPTY_I32
        self.need_row_sum = need_row
        self.mode, self.out_dtype, self.out_signed = spec.mode, spec.dtype, spec.dtype == np.int8
        self.zy, self.lo, self.hi = spec.zero_point, spec.lo, spec.hi
        self.scale, self.mult, self.shift = requant_terms(spec.mode, sa, pw.scale, spec.scale)
        self.result_params = result_params(spec)

    def run(self, a, out: np.ndarray, bind: bool = False, post=None):
        """out (M, N) = the output stage of ``a`` (M, K) times B, returned. ``a``: a
        matrix of A's dtype (any strides) or a ``_native.ConvSource`` (implicit patches);
        ``out``: rows of N contiguous, any row stride. Unchecked: the caller validated both.
        ``bind``: the call bound to these arrays (``_native.BoundGemm``), not run.
        ``post``: a fused QLinearAdd of each stored tile (``_native.gemm``)."""
        return _native.gemm(self.kid, a, self.a_signed, self.za, self.packed, self.n, self.col_add, self.col_zb,
                            self.need_row_sum, self.mode, self.out_signed, self.zy, self.lo, self.hi, self.scale,
                            self.mult, self.shift, out, _dispatch.get_num_threads(), bind, post)


def _pairs_fit_128(b: np.ndarray, signed: bool) -> bool:
    """Whether every pair (b[2i], b[2i+1]) along K, as int8 panels store it (uint8
    minus 128), has |b0| + |b1| <= 128: then uint8 x int8 products summed in pairs fit
    int16 (255 * 128 < 32768), which makes vpmaddubsw exact. True for 7-bit weights."""
    k, n = b.shape
    if b.size == 0:                                   # no pairs (and no loop over a huge empty K)
        return True
    step = max(2, (1 << 16) // max(n, 1) // 2 * 2)   # even row blocks: small temporaries
    for k0 in range(0, k, step):                      # (a model's 1.3 MB FC layer made 8 MB)
        v = b[k0:k0 + step].astype(np.int16)
        if not signed:
            v -= 128
        np.abs(v, out=v)
        pairs = v[1::2]                              # an odd last row pairs with 0: |v| <= 128
        if pairs.size and (v[0:2 * len(pairs):2] + pairs).max() > 128:
            return False
    return True


def check_bias(bias, n: int) -> np.ndarray:
    b = np.asarray(bias)
    if b.dtype.kind not in "iu":
        raise TypeError(f"bias must be int32 (at scale a_scale*b_scale), got {b.dtype}")
    if b.shape not in ((n,), ()):
        raise ValueError(f"bias must have shape ({n},), got {b.shape}")
    if np.any(b.astype(np.int64) > np.iinfo(np.int32).max) or np.any(b.astype(np.int64) < np.iinfo(np.int32).min):
        raise ValueError("bias values must fit in int32")
    return np.ascontiguousarray(np.broadcast_to(b, (n,)), dtype=np.int32)


def pack_weights(b: QTensor, bias: ArrayLike | None = None) -> PackedWeights:
    """Quantized ``b`` (QTensor (K, N), per tensor or per column) packed for reuse."""
    return PackedWeights(b, bias)


def _run(a_data: np.ndarray, za: int, sa, b, bias, spec: OutputSpec, out, call_key=None) -> np.ndarray:
    """Shared path of matmul and matmul_integer: broadcasting, packing, output."""
    isa_idx = _dispatch.isa_index()
    a_signed = a_data.dtype == np.int8
    squeeze_m = a_data.ndim == 1
    if squeeze_m:
        a_data = a_data[None, :]
    if a_data.ndim == 0:
        raise ValueError("matmul: input operand 0 does not have enough dimensions (needs at least 1)")
    K = a_data.shape[-1]
    if isinstance(b, PackedWeights):
        b_batch, squeeze_n = (), False
        if b.k != K:
            raise ValueError(f"matmul: shapes {a_data.shape} and {b.shape} are not aligned: "
                             f"{K} (dim -1) != {b.k} (dim 0)")
        N = b.n
        pws = None
    else:
        bq: QTensor = b
        bdata = bq.data
        if bdata.ndim == 0:
            raise ValueError("matmul: input operand 1 does not have enough dimensions (needs at least 1)")
        squeeze_n = bdata.ndim == 1
        if squeeze_n:
            bq = QTensor(bdata[:, None], bq.scale, bq.zero_point, None)
            bdata = bq.data
        if bdata.shape[-2] != K:
            raise ValueError(f"matmul: shapes {a_data.shape} and {bdata.shape} are not aligned: "
                             f"{K} (dim -1) != {bdata.shape[-2]} (dim -2)")
        N = bdata.shape[-1]
        b_batch = bdata.shape[:-2]
        if bq.axis is not None and bq.axis != bdata.ndim - 1:
            raise ValueError("weights may be quantized per tensor or per column (last axis) only")
        pws = bq
    bias_arr = None if bias is None else check_bias(bias, N)
    M = a_data.shape[-2]
    try:
        batch = np.broadcast_shapes(a_data.shape[:-2], b_batch) if b_batch else a_data.shape[:-2]
    except ValueError:
        raise ValueError(f"matmul: batch dimensions {a_data.shape[:-2]} and {b_batch} do not broadcast") from None
    full_shape = (*batch, M, N)
    out_dtype = spec.dtype
    check_size(*full_shape, itemsize=out_dtype.itemsize)
    check_size(M, K, itemsize=2, what="A")
    result_shape = full_shape
    if squeeze_m:
        result_shape = result_shape[:-2] + result_shape[-1:]
    if squeeze_n:
        result_shape = result_shape[:-1]
    if out is not None:
        check_out(out, result_shape, out_dtype, a=a_data, b=None if pws is None else pws.data, bias=bias)
        res = out.reshape(full_shape)
    else:
        res = np.empty(full_shape, out_dtype)
    if pws is not None and not b_batch:   # one B for every batch element: pack once, fold batch into M
        b, pws = PackedWeights(pws), None

    if pws is None:                      # one packed B: fold A's batch into M
        pw = b
        a2 = a_data.reshape(math.prod(a_data.shape[:-1]), K) if a_data.ndim > 2 else a_data   # (-1, 0) fails
        if a2.shape[0] * N and res.size:
            call = pw.prepare(a2.shape[0], a_signed, za, sa, spec, bias_arr, isa_idx)
            call.run(a2, res.reshape(-1, N))
            if call_key is not None and bias is None and call_key[-1] == call.kid:
                if len(pw._calls) > 64:
                    pw._calls.clear()
                pw._calls[call_key] = call
    elif res.size:
        a_b = np.broadcast_to(a_data, (*batch, M, K))
        b_b = np.broadcast_to(pws.data, (*batch, K, N))
        for idx in np.ndindex(*batch):
            pw = PackedWeights(QTensor(b_b[idx], pws.scale, pws.zero_point, None if pws.axis is None else 1))
            if M * N * K:
                pw.prepare(M, a_signed, za, sa, spec, bias_arr, isa_idx).run(a_b[idx], res[idx])
    result = res.reshape(result_shape)
    return out if out is not None else result


def matmul(a: QTensor, b: QTensor | PackedWeights, bias: ArrayLike | None = None,
           out_scale: float | None = None, out_zero_point: int = 0, out_dtype: DTypeLike = None,
           activation: Activation = None, requant: str = "fp32",
           out: np.ndarray | None = None) -> QTensor | np.ndarray:
    """int8 matrix product: :func:`qkernels.matmul` on a QTensor ``a`` (documented there;
    positional here, so the public call hands over without the cost of keywords)."""
    key = None
    if type(b) is PackedWeights and type(a) is QTensor and bias is None and a._axis is None:
        # Fast path for the repeated call (a layer run again): parameters validated once
        # are found with their prepared call in the weights' cache; about 2 us of Python.
        data = a._data   # the slots, not the properties: this path counts microseconds
        if data.ndim == 2 and data.shape[1] == b.k:
            try:
                key = (a._params, out_scale, out_zero_point, out_dtype, activation, requant,
                       _native.select_kernel(_dispatch.isa_index(), data.shape[0], b.pairs_128))
                call = b._calls.get(key)
            except TypeError:   # unhashable activation or parameters: take the full path
                call = key = None
            if call is not None:
                shape = (data.shape[0], b.n)
                dt = call.out_dtype
                if out is None:
                    res = np.empty(shape, dt)
                elif type(out) is np.ndarray and out.shape == shape and out.dtype == dt \
                        and out.flags.c_contiguous and out.flags.writeable and not np.may_share_memory(out, data):
                    res = out
                else:
                    res = check_out(out, shape, dt, a=data)   # raises with the reason
                call.run(data, res)
                params = call.result_params
                return res if params is None else QTensor._trusted(res, *params)
    if not isinstance(a, QTensor):
        raise TypeError(f"a must be a QTensor (see qkernels.quantize), got {type(a).__name__}")
    if a.axis is not None:
        raise ValueError("a must be quantized per tensor (axis=None)")
    if not isinstance(b, (QTensor, PackedWeights)):
        raise TypeError(f"b must be a QTensor or PackedWeights, got {type(b).__name__}")
    spec = output_spec("matmul", a.dtype, out, out_dtype, out_scale, out_zero_point, activation, requant)
    data = _run(a.data, int(a.zero_point), float(a.scale), b, bias, spec, out, key)
    params = result_params(spec)
    return data if params is None else QTensor._trusted(data, *params)


def matmul_integer(a: ArrayLike, b: ArrayLike, a_zero_point: int = 0, b_zero_point: ArrayLike = 0, *,
                   out: np.ndarray | None = None) -> np.ndarray:
    """ONNX MatMulInteger: ``sum_k (a - a_zero_point) * (b - b_zero_point)`` in int32.

    ``a`` (..., M, K) and ``b`` (..., K, N) are uint8/int8 arrays; ``a_zero_point``
    is a scalar, ``b_zero_point`` a scalar or one per column (N,). Sums wrap modulo
    2^32 like int32 arithmetic (only possible for K above about 33,000).
    """
    a = _as_int_array(a, "a")
    b = _as_int_array(b, "b")
    if np.ndim(a_zero_point):
        raise ValueError("a_zero_point must be a scalar (per-row zero points are not supported)")
    za = int(check_zero_point(a_zero_point, a.dtype, "a_zero_point"))
    if b.ndim == 0 or a.ndim == 0:
        raise ValueError("matmul_integer: operands must have at least one dimension")
    n = b.shape[-1] if b.ndim >= 2 else 1
    zb = check_zero_point(b_zero_point, b.dtype, "b_zero_point", n)
    if zb.ndim and b.ndim < 2:
        raise ValueError("b_zero_point per column needs b of at least 2 dimensions (K, N)")
    bq = QTensor(b, np.ones(n, np.float32) if zb.ndim else 1.0, zb, axis=-1 if zb.ndim else None)
    return _run(a, za, 1.0, bq, None, INT32_OUTPUT, out)


def matmul_real(a, b) -> np.ndarray:
    """``a @ b`` for QTensors: exact int32 product, returned as float32 real values."""
    if not isinstance(a, QTensor) or not isinstance(b, (QTensor, PackedWeights)):
        return NotImplemented
    if a.axis is not None:
        raise ValueError("the left operand of @ must be quantized per tensor")
    acc = matmul(a, b, out_dtype=np.int32)
    return (acc.astype(np.float32) * (np.float32(a.scale) * b.scale)).astype(np.float32)


QTensor._matmul = staticmethod(matmul_real)   # QTensor's ``@`` (qkernels._qtensor leaves it to this layer)
