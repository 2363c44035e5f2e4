"""Scale and zero point from a real range: ``real = scale * (q - zero_point)``.

Conventions (onnxruntime's quantizer, ``quant_utils.compute_scale_zp`` and
``get_qmin_qmax_for_qType``, which the tests check bit for bit):

- The range is first extended to include 0 (``lo = min(lo, 0)``, ``hi = max(hi, 0)``),
  as ONNX and TFLite require, so that real 0 (padding, ReLU) is exactly the integer
  ``zero_point``.
- Integer grid ``[qmin, qmax]`` (:func:`qrange`): the full type (int8 ``-128..127``,
  uint8 ``0..255``), except symmetric signed types use the restricted range
  ``-127..127`` (TFLite's int8 spec for weights), and ``reduce_range`` uses 7 bits:
  int8 ``-64..64``, uint8 ``0..127`` (onnxruntime's reduced ranges, for weights on x86
  without VNNI: a ``u8 * s8`` pair sum of ``vpmaddubsw`` then cannot saturate int16).
- ``scale = (hi - lo) / (qmax - qmin)`` in float64, stored as float32 (round to
  nearest). Symmetric: ``lo, hi = -m, m`` with ``m = max(|lo|, |hi|)``, so int8 divides
  ``m`` by **127** and uint8 (full ``0..255``) by **127.5**, with zero point
  ``round((qmin + qmax) / 2)``: 0 for int8, 128 for uint8 (64 for reduced uint8).
- Asymmetric zero point ``round(qmin - lo / scale)`` (half to even, float64 scale),
  which lies in ``[qmin, qmax]`` because ``lo <= 0 <= hi``.
- ``power_of_two``: the float64 scale is rounded *up* to the next power of two (kept if
  it already is one) before the zero point is computed; rounding up keeps the whole
  range representable. For DSP targets whose requantization is a shift.
- Degenerate range: when ``(hi - lo) / (qmax - qmin)`` is below the smallest normal
  float32 (``2**-126``; this includes the constant-zero tensor ``lo == hi == 0``), the
  scale is **1.0** with zero point 0 (symmetric: the symmetric zero point, 128 for
  uint8, so per-channel symmetric weights keep one zero point for all channels --
  onnxruntime returns 0 there). 1.0 rather than the smallest normal float: such a
  tensor is (close to) all zeros, which quantize to the zero point at any scale, and a
  tiny scale would make every later non-zero value saturate and blow up the
  requantization multipliers ``s_in * s_w / s_out`` of the layers that consume it.
"""
from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

__all__ = ["qrange", "quant_params", "weight_params", "fake_quantize", "PARAM_DTYPES"]

PARAM_DTYPES = (np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int16), np.dtype(np.uint16))
_F32_TINY = float(np.finfo(np.float32).tiny)


def _check_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in PARAM_DTYPES:
        raise ValueError(f"dtype must be one of int8, uint8, int16, uint16, got {dtype!r}")
    return dt


def qrange(dtype: DTypeLike = np.int8, symmetric: bool = False, reduce_range: bool = False) -> tuple[int, int]:
    """The integer grid ``(qmin, qmax)`` used for ``dtype`` (onnxruntime's convention).

    ``reduce_range``: one bit less -- signed ``(-2**(b-2), 2**(b-2))`` (int8 ``-64..64``),
    unsigned ``(0, 2**(b-1) - 1)`` (uint8 ``0..127``), whatever ``symmetric``.
    Otherwise signed symmetric drops the most negative value (int8 ``-127..127``), and
    everything else is the full type.
    """
    dt = _check_dtype(dtype)
    bits = dt.itemsize * 8
    signed = dt.kind == "i"
    if reduce_range:
        return (-(2 ** (bits - 2)), 2 ** (bits - 2)) if signed else (0, 2 ** (bits - 1) - 1)
    info = np.iinfo(dt)
    if symmetric and signed:
        return -int(info.max), int(info.max)
    return int(info.min), int(info.max)


def _params(lo: np.ndarray, hi: np.ndarray, dt: np.dtype, symmetric: bool, reduce_range: bool,
            power_of_two: bool) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised core on float64 arrays of finite ``lo <= hi``: (float32 scales, int64 zero points)."""
    qmin, qmax = qrange(dt, symmetric, reduce_range)
    lo = np.minimum(lo, 0.0)
    hi = np.maximum(hi, 0.0)
    if symmetric:
        m = np.maximum(-lo, hi)
        lo, hi = -m, m
    with np.errstate(over="ignore"):
        scale = (hi - lo) / float(qmax - qmin)           # hi - lo may overflow float64 only at +-1e308
    degenerate = scale < _F32_TINY
    scale = np.where(degenerate, 1.0, scale)
    if power_of_two:
        mant, exp = np.frexp(scale)                      # scale = mant * 2**exp, 0.5 <= mant < 1
        scale = np.where(mant == 0.5, scale, np.ldexp(1.0, exp))
    scale32 = scale.astype(np.float32)
    if not np.all(np.isfinite(scale32)):
        raise ValueError("the range is too wide: its scale overflows float32")
    sym_zp = int(np.round((qmin + qmax) / 2.0))
    if symmetric:
        zp = np.full(scale.shape, sym_zp, dtype=np.int64)
    else:
        zp = np.round(qmin - lo / scale)
        zp = np.where(degenerate, 0, np.clip(zp, qmin, qmax)).astype(np.int64)
    return scale32, zp


def _finite_bound(v, name: str) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {v!r}") from None
    if not math.isfinite(f):
        raise ValueError(f"{name} must be finite, got {v!r}")
    return f


def quant_params(lo: float, hi: float, dtype: DTypeLike = np.int8, symmetric: bool = False,
                 reduce_range: bool = False, power_of_two: bool = False) -> tuple[np.float32, int]:
    """Scale and zero point mapping the real range ``[lo, hi]`` onto ``dtype``.

    Parameters
    ----------
    lo, hi : finite floats, ``lo <= hi`` (e.g. an observer's ``range()``). The range is
        extended to include 0 first.
    dtype : np.int8 (default), np.uint8, np.int16 or np.uint16.
    symmetric : zero point fixed at the middle of the grid (0 for int8, 128 for uint8),
        range ``max(|lo|, |hi|)`` on both sides.
    reduce_range : use the 7-bit grid (int8 ``-64..64``, uint8 ``0..127``).
    power_of_two : round the scale up to a power of two.

    Returns
    -------
    (scale, zero_point) : ``np.float32`` > 0 and a Python int in ``dtype``'s range.

    See the module docstring for the exact conventions (onnxruntime's) and the
    degenerate-range rule (scale 1.0). NaN/Inf bounds or ``lo > hi`` raise ValueError.
    """
    dt = _check_dtype(dtype)
    lo_f, hi_f = _finite_bound(lo, "lo"), _finite_bound(hi, "hi")
    if lo_f > hi_f:
        raise ValueError(f"lo must be <= hi, got lo={lo!r} > hi={hi!r}")
    s, z = _params(np.array(lo_f), np.array(hi_f), dt, bool(symmetric), bool(reduce_range), bool(power_of_two))
    return np.float32(s), int(z)


def weight_params(w: ArrayLike, axis: int | None = None, symmetric: bool = True, dtype: DTypeLike = np.int8,
                  reduce_range: bool = False, power_of_two: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per-tensor or per-channel scale and zero point of a weight array, from its min-max.

    Parameters
    ----------
    w : array_like of real numbers, non-empty, finite.
    axis : None for one (scale, zero point) for the whole tensor; an int for one per
        slice along that axis (ONNX's per-axis QuantizeLinear ``axis``, e.g. 0 for the
        output channels of an OIHW conv weight).
    symmetric, dtype, reduce_range, power_of_two : as :func:`quant_params`; the
        default is the ``cpu`` scheme's weights, int8 symmetric.

    Returns
    -------
    (scale, zero_point) : float32 and ``dtype`` arrays, 0-d for ``axis=None``, else of
        shape ``(w.shape[axis],)``. Each channel's result equals
        ``quant_params(channel.min(), channel.max(), ...)``.
    """
    dt = _check_dtype(dtype)
    a = np.asarray(w)
    if a.dtype.kind not in "fiu":
        raise TypeError(f"w must be a real numeric array, got dtype {a.dtype}")
    if a.size == 0:
        raise ValueError(f"w is empty (shape {a.shape}): no range to quantize")
    a = a.astype(np.float64, copy=False)
    if not np.all(np.isfinite(a)):
        raise ValueError("w contains NaN or Inf")
    if axis is None:
        lo, hi = np.array(a.min()), np.array(a.max())
    else:
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise TypeError(f"axis must be None or an int, got {axis!r}")
        if not -a.ndim <= axis < a.ndim:
            raise ValueError(f"axis {axis} is out of range for w of shape {a.shape}")
        ax = int(axis) % a.ndim
        others = tuple(i for i in range(a.ndim) if i != ax)
        lo, hi = a.min(axis=others), a.max(axis=others)
    s, z = _params(lo, hi, dt, bool(symmetric), bool(reduce_range), bool(power_of_two))
    return s, z.astype(dt)


def fake_quantize(x: ArrayLike, scale: float, zero_point: int, dtype: DTypeLike = np.int8) -> np.ndarray:
    """QuantizeLinear then DequantizeLinear, as ONNX computes them (float32 division,
    round half to even, saturate to ``dtype``): the value a QDQ pair passes on."""
    info = np.iinfo(np.dtype(dtype))
    with np.errstate(over="ignore", invalid="ignore"):
        q = np.clip(np.rint(np.asarray(x, np.float32) / np.float32(scale)) + zero_point, info.min, info.max)
    return ((q - zero_point) * np.float32(scale)).astype(np.float32)
