"""Logical, comparison and bitwise operators, IsNaN/IsInf and Where."""
from __future__ import annotations

import numpy as np

from ...validate import fail
from .common import binary_op, check_known
from .registry import op


binary_op("And", lambda n, a, b: np.logical_and(a, b), False)
binary_op("Or", lambda n, a, b: np.logical_or(a, b), False)
binary_op("Xor", lambda n, a, b: np.logical_xor(a, b), False)
binary_op("Equal", lambda n, a, b: np.equal(a, b), False)
binary_op("Less", lambda n, a, b: np.less(a, b), False)
binary_op("LessOrEqual", lambda n, a, b: np.less_equal(a, b), False)
binary_op("Greater", lambda n, a, b: np.greater(a, b), False)
binary_op("GreaterOrEqual", lambda n, a, b: np.greater_equal(a, b), False)
binary_op("BitwiseAnd", lambda n, a, b: np.bitwise_and(a, b))
binary_op("BitwiseOr", lambda n, a, b: np.bitwise_or(a, b))
binary_op("BitwiseXor", lambda n, a, b: np.bitwise_xor(a, b))


@op("Not")
def _not(node, x):
    return np.logical_not(x)


@op("IsNaN")
def _isnan(node, x):
    return np.isnan(x)


@op("IsInf", attrs=("detect_negative", "detect_positive"))
def _isinf(node, x):
    neg, pos = node.attrs.get("detect_negative", 1), node.attrs.get("detect_positive", 1)
    return (np.isneginf(x) & bool(neg)) | (np.isposinf(x) & bool(pos))


@op("BitwiseNot")
def _bitwise_not(node, x):
    return np.invert(x)


@op("BitShift", attrs=("direction",),
    check=check_known(("direction", None), ("LEFT", "RIGHT"), "direction"))
def _bitshift(node, x, y):
    if x.dtype.kind not in "iu":
        fail(node, f"BitShift needs integers, got {x.dtype}")
    bits = x.dtype.itemsize * 8
    y = np.asarray(y)
    ok = (y >= 0) & (y < bits)
    ys = np.where(ok, y, 0).astype(x.dtype)
    left = node.attrs["direction"] == "LEFT"
    out = np.left_shift(x, ys) if left else np.right_shift(x, ys)   # right: arithmetic for signed
    # a shift by a negative count or by the width or more: the sign extension alone
    # (-1 for a right shift of a negative signed value, else 0)
    fill = np.where((x < 0) & (not left), x.dtype.type(-1) if x.dtype.kind == "i" else 0, 0)
    return np.where(ok, out, fill).astype(x.dtype)


@op("Where")
def _where(node, cond, a, b):
    return np.where(cond, a, b).astype(a.dtype, copy=False)
