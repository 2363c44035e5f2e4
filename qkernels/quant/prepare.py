"""Pre-processing before calibration: the float model brought to the form the quantizer
plans on, as exporters leave models (paddle2onnx, old PyTorch, TF converters):

1. an opset older than 13 converted to 13 (``onnx.version_converter``, as the runner does
   at load);
2. every node named, uniquely (``<op_type>_<index>``): reports and ``exclude_nodes``
   name layers by these names;
3. constant folding: ``Constant`` nodes and every node whose inputs are all constant
   (``Shape`` of a constant, ``Cast``, ``Reshape`` of a weight, ...) evaluated once by the
   runner's own folding (:func:`qkernels.graph.fold.fold_constants`, the reference
   operators) and stored as initializers -- so weights held in ``Constant`` nodes are
   quantized as weights (int8 symmetric, per channel), not as activations;
4. BatchNormalization after a Conv folded into its weights and bias
   (:func:`~qkernels.quant.passes.fold_batch_norm`);
5. a constant per-channel Mul or Add after a Conv (how paddle2onnx writes a conv's bias,
   and the affine left of a decomposed norm) folded into the Conv's weights and bias
   (:func:`fold_conv_affine`) -- else the Conv's output is quantized before its bias
   is added, and rounded twice.

:func:`prepare` returns the new model and a list of lines saying what ran (the report
shows them), like ONNX Runtime's ``quant_pre_process`` but without a separate step.
"""
from __future__ import annotations

import copy

from .passes import fold_batch_norm

__all__ = ["prepare", "name_nodes", "fold_constants", "fold_conv_affine"]


def name_nodes(model):
    """Give every unnamed or duplicate-named node a unique name (``<op_type>_<index>``),
    in place, so that reports, ``exclude_nodes`` and the accuracy budget can name each
    layer."""
    named = [n.name for n in model.graph.node if n.name]
    taken, seen = set(named), set()
    for k, n in enumerate(model.graph.node):
        if n.name and n.name not in seen:
            seen.add(n.name)
            continue
        name, j = f"{n.op_type}_{k}", 0
        while name in taken:
            j += 1
            name = f"{n.op_type}_{k}_{j}"
        n.name = name
        taken.add(name)
        seen.add(name)
    return model


def fold_constants(model):
    """``model`` (named nodes) with its constant subgraphs folded into initializers;
    returns (new model, number of nodes folded)."""
    from onnx import numpy_helper
    from ..graph.fold import fold_constants as fold_graph
    from ..graph.model import to_graph
    graph = fold_graph(to_graph(model), control_flow=False)   # (nodes kept by name: no inlining)
    kept = {n.name for n in graph.nodes}
    out = copy.deepcopy(model)
    g = out.graph
    nodes = [n for n in g.node if n.name in kept]
    folded = len(g.node) - len(nodes)
    if not folded:
        return out, 0
    old = {t.name: t for t in g.initializer}
    inits = [old[name] if name in old else numpy_helper.from_array(value, name)
             for name, value in graph.initializers.items()]
    del g.node[:]
    g.node.extend(nodes)
    del g.initializer[:]
    g.initializer.extend(inits)
    gone = set(old) - set(graph.initializers)   # old-style models also list initializers as inputs
    inputs = [vi for vi in g.input if vi.name not in gone]
    del g.input[:]
    g.input.extend(inputs)
    return out, folded


def _per_channel(value, channels: int, rank: int):
    """``value`` as one number per output channel (a (C,) array) when it broadcasts
    against a Conv output of ``rank`` dims only along the channel axis; else None."""
    import numpy as np
    v = np.asarray(value)
    if v.dtype.kind != "f" or v.ndim > rank:
        return None
    shape = (1,) * (rank - v.ndim) + v.shape
    if any(d != 1 for k, d in enumerate(shape) if k != 1) or shape[1] not in (1, channels):
        return None
    return np.broadcast_to(v.reshape(-1), (channels,)).astype(np.float64)


def fold_conv_affine(model):
    """``model`` with every constant per-channel Mul or Add that alone reads a Conv's
    output (constant weights) folded into the Conv: ``w * s``, ``b * s`` for a Mul,
    ``b + a`` for an Add; returns (new model, number of nodes folded)."""
    import numpy as np
    from onnx import numpy_helper
    out = copy.deepcopy(model)
    g = out.graph
    inits = {t.name: t for t in g.initializer}
    graph_outputs = {o.name for o in g.output}
    folded = 0
    changed = True
    while changed:
        changed = False
        readers: dict[str, list] = {}
        for n in g.node:
            for i in n.input:
                readers.setdefault(i, []).append(n)
        for conv in g.node:
            if conv.op_type != "Conv" or len(conv.input) < 2 or conv.input[1] not in inits \
                    or (len(conv.input) > 2 and conv.input[2] and conv.input[2] not in inits):
                continue
            y = conv.output[0]
            after = readers.get(y, [])
            if len(after) != 1 or y in graph_outputs or after[0].op_type not in ("Mul", "Add"):
                continue
            op = after[0]
            other = op.input[1] if op.input[0] == y else op.input[0]
            w = numpy_helper.to_array(inits[conv.input[1]]).astype(np.float64)
            v = _per_channel(numpy_helper.to_array(inits[other]), w.shape[0], w.ndim) if other in inits else None
            if v is None or other == y:
                continue
            has_bias = len(conv.input) > 2 and bool(conv.input[2])
            b = numpy_helper.to_array(inits[conv.input[2]]).astype(np.float64) if has_bias else np.zeros(w.shape[0])
            if op.op_type == "Mul":
                w, b = w * v.reshape((-1,) + (1,) * (w.ndim - 1)), b * v
            else:
                b = b + v
            dtype = numpy_helper.to_array(inits[conv.input[1]]).dtype
            wn, bn = f"{conv.name}_w_folded", f"{conv.name}_b_folded"
            for name, arr in ((wn, w), (bn, b)):
                t = numpy_helper.from_array(arr.astype(dtype), name)
                if name in inits:
                    inits[name].CopyFrom(t)
                else:
                    g.initializer.append(t)
                    inits[name] = g.initializer[-1]
            conv.input[:] = [conv.input[0], wn, bn]
            conv.output[0] = op.output[0]
            g.node.remove(op)
            folded += 1
            changed = True
            break
    from .graphutil import drop_unused_initializers
    drop_unused_initializers(g)
    return out, folded


def prepare(model):
    """(model ready to calibrate, lines saying what pre-processing did)."""
    from ..graph.model import CONVERTED_KEY, upgrade_opset
    steps = []
    original, model = model, upgrade_opset(model)
    props = {p.key: p.value for p in model.metadata_props}
    converted = props.pop(CONVERTED_KEY, None) if model is not original else None
    if converted is not None:
        steps.append(f"converted from opset {converted} to 13")
        del model.metadata_props[:]          # the quantized model is opset 13 as written
        for k, v in props.items():
            model.metadata_props.add(key=k, value=v)
    model = name_nodes(copy.deepcopy(model))
    model, folded = fold_constants(model)
    if folded:
        steps.append(f"constant folding: {folded} node(s) evaluated into initializers")
    bns = sum(n.op_type == "BatchNormalization" for n in model.graph.node)
    model = fold_batch_norm(model)
    bn_folded = bns - sum(n.op_type == "BatchNormalization" for n in model.graph.node)
    if bn_folded:
        steps.append(f"batch-norm folding: {bn_folded} BatchNormalization node(s) folded into the Conv before them")
    model, affine = fold_conv_affine(model)
    if affine:
        steps.append(f"conv affine folding: {affine} constant per-channel Mul/Add node(s) folded into the Conv "
                     "before them")
    return model, steps
