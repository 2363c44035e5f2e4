"""ONNX graph helpers the quantizer's modules share: node attributes, readers of a
value, extra outputs for calibration, and initializer clean-up after surgery."""
from __future__ import annotations

import copy


def node_attrs(node) -> dict:
    """A node's attributes as plain Python values."""
    from onnx import helper
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def consumers(graph) -> dict[str, list]:
    """value name -> the nodes reading it, in graph order."""
    out: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            if i:
                out.setdefault(i, []).append(n)
    return out


def with_outputs(model, names):
    """A copy of ``model`` that also outputs the values ``names`` (so a session can fetch
    intermediate activations)."""
    import onnx
    m = copy.deepcopy(model)
    have = {o.name for o in m.graph.output}
    for name in names:
        if name not in have:
            m.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return m


def drop_unused_initializers(graph) -> None:
    """Remove, in place, the initializers no node reads any more (after surgery replaced
    them with new ones)."""
    used = {i for n in graph.node for i in n.input}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
