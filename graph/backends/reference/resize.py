"""Resize (opset 13 on, with the attributes opsets 18 and 19 added): separable, one axis
at a time; along an axis every output position reads a few input positions (1 for
nearest, 2 for linear, 4 for cubic, more when antialiasing shrinks), so an axis is a
few ``np.take`` gathers weighted per output position.

The semantics are those of ``onnx.reference`` (which made the ONNX node tests' expected
values): output sizes ``floor(input * scale)`` without the roi factor the specification's
text mentions, a source coordinate in float64 from the fractional output length
``input * scale`` when ``scales`` are given (the exact output length when ``sizes`` are),
border taps clamped to the edge, an extrapolated position (tf_crop_and_resize) set to
``extrapolation_value`` when any of its axes falls outside. Two places follow the
specification's text and ONNX Runtime instead: ``pytorch_half_pixel`` maps an output of
length 1 to source coordinate 0 (onnx.reference: -0.5 and a fractional length, which
changes cubic and downscaled results), and ``antialias`` leaves nearest unaffected
(onnx.reference raises). The taps of a source coordinate and their weights come from
the same value (onnx.reference chooses the taps after adding its padding, which can
round a coordinate an ulp above an integer onto it, and weights them by the unrounded
fraction).

Models older than opset 13 arrive converted (graph.model.upgrade_opset): an opset 11-12
``tf_half_pixel_for_nn`` (``(x + 0.5) / scale``), which the converter keeps, runs; an
opset-10 Resize, whose asymmetric coordinates the converter drops, is refused.
"""
from __future__ import annotations

import numpy as np

from ...model import CONVERTED_KEY
from ...validate import check_size, fail
from .common import FLOAT_TYPES, all_checks, check_known, compute_dtype, ints
from .registry import op

_MODES = ("nearest", "linear", "cubic")
_COORDS = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
           "tf_crop_and_resize")
_NEAREST = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
_POLICIES = ("stretch", "not_larger", "not_smaller")


def _check_coords(node, graph):
    """The coordinate mode, against the opset the model was written for (it is converted
    to 13 at load, see graph.model.upgrade_opset)."""
    coords = node.attrs.get("coordinate_transformation_mode")
    try:
        old = int(graph.metadata.get(CONVERTED_KEY, 99)) if graph is not None else 99
    except ValueError:
        old = 99
    if coords is None and old <= 10:
        # onnx.version_converter makes an opset-10 Resize (asymmetric coordinates) an
        # opset-11 one without the attribute, i.e. half_pixel: other values
        return (f"a Resize converted from opset {old} by onnx.version_converter, which drops its asymmetric "
                "coordinates (the opset-10 semantics); re-export the model at opset 11 or later")
    if coords == "tf_half_pixel_for_nn" and old <= 12:   # opsets 11-12 had it; the converter keeps it
        return None
    return check_known(("coordinate_transformation_mode", "half_pixel"), _COORDS,
                       "coordinate_transformation_mode")(node, graph)


_CHECK = all_checks(
    check_known(("mode", "nearest"), _MODES, "mode"),
    _check_coords,
    check_known(("nearest_mode", "round_prefer_floor"), _NEAREST, "nearest_mode"),
    check_known(("keep_aspect_ratio_policy", "stretch"), _POLICIES, "keep_aspect_ratio_policy"),
    check_known(("antialias", 0), (0, 1), "antialias"),
    check_known(("exclude_outside", 0), (0, 1), "exclude_outside"))


def _given(v):
    """An optional input that is present and not empty (opset 13 writes an empty
    ``scales`` when ``sizes`` are used)."""
    return v is not None and np.asarray(v).size > 0


def _geometry(node, shape, roi, scales, sizes):
    """Per axis of X: (output length, scale, fractional output length, roi start, end)."""
    r = len(shape)
    axes = list(range(r))
    if "axes" in node.attrs:
        axes = node.attrs["axes"]
        if any(not -r <= a < r for a in axes) or len({a % r for a in axes}) != len(axes):
            fail(node, f"axes {axes} must be distinct and within [-{r}, {r - 1}]")
        axes = [a % r for a in axes]
    if _given(scales) == _given(sizes):
        fail(node, "exactly one of scales and sizes must be given (non-empty)")
    given = np.asarray(scales if _given(scales) else sizes).reshape(-1)
    if given.size != len(axes):
        fail(node, f"{'scales' if _given(scales) else 'sizes'} has {given.size} values for {len(axes)} axes")
    out, scale, width = list(shape), [1.0] * r, [float(d) for d in shape]
    if _given(scales):
        for a, s in zip(axes, given.astype(np.float64)):
            if not s > 0 or not np.isfinite(s):
                fail(node, f"scales must be positive and finite, got {given.tolist()}")
            scale[a], width[a] = float(s), float(s) * shape[a]
            out[a] = int(np.floor(width[a]))
    else:
        want = ints(given)
        if min(want) < 0:
            fail(node, f"sizes must not be negative, got {want}")
        policy = node.attrs.get("keep_aspect_ratio_policy", "stretch")
        if policy == "stretch":
            for a, n in zip(axes, want):
                out[a], width[a] = n, float(n)
                scale[a] = n / shape[a] if shape[a] else 1.0
        else:   # one scale for all axes, each length rounded half up
            ratios = [n / shape[a] for a, n in zip(axes, want) if shape[a]]
            s = (min if policy == "not_larger" else max)(ratios) if ratios else 1.0
            for a in axes:
                scale[a], width[a] = s, s * shape[a]
                out[a] = int(np.floor(width[a] + 0.5))
    start, end = [0.0] * r, [1.0] * r
    if node.attrs.get("coordinate_transformation_mode") == "tf_crop_and_resize":
        if not _given(roi) or np.asarray(roi).size != 2 * len(axes):
            fail(node, f"tf_crop_and_resize needs roi with {2 * len(axes)} values (starts, then ends)")
        v = np.asarray(roi, np.float64).reshape(-1)
        for k, a in enumerate(axes):
            start[a], end[a] = float(v[k]), float(v[len(axes) + k])
    for a in range(r):
        if shape[a] == 0 and out[a] > 0:
            fail(node, f"axis {a} of X is empty and cannot be resized to {out[a]}")
    check_size(out, node)
    return list(zip(out, scale, width, start, end))


def _source(mode, n_in, n_out, scale, width, start, end):
    """The float64 source coordinate of each output position along one axis."""
    x = np.arange(n_out, dtype=np.float64)
    if mode == "half_pixel":
        return (x + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":   # the output's centre on the input's centre
        return n_in / 2 * (1 - n_out / width) + (x + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (x + 0.5) / scale - 0.5 if n_out > 1 else np.zeros(n_out)
    if mode == "align_corners":
        return x * (n_in - 1) / (width - 1) if width != 1 else np.zeros(n_out)
    if mode == "asymmetric":
        return x / scale
    if mode == "tf_half_pixel_for_nn":
        return (x + 0.5) / scale
    # tf_crop_and_resize
    if width == 1:
        return np.full(n_out, (end - start) * (n_in - 1) / 2 + start * (n_in - 1))
    return x * (end - start) * (n_in - 1) / (width - 1) + start * (n_in - 1)


def _nearest_index(x, mode):
    fl = np.floor(x)
    if mode == "floor":
        return fl
    if mode == "ceil":
        return np.ceil(x)
    frac = x - fl   # halves go down (round_prefer_floor) or up
    return np.where(frac > 0.5, fl + 1, fl) if mode == "round_prefer_floor" else np.where(frac >= 0.5, fl + 1, fl)


def _cubic(t, a):
    t = np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def _taps(node, x, n_in, scale):
    """(input index, weight) pairs along one axis for linear/cubic: tap ``i`` of output
    ``o`` reads ``base + i`` (``base = ceil(x) - 1``, so an integer ``x`` is the right
    neighbour of its pair, as onnx.reference has it), weighted by the kernel at
    ``(base + i - x) * s`` with ``s = min(scale, 1)`` when antialiasing, else 1."""
    cubic = node.attrs.get("mode") == "cubic"
    antialias = node.attrs.get("antialias", 0) == 1
    s = min(scale, 1.0) if antialias else 1.0
    support = 2.0 if cubic else 1.0
    first = int(np.floor(-support / s) + 1)          # taps first .. 1 - first
    base = np.ceil(x) - 1
    offsets = np.arange(first, 2 - first, dtype=np.float64)
    idx = base[:, None] + offsets[None, :]
    t = (idx - x[:, None]) * s
    w = _cubic(t, node.attrs.get("cubic_coeff_a", -0.75)) if cubic else np.maximum(0.0, 1 - np.abs(t))
    if antialias:
        w = w / w.sum(axis=1, keepdims=True)
    if node.attrs.get("exclude_outside", 0) == 1:
        w = np.where((idx < 0) | (idx >= n_in), 0.0, w)
        total = w.sum(axis=1, keepdims=True)
        w = w / np.where(total == 0, 1.0, total)
    return np.clip(idx, 0, max(n_in - 1, 0)).astype(np.intp), w


@op("Resize", attrs=("antialias", "axes", "coordinate_transformation_mode", "cubic_coeff_a", "exclude_outside",
                     "extrapolation_value", "keep_aspect_ratio_policy", "mode", "nearest_mode"), check=_CHECK)
def _resize(node, x, roi=None, scales=None, sizes=None):
    mode = node.attrs.get("mode", "nearest")
    coords = node.attrs.get("coordinate_transformation_mode", "half_pixel")
    geometry = _geometry(node, x.shape, roi, scales, sizes)
    if mode != "nearest" and x.dtype not in FLOAT_TYPES and x.dtype.kind not in "iu":
        fail(node, f"{mode} interpolation of {x.dtype} values is not supported")
    # linear/cubic: float16 in float32, integers in float64 (rounded and saturated back)
    work = x if mode == "nearest" else x.astype(compute_dtype(x.dtype) if x.dtype in FLOAT_TYPES else np.float64)
    outside = np.zeros((1,) * x.ndim, bool)
    for a, (n_out, scale, width, start, end) in enumerate(geometry):
        n_in = x.shape[a]
        if n_out == n_in and scale == 1 and (coords != "tf_crop_and_resize" or (start, end) == (0, 1)):
            continue   # this axis maps each position onto itself
        src = _source(coords, n_in, n_out, scale, width, start, end)
        lined = (1,) * a + (n_out,) + (1,) * (x.ndim - a - 1)
        if coords == "tf_crop_and_resize":
            outside = outside | ((src < 0) | (src > n_in - 1)).reshape(lined)
        if mode == "nearest":
            idx = np.clip(_nearest_index(src, node.attrs.get("nearest_mode", "round_prefer_floor")), 0, n_in - 1)
            work = np.take(work, idx.astype(np.intp), axis=a)
            continue
        idx, w = _taps(node, src, n_in, scale)
        w = w.astype(work.dtype)
        acc = None
        for k in range(idx.shape[1]):
            term = np.take(work, idx[:, k], axis=a) * w[:, k].reshape(lined)
            acc = term if acc is None else acc + term
        work = acc
    y = _cast(work, x.dtype)
    if outside.any():
        y = np.where(outside, _cast(np.float64(node.attrs.get("extrapolation_value", 0.0)), x.dtype), y)
    return y


def _cast(v, dtype):
    """Computed values in X's dtype; into integers as onnx.reference does it: rounded half
    to even and saturated."""
    v = np.asarray(v)
    if dtype.kind in "iu" and v.dtype.kind == "f":
        info = np.iinfo(dtype)
        return np.clip(np.round(v), info.min, info.max).astype(dtype)
    return v.astype(dtype, copy=False)
