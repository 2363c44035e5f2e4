"""Native pooling, reductions and layer normalization for the cpu backend (registered
into :data:`cpu.KERNELS`; kernels/pool_avg.c and kernels/reduce.c through
``qkernels._native``): 2-D ``AveragePool`` (float32, float16), com.microsoft
``QLinearAveragePool`` (2-D, int8/uint8, onnxruntime's arithmetic bit for bit),
``ReduceSum`` / ``ReduceMean`` (float32), ``ReduceMax`` / ``ReduceMin`` and
``GlobalMaxPool`` (float32, int8, uint8), ``LayerNormalization`` (float32, float16).

Each runner and its bind call the same native function (a :class:`_native.Bound` in
the plan), so the node-by-node run and the plan give the same bits; values a kernel
does not take (other dtypes or ranks, empty tensors, axes that are not constants) run
on the reference operator.
"""
from __future__ import annotations

import numpy as np

from ... import _dispatch, _native
from ..ir import Graph, Node
from . import cpu
from .cpu import _F16, _F32, _INT8, Runner, _NotServed, _QParams, _const, _fallback, _inputs, kernel
from .reference.conv import _POOL_ATTRS, _pool_setup
from .reference.common import norm_axis
from .reference.ort_contrib import ort_pool_geometry


def _nhwc_memory(x: np.ndarray) -> bool:
    return x.ndim == 4 and not x.flags.c_contiguous and x.transpose(0, 2, 3, 1).flags.c_contiguous


def _empty_like_order(x: np.ndarray, shape, dtype) -> np.ndarray:
    """A new (N, C, H, W) array in x's memory order (NHWC memory for an NHWC-memory x:
    the native loops then run along the channels)."""
    if _nhwc_memory(x):
        n, c, h, w = shape
        return np.empty((n, h, w, c), dtype).transpose(0, 3, 1, 2)
    return np.empty(shape, dtype)


def _geometry(node: Node, x: np.ndarray, dtypes):
    """The reference's 2-D pooling geometry (kernel, strides, dilations, begin, end, out)
    for x, or _NotServed (the reference then runs, or says what is wrong)."""
    if x is None or x.ndim != 4 or x.dtype not in dtypes or x.size == 0:
        raise _NotServed
    try:
        geom = _pool_setup(node, x)
    except Exception:
        raise _NotServed from None
    if min(geom[-1], default=0) < 1:
        raise _NotServed
    return geom


def _pool_kernel(node: Node, graph: Graph, dtypes, call, out_dtype=None) -> Runner:
    """A 2-D pooling runner (and its bind): ``call(x, y, geometry, bind)`` runs or binds
    the native pool of (N, C, H, W) views x into y."""
    result = node.outputs[0]

    def run(values):
        x = values[node.inputs[0]]
        geom = _geometry(node, x, dtypes)
        y = _empty_like_order(x, x.shape[:2] + tuple(geom[-1]), x.dtype)
        call(x, y, geom, False)
        return {result: y}

    def bind(ins, outs):
        x, y = ins[0], outs[0]
        geom = _geometry(node, x, dtypes)
        if len(outs) != 1 or y.shape != x.shape[:2] + tuple(geom[-1]) or y.dtype != x.dtype:
            return None
        return call(x, y, geom, True)
    run.bind = bind
    return _fallback(node, graph, run)


@kernel("AveragePool", attrs=_POOL_ATTRS + ("count_include_pad",))
def _make_average_pool(node: Node, graph: Graph) -> Runner | None:
    """2-D float32/float16 AveragePool: the taps inside X summed in float32 in window order,
    divided once by the reference's count (so the reference's arithmetic: the same values
    up to the order of its float32 sums), float16 rounded once."""
    include = bool(node.attrs.get("count_include_pad", 0))

    def call(x, y, geom, bind):
        kernel_, strides, dil, begin, end, _ = geom
        return _native.avg_pool(x, y, *kernel_, *strides, *dil, *begin, *end, include, bind=bind)
    return _pool_kernel(node, graph, (_F32, _F16), call)


@kernel("com.microsoft::QLinearAveragePool",
        attrs=("auto_pad", "ceil_mode", "channels_last", "count_include_pad", "kernel_shape", "pads", "strides"))
def _make_qlinear_average_pool(node: Node, graph: Graph) -> Runner | None:
    """com.microsoft QLinearAveragePool (2-D) with constant per-tensor parameters, as
    onnxruntime computes it (its reference operator's arithmetic), bit for bit; a kernel
    covering the whole unpadded image is onnxruntime's global average pool there too."""
    x, sx, zx, sy, zy = _inputs(node, 5)
    pin, pout = _QParams(graph, sx, zx), _QParams(graph, sy, zy)
    last = node.attrs.get("channels_last", 0)
    if not (pin.const and pout.const) or pin.dtype != pout.dtype or last not in (0, 1):
        return None
    whole = cpu._make_qlinear_global_average_pool(node, graph)
    include = bool(node.attrs.get("count_include_pad", 0))
    result = node.outputs[0]

    def nchw(a):
        return None if a is None or a.ndim != 4 else a.transpose(0, 3, 1, 2) if last else a

    def plan(data):
        xc = nchw(data)
        _geometry(node, xc, (pin.dtype,))
        try:
            geom = ort_pool_geometry(node, xc)
        except Exception:
            raise _NotServed from None               # the reference says why
        kernel_, _, begin, end, out = geom
        if list(xc.shape[2:]) == list(kernel_) and not any(begin + end):
            return xc, geom, True
        if any(p < 0 for p in begin + end):
            raise _NotServed                          # onnxruntime's shifted windows: the reference's
        return xc, geom, False

    def call(xc, yc, geom, bind):
        kernel_, strides, begin, end, _ = geom
        return _native.qlinear_avg_pool(xc, yc, *kernel_, *strides, *begin, *end, include, pin.scale, pin.zp,
                                        pout.scale, pout.zp, bind=bind)

    def run(values):
        data = values[x]
        xc, geom, is_whole = plan(data)
        if is_whole and whole is not None:
            return whole(values)
        yc = _empty_like_order(xc, xc.shape[:2] + tuple(geom[-1]), xc.dtype)
        call(xc, yc, geom, False)
        return {result: yc.transpose(0, 2, 3, 1) if last else yc}

    def bind(ins, outs):
        xc, geom, is_whole = plan(ins[0])
        if is_whole:
            return whole.bind(ins, outs) if whole is not None and hasattr(whole, "bind") else None
        yc = nchw(outs[0])
        if len(outs) != 1 or yc is None or yc.shape != xc.shape[:2] + tuple(geom[-1]) or yc.dtype != xc.dtype:
            return None
        return call(xc, yc, geom, True)
    run.bind = bind
    return _fallback(node, graph, run)


# --------------------------------------------------------------------------- reductions

_REDUCE_OPS = {"ReduceSum": (_native.REDUCE_SUM, (_F32,)), "ReduceMean": (_native.REDUCE_MEAN, (_F32,)),
               "ReduceMax": (_native.REDUCE_MAX, (_F32,) + _INT8), "ReduceMin": (_native.REDUCE_MIN, (_F32,) + _INT8)}


def _reduce_kernel(node: Node, graph: Graph, op: int, dtypes, axes_of, keepdims: bool) -> Runner:
    """A reduction runner (and bind): ``axes_of(x)`` the sorted axes reduced (or
    _NotServed); y has x's rank with 1 on them (keepdims), else a view that has."""
    result = node.outputs[0]

    def shapes(x):
        if x.dtype not in dtypes or x.size == 0:
            raise _NotServed
        axes = axes_of(x)
        keep = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
        return axes, keep, keep if keepdims else tuple(d for i, d in enumerate(x.shape) if i not in axes)

    def run(values):
        x = values[node.inputs[0]]
        axes, keep, shape = shapes(x)
        y = np.empty(keep, x.dtype)
        _native.reduce(x, y, axes, op)
        return {result: y.reshape(shape)}

    def bind(ins, outs):
        x, y = ins[0], outs[0]
        if x is None:
            return None
        axes, keep, shape = shapes(x)
        if len(outs) != 1 or y.shape != shape or y.dtype != x.dtype:
            return None
        return _native.reduce(x, y if keepdims else np.expand_dims(y, tuple(axes)), axes, op, bind=True)
    run.bind = bind
    return _fallback(node, graph, run)


def _make_reduce(node: Node, graph: Graph) -> Runner | None:
    """float32 ReduceSum / ReduceMean (float64 sums, rounded once: within the rounding of
    the reference's float32 sums), ReduceMax / ReduceMin (float32, int8, uint8: exact, NaN
    propagating), over constant axes (attribute, or the opset-18 input)."""
    op, dtypes = _REDUCE_OPS[node.op_type]
    axes_name = node.inputs[1] if len(node.inputs) > 1 else ""
    if axes_name:
        given = _const(graph, axes_name)
        if given is None:
            return None
        given = [int(a) for a in np.asarray(given).reshape(-1)]
    else:
        given = node.attrs.get("axes")
    if not given and node.attrs.get("noop_with_empty_axes", 0):
        return None                                    # the identity: the reference's

    def axes_of(x):
        if not given:
            return list(range(x.ndim))
        if any(not -x.ndim <= a < x.ndim for a in given):
            raise _NotServed
        return sorted({a % x.ndim for a in given})
    return _reduce_kernel(node, graph, op, dtypes, axes_of, bool(node.attrs.get("keepdims", 1)))


for _key in _REDUCE_OPS:
    kernel(_key, attrs=("axes", "keepdims", "noop_with_empty_axes"))(_make_reduce)


@kernel("GlobalMaxPool")
def _make_global_max_pool(node: Node, graph: Graph) -> Runner | None:
    """GlobalMaxPool of float32, int8, uint8 (N, C, spatial...): exact, NaN propagating."""
    def axes_of(x):
        if x.ndim < 3:
            raise _NotServed
        return list(range(2, x.ndim))
    return _reduce_kernel(node, graph, _native.REDUCE_MAX, (_F32,) + _INT8, axes_of, True)


# ------------------------------------------------------------------- layer normalization

def _rows(a: np.ndarray, split: int) -> np.ndarray | None:
    """``a`` as the (rows, n) view merging its axes before and from ``split``, or None
    when the strides do not allow one."""
    merged = []
    for shape, strides in ((a.shape[:split], a.strides[:split]), (a.shape[split:], a.strides[split:])):
        dims = [(d, s) for d, s in zip(shape, strides) if d != 1]
        if any(s0 != s1 * d1 for (_, s0), (d1, s1) in zip(dims, dims[1:])):
            return None
        merged.append((int(np.prod(shape, dtype=np.int64)), dims[-1][1] if dims else a.itemsize))
    return np.lib.stride_tricks.as_strided(a, (merged[0][0], merged[1][0]), (merged[0][1], merged[1][1]),
                                           writeable=a.flags.writeable)


@kernel("LayerNormalization", attrs=("axis", "epsilon", "stash_type"))
def _make_layer_norm(node: Node, graph: Graph) -> Runner | None:
    """float32/float16 LayerNormalization (stash_type 1): each row's mean and variance from
    float64 sums (mean, then squared deviations), the result in float64 rounded once (onnxruntime
    keeps its statistics in float64 too); Mean and InvStdDev (float32) when asked."""
    if node.attrs.get("stash_type", 1) != 1:
        return None
    eps = float(np.float32(node.attrs.get("epsilon", 1e-5)))
    names = list(node.outputs) + [""] * (3 - len(node.outputs))

    def params(x, scale, bias):
        if x is None or x.dtype not in (_F32, _F16) or x.ndim < 1 or x.size == 0 or scale is None:
            raise _NotServed
        try:
            axis = norm_axis(node, node.attrs.get("axis", -1), x.ndim)
        except Exception:
            raise _NotServed from None
        n = int(np.prod(x.shape[axis:], dtype=np.int64))
        flat = []
        for v in (scale, bias):
            if v is None:
                flat.append(None)
                continue
            if v.dtype != x.dtype or v.size != n or v.shape != x.shape[axis:][x.ndim - axis - v.ndim:] \
                    or (f := _rows(v.reshape(v.shape) if v.ndim else v.reshape(1), 0)) is None:
                raise _NotServed
            flat.append(f[0])
        return axis, n, flat[0], flat[1]

    def run(values):
        x = values[node.inputs[0]]
        scale, bias = (values[i] if i else None for i in _inputs(node, 3)[1:])
        axis, n, s, b = params(x, scale, bias)
        x2 = _rows(x, axis)
        if x2 is None:
            x2 = _rows(np.ascontiguousarray(x), axis)
        y = np.empty(x.shape, x.dtype)
        stat = x.shape[:axis] + (1,) * (x.ndim - axis)
        mean = np.empty(stat, np.float32) if names[1] else None
        inv = np.empty(stat, np.float32) if names[2] else None
        _native.layer_norm(x2, s, b, eps, y.reshape(x2.shape), None if mean is None else mean.reshape(-1),
                           None if inv is None else inv.reshape(-1), isa=_dispatch.isa_index())
        return {k: v for k, v in zip(names, (y, mean, inv)) if k}

    def bind(ins, outs):
        x = ins[0]
        axis, n, s, b = params(x, ins[1], ins[2] if len(ins) > 2 else None)
        y = outs[0]
        if y.shape != x.shape or y.dtype != x.dtype:
            return None
        x2, y2 = _rows(x, axis), _rows(y, axis)
        if x2 is None or y2 is None:
            return None
        stats = []
        for k, o in zip(names[1:], list(outs[1:]) + [None] * (3 - len(outs))):
            if not k:
                stats.append(None)
                continue
            r = None if o is None or o.dtype != _F32 or o.size != x2.shape[0] else _rows(o, o.ndim)
            if r is None:
                return None
            stats.append(r[:, 0])
        return _native.layer_norm(x2, s, b, eps, y2, stats[0], stats[1], bind=True, isa=_dispatch.isa_index())
    run.bind = bind
    return _fallback(node, graph, run)
