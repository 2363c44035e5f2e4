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
   (:func:`~qkernels.quant.passes.fold_batch_norm`).

:func:`prepare` returns the new model and a list of lines saying what ran (the report
shows them), like ONNX Runtime's ``quant_pre_process`` but without a separate step.
"""
from __future__ import annotations

import copy

from .passes import fold_batch_norm

__all__ = ["prepare", "name_nodes"]


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
    graph = fold_graph(to_graph(model))
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


def prepare(model):
    """(model ready to calibrate, lines saying what pre-processing did)."""
    from ..graph.model import CONVERTED_KEY, upgrade_opset
    steps = []
    model = upgrade_opset(model)
    converted = {p.key: p.value for p in model.metadata_props}.get(CONVERTED_KEY)
    if converted is not None:
        steps.append(f"converted from opset {converted} to 13")
    model = name_nodes(copy.deepcopy(model))
    model, folded = fold_constants(model)
    if folded:
        steps.append(f"constant folding: {folded} node(s) evaluated into initializers")
    bns = sum(n.op_type == "BatchNormalization" for n in model.graph.node)
    model = fold_batch_norm(model)
    bn_folded = bns - sum(n.op_type == "BatchNormalization" for n in model.graph.node)
    if bn_folded:
        steps.append(f"batch-norm folding: {bn_folded} BatchNormalization node(s) folded into the Conv before them")
    return model, steps
