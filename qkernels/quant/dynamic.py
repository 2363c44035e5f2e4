"""Dynamic quantization: int8 weights stored ahead of time, activations quantized at run
time -- no calibration data needed.

Each MatMul with a constant 2-D weight (and each Gemm without ``transA``) becomes the
pattern ONNX Runtime's ``quantize_dynamic`` emits, node for node, so that the runner's
rewrite that fuses that pattern (and ONNX Runtime itself) runs it::

    x -> DynamicQuantizeLinear -> (x_q uint8, x_scale, x_zp)         one per input tensor
    Mul(x_scale, W_scale)                                             -> scales
    MatMulInteger(x_q, W_q int8, x_zp, W_zp) -> Cast(to=FLOAT) -> Mul(., scales) -> y
    [Gemm: Add(y, beta * C)]

With ``per_row=True`` each layer is one node of qkernels' own domain instead,
``qkernels::DynamicQuantizeMatMul(x, W_q, W_scale, W_zp) per_row=1`` (the bias Add of a
Gemm after it): each row of the activations (one token of a transformer) quantized with
a scale and zero point of its own -- a few tokens with outliers no longer coarsen every
other token's steps. No ONNX operator quantizes per row at run time, so that model runs
on qkernels only (graph/backends/reference/fused.py defines the operator).

Weights are symmetric int8 (-127..127, zero point 0) per output column (``axis=1`` of the
(K, N) matrix) or per tensor. The per-tensor activation scale of DynamicQuantizeLinear
is computed on every call from the tensor's own range, so no range is ever clipped.
"""
from __future__ import annotations

import copy

import numpy as np

from .graphutil import drop_unused_initializers, node_attrs
from .weights import quantize_weight

__all__ = ["dynamic_layers", "dynamic_model"]

QK = "qkernels"      # the runner's own operators' domain


def dynamic_layers(model, nodes=None) -> list:
    """The nodes the dynamic rewrite applies to (graph order): MatMul whose second input
    is a 2-D float initializer and whose first is not constant, Gemm the same without
    ``transA``; ``nodes`` (names) narrows the choice."""
    import onnx
    inits = {t.name: t for t in model.graph.initializer}
    out = []
    for n in model.graph.node:
        if n.op_type not in ("MatMul", "Gemm") or (nodes is not None and n.name not in nodes):
            continue
        w = inits.get(n.input[1])
        if n.input[0] in inits or w is None or len(w.dims) != 2 or w.data_type != onnx.TensorProto.FLOAT:
            continue
        if n.op_type == "Gemm" and (node_attrs(n).get("transA", 0) or (len(n.input) > 2 and n.input[2]
                                                               and n.input[2] not in inits)):
            continue
        out.append(n)
    return out


def dynamic_model(model, nodes=None, per_channel: bool = True, per_row: bool = False):
    """``model`` (ModelProto) with the :func:`dynamic_layers` rewritten into the dynamic
    pattern (``per_row``: qkernels' per-row node); returns ``(model, {node name: weight
    initializer})``."""
    import onnx
    from onnx import helper, numpy_helper
    m = copy.deepcopy(model)
    g = m.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    chosen = {n.name for n in dynamic_layers(m, nodes)}
    new_inits, done_weights, quantized_inputs, rewritten = [], {}, set(), {}
    nodes_out = []
    for n in g.node:
        if n.name not in chosen:
            nodes_out.append(n)
            continue
        x, w, y = n.input[0], n.input[1], n.output[0]
        attrs = node_attrs(n) if n.op_type == "Gemm" else {}
        alpha, trans_b = float(attrs.get("alpha", 1.0)), bool(attrs.get("transB", 0))
        arr = inits[w].astype(np.float32)
        if trans_b:          # MatMulInteger takes (K, N): the transposed copy is stored
            arr = np.ascontiguousarray(arr.T)
        key = (w, trans_b)
        if key not in done_weights:
            q, scale, zp = quantize_weight(arr, 1 if per_channel else None)
            base = w if not key[1] else f"{w}_T"
            new_inits += [numpy_helper.from_array(q, f"{base}_quantized"),
                          numpy_helper.from_array(scale.astype(np.float32), f"{base}_scale"),
                          numpy_helper.from_array(zp.astype(np.int8), f"{base}_zero_point")]
            done_weights[key] = (base, scale.astype(np.float32))
        base, w_scale_arr = done_weights[key]
        w_scale = f"{base}_scale"
        if alpha != 1.0:     # folded into the weight scales (one more constant)
            w_scale = f"{n.name}_alpha_scale"
            new_inits.append(numpy_helper.from_array((w_scale_arr * np.float32(alpha)).astype(np.float32), w_scale))
        gemm_bias = n.op_type == "Gemm" and len(n.input) > 2 and n.input[2]
        prod = f"{n.name}_scaled" if gemm_bias else y
        if per_row:
            nodes_out.append(helper.make_node("DynamicQuantizeMatMul", [x, f"{base}_quantized", w_scale,
                                                                        f"{base}_zero_point"], [prod],
                                              name=f"{n.name}_quant", domain=QK, per_row=1))
        else:
            nodes_out += _ort_form(x, quantized_inputs, n.name, base, w_scale, prod)
        if gemm_bias:
            beta = float(attrs.get("beta", 1.0))
            c = n.input[2]
            if beta != 1.0:
                c = f"{n.name}_beta_bias"
                new_inits.append(numpy_helper.from_array((inits[n.input[2]] * np.float32(beta)).astype(np.float32), c))
            nodes_out.append(helper.make_node("Add", [prod, c], [y], name=f"{n.name}_bias_add"))
        rewritten[n.name] = w
    del g.node[:]
    g.node.extend(nodes_out)
    g.initializer.extend(new_inits)
    drop_unused_initializers(g)
    if per_row and rewritten and not any(o.domain == QK for o in m.opset_import):
        m.opset_import.append(helper.make_opsetid(QK, 1))
    onnx.checker.check_model(m)
    return m, rewritten


def _ort_form(x, quantized_inputs, name, base, w_scale, prod):
    """ONNX Runtime's quantize_dynamic nodes of one layer (the DynamicQuantizeLinear of
    ``x`` only where no earlier layer made it)."""
    import onnx
    from onnx import helper
    out = []
    xq, xs, xz = f"{x}_quantized", f"{x}_scale", f"{x}_zero_point"
    if x not in quantized_inputs:
        out.append(helper.make_node("DynamicQuantizeLinear", [x], [xq, xs, xz], name=f"{x}_QuantizeLinear"))
        quantized_inputs.add(x)
    scales = f"{name}_quant_scales_mul:0"
    mm, cast = f"{name}_output_quantized", f"{name}_output_quantized_cast_output"
    return out + [
        helper.make_node("Mul", [xs, w_scale], [scales], name=f"{name}_quant_scales_mul"),
        helper.make_node("MatMulInteger", [xq, f"{base}_quantized", xz, f"{base}_zero_point"], [mm],
                         name=f"{name}_quant"),
        helper.make_node("Cast", [mm], [cast], to=onnx.TensorProto.FLOAT, name=f"{name}_output_quantized_cast"),
        helper.make_node("Mul", [cast, scales], [prod], name=f"{name}_quant_output_scale_mul")]
