"""What the reference operator families share: dtype tables, argument helpers, attribute
checks and the registration helpers for unary and binary elementwise ops."""
from __future__ import annotations

import math

import numpy as np

from ...validate import fail
from .registry import op

#: TensorProto element type -> numpy dtype, for the types the reference ops compute on
TENSOR_TYPES = {
    1: np.dtype(np.float32), 2: np.dtype(np.uint8), 3: np.dtype(np.int8), 4: np.dtype(np.uint16),
    5: np.dtype(np.int16), 6: np.dtype(np.int32), 7: np.dtype(np.int64), 9: np.dtype(np.bool_),
    10: np.dtype(np.float16), 11: np.dtype(np.float64), 12: np.dtype(np.uint32), 13: np.dtype(np.uint64),
}
_TYPE_NAMES = {0: "UNDEFINED", 8: "STRING", 14: "COMPLEX64", 15: "COMPLEX128", 16: "BFLOAT16",
               17: "FLOAT8E4M3FN", 18: "FLOAT8E4M3FNUZ", 19: "FLOAT8E5M2", 20: "FLOAT8E5M2FNUZ",
               21: "UINT4", 22: "INT4", 23: "FLOAT4E2M1", 24: "FLOAT8E8M0", 25: "UINT2", 26: "INT2"}
QUANT_TYPES = {np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16)}
FLOAT_TYPES = {np.dtype(t) for t in (np.float16, np.float32, np.float64)}


# ------------------------------------------------------------ dtypes and arguments


def type_name(t: int) -> str:
    return _TYPE_NAMES.get(int(t), f"type {t}")


def compute_dtype(dtype) -> np.dtype:
    """The dtype to compute a float op in: float16 -> float32, others unchanged."""
    dtype = np.dtype(dtype)
    return np.dtype(np.float32) if dtype == np.float16 else dtype


def widened(x: np.ndarray) -> np.ndarray:
    """``x`` in its compute dtype (float16 widened to float32)."""
    return x.astype(np.float32) if x.dtype == np.float16 else x


def require_float(node, x):
    if x.dtype not in FLOAT_TYPES:
        fail(node, f"input dtype {x.dtype} not supported (float16/32/64 only)")


def ints(v) -> list[int]:
    return [int(i) for i in np.asarray(v).reshape(-1)]


def norm_axis(node, axis: int, rank: int) -> int:
    if not -rank <= axis < max(rank, 1):
        fail(node, f"axis {axis} out of range for rank {rank}")
    return axis % rank if rank else 0


def scalar(v, default=None):
    if v is None:
        return default
    v = np.asarray(v)
    if v.size != 1:
        raise ValueError(f"expected one value, got shape {v.shape}")
    return v.reshape(-1)[0]


def wrap_int32(x: np.ndarray) -> np.ndarray:
    """int64 values reduced modulo 2**32 into int32, like int32 accumulators."""
    return np.asarray(x, np.int64).astype(np.int32)   # numpy's int64 -> int32 cast wraps


# ------------------------------------------------------------ attribute checks


def check_known(values, allowed, what):
    def check(node, graph):
        v = node.attrs.get(values[0], values[1])
        if v not in allowed:
            return f"{what} {v!r} not supported (supported: {', '.join(map(str, allowed))})"
        return None
    return check


def all_checks(*checks):
    def check(node, graph):
        for c in checks:
            why = c(node, graph)
            if why:
                return why
        return None
    return check


def attr(node, name, default):
    return node.attrs.get(name, default)


def channel_shape(x, v):
    """A per-channel vector shaped to broadcast against (N, C, ...) ``x``."""
    return np.asarray(v).reshape((1, -1) + (1,) * (x.ndim - 2))


# ------------------------------------------------------------ registration helpers

def unary_op(name, fn, floats_only=False, attrs=(), check=None):
    """Register a unary op computed as fn(node, x in its compute dtype)."""
    def impl(node, x):
        if floats_only:
            require_float(node, x)
        y = fn(node, widened(x))
        return np.asarray(y).astype(x.dtype, copy=False)
    op(name, attrs=attrs, check=check)(impl)


def binary_op(name, fn, same_dtype=True):
    """Register a binary op computed as fn(node, a, b), cast back to a's dtype unless
    ``same_dtype`` is False (comparisons and logic give bool)."""
    def impl(node, a, b):
        y = fn(node, a, b)
        return np.asarray(y).astype(a.dtype, copy=False) if same_dtype else y
    op(name)(impl)


# ------------------------------------------------------------ numeric helpers

def sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def erf(x: np.ndarray) -> np.ndarray:
    try:
        from scipy.special import erf as erf64
    except ImportError:   # pragma: no cover - scipy is optional
        erf64 = np.vectorize(math.erf, otypes=[np.float64])
    return np.asarray(erf64(x.astype(np.float64))).astype(x.dtype)


def lowest(dtype):
    """The smallest value of a dtype (-inf for floats): the identity of a max."""
    return -np.inf if dtype.kind == "f" else (False if dtype.kind == "b" else np.iinfo(dtype).min)


def highest(dtype):
    return np.inf if dtype.kind == "f" else (True if dtype.kind == "b" else np.iinfo(dtype).max)
