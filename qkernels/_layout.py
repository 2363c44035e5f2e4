"""NCHW <-> NHWC layout conversion on the native blocked transposes (kernels/layout.c):
what ``conv2d(layout="NCHW")`` and the graph runner use at their boundaries instead of
numpy's strided copy (2-10x slower for 1- and 2-byte elements).

Any 4-D array of 1-, 2- or 4-byte numbers (int8/uint8, float16, int16, float32,
int32, ...) and any view of one (slices, steps, negative strides, broadcast zero
strides); elements are moved as bytes, so the result is bit-identical to numpy's
``np.ascontiguousarray(x.transpose(...))``.
"""
from __future__ import annotations

import numpy as np

from . import _dispatch, _native
from ._common import check_out

_TO_NHWC, _TO_NCHW = (0, 2, 3, 1), (0, 3, 1, 2)


def nchw_to_nhwc(x: np.ndarray, out: np.ndarray | None = None, *, copy: bool = True) -> np.ndarray:
    """``x`` (N, C, H, W) as a C-contiguous (N, H, W, C) array: ``out`` when given, else a
    new array; with ``copy=False``, ``x.transpose(0, 2, 3, 1)`` itself when that view is
    already C-contiguous (an NCHW view of NHWC memory)."""
    return _convert(x, out, copy, _TO_NHWC)


def nhwc_to_nchw(x: np.ndarray, out: np.ndarray | None = None, *, copy: bool = True) -> np.ndarray:
    """``x`` (N, H, W, C) as a C-contiguous (N, C, H, W) array: ``out`` when given, else a
    new array; with ``copy=False``, ``x.transpose(0, 3, 1, 2)`` itself when that view is
    already C-contiguous."""
    return _convert(x, out, copy, _TO_NCHW)


def convertible(dtype: np.dtype) -> bool:
    """Whether the conversions take arrays of ``dtype``: numbers of 1, 2 or 4 bytes."""
    return dtype.kind in "biuf" and dtype.itemsize in (1, 2, 4)


def _convert(x, out, copy: bool, perm) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x must be a numpy array, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"x must be 4-D, got shape {x.shape}")
    if not convertible(x.dtype):
        raise TypeError(f"x must hold 1-, 2- or 4-byte numbers, got dtype {x.dtype}")
    view = x.transpose(perm)
    if out is None:
        if not copy and view.flags.c_contiguous:
            return view
        out = np.empty(view.shape, x.dtype)
    else:
        check_out(out, view.shape, x.dtype, x=x)
    return transpose_into(x, out, perm == _TO_NHWC)


def transpose_into(x: np.ndarray, out: np.ndarray, to_nhwc: bool) -> np.ndarray:
    """``out`` = ``x`` NCHW as NHWC (``to_nhwc``) or NHWC as NCHW, for arrays the caller
    has checked as the functions above do (``out`` through ``check_out``: its checks cost
    more than converting a small tensor; the native call still checks shapes and sizes)."""
    return _native.transpose_layout(x, out, to_nhwc, _dispatch.get_isa() != "scalar")

