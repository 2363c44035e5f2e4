"""Convolution and pooling (N, C, spatial...) through one window gather
(:func:`convolve` serves the integer convolutions of :mod:`.quantized` too)."""
from __future__ import annotations

import itertools

import numpy as np

from ...validate import check_size, fail
from .common import all_checks, channel_shape, check_known, compute_dtype, lowest, require_float, widened
from .registry import op


_AUTO_PAD = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")
check_auto_pad = check_known(("auto_pad", "NOTSET"), _AUTO_PAD, "auto_pad")
CONV_ATTRS = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")


def _geometry(node, in_sp, kernel, ceil_mode=False):
    """(strides, dilations, pads_begin, pads_end, out) of a convolution or pooling window."""
    n = len(in_sp)
    strides = list(node.attrs.get("strides") or [1] * n)
    dil = list(node.attrs.get("dilations") or [1] * n)
    pads = list(node.attrs.get("pads") or [0] * (2 * n))
    if len(strides) != n or len(dil) != n or len(pads) != 2 * n or len(kernel) != n:
        fail(node, f"strides/dilations/pads/kernel do not match {n} spatial dimension(s)")
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    begin, end, out = pads[:n], pads[n:], []
    for i in range(n):
        dk = (kernel[i] - 1) * dil[i] + 1
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            o = -(-in_sp[i] // strides[i])
            total = max(0, (o - 1) * strides[i] + dk - in_sp[i])
            begin[i] = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
            end[i] = total - begin[i]
        elif auto_pad == "VALID":
            begin[i] = end[i] = 0
        span = in_sp[i] + begin[i] + end[i] - dk
        if ceil_mode and auto_pad not in ("SAME_UPPER", "SAME_LOWER", "VALID"):
            # (with auto_pad the specification's ceil_mode shapes equal the floor ones)
            o = -(-span // strides[i]) + 1
            if (o - 1) * strides[i] >= in_sp[i] + begin[i]:   # the last window must start inside
                o -= 1
        else:
            o = span // strides[i] + 1
        out.append(max(o, 0))
    return strides, dil, begin, end, out


def _padded(x, begin, end, out, strides, dil, kernel, fill):
    """x padded with ``fill``: ``begin`` before, enough after for every window (at least
    ``end``, and more for ceil_mode windows running past it); in x's memory order."""
    width = [(0, 0), (0, 0)]
    for i in range(len(begin)):
        need = (out[i] - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1 if out[i] else 0
        width.append((begin[i], max(end[i], need - begin[i] - x.shape[2 + i], 0)))
    if all(w == (0, 0) for w in width):
        return x
    shape = tuple(n + a + b for n, (a, b) in zip(x.shape, width))
    if x.ndim == 4 and not x.flags.c_contiguous and x.transpose(0, 2, 3, 1).flags.c_contiguous:   # NHWC memory
        xp = np.full((shape[0], shape[2], shape[3], shape[1]), fill, x.dtype).transpose(0, 3, 1, 2)
    else:
        xp = np.full(shape, fill, x.dtype)
    xp[(slice(None), slice(None)) + tuple(slice(a, a + n) for (a, _), n in zip(width[2:], x.shape[2:]))] = x
    return xp


def _windows(xp, kernel, strides, dil, out):
    """(N, C, prod(kernel), *out) view-copies of the windows of padded ``xp``."""
    n, c = xp.shape[:2]
    cols = np.empty((n, c, int(np.prod(kernel, dtype=np.int64))) + tuple(out), xp.dtype)
    for j, offs in enumerate(itertools.product(*[range(k) for k in kernel])):
        index = tuple(slice(o * d, o * d + s * (m - 1) + 1, s) for o, d, s, m in zip(offs, dil, strides, out))
        cols[:, :, j] = xp[(slice(None), slice(None)) + index]
    return cols


def convolve(node, x, w, fill=0):
    """Convolution of x (N, C, *sp) by w (M, C/group, *k) in x's dtype (float32/float64:
    BLAS; integer data is passed as float64 holding exact small integers)."""
    if x.ndim < 3 or w.ndim != x.ndim:
        fail(node, f"Conv needs X (N, C, ...) and W of the same rank, got {x.shape} and {w.shape}")
    kernel = list(node.attrs.get("kernel_shape") or w.shape[2:])
    if list(kernel) != list(w.shape[2:]):
        fail(node, f"kernel_shape {kernel} does not match W {w.shape}")
    group = node.attrs.get("group", 1)
    n, c = x.shape[:2]
    m = w.shape[0]
    if c != w.shape[1] * group or m % group:
        fail(node, f"channels do not match: X {x.shape}, W {w.shape}, group {group}")
    strides, dil, begin, end, out = _geometry(node, x.shape[2:], kernel)
    xp = _padded(x, begin, end, out, strides, dil, kernel, fill)
    cols = _windows(xp, kernel, strides, dil, out)                     # N, C, K, *out
    cols = cols.reshape(n, group, (c // group) * cols.shape[2], -1)    # N, g, C/g*K, O
    wr = w.reshape(group, m // group, -1)                              # g, M/g, C/g*K
    y = np.matmul(wr[None], cols)                                      # N, g, M/g, O
    return y.reshape((n, m) + tuple(out))


@op("Conv", attrs=CONV_ATTRS, check=check_auto_pad)
def _conv_op(node, x, w, b=None):
    require_float(node, x)
    y = convolve(node, widened(x), widened(w).astype(compute_dtype(x.dtype)))
    if b is not None:
        y = y + channel_shape(y, b).astype(y.dtype)
    return y.astype(x.dtype)


def _transpose_geometry(node, in_sp, kernel):
    """(strides, dilations, pads_begin, out) of a transposed convolution: its output
    before cropping has ``s*(in-1) + output_padding + (k-1)*d + 1`` positions; explicit
    pads crop it, output_shape or SAME_UPPER/SAME_LOWER (target ``in*s``) set the pads
    (the odd one at the end for SAME_UPPER, at the start otherwise, as the specification
    says); a pad may be negative there (an output_shape larger than the full output)."""
    n = len(in_sp)
    strides = list(node.attrs.get("strides") or [1] * n)
    dil = list(node.attrs.get("dilations") or [1] * n)
    pads = list(node.attrs.get("pads") or [0] * (2 * n))
    extra = list(node.attrs.get("output_padding") or [0] * n)
    target = node.attrs.get("output_shape")
    if len(strides) != n or len(dil) != n or len(pads) != 2 * n or len(extra) != n or len(kernel) != n \
            or (target is not None and len(target) != n):
        fail(node, f"strides/dilations/pads/output_padding/output_shape/kernel do not match {n} spatial dimension(s)")
    if any(not 0 <= e < max(s, d) for e, s, d in zip(extra, strides, dil)):   # as the specification, PyTorch
        fail(node, f"output_padding {extra} must be at least 0 and smaller than the stride or the dilation")
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    full = [s * (i - 1) + e + (k - 1) * d + 1 for s, i, e, k, d in zip(strides, in_sp, extra, kernel, dil)]
    if target is None and auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        target = [i * s for i, s in zip(in_sp, strides)]
    if target is not None:
        total = [f - t for f, t in zip(full, target)]
        begin = [t // 2 if auto_pad == "SAME_UPPER" else t - t // 2 for t in total]
        end = [t - b for t, b in zip(total, begin)]
    elif auto_pad == "VALID":
        begin = end = [0] * n
    else:
        begin, end = pads[:n], pads[n:]
    out = [f - b - e for f, b, e in zip(full, begin, end)]
    if min(out, default=1) < 1:
        fail(node, f"the output would have spatial shape {out}")
    return strides, dil, begin, out


@op("ConvTranspose", attrs=CONV_ATTRS + ("output_padding", "output_shape"), check=check_auto_pad)
def _conv_transpose(node, x, w, b=None):
    """X (N, C, *sp) by W (C, M/group, *k): each input position adds W times its value
    into the output at ``position * stride + tap * dilation - pad``; one product gives
    every tap's contribution (columns), then one strided add per kernel tap."""
    require_float(node, x)
    if x.ndim < 3 or w.ndim != x.ndim:
        fail(node, f"ConvTranspose needs X (N, C, ...) and W of the same rank, got {x.shape} and {w.shape}")
    kernel = list(w.shape[2:])
    if list(node.attrs.get("kernel_shape") or kernel) != kernel:
        fail(node, f"kernel_shape {node.attrs['kernel_shape']} does not match W {w.shape}")
    group = node.attrs.get("group", 1)
    n, c = x.shape[:2]
    if c != w.shape[0] or c % group:
        fail(node, f"channels do not match: X {x.shape}, W {w.shape}, group {group}")
    m = w.shape[1] * group
    if b is not None and b.size != m:
        fail(node, f"B has {b.size} values for {m} output channels")
    in_sp = x.shape[2:]
    strides, dil, begin, out = _transpose_geometry(node, in_sp, kernel)
    check_size((n, m) + tuple(out), node)
    dtype = compute_dtype(x.dtype)
    taps = int(np.prod(kernel, dtype=np.int64))
    size = int(np.prod(in_sp, dtype=np.int64))
    wt = widened(w).astype(dtype).reshape(group, c // group, m // group * taps).transpose(0, 2, 1)   # g, M/g*K, C/g
    cols = np.matmul(wt[None], widened(x).reshape(n, group, c // group, size))                      # N, g, M/g*K, L
    cols = cols.reshape((n, m, taps) + tuple(in_sp))
    y = np.zeros((n, m) + tuple(out), dtype)
    for j, offs in enumerate(itertools.product(*[range(k) for k in kernel])):
        dst, src = [], []
        for s, d, o, p, size, length in zip(strides, dil, offs, begin, in_sp, out):
            shift = o * d - p                        # input position a lands on a*s + shift
            lo, hi = max(0, -(shift // s)), min(size, -((shift - length) // s))   # 0 <= a*s + shift < length
            dst.append(slice(lo * s + shift, (hi - 1) * s + shift + 1, s) if hi > lo else slice(0, 0))
            src.append(slice(lo, max(hi, lo)))
        y[(slice(None), slice(None)) + tuple(dst)] += cols[(slice(None), slice(None), j) + tuple(src)]
    if b is not None:
        y += channel_shape(y, b).astype(dtype)
    return y.astype(x.dtype, copy=False)


_POOL_ATTRS = ("auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "strides")


def _pool_setup(node, x):
    if x.ndim < 3:
        fail(node, f"pooling needs (N, C, ...) input, got shape {x.shape}")
    kernel = list(node.attrs["kernel_shape"])
    return (kernel,) + _geometry(node, x.shape[2:], kernel, bool(node.attrs.get("ceil_mode", 0)))


@op("MaxPool", attrs=_POOL_ATTRS + ("storage_order",),
    check=all_checks(check_auto_pad, check_known(("storage_order", 0), (0, 1), "storage_order")))
def _max_pool(node, x):
    kernel, strides, dil, begin, end, out = _pool_setup(node, x)
    xp = _padded(x, begin, end, out, strides, dil, kernel, lowest(x.dtype))
    if len(node.outputs) < 2 or not node.outputs[1]:
        # the maximum tap by tap, in place: no (N, C, taps, *out) copy of the windows; in
        # the memory order of x (an NCHW view of NHWC memory, as convolutions leave it,
        # stays one: ResNet-18's 3x3 pool 7.4 -> 0.9 ms). NaN propagates as through np.max
        order = np.argsort(xp.strides)[::-1] if xp.ndim == 4 else np.arange(xp.ndim)
        xm = xp.transpose(order)                              # the axes as they lie in memory
        y = None
        for offs in itertools.product(*[range(k) for k in kernel]):
            index = (slice(None), slice(None)) + tuple(slice(o * d, o * d + s * (m - 1) + 1, s)
                                                        for o, d, s, m in zip(offs, dil, strides, out))
            tap = xm[tuple(index[a] for a in order)]
            y = np.array(tap) if y is None else np.maximum(y, tap, out=y)
        return y.transpose(np.argsort(order))
    cols = _windows(xp, kernel, strides, dil, out)
    y = np.max(cols, axis=2)
    # Indices: flat positions in X (N, C, *spatial), row-major (storage_order 0) or
    # column-major spatial (1); the first maximum of a window when several tie
    j = np.argmax(cols, axis=2)                                   # N, C, *out
    offs = np.array(list(itertools.product(*[range(k) for k in kernel])), np.int64)   # K, nsp
    sp = x.shape[2:]
    flat = np.zeros(j.shape, np.int64)
    colmajor = node.attrs.get("storage_order", 0) == 1
    stride_elems = [int(np.prod(sp[i + 1:], dtype=np.int64)) for i in range(len(sp))] if not colmajor else \
        [int(np.prod(sp[:i], dtype=np.int64)) for i in range(len(sp))]
    for i in range(len(sp)):
        o = np.arange(out[i]).reshape([-1 if a == i else 1 for a in range(len(sp))])
        pos = o * strides[i] - begin[i] + offs[j, i] * dil[i]
        flat += pos * stride_elems[i]
    nc = np.arange(x.shape[0] * x.shape[1]).reshape(x.shape[:2] + (1,) * len(sp))
    return y, flat + nc * int(np.prod(sp, dtype=np.int64))


@op("AveragePool", attrs=_POOL_ATTRS + ("count_include_pad",), check=check_auto_pad)
def _average_pool(node, x):
    require_float(node, x)
    kernel, strides, dil, begin, end, out = _pool_setup(node, x)
    w = widened(x)
    xp = _padded(w, begin, end, out, strides, dil, kernel, 0)
    total = np.sum(_windows(xp, kernel, strides, dil, out), axis=2)
    # the divisor: window positions inside X, or inside X and its explicit pads
    # (count_include_pad=1); positions past the pads (ceil_mode) never count
    ones = np.ones((1, 1) + x.shape[2:], w.dtype)
    if node.attrs.get("count_include_pad", 0):
        ones = np.pad(ones, [(0, 0), (0, 0)] + list(zip(begin, end)), constant_values=1)
        mask = _padded(ones, [0] * len(begin), [0] * len(begin), out, strides, dil, kernel, 0)
    else:
        mask = _padded(ones, begin, end, out, strides, dil, kernel, 0)
    count = np.sum(_windows(mask, kernel, strides, dil, out), axis=2)
    return (total / count).astype(x.dtype)


@op("GlobalAveragePool")
def _global_average_pool(node, x):
    require_float(node, x)
    return np.mean(widened(x), axis=tuple(range(2, x.ndim)), keepdims=True).astype(x.dtype)


@op("GlobalMaxPool")
def _global_max_pool(node, x):
    return np.max(x, axis=tuple(range(2, x.ndim)), keepdims=True)
