"""Constant folding at load: nodes whose inputs are all constant run once, on the
reference operators, and become constants, as long as what they make is small.

A node whose output would pass :data:`FOLD_LIMIT` bytes (``Session(...,
fold_limit=...)`` changes it) stays in the graph and runs at run time, where the
operators refuse outputs beyond the element limit with a clear error: a 100-byte
model asking for ``ConstantOfShape([2**30])`` costs nothing at load. The size is
estimated before computing, from the constant inputs (exactly for the operators whose
output size comes from input values or from products of input shapes), and checked
again after. Constant nodes always fold: their values are in the model already.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from .backends.reference import run_node, why_not
from .errors import ModelError
from .ir import Graph, Node

#: the most bytes one folded value may take (64 MiB)
FOLD_LIMIT = 64 << 20

#: operators never folded at load, though their inputs are constant: random ones, and
#: DequantizeLinear (a QDQ model's int8 weights and scales must reach the rewrites that
#: turn DQ -> op -> Q into integer kernels; the cpu backend folds what they leave)
NOT_FOLDED = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
              "DequantizeLinear", "If", "Loop", "Scan"}   # (control flow: see fold_constants)


def _ints(v) -> list[int]:
    return [int(i) for i in np.asarray(v).reshape(-1)]


def _matmul_shape(a, b) -> tuple:
    if a.ndim < 2 or b.ndim < 2:   # vector operands: never larger than the other operand
        return a.shape if a.size > b.size else b.shape
    return np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])


def _elements(node: Node, args: list) -> int:
    """The elements of ``node``'s largest output, from its constant inputs (None where
    omitted), before computing: exact where the output's size comes from input values
    or products of shapes; else the broadcast of the inputs (elementwise operators),
    or the largest input (operators that move, select or reduce)."""
    op, x = node.op_type, args[0] if args else None
    if op == "ConstantOfShape":
        return math.prod(_ints(x))
    if op == "Expand":
        return math.prod(np.broadcast_shapes(x.shape, tuple(_ints(args[1]))))
    if op == "Tile":
        return x.size * math.prod(_ints(args[1]))
    if op == "Range":
        start, limit, delta = (float(np.asarray(a).reshape(-1)[0]) for a in args[:3])
        return max(math.ceil((limit - start) / delta), 0)
    if op == "Pad":   # pads: the begins of the axes padded, then their ends
        pads, dims = _ints(args[1]), list(x.shape)
        axes = range(x.ndim) if len(args) < 4 or args[3] is None else [a % x.ndim for a in _ints(args[3])]
        for k, a in enumerate(axes):
            dims[a] += pads[k] + pads[k + len(axes)]
        return math.prod(dims)
    if op == "OneHot":
        return x.size * int(np.asarray(args[1]).reshape(-1)[0])
    if op == "Resize":   # sizes, else floor(dim * scale), on the axes given (all by default)
        dims = list(x.shape)
        given = args[3] if len(args) > 3 and args[3] is not None and np.size(args[3]) else None
        scales = None if given is not None or len(args) < 3 or args[2] is None else np.asarray(args[2], np.float64)
        axes = node.attrs.get("axes") or range(x.ndim)
        values = _ints(given) if given is not None else (scales.reshape(-1) if scales is not None else [])
        for a, v in zip(axes, values):
            dims[a % x.ndim] = int(v) if given is not None else int(math.floor(dims[a % x.ndim] * float(v)))
        return math.prod(max(d, 0) for d in dims)
    if op == "ConvTranspose" and x.ndim >= 3 and args[1].ndim == x.ndim:   # no pads: an upper bound
        sp = node.attrs.get("output_shape")
        if not sp:
            k = args[1].shape[2:]
            n = x.ndim - 2
            st = node.attrs.get("strides") or [1] * n
            dil = node.attrs.get("dilations") or [1] * n
            op_ = node.attrs.get("output_padding") or [0] * n
            sp = [st[i] * (x.shape[2 + i] - 1) + op_[i] + (k[i] - 1) * dil[i] + 1 for i in range(n)]
        return x.shape[0] * args[1].shape[1] * node.attrs.get("group", 1) * math.prod(int(d) for d in sp)
    if op in ("MatMul", "MatMulInteger"):
        return math.prod(_matmul_shape(x, args[1]))
    if op == "QLinearMatMul":
        return math.prod(_matmul_shape(x, args[3]))
    if op == "Gather":
        return x.size // max(x.shape[node.attrs.get("axis", 0)], 1) * args[1].size
    if op == "Gemm":
        return x.shape[node.attrs.get("transA", 0)] * args[1].shape[1 - node.attrs.get("transB", 0)] \
            if x.ndim == 2 and args[1].ndim == 2 else max(a.size for a in args[:2])
    given = [a for a in args if a is not None]
    if not given:   # Constant: its value is already in memory
        return 0
    try:
        return max(math.prod(np.broadcast_shapes(*(a.shape for a in given))), max(a.size for a in given))
    except ValueError:
        return max(a.size for a in given)


def _itemsize(node: Node, args: list) -> int:
    if node.op_type == "ConstantOfShape":   # float32 unless its "value" says otherwise
        value = node.attrs.get("value")
        return 4 if value is None else np.asarray(value).itemsize
    return max((a.itemsize for a in args if a is not None), default=8)


def _fold(node: Node, graph: Graph, consts: dict, limit: int) -> dict | None:
    """The values ``node`` makes from ``consts``, or None when it is not folded (not
    foldable, not all inputs constant, or too big)."""
    if node.op_type in NOT_FOLDED or node.domain or not all(not i or i in consts for i in node.inputs) \
            or why_not(node, graph) is not None:
        return None
    value = node.attrs.get("value") if node.op_type == "Constant" else None
    if isinstance(value, np.ndarray) and not value.flags.writeable:   # a weight, read-only: itself, not a copy
        return {node.outputs[0]: value}
    args = [consts[i] if i else None for i in node.inputs]
    try:
        size = _elements(node, args) * _itemsize(node, args)
    except (ValueError, TypeError, IndexError, ArithmeticError, RuntimeError):   # numpy: > 32 dims
        size = 0   # inputs too malformed to tell: the operator says what is wrong
    if size > limit:
        return None
    try:
        produced = run_node(node, consts)
    except (ValueError, TypeError, IndexError, ArithmeticError) as exc:
        raise ModelError(f"node {node.name!r} ({node.op_type}) fails on its constant inputs: {exc}") from None
    if node.op_type == "Constant":   # its value is in the model already: folding adds nothing
        return produced
    return None if any(v.nbytes > limit for v in produced.values()) else produced


def fold_constants(graph: Graph, limit: int = FOLD_LIMIT, control_flow: bool = True) -> Graph:
    """``graph`` with every foldable node whose outputs stay within ``limit`` bytes each
    replaced by constants, and the constants nothing reads any more dropped.

    Control flow never runs at load (a loop may be long), but: the constants a node's
    subgraphs read from around them become constants of those subgraphs (their own
    planning folds with them), and an If whose condition is constant is replaced by the
    branch it takes, inlined (its values renamed under the node's name).
    ``control_flow=False`` leaves If, Loop and Scan nodes as they are, for a caller that
    maps the result back onto the ONNX model by node name (the quantizer)."""
    consts = dict(graph.initializers)
    taken = set(consts) | {v.name for v in graph.inputs} | {o for n in graph.nodes for o in n.outputs}
    kept = []
    todo = list(reversed(graph.nodes))
    while todo:
        node = todo.pop()
        if node.implicit and control_flow:
            node = _bind(node, consts)
        if control_flow and node.op_type == "If" and not node.domain and node.inputs[0] in consts:
            todo.extend(reversed(_inline(node, consts, taken)))
            continue
        produced = _fold(node, graph, consts, limit)
        if produced is None:
            kept.append(node)
        else:
            consts.update(produced)
    used = {i for n in kept for i in n.inputs} | {o.name for o in graph.outputs}
    return Graph(kept, {k: v for k, v in consts.items() if k in used}, graph.inputs, graph.outputs,
                 graph.opset, graph.name, graph.metadata, list(graph.outer))


def _bind(node: Node, consts: dict) -> Node:
    """``node`` with those of its implicit inputs that are constants moved into its
    subgraphs, as initializers under the names the subgraphs use."""
    k = len(node.inputs) - len(node.implicit)
    pairs = list(zip(node.inputs[k:], node.implicit))
    bound = {inner: consts[name] for name, inner in pairs if name in consts}
    if not bound:
        return node
    attrs = dict(node.attrs)
    for attr, body in node.subgraphs():
        take = {name: bound[name] for name in body.outer if name in bound}
        attrs[attr] = dataclasses.replace(body, initializers={**body.initializers, **take},
                                          outer=[name for name in body.outer if name not in take])
    keep = [(name, inner) for name, inner in pairs if inner not in bound]
    return Node(node.name, node.op_type, node.domain, node.inputs[:k] + [name for name, _ in keep],
                list(node.outputs), attrs, tuple(inner for _, inner in keep))


def _inline(node: Node, consts: dict, taken: set) -> list[Node]:
    """The nodes of the branch an If with a constant condition takes, its values renamed
    ``<If name>/<value>`` (fresh: a branch's names may repeat the graph's), its constants
    added to ``consts``, and an Identity per output of the If."""
    cond = np.asarray(consts[node.inputs[0]])
    if cond.size != 1:
        raise ModelError(f"node {node.name!r} (If): the condition must hold one value, got shape {list(cond.shape)}")
    body: Graph = node.attrs["then_branch" if cond.reshape(-1)[0] else "else_branch"]
    k = len(node.inputs) - len(node.implicit)
    names = dict(zip(node.implicit, node.inputs[k:]))     # the branch's outer names -> our values

    def fresh(name: str) -> str:
        new, j = f"{node.name}/{name}", 1
        while new in taken:
            j += 1
            new = f"{node.name}/{name}#{j}"
        taken.add(new)
        return new
    for name, value in body.initializers.items():
        names[name] = fresh(name)
        consts[names[name]] = value
    for n in body.nodes:
        for o in n.outputs:
            if o:
                names[o] = fresh(o)
    if len(body.outputs) != len(node.outputs):
        raise ModelError(f"node {node.name!r} (If): the branch makes {len(body.outputs)} output(s), "
                         f"the node has {len(node.outputs)}")
    nodes = [Node(f"{node.name}/{n.name}", n.op_type, n.domain, [names.get(i, i) if i else "" for i in n.inputs],
                  [names[o] if o else "" for o in n.outputs], dict(n.attrs), n.implicit) for n in body.nodes]
    nodes += [Node(f"{node.name}/output_{j}", "Identity", "", [names.get(v.name, v.name)], [out], {})
              for j, (v, out) in enumerate(zip(body.outputs, node.outputs)) if out]
    return nodes
