"""What gets quantized: the activations, weights and biases around each quantizable
node, and the layers a report describes."""
from __future__ import annotations

import difflib

from .graphutil import consumers

#: operators whose inputs and outputs get QDQ pairs (weights: per output channel)
DEFAULT_OP_TYPES = ("Conv", "MatMul", "Gemm")
#: single-consumer activations that move the output's QDQ pair after them (the runner
#: folds them into the integer output clamp)
FUSABLE_ACTIVATIONS = ("Relu", "Clip")


def _quantized_output(node, readers: dict) -> str:
    """The tensor whose QDQ pair follows ``node``: its output, or the output of a Relu/Clip
    that alone reads it."""
    after = readers.get(node.output[0], [])
    if len(after) == 1 and after[0].op_type in FUSABLE_ACTIVATIONS:
        return after[0].output[0]
    return node.output[0]


def weight_axis(node) -> int:
    """The output-channel axis of a weight: Conv (O, I, ...) 0, MatMul (K, N) 1, Gemm 1
    or 0 with transB."""
    if node.op_type == "Conv":
        return 0
    if node.op_type == "Gemm":
        return 1 - int(any(a.name == "transB" and a.i for a in node.attribute))
    return 1


def _selected(model, op_types, exclude):
    return [n for n in model.graph.node if n.op_type in op_types and n.name not in exclude]


def plan_tensors(model, op_types, exclude, per_channel: bool = True):
    """(activation tensors to quantize, weight inputs {tensor: (node, axis)}, bias inputs
    {tensor: (node, weight tensor, activation tensor)}); axis None: per tensor."""
    g = model.graph
    inits = {t.name for t in g.initializer}
    readers = consumers(g)
    acts, weights, biases = [], {}, {}
    for n in _selected(model, op_types, exclude):
        x, w = n.input[0], n.input[1]
        if x not in inits:
            acts.append(x)
        if w in inits:
            weights[w] = (n, weight_axis(n) if per_channel else None)
        elif w:
            acts.append(w)
        if len(n.input) > 2 and n.input[2] in inits and n.op_type in ("Conv", "Gemm") and w in inits:
            biases[n.input[2]] = (n, w, x)
        acts.append(_quantized_output(n, readers))
    return list(dict.fromkeys(acts)), weights, biases


def quantized_layers(model, op_types, exclude):
    """The quantized nodes in graph order as (node, activation input, weight or None,
    quantized output tensor) -- the output after a fused Relu/Clip, as in :func:`plan_tensors`."""
    inits = {t.name for t in model.graph.initializer}
    readers = consumers(model.graph)
    return [(n, n.input[0], n.input[1] if len(n.input) > 1 and n.input[1] in inits else None,
             _quantized_output(n, readers)) for n in _selected(model, op_types, exclude)]


def check_node_names(model, names) -> None:
    """Every name in ``exclude_nodes`` must name a node: a typo would silently quantize the
    layer the user meant to keep in float. The error lists the nearest names."""
    known = [n.name for n in model.graph.node]
    unknown = sorted(set(names) - set(known))
    if unknown:
        near = difflib.get_close_matches(unknown[0], known, n=5, cutoff=0.5)
        hint = f"did you mean {', '.join(map(repr, near))}?" if near else \
            f"the nodes are {', '.join(map(repr, known[:10]))}{', ...' if len(known) > 10 else ''}"
        raise ValueError(f"exclude_nodes: no node named {unknown[0]!r}; {hint}")
