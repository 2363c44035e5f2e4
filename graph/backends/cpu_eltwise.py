"""Native elementwise ops of the cpu backend (kernels/eltwise.c through
``qkernels._native``): float32/float16 activations (Erf and Gelu among them), PRelu,
float32/float16 Add/Sub/Mul/Div with a full, per-channel or scalar operand, float32 Softmax/LogSoftmax along a last axis, and the
com.microsoft int8 activations QLinearSigmoid / QLinearLeakyRelu as a 256-entry table.

Values may lie in any dense memory order (a convolution's NCHW view of NHWC memory): an
elementwise op runs over the one run of memory its input and output share. Exp and Tanh stay numpy's
(bound with ``out=``: numpy's AVX-512 loops are faster than the AVX2 polynomials for large
tensors); the C kernels have them for Softmax and for tests. The exact ops give the numpy
reference's bits; where a runner does not take a call (other dtypes, broadcasts it does not know), the reference operator runs it, and a plan binds numpy's own
loop (cpu.py's BINDERS) for it, so the bits never depend on the path. Sigmoid, Erf, Gelu
and Softmax are approximations (kernels/eltwise.c states their error): the node-by-node
runner and the plan's bound call run the same native code for every call either takes.
Importing this module registers the makers (graph/backends/__init__.py imports it after cpu.py: no import cycle).
"""
from __future__ import annotations

from functools import partial

import numpy as np

from ... import _dispatch, _native
from ..ir import Graph, Node
from . import cpu
from .cpu import _F16, _F32, _NotServed, _QParams, _const, _fallback, _flat_run, _inputs, \
    _same_order_runs, broadcast_result, kernel
from .reference import run_node

_UNARY = _native.ELTWISE_UNARY
_BINARY = _native.ELTWISE_BINARY
_FLOATS = (_F32, _F16)
#: exact ops (the reference's bits): a plan binds numpy's loop for what the native one does not take
_NUMPY_BINDERS = {"Relu": cpu._bind_relu, "Clip": cpu._bind_clip, "HardSigmoid": cpu._bind_hard_sigmoid,
                  **{k: cpu._bind_binary for k in _BINARY}}


def _numpy_bind(node: Node, ins, outs):
    binder = _NUMPY_BINDERS.get(node.op_type)
    return None if binder is None else binder(node, ins, outs)


def _unary_params(node: Node, graph: Graph, dtype) -> tuple[float, float] | None:
    """(p0, p1) of ``node`` for values of ``dtype``, as the reference applies them; None
    when they are not constants."""
    a = node.attrs
    if node.op_type == "Clip":
        lo, hi = (_const(graph, n) if n else None for n in _inputs(node, 3)[1:])
        if any(n and v is None for n, v in zip(_inputs(node, 3)[1:], (lo, hi))) \
                or any(v is not None and v.size != 1 for v in (lo, hi)):
            return None
        # the reference casts the bounds to the input's dtype (float16 bounds for float16)
        lo, hi = (None if v is None else float(v.reshape(-1)[0].astype(dtype)) for v in (lo, hi))
        return (-np.inf if lo is None else lo, np.inf if hi is None else hi)
    if node.op_type == "HardSigmoid":
        return float(np.float32(a.get("alpha", 0.2))), float(np.float32(a.get("beta", 0.5)))
    if node.op_type == "LeakyRelu":
        return float(np.float32(a.get("alpha", 0.01))), 0.0
    return 0.0, 0.0


def unary_code(node: Node) -> int | None:
    """The native op code (ELTWISE_UNARY) of a unary node; None for one it does not have."""
    if node.op_type == "Gelu":
        approximate = node.attrs.get("approximate", "none")
        return {"none": _UNARY["Gelu"], "tanh": _UNARY["GeluTanh"]}.get(approximate)
    return _UNARY.get(node.op_type)


@kernel("Relu", "Clip", "HardSigmoid", "HardSwish", "LeakyRelu", "Sigmoid", "Erf", "Gelu",
        attrs=("alpha", "beta", "approximate"))
def _make_unary(node: Node, graph: Graph):
    """float32 / float16 activations on the native loop over the input's memory (float16
    computed in float32, rounded once, as the reference does)."""
    params = {dt: _unary_params(node, graph, dt) for dt in _FLOATS}
    op, result = unary_code(node), node.outputs[0]
    if params[_F32] is None or op is None:
        return None

    def run(values):
        x = values[node.inputs[0]]
        if x.dtype not in _FLOATS:
            raise _NotServed
        if _flat_run(x) is None:
            x = np.ascontiguousarray(x)
        y = np.empty_like(x)                         # x's memory order
        fx, fy = _same_order_runs(x, y)
        _native.eltwise_unary(_dispatch.isa_index(), op, fx, fy, *params[x.dtype])
        return {result: y}

    def bind(ins, outs):
        x, y = ins[0], outs[0]
        if x is None or x.dtype not in _FLOATS or y.dtype != x.dtype or x.shape != y.shape:
            return _numpy_bind(node, ins, outs)
        isa, p = _dispatch.isa_index(), params[x.dtype]
        runs = _same_order_runs(x, y)
        if runs is not None:
            return _native.eltwise_unary(isa, op, runs[0], runs[1], *p, bind=True)
        fy = _flat_run(y)
        if fy is None:
            return _numpy_bind(node, ins, outs)
        # x in another order: copied into y's, then the op in place
        return [partial(np.copyto, y, x), _native.eltwise_unary(isa, op, fy, fy, *p, bind=True)]
    run.bind = bind
    return _fallback(node, graph, run)


def _channel_layout(full: np.ndarray, other: np.ndarray):
    """(outer, channels, inner, flat values of ``other``) when ``other`` broadcasts against
    ``full`` (a dense run) as a scalar or along one axis of it (a per-channel vector);
    None otherwise. The axis's place in ``full``'s memory order splits its run."""
    if np.broadcast_shapes(full.shape, other.shape) != full.shape:
        return None
    flat = _flat_run(other)
    if flat is None:
        return None
    if other.size == 1:
        return 1, 1, full.size, flat
    shape = (1,) * (full.ndim - other.ndim) + other.shape
    axes = [k for k, d in enumerate(shape) if d != 1]
    if len(axes) != 1 or shape[axes[0]] != full.shape[axes[0]]:
        return None
    k = axes[0]
    inner = full.strides[k] // full.itemsize
    channels = full.shape[k]
    if inner <= 0 or full.size % (channels * inner):
        return None
    return full.size // (channels * inner), channels, inner, flat


def _binary_operands(a, b, y=None):
    """(a run, a per channel, b run, b per channel, y run, outer, channels, inner, y) for
    float32 or float16 a op b, y in the memory order of the operand of the result's shape;
    None when the native loop does not take them."""
    got = None if a is None or a.dtype not in _FLOATS else broadcast_result(a, b, a.dtype, y)
    if got is None:
        return None
    _, full, y = got
    if a.shape == b.shape:
        runs = _same_order_runs(a, b, y)
        return None if runs is None else (runs[0], False, runs[1], False, runs[2], 1, 1, y.size, y)
    other = b if full is a else a
    runs = _same_order_runs(full, y)
    lay = _channel_layout(full, other)
    if runs is None or lay is None:
        return None
    outer, channels, inner, flat = lay
    if full is a:
        return runs[0], False, flat, True, runs[1], outer, channels, inner, y
    return flat, True, runs[0], False, runs[1], outer, channels, inner, y


@kernel("Add", "Sub", "Mul", "Div")
def _make_binary(node: Node, graph: Graph):
    """float32 and float16 Add/Sub/Mul/Div on the native loop: same-shape operands in one
    memory order, or one operand a scalar or per-channel vector of the other's shape (any
    dense order); the same bits as numpy's loop, which runs everything else."""
    op, result = _BINARY[node.op_type], node.outputs[0]

    def run(values):
        got = _binary_operands(values[node.inputs[0]], values[node.inputs[1]])
        if got is None:
            raise _NotServed
        _native.eltwise_binary(_dispatch.isa_index(), op, *got[:8])
        return {result: got[8]}

    def bind(ins, outs):
        got = _binary_operands(ins[0], ins[1], outs[0])
        if got is None:
            return _numpy_bind(node, ins, outs)
        return _native.eltwise_binary(_dispatch.isa_index(), op, *got[:8], bind=True)
    run.bind = bind
    return _fallback(node, graph, run)


@kernel("PRelu")
def _make_prelu(node: Node, graph: Graph):
    """float32 PRelu with a scalar, per-channel or same-order slope on the native loop (the
    reference's where(x < 0, x * slope, x), the same bits)."""
    result = node.outputs[0]

    def operands(x, slope, y=None):
        if x is None or slope is None or x.dtype != _F32 or slope.dtype != _F32 or _flat_run(x) is None:
            return None
        if y is None:
            y = np.empty_like(x)
        runs = _same_order_runs(x, y) if y.shape == x.shape and y.dtype == _F32 else None
        if runs is None:
            return None
        if slope.shape == x.shape:
            fs = _same_order_runs(x, slope)
            return None if fs is None else (runs[0], fs[1], runs[1], 1, x.size, 1, y)
        try:
            lay = _channel_layout(x, slope)
        except ValueError:
            return None
        return None if lay is None else (runs[0], lay[3], runs[1], *lay[:3], y)

    def run(values):
        got = operands(values[node.inputs[0]], values[node.inputs[1]])
        if got is None:
            raise _NotServed
        _native.eltwise_prelu(_dispatch.isa_index(), *got[:6])
        return {result: got[6]}

    def bind(ins, outs):
        got = operands(ins[0], ins[1], outs[0])
        return None if got is None else _native.eltwise_prelu(_dispatch.isa_index(), *got[:6], bind=True)
    run.bind = bind
    return _fallback(node, graph, run)


@kernel("Softmax", "LogSoftmax", attrs=("axis",))
def _make_softmax(node: Node, graph: Graph):
    """float32 Softmax / LogSoftmax (opset 13: along one axis) when every axis after it has
    extent 1: rows of the C-order values (a copy first when the input is not C-contiguous);
    other axes and dtypes run the reference."""
    log, result = node.op_type == "LogSoftmax", node.outputs[0]

    def rows_of(x):
        if x.dtype != _F32 or x.ndim == 0:
            return None
        axis = node.attrs.get("axis", -1)
        if not -x.ndim <= axis < x.ndim:
            return None
        axis %= x.ndim
        if any(d != 1 for d in x.shape[axis + 1:]) or x.shape[axis] == 0:
            return None
        return x.size // x.shape[axis], x.shape[axis]

    def run(values):
        x = values[node.inputs[0]]
        shape = rows_of(x)
        if shape is None:
            raise _NotServed
        x = np.ascontiguousarray(x)
        y = np.empty(x.shape, _F32)
        _native.softmax(_dispatch.isa_index(), x.reshape(-1), y.reshape(-1), *shape, log)
        return {result: y}

    def bind(ins, outs):
        x, y = ins[0], outs[0]
        shape = rows_of(x) if x is not None else None
        if shape is None or y.shape != x.shape or y.dtype != _F32 or not y.flags.c_contiguous:
            return None
        fy = y.reshape(-1)
        if x.flags.c_contiguous:
            return _native.softmax(_dispatch.isa_index(), x.reshape(-1), fy, *shape, log, bind=True)
        # copied into y's C order, then in place
        return [partial(np.copyto, y, x), _native.softmax(_dispatch.isa_index(), fy, fy, *shape, log, bind=True)]
    run.bind = bind
    return _fallback(node, graph, run)


def _bind_ufunc(node: Node, ins, outs):
    """float32 Exp / Tanh: the reference's own numpy call with ``out=`` (its bits; numpy's
    AVX-512 loops beat the native AVX2 approximations on large tensors here)."""
    x, y = ins[0], outs[0]
    if x is None or x.dtype != _F32 or y.dtype != _F32 or x.shape != y.shape:
        return None
    return partial(np.exp if node.op_type == "Exp" else np.tanh, x, out=y)


cpu.BINDERS["Exp"] = cpu.BINDERS["Tanh"] = _bind_ufunc


def lookup_table(node: Node, graph: Graph, dtype) -> np.ndarray:
    """The 256 results of the int8 activation ``node`` for inputs of ``dtype``, by its
    reference operator (onnxruntime's own construction: dequantize, the float32 op,
    quantize), indexed by the input's byte."""
    xs = np.arange(256, dtype=np.uint8).view(dtype)
    scope = {name: graph.initializers[name] for name in node.inputs[1:] if name}
    scope[node.inputs[0]] = xs
    return np.ascontiguousarray(run_node(node, scope)[node.outputs[0]])


@kernel("com.microsoft::QLinearSigmoid", "com.microsoft::QLinearLeakyRelu", attrs=("alpha",))
def _make_qlinear_lut(node: Node, graph: Graph):
    """com.microsoft QLinearSigmoid / QLinearLeakyRelu with constant per-tensor parameters:
    a 256-entry table made once by the reference operator (bit for bit onnxruntime's),
    looked up over the input's memory (``cpu._byte_table``: the copy kernels' table moves)."""
    x, sx, zx, sy, zy = _inputs(node, 5)
    pin, pout = _QParams(graph, sx, zx), _QParams(graph, sy, zy)
    if not (pin.const and pout.const) or (zy and pin.dtype != pout.dtype):
        return None
    table = lookup_table(node, graph, pin.dtype)
    if table.dtype != pin.dtype or table.shape != (256,):
        return None
    return cpu._byte_table(node, graph, x, node.outputs[0], table.view(np.uint8), table.dtype)

