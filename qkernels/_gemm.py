"""int8 matrix multiplication: numpy-like calls over the native GEMM driver.

``C = requant(sum_k (A[m,k] - za) * (B[k,n] - zb[n]) + bias[n])``: exact int32
accumulation, then fp32 (ONNX QLinearMatMul) or fixed-point (gemmlowp/TFLite)
requantization with a fused clamp; or the raw int32 sums (ONNX MatMulInteger).
"""
from __future__ import annotations

import math
import sys
import threading
from typing import Tuple, Union

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import _dispatch, _native
from ._qtensor import QTensor, as_dtype, check_choice, check_qdtype, check_scale, check_zero_point, int_range
from ._qtensor import check_out as _check_out

Activation = Union[None, str, Tuple[float, float]]
_REQUANT_MODES = {"fp32": _native.OUT_FP32, "fixedpoint": _native.OUT_FIXEDPOINT}
_EMPTY_I32 = np.zeros(1, np.int32)
_EMPTY_F32 = np.zeros(1, np.float32)


def _as_int_array(x, name: str) -> np.ndarray:
    if isinstance(x, QTensor):
        raise TypeError(f"{name} is a QTensor; pass its .data or use qkernels.matmul")
    arr = np.asarray(x)
    check_qdtype(arr.dtype, f"{name} dtype")
    return arr


def _check_size(*dims: int, itemsize: int = 1, what: str = "result") -> None:
    total = itemsize
    for d in dims:
        total *= int(d)
    if total > sys.maxsize // 4:
        raise ValueError(f"{what} of shape {tuple(int(d) for d in dims)} is too large to address")


def rows_view(x: np.ndarray) -> np.ndarray | None:
    """``x`` (..., C) as the matrix (rows, C) without a copy, when its leading
    dimensions lie at one row stride; None otherwise. Dimensions of size 1 are skipped:
    their stride is arbitrary (numpy leaves any value there)."""
    dims = [(n, s) for n, s in zip(x.shape[:-1], x.strides[:-1]) if n != 1]
    if any(s0 != s1 * n1 for (_, s0), (n1, s1) in zip(dims, dims[1:])):
        return None
    rows = math.prod(n for n, _ in dims)
    row_stride = dims[-1][1] if dims else x.strides[-1] * x.shape[-1]
    return np.lib.stride_tricks.as_strided(x, (rows, x.shape[-1]), (row_stride, x.strides[-1]), writeable=False)


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
        _check_size(max(self.k, 1), max(self.n, 1), itemsize=4, what="weights")   # packed size, sums
        # Own a read-only copy: panels are packed lazily per kernel, and the kernel choice
        # (pairs_128) must describe the very values that get packed.
        data = np.array(b.data, copy=True)
        data.flags.writeable = False
        b = QTensor(data, b.scale, b.zero_point, b.axis)
        self.qtensor = b
        self.signed = b.dtype == np.int8
        self.scale = np.broadcast_to(b.scale, (self.n,)).astype(np.float32)
        self.zero_point = np.broadcast_to(b.zero_point, (self.n,)).astype(np.int32)
        self.bias = None if bias is None else _check_bias(bias, self.n)
        self.pairs_128 = _pairs_fit_128(b.data, self.signed)
        self._packed: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._plans: dict[tuple, _Plan] = {}
        self._calls: dict[tuple, tuple] = {}   # matmul's fast path: call arguments -> plan
        self._lock = threading.Lock()

    shape = property(lambda self: (self.k, self.n))
    dtype = property(lambda self: self.qtensor.dtype)

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
                    got = _native.pack_b(kid, self.qtensor.data, self.signed, self.zero_point)
                    self._packed[kid] = got
        return got


def _pairs_fit_128(b: np.ndarray, signed: bool) -> bool:
    """Whether every pair (b[2i], b[2i+1]) along K, as int8 panels store it (uint8
    minus 128), has |b0| + |b1| <= 128: then uint8 x int8 products summed in pairs fit
    int16 (255 * 128 < 32768), which makes vpmaddubsw exact. True for 7-bit weights."""
    v = np.abs(b.astype(np.int16) - (0 if signed else 128))
    if v.shape[0] % 2:
        v = np.concatenate([v, np.zeros((1,) + v.shape[1:], v.dtype)])
    return bool(v.size == 0 or (v[0::2] + v[1::2]).max() <= 128)


def _check_bias(bias, n: int) -> np.ndarray:
    b = np.asarray(bias)
    if b.dtype.kind not in "iu":
        raise TypeError(f"bias must be int32 (at scale a_scale*b_scale), got {b.dtype}")
    if b.shape not in ((n,), ()):
        raise ValueError(f"bias must have shape ({n},), got {b.shape}")
    if np.any(b.astype(np.int64) > np.iinfo(np.int32).max) or np.any(b.astype(np.int64) < np.iinfo(np.int32).min):
        raise ValueError("bias values must fit in int32")
    return np.ascontiguousarray(np.broadcast_to(b, (n,)), dtype=np.int32)


def pack_weights(b, bias: ArrayLike | None = None):
    """Pack weights for reuse: quantized ``b`` (QTensor (K, N), per tensor or per
    column) -> PackedWeights; a float16 array (K, N) -> PackedWeightsF16."""
    if isinstance(b, np.ndarray) and b.dtype == np.float16:
        from ._f16 import PackedWeightsF16
        return PackedWeightsF16(b, bias)
    return PackedWeights(b, bias)


def check_f16_call(op: str, out_scale, out_zero_point, out_dtype, requant) -> None:
    """fp16 calls take no quantization keywords (TypeError otherwise)."""
    if out_scale is not None or not (out_zero_point is None or np.ndim(out_zero_point) == 0 and out_zero_point == 0) \
            or not (isinstance(requant, str) and requant == "fp32") or \
            (out_dtype is not None and as_dtype(out_dtype, "out_dtype") != np.float16):
        raise TypeError(f"{op} on float16 operands returns float16 and takes no out_scale, out_zero_point, "
                        "requant or other out_dtype")


def _fixedpoint_params(real_scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q31 multipliers and shifts (positive = left) with real ≈ mult * 2^(shift-31)."""
    s = np.asarray(real_scale, np.float64)
    mant, exp = np.frexp(s)
    mult = np.floor(mant * 2.0**31 + 0.5).astype(np.int64)   # mant > 0: half away from zero
    carry = mult == 2**31
    mult[carry] //= 2
    exp = exp + carry
    if np.any(exp > 30):
        raise ValueError("fixed-point requantization needs a_scale*b_scale/out_scale < 2^30")
    tiny = exp < -31
    mult[tiny] = 0
    exp[tiny] = 0
    return mult.astype(np.int32), exp.astype(np.int32)


def activation_range(activation: Activation) -> tuple[float, float]:
    """(min, max) in real units of a fused activation: None, "relu", "relu6" or (min, max)."""
    if activation is None:
        return -np.inf, np.inf
    if isinstance(activation, str):
        name = activation.lower()
        if name == "relu":
            return 0.0, np.inf
        if name == "relu6":
            return 0.0, 6.0
        raise ValueError(f"activation must be None, 'relu', 'relu6' or (min, max), got {activation!r}")
    try:
        amin, amax = (float(v) for v in activation)
    except (TypeError, ValueError):
        raise ValueError(f"activation must be None, 'relu', 'relu6' or (min, max), got {activation!r}") from None
    if np.isnan(amin) or np.isnan(amax) or amin > amax:
        raise ValueError(f"activation range must be (min, max) with min <= max, got {activation!r}")
    return amin, amax


def _clamp_range(activation, out_dtype, out_scale: float, zy: int) -> tuple[int, int]:
    lo, hi = int_range(out_dtype)
    amin, amax = activation_range(activation)

    def q(v: float) -> int:
        if np.isinf(v):
            return hi if v > 0 else lo
        return int(np.clip(np.rint(np.float32(v) / np.float32(out_scale)) + zy, lo, hi))

    return q(amin), q(amax)


class _Plan:
    """Per-column output terms of one (weights, A parameters, output) combination."""
    __slots__ = ("kid", "col_add", "col_zb", "need_row_sum", "mode", "scale", "mult", "shift", "zy", "lo",
                 "hi", "out_signed")


def _make_plan(pw: PackedWeights, kid: int, a_signed: bool, za: int, sa, bias, mode: int,
               out_scale, zy: int, lo: int, hi: int, out_signed: bool) -> _Plan:
    a_pack, b_pack = _native.kernel_info(kid)[5:7]
    _, col_sum = pw.packed_for(kid)
    b = np.zeros(pw.n, np.int64) if bias is None else bias.astype(np.int64)
    # int8 panels hold uint8 values minus 128: shift the zero points alike.
    zb_s = pw.zero_point.astype(np.int64) - (0 if pw.signed or b_pack == _native.PACK_I16 else 128)
    plan = _Plan()
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
    # int32 wrap-around, as the hardware sums wrap
    plan.col_add = np.ascontiguousarray(((col_add + 2**31) % 2**32 - 2**31).astype(np.int32))
    plan.col_zb = zb_s.astype(np.int32) if need_row else _EMPTY_I32
    plan.need_row_sum = need_row
    plan.mode = mode
    plan.kid = kid
    plan.zy, plan.lo, plan.hi, plan.out_signed = zy, lo, hi, out_signed
    plan.scale, plan.mult, plan.shift = requant_terms(mode, sa, pw.scale, out_scale)
    return plan


def requant_terms(mode: int, sa, sb: np.ndarray, out_scale) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-column (scale, multiplier, shift) arrays of the output stage for ``mode``."""
    if mode == _native.OUT_FP32:
        # float32, in ONNX Runtime's order: (sa * sb) / sy
        with np.errstate(over="ignore", under="ignore"):
            scale = np.ascontiguousarray((np.float32(sa) * sb) / np.float32(out_scale), np.float32)
        if not np.all(np.isfinite(scale)):
            raise ValueError("a_scale * b_scale / out_scale overflows float32; no output can represent it")
        return scale, _EMPTY_I32, _EMPTY_I32
    if mode == _native.OUT_FIXEDPOINT:
        real = (np.float64(sa) * sb.astype(np.float64)) / np.float64(out_scale)
        return (_EMPTY_F32, *_fixedpoint_params(real))
    return _EMPTY_F32, _EMPTY_I32, _EMPTY_I32


def _gemm2d(a: np.ndarray, a_signed: bool, za: int, pw: PackedWeights, plan: _Plan,
            out: np.ndarray) -> np.ndarray:
    packed, _ = pw.packed_for(plan.kid)
    return _native.gemm(plan.kid, a, a_signed, za, packed, pw.n, plan.col_add,
                        plan.col_zb, plan.need_row_sum, plan.mode, plan.out_signed, plan.zy,
                        plan.lo, plan.hi, plan.scale, plan.mult, plan.shift, out,
                        _dispatch.get_num_threads())


def _run(a_data: np.ndarray, za: int, sa, b, bias, mode: int, out_scale, zy: int, lo: int, hi: int,
         out_dtype: np.dtype, out, call_key=None) -> np.ndarray:
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
    bias_arr = None if bias is None else _check_bias(bias, N)
    M = a_data.shape[-2]
    try:
        batch = np.broadcast_shapes(a_data.shape[:-2], b_batch) if b_batch else a_data.shape[:-2]
    except ValueError:
        raise ValueError(f"matmul: batch dimensions {a_data.shape[:-2]} and {b_batch} do not broadcast") from None
    full_shape = (*batch, M, N)
    _check_size(*full_shape, itemsize=out_dtype.itemsize)
    _check_size(M, K, itemsize=2, what="A")
    result_shape = full_shape
    if squeeze_m:
        result_shape = result_shape[:-2] + result_shape[-1:]
    if squeeze_n:
        result_shape = result_shape[:-1]
    if out is not None:
        _check_out(out, result_shape, out_dtype, a=a_data, b=None if pws is None else pws.data, bias=bias)
        res = out.reshape(full_shape)
    else:
        res = np.empty(full_shape, out_dtype)
    out_signed = out_dtype == np.int8
    if pws is not None and not b_batch:   # one B for every batch element: pack once, fold batch into M
        b, pws = PackedWeights(pws), None

    if pws is None:                      # one packed B: fold A's batch into M
        pw = b
        if bias_arr is None:
            bias_arr = pw.bias
        a2 = a_data.reshape(math.prod(a_data.shape[:-1]), K) if a_data.ndim > 2 else a_data   # (-1, 0) fails
        if a2.shape[0] * N and res.size:
            kid = _native.select_kernel(isa_idx, a2.shape[0], pw.pairs_128)
            plan = _plan_for(pw, kid, a_signed, za, sa, bias_arr, bias is None, mode, out_scale, zy, lo, hi,
                             out_signed)
            _gemm2d(a2, a_signed, za, pw, plan, res.reshape(-1, N))
            if call_key is not None and bias is None and call_key[-1] == kid:
                if len(pw._calls) > 64:
                    pw._calls.clear()
                pw._calls[call_key] = (plan, out_dtype, *_result_params(out_scale, zy, out_dtype))
    elif res.size:
        a_b = np.broadcast_to(a_data, (*batch, M, K))
        b_b = np.broadcast_to(pws.data, (*batch, K, N))
        for idx in np.ndindex(*batch):
            pw = PackedWeights(QTensor(b_b[idx], pws.scale, pws.zero_point, None if pws.axis is None else 1))
            if M * N * K:
                plan = _make_plan(pw, _native.select_kernel(isa_idx, M, pw.pairs_128), a_signed, za, sa, bias_arr, mode,
                                  out_scale, zy, lo, hi, out_signed)
                _gemm2d(a_b[idx], a_signed, za, pw, plan, res[idx])
    result = res.reshape(result_shape)
    return out if out is not None else result


def _result_params(out_scale, zy: int, out_dtype=None) -> tuple:
    """The output QTensor's 0-d scale and zero point (and its call-cache key), made
    once per cached call."""
    scale = np.asarray(np.float32(out_scale))
    zero_point = np.asarray(np.int32(zy))
    scale.flags.writeable = zero_point.flags.writeable = False   # shared by every result of the call
    key = None if out_dtype is None else (np.dtype(out_dtype).char, int(zy), float(scale))
    return scale, zero_point, key


def _plan_for(pw, kid, a_signed, za, sa, bias_arr, cacheable, mode, out_scale, zy, lo, hi, out_signed):
    if not cacheable:
        return _make_plan(pw, kid, a_signed, za, sa, bias_arr, mode, out_scale, zy, lo, hi, out_signed)
    key = (kid, a_signed, za, float(sa), mode, float(out_scale), zy, lo, hi, out_signed)
    plan = pw._plans.get(key)
    if plan is None:
        plan = _make_plan(pw, kid, a_signed, za, sa, bias_arr, mode, out_scale, zy, lo, hi, out_signed)
        if len(pw._plans) > 64:
            pw._plans.clear()
        pw._plans[key] = plan
    return plan


def matmul(a: QTensor, b: QTensor | PackedWeights, *, bias: ArrayLike | None = None,
           out_scale: float | None = None, out_zero_point: int = 0, out_dtype: DTypeLike = None,
           activation: Activation = None, requant: str = "fp32",
           out: np.ndarray | None = None) -> QTensor | np.ndarray:
    """Quantized matrix product, like ``numpy.matmul`` on the real values.

    Parameters
    ----------
    a : QTensor, shape (..., M, K) or (K,), uint8 or int8, per-tensor parameters.
    b : QTensor (..., K, N) or (K,), int8 or uint8, per tensor or per column (last
        axis); or PackedWeights (K, N) from :func:`pack_weights`. Batch dimensions
        broadcast like ``numpy.matmul``.
    bias : int32 array (N,) at scale ``a.scale * b.scale`` (default: the bias given
        to :func:`pack_weights`, else none).
    out_scale, out_zero_point : output quantization; ``out_scale`` is required unless
        ``out_dtype`` is int32.
    out_dtype : np.uint8 or np.int8 (default: a's dtype), or np.int32 for the raw
        accumulators plus bias (ONNX MatMulInteger with bias).
    activation : None, "relu", "relu6" or (min, max) in real units, fused as a clamp.
    requant : "fp32" (ONNX QLinearMatMul: float32 multiply, round half to even) or
        "fixedpoint" (int32 multiplier and shift, gemmlowp/TFLite rounding).
    out : optional C-contiguous output array of the result's shape and dtype, not
        overlapping an input (ValueError).

    Returns a QTensor (quantized output) or an int32 ndarray (``out_dtype=np.int32``).
    Inputs of any strides and alignment are read in place (no copy).

    fp16: ``a`` and ``b`` float16 arrays (or ``b`` from ``pack_weights`` of one), ``bias``
    a float array (N,), ``activation`` as above; returns float16 (see docs/api.md, "fp16",
    for the accuracy contract). Quantization keywords do not apply.
    """
    if not isinstance(a, QTensor):
        from . import _f16
        if isinstance(b, (QTensor, PackedWeights)):
            raise TypeError(f"matmul: a is {type(a).__name__} but b is quantized; quantize a (QTensor) "
                            "or pass float16 arrays for both")
        check_f16_call("matmul", out_scale, out_zero_point, out_dtype, requant)
        return _f16.matmul(a, b, bias, activation, out)
    key = None
    if type(b) is PackedWeights and type(a) is QTensor and bias is None and a._axis is None:
        # Fast path for the repeated call (a layer run again): parameters validated once
        # are found with their plan in the weights' cache; about 2 us of Python.
        data = a._data   # the slots, not the properties: this path counts microseconds
        if data.ndim == 2 and data.shape[1] == b.k:
            try:
                key = (a._params, out_scale, out_zero_point, out_dtype, activation, requant,
                       _native.select_kernel(_dispatch.isa_index(), data.shape[0], b.pairs_128))
                hit = b._calls.get(key)
            except TypeError:   # unhashable activation or parameters: take the full path
                hit = key = None
            if hit is not None:
                plan, dt, sy, zy, params = hit
                shape = (data.shape[0], b.n)
                if out is None:
                    res = np.empty(shape, dt)
                elif type(out) is np.ndarray and out.shape == shape and out.dtype == dt \
                        and out.flags.c_contiguous and out.flags.writeable and not np.may_share_memory(out, data):
                    res = out
                else:
                    res = _check_out(out, shape, dt, a=data)   # raises with the reason
                _gemm2d(data, a._params[0] == "b", a._params[1], b, plan, res)
                return res if plan.mode == _native.OUT_INT32 else QTensor._trusted(res, sy, zy, params)
    if not isinstance(a, QTensor):
        raise TypeError(f"a must be a QTensor (see qkernels.quantize), got {type(a).__name__}")
    if a.axis is not None:
        raise ValueError("a must be quantized per tensor (axis=None)")
    if not isinstance(b, (QTensor, PackedWeights)):
        raise TypeError(f"b must be a QTensor or PackedWeights, got {type(b).__name__}")
    out_dtype, mode, sy, zy, lo, hi = output_spec("matmul", a.dtype, out, out_dtype, out_scale, out_zero_point,
                                                  activation, requant)
    data = _run(a.data, int(a.zero_point), float(a.scale), b, bias, mode, sy, zy, lo, hi, out_dtype, out, key)
    if mode == _native.OUT_INT32:
        return data
    return QTensor._trusted(data, *_result_params(sy, zy, out_dtype))


def output_spec(op: str, default_dtype, out, out_dtype, out_scale, out_zero_point, activation, requant):
    """Validate the output keywords shared by matmul and conv2d.

    Returns (out_dtype, mode, out_scale, out_zero_point, lo, hi): the raw int32 mode,
    or a requantization mode with its clamp range (activation fused)."""
    if out_dtype is None:
        out_dtype = out.dtype if out is not None else default_dtype
    out_dtype = as_dtype(out_dtype, "out_dtype")
    if out_dtype == np.int32:
        if activation is not None or out_scale is not None:
            raise ValueError("int32 output takes no out_scale or activation")
        return out_dtype, _native.OUT_INT32, 1.0, 0, 0, 0
    check_qdtype(out_dtype, "out_dtype")
    if out_scale is None:
        raise TypeError(f"{op} needs out_scale= for a quantized output (or out_dtype=np.int32)")
    sy = check_scale(out_scale, "out_scale")
    if sy.ndim:
        raise ValueError("out_scale must be a scalar")
    if np.ndim(out_zero_point):
        raise ValueError("out_zero_point must be a scalar")
    zy = int(check_zero_point(out_zero_point, out_dtype, "out_zero_point"))
    check_choice(requant, tuple(_REQUANT_MODES), "requant")
    lo, hi = _clamp_range(activation, out_dtype, float(sy), zy)
    return out_dtype, _REQUANT_MODES[requant], float(sy), zy, lo, hi


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
    return _run(a, za, 1.0, bq, None, _native.OUT_INT32, 1.0, 0, 0, 0, np.dtype(np.int32), out)


def matmul_real(a, b) -> np.ndarray:
    """``a @ b`` for QTensors: exact int32 product, returned as float32 real values."""
    if not isinstance(a, QTensor) or not isinstance(b, (QTensor, PackedWeights)):
        return NotImplemented
    if a.axis is not None:
        raise ValueError("the left operand of @ must be quantized per tensor")
    acc = matmul(a, b, out_dtype=np.int32)
    return (acc.astype(np.float32) * (np.float32(a.scale) * b.scale)).astype(np.float32)
