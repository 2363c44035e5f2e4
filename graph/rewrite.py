"""Planning passes of the ``cpu`` backend: graph rewrites that keep the model's results
(up to float rounding) and let more of it run on qkernels' kernels.

:func:`rewrite` runs, in order:

0. :func:`fuse_dynamic_quantize` — ONNX Runtime's quantize_dynamic chain
   (DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul [-> Add]) as one com.microsoft
   DynamicQuantizeMatMul;
1. :func:`fold_batchnorm` — BatchNormalization after a float Conv or ConvTranspose folded
   into its weights and bias (again after a constant bias Add or scale Mul folded so:
   :func:`fold_conv_bias_add`, :func:`fold_conv_scale_mul`);
2. :func:`qdq_to_integer` — ``DequantizeLinear -> Conv/MatMul/Gemm -> QuantizeLinear``
   (ONNX Runtime's QDQ format) turned into QLinearConv / QLinearMatMul / QGemm, so a
   QDQ model runs in int8 instead of float; a Relu/Clip before the QuantizeLinear
   becomes an integer clamp (none when the output's saturation already does it), and
   ``DequantizeLinear -> MaxPool/Flatten/Reshape/... -> QuantizeLinear`` with the same
   quantization on both sides runs on the integers; QDQ Add / Mul / GlobalAveragePool
   become com.microsoft QLinearAdd / QLinearMul / QLinearGlobalAveragePool, QDQ Concat
   QLinearConcat; an elementwise op or BatchNormalization between a DequantizeLinear and
   a QuantizeLinear a byte table (per channel for the BN);
3. :func:`fuse_activations` — Relu / Clip after a float Conv or Gemm fused into it
   (``com.microsoft`` FusedConv / FusedGemm, ONNX Runtime's contrib operators);
4. :func:`fuse_gelu` — the exact GELU spelled with Erf, Add and Muls as one ``Gelu``, and
   :func:`fuse_linear_gelu` — a float MatMul (+ bias Add) and the Gelu after it as one
   ``qkernels::MatMulGelu`` (the GEMM's output stage applies it); :func:`fuse_attention_softmax`
   — attention's Softmax of the scaled scores plus the mask as ``qkernels::MaskedSoftmax``;
   :func:`fuse_transpose_matmul` — a Transpose into the MatMul of two activations it feeds;
5. :func:`fold_constant_dequantize` — DequantizeLinear of constants left over (weights
   of operators no pass took) folded into float constants;
6. :func:`fuse_qlinear_residual_add` — a QLinearAdd into the QLinearConv feeding it, and
   :func:`int8_activations_as_uint8` — int8 activations stored as uint8 (the same results);

then drops the nodes and constants nothing reads any more. Every pass is a function
``Graph -> Graph`` that returns a new Graph and never modifies its argument. The passes
read nodes that :func:`qkernels.graph.validate.validate` checked (arity, attribute
names and types); a pattern whose values do not fit (shapes, axes of constants made
by folding) is left as it is, for the operators to refuse when they run.
"""
from __future__ import annotations

import numpy as np

from .ir import Graph, Node, topological

from .backends.reference import run_node

MS = "com.microsoft"
QK = "qkernels"          # the runner's own fused operators (reference: graph/backends/reference/fused.py)
_INT8 = (np.dtype(np.int8), np.dtype(np.uint8))
_FLOATS = (np.dtype(np.float32), np.dtype(np.float16))


class _Editor:
    """The graph being rewritten: nodes, constants, who produces and who reads each
    value, and fresh names."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.nodes = list(graph.nodes)
        self.inits = dict(graph.initializers)
        self.outputs = {o.name for o in graph.outputs}
        self.producer = graph.producers()
        self.consumers = graph.consumers()
        self.names = set(self.inits) | {v.name for v in graph.inputs} | set(self.producer)
        self.suffix: dict[str, int] = {}   # base -> last suffix tried (names are never freed)
        self.replaced: dict[int, list[Node]] = {}    # node id -> nodes taking its place
        self.removed: set[int] = set()

    def const(self, name: str):
        return self.inits.get(name) if name else None

    def fresh(self, base: str) -> str:
        name, k = base, self.suffix.get(base, 1)
        while name in self.names:
            k += 1
            name = f"{base}_{k}"
        self.suffix[base] = k
        self.names.add(name)
        return name

    def add_const(self, base: str, value: np.ndarray) -> str:
        name = self.fresh(base)
        self.inits[name] = value
        return name

    def only_consumer(self, value: str) -> Node | None:
        """The single node reading ``value``, when exactly one does and it is not a graph output."""
        users = self.consumers.get(value, [])
        if value in self.outputs or len(users) != 1:
            return None
        return users[0]

    def producer_of(self, value: str, op_type: str) -> Node | None:
        node = self.producer.get(value)
        return node if node is not None and node.op_type == op_type and not node.domain else None

    def taken(self, *nodes: Node) -> bool:
        return any(id(n) in self.removed or id(n) in self.replaced for n in nodes)

    def replace(self, old: Node, new: list[Node], *also_removed: Node) -> None:
        self.replaced[id(old)] = new
        self.removed.update(id(n) for n in also_removed)

    def result(self) -> Graph:
        nodes = []
        for n in self.nodes:
            if id(n) in self.removed:
                continue
            nodes.extend(self.replaced.get(id(n), [n]))
        g = self.graph
        available = set(self.inits) | {v.name for v in g.inputs}
        return Graph(topological(nodes, available), self.inits, g.inputs, g.outputs, g.opset, g.name, g.metadata)


def _attr(node: Node, name: str, default):
    return node.attrs.get(name, default)


def _scalar(arr) -> bool:
    return arr is not None and np.size(arr) == 1


# ------------------------------------------------------------------------------ passes

def _conv_producer(ed: "_Editor", value: str):
    """The float Conv or ConvTranspose making ``value`` (an affine op after it may fold into it)."""
    return ed.producer_of(value, "Conv") or ed.producer_of(value, "ConvTranspose")


def _out_channels(conv: Node, w: np.ndarray) -> int | None:
    """The output channels of a Conv (W: O, C/g, ...) or ConvTranspose (W: C, O/g, ...); None
    for a ConvTranspose whose groups do not divide C."""
    if conv.op_type != "ConvTranspose":
        return w.shape[0]
    group = int(_attr(conv, "group", 1))
    return w.shape[1] * group if group >= 1 and w.shape[0] % group == 0 else None


def _scaled_weights(conv: Node, w: np.ndarray, s: np.ndarray) -> np.ndarray:
    """W with output channel o's weights times s[o] (float64 products, W's dtype): a Conv's
    rows o; a ConvTranspose's column o % (O/g) of group o // (O/g)'s rows."""
    if conv.op_type == "ConvTranspose":
        group = int(_attr(conv, "group", 1))
        og, cg = w.shape[1], w.shape[0] // group
        per = np.repeat(s.reshape(group, og), cg, axis=0)          # (C, O/g)
        return (w.astype(np.float64) * per.reshape(per.shape + (1,) * (w.ndim - 2))).astype(w.dtype)
    return (w.astype(np.float64) * s.reshape((w.shape[0],) + (1,) * (w.ndim - 1))).astype(w.dtype)


def fold_batchnorm(graph: Graph) -> Graph:
    """Fold ``BatchNormalization(Conv(x, W, B))`` into ``Conv(x, W', B')`` when the Conv
    is float with constant W (and B), the BN's parameters are constant, it is in
    inference mode, and the Conv's output has no other reader:
    ``W' = W * s``, ``B' = (B - mean) * s + beta`` with ``s = gamma / sqrt(var + eps)``
    per output channel (computed in float64, stored in W's dtype). A ConvTranspose the
    same (a detection head's upsampling: its BN ran on numpy, 2.6 of the PaddleOCR
    detector's 21 ms), its output channel ``o`` being column ``o % (O/group)`` of group
    ``o // (O/group)``'s rows of W (C, O/group, kh, kw)."""
    ed = _Editor(graph)
    for bn in graph.nodes:
        if bn.op_type != "BatchNormalization" or bn.domain or _attr(bn, "training_mode", 0):
            continue
        if any(o and (ed.consumers.get(o) or o in ed.outputs) for o in bn.outputs[1:]):
            continue
        conv = _conv_producer(ed, bn.inputs[0])
        if conv is None or ed.only_consumer(conv.outputs[0]) is not bn or ed.taken(conv, bn):
            continue
        w = ed.const(conv.inputs[1])
        b = ed.const(conv.inputs[2]) if len(conv.inputs) > 2 and conv.inputs[2] else None
        has_b = len(conv.inputs) > 2 and bool(conv.inputs[2])
        params = [ed.const(i) for i in bn.inputs[1:5]]
        if w is None or w.dtype not in _FLOATS or w.ndim < 3 or (has_b and b is None) \
                or any(p is None for p in params) or _out_channels(conv, w) is None:
            continue
        o = _out_channels(conv, w)
        gamma, beta, mean, var = (np.asarray(p, np.float64).reshape(-1) for p in params)
        if any(p.size not in (1, o) for p in (gamma, beta, mean, var)) or (b is not None and b.shape != (o,)):
            continue   # shapes the operators refuse when they run
        s = np.broadcast_to(gamma / np.sqrt(var + float(_attr(bn, "epsilon", 1e-5))), (o,))
        w2 = _scaled_weights(conv, w, s)
        b0 = np.zeros(o) if b is None else b.astype(np.float64)
        b2 = ((b0 - mean) * s + beta).astype(w.dtype)
        b2 = np.broadcast_to(b2, (o,)).copy()
        wn = ed.add_const(f"{conv.name}/bn_folded_W", w2)
        bname = ed.add_const(f"{conv.name}/bn_folded_B", b2)
        new = Node(conv.name, conv.op_type, "", [conv.inputs[0], wn, bname], [bn.outputs[0]], dict(conv.attrs))
        ed.replace(conv, [new], bn)
    return _prune(ed.result())


def fold_conv_scale_mul(graph: Graph) -> Graph:
    """Fold ``Mul(Conv(x, W, B), S)`` into ``Conv(x, W * S, B * S)`` for a constant S of
    one value or one per output channel, under :func:`fold_conv_bias_add`'s conditions
    (ONNX Runtime's ConvMulFusion; PaddlePaddle's MobileOne blocks scale so)."""
    return _fold_conv_affine(graph, "Mul")


def fold_conv_bias_add(graph: Graph) -> Graph:
    """Fold ``Add(Conv(x, W, B), C)`` into ``Conv(x, W, B + C)`` when the Conv is float
    with constant W (and B), C is a constant of its dtype holding one value or one per
    output channel (shape (O, 1, ...) or (1, O, 1, ...), as exporters write a bias kept
    apart: PaddlePaddle's), and nothing else reads the Conv's output (ONNX Runtime's
    ConvAddFusion; the sum rounds once where the two nodes rounded twice)."""
    return _fold_conv_affine(graph, "Add")


def _fold_conv_affine(graph: Graph, op: str) -> Graph:
    ed = _Editor(graph)
    for add in graph.nodes:
        if add.op_type != op or add.domain or len(add.inputs) != 2 or ed.taken(add):
            continue
        for k in (0, 1):
            conv, c = _conv_producer(ed, add.inputs[k]), ed.const(add.inputs[1 - k])
            if conv is None or c is None or ed.taken(conv) or ed.only_consumer(conv.outputs[0]) is not add:
                continue
            w = ed.const(conv.inputs[1]) if len(conv.inputs) > 1 else None
            has_b = len(conv.inputs) > 2 and bool(conv.inputs[2])
            b = ed.const(conv.inputs[2]) if has_b else None
            if w is None or w.dtype not in _FLOATS or w.ndim < 3 or c.dtype != w.dtype or (has_b and b is None) \
                    or _out_channels(conv, w) is None:
                continue
            o, rank = _out_channels(conv, w), w.ndim   # the output is (N, O, spatial...): w's rank
            dims = (1,) * (rank - c.ndim) + c.shape if c.ndim <= rank else None
            if dims is None or not (c.size == 1 or (dims[1] == o and c.size == o and dims[0] == 1)):
                continue
            per = np.broadcast_to(c.reshape(-1), (o,)).astype(w.dtype)
            b0 = np.zeros(o, w.dtype) if b is None else b
            wname = conv.inputs[1]
            if op == "Mul":
                wname = ed.add_const(f"{conv.name}/mul_folded_W", _scaled_weights(conv, w, per))
                total = b0 * per
            else:
                total = b0 + per
            bname = ed.add_const(f"{conv.name}/{op.lower()}_folded_B", np.ascontiguousarray(total, w.dtype))
            new = Node(conv.name, conv.op_type, "", [conv.inputs[0], wname, bname], [add.outputs[0]], dict(conv.attrs))
            ed.replace(conv, [new], add)
            break
    return _prune(ed.result())


def _dq_params(ed: _Editor, dq: Node):
    """(q, scale, zero_point, axis) of a DequantizeLinear with constant scale and zero
    point (q may be a constant or not), or None when it is not a plain one."""
    if len(dq.inputs) < 3 or not dq.inputs[2] or _attr(dq, "block_size", 0):
        return None
    scale, zp = ed.const(dq.inputs[1]), ed.const(dq.inputs[2])
    if scale is None or zp is None or scale.dtype != np.float32 or scale.shape != zp.shape:
        return None
    return dq.inputs[0], scale, zp, int(_attr(dq, "axis", 1))


def _activation_input(ed: _Editor, dq_out: str):
    """(x_q name, scale name, zero-point name, zero point array) when ``dq_out`` comes from a
    per-tensor DequantizeLinear of int8/uint8 values."""
    dq = ed.producer_of(dq_out, "DequantizeLinear")
    if dq is None:
        return None
    p = _dq_params(ed, dq)
    if p is None or not _scalar(p[1]) or p[2].dtype not in _INT8:
        return None
    return dq.inputs[0], dq.inputs[1], dq.inputs[2], p[2]


def _const_weights(ed: _Editor, value: str):
    """(w_q, scale, zero_point, axis, dq node) of a DequantizeLinear of int8/uint8 constants."""
    dq = ed.producer_of(value, "DequantizeLinear")
    if dq is None:
        return None
    p = _dq_params(ed, dq)
    if p is None:
        return None
    w = ed.const(p[0])
    if w is None or w.dtype not in _INT8 or p[2].dtype != w.dtype:
        return None
    axis = p[3] + w.ndim if p[3] < 0 else p[3]
    return w, p[1], p[2], axis, dq


def _output_quantizer(ed: _Editor, value: str):
    """The QuantizeLinear that alone reads ``value`` (maybe through one Relu/Clip), as
    (quantize node, activation node or None, y_scale array, y_zero_point array)."""
    user = ed.only_consumer(value)
    act = None
    if user is not None and not user.domain and user.op_type in ("Relu", "Clip"):
        act, user = user, ed.only_consumer(user.outputs[0])
    if user is None or user.op_type != "QuantizeLinear" or user.domain or len(user.inputs) < 3:
        return None
    sy, zy = ed.const(user.inputs[1]), ed.const(user.inputs[2])
    if not _scalar(sy) or not _scalar(zy) or sy.dtype != np.float32 or zy.dtype not in _INT8:
        return None
    if _attr(user, "output_dtype", 0) or not _attr(user, "saturate", 1):
        return None
    return user, act, sy, zy


def _clamp(ed: _Editor, act: Node | None, sy, zy):
    """Integer bounds (lo, hi) that a Relu/Clip before QuantizeLinear(sy, zy) amounts to
    on the quantized output (QuantizeLinear is monotone: Q(clip(v, a, b)) = clip(Q(v),
    Q(a), Q(b))), or None when the Clip's bounds are not constants."""
    info = np.iinfo(zy.dtype)
    lo, hi = int(info.min), int(info.max)
    if act is None:
        return lo, hi
    s, z = np.float32(sy.reshape(())), int(zy.reshape(()))
    if not (np.isfinite(s) and s > 0):   # no integer clamp stands for it: left to the reference op
        return None

    def q(v) -> int:
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            r = float(np.rint(np.float32(v) / s))
        return int(min(max(r + z, lo), hi))

    if act.op_type == "Relu":
        return q(0.0), hi
    bounds = []
    for k, default in ((1, lo), (2, hi)):
        name = act.inputs[k] if len(act.inputs) > k else ""
        if not name:
            bounds.append(default)
            continue
        v = ed.const(name)
        if not _scalar(v) or np.isnan(v.reshape(())):
            return None
        bounds.append(q(float(v.reshape(()))))
    return bounds[0], bounds[1]


def _quantized_bias(ed: _Editor, value: str, sa: np.float32, sb: np.ndarray, n: int, factor: float = 1.0):
    """The name of an int32 bias (n,) at scale sa * sb for ``value``: the int32 constant of
    a DequantizeLinear whose scale is that product, or a new constant (a float bias times
    ``factor`` rounded to that scale); None when ``value`` is neither."""
    bias_scale = (np.float32(sa) * np.broadcast_to(sb.astype(np.float32).reshape(-1), (n,))).astype(np.float32)
    dq = ed.producer_of(value, "DequantizeLinear")
    if dq is not None:
        q = ed.const(dq.inputs[0])
        scale = ed.const(dq.inputs[1]) if len(dq.inputs) > 1 else None
        zp = ed.const(dq.inputs[2]) if len(dq.inputs) > 2 and dq.inputs[2] else np.zeros((), np.int32)
        if q is None or scale is None or zp is None or q.dtype != np.int32 or np.any(zp != 0) or factor != 1.0:
            return None
        if q.size not in (1, n) or scale.size not in (1, n) or not np.allclose(
                np.broadcast_to(scale.reshape(-1), (n,)), bias_scale, rtol=1e-6, atol=0):
            return None
        if q.shape == (n,):
            return dq.inputs[0]
        return ed.add_const(f"{value}/int32", np.broadcast_to(q.reshape(-1), (n,)).astype(np.int32))
    c = ed.const(value)
    if c is None or c.dtype not in _FLOATS or c.size not in (1, n):
        return None
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        q = np.rint(np.broadcast_to(c.reshape(-1), (n,)).astype(np.float64) * factor / bias_scale)
    if not np.all(np.abs(q) < 2**31 - 1):
        return None
    return ed.add_const(f"{value}/int32", q.astype(np.int32))


#: operators that only move or select values: on quantized values with the same scale
#: and zero point in and out, they give what the float path would
_MOVERS = {"MaxPool", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Slice",
           "SpaceToDepth", "DepthToSpace"}


def qdq_to_integer(graph: Graph) -> Graph:
    """Turn ONNX Runtime's QDQ pattern into integer operators (what ORT itself does when
    it runs a QDQ model):

    - ``DequantizeLinear(x_q) -> Conv(., DequantizeLinear(W_q), [DequantizeLinear(B_q int32)
      or float B]) -> [Relu/Clip] -> QuantizeLinear`` becomes ``QLinearConv`` (2-D or any
      Conv with constant int8/uint8 weights, per tensor or per output channel);
    - the same around ``MatMul`` becomes ``QLinearMatMul`` (second operand per tensor or
      per column), around ``Gemm`` com.microsoft ``QGemm``;
    - a Relu/Clip between the operator and the QuantizeLinear becomes an integer Clip on
      the quantized output, or nothing when the output's saturation already clamps there
      (the usual case: ORT's quantizer gives a Relu output the zero point qmin);
    - ``DequantizeLinear -> MaxPool/Flatten/Reshape/Transpose/... -> QuantizeLinear`` with
      identical quantization on both sides runs on the quantized values directly.

    A float bias is rounded to int32 at scale ``x_scale * w_scale``; an int32 bias must
    already be at that scale (the quantizer's convention), else nothing is rewritten.
    The weights' DequantizeLinear nodes must still be in the graph: folded into float
    constants before this pass, the integer weights and their scales are gone.
    """
    ed = _Editor(graph)
    for node in graph.nodes:
        if node.domain or ed.taken(node):
            continue
        if node.op_type in ("Conv", "MatMul", "Gemm"):
            _qdq_compute(ed, node)
        elif node.op_type in _MOVERS:
            _qdq_mover(ed, node)
        elif node.op_type in ("Add", "Mul", "GlobalAveragePool"):
            _qdq_contrib(ed, node)
        elif node.op_type == "Concat":
            _qdq_concat(ed, node)
        if node.op_type in _TABLE_OPS and not ed.taken(node):
            _qdq_table(ed, node)
    return _prune(ed.result())


def _same_quantization(ed: _Editor, x: tuple, sy: np.ndarray, zy: np.ndarray) -> bool:
    """Whether the activation ``x`` (:func:`_activation_input`'s tuple) is quantized as
    (sy, zy) are: one type, scale and zero point."""
    sx, zx = ed.const(x[1]), x[3]
    return zx.dtype == zy.dtype and float(sx.reshape(())) == float(sy.reshape(())) \
        and int(zx.reshape(())) == int(zy.reshape(()))


def _qdq_concat(ed: _Editor, node: Node) -> None:
    """``DQ(x_1) ... DQ(x_k) -> Concat -> Q`` (each per tensor, the Q its only reader) into
    com.microsoft QLinearConcat, as ONNX Runtime runs it: inputs quantized like the output
    are copied, the others requantized (the cpu backend: a byte table each); into a Concat
    of the bytes when every input is quantized like the output. A detection neck's
    concatenation of upsampled maps no longer leaves int8."""
    if len(node.outputs) != 1 or not node.inputs or "axis" not in node.attrs:
        return
    ins = [_activation_input(ed, i) for i in node.inputs]
    out = _output_quantizer(ed, node.outputs[0])
    if any(x is None for x in ins) or out is None or out[1] is not None or ed.taken(out[0]):
        return
    quant, _, sy, zy = out
    if all(_same_quantization(ed, x, sy, zy) for x in ins):
        # every input quantized like the output: a Concat of the bytes (which the plan makes
        # in place, its inputs' producers writing into their slices of it)
        ed.replace(node, [Node(node.name, "Concat", "", [xq for xq, *_ in ins], [quant.outputs[0]],
                               {"axis": node.attrs["axis"]})], quant)
        return
    triples = [name for xq, sx, zx, _ in ins for name in (xq, sx, zx)]
    ed.replace(node, [Node(node.name, "QLinearConcat", MS, [quant.inputs[1], quant.inputs[2], *triples],
                           [quant.outputs[0]], {"axis": node.attrs["axis"]})], quant)


def _qdq_contrib(ed: _Editor, node: Node) -> None:
    """``DQ(a) -> Add/Mul <- DQ(b) -> [Relu/Clip] -> Q`` into com.microsoft QLinearAdd /
    QLinearMul, and ``DQ -> GlobalAveragePool -> Q`` into QLinearGlobalAveragePool: the
    operators ONNX Runtime uses for them, computed (reference backend) as dequantize,
    float32 op, quantize, which is what the QDQ graph means. A residual block's Add then
    no longer leaves int8."""
    unary = node.op_type == "GlobalAveragePool"
    if len(node.inputs) != (1 if unary else 2) or len(node.outputs) != 1:
        return
    ins = [_activation_input(ed, i) for i in node.inputs]
    out = _output_quantizer(ed, node.outputs[0])
    if any(i is None for i in ins) or out is None:
        return
    quant, act, sy, zy = out
    if any(i[3].dtype != zy.dtype for i in ins) or ed.taken(quant, *([act] if act else [])):
        return
    clamp = _clamp(ed, act, sy, zy)
    if clamp is None or (unary and act is not None):
        return
    inputs = [x for i in ins for x in i[:3]] + [quant.inputs[1], quant.inputs[2]]
    new_op = {"Add": "QLinearAdd", "Mul": "QLinearMul", "GlobalAveragePool": "QLinearGlobalAveragePool"}[node.op_type]
    _replace_quantized(ed, node, new_op, MS, inputs, {"channels_last": 0} if unary else {}, quant, act, clamp, zy)


def _qdq_compute(ed: _Editor, node: Node) -> None:
    if not node.inputs or not node.outputs or len(node.inputs) < 2:
        return
    x = _activation_input(ed, node.inputs[0])
    out = _output_quantizer(ed, node.outputs[0])
    if x is None or out is None:
        return
    xq, sx_name, zx_name, _ = x
    quant, act, sy, zy = out
    sx = ed.const(sx_name).reshape(()).astype(np.float32)
    clamp = _clamp(ed, act, sy, zy)
    if clamp is None or ed.taken(quant, *([act] if act else [])):
        return
    op = node.op_type
    weights = _const_weights(ed, node.inputs[1])
    attrs: dict = {}
    if op == "Conv":
        if weights is None:
            return
        w, sw, _, axis, dq = weights
        o = w.shape[0]
        if w.ndim < 3 or not (sw.size == 1 or (axis == 0 and sw.size == o)):
            return
        bias_name = node.inputs[2] if len(node.inputs) > 2 else ""
        bias = _quantized_bias(ed, bias_name, sx, sw, o) if bias_name else None
        if bias_name and bias is None:
            return
        extra = [bias] if bias is not None else []
        new_op, domain = "QLinearConv", ""
        attrs = dict(node.attrs)
        w_inputs = list(dq.inputs[:3])
    elif op == "MatMul":
        if weights is not None:
            w, sw, _, axis, dq = weights
            if w.ndim != 2 or not (sw.size == 1 or (axis == 1 and sw.size == w.shape[1])):
                return
            w_inputs = list(dq.inputs[:3])
        else:   # a product of two activations, both per tensor
            b = _activation_input(ed, node.inputs[1])
            if b is None:
                return
            w_inputs = list(b[:3])
        extra, new_op, domain = [], "QLinearMatMul", ""
    else:   # Gemm
        if weights is None or _attr(node, "transA", 0):
            return
        w, sw, _, axis, dq = weights
        trans_b = int(_attr(node, "transB", 0))
        alpha, beta = float(_attr(node, "alpha", 1.0)), float(_attr(node, "beta", 1.0))
        if w.ndim != 2 or alpha <= 0:
            return
        n = w.shape[0] if trans_b else w.shape[1]
        if not (sw.size == 1 or (sw.size == n and axis == (0 if trans_b else 1))):
            return
        c_name = node.inputs[2] if len(node.inputs) > 2 else ""
        if c_name:
            if ed.producer_of(c_name, "DequantizeLinear") is not None and (alpha != 1.0 or beta != 1.0):
                return
            bias = _quantized_bias(ed, c_name, sx, sw, n, beta / alpha)
            if bias is None:
                return
            c_inputs = [bias]
        else:
            c_inputs = [""]
        w_inputs = list(dq.inputs[:3])
        new_op, domain = "QGemm", MS
        attrs = {"transA": 0, "transB": trans_b, "alpha": alpha}
        extra = c_inputs
    inputs = [xq, sx_name, zx_name, *w_inputs]
    if new_op == "QGemm":
        inputs += extra + [quant.inputs[1], quant.inputs[2]]
    else:
        inputs += [quant.inputs[1], quant.inputs[2]] + extra
    _replace_quantized(ed, node, new_op, domain, inputs, attrs, quant, act, clamp, zy)


def _replace_quantized(ed: _Editor, node: Node, new_op: str, domain: str, inputs: list, attrs: dict,
                       quant: Node, act: Node | None, clamp: tuple, zy) -> None:
    """Replace ``node`` (with its output's QuantizeLinear and activation) by the integer
    operator writing the quantized output, followed by an integer Clip when the
    activation narrows the output's range."""
    lo, hi = clamp
    info = np.iinfo(zy.dtype)
    result = quant.outputs[0]
    removed = (quant, *([act] if act else []))
    if (lo, hi) == (info.min, info.max):
        ed.replace(node, [Node(node.name, new_op, domain, inputs, [result], attrs)], *removed)
        return
    raw = ed.fresh(f"{result}/unclamped")
    lo_name = ed.add_const(f"{node.name}/clamp_min", np.array(lo, zy.dtype))
    hi_name = ed.add_const(f"{node.name}/clamp_max", np.array(hi, zy.dtype))
    ed.replace(node, [Node(node.name, new_op, domain, inputs, [raw], attrs),
                      Node(f"{node.name}/clamp", "Clip", "", [raw, lo_name, hi_name], [result], {})], *removed)


#: elementwise float operators that a QDQ pair around them makes a function of one byte
#: (every operand but the first a constant number); BatchNormalization (inference): one
#: function per channel
_TABLE_OPS = {"Relu", "Clip", "HardSigmoid", "HardSwish", "Sigmoid", "Tanh", "LeakyRelu", "Neg", "Abs", "Exp",
              "Erf", "Softplus", "Elu", "Selu", "Celu", "Sqrt", "Div", "Mul", "Add", "Sub", "Pow",
              "BatchNormalization"}


def _const_or_dequantized(ed: _Editor, name: str):
    """The constant ``name``, or the DequantizeLinear of constants that makes it (the
    quantizer's int8 BatchNormalization scale and bias), evaluated; None otherwise."""
    v = ed.const(name)
    if v is not None:
        return v
    dq = ed.producer_of(name, "DequantizeLinear")
    if dq is None or any(i and ed.const(i) is None for i in dq.inputs):
        return None
    try:
        return run_node(dq, {i: ed.const(i) for i in dq.inputs if i})[name]
    except Exception:   # the reference refuses it: no table
        return None


def _qdq_table(ed: _Editor, node: Node) -> None:
    """``DequantizeLinear(x_q) -> node -> QuantizeLinear`` (per tensor, ``node`` elementwise
    with constant numbers as its other operands, nothing else reading its output) becomes
    ``qkernels::TableLookup(x_q, table)``: the 256 results of the three operators, computed
    once by the reference operators on every value of x_q's dtype (their bits, per element,
    as on the tensor). An inference BatchNormalization (constant parameters, C of each:
    a detection head's, alone after an upsampling) gives a (C, 256) table, one per
    channel (axis 1)."""
    if len(node.outputs) != 1 or not node.inputs or ed.taken(node):
        return
    per_channel = node.op_type == "BatchNormalization"
    if per_channel and _attr(node, "training_mode", 0):
        return
    x = _activation_input(ed, node.inputs[0])
    quant = ed.only_consumer(node.outputs[0])
    if x is None or quant is None or quant.domain or quant.op_type != "QuantizeLinear" or ed.taken(quant) \
            or len(quant.inputs) < 3:
        return
    sy, zy = ed.const(quant.inputs[1]), ed.const(quant.inputs[2])
    if not _scalar(sy) or not _scalar(zy) or sy.dtype != np.float32 or zy.dtype not in _INT8 \
            or _attr(quant, "output_dtype", 0) or not _attr(quant, "saturate", 1):
        return
    consts = {}
    for name in node.inputs[1:]:
        v = (_const_or_dequantized(ed, name) if per_channel else ed.const(name)) if name else None
        if name and (v is None or (v.ndim != 1 if per_channel else v.size != 1 or v.ndim > 1)):
            return
        if name:
            consts[name] = v
    channels = len(next(iter(consts.values()))) if per_channel and consts else 1
    if per_channel and (len(consts) != 4 or any(len(v) != channels for v in consts.values()) or not channels):
        return
    dq = ed.producer_of(node.inputs[0], "DequantizeLinear")
    values = {i: ed.const(i) for i in dq.inputs[1:] if i}
    values.update(consts)
    values[quant.inputs[1]], values[quant.inputs[2]] = sy, zy
    every = np.arange(256, dtype=np.uint8).view(x[3].dtype)
    values[dq.inputs[0]] = np.ascontiguousarray(np.broadcast_to(every, (1, channels, 256))) if per_channel else every
    try:
        for step in (dq, node, quant):
            values.update(run_node(step, values))
    except Exception:   # an operator the reference refuses here: left as it is
        return
    table = np.asarray(values[quant.outputs[0]])
    if table.shape != ((1, channels, 256) if per_channel else (256,)) or table.dtype != zy.dtype:
        return
    table = table.reshape(channels, 256) if per_channel else table
    name = ed.add_const(f"{node.name}/table", np.ascontiguousarray(table))
    ed.replace(node, [Node(node.name, "TableLookup", QK, [x[0], name], [quant.outputs[0]], {})], quant)


def _qdq_mover(ed: _Editor, node: Node) -> None:
    if not node.inputs or not node.outputs or any(node.outputs[1:]):   # MaxPool's Indices: not taken
        return
    x = _activation_input(ed, node.inputs[0])
    out = _output_quantizer(ed, node.outputs[0])
    if x is None or out is None or out[1] is not None or ed.taken(out[0]):
        return
    xq, _, _, zx = x
    quant, _, sy, zy = out
    same = _same_quantization(ed, x, sy, zy)
    if any(i and i not in ed.inits for i in node.inputs[1:]):
        return   # shapes, axes, starts must be constants (they are not quantized values)
    if same:
        ed.replace(node, [Node(node.name, node.op_type, "", [xq, *node.inputs[1:]], [quant.outputs[0]],
                               dict(node.attrs))], quant)
        return
    # quantized otherwise on each side (qkernels.quant's Flatten before a Gemm): the move on
    # the quantized values, then Q(DQ(v)) through a table of the 256 values the reference
    # operators give (a move commutes with them; MaxPool too: both are monotone)
    dq = ed.producer_of(node.inputs[0], "DequantizeLinear")
    values = {i: ed.const(i) for i in dq.inputs[1:] if i}
    values[dq.inputs[0]] = np.arange(256, dtype=np.uint8).view(zx.dtype)
    try:
        values[quant.inputs[0]] = run_node(dq, values)[dq.outputs[0]]
        values[quant.inputs[1]], values[quant.inputs[2]] = sy, zy
        table = np.asarray(run_node(quant, values)[quant.outputs[0]])
    except Exception:   # an operator the reference refuses here: left as it is
        return
    if table.shape != (256,) or table.dtype != zy.dtype:
        return
    moved = ed.fresh(f"{quant.outputs[0]}/moved")
    ed.replace(node, [Node(node.name, node.op_type, "", [xq, *node.inputs[1:]], [moved], dict(node.attrs)),
                      Node(f"{node.name}/requantize", "TableLookup", QK,
                           [moved, ed.add_const(f"{node.name}/table", np.ascontiguousarray(table))],
                           [quant.outputs[0]], {})], quant)


def fuse_activations(graph: Graph) -> Graph:
    """Fuse ``Relu`` or ``Clip(min, max constants)`` after a float Conv (constant 3-D or
    4-D weights) or Gemm (constant B) whose output nothing else reads into com.microsoft
    ``FusedConv`` (``activation="Relu"`` or ``"Clip"`` with ``activation_params=[min,
    max]``, as ONNX Runtime spells it) or ``FusedGemm`` (``activation``, and
    ``activation_alpha``/``activation_beta`` for Clip's bounds); after a 2-D
    ConvTranspose (a detection head's upsampling) into qkernels ``FusedConvTranspose``
    (FusedConv's attributes). The cpu backend applies the activation in the kernels'
    output stage."""
    ed = _Editor(graph)
    for node in graph.nodes:
        if node.domain or node.op_type not in ("Conv", "Gemm", "ConvTranspose") or len(node.inputs) < 2 \
                or ed.taken(node):
            continue
        w = ed.const(node.inputs[1])
        if w is None or w.dtype not in _FLOATS or (node.op_type == "Conv" and w.ndim not in (3, 4)) \
                or (node.op_type == "Gemm" and w.ndim != 2) or (node.op_type == "ConvTranspose" and w.ndim != 4):
            continue
        act = ed.only_consumer(node.outputs[0])
        if act is None or act.domain or act.op_type not in ("Relu", "Clip") or ed.taken(act):
            continue
        bounds = [-np.inf, np.inf]
        if act.op_type == "Clip":
            ok = True
            for k in (1, 2):
                name = act.inputs[k] if len(act.inputs) > k else ""
                if name:
                    v = ed.const(name)
                    ok = ok and _scalar(v)
                    if ok:
                        bounds[k - 1] = float(v.reshape(()))
            if not ok or bounds[0] > bounds[1]:
                continue
        attrs = dict(node.attrs)
        if node.op_type in ("Conv", "ConvTranspose"):
            attrs["activation"] = act.op_type
            if act.op_type == "Clip":
                attrs["activation_params"] = [float(np.float32(b)) for b in bounds]
            new = Node(node.name, "FusedConv", MS, list(node.inputs), [act.outputs[0]], attrs) \
                if node.op_type == "Conv" else \
                Node(node.name, "FusedConvTranspose", QK, list(node.inputs), [act.outputs[0]], attrs)
        else:
            attrs["activation"] = act.op_type
            if act.op_type == "Clip":
                attrs["activation_alpha"], attrs["activation_beta"] = (float(np.float32(b)) for b in bounds)
            new = Node(node.name, "FusedGemm", MS, list(node.inputs), [act.outputs[0]], attrs)
        ed.replace(node, [new], act)
    return _prune(ed.result())


def fuse_residual_add(graph: Graph) -> Graph:
    """Fuse a residual ``Add`` of a float32 Conv's output (constant 4-D weights, nothing
    else reading it) and another computed value, with the ``Relu`` or ``Clip`` after it
    when the Add's result goes nowhere else, into com.microsoft ``FusedConv`` with that
    value as ``Z`` (ONNX Runtime's sum input: added after the bias, before the
    activation). The kernels add it in their output stage: the conv's rounding, then the
    Add's, the same floats as the two nodes (float16 would round once: not fused)."""
    ed = _Editor(graph)
    for add in graph.nodes:
        if add.domain or add.op_type != "Add" or len(add.inputs) != 2 or ed.taken(add):
            continue
        for k in (0, 1):
            conv = ed.producer_of(add.inputs[k], "Conv")
            other = add.inputs[1 - k]
            if conv is None or ed.taken(conv) or ed.only_consumer(conv.outputs[0]) is not add \
                    or other == add.inputs[k] or ed.const(other) is not None or len(conv.inputs) < 2:
                continue
            w = ed.const(conv.inputs[1])
            if w is None or w.dtype != np.float32 or w.ndim != 4:
                continue
            attrs, out, removed = dict(conv.attrs), add.outputs[0], [add]
            act = ed.only_consumer(out)
            bounds = _clip_bounds(ed, act) if act is not None and not act.domain and not ed.taken(act) else None
            if act is not None and act.op_type == "Relu" and not act.domain and not ed.taken(act):
                attrs["activation"], out = "Relu", act.outputs[0]
                removed.append(act)
            elif bounds is not None:
                attrs["activation"], attrs["activation_params"] = "Clip", [float(np.float32(b)) for b in bounds]
                out = act.outputs[0]
                removed.append(act)
            inputs = (list(conv.inputs[:3]) + [""] * 3)[:3] + [other]
            ed.replace(conv, [Node(conv.name, "FusedConv", MS, inputs, [out], attrs)], *removed)
            break
    return _prune(ed.result())


def fuse_dynamic_quantize(graph: Graph) -> Graph:
    """ONNX Runtime's ``quantize_dynamic`` chain of a MatMul with constant weights,
    ``DynamicQuantizeLinear(x) -> MatMulInteger(q, W, zq, zW) -> Cast(float) ->
    Mul(., Mul(x_scale, W_scale)) [-> Add(., bias)]``, as com.microsoft
    ``DynamicQuantizeMatMul(x, W, W_scale, zW, bias)``: one node, one native call
    (graph/backends/cpu_dynquant.py), its reference the same float32 steps. A
    DynamicQuantizeLinear read by several MatMulIntegers (query, key, value) goes when
    the last of them is fused; the intermediate values must be read by nothing else. A
    DynamicQuantizeMatMul without bias (either domain) takes the bias Add after it."""
    ed = _Editor(graph)
    for mi in graph.nodes:
        if mi.domain or mi.op_type != "MatMulInteger" or len(mi.inputs) < 3 or ed.taken(mi):
            continue
        q, w, zq = mi.inputs[:3]
        zw = mi.inputs[3] if len(mi.inputs) > 3 else ""
        dql = ed.producer_of(q, "DynamicQuantizeLinear")
        W = ed.const(w)
        if dql is None or len(dql.outputs) < 3 or dql.outputs[0] != q or dql.outputs[2] != zq or not dql.outputs[1] \
                or W is None or W.ndim != 2 or W.dtype not in _INT8 or (zw and ed.const(zw) is None):
            continue
        n = W.shape[1]
        cast = ed.only_consumer(mi.outputs[0])
        if cast is None or cast.domain or cast.op_type != "Cast" or _attr(cast, "to", 0) != 1 or ed.taken(cast):
            continue
        mul = ed.only_consumer(cast.outputs[0])
        if mul is None or mul.domain or mul.op_type != "Mul" or len(mul.inputs) != 2 or ed.taken(mul):
            continue
        other = mul.inputs[1] if mul.inputs[0] == cast.outputs[0] else mul.inputs[0]
        smul = ed.producer_of(other, "Mul")
        if smul is None or len(smul.inputs) != 2 or dql.outputs[1] not in smul.inputs or other == cast.outputs[0]:
            continue
        ws = smul.inputs[1] if smul.inputs[0] == dql.outputs[1] else smul.inputs[0]
        WS = ed.const(ws)
        if WS is None or WS.dtype != np.float32 or WS.ndim > 1 or WS.size not in (1, n):
            continue
        out, removed = mul.outputs[0], [cast, mul]
        add, bias = _bias_add(ed, out, n)
        if add is not None:
            out = add.outputs[0]
            removed.append(add)
        node = Node(mi.name, "DynamicQuantizeMatMul", MS, [dql.inputs[0], w, ws, zw, bias], [out], {})
        ed.replace(mi, [node], *removed)
    for dq in graph.nodes:      # one already written without its bias (qkernels' quantizer writes so)
        if dq.op_type != "DynamicQuantizeMatMul" or dq.domain not in (MS, QK) or ed.taken(dq) \
                or (len(dq.inputs) > 4 and dq.inputs[4]) or len(dq.inputs) < 3:
            continue
        W = ed.const(dq.inputs[1])
        add, bias = _bias_add(ed, dq.outputs[0], W.shape[1]) if W is not None and W.ndim == 2 else (None, "")
        if add is not None:
            ins = (list(dq.inputs) + [""] * 4)[:4] + [bias]
            ed.replace(dq, [Node(dq.name, dq.op_type, dq.domain, ins, list(add.outputs), dict(dq.attrs))], add)
    return _prune(ed.result())


def _bias_add(ed: _Editor, out: str, n: int):
    """(the Add of a float32 (n,) constant that alone reads ``out``, that constant's name),
    or (None, "")."""
    add = ed.only_consumer(out)
    if add is not None and not add.domain and add.op_type == "Add" and len(add.inputs) == 2 and not ed.taken(add):
        b = add.inputs[1] if add.inputs[0] == out else add.inputs[0]
        B = ed.const(b)
        if B is not None and B.dtype == np.float32 and B.shape == (n,) and b != out:
            return add, b
    return None, ""


def fuse_hard_swish(graph: Graph) -> Graph:
    """Fuse PaddlePaddle's hard swish as its exports spell it after a float32 convolution
    (``t = Conv``; ``Div(Mul(t, Clip(Add(t, a), lo, hi)), d)``, constants a, lo, hi, d,
    nothing else reading the intermediates) into com.microsoft ``FusedConv`` with
    ``activation="HardSwishDiv"``, ``activation_params=[a, lo, hi, d]``: the fp32 output
    stages apply the four operations in the same order (the same floats as the nodes).
    The convolution may already carry a residual (Z) but no activation."""
    ed = _Editor(graph)
    for conv in graph.nodes:
        plain = conv.op_type == "Conv" and not conv.domain
        fused = conv.op_type == "FusedConv" and conv.domain == MS and "activation" not in conv.attrs
        if not (plain or fused) or ed.taken(conv) or len(conv.inputs) < 2 or len(conv.outputs) != 1:
            continue
        w = ed.const(conv.inputs[1])
        t = conv.outputs[0]
        users = ed.consumers.get(t, [])
        if w is None or w.dtype != np.float32 or w.ndim != 4 or t in ed.outputs or len(users) != 2:
            continue
        add = next((u for u in users if u.op_type == "Add" and not u.domain and len(u.inputs) == 2), None)
        mul = next((u for u in users if u.op_type == "Mul" and not u.domain and len(u.inputs) == 2), None)
        if add is None or mul is None or add is mul:
            continue
        a = ed.const(add.inputs[1] if add.inputs[0] == t else add.inputs[0])
        clip = ed.only_consumer(add.outputs[0])
        bounds = _clip_bounds(ed, clip) if clip is not None and not clip.domain else None
        if not _scalar(a) or bounds is None or ed.only_consumer(clip.outputs[0]) is not mul \
                or sorted(mul.inputs) != sorted([t, clip.outputs[0]]):
            continue
        div = ed.only_consumer(mul.outputs[0])
        d = ed.const(div.inputs[1]) if div is not None and div.op_type == "Div" and not div.domain \
            and len(div.inputs) == 2 and div.inputs[0] == mul.outputs[0] else None
        if not _scalar(d) or any(v.dtype != np.float32 for v in (a, d)) or ed.taken(add, clip, mul, div):
            continue
        attrs = dict(conv.attrs, activation="HardSwishDiv",
                     activation_params=[float(np.float32(v)) for v in (a.reshape(()), *bounds, d.reshape(()))])
        new = Node(conv.name, "FusedConv", MS, list(conv.inputs), [div.outputs[0]], attrs)
        ed.replace(conv, [new], add, clip, mul, div)
    return _prune(ed.result())


def _const_near(ed: _Editor, name: str, value: float, exact: bool = False) -> bool:
    """``name`` is a float scalar constant equal to ``value`` (``exact``) or ``value``
    rounded to its dtype (within an ulp of it)."""
    v = ed.const(name)
    if not (_scalar(v) and v.dtype in _FLOATS):
        return False
    return abs(float(v.reshape(())) - value) <= (0 if exact else np.finfo(v.dtype).eps * abs(value))


def _plain(node: Node | None, op_type: str, arity: int = 2) -> bool:
    return node is not None and node.op_type == op_type and not node.domain and len(node.inputs) == arity


def _other(node: Node, value: str) -> str | None:
    """The input of a two-input node that is not ``value`` (None when ``value`` is not one)."""
    if node.inputs[0] == value:
        return node.inputs[1]
    return node.inputs[0] if node.inputs[1] == value else None


def _gelu_product(ed: _Editor, x: str, g: str):
    """The nodes computing x * g * 0.5 from g = 1 + erf(...) in any of the associations
    exports use — Mul(Mul(x, g), 0.5), Mul(Mul(g, 0.5), x), Mul(Mul(x, 0.5), g) — with
    each intermediate read once: (nodes, the product's name), or None."""
    m1 = ed.only_consumer(g)
    if not _plain(m1, "Mul"):
        return None
    o1 = _other(m1, g)
    m2 = ed.only_consumer(m1.outputs[0])
    if o1 == x or _const_near(ed, o1, 0.5, True):       # (x * g) * 0.5 or (g * 0.5) * x
        want = (lambda o: _const_near(ed, o, 0.5, True)) if o1 == x else (lambda o: o == x)
        if _plain(m2, "Mul") and want(_other(m2, m1.outputs[0])):
            return [m1, m2], m2.outputs[0]
        return None
    h = ed.producer_of(o1, "Mul")                     # (x * 0.5) * g
    if h is not None and len(h.inputs) == 2 and ed.only_consumer(o1) is m1 and _other(h, x) is not None \
            and _const_near(ed, _other(h, x), 0.5, True):
        return [h, m1], m1.outputs[0]
    return None


def fuse_gelu(graph: Graph) -> Graph:
    """The exact GELU as torch and TF exports spell it — ``x * (erf(x / 1.4142135) + 1) *
    0.5`` (or erf of x * 0.70710677; the Adds and Muls in any operand order and the three
    factors in any association), nothing else reading the intermediates, float constants
    — as one ONNX ``Gelu`` (opset 20; approximate "none"), which the cpu backend runs
    natively (kernels/eltwise.c) or fuses into the GEMM before it (fuse_linear_gelu)."""
    ed = _Editor(graph)
    for erf in graph.nodes:
        if not _plain(erf, "Erf", 1) or ed.taken(erf):
            continue
        scale = ed.producer.get(erf.inputs[0])
        if scale is None or scale.domain or len(scale.inputs) != 2 or ed.only_consumer(scale.outputs[0]) is not erf:
            continue
        if scale.op_type == "Div" and _const_near(ed, scale.inputs[1], float(np.sqrt(2.0))):
            x = scale.inputs[0]
        elif scale.op_type == "Mul" and _const_near(ed, scale.inputs[1], float(np.sqrt(0.5))):
            x = scale.inputs[0]
        elif scale.op_type == "Mul" and _const_near(ed, scale.inputs[0], float(np.sqrt(0.5))):
            x = scale.inputs[1]
        else:
            continue
        add = ed.only_consumer(erf.outputs[0])
        if not _plain(add, "Add") or not _const_near(ed, _other(add, erf.outputs[0]) or "", 1.0, True):
            continue
        got = _gelu_product(ed, x, add.outputs[0])
        if got is None or ed.taken(scale, add, *got[0]):
            continue
        ed.replace(erf, [Node(erf.name, "Gelu", "", [x], [got[1]], {"approximate": "none"})], scale, add, *got[0])
    return _prune(ed.result())


def expand_ort_gelu(graph: Graph) -> Graph:
    """ONNX Runtime's GELU operators as what they compute: com.microsoft ``BiasGelu(a, b)``
    as ``Add(a, b)`` then ``Gelu``, ``FastGelu(x[, bias])`` as [``Add``] then ``Gelu``
    (approximate "tanh": its formula and constants), com.microsoft ``Gelu`` as ``Gelu``: so
    a model its transformer optimizer wrote runs them natively, and fuse_linear_gelu puts
    the MatMul, bias and GELU of its FFN in one GEMM (the reference computes the same
    float32 steps: the sum rounded, then the GELU)."""
    ed = _Editor(graph)
    for node in graph.nodes:
        if node.domain != MS or node.op_type not in ("BiasGelu", "FastGelu", "Gelu") or ed.taken(node) \
                or len(node.outputs) != 1 or not node.inputs or not node.inputs[0]:
            continue
        approximate = "tanh" if node.op_type == "FastGelu" else "none"
        bias = node.inputs[1] if len(node.inputs) > 1 and node.op_type != "Gelu" else ""
        if node.op_type == "BiasGelu" and not bias:
            continue
        x, new = node.inputs[0], []
        if bias:
            x = ed.fresh(f"{node.name}/sum")
            new.append(Node(f"{node.name}/add", "Add", "", [node.inputs[0], bias], [x], {}))
        new.append(Node(node.name, "Gelu", "", [x], list(node.outputs), {"approximate": approximate}))
        ed.replace(node, new)
    return _prune(ed.result())


def fuse_linear_gelu(graph: Graph) -> Graph:
    """A float ``MatMul`` by constant 2-D weights, the bias ``Add`` of a constant vector
    after it (when there is one) and the ``Gelu`` after that (intermediates read once) as
    ``qkernels::MatMulGelu`` (a, W, bias): the GEMM's output stage applies the GELU to each
    row of its tile while it is in cache (the same native loop as the unfused Gelu)."""
    ed = _Editor(graph)
    for mm in graph.nodes:
        if not _plain(mm, "MatMul") or ed.taken(mm):
            continue
        w = ed.const(mm.inputs[1])
        if w is None or w.dtype not in _FLOATS or w.ndim != 2:
            continue
        nxt, bias, removed = ed.only_consumer(mm.outputs[0]), [], []
        if _plain(nxt, "Add"):
            b = _other(nxt, mm.outputs[0])
            v = ed.const(b)
            if v is None or v.dtype != w.dtype or v.shape not in ((w.shape[1],), (1, w.shape[1])):
                continue
            bias, removed = [b], [nxt]
            nxt = ed.only_consumer(nxt.outputs[0])
        if not _plain(nxt, "Gelu", 1) or ed.taken(nxt, *removed):
            continue
        attrs = {"activation": "Gelu", "approximate": nxt.attrs.get("approximate", "none")}
        ed.replace(mm, [Node(mm.name, "MatMulGelu", QK, [mm.inputs[0], mm.inputs[1], *bias], [nxt.outputs[0]],
                             attrs)], *removed, nxt)
    return _prune(ed.result())


def fuse_linear_bias(graph: Graph) -> Graph:
    """A float32 ``MatMul`` by constant 2-D weights, the bias ``Add`` of a constant vector
    after it and, when the sum goes on only to another ``Add`` of a computed value (the
    residual of a transformer block), that Add too (intermediates read once), as
    ``qkernels::MatMulBias`` (a, W, bias[, residual]): the GEMM's output stage adds the
    bias, then the residual, each a float32 rounding as the Adds make (the same floats;
    float16 would round once, not twice: left as it is)."""
    ed = _Editor(graph)
    for mm in graph.nodes:
        if not _plain(mm, "MatMul") or ed.taken(mm):
            continue
        w = ed.const(mm.inputs[1])
        add = ed.only_consumer(mm.outputs[0])
        if w is None or w.dtype != np.float32 or w.ndim != 2 or not _plain(add, "Add"):
            continue
        b = _other(add, mm.outputs[0])
        v = ed.const(b) if b else None
        if v is None or v.dtype != w.dtype or v.shape not in ((w.shape[1],), (1, w.shape[1])):
            continue
        inputs, out, removed = [mm.inputs[0], mm.inputs[1], b], add.outputs[0], [add]
        res = ed.only_consumer(add.outputs[0])
        r = _other(res, add.outputs[0]) if _plain(res, "Add") else None
        if r and ed.const(r) is None and r != add.outputs[0] and add.outputs[0] not in ed.outputs:
            inputs, out, removed = inputs + [r], res.outputs[0], [add, res]
        if ed.taken(*removed):
            continue
        ed.replace(mm, [Node(mm.name, "MatMulBias", QK, inputs, [out], {})], *removed)
    return _prune(ed.result())


def fuse_attention_softmax(graph: Graph) -> Graph:
    """Attention's ``Softmax(axis=-1)`` of ``Add(scores, mask)``, with the ``Div`` or
    ``Mul`` of the scores by a float scalar constant before it when there is one
    (intermediates read once; opset 13 and later), as ``qkernels::MaskedSoftmax(scores,
    mask)`` (``scale``, ``div``): one native pass per row (graph/backends/cpu_transformer.py)."""
    if graph.opset < 13:
        return graph
    ed = _Editor(graph)
    for sm in graph.nodes:
        if not _plain(sm, "Softmax", 1) or sm.attrs.get("axis", -1) != -1 or ed.taken(sm):
            continue
        add = ed.producer_of(sm.inputs[0], "Add")
        if add is None or len(add.inputs) != 2 or ed.only_consumer(add.outputs[0]) is not sm or ed.taken(add):
            continue
        x, mask, scale, div, removed = add.inputs[0], add.inputs[1], 1.0, 0, [add]
        for k in (0, 1):
            sc = ed.producer.get(add.inputs[k])
            if sc is None or sc.domain or sc.op_type not in ("Div", "Mul") or len(sc.inputs) != 2 \
                    or ed.only_consumer(sc.outputs[0]) is not add or ed.taken(sc):
                continue
            c = 1 if _scalar(ed.const(sc.inputs[1])) else (0 if sc.op_type == "Mul" and _scalar(ed.const(sc.inputs[0]))
                                                          else None)
            v = ed.const(sc.inputs[c]) if c is not None else None
            if v is None or v.dtype not in _FLOATS:
                continue
            x, mask, scale, div = sc.inputs[1 - c], add.inputs[1 - k], float(v.reshape(())), int(sc.op_type == "Div")
            removed.append(sc)
            break
        ed.replace(sm, [Node(sm.name, "MaskedSoftmax", QK, [x, mask], list(sm.outputs),
                             {"scale": scale, "div": div})], *removed)
    return _prune(ed.result())


def fuse_transpose_matmul(graph: Graph) -> Graph:
    """A ``MatMul`` of two computed values with a ``Transpose`` (read by it alone) before
    either, or after it (keeping the last axis last), as ``qkernels::TransposedMatMul``
    (``perm_a``, ``perm_b``, ``perm_y``): the batched GEMM reads the operands through the
    permuted strides and writes its rows into the permuted layout, no copy (attention's
    split and merged heads)."""
    ed = _Editor(graph)
    for mm in graph.nodes:
        if not _plain(mm, "MatMul") or ed.taken(mm) or any(ed.const(i) is not None for i in mm.inputs):
            continue
        ins, attrs, removed = list(mm.inputs), {}, []
        for k, key in ((0, "perm_a"), (1, "perm_b")):
            tr = ed.producer_of(mm.inputs[k], "Transpose")
            if tr is None or len(tr.inputs) != 1 or "perm" not in tr.attrs or ed.taken(tr) \
                    or ed.only_consumer(tr.outputs[0]) is not mm or mm.inputs[0] == mm.inputs[1]:
                continue
            ins[k], attrs[key] = tr.inputs[0], [int(p) for p in tr.attrs["perm"]]
            removed.append(tr)
        outs = list(mm.outputs)
        tr = ed.only_consumer(mm.outputs[0])     # a Transpose after it keeping the columns last: written so
        perm = tr.attrs.get("perm") if _plain(tr, "Transpose", 1) else None
        if perm and int(perm[-1]) == len(perm) - 1 and not ed.taken(tr):
            attrs["perm_y"], outs = [int(p) for p in tr.attrs["perm"]], list(tr.outputs)
            removed.append(tr)
        if removed:
            ed.replace(mm, [Node(mm.name, "TransposedMatMul", QK, ins, outs, attrs)], *removed)
    return _prune(ed.result())


def _clip_bounds(ed: _Editor, act: Node | None) -> list | None:
    """[min, max] of a Clip with constant scalar bounds (or none), else None."""
    if act is None or act.op_type != "Clip":
        return None
    bounds = [-np.inf, np.inf]
    for k in (1, 2):
        name = act.inputs[k] if len(act.inputs) > k else ""
        if name:
            v = ed.const(name)
            if not _scalar(v):
                return None
            bounds[k - 1] = float(v.reshape(()))
    return bounds if bounds[0] <= bounds[1] else None


def fold_constant_dequantize(graph: Graph) -> Graph:
    """Replace each DequantizeLinear whose inputs are all constants (weights no integer
    pass took) by its float result: ``(q - zero_point) * scale``, per tensor or along
    ``axis``, in float32 like ONNX."""
    ed = _Editor(graph)
    for node in graph.nodes:
        if node.op_type != "DequantizeLinear" or node.domain or len(node.outputs) != 1:
            continue
        if not all(i in ed.inits for i in node.inputs if i) or _attr(node, "block_size", 0):
            continue
        q = ed.inits[node.inputs[0]]
        scale = ed.inits[node.inputs[1]]
        zp = ed.inits[node.inputs[2]] if len(node.inputs) > 2 and node.inputs[2] else np.zeros((), q.dtype)
        if q.dtype.kind not in "iu" or scale.dtype != np.float32:
            continue
        axis, shape = int(_attr(node, "axis", 1)), [1] * q.ndim
        if scale.size > 1 or zp.size > 1:   # per axis: left to the reference's checks unless it fits
            if not -q.ndim <= axis < q.ndim or any(v.size not in (1, q.shape[axis]) or v.ndim > 1 for v in (scale, zp)):
                continue
            shape[axis] = -1
        s, z = (v.reshape(shape) if v.size > 1 else v.reshape(()) for v in (scale, zp.astype(np.int64)))
        value = ((q.astype(np.int64) - z).astype(np.float32) * s).astype(np.float32)
        ed.inits[node.outputs[0]] = value
        ed.replace(node, [])
    return _prune(ed.result())


def _prune(graph: Graph) -> Graph:
    """Drop nodes none of whose outputs anything reads (nor the graph returns), then the
    constants no node reads."""
    # one sweep from the outputs back (the nodes are in topological order, so every
    # reader is decided before its producers): linear, where re-scanning until nothing
    # changes was quadratic in a long dead chain
    used = {o.name for o in graph.outputs}
    kept = []
    for n in reversed(graph.nodes):
        if any(o and o in used for o in n.outputs):
            kept.append(n)
            used.update(i for i in n.inputs if i)
    nodes = kept[::-1]
    inits = {k: v for k, v in graph.initializers.items() if k in used}
    return Graph(nodes, inits, graph.inputs, graph.outputs, graph.opset, graph.name, graph.metadata)


def fuse_qlinear_residual_add(graph: Graph) -> Graph:
    """Fuse com.microsoft ``QLinearAdd`` of a ``QLinearConv``'s result (one group, constant
    4-D weights, nothing else reading it) and another computed tensor into
    ``qkernels::QLinearConvAdd`` (inputs: the convolution's eight, the Add's scale and zero
    point of the convolution's result, the other tensor with its scale and zero point, the
    Add's output scale and zero point, the convolution's bias): the kernels add each tile
    while it is in cache, with the QLinearAdd loop itself (the same bits as the two nodes;
    the reference operator runs the two operators)."""
    ed = _Editor(graph)
    for add in graph.nodes:
        if add.domain != MS or add.op_type != "QLinearAdd" or len(add.inputs) < 7 or not all(add.inputs[:7]) \
                or ed.taken(add):
            continue
        for k in (0, 3):
            conv = ed.producer_of(add.inputs[k], "QLinearConv")
            o = 3 - k
            r = add.inputs[o]
            if conv is None or ed.taken(conv) or ed.only_consumer(conv.outputs[0]) is not add or r == add.inputs[k] \
                    or ed.const(r) is not None or len(conv.inputs) < 8 or not all(conv.inputs[:8]) \
                    or int(conv.attrs.get("group", 1)) != 1:
                continue
            w = ed.const(conv.inputs[3])
            zps = [ed.const(z) for z in (conv.inputs[7], add.inputs[k + 2], add.inputs[o + 2])]
            zy = ed.const(add.inputs[7]) if len(add.inputs) > 7 and add.inputs[7] else np.zeros((), np.uint8)
            if w is None or w.ndim != 4 or any(z is None for z in zps) or zy is None \
                    or len({z.dtype for z in zps + [zy]}) != 1:
                continue
            inputs = list(conv.inputs[:8]) + [add.inputs[k + 1], add.inputs[k + 2], r, add.inputs[o + 1],
                                              add.inputs[o + 2], add.inputs[6],
                                              add.inputs[7] if len(add.inputs) > 7 else "",
                                              conv.inputs[8] if len(conv.inputs) > 8 else ""]
            ed.replace(conv, [Node(conv.name, "QLinearConvAdd", QK, inputs, list(add.outputs), dict(conv.attrs))], add)
            break
    return _prune(ed.result())


# Where the quantized operators hold their 8-bit activations: groups of slots of one type,
# each slot (input or output, the value's index, its zero point's input index). Inputs and
# outputs of the convolutions and GEMMs have types of their own; the elementwise operators
# and poolings one type for all.
_IN, _OUT = True, False
_ACT_SLOTS = {
    ("QuantizeLinear", ""): (((_OUT, 0, 2),),),
    ("DequantizeLinear", ""): (((_IN, 0, 2),),),
    ("QLinearConv", ""): (((_IN, 0, 2),), ((_OUT, 0, 7),)),
    ("QLinearMatMul", ""): (((_IN, 0, 2),), ((_IN, 3, 5),), ((_OUT, 0, 7),)),
    ("QGemm", MS): (((_IN, 0, 2),), ((_OUT, 0, 8),)),
    ("QLinearAdd", MS): (((_IN, 0, 2), (_IN, 3, 5), (_OUT, 0, 7)),),
    ("QLinearMul", MS): (((_IN, 0, 2), (_IN, 3, 5), (_OUT, 0, 7)),),
    ("QLinearGlobalAveragePool", MS): (((_IN, 0, 2), (_OUT, 0, 4)),),
    ("QLinearAveragePool", MS): (((_IN, 0, 2), (_OUT, 0, 4)),),
    ("QLinearSigmoid", MS): (((_IN, 0, 2), (_OUT, 0, 4)),),
    ("QLinearLeakyRelu", MS): (((_IN, 0, 2), (_OUT, 0, 4)),),
    # the other operand and the output of the add (the convolution's result inside, zero
    # points 7 and 9, is of the output's type)
    ("QLinearConvAdd", QK): (((_IN, 0, 2),), ((_IN, 10, 12), (_OUT, 0, 14))),
    # the index byte, and the output of the table's type (remade below, not given 128)
    ("TableLookup", QK): (((_IN, 0, None),), ((_OUT, 0, 1),)),
}
_ACT_INNER = {("QLinearConvAdd", QK): (7, 9)}
# Operators that move bytes (no arithmetic on their values): input 0 (every input of a
# Concat) and every output of one type; a maximum is the same under the flip's order.
_ACT_MOVERS = {"MaxPool", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Concat", "Split",
               "Slice"}


def int8_activations_as_uint8(graph: Graph) -> Graph:
    """Run a quantized model's int8 activations as uint8: every int8 tensor between
    quantized operators (not a graph input or output) stored with 128 added (its bytes
    xor 0x80) and its zero points with 128 added, the same real values and, since every
    operator here requantizes by value minus zero point and saturates at its type's ends
    (or only moves or compares bytes), the same results flipped: bit-exact. The uint8
    form is what the convolutions read in place (an int8 input is flipped while its
    patches are packed: a copy per run). Tensors that must share a type (through an
    elementwise operator, a pooling, a reshape) are flipped together or not at all (an
    operator outside the tables above reading one, a zero point that is not a constant);
    constant int8 operands among them (a QLinearAdd of a constant) are flipped too, a byte
    table (qkernels::TableLookup) is permuted for a flipped index and flipped for a flipped
    output; weights stay int8."""
    if any(n.subgraphs() for n in graph.nodes):
        return graph       # (values read inside a branch or loop body: left as they are)
    ed = _Editor(graph)
    parent: dict[str, str] = {}

    def find(v):
        while parent.setdefault(v, v) != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    def groups_of(node):
        """The node's 8-bit activations as groups of one type, each a list of (slot index,
        value, its zero point's input index or None, is input); None if the node is not
        one of ours."""
        key = (node.op_type, node.domain)
        if key == ("QLinearConcat", MS):   # each input requantized on its own (or copied): a type each
            return [[(0, node.outputs[0], 1, False)]] + [[(k, node.inputs[k], k + 2, True)]
                                                        for k in range(2, len(node.inputs) - 2, 3) if node.inputs[k]]
        if key in _ACT_SLOTS:
            got = []
            for group in _ACT_SLOTS[key]:
                members = []
                for is_in, i, z in group:
                    names = node.inputs if is_in else node.outputs
                    if i >= len(names) or not names[i]:
                        continue
                    if is_in and node.op_type == "QLinearMatMul" and i == 3 and ed.const(names[i]) is not None:
                        continue      # constant weights stay int8
                    members.append((i, names[i], z, is_in))
                if members:
                    got.append(members)
            return got
        if not node.domain and node.op_type in _ACT_MOVERS and node.inputs and node.inputs[0]:
            data = range(len(node.inputs)) if node.op_type == "Concat" else [0]
            return [[(i, node.inputs[i], None, True) for i in data if node.inputs[i]] +
                    [(i, v, None, False) for i, v in enumerate(node.outputs) if v]]
        return None

    int8, uint8, blocked = set(), set(), set()
    for node in ed.nodes:
        got = groups_of(node)
        if got is None:
            blocked.update(v for v in list(node.inputs) + list(node.outputs) if v)
            continue
        for members in got:
            for _, v, zi, _ in members:
                z = node.inputs[zi] if zi is not None and zi < len(node.inputs) else ""
                zp = ed.const(z) if z else None
                if zi is not None and (zp is None or zp.dtype not in _INT8):
                    blocked.add(v)       # no zero point, or not a constant one: its type is not ours to change
                elif zp is not None:
                    (int8 if zp.dtype == np.int8 else uint8).add(v)
                parent[find(v)] = find(members[0][1])
    io = {v.name for v in graph.inputs} | ed.outputs
    groups: dict[str, set[str]] = {}
    for v in parent:
        groups.setdefault(find(v), set()).add(v)
    flip = set()
    for members in groups.values():
        if members & int8 and not members & (uint8 | blocked | io) and \
                all(ed.const(v) is None or ed.const(v).dtype == np.int8 for v in members):
            flip |= members
    if not flip:
        return graph
    renamed: dict[str, str] = {}

    def flipped(name):
        """A constant (a zero point or an operand) with 128 added, as uint8 (once per name)."""
        if name not in renamed:
            renamed[name] = ed.add_const(f"{name}/u8", (ed.const(name).astype(np.int16) + 128).astype(np.uint8))
        return renamed[name]

    for node in ed.nodes:
        got = groups_of(node)
        if not got or not any(v in flip for members in got for _, v, _, _ in members):
            continue
        inputs = list(node.inputs)
        if (node.op_type, node.domain) == ("TableLookup", QK):   # y = table[x's byte]
            t = ed.const(inputs[1]).view(np.uint8)
            if inputs[0] in flip:
                t = t[..., np.arange(256) ^ 0x80]
            t = t ^ np.uint8(0x80) if node.outputs[0] in flip else t.view(ed.const(inputs[1]).dtype)
            inputs[1] = ed.add_const(f"{inputs[1]}/u8", np.ascontiguousarray(t))
            ed.replace(node, [Node(node.name, node.op_type, node.domain, inputs, list(node.outputs), {})])
            continue
        for members in got:
            for i, v, zi, is_in in members:
                if v not in flip:
                    continue
                if zi is not None:
                    inputs[zi] = flipped(inputs[zi])
                if is_in and ed.const(v) is not None:
                    inputs[i] = flipped(v)
        if any(o in flip for o in node.outputs):
            for z in _ACT_INNER.get((node.op_type, node.domain), ()):
                inputs[z] = flipped(inputs[z])
        ed.replace(node, [Node(node.name, node.op_type, node.domain, inputs, list(node.outputs), dict(node.attrs))])
    return _prune(ed.result())


def conv1d_as_conv2d(graph: Graph) -> Graph:
    """Run a float 1-D convolution (Conv or FusedConv with constant 3-D weights, as audio
    models have: silero-vad's STFT and encoder) as a 2-D one of height 1 on the kernels:
    ``Squeeze(Conv2d(Unsqueeze(x, 2), W[:, :, None, :]), 2)`` with the attributes given a
    unit first axis (the reshapes are views in the plan). The same arithmetic, the same
    order of sums."""
    if not any((n.op_type, n.domain) in (("Conv", ""), ("FusedConv", MS)) and len(n.inputs) > 1
               and np.ndim(graph.initializers.get(n.inputs[1])) == 3 for n in graph.nodes):
        return graph      # (the common case: no pass over the graph)
    ed = _Editor(graph)
    axes = None
    for node in graph.nodes:
        if (node.op_type, node.domain) not in (("Conv", ""), ("FusedConv", MS)) or len(node.inputs) < 2 \
                or ed.taken(node) or len(node.outputs) != 1 or (len(node.inputs) > 3 and any(node.inputs[3:])):
            continue
        w = ed.const(node.inputs[1])
        if w is None or w.dtype not in _FLOATS or w.ndim != 3:
            continue
        attrs = dict(node.attrs)
        for name, unit in (("kernel_shape", 1), ("strides", 1), ("dilations", 1)):
            if name in attrs:
                attrs[name] = [unit, *attrs[name]]
        if "pads" in attrs:
            pads = list(attrs["pads"])
            if len(pads) != 2:
                continue       # malformed: the operator refuses it when it runs
            attrs["pads"] = [0, pads[0], 0, pads[1]]
        axes = axes or ed.add_const("conv1d/axes", np.array([2], np.int64))
        x4, y4 = ed.fresh(f"{node.name}/x4"), ed.fresh(f"{node.name}/y4")
        w4 = ed.add_const(f"{node.name}/W4", np.ascontiguousarray(w[:, :, None, :]))
        ed.replace(node, [Node(f"{node.name}/unsqueeze", "Unsqueeze", "", [node.inputs[0], axes], [x4], {}),
                          Node(node.name, node.op_type, node.domain, [x4, w4, *node.inputs[2:3]], [y4], attrs),
                          Node(f"{node.name}/squeeze", "Squeeze", "", [y4, axes], list(node.outputs), {})])
    return _prune(ed.result())


PASSES = (fuse_dynamic_quantize, fold_batchnorm, fold_conv_scale_mul, fold_conv_bias_add, fold_batchnorm, qdq_to_integer,
          fuse_activations, fuse_residual_add, fuse_hard_swish, expand_ort_gelu, fuse_gelu, fuse_linear_gelu,
          fuse_linear_bias, fuse_attention_softmax, fuse_transpose_matmul, fold_constant_dequantize, fuse_qlinear_residual_add,
          int8_activations_as_uint8, conv1d_as_conv2d)


def rewrite(graph: Graph) -> Graph:
    """Every pass, in order (the cpu backend's planning)."""
    for p in PASSES:
        graph = p(graph)
    return graph
