"""Reductions along axes: Reduce*, ArgMax/ArgMin, CumSum, TopK."""
from __future__ import annotations

import numpy as np

from ...validate import fail
from .common import highest, ints, lowest, norm_axis, scalar, widened
from .registry import op


def _reduce_axes(node, x, axes_input):
    axes = node.attrs.get("axes") if axes_input is None else ints(axes_input)
    if axes is None or len(axes) == 0:
        if node.attrs.get("noop_with_empty_axes", 0):
            return None
        return tuple(range(x.ndim))
    return tuple(sorted({norm_axis(node, int(a), x.ndim) for a in axes}))


def _reduction(name, fn, empty=None, float_work=True):
    def impl(node, x, axes=None):
        ax = _reduce_axes(node, x, axes)
        if ax is None:
            return x
        keep = bool(node.attrs.get("keepdims", 1))
        w = widened(x) if float_work else x
        if empty is not None and any(x.shape[a] == 0 for a in ax):
            shape = tuple(1 if i in ax else d for i, d in enumerate(x.shape)) if keep else \
                tuple(d for i, d in enumerate(x.shape) if i not in ax)
            return np.full(shape, empty(x.dtype), dtype=x.dtype)
        y = fn(w, ax, keep)
        return np.asarray(y).astype(x.dtype, copy=False)
    op(name, attrs=("axes", "keepdims", "noop_with_empty_axes"))(impl)


def _logsumexp(x, ax, keep):
    m = np.max(x, axis=ax, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    y = np.log(np.sum(np.exp(x - m), axis=ax, keepdims=True)) + m
    return y if keep else np.squeeze(y, axis=ax)


_reduction("ReduceSum", lambda x, ax, k: np.sum(x, axis=ax, keepdims=k))
_reduction("ReduceMean", lambda x, ax, k: np.mean(x, axis=ax, keepdims=k))
_reduction("ReduceProd", lambda x, ax, k: np.prod(x, axis=ax, keepdims=k))
_reduction("ReduceMax", lambda x, ax, k: np.max(x, axis=ax, keepdims=k), empty=lowest, float_work=False)
_reduction("ReduceMin", lambda x, ax, k: np.min(x, axis=ax, keepdims=k), empty=highest, float_work=False)
_reduction("ReduceL1", lambda x, ax, k: np.sum(np.abs(x), axis=ax, keepdims=k))
_reduction("ReduceL2", lambda x, ax, k: np.sqrt(np.sum(np.square(x), axis=ax, keepdims=k)))
_reduction("ReduceSumSquare", lambda x, ax, k: np.sum(np.square(x), axis=ax, keepdims=k))
_reduction("ReduceLogSum", lambda x, ax, k: np.log(np.sum(x, axis=ax, keepdims=k)))
_reduction("ReduceLogSumExp", _logsumexp, empty=lambda dt: -np.inf)


def _arg(name, fn):
    def impl(node, x):
        axis = norm_axis(node, node.attrs.get("axis", 0), x.ndim)
        if node.attrs.get("select_last_index", 0):
            y = x.shape[axis] - 1 - fn(np.flip(x, axis), axis=axis)
        else:
            y = fn(x, axis=axis)
        y = np.asarray(y, np.int64)
        return np.expand_dims(y, axis) if node.attrs.get("keepdims", 1) else y
    op(name, attrs=("axis", "keepdims", "select_last_index"))(impl)


_arg("ArgMax", np.argmax)
_arg("ArgMin", np.argmin)


@op("CumSum", attrs=("exclusive", "reverse"))
def _cumsum(node, x, axis):
    axis = norm_axis(node, int(scalar(axis)), x.ndim)
    w = widened(x)
    if node.attrs.get("reverse", 0):
        w = np.flip(w, axis)
    y = np.cumsum(w, axis=axis, dtype=w.dtype)
    if node.attrs.get("exclusive", 0):
        y = np.concatenate([np.zeros_like(np.take(y, [0], axis=axis)), np.take(y, range(y.shape[axis] - 1),
                                                                               axis=axis)], axis=axis)
    if node.attrs.get("reverse", 0):
        y = np.flip(y, axis)
    return y.astype(x.dtype)


@op("TopK", attrs=("axis", "largest", "sorted"))
def _topk(node, x, k):
    k = int(scalar(k))
    axis = norm_axis(node, node.attrs.get("axis", -1), x.ndim)
    n = x.shape[axis]
    if not 0 <= k <= n:
        fail(node, f"k={k} is outside [0, {n}]")
    if node.attrs.get("largest", 1):
        # descending by value, ties by ascending index: a stable ascending sort of the
        # reversed array, read backwards
        order = n - 1 - np.flip(np.argsort(np.flip(x, axis), axis=axis, kind="stable"), axis)
    else:
        order = np.argsort(x, axis=axis, kind="stable")
    idx = np.take(order, range(k), axis=axis)
    return np.take_along_axis(x, idx, axis=axis), idx.astype(np.int64)
