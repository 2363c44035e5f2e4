"""Quantized tensors: ``real = scale * (q - zero_point)``, per tensor or per channel.

Rounding and saturation follow ONNX QuantizeLinear/DequantizeLinear: the float
input is divided by the scale in float32, rounded half to even, offset by the zero
point and saturated to the integer type.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import _dispatch, _native
from ._common import as_dtype, check_out

QUANT_DTYPES = (np.dtype(np.uint8), np.dtype(np.int8))


_RANGES = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127), np.dtype(np.int32): (-2**31, 2**31 - 1)}
_SCALARS = (int, float, np.integer, np.floating)


def int_range(dtype) -> tuple[int, int]:
    r = _RANGES.get(dtype)
    if r is None:
        info = np.iinfo(dtype)
        r = int(info.min), int(info.max)
    return r


def check_qdtype(dtype, name: str) -> np.dtype:
    dt = as_dtype(dtype, name)
    if dt not in QUANT_DTYPES:
        raise TypeError(f"{name} must be uint8 or int8, got {dt}")
    return dt


def check_scale(scale, name: str = "scale", length: int | None = None) -> np.ndarray:
    """float32 array of scales, each finite and > 0; scalar (0-d) or 1-D of ``length``."""
    if isinstance(scale, np.ndarray) and scale.ndim == 0 and scale.dtype.kind in "fiu":
        scale = scale.item()                     # 0-d: the scalar path (numpy calls cost microseconds)
    if isinstance(scale, _SCALARS) and not isinstance(scale, bool):   # fast path: per tensor
        s32 = np.float32(scale)
        if not (math.isfinite(scale) and scale > 0 and s32 > 0 and math.isfinite(s32)):
            raise ValueError(f"{name} must be finite and > 0 (in float32), got {scale!r}")
        return np.asarray(s32)
    try:
        s = np.asarray(scale, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a positive float or 1-D array of them, got {scale!r}") from None
    if s.ndim > 1:
        raise ValueError(f"{name} must be a scalar or 1-D, got shape {s.shape}")
    if s.ndim == 1 and length is not None and s.shape[0] != length:
        raise ValueError(f"{name} has {s.shape[0]} values, expected {length} (one per channel)")
    s32 = s.astype(np.float32)
    if not np.all((s32 > 0) & (s32 < np.inf)):          # one pass in the good case (NaN fails too)
        if not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise ValueError(f"{name} must be finite and > 0, got {scale!r}")
        raise ValueError(f"{name} is outside float32's positive range: {scale!r}")
    return s32


def check_zero_point(zero_point, dtype, name: str = "zero_point", length: int | None = None) -> np.ndarray:
    """int32 array of zero points inside ``dtype``'s range; 0-d or 1-D of ``length``."""
    lo, hi = int_range(dtype)
    if isinstance(zero_point, np.ndarray) and zero_point.ndim == 0 and zero_point.dtype.kind in "iu":
        zero_point = zero_point.item()
    if isinstance(zero_point, (int, np.integer)) and not isinstance(zero_point, bool):   # fast path
        if not lo <= zero_point <= hi:
            raise ValueError(f"{name} must lie in [{lo}, {hi}] for {np.dtype(dtype)}, got {zero_point!r}")
        return np.asarray(np.int32(zero_point))
    z = np.asarray(zero_point)
    if z.dtype.kind not in "iub":
        if z.dtype.kind == "f" and np.all(np.isfinite(z)) and np.all(z == np.round(z)):
            z = z.astype(np.int64)
        else:
            raise TypeError(f"{name} must be an integer or 1-D integer array, got {zero_point!r}")
    if z.ndim > 1:
        raise ValueError(f"{name} must be a scalar or 1-D, got shape {z.shape}")
    if z.ndim == 1 and length is not None and z.shape[0] != length:
        raise ValueError(f"{name} has {z.shape[0]} values, expected {length} (one per channel)")
    z64 = z.astype(np.int64)
    if np.any(z64 < lo) or np.any(z64 > hi):
        raise ValueError(f"{name} must lie in [{lo}, {hi}] for {np.dtype(dtype)}, got {zero_point!r}")
    return z64.astype(np.int32)


def _normalize_axis(axis, ndim: int) -> int | None:
    if axis is None:
        return None
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"axis must be an int or None, got {axis!r}")
    if ndim == 0:
        raise ValueError("a 0-d array has no axis for per-channel parameters")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of bounds for an array of dimension {ndim}")
    return int(axis) % ndim


class QTensor:
    """Quantized array: ``data`` (uint8/int8) with ``scale`` and ``zero_point``.

    Per-tensor when ``axis`` is None (scalar scale and zero point); per-channel along
    ``axis`` otherwise (1-D scale and zero point of length ``data.shape[axis]``).
    ``np.asarray(q)`` and ``q.dequantize()`` give float32; ``a @ b`` multiplies
    exactly in int32 and returns float32, as numpy would for the real values.
    """

    __array_priority__ = 20
    # Read-only parameters: calls cache plans keyed by them (the data may change freely).
    __slots__ = ("_data", "_scale", "_zero_point", "_axis", "_params")
    data = property(lambda self: self._data, doc="the uint8/int8 ndarray")
    scale = property(lambda self: self._scale, doc="float32 scale: 0-d, or 1-D along axis")
    zero_point = property(lambda self: self._zero_point, doc="int32 zero point: 0-d, or 1-D along axis")
    axis = property(lambda self: self._axis, doc="channel axis of per-channel parameters, or None")

    @classmethod
    def _trusted(cls, data: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, params=None,
                 axis: int | None = None) -> "QTensor":
        """A QTensor from float32/int32 parameters already validated: 0-d, or 1-D of
        ``data.shape[axis]`` (the fast path of outputs; they may be shared, QTensors
        never modify them)."""
        q = object.__new__(cls)
        q._data, q._scale, q._zero_point, q._axis = data, scale, zero_point, axis
        q._params = None if axis is not None else params or (data.dtype.char, int(zero_point), float(scale))
        return q

    def __init__(self, data: ArrayLike, scale: ArrayLike, zero_point: ArrayLike = 0, axis: int | None = None):
        data = np.asarray(data)
        check_qdtype(data.dtype, "data dtype")
        axis = _normalize_axis(axis, data.ndim)
        length = data.shape[axis] if axis is not None and data.ndim else None
        scale = check_scale(scale, "scale", length)
        zero_point = check_zero_point(zero_point, data.dtype, "zero_point", length)
        if axis is None and (scale.ndim or zero_point.ndim):
            if scale.size == 1 and zero_point.size == 1:
                scale, zero_point = scale.reshape(()), zero_point.reshape(())
            else:
                raise ValueError("per-channel scale or zero_point needs axis=")
        if axis is not None:
            n = data.shape[axis]
            scale = np.broadcast_to(scale, (n,)).astype(np.float32)
            zero_point = np.broadcast_to(zero_point, (n,)).astype(np.int32)
        scale.flags.writeable = False
        zero_point.flags.writeable = False
        self._data = data
        self._scale = scale
        self._zero_point = zero_point
        self._axis = axis
        # per-tensor parameters as Python scalars: the key of matmul's call cache
        self._params = (data.dtype.char, int(zero_point), float(scale)) if axis is None else None

    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    per_channel = property(lambda self: self.axis is not None)

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        where = "per-tensor" if self.axis is None else f"per-channel axis={self.axis}"
        return (f"QTensor(shape={self.shape}, dtype={self.dtype}, {where}, "
                f"scale={self.scale!r}, zero_point={self.zero_point!r})")

    def dequantize(self) -> np.ndarray:
        return dequantize(self)

    def __array__(self, dtype=None, copy=None):
        f = self.dequantize()
        return f if dtype is None else f.astype(dtype)

    # ``a @ b`` is a GEMM, a layer above this one: qkernels._gemm installs its product
    # here when it loads (always, with the package), so the arrow points down.
    _matmul = None

    def __matmul__(self, other):
        return QTensor._matmul(self, other)

    def __rmatmul__(self, other):
        return QTensor._matmul(other, self)

    def __reduce__(self):
        return (QTensor, (self.data, self.scale, self.zero_point, self.axis))


def quantize(x: ArrayLike, scale: ArrayLike, zero_point: ArrayLike = 0, dtype: DTypeLike = np.uint8,
             axis: int | None = None, out: np.ndarray | None = None) -> QTensor:
    """Quantize float ``x``: ``q = saturate(round_half_even(x / scale) + zero_point)``.

    Parameters
    ----------
    x : array_like of float, any shape. Computed in float32, as ONNX QuantizeLinear.
    scale : float > 0, or 1-D array (one per slice along ``axis``).
    zero_point : int or 1-D int array inside ``dtype``'s range.
    dtype : np.uint8 or np.int8.
    axis : None for per-tensor, else the channel axis of per-channel parameters.
    out : optional C-contiguous ``dtype`` array of ``x``'s shape to write into (the
        returned QTensor's data); it must not overlap ``x``.

    Returns a :class:`QTensor`. NaN in ``x`` raises ValueError; ±inf saturates.
    """
    dt = check_qdtype(dtype, "dtype")
    x_in = x = np.asarray(x)
    if x.dtype.kind not in "fiub":
        raise TypeError(f"x must be a real numeric array, got {x.dtype}")
    x = _c_contiguous(x.astype(np.float32, copy=False))
    ax = _normalize_axis(axis, x.ndim)
    length = x.shape[ax] if ax is not None and x.ndim else None
    s = check_scale(scale, "scale", length)
    z = check_zero_point(zero_point, dt, "zero_point", length)
    if ax is None and (s.ndim or z.ndim) and (s.size != 1 or z.size != 1):
        raise ValueError("per-channel scale or zero_point needs axis=")
    q = np.empty(x.shape, dt) if out is None else _aligned(check_out(out, x.shape, dt, x=x_in))
    sc, zc, channels, inner = _native_params(s, z, ax, x.shape)
    if _native.quantize(_dispatch.isa_index(), x, sc, zc, channels, inner, dt == np.int8, q,
                        _dispatch.get_num_threads()):
        raise ValueError("x contains NaN, which has no quantized value")
    if ax is None:                               # validated above: no second check
        sc, zc = sc.reshape(()), zc.reshape(())
    sc.flags.writeable = zc.flags.writeable = False  # made by the checks above: this QTensor's own
    return QTensor._trusted(q, sc, zc, axis=ax)


def _aligned(out: np.ndarray) -> np.ndarray:
    if not out.flags.aligned:
        raise ValueError("out must be aligned to its dtype")
    return out


def _c_contiguous(a: np.ndarray) -> np.ndarray:
    """``a``, or an aligned C-contiguous copy (np.ascontiguousarray would make 0-d 1-d)."""
    return a if a.flags.c_contiguous and a.flags.aligned else a.copy()


def _native_params(s: np.ndarray, z: np.ndarray, axis: int | None, shape) -> tuple:
    """The kernels' view of the data, (outer, channels, inner), with one scale and zero
    point per channel: ``(scale, zero_point, channels, inner)``."""
    if axis is None:
        return s.reshape(1), z.reshape(1), 1, 1
    channels, inner = shape[axis], max(1, math.prod(shape[axis + 1:]))
    return (np.ascontiguousarray(np.broadcast_to(s.reshape(-1), (channels,)), np.float32),
            np.ascontiguousarray(np.broadcast_to(z.reshape(-1), (channels,)), np.int32), channels, inner)


def dequantize(q: QTensor | ArrayLike, scale: ArrayLike | None = None, zero_point: ArrayLike | None = None,
               axis: int | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """Real values of a quantized array: ``(q - zero_point) * scale`` in float32.

    ``q`` is a :class:`QTensor` (its parameters are used) or a uint8/int8 array with
    ``scale``, ``zero_point`` and ``axis`` given here. ``out``: an optional C-contiguous
    float32 array of the data's shape to write into (returned), not overlapping it.
    """
    if isinstance(q, QTensor):
        if scale is not None or zero_point is not None or axis is not None:
            raise TypeError("dequantize(QTensor) takes its parameters from the QTensor")
        data, s, z, ax = q.data, q.scale, q.zero_point, q.axis
    else:
        if scale is None:
            raise TypeError("dequantize needs scale= for a plain array")
        qt = QTensor(q, scale, 0 if zero_point is None else zero_point, axis)
        data, s, z, ax = qt.data, qt.scale, qt.zero_point, qt.axis
    y = np.empty(data.shape, np.float32) if out is None else _aligned(check_out(out, data.shape, np.float32, q=data))
    data = _c_contiguous(data)
    return _native.dequantize(_dispatch.isa_index(), data, data.dtype == np.int8, *_native_params(s, z, ax, data.shape),
                              y, _dispatch.get_num_threads())
