"""Shape and tensor movement: reshape, transpose, concatenation, split, slice, pad and
the other operators that move values without computing new ones."""
from __future__ import annotations

import math

import numpy as np

from ...validate import check_size, fail
from .common import check_known, ints, norm_axis, scalar
from .registry import op


@op("Reshape", attrs=("allowzero",))
def _reshape(node, x, shape):
    asked = shape = ints(shape)
    if not node.attrs.get("allowzero", 0):
        if any(d == 0 for d in shape[x.ndim:]):
            fail(node, f"shape {asked} copies (0) a dimension input shape {x.shape} does not have")
        shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    known = math.prod(d for d in shape if d != -1)
    if shape.count(-1) > 1 or any(d < -1 for d in shape) or \
            (x.size != known if -1 not in shape else known == 0 or x.size % known):
        fail(node, f"cannot reshape {x.shape} to {asked}")
    return x.reshape(shape)


@op("Flatten", attrs=("axis",))
def _flatten(node, x):
    axis = node.attrs.get("axis", 1)
    axis = axis + x.ndim if axis < 0 else axis
    if not 0 <= axis <= x.ndim:
        fail(node, f"axis {node.attrs.get('axis')} out of range for rank {x.ndim}")
    outer = int(np.prod(x.shape[:axis], dtype=np.int64))
    return x.reshape(outer, int(np.prod(x.shape[axis:], dtype=np.int64)))


@op("Transpose", attrs=("perm",))
def _transpose(node, x):
    perm = node.attrs.get("perm")
    return np.transpose(x, None if perm is None else [int(p) for p in perm])


@op("Concat", attrs=("axis",))
def _concat(node, *xs):
    xs = [x for x in xs if x is not None]
    axis = norm_axis(node, node.attrs["axis"], xs[0].ndim)
    return np.concatenate(xs, axis=axis)


@op("Squeeze")
def _squeeze(node, x, axes=None):
    if axes is None:
        return np.squeeze(x)
    axes = tuple(norm_axis(node, a, x.ndim) for a in ints(axes))
    if any(x.shape[a] != 1 for a in axes):
        fail(node, f"cannot squeeze axes {axes} of shape {x.shape}")
    return np.squeeze(x, axis=axes)


@op("Unsqueeze")
def _unsqueeze(node, x, axes):
    axes = ints(axes)
    rank = x.ndim + len(axes)
    axes = sorted(norm_axis(node, a, rank) for a in axes)
    if len(set(axes)) != len(axes):
        fail(node, f"repeated axes {axes}")
    shape = list(x.shape)
    for a in axes:
        shape.insert(a, 1)
    return x.reshape(shape)


@op("Shape", attrs=("start", "end"))
def _shape(node, x):
    r = x.ndim
    start, end = node.attrs.get("start", 0), node.attrs.get("end", r)
    start, end = (start + r if start < 0 else start), (end + r if end < 0 else end)
    start, end = min(max(start, 0), r), min(max(end, 0), r)
    return np.array(x.shape[start:end], np.int64)


@op("Size")
def _size(node, x):
    return np.array(x.size, np.int64)


@op("Expand")
def _expand(node, x, shape):
    shape = tuple(ints(shape))
    check_size(shape, node)   # before broadcasting (numpy's limit is 32 dimensions)
    try:
        out = np.broadcast_shapes(x.shape, shape)
    except ValueError:
        fail(node, f"cannot expand {x.shape} to {shape}")
    return np.array(np.broadcast_to(x, check_size(out, node)))


@op("Tile")
def _tile(node, x, repeats):
    reps = ints(repeats)
    if len(reps) != x.ndim:
        fail(node, f"repeats has {len(reps)} values for rank {x.ndim}")
    check_size([d * r for d, r in zip(x.shape, reps)], node)
    return np.tile(x, reps)


@op("Split", attrs=("axis", "num_outputs"))
def _split(node, x, split=None):
    axis = norm_axis(node, node.attrs.get("axis", 0), x.ndim)
    dim = x.shape[axis]
    n = len(node.outputs)
    if split is not None:
        sizes = ints(split)
    else:
        n = node.attrs.get("num_outputs", n)
        chunk = -(-dim // n)
        sizes = [min(chunk, max(dim - chunk * i, 0)) for i in range(n)]
    if sum(sizes) != dim:
        fail(node, f"split sizes {sizes} do not add up to dimension {dim}")
    return tuple(np.split(x, np.cumsum(sizes)[:-1], axis=axis))


def _slice_bounds(start, end, step, dim):
    if step == 0:
        raise ValueError("Slice step cannot be 0")
    start = start + dim if start < 0 else start
    end = end + dim if end < 0 else end
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
        return slice(start, end, step)
    start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
    return slice(start, end if end >= 0 else None, step)


@op("Slice")
def _slice(node, x, starts, ends, axes=None, steps=None):
    starts, ends = ints(starts), ints(ends)
    axes = list(range(len(starts))) if axes is None else [norm_axis(node, a, x.ndim) for a in ints(axes)]
    steps = [1] * len(starts) if steps is None else ints(steps)
    if len(set(axes)) != len(axes):
        fail(node, f"repeated axes {axes}")
    index = [slice(None)] * x.ndim
    for a, s, e, st in zip(axes, starts, ends, steps):
        index[a] = _slice_bounds(s, e, st, x.shape[a])
    return x[tuple(index)]


@op("DepthToSpace", attrs=("blocksize", "mode"), check=check_known(("mode", "DCR"), ("DCR", "CRD"), "mode"))
def _depth_to_space(node, x):
    b = node.attrs["blocksize"]
    n, c, h, w = x.shape
    if node.attrs.get("mode", "DCR") == "DCR":
        t = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    else:
        t = x.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    return t.reshape(n, c // (b * b), h * b, w * b)


@op("SpaceToDepth", attrs=("blocksize", "mode"), check=check_known(("mode", "DCR"), ("DCR", "CRD"), "mode"))
def _space_to_depth(node, x):
    b = node.attrs["blocksize"]
    n, c, h, w = x.shape
    t = x.reshape(n, c, h // b, b, w // b, b)
    t = t.transpose(0, 3, 5, 1, 2, 4) if node.attrs.get("mode", "DCR") == "DCR" else t.transpose(0, 1, 3, 5, 2, 4)
    return t.reshape(n, c * b * b, h // b, w // b)


@op("Pad", attrs=("mode",), check=check_known(("mode", "constant"), ("constant", "reflect", "edge", "wrap"),
                                              "mode"))
def _pad(node, x, pads, value=None, axes=None):
    r = x.ndim
    pads = ints(pads)
    axes = list(range(r)) if axes is None else [norm_axis(node, a, r) for a in ints(axes)]
    if len(pads) != 2 * len(axes):
        fail(node, f"pads has {len(pads)} values for {len(axes)} axes")
    width = [[0, 0] for _ in range(r)]
    for k, a in enumerate(axes):
        width[a] = [pads[k], pads[k + len(axes)]]
    # negative pads crop
    crop = tuple(slice(max(-b, 0), x.shape[i] - max(-e, 0)) for i, (b, e) in enumerate(width))
    x = x[crop]
    width = [(max(b, 0), max(e, 0)) for b, e in width]
    check_size([d + b + e for d, (b, e) in zip(x.shape, width)], node)
    mode = node.attrs.get("mode", "constant")
    if mode == "constant":
        v = scalar(value, 0)
        return np.pad(x, width, mode="constant", constant_values=np.asarray(v).astype(x.dtype))
    if x.size == 0 and any(b or e for b, e in width):
        fail(node, f"mode {mode!r} cannot pad an empty tensor")
    return np.pad(x, width, mode={"reflect": "reflect", "edge": "edge", "wrap": "wrap"}[mode])
