"""Linear algebra in float (and plain integer) arithmetic: MatMul, Gemm, Einsum, Det."""
from __future__ import annotations

import numpy as np

from ...validate import fail
from .common import TENSOR_TYPES, widened
from .registry import op


@op("MatMul")
def _matmul(node, a, b):
    if a.dtype == np.float16:
        return np.matmul(a.astype(np.float32), b.astype(np.float32)).astype(np.float16)
    return np.asarray(np.matmul(a, b)).astype(a.dtype, copy=False)


@op("Gemm", attrs=("alpha", "beta", "transA", "transB"))
def _gemm(node, a, b, c=None):
    dtype = a.dtype
    alpha, beta = node.attrs.get("alpha", 1.0), node.attrs.get("beta", 1.0)
    if node.attrs.get("transA", 0):
        a = a.T
    if node.attrs.get("transB", 0):
        b = b.T
    if a.ndim != 2 or b.ndim != 2:
        fail(node, f"Gemm needs 2-D A and B, got {a.shape} and {b.shape}")
    wa, wb = widened(a), widened(b)
    y = np.matmul(wa, wb)
    if dtype.kind == "f":
        if alpha != 1.0:
            y = y * y.dtype.type(alpha)
        if c is not None and beta != 0.0:
            y = y + widened(c).astype(y.dtype) * y.dtype.type(beta)
    elif alpha != 1.0 or (c is not None and beta not in (0.0, 1.0)):
        # integer Gemm with fractional alpha/beta: scaled in float64, truncated back
        y = y.astype(np.float64) * alpha
        if c is not None and beta != 0.0:
            y = y + c.astype(np.float64) * beta
    elif c is not None and beta != 0.0:
        y = y + c.astype(dtype)
    return y.astype(dtype, copy=False)


@op("Einsum", attrs=("equation",))
def _einsum(node, *xs):
    dtype = xs[0].dtype
    if dtype not in TENSOR_TYPES.values() or dtype == np.bool_:
        fail(node, f"input dtype {dtype} not supported")
    return np.asarray(np.einsum(node.attrs["equation"], *[widened(x) for x in xs])).astype(dtype)


@op("Det")
def _det(node, x):
    return np.linalg.det(widened(x)).astype(x.dtype)
