"""Normalization: BatchNormalization, Instance/Layer/RMS/Group/Lp normalization, LRN."""
from __future__ import annotations

import numpy as np

from ...validate import fail
from .common import channel_shape, check_known, norm_axis, require_float, type_name, widened
from .registry import op


@op("BatchNormalization", attrs=("epsilon", "momentum", "training_mode"))
def _batch_norm(node, x, scale, bias, mean, var):
    require_float(node, x)
    eps = node.attrs.get("epsilon", 1e-5)
    w = widened(x)
    wd = w.dtype
    s, b = (channel_shape(x, v).astype(wd) for v in (scale, bias))
    if node.attrs.get("training_mode", 0):
        axes = tuple(i for i in range(x.ndim) if i != 1)
        m, v = np.mean(w, axis=axes), np.var(w, axis=axes)
        mom = node.attrs.get("momentum", 0.9)
        y = (w - channel_shape(x, m)) / np.sqrt(channel_shape(x, v) + wd.type(eps)) * s + b
        run_m = mean.astype(wd) * wd.type(mom) + m * wd.type(1 - mom)
        run_v = var.astype(wd) * wd.type(mom) + v * wd.type(1 - mom)
        return y.astype(x.dtype), run_m.astype(mean.dtype), run_v.astype(var.dtype)
    if len([o for o in node.outputs if o]) > 1:
        fail(node, "running mean/var outputs exist only with training_mode=1")
    m, v = (channel_shape(x, t).astype(wd) for t in (mean, var))
    return ((w - m) / np.sqrt(v + wd.type(eps)) * s + b).astype(x.dtype)


@op("InstanceNormalization", attrs=("epsilon",))
def _instance_norm(node, x, scale, bias):
    require_float(node, x)
    w = widened(x)
    axes = tuple(range(2, x.ndim))
    m = np.mean(w, axis=axes, keepdims=True)
    v = np.mean(np.square(w - m), axis=axes, keepdims=True)
    y = (w - m) / np.sqrt(v + w.dtype.type(node.attrs.get("epsilon", 1e-5)))
    return (y * channel_shape(x, scale).astype(w.dtype) + channel_shape(x, bias).astype(w.dtype)).astype(x.dtype)


def _stash_check(node, graph):
    st = node.attrs.get("stash_type", 1)
    return None if st == 1 else f"stash_type {type_name(st)} not supported (float only)"


@op("LayerNormalization", attrs=("axis", "epsilon", "stash_type"), check=_stash_check)
def _layer_norm(node, x, scale, bias=None):
    require_float(node, x)
    axis = norm_axis(node, node.attrs.get("axis", -1), x.ndim)
    axes = tuple(range(axis, x.ndim))
    w = x.astype(np.float64) if x.dtype == np.float64 else x.astype(np.float32)
    m = np.mean(w, axis=axes, keepdims=True)
    d = w - m
    inv = 1 / np.sqrt(np.mean(d * d, axis=axes, keepdims=True) + w.dtype.type(node.attrs.get("epsilon", 1e-5)))
    y = d * inv * scale.astype(w.dtype)
    if bias is not None:
        y = y + bias.astype(w.dtype)
    stash = np.float64 if x.dtype == np.float64 else np.float32
    return y.astype(x.dtype), m.astype(stash), inv.astype(stash)


@op("RMSNormalization", attrs=("axis", "epsilon", "stash_type"), check=_stash_check)
def _rms_norm(node, x, scale):
    require_float(node, x)
    axis = norm_axis(node, node.attrs.get("axis", -1), x.ndim)
    axes = tuple(range(axis, x.ndim))
    w = x.astype(np.float64) if x.dtype == np.float64 else x.astype(np.float32)
    rms = np.sqrt(np.mean(w * w, axis=axes, keepdims=True) + w.dtype.type(node.attrs.get("epsilon", 1e-5)))
    return (w / rms * scale.astype(w.dtype)).astype(x.dtype)


@op("GroupNormalization", attrs=("num_groups", "epsilon", "stash_type"), check=_stash_check)
def _group_norm(node, x, scale, bias):
    require_float(node, x)
    g = node.attrs["num_groups"]
    n, c = x.shape[:2]
    w = widened(x).reshape(n, g, -1)
    m = np.mean(w, axis=2, keepdims=True)
    v = np.mean(np.square(w - m), axis=2, keepdims=True)
    y = ((w - m) / np.sqrt(v + w.dtype.type(node.attrs.get("epsilon", 1e-5)))).reshape(x.shape)
    if scale.size == g and g != c:   # opset 18: one scale/bias per group
        scale, bias = np.repeat(scale, c // g), np.repeat(bias, c // g)
    return (y * channel_shape(x, scale).astype(y.dtype) + channel_shape(x, bias).astype(y.dtype)).astype(x.dtype)


@op("LpNormalization", attrs=("axis", "p"), check=check_known(("p", 2), (1, 2), "p"))
def _lp_norm(node, x):
    axis = norm_axis(node, node.attrs.get("axis", -1), x.ndim)
    w = widened(x)
    if node.attrs.get("p", 2) == 1:
        norm = np.sum(np.abs(w), axis=axis, keepdims=True)
    else:
        norm = np.sqrt(np.sum(w * w, axis=axis, keepdims=True))
    return np.where(norm == 0, 0, w / norm).astype(x.dtype)


@op("LRN", attrs=("alpha", "beta", "bias", "size"))
def _lrn(node, x):
    require_float(node, x)
    size = node.attrs["size"]
    alpha, beta, bias = (node.attrs.get(k, d) for k, d in (("alpha", 1e-4), ("beta", 0.75), ("bias", 1.0)))
    w = widened(x)
    sq = np.square(w)
    c = x.shape[1]
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    padded = np.pad(sq, [(0, 0), (lo, hi)] + [(0, 0)] * (x.ndim - 2))
    s = sum(padded[:, i:i + c] for i in range(size))
    return (w / (bias + alpha / size * s) ** beta).astype(x.dtype)
