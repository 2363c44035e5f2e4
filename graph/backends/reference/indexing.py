"""Indexing: Gather and Scatter, NonZero, Compress, Trilu and OneHot."""
from __future__ import annotations

import numpy as np

from ...validate import check_size
from .common import check_known, norm_axis, scalar
from .registry import op


def _normalize_indices(node, idx, dim):
    idx = idx.astype(np.int64)
    idx = np.where(idx < 0, idx + dim, idx)
    if idx.size and (idx.min() < 0 or idx.max() >= dim):
        raise IndexError(f"node {node.name!r}: index out of range for a dimension of {dim}")
    return idx


@op("Gather", attrs=("axis",))
def _gather(node, x, indices):
    axis = norm_axis(node, node.attrs.get("axis", 0), x.ndim)
    return np.take(x, _normalize_indices(node, indices, x.shape[axis]), axis=axis)


@op("GatherElements", attrs=("axis",))
def _gather_elements(node, x, indices):
    axis = norm_axis(node, node.attrs.get("axis", 0), x.ndim)
    return np.take_along_axis(x, _normalize_indices(node, indices, x.shape[axis]), axis=axis)


@op("GatherND", attrs=("batch_dims",))
def _gather_nd(node, x, indices):
    b = node.attrs.get("batch_dims", 0)
    k = indices.shape[-1]
    batch = x.shape[:b]
    out_shape = indices.shape[:-1] + x.shape[b + k:]
    nb = int(np.prod(batch, dtype=np.int64))
    xr = x.reshape((nb,) + x.shape[b:])
    ir = indices.reshape((nb, -1, k)).astype(np.int64)
    dims = np.array(x.shape[b:b + k], np.int64)
    ir = np.where(ir < 0, ir + dims, ir)
    if ir.size and (np.any(ir < 0) or np.any(ir >= dims)):
        raise IndexError(f"node {node.name!r}: GatherND index out of range")
    parts = [xr[i][tuple(ir[i].T)] for i in range(nb)]
    return np.stack(parts).reshape(out_shape) if parts else np.zeros(out_shape, x.dtype)


_REDUCTIONS = ("none", "add", "mul", "max", "min")
_UFUNC = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


@op("ScatterElements", attrs=("axis", "reduction"),
    check=check_known(("reduction", "none"), _REDUCTIONS, "reduction"))
def _scatter_elements(node, x, indices, updates):
    axis = norm_axis(node, node.attrs.get("axis", 0), x.ndim)
    idx = _normalize_indices(node, indices, x.shape[axis])
    out = x.copy()
    full = list(np.indices(idx.shape, sparse=False))
    full[axis] = idx
    reduction = node.attrs.get("reduction", "none")
    if reduction == "none":
        out[tuple(full)] = updates
    else:
        _UFUNC[reduction].at(out, tuple(full), updates)
    return out


@op("ScatterND", attrs=("reduction",), check=check_known(("reduction", "none"), _REDUCTIONS, "reduction"))
def _scatter_nd(node, x, indices, updates):
    out = x.copy()
    k = indices.shape[-1]
    idx = indices.reshape(-1, k).astype(np.int64)
    idx = np.where(idx < 0, idx + np.array(x.shape[:k]), idx)
    upd = updates.reshape((idx.shape[0],) + x.shape[k:])
    reduction = node.attrs.get("reduction", "none")
    for i in range(idx.shape[0]):
        t = tuple(idx[i])
        out[t] = upd[i] if reduction == "none" else _UFUNC[reduction](out[t], upd[i])
    return out


@op("NonZero")
def _nonzero(node, x):
    return np.array(np.nonzero(x), np.int64).reshape(x.ndim, -1)


@op("Compress", attrs=("axis",))
def _compress(node, x, cond):
    axis = node.attrs.get("axis")
    if axis is None:
        return np.compress(cond.reshape(-1), x.reshape(-1))
    return np.compress(cond.reshape(-1), x, axis=norm_axis(node, axis, x.ndim))


@op("Trilu", attrs=("upper",))
def _trilu(node, x, k=None):
    k = int(scalar(k, 0))
    return np.triu(x, k) if node.attrs.get("upper", 1) else np.tril(x, k)


@op("OneHot", attrs=("axis",))
def _one_hot(node, indices, depth, values):
    depth = int(scalar(depth))
    check_size(indices.shape + (depth,), node)
    idx = indices.astype(np.int64)
    idx = np.where(idx < 0, idx + depth, idx)
    axis = node.attrs.get("axis", -1)
    rank = indices.ndim + 1
    axis = norm_axis(node, axis, rank)
    hot = np.arange(depth).reshape([depth if i == axis else 1 for i in range(rank)])
    mask = np.expand_dims(idx, axis) == hot
    return np.where(mask, values[1], values[0]).astype(values.dtype)
