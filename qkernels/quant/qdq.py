"""The quantized model in QDQ form (QuantizeLinear / DequantizeLinear around the float
operators); the ``fp16`` target is :mod:`qkernels.quant.fp16`."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from .graphutil import drop_unused_initializers
from .weights import quantize_weight


@dataclass
class _Surgery:
    """What the QDQ rewrite adds: initializers, node groups to insert (each after the
    producer of its source tensor; source None: at the top) and input renames."""
    inits: list = field(default_factory=list)
    nodes: list = field(default_factory=list)          # (source tensor or None, [nodes])
    rename: dict = field(default_factory=dict)         # tensor -> its dequantized name


def qdq_model(model, act_params: dict, weights: dict, biases: dict, target: str, act_dtype):
    """The QDQ model: Q/DQ after each calibrated activation (``act_params``: tensor ->
    (scale, zero point)), weights (:func:`qkernels.quant.plan.plan_tensors`) and biases
    stored quantized behind a DequantizeLinear."""
    import onnx
    from onnx import numpy_helper
    m = copy.deepcopy(model)
    g = m.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    edit = _Surgery()
    _add_activation_pairs(g, act_params, act_dtype, edit)
    w_scales = _add_weights(inits, weights, target == "dsp", edit)
    _add_biases(inits, biases, act_params, w_scales, edit)
    # readers take the dequantized values (the Q/DQ nodes are not in g.node yet)
    for n in g.node:
        n.input[:] = [edit.rename.get(i, i) for i in n.input]
    _insert_nodes(g, edit.nodes)
    drop_unused_initializers(g)
    g.initializer.extend(edit.inits)
    if target == "dsp":
        m.metadata_props.add(key="qkernels.requant", value="fixedpoint")
    onnx.checker.check_model(m)
    return m


def _add_activation_pairs(g, act_params: dict, act_dtype, edit: _Surgery) -> None:
    from onnx import helper, numpy_helper
    graph_outputs = {o.name for o in g.output}
    for name, (scale, zp) in act_params.items():
        s, z = f"{name}_scale", f"{name}_zero_point"
        # a graph output keeps its name: the producer writes <name>_float, the DQ writes <name>
        src, dq = (f"{name}_float", name) if name in graph_outputs else (name, f"{name}_dq")
        edit.inits += [numpy_helper.from_array(np.array(scale, np.float32), s),
                       numpy_helper.from_array(np.array(zp, act_dtype), z)]
        edit.nodes.append((src, [helper.make_node("QuantizeLinear", [src, s, z], [f"{name}_q"], name=f"{name}_Q"),
                                 helper.make_node("DequantizeLinear", [f"{name}_q", s, z], [dq], name=f"{name}_DQ")]))
        if src != name:
            for n in g.node:
                n.output[:] = [src if o == name else o for o in n.output]
        edit.rename[name] = dq


def _output_channels(arr: np.ndarray, node, axis) -> int:
    if axis is not None:
        return arr.shape[axis]
    if node.op_type == "Gemm":       # per tensor: one scale for each output column all the same
        trans_b = any(a.name == "transB" and a.i for a in node.attribute)
        return arr.shape[0 if trans_b else 1]
    return arr.shape[0 if node.op_type == "Conv" else 1]


def _add_dequantized(edit: _Surgery, name: str, q, scale, zp, axis) -> None:
    """``name`` stored as ``<name>_quantized`` (with its scale and zero point) behind a
    DequantizeLinear writing ``<name>_dq``."""
    from onnx import helper, numpy_helper
    edit.inits += [numpy_helper.from_array(q, f"{name}_quantized"),
                   numpy_helper.from_array(scale, f"{name}_scale"),
                   numpy_helper.from_array(zp, f"{name}_zero_point")]
    edit.nodes.append((None, [helper.make_node("DequantizeLinear",
                                               [f"{name}_quantized", f"{name}_scale", f"{name}_zero_point"],
                                               [f"{name}_dq"], name=f"{name}_DQ",
                                               **({} if axis is None else {"axis": axis}))]))
    edit.rename[name] = f"{name}_dq"


def _add_weights(inits: dict, weights: dict, pow2: bool, edit: _Surgery) -> dict:
    """Quantize every weight; returns weight -> its scale per output channel."""
    w_scales = {}
    for w, (node, axis) in weights.items():
        arr = inits[w].astype(np.float32)
        q, scale, zp = quantize_weight(arr, axis, pow2)
        w_scales[w] = np.broadcast_to(scale, (_output_channels(arr, node, axis),))
        _add_dequantized(edit, w, q, scale.astype(np.float32), zp.astype(np.int8), axis)
    return w_scales


def _add_biases(inits: dict, biases: dict, act_params: dict, w_scales: dict, edit: _Surgery) -> None:
    """int32 biases at scale s_x * s_w (zero point 0), where both scales are known."""
    for b, (node, w, x) in biases.items():
        if x not in act_params or w not in w_scales:
            continue
        scale = (np.float32(act_params[x][0]) * w_scales[w]).astype(np.float32)
        q = np.clip(np.rint(inits[b].astype(np.float64) / scale), -2**31, 2**31 - 1).astype(np.int32)
        _add_dequantized(edit, b, q, scale, np.zeros(len(scale), np.int32), 0)


def _insert_nodes(g, groups: list) -> None:
    """Put each group of new nodes right after the producer of its source tensor (at the
    top for constants and graph inputs), keeping the graph topologically sorted."""
    nodes = list(g.node)
    del g.node[:]
    producer = {o: k for k, n in enumerate(nodes) for o in n.output}
    graph_inputs = [i.name for i in g.input]
    ordered = []
    for src, group in groups:
        if src is None or src in graph_inputs:
            ordered += group
    after: dict[int, list] = {}
    for src, group in groups:
        if src is not None and src not in graph_inputs:
            after.setdefault(producer[src], []).extend(group)
    for k, n in enumerate(nodes):
        ordered.append(n)
        ordered += after.get(k, [])
    g.node.extend(ordered)
