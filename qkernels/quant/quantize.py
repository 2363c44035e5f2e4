"""Post-training quantization of float ONNX models into QDQ form (QuantizeLinear /
DequantizeLinear around the float operators), which qkernels' graph runner turns into
integer kernel calls and ONNX Runtime runs as well.

    quantize_model(model, calibration_data, target="cpu", method="minmax")

Targets (docs/quant.md):

* ``cpu``: int8 asymmetric activations (``activation_dtype=np.uint8`` as an option),
  int8 symmetric weights per output channel, int32 bias at scale s_x * s_w: the TFLite
  int8 scheme and ONNX Runtime's default;
* ``dsp``: int8 symmetric activations and weights with power-of-two scales, so every
  requantization is a shift; the model is marked for fixed-point requantization
  (metadata ``qkernels.requant = fixedpoint``), which integer-only DSPs need;
* ``fp16``: weights and activations to float16 (no calibration).
"""
from __future__ import annotations

import copy
import difflib
import math
import os
import zipfile
import zlib
from typing import Iterable, Mapping

import numpy as np

from .observers import make_observer
from .params import quant_params, weight_params

TARGETS = ("cpu", "dsp", "fp16")
#: operators whose inputs and outputs get QDQ pairs (weights: per output channel)
DEFAULT_OP_TYPES = ("Conv", "MatMul", "Gemm")
#: single-consumer activations that move the output's QDQ pair after them (the runner
#: folds them into the integer output clamp)
_FUSABLE_ACTIVATIONS = ("Relu", "Clip")


class CalibrationError(ValueError):
    """The calibration data cannot be used: empty, wrong names or shapes, NaN/Inf."""


# ---------------------------------------------------------------- calibration data

def iter_calibration(data, input_names: list[str]) -> Iterable[dict]:
    """Feed dicts from: an iterable of dicts, a .npz/.npy file or a folder of them, a
    mapping name -> array (one batch per leading index block of 32), or an object with
    ONNX Runtime's CalibrationDataReader interface (``get_next()``)."""
    if hasattr(data, "get_next"):
        while True:
            item = data.get_next()
            if item is None:
                return
            yield dict(item)
        return
    if isinstance(data, (str, os.PathLike)):
        path = os.fspath(data)
        if os.path.isdir(path):
            files = sorted(f for f in os.listdir(path) if f.endswith((".npz", ".npy")))
            if not files:
                raise CalibrationError(f"calibration folder {path!r} holds no .npz or .npy files")
            for f in files:
                yield from iter_calibration(os.path.join(path, f), input_names)
            return
        yield from iter_calibration(_load_arrays(path, input_names), input_names)
        return
    if isinstance(data, Mapping):
        arrays = {k: np.asarray(v) for k, v in data.items()}
        for k, v in arrays.items():
            if v.ndim == 0:
                raise CalibrationError(f"calibration array {k!r} is a scalar; it needs a leading batch axis")
        n = min(len(v) for v in arrays.values()) if arrays else 0
        for i in range(0, n, 32):
            yield {k: v[i:i + 32] for k, v in arrays.items()}
        return
    for item in data:
        if not isinstance(item, Mapping):
            raise CalibrationError(f"calibration batches must be dicts of input name -> array, got "
                                   f"{type(item).__name__}")
        yield dict(item)


#: what numpy raises on a damaged .npy/.npz: bad header or pickled data (ValueError), short
#: file (EOFError), bad zip or CRC (BadZipFile), corrupt deflate stream (zlib.error)
_UNREADABLE = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


def _load_arrays(path: str, input_names: list[str]) -> dict:
    """The arrays of a .npy or .npz file, every .npz member read here: members are read
    lazily, so a damaged one would otherwise fail later with a raw zipfile or zlib error."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except _UNREADABLE as exc:
        raise CalibrationError(f"cannot read calibration data {path!r}: {exc}") from None
    if isinstance(loaded, np.ndarray):
        if len(input_names) != 1:
            raise CalibrationError(f"{path!r} holds one array but the model has inputs {input_names}")
        return {input_names[0]: loaded}
    arrays = {}
    with loaded:
        for name in loaded.files:
            try:
                value = loaded[name]
            except _UNREADABLE as exc:
                raise CalibrationError(f"cannot read member {name!r} of calibration data {path!r}: {exc}") from None
            if not isinstance(value, np.ndarray):   # numpy hands back the raw bytes of a non-.npy member
                raise CalibrationError(f"member {name!r} of calibration data {path!r} is not a .npy array")
            arrays[name] = value
    return arrays


# ---------------------------------------------------------------- model surgery

def _onnx():
    import onnx
    return onnx


def fold_batch_norm(model):
    """BatchNormalization after a Conv with constant weights (and no other reader of the
    Conv's output) folded into the Conv's weights and bias; returns a new model."""
    onnx = _onnx()
    from onnx import numpy_helper
    model = copy.deepcopy(model)
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    readers: dict[str, int] = {}
    for n in g.node:
        for i in n.input:
            readers[i] = readers.get(i, 0) + 1
    producer = {o: n for n in g.node for o in n.output}
    graph_outputs = {o.name for o in g.output}
    drop = []
    for bn in g.node:
        if bn.op_type != "BatchNormalization" or len(bn.output) != 1:
            continue
        conv = producer.get(bn.input[0])
        if conv is None or conv.op_type != "Conv" or readers.get(conv.output[0], 0) != 1 \
                or conv.output[0] in graph_outputs or conv.input[1] not in inits \
                or not all(i in inits for i in bn.input[1:5]):
            continue
        scale, b, mean, var = (numpy_helper.to_array(inits[i]).astype(np.float64) for i in bn.input[1:5])
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        k = scale / np.sqrt(var + eps)
        w = numpy_helper.to_array(inits[conv.input[1]])
        bias = numpy_helper.to_array(inits[conv.input[2]]).astype(np.float64) \
            if len(conv.input) > 2 and conv.input[2] in inits else np.zeros(w.shape[0])
        w_new = (w.astype(np.float64) * k.reshape(-1, *([1] * (w.ndim - 1)))).astype(w.dtype)
        b_new = ((bias - mean) * k + b).astype(w.dtype)
        wn, bn_name = conv.input[1] + "_bnfold", conv.output[0] + "_bnfold_bias"
        g.initializer.extend([numpy_helper.from_array(w_new, wn), numpy_helper.from_array(b_new, bn_name)])
        conv.input[1] = wn
        if len(conv.input) > 2:
            conv.input[2] = bn_name
        else:
            conv.input.append(bn_name)
        conv.output[0] = bn.output[0]
        drop.append(bn)
    for n in drop:
        g.node.remove(n)
    used = {i for n in g.node for i in n.input}
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    onnx.checker.check_model(model)
    return model


def _plan(model, op_types, exclude):
    """(activation tensors to quantize, weight inputs {tensor: (node, axis)}, bias inputs
    {tensor: (node, weight tensor, activation tensor)})."""
    g = model.graph
    inits = {t.name for t in g.initializer}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    acts, weights, biases = [], {}, {}
    for n in g.node:
        if n.op_type not in op_types or n.name in exclude:
            continue
        attrs = {a.name: a for a in n.attribute}
        x = n.input[0]
        if x not in inits:
            acts.append(x)
        w = n.input[1]
        if w in inits:
            if n.op_type == "Conv":
                axis = 0
            elif n.op_type == "Gemm":
                axis = 0 if attrs.get("transB") is not None and attrs["transB"].i else 1
            else:
                axis = 1
            weights[w] = (n, axis)
        elif w:
            acts.append(w)
        if len(n.input) > 2 and n.input[2] in inits and n.op_type in ("Conv", "Gemm") and w in inits:
            biases[n.input[2]] = (n, w, x)
        y = n.output[0]
        after = consumers.get(y, [])
        if len(after) == 1 and after[0].op_type in _FUSABLE_ACTIVATIONS:
            y = after[0].output[0]
        acts.append(y)
    return list(dict.fromkeys(acts)), weights, biases


def _with_outputs(model, names):
    onnx = _onnx()
    m = copy.deepcopy(model)
    have = {o.name for o in m.graph.output}
    for name in names:
        if name not in have:
            m.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return m


def calibrate(model, calibration_data, tensors: list[str], method: str = "minmax", progress: bool = True,
              **observer_options) -> dict:
    """name -> observer fed with every calibration batch (the float model run on
    qkernels' graph runner)."""
    from ..graph import RunError, Session
    session = Session(_with_outputs(model, tensors).SerializeToString())
    inputs = [i.name for i in session.get_inputs()]
    observers = {t: make_observer(method, **observer_options) for t in tensors}
    batches = iter_calibration(calibration_data, inputs)
    if progress:
        from tqdm import tqdm
        batches = tqdm(batches, desc="calibrating", unit="batch")
    seen = 0
    for feeds in batches:
        try:
            values = session.run(tensors, feeds)
        except RunError as exc:
            raise CalibrationError(f"calibration batch {seen}: {exc}") from None
        for t, v in zip(tensors, values):
            if not np.all(np.isfinite(v)):
                raise CalibrationError(f"calibration batch {seen}: tensor {t!r} holds NaN or Inf")
            observers[t].update(v)
        seen += 1
    if not seen:
        raise CalibrationError("the calibration data is empty")
    return observers


def quantize_weight(arr: np.ndarray, axis: int | None, power_of_two: bool = False):
    """(int8 values, float32 scales, int8 zero points) of a weight: symmetric int8
    (-127..127), per slice along ``axis`` (None: per tensor) -- what the QDQ model stores."""
    arr = np.asarray(arr, np.float32)
    scale, zp = weight_params(arr, axis=axis, symmetric=True, dtype=np.int8, power_of_two=power_of_two)
    scale, zp = np.asarray(scale, np.float32), np.asarray(zp)
    shape = [1] * arr.ndim
    if axis is not None:
        shape[axis] = -1
    q = np.clip(np.rint(arr / scale.reshape(shape)), -127, 127).astype(np.int8)
    return q, scale, zp


def dequantize_weight(q: np.ndarray, scale: np.ndarray, axis: int | None) -> np.ndarray:
    """The float32 weight a DequantizeLinear gives back from :func:`quantize_weight`."""
    shape = [1] * q.ndim
    if axis is not None:
        shape[axis] = -1
    return (q.astype(np.float32) * np.asarray(scale, np.float32).reshape(shape)).astype(np.float32)


def _qdq_model(model, act_params: dict, weights: dict, biases: dict, target: str, act_dtype):
    """The QDQ model: Q/DQ after each calibrated activation, weights and biases stored
    quantized behind a DequantizeLinear."""
    onnx = _onnx()
    from onnx import helper, numpy_helper
    m = copy.deepcopy(model)
    g = m.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    new_inits, new_nodes = [], []
    rename: dict[str, str] = {}
    pow2 = target == "dsp"
    graph_outputs = {o.name for o in g.output}
    for name, (scale, zp) in act_params.items():
        s, z = f"{name}_scale", f"{name}_zero_point"
        # a graph output keeps its name: the producer writes <name>_float, the DQ writes <name>
        src, dq = (f"{name}_float", name) if name in graph_outputs else (name, f"{name}_dq")
        new_inits += [numpy_helper.from_array(np.array(scale, np.float32), s),
                      numpy_helper.from_array(np.array(zp, act_dtype), z)]
        new_nodes.append((src, [helper.make_node("QuantizeLinear", [src, s, z], [f"{name}_q"], name=f"{name}_Q"),
                                helper.make_node("DequantizeLinear", [f"{name}_q", s, z], [dq], name=f"{name}_DQ")]))
        if src != name:
            for n in g.node:
                n.output[:] = [src if o == name else o for o in n.output]
        rename[name] = dq
    w_scales = {}
    for w, (node, axis) in weights.items():
        arr = inits[w].astype(np.float32)
        q, scale, zp = quantize_weight(arr, axis, pow2)
        if axis is not None:
            out_channels = arr.shape[axis]
        elif node.op_type == "Gemm":       # per tensor: one scale for each output column all the same
            trans_b = any(a.name == "transB" and a.i for a in node.attribute)
            out_channels = arr.shape[0 if trans_b else 1]
        else:
            out_channels = arr.shape[0 if node.op_type == "Conv" else 1]
        w_scales[w] = np.broadcast_to(scale, (out_channels,))
        new_inits += [numpy_helper.from_array(q, f"{w}_quantized"),
                      numpy_helper.from_array(scale.astype(np.float32), f"{w}_scale"),
                      numpy_helper.from_array(zp.astype(np.int8), f"{w}_zero_point")]
        new_nodes.append((None, [helper.make_node("DequantizeLinear", [f"{w}_quantized", f"{w}_scale", f"{w}_zero_point"],
                                                  [f"{w}_dq"], name=f"{w}_DQ",
                                                  **({} if axis is None else {"axis": axis}))]))
        rename[w] = f"{w}_dq"
    for b, (node, w, x) in biases.items():
        if x not in act_params or w not in w_scales:
            continue
        sx = np.float32(act_params[x][0])
        scale = (sx * w_scales[w]).astype(np.float32)
        q = np.clip(np.rint(inits[b].astype(np.float64) / scale), -2**31, 2**31 - 1).astype(np.int32)
        new_inits += [numpy_helper.from_array(q, f"{b}_quantized"), numpy_helper.from_array(scale, f"{b}_scale"),
                      numpy_helper.from_array(np.zeros(len(scale), np.int32), f"{b}_zero_point")]
        new_nodes.append((None, [helper.make_node("DequantizeLinear", [f"{b}_quantized", f"{b}_scale", f"{b}_zero_point"],
                                                  [f"{b}_dq"], name=f"{b}_DQ", axis=0)]))
        rename[b] = f"{b}_dq"
    # readers take the dequantized values (the Q/DQ nodes are not in g.node yet)
    for n in g.node:
        n.input[:] = [rename.get(i, i) for i in n.input]
    nodes = list(g.node)
    del g.node[:]
    producer = {o: k for k, n in enumerate(nodes) for o in n.output}
    graph_inputs = [i.name for i in g.input]
    ordered = []
    head = [pair for name, pair in new_nodes if name is None or name in graph_inputs]
    for pair in head:
        ordered += pair
    after: dict[int, list] = {}
    for name, pair in new_nodes:
        if name is not None and name not in graph_inputs:
            after.setdefault(producer[name], []).extend(pair)
    for k, n in enumerate(nodes):
        ordered.append(n)
        ordered += after.get(k, [])
    g.node.extend(ordered)
    keep_used = {i for n in g.node for i in n.input}
    kept = [t for t in g.initializer if t.name in keep_used]
    del g.initializer[:]
    g.initializer.extend(kept + new_inits)
    if target == "dsp":
        m.metadata_props.add(key="qkernels.requant", value="fixedpoint")
    onnx.checker.check_model(m)
    return m


def to_fp16(model):
    """Every float32 initializer, input, output and Constant to float16."""
    onnx = _onnx()
    from onnx import numpy_helper
    m = copy.deepcopy(model)
    g = m.graph
    for k, t in enumerate(list(g.initializer)):
        if t.data_type == onnx.TensorProto.FLOAT:
            g.initializer[k].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), t.name))
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
            vi.type.tensor_type.elem_type = onnx.TensorProto.FLOAT16
    for n in g.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.TENSOR and a.t.data_type == onnx.TensorProto.FLOAT:
                a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float16), a.t.name))
    onnx.checker.check_model(m)
    return m


def _name_nodes(model):
    """Give every unnamed node a unique name (``<op_type>_<index>``), in place, so that
    reports, ``exclude_nodes`` and the accuracy budget can name each layer."""
    taken = {n.name for n in model.graph.node if n.name}
    for k, n in enumerate(model.graph.node):
        if not n.name:
            name, j = f"{n.op_type}_{k}", 0
            while name in taken:
                j += 1
                name = f"{n.op_type}_{k}_{j}"
            n.name = name
            taken.add(name)
    return model


def _check_node_names(model, names) -> None:
    """Every name in ``exclude_nodes`` must name a node: a typo would silently quantize the
    layer the user meant to keep in float. The error lists the nearest names."""
    known = [n.name for n in model.graph.node]
    unknown = sorted(set(names) - set(known))
    if unknown:
        near = difflib.get_close_matches(unknown[0], known, n=5, cutoff=0.5)
        hint = f"did you mean {', '.join(map(repr, near))}?" if near else \
            f"the nodes are {', '.join(map(repr, known[:10]))}{', ...' if len(known) > 10 else ''}"
        raise ValueError(f"exclude_nodes: no node named {unknown[0]!r}; {hint}")


def _layers(model, op_types, exclude):
    """The quantized nodes in graph order as (node, activation input, weight or None,
    quantized output tensor) -- the output after a fused Relu/Clip, as in :func:`_plan`."""
    inits = {t.name for t in model.graph.initializer}
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    out = []
    for n in model.graph.node:
        if n.op_type not in op_types or n.name in exclude:
            continue
        y = n.output[0]
        after = consumers.get(y, [])
        if len(after) == 1 and after[0].op_type in _FUSABLE_ACTIVATIONS:
            y = after[0].output[0]
        w = n.input[1] if len(n.input) > 1 and n.input[1] in inits else None
        out.append((n, n.input[0], w, y))
    return out


def _replayable(data):
    """Calibration data that can be read more than once: a reader or an iterator is read
    into a list of batches (the passes and the report read the data again)."""
    if isinstance(data, (str, os.PathLike, Mapping, list, tuple)):
        return data
    if hasattr(data, "get_next"):
        return list(iter_calibration(data, []))
    try:
        one_shot = iter(data) is data
    except TypeError:
        return data
    return list(iter_calibration(data, [])) if one_shot else data


def quantize_model(model, calibration_data=None, target: str = "cpu", method: str = "minmax", *,
                   per_channel: bool = True, reduce_range: bool = False, activation_dtype=np.int8,
                   op_types: Iterable[str] = DEFAULT_OP_TYPES, exclude_nodes: Iterable[str] = (),
                   progress: bool = True, return_report: bool = False, bias_correction: bool = False,
                   equalize: bool = False, evaluate=None, max_drop: float = 0.01, **observer_options):
    """Quantize a float ONNX model (path, bytes or ModelProto) post-training.

    Returns an ``onnx.ModelProto`` in QDQ form (save it with ``onnx.save``), or
    ``(model, report)`` with ``return_report=True``: a dict (:mod:`qkernels.quant.report`)
    with, per quantized tensor, scale, zero point, range, clipping fraction, SQNR and
    cosine against float (measured by running the float and the quantized model on the
    calibration data), per weight and per layer, per model output, and what the passes
    did. ``calibration_data``: an iterable of feed dicts, a ``.npz``/``.npy`` file or
    folder, a mapping name -> array, or an object with ONNX Runtime's
    ``CalibrationDataReader`` interface (a reader or an iterator is read into memory
    when the data is needed more than once: bias correction, the report).

    Passes (:mod:`qkernels.quant.passes`):

    * ``equalize=True``: cross-layer equalisation of ``Conv -> [Relu] -> Conv`` pairs on
      the float model (after batch-norm folding, before calibration);
    * ``bias_correction=True``: each quantized layer's bias corrected by the mean output
      error its weight quantization causes on the calibration data;
    * ``evaluate=fn`` (``fn(model_proto) -> score``, higher is better) with ``max_drop``:
      while the quantized model scores below ``fn(float model) - max_drop``, the most
      sensitive remaining layer (largest score drop when it alone is quantized) is kept
      in float and the model rebuilt from the same calibration (no recalibration).
    """
    from ..graph.model import load_model
    from . import passes
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    if evaluate is not None and not callable(evaluate):
        raise TypeError(f"evaluate must be a function model -> score, got {type(evaluate).__name__}")
    max_drop = float(max_drop)
    if not max_drop >= 0.0:
        raise ValueError(f"max_drop must be >= 0, got {max_drop!r}")
    original = load_model(model)
    proto = _name_nodes(fold_batch_norm(original))
    user_exclude = set(exclude_nodes)
    _check_node_names(proto, user_exclude)
    if target == "fp16":
        m = to_fp16(proto)
        return (m, {"target": "fp16", "tensors": [], "weights": [], "layers": [], "outputs": [],
                    "float_nodes": []}) if return_report else m
    if calibration_data is None:
        raise CalibrationError(f"target {target!r} needs calibration data")
    act_dtype = np.dtype(np.int8 if target == "dsp" else activation_dtype)
    if act_dtype not in (np.dtype(np.int8), np.dtype(np.uint8)):
        raise ValueError(f"activation_dtype must be int8 or uint8, got {act_dtype}")
    op_types = tuple(op_types)
    symmetric = pow2 = target == "dsp"
    eq_info = None
    if equalize:
        proto, eq_info = passes.equalize(proto)
    if bias_correction or return_report:
        calibration_data = _replayable(calibration_data)
    acts, _, _ = _plan(proto, op_types, user_exclude)
    observers = calibrate(proto, calibration_data, acts, method, progress, **observer_options)
    act_params = {}
    for name in acts:
        lo, hi = observers[name].range(symmetric=symmetric)
        scale, zp = quant_params(lo, hi, act_dtype, symmetric=symmetric, reduce_range=reduce_range,
                                 power_of_two=pow2)
        act_params[name] = (scale, zp, lo, hi)
    layers_all = _layers(proto, op_types, user_exclude)
    means = passes.input_means(proto, calibration_data, [n.name for n, *_ in layers_all], progress) \
        if bias_correction else None

    def plan(src, exclude):
        a, w, b = _plan(src, op_types, exclude)
        if not per_channel:
            w = {k: (n, None) for k, (n, _) in w.items()}
        return a, w, b

    def build(exclude, keep=None):
        src, bc = proto, None
        a, w, b = plan(src, exclude)
        if bias_correction:
            src, bc = passes.correct_biases(proto, w, means, pow2)
            a, w, b = plan(src, exclude)
        q = _qdq_model(src, {k: act_params[k][:2] for k in a}, w, b, target, act_dtype)
        if keep is not None:
            keep.update(acts=a, weights=w, bias_correction=bc, exclude=set(exclude))
        return q

    final: dict = {}
    budget = None
    if evaluate is None:
        m = build(user_exclude, final)
    else:
        float_score = float(evaluate(original))
        # the search's last build is the model it returns: ``final`` describes that one
        m, budget = passes.search_accuracy_budget(lambda ex: build(ex, final), evaluate,
                                                  [n.name for n, *_ in layers_all], float_score, max_drop,
                                                  always_float=user_exclude)
    if not return_report:
        return m
    from .report import measure, weight_stats
    used = {k: act_params[k] for k in final["acts"]}
    stats, outputs, batches = measure(proto, m, calibration_data, used, act_dtype, progress)
    producer = {o: n.name for n in proto.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in proto.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n.name)
    init_arrays = {t.name: t for t in proto.graph.initializer}
    from onnx import numpy_helper
    tensors = []
    for name in final["acts"]:
        scale, zp, lo, hi = act_params[name]
        tensors.append({"tensor": name, "scale": float(scale), "zero_point": int(zp), "range": [float(lo), float(hi)],
                        "min": float(observers[name].min), "max": float(observers[name].max),
                        "producer": producer.get(name, ""), "consumers": consumers.get(name, []), **stats[name]})
    weights = []
    for w, (node, axis) in final["weights"].items():
        arr = numpy_helper.to_array(init_arrays[w]).astype(np.float32)
        weights.append({"tensor": w, "node": node.name, **weight_stats(arr, axis, pow2)})
    w_by_node = {x["node"]: x for x in weights}
    layers = []
    for node, x, w, y in _layers(proto, op_types, final["exclude"]):
        ins, outs = stats.get(x, {}).get("sqnr_db"), stats.get(y, {}).get("sqnr_db")
        drop = None if ins is None or outs is None or (math.isinf(ins) and ins == outs) else ins - outs
        layers.append({"node": node.name, "op_type": node.op_type, "input": x, "output": y, "weight": w,
                       "input_sqnr_db": ins, "output_sqnr_db": outs, "sqnr_drop_db": drop,
                       "weight_sqnr_db": w_by_node.get(node.name, {}).get("sqnr_db")})
    float_nodes = [n.name for n in proto.graph.node if n.op_type in op_types and n.name in final["exclude"]]
    report = {"target": target, "method": method, "batches": batches,
              "settings": {"per_channel": bool(per_channel), "reduce_range": bool(reduce_range),
                           "activation_dtype": act_dtype.name, "bias_correction": bool(bias_correction),
                           "equalize": bool(equalize), "op_types": list(op_types)},
              "tensors": tensors, "weights": weights, "layers": layers, "outputs": outputs,
              "float_nodes": float_nodes, "excluded_nodes": sorted(user_exclude),
              "accuracy_budget": budget, "equalization": eq_info, "bias_correction": final["bias_correction"]}
    return m, report
