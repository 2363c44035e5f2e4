"""The cpu backend: qkernels' kernels for the operators they serve, the reference
operators for the rest.

Kernel-backed (constant weights are packed once, when the session is planned):

- int8: ``QLinearConv`` and ``ConvInteger`` (2-D) -> :func:`qkernels.conv2d` (on NHWC
  copies of the NCHW values); ``QLinearMatMul``, ``MatMulInteger`` and com.microsoft
  ``QGemm`` -> :func:`qkernels.matmul` (packed weights when they are constants);
  com.microsoft ``QLinearAdd`` / ``QLinearMul`` of same-layout tensors -> the native
  elementwise loop;
- fp16 and fp32: ``Conv`` (2-D), ``MatMul`` (constant weights, or two activations of at
  least 2-D: every product of the batch in one native loop, _float.batched_matmul),
  ``Gemm`` and the fused com.microsoft ``FusedConv`` / ``FusedGemm`` -> the float kernels
  (fp32 sums, bias and activation fused); a float32 ``MatMul`` with a 1-D operand of two
  activations stays numpy's (BLAS).

A maker returns None for a node the kernels do not serve (other dtypes, 1-D/3-D
convolutions, weights that are not constants, ...); the reference operator runs it.
A runner also hands a call to the reference operator when the values it gets at run
time are not what it was prepared for (a dtype or rank it does not serve).

:meth:`CpuBackend.rewrite` runs the planning passes of :mod:`qkernels.graph.rewrite`.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from functools import partial

from ... import _api, _conv, _dispatch, _float, _native
from ..._common import output_rows, rows_view
from ..._layout import convertible, nchw_to_nhwc, transpose_into
from ..._qtensor import QTensor, _native_params, dequantize, quantize
from ..._requant import output_spec
from ..backend import Backend, run_steps
from ..errors import RunError
from ..ir import Graph, Node
from ..rewrite import rewrite as _rewrite
from ..validate import node_errors
from .reference import OPS as REFERENCE_OPS
from .reference import run_node
from .reference.conv import _pool_setup
from .reference import why_not as reference_why_not

Runner = Callable[[dict], dict]

#: op key -> function(node, graph) returning a kernel runner (values -> outputs), or
#: None when this node is not one the kernels serve (dtypes, attributes)
KERNELS: dict[str, Callable[[Node, Graph], Runner | None]] = {}

#: op key -> the attributes its maker understands (a node with another one is left to
#: the reference, which refuses what it does not implement)
KERNEL_ATTRS: dict[str, frozenset] = {}

#: op key -> function(node, inputs, outputs) binding a node its reference operator runs
#: to numpy's own loop writing the output in place (the same loop, so the same bits), or
#: returning None (see Backend.steps)
BINDERS: dict[str, Callable] = {}

_INT8 = (np.dtype(np.int8), np.dtype(np.uint8))
_F16, _F32 = np.dtype(np.float16), np.dtype(np.float32)
_CONV_ATTRS = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")


def kernel(*keys: str, attrs=()):
    """Register a maker for ``keys``, understanding the attributes ``attrs``."""
    def register(fn):
        for k in keys:
            KERNELS[k] = fn
            KERNEL_ATTRS[k] = frozenset(attrs)
        return fn
    return register


class CpuBackend(Backend):
    name = "cpu"

    def __init__(self):
        self._made: dict[int, tuple[Node, Graph, Runner | None]] = {}

    def _make(self, node: Node, graph: Graph) -> Runner | None:
        got = self._made.get(id(node))
        if got is not None and got[0] is node and got[1] is graph:
            return got[2]
        make = KERNELS.get(node.key)
        runner = None
        if make is not None and set(node.attrs) <= KERNEL_ATTRS[node.key]:
            try:
                runner = make(node, graph)
            except (ValueError, TypeError):   # weights the kernels refuse: the reference decides
                runner = None
        self._made[id(node)] = (node, graph, runner)
        return runner

    def supports(self, node: Node, graph: Graph) -> bool:
        return self.why_not(node, graph) is None

    def on_kernels(self, node: Node, graph: Graph) -> bool:
        """Whether ``node`` runs on qkernels' kernels here (fp32 Conv/Gemm: the numpy
        BLAS path) rather than on its reference operator."""
        return node.key in KERNELS and self._make(node, graph) is not None

    def why_not(self, node: Node, graph: Graph) -> str | None:
        """None when a kernel or the reference operator runs ``node``, else why not. What
        the reference operator refuses (attributes, arity) is refused though a kernel could
        take it: the kernels never give a meaning to a node the reference does not."""
        why = reference_why_not(node, graph)
        if why is None or (node.key not in REFERENCE_OPS and self.on_kernels(node, graph)):
            return None
        return why

    def rewrite(self, graph: Graph) -> Graph:
        """The planning passes (BatchNormalization folding, QDQ to integer operators,
        activation fusion): :func:`qkernels.graph.rewrite.rewrite`."""
        return _rewrite(graph)

    def placement(self, node: Node, graph: Graph) -> str:
        """"native" (qkernels' int8, fp16 and fp32 kernels) or "reference" (the numpy
        reference operator; a fused node on its base operator plus the activation)."""
        runner = self._make(node, graph) if node.key in KERNELS else None
        return "reference" if runner is None else getattr(runner, "placement", "native")

    def steps(self, nodes: list[Node], graph: Graph):
        steps, readers = [], None
        fused = self._flatten_gemms(nodes, graph)
        for node in nodes:
            if id(node) in fused:
                if fused[id(node)] is None:   # a Flatten its Gemm does
                    continue
                node, fast = fused[id(node)]
            else:
                fast = self._make(node, graph) if node.key in KERNELS else None
            if getattr(fast, "owns", None):
                readers = readers or graph.consumers()
                self._drop_owned(fast.owns, graph, readers)
            if fast is None:
                def fast(values, node=node):
                    return run_node(node, values)
                binder = BINDERS.get(node.key)
                if binder is not None and (node.key not in _CONSTANT_PARAMS or _constant_params(node, graph)):
                    fast.bind = lambda ins, outs, node=node, binder=binder: binder(node, ins, outs)
            steps.append((node, fast))
        return steps

    def _flatten_gemms(self, nodes: list[Node], graph: Graph) -> dict:
        """Each Flatten (axis 1) of a convolution's result (NHWC memory: the Flatten a
        copy) whose one reader is a native Gemm of ``nodes`` (transA 0, its weights'
        panels rebuildable): id(Flatten) -> None, id(Gemm) -> (the Gemm on the Flatten's
        input, its runner, see _flatten_gemm). (A Flatten of C-contiguous values, as after
        GlobalAveragePool, is a view of the plan already.)"""
        outputs = {o.name for o in graph.outputs}
        readers = graph.consumers()
        members = {id(n) for n in nodes}
        made_by = {o: n for n in nodes for o in n.outputs if o}
        fused = {}
        for node in nodes:
            if node.op_type != "Flatten" or node.domain or node.attrs.get("axis", 1) != 1 \
                    or len(node.inputs) != 1 or len(node.outputs) != 1 or node.outputs[0] in outputs \
                    or getattr(made_by.get(node.inputs[0]), "key", None) not in ("Conv", "com.microsoft::FusedConv"):
                continue
            users = readers.get(node.outputs[0], [])
            gemm = users[0] if len(users) == 1 else None
            if gemm is None or id(gemm) not in members or gemm.key not in ("Gemm", "com.microsoft::FusedGemm") \
                    or gemm.inputs[0] != node.outputs[0] or gemm.inputs[1:].count(node.outputs[0]) \
                    or gemm.attrs.get("transA", 0):
                continue
            runner = self._make(gemm, graph)
            if runner is None or gemm.inputs[1] not in (getattr(runner, "owns", None) or {}):
                continue
            got = _flatten_gemm(node, gemm, graph, runner)
            self._made[id(got[0])] = (got[0], graph, got[1])
            fused[id(node)], fused[id(gemm)] = None, got
        return fused

    def _drop_owned(self, names, graph: Graph, readers: dict) -> None:
        """Drop from ``graph`` the constants among ``names`` that every node reading them
        has packed (its runner's ``owns``, see _fallback): the weights held once, not
        twice (all-MiniLM-L6's 42 MB of float32 MatMul weights were held as given and as
        panels), and each one dropped as soon as it is packed, so that loading never
        holds all of them twice either."""
        outputs = {o.name for o in graph.outputs}
        for name in names:
            users = readers.get(name, ())
            if name in graph.initializers and name not in outputs and users and all(
                    (got := self._made.get(id(u))) is not None and got[0] is u and got[1] is graph
                    and name in (getattr(got[2], "owns", None) or ()) for u in users):
                del graph.initializers[name]

    def compile(self, nodes: list[Node], graph: Graph):
        steps = self.steps(nodes, graph)

        def run(values, timer=None):
            return run_steps(steps, values, timer)
        run.accepts_timer = True
        return run


# ----------------------------------------------------------------------------- helpers

def _inputs(node: Node, n: int) -> list[str]:
    return list(node.inputs[:n]) + [""] * (n - len(node.inputs[:n]))


def _const(graph: Graph, name: str):
    return graph.initializers.get(name) if name else None


def _fallback(node: Node, graph: Graph, runner: Runner, reference: Runner | None = None) -> Runner:
    """``runner``, handing a call to ``reference`` (default: the node's reference
    operator, when it runs the node) when it raises _NotServed. ``runner.owns`` (name ->
    a function rebuilding that constant: packed weights) is handed on: a session may drop
    those constants, and the reference gets them rebuilt."""
    if reference is None and reference_why_not(node, graph) is None:
        def reference(values):
            return run_node(node, values)
    owns = getattr(runner, "owns", None) or {}

    def run(values):
        try:
            with node_errors(node):
                return runner(values)
        except _NotServed:
            missing = [k for k in owns if k not in values]
            if missing:
                values = {**values, **{k: owns[k]() for k in missing}}
            if reference is None:
                shapes = ", ".join(f"{values[i].dtype}{list(values[i].shape)}" for i in node.inputs if i)
                raise RunError(f"node {node.name!r} ({node.key}) cannot run on inputs {shapes}") from None
            return reference(values)
    run.placement = getattr(runner, "placement", "native")
    run.owns = owns
    binder = getattr(runner, "bind", None)
    if binder is not None:
        def bind(ins, outs):
            try:
                with node_errors(node):
                    return binder(ins, outs)
            except (_NotServed, ValueError, TypeError):   # not arrays the kernels take in place
                return None
        run.bind = bind
    return run


class _NotServed(Exception):
    """Raised by a runner for values it was not prepared for (the reference runs them)."""


def _chain(calls: list) -> list:
    """A bound node's steps: ``calls`` (no arguments) in order, as one list (the plan's
    loop runs native ones, ``_native.Bound``, back to back without the GIL)."""
    return list(calls)


def _nhwc_input(data: np.ndarray) -> tuple[np.ndarray, list]:
    """The NHWC array a bound convolution reads for NCHW ``data``: its transpose when that
    is C-contiguous (the NCHW view of an NHWC value, as the convolutions return), else a
    buffer of its own that the native transposing copy fills (the calls returned) first."""
    xd = data.transpose(0, 2, 3, 1)
    if xd.flags.c_contiguous:
        return xd, []
    scratch = np.empty(xd.shape, data.dtype)
    return scratch, [partial(transpose_into, data, scratch, True)]


def _rgb_as_four_channels(data: np.ndarray, za: int, pw, bound) -> list | None:
    """A uint8 NCHW image of 3 channels with symmetric weights (a CNN's stem), transposed
    into pixels of 4 bytes (the 4th the zero point, under zero weights): a kernel row is
    then whole K quads, which the VNNI kernel's indirect entries read in place, where 3-byte
    pixels had their patches packed (ResNet-18 u8s8's 7x7 stem: 30 % more products, no
    packing). The same sums; None where this ISA path would pack the patches anyway."""
    four = getattr(pw, "_four_channels", None)
    if four is None:
        w = pw.oihw()
        w4 = np.zeros((w.shape[0], 4) + w.shape[2:], w.dtype)
        w4[:, :3] = w
        wq = _weight_qtensor(w4, pw.scale, pw.zero_point.astype(w.dtype), 0, w.shape[0])
        four = pw._four_channels = _api.pack_conv_weights(wq, weight_layout="OIHW", bias=pw.bias)
    n, _, h, w_ = data.shape
    xd = np.empty((n, h, w_, 4), np.uint8)
    xd[..., 3] = za
    steps = bound(xd, [partial(transpose_into, data, xd[..., :3], True)], four)
    if not steps or not getattr(steps[-1], "indirect_segment", 0):
        return None
    return steps


def _constant_params(node: Node, graph: Graph) -> bool:
    """Whether every input after the first (scales, zero points, weights) is a constant:
    then a node bound once stays right for every run."""
    return all(not name or name in graph.initializers for name in node.inputs[1:])


class _QParams:
    """A per-tensor (scale, zero point) pair of a quantized input or output: constants
    validated once (with their QTensor parameters made once), or read at run time."""

    def __init__(self, graph: Graph, scale: str, zero_point: str):
        self.scale_name, self.zp_name = scale, zero_point
        s, z = _const(graph, scale), _const(graph, zero_point) if zero_point else np.zeros((), np.uint8)
        self.const = s is not None and z is not None
        if self.const:
            self.dtype = z.dtype
            self._set(s, z)
        else:
            self.dtype = None

    @classmethod
    def constant(cls, scale, zero_point) -> "_QParams":
        p = cls.__new__(cls)
        p.scale_name = p.zp_name = ""
        p.const, p.dtype = True, np.asarray(zero_point).dtype
        p._set(np.asarray(scale), np.asarray(zero_point))
        return p

    def _set(self, s, z):
        if np.size(s) != 1 or np.size(z) != 1 or z.dtype not in _INT8:
            raise ValueError("per-tensor scale and zero point expected")
        q = QTensor(np.zeros(1, z.dtype), np.asarray(s).reshape(()), np.asarray(z).reshape(()))
        self.scale, self.zp = float(q.scale), int(q.zero_point)
        self._s, self._z = q.scale, q.zero_point
        self.params = (z.dtype.char, self.zp, self.scale)

    def get(self, values):
        """(scale, zero_point, dtype) now."""
        if self.const:
            return self.scale, self.zp, self.dtype
        s = values[self.scale_name]
        z = values[self.zp_name] if self.zp_name else np.zeros((), np.uint8)
        if np.size(s) != 1 or np.size(z) != 1 or z.dtype not in _INT8:
            raise _NotServed
        return float(np.asarray(s).reshape(())), int(np.asarray(z).reshape(())), z.dtype

    def qtensor(self, values, data: np.ndarray) -> QTensor:
        if self.const:
            if data.dtype != self.dtype:
                raise _NotServed
            return QTensor._trusted(data, self._s, self._z, self.params)
        s, z, dt = self.get(values)
        if data.dtype != dt:
            raise _NotServed
        return QTensor(data, s, z)


def _weight_qtensor(w: np.ndarray, scale, zp, axis: int, n: int) -> QTensor:
    """QTensor of constant weights, per tensor or per channel along ``axis`` (length n)."""
    scale = np.asarray(scale, np.float32)
    zp = np.zeros((), w.dtype) if zp is None else np.asarray(zp)
    if zp.dtype != w.dtype or scale.size not in (1, n) or zp.size not in (1, n):
        raise ValueError("weight quantization parameters do not fit the weights")
    if scale.size == 1 and zp.size == 1:
        return QTensor(w, scale.reshape(()), zp.reshape(()))
    return QTensor(w, np.broadcast_to(scale.reshape(-1), (n,)), np.broadcast_to(zp.reshape(-1), (n,)), axis=axis)


def conv_geometry(node: Node, w_shape) -> tuple | None:
    """(stride, dilation, padding, groups) of a 2-D Conv-like node for qkernels.conv2d
    (padding a (top, left, bottom, right) tuple or an auto_pad mode), or None."""
    if len(w_shape) != 4:
        return None
    a = node.attrs
    ks = a.get("kernel_shape")
    if ks is not None and tuple(ks) != tuple(w_shape[2:]):
        return None
    strides, dil = tuple(a.get("strides", (1, 1))), tuple(a.get("dilations", (1, 1)))
    if len(strides) != 2 or len(dil) != 2 or min(strides + dil) < 1:
        return None
    auto = a.get("auto_pad", "NOTSET") or "NOTSET"
    if auto == "NOTSET":
        pads = tuple(a.get("pads", (0, 0, 0, 0)))
        if len(pads) != 4 or min(pads) < 0:
            return None
        padding = tuple(int(p) for p in pads)
    elif auto in ("VALID", "SAME_UPPER", "SAME_LOWER"):
        padding = auto.lower()
    else:
        return None
    groups = int(a.get("group", 1))
    if groups < 1:
        return None
    return tuple(int(s) for s in strides), tuple(int(d) for d in dil), padding, groups


def _activation(node: Node):
    """qkernels' activation of a fused node (FusedConv/FusedGemm attributes): None,
    "relu" or (min, max); False for one the kernels cannot apply."""
    if node.key not in ("com.microsoft::FusedConv", "com.microsoft::FusedGemm", "qkernels::FusedConvTranspose"):
        return None
    act = node.attrs.get("activation", "")
    if act == "" and "activation" not in node.attrs:   # a FusedConv with only a sum (Z) fused
        return None
    if act == "HardSwishDiv" and node.op_type == "FusedConv":   # graph.rewrite.fuse_hard_swish
        params = list(node.attrs.get("activation_params", ()))
        return _float.HardSwishDiv(*(float(v) for v in params)) if len(params) == 4 else False
    if act == "Relu":
        return "relu"
    if act == "Clip":
        if node.op_type in ("FusedConv", "FusedConvTranspose"):
            params = list(node.attrs.get("activation_params", (-np.inf, np.inf)))
            if len(params) != 2:
                return False
        else:
            params = [node.attrs.get("activation_alpha", -np.inf), node.attrs.get("activation_beta", np.inf)]
        return float(params[0]), float(params[1])
    return False


def apply_activation(y: np.ndarray, activation) -> np.ndarray:
    """The activation of a fused node applied to ``y`` in place (numpy)."""
    if isinstance(activation, _float.HardSwishDiv):   # the nodes it replaced, one numpy operation each
        add, lo, hi, div = (y.dtype.type(v) for v in activation)
        t = np.minimum(np.maximum(y + add, lo), hi)
        np.multiply(y, t, out=y)
        np.divide(y, div, out=y)
    elif activation == "relu":
        np.maximum(y, y.dtype.type(0), out=y)
    elif activation is not None:
        lo, hi = activation
        np.clip(y, y.dtype.type(lo), y.dtype.type(hi), out=y)
    return y


# -------------------------------------------------------------------- int8 convolution

@kernel("QLinearConv", "ConvInteger", attrs=_CONV_ATTRS)
def _make_qconv(node: Node, graph: Graph) -> Runner | None:
    run = _qconv_runner(node, graph)
    return None if run is None else _fallback(node, graph, run)


def _qconv_runner(node: Node, graph: Graph) -> Runner | None:
    """The int8 convolution's runner (its ``bind(ins, outs, post=None)`` takes a fused
    QLinearAdd of the result, ``_native.gemm``'s ``post``), before the reference fallback."""
    if node.op_type == "QLinearConv":
        x, sx, zx, w, sw, zw, sy, zy, b = _inputs(node, 9)
    else:
        x, w, zx, zw = _inputs(node, 4)
        sx = sw = sy = zy = b = ""
    W = _const(graph, w)
    if W is None or W.ndim != 4 or W.dtype not in _INT8:
        return None
    geometry = conv_geometry(node, W.shape)
    if geometry is None:
        return None
    stride, dilation, padding, groups = geometry
    o = W.shape[0]
    if node.op_type == "QLinearConv":
        SW = _const(graph, sw)
        if SW is None or (zw and _const(graph, zw) is None):
            return None
        xin, out = _QParams(graph, sx, zx), _QParams(graph, sy, zy)
    else:
        if (zx and _const(graph, zx) is None) or (zw and _const(graph, zw) is None):
            return None
        ZX = _const(graph, zx) if zx else None
        xin = _ConvIntegerInput(ZX)
        out = None
    ZW = _const(graph, zw) if zw else None
    B = _const(graph, b) if b else None
    if b and B is None:
        return None
    if node.op_type == "ConvInteger":   # scale 1 (per channel when the zero points are)
        SW = np.ones(np.size(ZW) if ZW is not None else 1, np.float32)
    wq = _weight_qtensor(W, SW, ZW, 0, o)
    pw = _api.pack_conv_weights(wq, groups=groups, weight_layout="OIHW", bias=B)
    result = node.outputs[0]

    def run(values):
        data = values[x]
        if data.ndim != 4 or not convertible(data.dtype):
            raise _NotServed
        # the kernels gather NHWC pixels: an NCHW input is copied once, by the native
        # transpose (free when it is the NCHW view of an NHWC array, as this runner returns)
        xq = xin.qtensor(values, nchw_to_nhwc(data, copy=False))
        if out is None:
            y = _api.conv2d(xq, pw, stride=stride, padding=padding, dilation=dilation, out_dtype=np.int32)
        else:
            ys, yz, ydt = out.get(values)
            y = _api.conv2d(xq, pw, stride=stride, padding=padding, dilation=dilation, out_scale=ys,
                             out_zero_point=yz, out_dtype=ydt, requant=_requant(graph)).data
        # an NCHW view of the NHWC result, no copy: the next convolution's transpose back
        # is then free, and elementwise operators between keep the NHWC memory order
        # (numpy's order="K"), so chains of convolutions stay NHWC in memory
        return {result: y.transpose(0, 3, 1, 2)}

    def bind(ins, outs, post=None):
        data, y = ins[0], outs[0]
        if not constant or data is None or data.ndim != 4 or not convertible(data.dtype):
            return None
        scope = {name: v for name, v in zip(node.inputs, ins) if name}
        ys, yz, ydt = out.get(scope) if out is not None else (None, 0, np.int32)
        res = y.transpose(0, 2, 3, 1)
        rows = output_rows(res) if res.flags.writeable else None

        def bound(xd, pre, weights):
            call = _conv.ConvCall(xin.qtensor(scope, xd), weights, None, stride, padding, dilation, groups, "NHWC",
                                  "OHWI", ys, yz, ydt, None, _requant(graph) if out is not None else "fp32", None)
            if res.shape != call.shape_nhwc or res.dtype != call.out_dtype or rows is None:
                return None
            return _chain(pre + call.bind(xd, rows, post))

        if (data.dtype == np.uint8 and pw.cg == 3 and groups == 1 and not data.transpose(0, 2, 3, 1).flags.c_contiguous
                and not np.any(pw.zero_point)):
            steps = _rgb_as_four_channels(data, xin.qtensor(scope, data).zero_point, pw, bound)
            if steps is not None:
                return steps
        return bound(*_nhwc_input(data), pw)
    constant = _constant_params(node, graph)
    run.bind = bind
    run.owns = {w: pw.oihw}     # the panels hold the weights: the graph's copy may go
    return run


@kernel("qkernels::QLinearConvAdd", attrs=_CONV_ATTRS)
def _make_qconv_add(node: Node, graph: Graph) -> Runner | None:
    """The fused residual Add of a quantized CNN (graph/rewrite.py: fuse_qlinear_residual_add):
    node by node the convolution's runner then the QLinearAdd's (the two nodes' code); on
    the plan one bound convolution whose tiles the QLinearAdd loop adds to the other tensor
    as they are stored, when that tensor lies in the result's memory order (NHWC rows)."""
    x, sx, zx, w, sw, zw, sy, zy, ts, tz, r, rs, rz, ys, yz, b = _inputs(node, 16)
    t = f"{node.outputs[0]}/conv"
    conv = Node(f"{node.name}/conv", "QLinearConv", "", [x, sx, zx, w, sw, zw, sy, zy, b], [t], dict(node.attrs))
    add = Node(f"{node.name}/add", "QLinearAdd", "com.microsoft", [t, ts, tz, r, rs, rz, ys, yz], list(node.outputs))
    conv_run = _qconv_runner(conv, graph)
    add_run = _make_qlinear_binary(add, graph)
    params = [_QParams(graph, s_, z_) for s_, z_ in ((ts, tz), (rs, rz), (ys, yz))]
    if conv_run is None or add_run is None or not all(q.const for q in params):
        return None
    (st, zt), (sr, zr), (sy_, zy_) = ((q.scale, q.zp) for q in params)

    def run(values):
        return add_run({**values, t: conv_run(values)[t]})

    def bind(ins, outs):
        ins = list(ins) + [None] * (16 - len(ins))
        other, y = ins[10], outs[0]
        if other is None or other.dtype != y.dtype or other.shape != y.shape or y.ndim != 4:
            return None
        rows = rows_view(other.transpose(0, 2, 3, 1))
        if rows is None or (rows.shape[1] > 1 and rows.strides[1] != 1):
            return None
        post = (_dispatch.isa_index(), rows, st, zt, sr, zr, sy_, zy_)
        return conv_run.bind(ins[:8] + ins[15:16], outs, post)
    run.bind = bind
    run.owns = conv_run.owns
    return _fallback(node, graph, run)


def _requant(graph: Graph) -> str:
    """The requantization of int8 outputs: fp32 (ONNX), or fixed point (integer multiplier
    and shift) for models marked ``qkernels.requant = fixedpoint`` by the quantizer's
    ``dsp`` target, whose power-of-two scales make it a rounding shift."""
    mode = graph.metadata.get("qkernels.requant", "fp32")
    return mode if mode in ("fp32", "fixedpoint") else "fp32"


class _ConvIntegerInput:
    """The input of ConvInteger/MatMulInteger: scale 1, a constant zero point (0 when
    omitted, of the input's dtype)."""

    def __init__(self, zp):
        if zp is not None and (np.size(zp) != 1 or zp.dtype not in _INT8):
            raise ValueError("per-tensor zero point expected")
        self.zp = None if zp is None else int(np.asarray(zp).reshape(()))
        self.dtype = None if zp is None else zp.dtype
        self._one = np.asarray(np.float32(1.0))
        self._one.flags.writeable = False

    def qtensor(self, values, data: np.ndarray) -> QTensor:
        if data.dtype not in _INT8 or (self.dtype is not None and data.dtype != self.dtype):
            raise _NotServed
        z = np.asarray(np.int32(self.zp or 0))
        return QTensor._trusted(data, self._one, z, (data.dtype.char, self.zp or 0, 1.0))


# ------------------------------------------------------------------------- int8 matmul

@kernel("QuantizeLinear", "DequantizeLinear", attrs=("axis",))
def _make_quantize_linear(node: Node, graph: Graph) -> Runner | None:
    """float32 <-> int8/uint8 with constant parameters, per tensor or per axis, on the
    native kernels (ONNX's definitions, bit for bit); other types, and NaN inputs (which
    the kernels refuse), go to the reference operator."""
    x, s, z = _inputs(node, 3)
    S = _const(graph, s)
    Z = _const(graph, z) if z else np.zeros((), np.uint8)
    if S is None or Z is None or S.dtype != _F32 or Z.dtype not in _INT8 or S.shape != Z.shape or S.ndim > 1:
        return None
    axis = node.attrs.get("axis", 1) if S.size > 1 else None
    S, Z = (S, Z) if axis is not None else (S.reshape(()), Z.reshape(()))
    result = node.outputs[0]

    def run(values):
        data = values[x]
        if data.dtype != (_F32 if node.op_type == "QuantizeLinear" else Z.dtype):
            raise _NotServed
        if axis is None and not data.flags.c_contiguous:
            # per tensor: the result in the input's memory order (an NCHW view of NHWC
            # memory stays one, and the plan binds it), when that is one run of memory
            y = np.empty_like(data, dtype=Z.dtype if node.op_type == "QuantizeLinear" else _F32)
            call = bind([values[i] if i else None for i in node.inputs], [y])
            if call is not None:
                call()
                return {result: y}
        try:
            if node.op_type == "QuantizeLinear":
                return {result: quantize(data, S, Z, Z.dtype, axis).data}
            return {result: dequantize(data, S, Z, axis)}
        except ValueError:       # NaN, or per-axis parameters that do not fit the data
            raise _NotServed from None

    def bind(ins, outs):
        data, y = ins[0], outs[0]
        to_q = node.op_type == "QuantizeLinear"
        if data is None or data.dtype != (_F32 if to_q else Z.dtype) or y.dtype != (Z.dtype if to_q else _F32) \
                or data.shape != y.shape:
            return None
        if axis is None:         # per tensor: any memory order both share, as one run of values
            flat = _same_order_runs(data, y)
            if flat is None:
                return None
            src, dst, ax = flat[0], flat[1], None
        elif data.flags.c_contiguous and y.flags.c_contiguous and -data.ndim <= axis < data.ndim:
            src, dst, ax = data, y, axis % data.ndim
            if S.size != data.shape[ax]:
                return None
        else:
            return None
        sc, zc, channels, inner = _native_params(S, Z, ax, src.shape)
        sc, zc = np.ascontiguousarray(sc, np.float32), np.ascontiguousarray(zc, np.int32)   # as the kernels read them
        isa, threads = _dispatch.isa_index(), _dispatch.get_num_threads()
        if not to_q:
            return partial(_native.dequantize, isa, src, Z.dtype == np.int8, sc, zc, channels, inner, dst, threads)
        scope = {name: v for name, v in zip(node.inputs, ins) if name}

        def call():
            if _native.quantize(isa, src, sc, zc, channels, inner, Z.dtype == np.int8, dst, threads):
                np.copyto(y, run_node(node, scope)[result])   # NaN: what the reference operator does
        return call
    run.bind = bind
    return _fallback(node, graph, run)


def _flat_run(v: np.ndarray) -> np.ndarray | None:
    """``v`` as a 1-D view of its elements in memory order, when they fill one run of
    memory (any axis order, no gaps, no negative strides); None otherwise. Dimensions
    of size 1 are skipped (numpy leaves any stride there)."""
    if v.size <= 1:
        return v.reshape(-1)
    dims = [(d, st) for d, st in zip(v.shape, v.strides) if d != 1]
    if any(st <= 0 for _, st in dims):
        return None
    dims.sort(key=lambda ds: -ds[1])
    expect = v.itemsize
    for d, st in reversed(dims):
        if st != expect:
            return None
        expect *= d
    return np.lib.stride_tricks.as_strided(v, (v.size,), (v.itemsize,), writeable=v.flags.writeable)


def broadcast_result(x, w, dtype, y=None):
    """(shape, base, y) of an elementwise op of ``x`` and ``w``, both ``dtype``: base the
    operand of the result's shape (one run of memory), y the given result or a new one in
    base's memory order; None when they do not broadcast so or y does not fit."""
    if x is None or w is None or x.dtype != dtype or w.dtype != dtype:
        return None
    try:
        shape = np.broadcast_shapes(x.shape, w.shape)
    except ValueError:
        return None
    base = x if x.shape == shape else w if w.shape == shape else None
    if base is None or _flat_run(base) is None:
        return None
    if y is None:
        y = np.empty_like(base)
    return None if y.shape != shape or y.dtype != dtype else (shape, base, y)


def _same_layout(u: np.ndarray, v: np.ndarray) -> bool:
    """One shape and the same strides wherever a dimension is not 1 (so the same
    memory order, element for element)."""
    return u.shape == v.shape and all(a == b for a, b, d in zip(u.strides, v.strides, u.shape) if d != 1)


def _same_order_runs(*arrays: np.ndarray) -> list | None:
    """``arrays`` (one shape, strides in one proportion to their itemsizes) as flat views of
    one run of memory each, element i of each the same element; None if they are not."""
    def rel(a):
        return [st // a.itemsize if d != 1 else 0 for st, d in zip(a.strides, a.shape)]
    a0 = arrays[0]
    if any(a.shape != a0.shape or any(st % a.itemsize for st in a.strides) or rel(a) != rel(a0) for a in arrays):
        return None
    flat = [_flat_run(a) for a in arrays]
    return None if any(f is None for f in flat) else flat


@kernel("QLinearMatMul", "MatMulInteger")
def _make_qmatmul(node: Node, graph: Graph) -> Runner | None:
    integer = node.op_type == "MatMulInteger"
    if integer:
        a, b, za, zb = _inputs(node, 4)
        if (za and _const(graph, za) is None) or (zb and _const(graph, zb) is None):
            return None
        ain = _ConvIntegerInput(_const(graph, za) if za else None)
        ZB, SB, out = (_const(graph, zb) if zb else None), None, None
    else:
        a, sa, za, b, sb, zb, sy, zy = _inputs(node, 8)
        SB, ZB = _const(graph, sb), _const(graph, zb)
        if SB is None or ZB is None:
            return None
        ain, out = _QParams(graph, sa, za), _QParams(graph, sy, zy)
    B = _const(graph, b)
    result = node.outputs[0]
    if B is not None:
        if B.ndim != 2 or B.dtype not in _INT8:
            return None
        n = B.shape[1]
        scale = np.ones(np.size(ZB) if ZB is not None else 1, np.float32) if integer else SB
        pw = _api.pack_weights(_weight_qtensor(B, scale, ZB, 1, n))
    else:   # both operands vary: the kernels pack B at each call
        if ZB is not None and np.size(ZB) != 1 or SB is not None and np.size(SB) != 1:
            return None
        pw = None
        sb_f = 1.0 if SB is None else float(SB.reshape(()))
        zb_i = 0 if ZB is None else int(ZB.reshape(()))

    def run(values):
        data = values[a]
        aq = ain.qtensor(values, data)
        if pw is None:
            bd = values[b]
            if bd.dtype not in _INT8 or bd.ndim < 2 or (ZB is not None and bd.dtype != ZB.dtype):
                raise _NotServed
            rhs = QTensor(bd, sb_f, zb_i)
        else:
            rhs = pw
        if out is None:
            return {result: _api.matmul(aq, rhs, out_dtype=np.int32)}
        ys, yz, ydt = out.get(values)
        return {result: _api.matmul(aq, rhs, out_scale=ys, out_zero_point=yz, out_dtype=ydt, requant=_requant(graph)).data}

    def bind(ins, outs):
        """Constant weights and parameters: one bound GEMM over x (..., K) as rows."""
        x, y = ins[0], outs[0]
        if pw is None or out is None or not (out.const and ain.const) or x is None or x.ndim < 2 \
                or x.dtype != ain.dtype or x.shape[-1] != pw.k:
            return None
        spec = output_spec("matmul", ain.dtype, None, out.dtype, out.scale, out.zp, None, _requant(graph))
        x2, y2 = rows_view(x), rows_view(y, writeable=True)
        if x2 is None or y2 is None or y.shape != x.shape[:-1] + (pw.n,) or y.dtype != spec.dtype \
                or (pw.n > 1 and y2.strides[1] != 1) or (pw.k > 1 and x2.strides[1] != 1):
            return None
        call = pw.prepare(x2.shape[0], ain.dtype == np.int8, ain.zp, ain.scale, spec)
        return call.run(x2, y2, bind=True)
    run.bind = bind
    if pw is not None:
        run.owns = {b: lambda: pw.data}
    return _fallback(node, graph, run)


@kernel("com.microsoft::QGemm", attrs=("alpha", "transA", "transB"))
def _make_qgemm(node: Node, graph: Graph) -> Runner | None:
    """com.microsoft QGemm as ONNX Runtime computes it: int32 sums plus the int32 C,
    times ``alpha * a_scale * b_scale[n]`` (float32, in that order), over ``y_scale``
    and requantized, or float32 when y_scale is omitted. alpha is folded into a's
    scale, which gives the same float32 products."""
    a, sa, za, b, sb, zb, c, sy, zy = _inputs(node, 9)
    B, SB, ZB = _const(graph, b), _const(graph, sb), _const(graph, zb)
    SA, ZA = _const(graph, sa), _const(graph, za)
    alpha = float(node.attrs.get("alpha", 1.0))
    trans_a, trans_b = int(node.attrs.get("transA", 0)), int(node.attrs.get("transB", 0))
    if B is None or SB is None or ZB is None or SA is None or ZA is None or B.ndim != 2 or B.dtype not in _INT8:
        return None
    if np.size(SA) != 1 or np.size(ZA) != 1 or ZA.dtype not in _INT8 or not alpha > 0:
        return None
    bk = B.T if trans_b else B
    n = bk.shape[1]
    C = _const(graph, c) if c else None
    if c and (C is None or C.dtype != np.int32):
        return None
    bias = None
    if C is not None:
        if C.size in (1, n) and (C.ndim < 2 or C.shape[0] == 1):
            bias = np.broadcast_to(C.reshape(-1), (n,)).astype(np.int32)
        else:
            return None
    sa_alpha = np.float32(np.float32(alpha) * np.float32(SA.reshape(())))
    ain = _QParams.constant(sa_alpha, ZA)
    pw = _api.pack_weights(_weight_qtensor(bk, SB, ZB, 1, n), bias=bias)   # packed from any strides
    out = _QParams(graph, sy, zy) if sy else None
    if out is None:
        float_scale = (sa_alpha * np.broadcast_to(SB.astype(np.float32).reshape(-1), (n,))).astype(np.float32)
    result = node.outputs[0]

    def run(values):
        data = values[a]
        if data.ndim != 2:
            raise _NotServed
        aq = ain.qtensor(values, data.T if trans_a else data)
        if out is None:
            acc = _api.matmul(aq, pw, out_dtype=np.int32)
            return {result: acc.astype(np.float32) * float_scale}
        ys, yz, ydt = out.get(values)
        return {result: _api.matmul(aq, pw, out_scale=ys, out_zero_point=yz, out_dtype=ydt, requant=_requant(graph)).data}

    def bind(ins, outs):
        data, y = ins[0], outs[0]
        if out is None or not out.const or data is None or data.ndim != 2 or data.dtype != ain.dtype:
            return None
        a_mat = data.T if trans_a else data
        spec = output_spec("matmul", ain.dtype, None, out.dtype, out.scale, out.zp, None, _requant(graph))
        if y.shape != (a_mat.shape[0], n) or y.dtype != spec.dtype or y.strides[1] != 1 or a_mat.shape[1] != pw.k:
            return None
        call = pw.prepare(a_mat.shape[0], ain.dtype == np.int8, ain.zp, ain.scale, spec)
        return call.run(a_mat, y, bind=True)
    run.bind = bind
    run.owns = {b: (lambda: np.ascontiguousarray(pw.data.T)) if trans_b else (lambda: pw.data)}
    return _fallback(node, graph, run)


# --------------------------------------------------------- int8 elementwise (com.microsoft)

@kernel("com.microsoft::QLinearAdd", "com.microsoft::QLinearMul")
def _make_qlinear_binary(node: Node, graph: Graph) -> Runner | None:
    """QLinearAdd / QLinearMul with constant per-tensor parameters on the native
    elementwise loop (the reference operator's float32 steps, bit for bit): over the
    memory of the operand of the result's shape (a convolution's NHWC memory stays so);
    the other operand, when it broadcasts (a constant, a per-channel gate) or lies in
    another order, is first copied into a buffer of that order. Both operands
    broadcasting, and slices of memory, go to the reference operator."""
    a, sa, za, b, sb, zb, sy, zy = _inputs(node, 8)
    params = [_QParams(graph, s_, z_) for s_, z_ in ((sa, za), (sb, zb), (sy, zy))]
    if not all(q.const for q in params) or len({q.dtype for q in params}) != 1 \
            or not all(0.0 < q.scale < np.inf for q in params):
        return None
    (sa_, za_), (sb_, zb_), (sy_, zy_) = ((q.scale, q.zp) for q in params)
    dtype, mul, result = params[0].dtype, node.op_type == "QLinearMul", node.outputs[0]
    info = np.iinfo(dtype)
    da, db = (max(abs(info.min - z), abs(info.max - z)) for z in (za_, zb_))
    largest = (sa_ * da) * (sb_ * db) if mul else sa_ * da + sb_ * db
    if not largest / sy_ <= 2.0 ** 21:          # the loop's precondition (kernels/qbinary.c), with margin
        return None

    isa = _dispatch.isa_index()
    scalar = next(((k, c) for k, c in ((0, _const(graph, a)), (1, _const(graph, b)))
                   if c is not None and c.size == 1 and c.dtype == dtype), None)
    if scalar is not None:      # one operand a constant number: y is a function of one byte
        return _qlinear_table(node, graph, dtype, result, (b, a)[scalar[0]], scalar[1],
                              partial(_native.qlinear_binary, isa, mul), (sa_, za_, sb_, zb_, sy_, zy_), scalar[0])

    def operands(x, w, y=None, fixed=()):
        """(calls, flat a, flat b, flat y, y): the operands as runs of one memory order, the
        one of whichever input has the result's shape (and of y when given); the other
        one broadcast or reordered into a buffer of that order by the calls (each run;
        once, now, for the operands in ``fixed``: constants)."""
        got = broadcast_result(x, w, dtype, y)
        if got is None:
            return None
        shape, base, y = got
        if not _same_layout(y, base):
            return None
        calls, ops = [], []
        for v in (x, w):
            if v.shape != shape or not _same_layout(v, base):
                full = np.empty_like(base)
                if any(v is f for f in fixed):
                    np.copyto(full, v)
                else:
                    calls.append(partial(np.copyto, full, v))
                v = full
            ops.append(v)
        flat = [_flat_run(v) for v in (*ops, y)]
        return None if any(f is None for f in flat) else (calls, *flat, y)

    def run(values):
        got = operands(values[a], values[b])
        if got is None:
            raise _NotServed
        calls, fa, fb, fy, y = got
        for call in calls:
            call()
        _native.qlinear_binary(_dispatch.isa_index(), mul, fa, sa_, za_, fb, sb_, zb_, sy_, zy_, fy)
        return {result: y}

    def bind(ins, outs):
        got = operands(ins[0], ins[3], outs[0], [v for v, n in ((ins[0], a), (ins[3], b)) if n in graph.initializers])
        if got is None:
            return None
        calls, fa, fb, fy, _ = got
        loop = partial(_native.qlinear_binary, isa, mul, fa, sa_, za_, fb, sb_, zb_, sy_, zy_, fy)
        return _chain(calls + [loop])
    run.bind = bind
    return _fallback(node, graph, run)


@kernel("qkernels::TableLookup")
def _make_table_lookup(node: Node, graph: Graph) -> Runner | None:
    """A DequantizeLinear -> elementwise op -> QuantizeLinear chain as its byte table
    (graph/rewrite.py: _qdq_table): one native lookup over the value's memory."""
    table = _const(graph, node.inputs[1]) if len(node.inputs) > 1 else None
    if table is None or table.ndim not in (1, 2) or table.shape[-1] != 256 or table.dtype not in _INT8:
        return None
    return _byte_table(node, graph, node.inputs[0], node.outputs[0], table.view(np.uint8), table.dtype)


def _byte_table(node: Node, graph: Graph, x: str, result: str, table: np.ndarray, out_dtype,
                broadcasts_with: np.ndarray | None = None) -> Runner:
    """y = table[x] over int8/uint8 ``x``'s bytes (``table``: 256 bytes of ``out_dtype``),
    or y[:, c] = table[c][x[:, c]] for a (C, 256) table, one move per channel (any memory
    order: a channel of NHWC memory is a strided view); y in x's memory order; node by
    node and bound, one ``_native.BoundCopy``."""
    def lookup(data, y):
        if data is None or data.dtype not in _INT8 or y.shape != data.shape or y.dtype != out_dtype or (
                broadcasts_with is not None and np.broadcast_shapes(data.shape, broadcasts_with.shape) != data.shape):
            return None
        if table.ndim == 1:
            return _native.BoundCopy([(y.view(np.uint8), data.view(np.uint8), table)], out=y)
        if data.ndim < 2 or data.shape[1] != len(table):
            return None
        return _native.BoundCopy([(y.view(np.uint8)[:, c], data.view(np.uint8)[:, c], table[c])
                                  for c in range(len(table))], out=y)

    def run(values):
        data = values[x]
        y = np.empty_like(data, dtype=out_dtype) if data.dtype in _INT8 else None
        call = None if y is None else lookup(data, y)
        if call is None:
            raise _NotServed
        call()
        return {result: y}

    run.bind = lambda ins, outs: lookup(ins[list(node.inputs).index(x)], outs[0])
    return _fallback(node, graph, run)


def _qlinear_table(node: Node, graph: Graph, dtype, result: str, x: str, c: np.ndarray, loop, params, k: int):
    """QLinearAdd/Mul of ``x`` and the constant number ``c`` (operand ``k``): the loop's
    (``loop(fa, sa, za, fb, sb, zb, sy, zy, fy)``) result for each of the 256 values of
    x, once, then a byte table lookup per run (the same bits as the loop)."""
    every = np.arange(256, dtype=np.uint8).view(dtype)
    same = np.full(256, c.reshape(()), dtype)
    table = np.empty(256, dtype)
    sa, za, sb, zb, sy, zy = params
    loop(*((same, sa, za, every, sb, zb) if k == 0 else (every, sa, za, same, sb, zb)), sy, zy, table)
    return _byte_table(node, graph, x, result, table.view(np.uint8), dtype, c)


# ------------------------------------------------------------------ global pooling

def _pixels_view(x: np.ndarray, channels_last: bool = False) -> np.ndarray | None:
    """``x`` (N, C, spatial...) -- (N, spatial..., C) when ``channels_last`` -- as the view
    (N, C, P) of its P pixels, when they lie at one stride; None otherwise."""
    if x is None or x.ndim < 3:
        return None
    if channels_last:
        x = np.moveaxis(x, -1, 1)
    dims = [(d, st) for d, st in zip(x.shape[2:], x.strides[2:]) if d != 1]
    if any(s0 != s1 * d1 for (_, s0), (d1, s1) in zip(dims, dims[1:])):
        return None
    pixels = int(np.prod(x.shape[2:], dtype=np.int64))
    stride = dims[-1][1] if dims else x.itemsize
    return np.lib.stride_tricks.as_strided(x, (x.shape[0], x.shape[1], pixels), (*x.strides[:2], stride),
                                           writeable=False)


def _pool_runner(node: Node, graph: Graph, dtypes, channels_last: bool, args: tuple) -> Runner:
    """A global average pool node on the native loop: ``args`` (scale, zx, zy) as
    :func:`qkernels._native.global_average_pool` takes them."""
    result = node.outputs[0]

    def shape_of(x):
        return (x.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],) if channels_last else x.shape[:2] + (1,) * (
            x.ndim - 2)

    def run(values):
        x = values[node.inputs[0]]
        x3 = _pixels_view(x, channels_last) if x.dtype in dtypes else None
        if x3 is None or x3.shape[2] == 0:
            raise _NotServed
        y = np.empty(shape_of(x), x.dtype)
        _native.global_average_pool(x3, y.reshape(x3.shape[:2]), *args)
        return {result: y}

    def bind(ins, outs):
        x, y = ins[0], outs[0]
        x3 = _pixels_view(x, channels_last) if x is not None and x.dtype in dtypes else None
        if x3 is None or x3.shape[2] == 0 or y.shape != shape_of(x) or y.dtype != x.dtype or not y.flags.c_contiguous:
            return None
        return partial(_native.global_average_pool, x3, y.reshape(x3.shape[:2]), *args)
    run.bind = bind
    return _fallback(node, graph, run)


@kernel("GlobalAveragePool")
def _make_global_average_pool(node: Node, graph: Graph) -> Runner | None:
    """float32 GlobalAveragePool: each mean summed in float64, rounded once (the reference
    sums in float32, pairwise: within its rounding)."""
    return _pool_runner(node, graph, (_F32,), False, ())


@kernel("com.microsoft::QLinearGlobalAveragePool", attrs=("channels_last",))
def _make_qlinear_global_average_pool(node: Node, graph: Graph) -> Runner | None:
    """com.microsoft QLinearGlobalAveragePool with constant per-tensor parameters: as
    onnxruntime computes it (the exact sum, the float32 scale x_scale / (y_scale * P)),
    bit for bit; the scale depends on P, so the runner is made per input size."""
    x, sx, zx, sy, zy = _inputs(node, 5)
    pin, pout = _QParams(graph, sx, zx), _QParams(graph, sy, zy)
    if not (pin.const and pout.const) or pin.dtype != pout.dtype or node.attrs.get("channels_last", 0) not in (0, 1):
        return None
    last = bool(node.attrs.get("channels_last", 0))
    runners: dict[int, Runner] = {}

    def runner_for(pixels: int) -> Runner:
        if pixels not in runners:
            scale = np.float32(pin.scale) / (np.float32(pout.scale) * np.float32(pixels))
            if not 0 < scale < np.inf:
                raise _NotServed
            runners[pixels] = _pool_runner(node, graph, (pin.dtype,), last, (float(scale), pin.zp, pout.zp))
        return runners[pixels]

    def pixels_of(x) -> int:
        return int(np.prod(x.shape[1:-1] if last else x.shape[2:], dtype=np.int64)) if x.ndim >= 3 else 0

    def run(values):
        data = values[x]
        if data.ndim < 3 or data.dtype != pin.dtype:
            raise _NotServed
        return runner_for(pixels_of(data))(values)

    def bind(ins, outs):
        data = ins[0]
        if data is None or data.ndim < 3 or data.dtype != pin.dtype:
            return None
        return runner_for(pixels_of(data)).bind(ins, outs)
    run.bind = bind
    return _fallback(node, graph, run)


# ------------------------------------------------------------------ float convolution

@kernel("Conv", "com.microsoft::FusedConv", attrs=_CONV_ATTRS + ("activation", "activation_params"))
def _make_conv(node: Node, graph: Graph) -> Runner | None:
    x, w, b = _inputs(node, 3)
    z = node.inputs[3] if node.op_type == "FusedConv" and len(node.inputs) > 3 else ""   # FusedConv's Z (a sum)
    if len(node.inputs) > 4 and any(node.inputs[4:]):
        return _fused_reference(node, graph)
    activation = _activation(node)
    W = _const(graph, w)
    B = _const(graph, b) if b else None
    geometry = conv_geometry(node, W.shape) if W is not None else None
    if activation is False or W is None or W.dtype not in (_F16, _F32) or geometry is None \
            or (b and (B is None or B.dtype != W.dtype or B.shape != (W.shape[0],))):
        return _fused_reference(node, graph)
    stride, dilation, padding, groups = geometry
    if W.shape[0] % groups or W.shape[1] == 0:
        return _fused_reference(node, graph)
    result = node.outputs[0]
    pw = _api.pack_conv_weights(W, groups=groups, weight_layout="OIHW",
                                 bias=None if B is None else B.astype(np.float32))
    dtype = W.dtype
    if z and dtype != _F32:      # fp16 would round the sum once, the unfused Add twice
        return _fused_reference(node, graph)

    def run(values):
        data = values[x]
        if data.dtype != dtype or data.ndim != 4:
            raise _NotServed
        if z:   # the sum added in the output stage, after the bias, before the activation
            zn = values[z].transpose(0, 2, 3, 1) if values[z].ndim == 4 else None
            if zn is None or zn.dtype != dtype:
                raise _NotServed
            y = np.empty(zn.shape, dtype)
            try:
                calls = _float.bind_conv2d(nchw_to_nhwc(data, copy=False), pw, stride, padding, dilation,
                                           activation, y, residual=zn)
            except ValueError:   # a Z that broadcasts, or lies otherwise: the reference adds it
                raise _NotServed from None
            for call in calls:
                call.run()
            return {result: y.transpose(0, 3, 1, 2)}
        # NHWC in (free for the NCHW view of an NHWC result), an NCHW view of the NHWC
        # result out (see _make_qconv): chains of convolutions stay NHWC in memory
        y = _api.conv2d(nchw_to_nhwc(data, copy=False), pw, stride=stride, padding=padding, dilation=dilation,
                        activation=activation)
        return {result: y.transpose(0, 3, 1, 2)}

    def bind(ins, outs):
        data = ins[0]
        if data is None or data.dtype != dtype or data.ndim != 4:
            return None
        residual = None
        if z:
            if len(ins) < 4 or ins[3] is None or ins[3].ndim != 4:
                return None
            residual = ins[3].transpose(0, 2, 3, 1)
        xd, pre = data.transpose(0, 2, 3, 1), []   # (an RGB image's direct convolution reads NCHW in place)
        if not _float.reads_nchw(xd, pw, stride, padding, dilation, activation, z):
            xd, pre = _nhwc_input(data)
        calls = _float.bind_conv2d(xd, pw, stride, padding, dilation, activation, outs[0].transpose(0, 2, 3, 1),
                                   residual=residual)
        return _chain(pre + calls)
    run.bind = bind
    if W.ndim == 4:
        run.owns = {w: pw.oihw}
    return _fallback_fused(node, graph, run, activation)


def _reference_fused(node: Node, graph: Graph, activation) -> Runner | None:
    """A fused node on the reference operator of its base (Conv, Gemm), then the
    activation in numpy; None when the reference does not run that base node."""
    base = {"com.microsoft::FusedConv": "Conv", "com.microsoft::FusedGemm": "Gemm",
            "qkernels::FusedConvTranspose": "ConvTranspose"}.get(node.key)
    z = node.inputs[3] if base == "Conv" and len(node.inputs) > 3 else ""   # FusedConv's Z: added first
    if base is None or activation is False or (len(node.inputs) > 4 and any(node.inputs[4:])) \
            or (base == "Gemm" and len(node.inputs) > 3 and any(node.inputs[3:])):
        return None
    attrs = {k: v for k, v in node.attrs.items() if not k.startswith("activation")}
    plain = Node(node.name, base, "", list(node.inputs[:3]), list(node.outputs), attrs)
    if reference_why_not(plain, graph) is not None:
        return None

    def run(values):
        out = run_node(plain, values)
        if z:
            out = {k: np.asarray(np.add(v, values[z])).astype(v.dtype, copy=False) for k, v in out.items()}
        return {k: apply_activation(np.array(v), activation) for k, v in out.items()}
    run.placement = "reference"
    return run


def _fused_reference(node: Node, graph: Graph) -> Runner | None:
    """No kernel for this node: None for a plain ONNX operator (the reference runs it),
    the reference base operator plus the activation for a fused one."""
    return _reference_fused(node, graph, _activation(node)) if node.domain else None


def _fallback_fused(node: Node, graph: Graph, runner: Runner, activation) -> Runner:
    if not node.domain:
        return _fallback(node, graph, runner)
    return _fallback(node, graph, runner, _reference_fused(node, graph, activation))


# ----------------------------------------------------------------------- float GEMM

@kernel("Gemm", "com.microsoft::FusedGemm",
        attrs=("alpha", "beta", "transA", "transB", "activation", "activation_alpha", "activation_beta"))
def _make_gemm(node: Node, graph: Graph, b_value: np.ndarray | None = None, k_order=None) -> Runner | None:
    """``b_value``: B itself (not the graph's constant); ``k_order``: B's rows (along K)
    taken in this order (see _flatten_gemm)."""
    a, b, c = _inputs(node, 3)
    activation = _activation(node)
    B = _const(graph, b) if b_value is None else b_value
    C = _const(graph, c) if c else None
    alpha, beta = float(node.attrs.get("alpha", 1.0)), float(node.attrs.get("beta", 1.0))
    trans_a, trans_b = int(node.attrs.get("transA", 0)), int(node.attrs.get("transB", 0))
    if activation is False or B is None or B.ndim != 2 or B.dtype not in (_F16, _F32) or (c and C is None):
        return _fused_reference(node, graph)
    bk = B.T if trans_b else B
    if k_order is not None:
        if len(k_order) != bk.shape[0]:     # the input's C*H*W is not B's K: the unfused run says so
            return None
        bk = bk[k_order]
    n = bk.shape[1]
    bias = None
    if C is not None:
        if C.dtype != B.dtype or C.size not in (1, n) or (C.ndim == 2 and C.shape[0] != 1) or C.ndim > 2:
            return _fused_reference(node, graph)
        bias = np.broadcast_to(C.reshape(-1), (n,))
    result = node.outputs[0]
    dtype = B.dtype
    if alpha != 1.0:   # fp32: alpha folded into the weights (one rounding per weight); fp16 weights
        if dtype == _F16:   # would lose it: the reference operator
            return _fused_reference(node, graph)
        bk = (np.float32(alpha) * bk).astype(np.float32)
    bias32 = None if bias is None else (np.float32(beta) * bias.astype(np.float32)).astype(np.float32)
    pw = _float.PACKED[dtype](np.ascontiguousarray(bk), bias=bias32, copy=False)

    def run(values):
        data = values[a]
        if data.dtype != dtype or data.ndim != 2:
            raise _NotServed
        return {result: _api.matmul(data.T if trans_a else data, pw, activation=activation)}

    def bind(ins, outs):
        data, y = ins[0], outs[0]
        if data is None or data.dtype != dtype or data.ndim != 2 or y.dtype != dtype:
            return None
        return _bind_gemm(data.T if trans_a else data, pw, activation, y)
    run.bind = bind
    if alpha == 1.0:     # the panels hold B itself (transposed or not)
        run.owns = {b: (lambda: pw.data.T) if trans_b else (lambda: pw.data)}
    return _fallback_fused(node, graph, run, activation)


def _flatten_gemm(flatten: Node, gemm: Node, graph: Graph, gemm_runner: Runner) -> tuple[Node, Runner]:
    """Flatten (axis 1) -> Gemm as one step: the Gemm on the Flatten's input. A CNN's
    (N, C, H, W) value is the NCHW view of NHWC memory: the Gemm reads that memory in place
    as (N, H*W*C) rows, its weights' rows put in (H, W, C) order once per input shape, where
    the Flatten copied the view into (C, H, W) order on every run (60 us of the digits
    CNN's 1 ms at batch 400). The same products, summed in another order (float rounding
    only). Any other input: flattened, then the Gemm as it was."""
    x, f, b = flatten.inputs[0], flatten.outputs[0], gemm.inputs[1]
    node = Node(gemm.name, gemm.op_type, gemm.domain, [x] + list(gemm.inputs[1:]), list(gemm.outputs),
                dict(gemm.attrs))
    permuted: dict = {}

    def nhwc_gemm(shape) -> Runner | None:
        """The Gemm over rows of (H, W, C) order for inputs of NCHW ``shape``."""
        if shape not in permuted:
            c, h, w = shape[1:]
            order = np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)
            permuted[shape] = _make_gemm(gemm, graph, b_value=gemm_runner.owns[b](), k_order=order)
        return permuted[shape]

    def nhwc_rows(data: np.ndarray) -> np.ndarray | None:
        """(N, H*W*C) rows of NHWC memory, or None (any other memory, or no reorder needed)."""
        if data.ndim != 4 or data.flags.c_contiguous or not data.transpose(0, 2, 3, 1).flags.c_contiguous:
            return None
        return data.transpose(0, 2, 3, 1).reshape(data.shape[0], -1)

    def run(values):
        data = values[x]
        rows = nhwc_rows(data)
        runner = None if rows is None else nhwc_gemm(data.shape)
        if runner is None:
            runner, rows = gemm_runner, run_node(flatten, values)[f]
        return runner({**values, f: rows})

    def bind(ins, outs):
        data = ins[0]
        if data is None:
            return None
        rows = nhwc_rows(data)
        if rows is not None:
            runner = nhwc_gemm(data.shape)
            return None if runner is None else runner.bind([rows] + list(ins[1:]), outs)
        if not data.flags.c_contiguous or data.ndim < 1:
            return None
        return gemm_runner.bind([data.reshape(data.shape[0], -1)] + list(ins[1:]), outs)
    run.bind = bind
    run.owns = gemm_runner.owns
    run.placement = getattr(gemm_runner, "placement", "native")
    return node, run


def _bind_gemm(a: np.ndarray, pw, activation, y: np.ndarray):
    """The float GEMM y = act(a . pw + bias) bound to a (M, K) and y (M, N), or None."""
    if a.ndim != 2 or y.shape != (a.shape[0], pw.n) or a.shape[1] != pw.k or y.strides[1] != y.itemsize:
        return None
    lo, hi = _float._clamp(activation)
    bias = pw.bias if pw.bias is not None else _float._bias(None, pw.n)
    return _float.gemm2d(a, pw, bias, lo, hi, y, bind=True)


@kernel("MatMul")
def _make_matmul(node: Node, graph: Graph) -> Runner | None:
    a, b = _inputs(node, 2)
    B = _const(graph, b)
    result = node.outputs[0]
    if B is not None and (B.dtype not in (_F16, _F32) or B.ndim != 2):
        return None
    if B is not None:
        pw = _float.PACKED[B.dtype](B, copy=False)     # (a read-only constant of the session)
        dtype = B.dtype

        def run(values):
            data = values[a]
            if data.dtype != dtype or data.ndim < 1:
                raise _NotServed
            return {result: _api.matmul(data, pw)}

        def bind(ins, outs):
            data, y = ins[0], outs[0]
            if data is None or data.dtype != dtype or data.ndim < 2 or y.dtype != dtype:
                return None
            rows, y2 = data.reshape(-1, data.shape[-1]), y.reshape(-1, y.shape[-1])   # views, or not bound:
            if not (np.shares_memory(rows, data) and np.shares_memory(y2, y)) and data.size and y.size:
                return None
            return _bind_gemm(rows, pw, None, y2)
        run.bind = bind
        run.owns = {b: lambda: pw.data}
    else:
        def run(values):
            da, db = values[a], values[b]
            if da.dtype not in (_F16, _F32) or db.dtype != da.dtype or da.ndim < 1 or db.ndim < 1:
                raise _NotServed
            if da.ndim < 2 or db.ndim < 2:
                if da.dtype == _F32:
                    raise _NotServed
                return {result: _api.matmul(da, db)}
            return {result: _float.batched_matmul(da, db)}

        def bind(ins, outs):
            # two activations (attention's Q K^T, weights x V): every product in one native loop
            da, db, y = ins[0], ins[1], outs[0]
            if da is None or db is None or da.dtype not in (_F16, _F32) or db.dtype != da.dtype \
                    or da.ndim < 2 or db.ndim < 2 or y.dtype != da.dtype or not y.flags.c_contiguous:
                return None
            return _float.batched_matmul(da, db, y, bind=True)
        run.bind = bind
    return _fallback(node, graph, run)


# ------------------------------------------- reference operators on numpy's loops, in place

_UFUNCS = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}


def _bind_binary(node: Node, ins, outs):
    """Float Add/Sub/Mul/Div: the reference's numpy call (np.add(a, b) of one dtype) with
    ``out=``."""
    a, b, y = ins[0], ins[1], outs[0]
    if a is None or b is None or a.dtype.kind != "f" or not a.dtype == b.dtype == y.dtype \
            or np.broadcast_shapes(a.shape, b.shape) != y.shape:
        return None
    return partial(_UFUNCS[node.op_type], a, b, out=y)


def _bind_relu(node: Node, ins, outs):
    """float32 Relu: the reference's np.maximum(x, 0) with ``out=``."""
    x, y = ins[0], outs[0]
    if x is None or x.dtype != _F32 or y.dtype != _F32 or x.shape != y.shape:
        return None
    return partial(np.maximum, x, _F32.type(0), out=y)


def _bind_clip(node: Node, ins, outs):
    """float32 Clip with constant bounds: the reference's np.maximum then np.minimum."""
    x, y = ins[0], outs[0]
    if x is None or x.dtype != _F32 or y.dtype != _F32 or x.shape != y.shape:
        return None
    lo, hi = (None if len(ins) <= i or ins[i] is None else ins[i].astype(_F32) for i in (1, 2))
    if any(b is not None and b.size != 1 for b in (lo, hi)):
        return None

    def call():
        src = x
        if lo is not None:
            np.maximum(src, lo, out=y)
            src = y
        if hi is not None:
            np.minimum(src, hi, out=y)
        elif lo is None:
            np.copyto(y, x)
    return call


def _bind_hard_sigmoid(node: Node, ins, outs):
    """float32 HardSigmoid: the reference's clip(alpha * x + beta, 0, 1), in place."""
    x, y = ins[0], outs[0]
    if x is None or x.dtype != _F32 or y.dtype != _F32 or x.shape != y.shape:
        return None
    alpha, beta = _F32.type(node.attrs.get("alpha", 0.2)), _F32.type(node.attrs.get("beta", 0.5))
    zero, one = _F32.type(0), _F32.type(1)

    def call():
        np.multiply(x, alpha, out=y)
        np.add(y, beta, out=y)
        np.clip(y, zero, one, out=y)
    return call


def _bind_max_pool(node: Node, ins, outs):
    """2-D MaxPool (no Indices output) of float32/int8/uint8 on the native loop: the
    reference's geometry, the maximum exact and NaN propagating, so the same values."""
    x, y = ins[0], outs[0]
    if len(outs) != 1 or x is None or x.ndim != 4 or x.dtype not in (_F32,) + _INT8 or y.dtype != x.dtype:
        return None
    kernel, strides, dil, begin, _, out = _pool_setup(node, x)
    if tuple(out) != y.shape[2:] or min(y.shape) == 0:
        return None
    return partial(_native.max_pool, x, y, *kernel, *strides, *dil, begin[0], begin[1], _dispatch.isa_index())


def _bind_pow(node: Node, ins, outs):
    """float32 Pow of a float32 exponent: the reference's np.power with ``out=``."""
    a, b, y = ins[0], ins[1], outs[0]
    if a is None or b is None or not a.dtype == b.dtype == y.dtype == _F32 \
            or np.broadcast_shapes(a.shape, b.shape) != y.shape:
        return None
    return partial(np.power, a, b, out=y)


def _bind_sqrt(node: Node, ins, outs):
    """float32 Sqrt: the reference's np.sqrt with ``out=``."""
    x, y = ins[0], outs[0]
    if x is None or x.dtype != _F32 or y.dtype != _F32 or x.shape != y.shape:
        return None
    return partial(np.sqrt, x, out=y)


def _bind_gather(node: Node, ins, outs):
    """Gather of constant indices (checked and made non-negative once, as the reference
    does each run): np.take into place (``mode="clip"``: unbuffered, the indices valid)."""
    x, idx, y = ins[0], ins[1], outs[0]
    if x is None or idx is None or x.ndim == 0 or idx.dtype.kind not in "iu" or y.dtype != x.dtype:
        return None
    axis = node.attrs.get("axis", 0)
    if not -x.ndim <= axis < x.ndim:
        return None
    axis %= x.ndim
    k = idx.astype(np.int64)
    k = np.where(k < 0, k + x.shape[axis], k)
    if (k.size and (k.min() < 0 or k.max() >= x.shape[axis])) \
            or y.shape != x.shape[:axis] + k.shape + x.shape[axis + 1:]:
        return None
    return partial(np.take, x, k, axis=axis, out=y, mode="clip")


_COMPARISONS = {"Equal": np.equal, "Less": np.less, "LessOrEqual": np.less_equal, "Greater": np.greater,
                "GreaterOrEqual": np.greater_equal}


def _bind_comparison(node: Node, ins, outs):
    """A comparison of two numbers of one dtype: the reference's numpy call with ``out=``."""
    a, b, y = ins[0], ins[1], outs[0]
    if a is None or b is None or a.dtype != b.dtype or a.dtype.kind not in "biuf" or y.dtype != np.bool_ \
            or np.broadcast_shapes(a.shape, b.shape) != y.shape:
        return None
    return partial(_COMPARISONS[node.op_type], a, b, out=y)


def _bind_cast(node: Node, ins, outs):
    """Cast between numeric dtypes other than float to integer (whose NaN and truncation
    rules the reference spells out): numpy's conversion, astype's, into place."""
    x, y = ins[0], outs[0]
    if x is None or x.shape != y.shape or x.dtype.kind not in "biuf" or y.dtype.kind not in "biuf" \
            or (x.dtype.kind == "f" and y.dtype.kind in "iu"):
        return None
    return partial(np.copyto, y, x, casting="unsafe")


for _key in _UFUNCS:
    BINDERS[_key] = _bind_binary
for _key in _COMPARISONS:
    BINDERS[_key] = _bind_comparison
BINDERS["Cast"] = _bind_cast
BINDERS["Pow"] = _bind_pow
BINDERS["Sqrt"] = _bind_sqrt
BINDERS["Gather"] = _bind_gather
BINDERS["MaxPool"] = _bind_max_pool
BINDERS["Relu"] = _bind_relu
BINDERS["Clip"] = _bind_clip
BINDERS["HardSigmoid"] = _bind_hard_sigmoid


def _bind_reshape(node: Node, ins, outs):
    """Reshape, Flatten, Squeeze, Unsqueeze, Identity whose result is not a view of its
    input (the plan makes those free): the elements copied into place in C order."""
    x, y = ins[0], outs[0]
    if x is None or x.dtype != y.dtype or x.size != y.size or not y.flags.c_contiguous:
        return None
    if x.dtype.kind in "biuf" and x.dtype.itemsize in (1, 2, 4, 8):
        # the native strided copy: a CNN's Flatten of the NCHW view of NHWC memory is its
        # blocked transpose (numpy's strided copy took 4x as long), and a step of the loop
        return _native.BoundCopy([(y.reshape(x.shape), x)], y, _dispatch.get_isa() != "scalar")
    return partial(np.copyto, y.reshape(x.shape), x)


#: ops whose result follows their inputs after the first (a shape, bounds): bound only
#: when those are constants (a bound call keeps what it saw when bound)
_CONSTANT_PARAMS = frozenset({"Reshape", "Squeeze", "Unsqueeze", "Clip", "Resize", "Gather"})
for _key in ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"):
    BINDERS[_key] = _bind_reshape
