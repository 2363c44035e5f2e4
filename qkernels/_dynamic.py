"""float32 activations times int8 weights, the activations quantized on the fly.

``dynamic_matmul`` is what ONNX Runtime's ``quantize_dynamic`` graphs compute
(DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul(a_scale * w_scale) -> Add bias)
and XNNPACK's qd8-f32-qc8w kernels do, as one native call (kernels/dynquant.c): the
activations quantized to uint8 per tensor exactly as ONNX DynamicQuantizeLinear (or per
row), the exact int8 GEMM of qkernels._gemm, then
``y = float32(acc) * (a_scale * w_scale[n]) + bias[n]``, each step one float32 rounding.
"""
from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from . import _dispatch, _native
from ._common import check_out
from ._gemm import PackedWeights, pack_weights
from ._qtensor import QTensor
from ._requant import INT32_OUTPUT

_F32 = np.dtype(np.float32)
_ZERO_I32 = np.zeros(1, np.int32)


class DynamicQuantError(ValueError):
    """The activations cannot be quantized: a NaN or infinite value, or a range whose
    DynamicQuantizeLinear scale is not a positive normal float32."""


def dynamic_terms(pw: PackedWeights) -> tuple[np.ndarray, np.ndarray]:
    """(cb, sw) of packed weights: cb[n] = sum_k (B[k, n] - zb[n]) wrapped to int32 (the
    activations' zero point enters through it), sw the float32 scale per column. Kept on
    the weights after the first call."""
    got = pw.__dict__.get("_dynamic_terms")
    if got is None:
        b = pw.qtensor.data.astype(np.int64)
        cb = b.sum(axis=0) - pw.k * pw.zero_point.astype(np.int64)
        cb = ((cb + 2**31) % 2**32 - 2**31).astype(np.int32)
        got = (np.ascontiguousarray(cb), np.ascontiguousarray(pw.scale, np.float32))
        pw.__dict__["_dynamic_terms"] = got
    return got


def float_bias(bias, n: int) -> np.ndarray | None:
    if bias is None:
        return None
    b = np.asarray(bias)
    if b.dtype != _F32:
        raise TypeError(f"bias must be float32, got {b.dtype}")
    if b.shape not in ((n,), ()):
        raise ValueError(f"bias must have shape ({n},), got {b.shape}")
    return np.ascontiguousarray(np.broadcast_to(b, (n,)))


class DynamicCall:
    """One bound call (qkernels._native.BoundDynq) on fixed arrays: x2 (M, K) float32 with
    contiguous columns (or, ``x2`` None, ``q`` filled by the caller with quantized
    activations of parameters ``sa`` / ``za``), y (M, N) float32 with contiguous columns.
    ``run()`` repeats it and raises DynamicQuantError when the activations cannot be
    quantized. After a run, ``q``, ``sa``, ``za`` hold the quantized activations and
    their parameters, ``acc`` (per row with weights' zero points only; else None) the
    int32 sums with A's zero point taken as 0. ``lead``: a call on the same activations
    that runs before this one each time: its q, sa, za serve this one (quantized once). What a graph
    plan keeps per node."""

    __slots__ = ("bound", "q", "sa", "za", "acc", "keep", "per_row")

    def __init__(self, pw: PackedWeights, x2, y, bias=None, per_row=False, q=None, a_signed=False, isa=None,
                 lead: DynamicCall | None = None):
        isa = _dispatch.isa_index() if isa is None else isa
        m, k, n = y.shape[0], pw.k, pw.n
        cb, sw = dynamic_terms(pw)
        self.per_row = per_row = lead.per_row if lead is not None else bool(per_row)
        if lead is not None:     # the activations another call quantizes (query, key, value read one input)
            if lead.q.shape != (m, k) or lead.q.dtype != np.uint8:
                raise ValueError("DynamicCall: the lead call's activations are not (M, K) uint8")
            x2, q = None, lead.q
        self.q = np.empty((m, k), np.uint8) if q is None else q
        self.sa = lead.sa if lead is not None else np.zeros(m if per_row else 1, np.float32)
        self.za = lead.za if lead is not None else np.zeros(m if per_row else 1, np.int32)
        lb = lead.bound if lead is not None else None
        # the GEMM with A's zero point 0: the dynamic one enters through cb (column terms)
        call = pw.prepare(max(m, 1), a_signed, 0, 1.0, INT32_OUTPUT, isa=isa)
        threads = _dispatch.get_num_threads()
        if per_row and not call.need_row_sum:   # each tile dequantized in the output stage, its rows' parameters
            gemm = _native.gemm(call.kid, self.q, a_signed, 0, call.packed, n, call.col_add, call.col_zb, False,
                                _native.OUT_DQ_F32, False, 0, 0, 0, sw, _ZERO_I32, _ZERO_I32, y, threads, True, None,
                                bias)
            self.bound = _native.dynq_bind(isa, x2, True, self.q, self.sa, self.za, gemm, cb, sw, y, None, bias,
                                           lead=lb)
            self.acc, self.keep = None, None
            return
        if per_row:     # B's zero points (row sums): int32 sums, then the pass with each row's parameters
            acc = np.empty((m, n), np.int32)
            gemm = call.run(self.q, acc, bind=True)
            self.bound = _native.dynq_bind(isa, x2, True, self.q, self.sa, self.za, gemm, cb, sw, y, acc, bias,
                                           lead=lb)
            self.acc, self.keep = acc, None
            return
        # per tensor: the GEMM's output stage dequantizes (QK_OUT_DQ_F32), its column
        # terms set by each run from the activations' scale and zero point
        add, scale = np.empty(n, np.int32), np.empty(n, np.float32)
        gemm = _native.gemm(call.kid, self.q, a_signed, 0, call.packed, n, add, call.col_zb, call.need_row_sum,
                            _native.OUT_DQ_F32, False, 0, 0, 0, scale, _ZERO_I32, _ZERO_I32, y, threads, True, None,
                            bias)
        self.bound = _native.dynq_bind(isa, x2, False, self.q, self.sa, self.za, gemm, cb, sw, y, None, bias,
                                       call.col_add, add, scale, lb)
        self.acc, self.keep = None, (add, scale)   # (per tensor the int32 sums are never stored)

    def run(self) -> np.ndarray:
        y = self.bound.run()
        st = self.bound.status
        if st:
            raise DynamicQuantError("dynamic quantization: the input holds NaN or infinity" if st == 1 else
                                    "dynamic quantization: the input's range has no float32 scale (too wide or "
                                    "too narrow)")
        return y


def rows_of(x: np.ndarray, k: int) -> np.ndarray:
    """x (..., K) as a matrix (M, K) whose columns are contiguous (a view when it can be)."""
    x2 = x.reshape(math.prod(x.shape[:-1]), k) if x.ndim != 2 else x
    if k > 1 and x2.strides[1] != 4:
        x2 = np.ascontiguousarray(x2)
    return x2


def dynamic_matmul(x: ArrayLike, b: QTensor | PackedWeights, bias: ArrayLike | None = None, *,
                   per_row: bool = False, out: np.ndarray | None = None) -> np.ndarray:
    """float32 ``x`` (..., K) times int8/uint8 weights ``b`` (K, N), the activations
    quantized on the fly: ``float32(acc) * (a_scale * b_scale[n]) + bias[n]``, float32.

    ``x`` is quantized to uint8 as ONNX DynamicQuantizeLinear does (per tensor: one
    scale and zero point for all of it, bit for bit), or per row with ``per_row=True``
    (each row of K values its own; finer, not an ONNX operator). ``acc`` is the exact
    int32 sum of (q - a_zero_point) * (b - b_zero_point[n]). ``b``: a QTensor (K, N)
    quantized per tensor or per column, or PackedWeights from :func:`pack_weights`
    (packed once: pass those for repeated calls). ``bias``: float32 (N,) or None.

    Raises DynamicQuantError (a ValueError) when ``x`` holds NaN or infinity, or its
    range has no float32 scale (wider than float32 can hold, or below 255 * 2**-126).
    """
    x = np.asarray(x)
    if x.dtype != _F32:
        raise TypeError(f"x must be float32, got {x.dtype}")
    if x.ndim == 0:
        raise ValueError("dynamic_matmul: x must have at least one dimension")
    if isinstance(b, QTensor):
        b = pack_weights(b)
    elif not isinstance(b, PackedWeights):
        raise TypeError(f"b must be a QTensor or PackedWeights, got {type(b).__name__}")
    k, n = b.k, b.n
    if x.shape[-1] != k:
        raise ValueError(f"dynamic_matmul: shapes {x.shape} and {b.shape} are not aligned: "
                         f"{x.shape[-1]} (dim -1) != {k} (dim 0)")
    bias_f = float_bias(bias, n)
    shape = x.shape[:-1] + (n,)
    y = np.empty(shape, _F32) if out is None else check_out(out, shape, _F32, x=x, bias=bias_f)
    x2 = rows_of(x, k)
    DynamicCall(b, x2, y.reshape(x2.shape[0], n), bias_f, bool(per_row)).run()
    return y
