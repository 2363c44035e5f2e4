"""Checks and helpers that the int8 and fp16 paths share: argument choices, output
arrays, result sizes, activations, row views. numpy only: every module of the API
may import it, and it imports none of them.
"""
from __future__ import annotations

import math
import sys
from typing import Tuple, Union

import numpy as np

Activation = Union[None, str, Tuple[float, float]]


def check_choice(value, choices, name: str):
    """``value`` when it is one of the strings ``choices`` (a ValueError naming ``name``
    otherwise: arrays and unhashable values included)."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def as_dtype(dtype, name: str) -> np.dtype:
    """``np.dtype(dtype)``, or a TypeError naming the argument."""
    try:
        return np.dtype(dtype)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a numpy dtype, got {dtype!r}") from None


def check_size(*dims: int, itemsize: int = 1, what: str = "result") -> None:
    """ValueError when an array of shape ``dims`` would be too large to address."""
    total = itemsize
    for d in dims:
        total *= int(d)
    if total > sys.maxsize // 4:
        raise ValueError(f"{what} of shape {tuple(int(d) for d in dims)} is too large to address")


def check_out(out, shape, dtype, **inputs) -> np.ndarray:
    """``out`` when it can take a result of ``shape`` and ``dtype`` without overlapping
    any of the named ``inputs`` (arrays the call reads; other values are skipped), else
    TypeError / ValueError saying why."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy array, got {type(out).__name__}")
    if out.shape != tuple(shape):
        raise ValueError(f"out has shape {out.shape}, expected {tuple(shape)}")
    if out.dtype != dtype:
        raise TypeError(f"out has dtype {out.dtype}, expected {np.dtype(dtype)}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError("out must be a writeable C-contiguous array")
    check_no_overlap(out, **inputs)
    return out


def check_no_overlap(out: np.ndarray, **inputs) -> None:
    """ValueError when ``out`` may share memory with one of the named input arrays (the
    kernels would read values they already overwrote); values that are not arrays are
    skipped, so callers pass a QTensor's ``.data``."""
    for name, arr in inputs.items():
        if isinstance(arr, np.ndarray) and np.may_share_memory(out, arr):
            raise ValueError(f"out overlaps the input {name}; pass a separate output array")


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


def rows_view(x: np.ndarray, writeable: bool = False) -> np.ndarray | None:
    """``x`` (..., C) as the matrix (rows, C) without a copy, when its leading
    dimensions lie at one row stride; None otherwise. Dimensions of size 1 are skipped:
    their stride is arbitrary (numpy leaves any value there). ``writeable``: a view to
    write through (``x`` must be writeable)."""
    dims = [(n, s) for n, s in zip(x.shape[:-1], x.strides[:-1]) if n != 1]
    if any(s0 != s1 * n1 for (_, s0), (n1, s1) in zip(dims, dims[1:])):
        return None
    rows = math.prod(n for n, _ in dims)
    row_stride = dims[-1][1] if dims else x.strides[-1] * x.shape[-1]
    return np.lib.stride_tricks.as_strided(x, (rows, x.shape[-1]), (row_stride, x.strides[-1]), writeable=writeable)


def output_rows(res: np.ndarray) -> np.ndarray | None:
    """A kernel's result ``res`` (..., C) as the writeable matrix (rows, C) its output
    stage stores to (rows at one stride, channels adjacent): ``res`` itself reshaped when
    C-contiguous, a channel slice of a wider array too (a Concat's part); None otherwise."""
    if res.flags.c_contiguous:
        return res.reshape(-1, res.shape[-1])
    rows = rows_view(res, writeable=res.flags.writeable)
    if rows is None or (rows.shape[1] > 1 and rows.strides[1] != res.itemsize) \
            or (rows.shape[0] > 1 and rows.strides[0] < rows.shape[1] * res.itemsize):
        return None
    return rows
