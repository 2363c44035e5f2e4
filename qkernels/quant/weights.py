"""Weights as the QDQ model stores them: symmetric int8 per output channel (or per
tensor), and the per-channel range statistics the passes and the report read."""
from __future__ import annotations

import numpy as np

from .params import weight_params

__all__ = ["quantize_weight", "dequantize_weight", "channel_ranges", "range_spread"]


def quantize_weight(arr: np.ndarray, axis: int | None, power_of_two: bool = False):
    """(int8 values, float32 scales, int8 zero points) of a weight: symmetric int8
    (-127..127), per slice along ``axis`` (None: per tensor) -- what the QDQ model stores."""
    arr = np.asarray(arr, np.float32)
    scale, zp = weight_params(arr, axis=axis, symmetric=True, dtype=np.int8, power_of_two=power_of_two)
    scale, zp = np.asarray(scale, np.float32), np.asarray(zp)
    q = np.clip(np.rint(arr / scale.reshape(_axis_shape(arr.ndim, axis))), -127, 127).astype(np.int8)
    return q, scale, zp


def dequantize_weight(q: np.ndarray, scale: np.ndarray, axis: int | None) -> np.ndarray:
    """The float32 weight a DequantizeLinear gives back from :func:`quantize_weight`."""
    scale = np.asarray(scale, np.float32).reshape(_axis_shape(q.ndim, axis))
    return (q.astype(np.float32) * scale).astype(np.float32)


def _axis_shape(ndim: int, axis: int | None) -> list[int]:
    """The shape that broadcasts per-``axis`` parameters against a weight of ``ndim``."""
    shape = [1] * ndim
    if axis is not None:
        shape[axis] = -1
    return shape


def channel_ranges(w: np.ndarray) -> np.ndarray:
    """Per output channel (axis 0) ``max |w|`` of a Conv weight."""
    w = np.asarray(w, np.float64)
    return np.abs(w.reshape(w.shape[0], -1)).max(axis=1)


def range_spread(w: np.ndarray) -> float:
    """Largest over smallest non-zero per-output-channel range of a Conv weight (1 = all
    channels alike); a large spread is what per-tensor quantization suffers from."""
    r = channel_ranges(w)
    r = r[r > 0]
    return float(r.max() / r.min()) if r.size else 1.0
