"""The ``fp16`` target: float32 weights and activations to float16, the model's interface
unchanged.

* every float32 tensor a float node reads or writes becomes float16 (initializers
  converted, ``Cast(to=FLOAT)`` turned into ``Cast(to=FLOAT16)``); integer tensors --
  ids, masks, ``Shape`` arithmetic -- are not touched;
* the graph's float inputs and outputs keep float32: one ``Cast`` at each boundary;
* operators in ``keep_fp32`` run in float32 between Casts (none by default: the runner's
  and ONNX Runtime's float16 LayerNormalization and Softmax accumulate in float32);
* a constant beyond float16's range (BERT's additive mask ``finfo(float32).min``) would
  become -inf, and ``0 * -inf = NaN`` on every attended position: it is clamped to half
  float16's largest value, large enough that ``exp`` of it is 0 and small enough that
  adding a score to it stays finite.
"""
from __future__ import annotations

import copy

import numpy as np

__all__ = ["to_fp16", "FP16_CLAMP"]

#: what a float32 constant beyond float16's range becomes (sign kept)
FP16_CLAMP = float(np.finfo(np.float16).max) / 2
#: inputs that stay float32 whatever their node's type (the ONNX operator's contract)
_FP32_INPUTS = {"Resize": (1, 2)}


def _half(arr: np.ndarray) -> np.ndarray:
    a = np.asarray(arr, np.float32)
    big = np.abs(a) > np.finfo(np.float16).max
    return np.where(big, np.sign(a) * FP16_CLAMP, a).astype(np.float16)


def to_fp16(model, keep_fp32=()):
    """``model`` (ModelProto) in float16 (the module docstring); ``keep_fp32``: operator
    types left in float32."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    F32, F16 = TensorProto.FLOAT, TensorProto.FLOAT16
    m = copy.deepcopy(model)
    g = m.graph
    inferred = onnx.shape_inference.infer_shapes(m).graph
    types = {vi.name: vi.type.tensor_type.elem_type for vi in
             list(inferred.input) + list(inferred.output) + list(inferred.value_info)}
    inits = {t.name: t for t in g.initializer}
    types.update({name: t.data_type for name, t in inits.items()})
    is_float = {name for name, ty in types.items() if ty == F32}
    keep = set(keep_fp32)

    where = {i.name: F32 for i in g.input if i.name in is_float}   # float tensor -> the type it is held in
    half_inits, casts, out_nodes = {}, {}, []

    def value(name: str, want: int) -> str:
        """``name`` as a tensor of type ``want`` (a converted initializer or a Cast)."""
        if name in inits:
            if want == F32:
                return name
            if name not in half_inits:
                half_inits[name] = numpy_helper.from_array(_half(numpy_helper.to_array(inits[name])), f"{name}_fp16")
            return half_inits[name].name
        if where.get(name, want) == want:
            return name
        if (name, want) not in casts:
            casts[name, want] = f"{name}_to_{'fp16' if want == F16 else 'fp32'}"
            out_nodes.append(helper.make_node("Cast", [name], [casts[name, want]], to=want,
                                              name=casts[name, want]))
        return casts[name, want]

    for n in g.node:
        makes_float = n.op_type == "Cast" and any(a.name == "to" and a.i == F32 for a in n.attribute)
        half = n.op_type not in keep and (makes_float or any(t in is_float for t in list(n.input) + list(n.output)))
        want = F16 if half else F32
        fixed = _FP32_INPUTS.get(n.op_type, ())
        n.input[:] = [value(i, F32 if k in fixed else want) if i in is_float else i for k, i in enumerate(n.input)]
        if half:
            for a in n.attribute:
                if a.type == onnx.AttributeProto.TENSOR and a.t.data_type == F32:
                    a.t.CopyFrom(numpy_helper.from_array(_half(numpy_helper.to_array(a.t)), a.t.name))
                if makes_float and a.name == "to":
                    a.i = F16
        for o in n.output:
            if o in is_float:
                where[o] = want
        out_nodes.append(n)
    # graph outputs keep their type: a last Cast writes each under its own name
    renamed = {}
    for o in g.output:
        if where.get(o.name) == F16:
            renamed[o.name] = f"{o.name}_fp16"
            out_nodes.append(helper.make_node("Cast", [renamed[o.name]], [o.name], to=F32, name=f"{o.name}_to_fp32"))
    for n in out_nodes:
        if not (n.op_type == "Cast" and n.output[0] in renamed):
            n.input[:] = [renamed.get(i, i) for i in n.input]
            n.output[:] = [renamed.get(o, o) for o in n.output]
    del g.node[:]
    g.node.extend(out_nodes)
    g.initializer.extend(half_inits.values())
    from .graphutil import drop_unused_initializers
    drop_unused_initializers(g)
    del g.value_info[:]        # the float ones are stale; shape inference finds them again
    onnx.checker.check_model(m)
    return m
