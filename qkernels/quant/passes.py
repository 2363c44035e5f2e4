"""Quantization passes around calibration (Nagel et al. 2019, "Data-Free Quantization
Through Weight Equalization and Bias Correction", and a layer-wise accuracy budget).

* :func:`fold_batch_norm` -- BatchNormalization after a Conv folded into its weights
  and bias (always run first).
* :func:`equalize` -- cross-layer equalisation, on the float model before calibration:
  for ``Conv -> [Relu] -> Conv`` pairs with constant weights, output channel ``i`` of the
  first conv is divided by ``s_i`` and input channel ``i`` of the second multiplied by
  it, ``s_i = sqrt(r1_i * r2_i) / r2_i`` (``r``: per-channel ``max |w|``), which leaves
  both channels with the range ``sqrt(r1_i * r2_i)``. The float function is unchanged.
* :func:`input_means` and :func:`correct_biases` -- bias correction, after calibration:
  each quantized Conv/Gemm/MatMul's bias is corrected by the mean error that weight
  quantization adds to its output, ``E[W_q x] - E[W x] = (W_q - W) E[x]``, with ``E[x]``
  measured on the calibration data (Nagel's *empirical* form, not the analytic one that
  derives ``E[x]`` from batch-norm statistics).
* :func:`search_accuracy_budget` -- keep the most sensitive layers in float until an
  evaluation score is within a budget of the float model's.

:func:`qkernels.quant.quantize_model` runs them with ``equalize=True``,
``bias_correction=True`` and ``evaluate=fn, max_drop=...``.
"""
from __future__ import annotations

import copy
import math
import warnings
from typing import Callable, Iterable, NamedTuple

import numpy as np

from .graphutil import consumers, drop_unused_initializers, node_attrs, with_outputs
from .shards import ShardJob, run_shards
from .weights import channel_ranges, dequantize_weight, quantize_weight, range_spread

__all__ = ["fold_batch_norm", "equalize", "input_means", "correct_biases", "search_accuracy_budget",
           "channel_ranges", "range_spread"]


# ---------------------------------------------------------------- batch-norm folding

def fold_batch_norm(model):
    """BatchNormalization after a Conv with constant weights (and no other reader of the
    Conv's output) folded into the Conv's weights and bias; returns a new model."""
    import onnx
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
    drop_unused_initializers(g)
    onnx.checker.check_model(model)
    return model


# ---------------------------------------------------------------- cross-layer equalisation

def _input_channel_ranges(w2: np.ndarray, group: int) -> np.ndarray:
    """Per *input* channel of a (grouped) Conv weight ``(O, C/g, k...)``: ``max |w|`` over
    every weight that reads that channel."""
    o, cpg = w2.shape[0], w2.shape[1]
    opg = o // group
    a = np.abs(np.asarray(w2, np.float64)).reshape(group, opg, cpg, -1)
    return a.max(axis=(1, 3)).reshape(group * cpg)       # channel g*cpg + j


def _scale_input_channels(w2: np.ndarray, group: int, s: np.ndarray) -> np.ndarray:
    o, cpg = w2.shape[0], w2.shape[1]
    opg = o // group
    f = s.reshape(group, 1, cpg)                          # channel g*cpg + j
    shaped = w2.reshape(group, opg, cpg, -1) * f[..., None]
    return shaped.reshape(w2.shape)


def _equalization_pairs(model):
    """(pairs [(conv1, activation node or None, conv2)], skipped [(names, reason)])."""
    g = model.graph
    inits = {t.name for t in g.initializer}
    readers = consumers(g)
    outputs = {o.name for o in g.output}
    pairs, skipped = [], []

    def only_reader(value):
        users = readers.get(value, [])
        return users[0] if len(users) == 1 and value not in outputs else None

    for c1 in g.node:
        if c1.op_type != "Conv" or len(c1.input) < 2 or c1.input[1] not in inits:
            continue
        nxt = only_reader(c1.output[0])
        if nxt is None:
            continue
        act = None
        if nxt.op_type == "Relu":
            act, nxt = nxt, only_reader(nxt.output[0])
            if nxt is None:
                continue
        elif nxt.op_type == "Clip":
            # Clip(0, 6) (ReLU6) does not commute with scaling: min(x / s, 6) != min(x, 6) / s
            # unless s = 1, so equalising through it would change the float function.
            after = only_reader(nxt.output[0])
            if after is not None and after.op_type == "Conv":
                skipped.append(((c1.name, nxt.name, after.name),
                                "Clip does not commute with per-channel scaling (only Relu does)"))
            continue
        elif nxt.op_type != "Conv":
            continue
        if nxt.op_type != "Conv" or nxt.input[0] != (act.output[0] if act else c1.output[0]):
            continue
        if len(nxt.input) < 2 or nxt.input[1] not in inits:
            skipped.append(((c1.name, nxt.name), "the second Conv's weights are not constant"))
            continue
        if len(c1.input) > 2 and c1.input[2] and c1.input[2] not in inits:
            skipped.append(((c1.name, nxt.name), "the first Conv's bias is not constant"))
            continue
        pairs.append((c1, act, nxt))
    return pairs, skipped


def equalize(model, iterations: int = 20, tol: float = 1e-4):
    """Cross-layer equalisation of ``Conv -> [Relu] -> Conv`` pairs (Nagel et al. 2019, §4.1).

    For each pair whose convolutions have constant weights, where the first conv's
    output (and the Relu's) has no other reader and is no graph output: output channel
    ``i`` of the first conv (weights and bias) is divided by
    ``s_i = sqrt(r1_i * r2_i) / r2_i`` and every weight of the second conv reading input
    channel ``i`` multiplied by it, ``r1_i`` the range (``max |w|``) of the first conv's
    output channel ``i`` and ``r2_i`` that of the second's input channel ``i`` (grouped and
    depthwise convolutions included). Relu commutes with positive scaling, so the float
    function is unchanged (to float rounding). Clip (ReLU6) does not and is skipped, with
    the reason in the result. Chains (conv1 -> conv2 -> conv3) are swept pair by pair
    until every ``s`` is within ``tol`` of 1 or ``iterations`` sweeps are done.

    Returns ``(model, info)``: a new ModelProto and ``{"pairs": [...], "skipped": [...],
    "sweeps": n}``, each pair with its nodes and the first conv's per-channel range
    spread (:func:`range_spread`) before and after.
    """
    from onnx import numpy_helper
    model = copy.deepcopy(model)
    g = model.graph
    pairs, skipped = _equalization_pairs(model)
    info = {"pairs": [], "skipped": [{"nodes": list(n), "reason": r} for n, r in skipped], "sweeps": 0}
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    pairs = _channel_matched(pairs, inits, info["skipped"])
    if not pairs:
        return model, info
    w, b = _working_copies(pairs, inits)
    before = {c.name: range_spread(w[c.name]) for c1, _, c2 in pairs for c in (c1, c2)}
    info["sweeps"] = _sweep(pairs, w, b, iterations, tol)
    for c1, act, c2 in pairs:
        info["pairs"].append({"nodes": _pair_names(c1, act, c2),
                              "spread_before": before[c1.name], "spread_after": range_spread(w[c1.name]),
                              "second_spread_before": before[c2.name],
                              "second_spread_after": range_spread(w[c2.name])})
    _write_back(g, w, b, inits)
    return model, info


def _pair_names(c1, act, c2) -> list[str]:
    return [c1.name] + ([act.name] if act else []) + [c2.name]


def _channel_matched(pairs, inits: dict, skipped: list) -> list:
    """The pairs whose first conv's output channels are the second's input channels (the
    others are added to ``skipped``)."""
    kept = []
    for c1, act, c2 in pairs:
        w1, w2 = inits[c1.input[1]], inits[c2.input[1]]
        if w2.ndim < 3 or w1.ndim != w2.ndim or w2.shape[1] * int(node_attrs(c2).get("group", 1)) != w1.shape[0]:
            skipped.append({"nodes": _pair_names(c1, act, c2),
                            "reason": "the first Conv's output channels are not the second's input channels"})
        else:
            kept.append((c1, act, c2))
    return kept


def _working_copies(pairs, inits: dict) -> tuple[dict, dict]:
    """float64 copies of each paired conv's weight and bias (None: no bias), by node name."""
    w, b = {}, {}
    for c1, _, c2 in pairs:
        for c in (c1, c2):
            if c.name not in w:
                w[c.name] = inits[c.input[1]].astype(np.float64)
                b[c.name] = inits[c.input[2]].astype(np.float64) if len(c.input) > 2 and c.input[2] else None
    return w, b


def _sweep(pairs, w: dict, b: dict, iterations: int, tol: float) -> int:
    """Rescale every pair, in place, until each scale is within ``tol`` of 1 (in log) or
    ``iterations`` sweeps are done; returns the number of sweeps."""
    sweeps = 0
    for sweeps in range(1, iterations + 1):
        worst = 0.0
        for c1, _, c2 in pairs:
            group = int(node_attrs(c2).get("group", 1))
            w1, w2 = w[c1.name], w[c2.name]
            r1 = channel_ranges(w1)
            r2 = _input_channel_ranges(w2, group)
            live = (r1 > 0) & (r2 > 0)
            s = np.ones_like(r1)
            s[live] = np.sqrt(r1[live] * r2[live]) / r2[live]
            w[c1.name] = w1 / s.reshape(-1, *([1] * (w1.ndim - 1)))
            if b[c1.name] is not None:
                b[c1.name] = b[c1.name] / s
            w[c2.name] = _scale_input_channels(w2, group, s)
            worst = max(worst, float(np.abs(np.log(s)).max()))
        if worst < tol:
            break
    return sweeps


def _write_back(g, w: dict, b: dict, inits: dict) -> None:
    """Every touched weight and bias stored under a new name (an initializer may be
    shared with a node that was not equalised)."""
    from onnx import numpy_helper
    new_inits = []
    for node in g.node:
        if node.name not in w:
            continue
        name = f"{node.input[1]}_eq_{node.name}"
        new_inits.append(numpy_helper.from_array(w[node.name].astype(inits[node.input[1]].dtype), name))
        node.input[1] = name
        if b[node.name] is not None:
            bname = f"{node.input[2]}_eq_{node.name}"
            new_inits.append(numpy_helper.from_array(b[node.name].astype(inits[node.input[2]].dtype), bname))
            node.input[2] = bname
    g.initializer.extend(new_inits)
    drop_unused_initializers(g)


# ---------------------------------------------------------------- bias correction

class _Mean:
    """Running mean of one node's input: over the batch for Conv (per-sample shape kept,
    so the conv of the mean is exact with padding), over all rows for Gemm/MatMul."""

    def __init__(self):
        self.sum = None
        self.count = 0
        self.channel_sum = None       # per channel, for Conv inputs whose spatial size varies
        self.channel_count = 0

    def add(self, x: np.ndarray, rows: bool):
        x = np.asarray(x, np.float64)
        if rows:
            x2 = x.reshape(-1, x.shape[-1])
            s, n = x2.sum(axis=0), x2.shape[0]
        else:
            s, n = x.sum(axis=0), x.shape[0]
            c = x.reshape(x.shape[0], x.shape[1], -1)
            cs = c.sum(axis=(0, 2))
            self.channel_sum = cs if self.channel_sum is None else self.channel_sum + cs
            self.channel_count += c.shape[0] * c.shape[2]
        if self.sum is not None and self.sum.shape != s.shape:
            self.sum = False                                  # shapes vary: per-channel only
        elif self.sum is not False:
            self.sum = s if self.sum is None else self.sum + s
        self.count += n

    def merge(self, other: "_Mean") -> "_Mean":
        """Add ``other``'s sums (the next shard's) to ours."""
        if other.count == 0:
            return self
        if self.count == 0:
            vars(self).update(vars(other))      # (sums are never added to in place)
            return self
        if other.channel_sum is not None:
            self.channel_sum = self.channel_sum + other.channel_sum
            self.channel_count += other.channel_count
        if self.sum is False or other.sum is False or self.sum.shape != other.sum.shape:
            self.sum = False                                  # shapes vary: per-channel only
        else:
            self.sum = self.sum + other.sum
        self.count += other.count
        return self

    def value(self):
        if self.sum is None or self.sum is False:
            return None
        return self.sum / self.count

    def channel_value(self):
        return None if self.channel_sum is None else self.channel_sum / self.channel_count


def input_means(model, calibration_data, nodes: Iterable[str], progress: bool = False, client=None) -> dict:
    """Node name -> running mean of its activation input (input 0) over the calibration
    data, the float model run on qkernels' runner: over the batch for Conv (so the
    mean keeps its spatial shape), over every row for Gemm and MatMul. Sharded data
    (:mod:`qkernels.quant.shards`) is summed per shard, the shards' sums added in shard
    order (on the workers of ``client`` when given: the same means either way)."""
    wanted = set(nodes)
    sel = [(n.name, n.op_type, n.input[0], bool(n.op_type == "Gemm" and node_attrs(n).get("transA", 0)))
           for n in model.graph.node if n.name in wanted]
    tensors = list(dict.fromkeys(x for _, _, x, _ in sel))
    return run_shards(_Means(sel), [with_outputs(model, tensors)], calibration_data, client=client,
                      progress=progress, desc="bias correction")


class _Means(ShardJob):
    """input_means as a shard job: a shard gives node -> _Mean of its batches."""

    def __init__(self, sel):
        self.sel = sel        # (node, op type, input tensor, transposed) per node

    def run(self, sessions, batches, index):
        tensors = list(dict.fromkeys(x for _, _, x, _ in self.sel))
        means = {name: _Mean() for name, *_ in self.sel}
        for feeds in batches:
            values = dict(zip(tensors, sessions[0].run(tensors, feeds)))
            for name, op, x, trans in self.sel:
                v = values[x]
                means[name].add(v.T if trans else v, rows=op != "Conv")
        return means

    def merge(self, total, partial):
        for name, mean in partial.items():
            total[name].merge(mean)
        return total


def _conv_mean_output(node, x_mean: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per output channel, the mean over positions of Conv(x_mean, w) without bias (numpy
    reference backend: exact for padding, strides, dilations, groups)."""
    from onnx import TensorProto, helper, numpy_helper

    from ..graph import Session
    attrs = {k: v for k, v in node_attrs(node).items()}
    n = helper.make_node("Conv", ["x", "w"], ["y"], **attrs)
    graph = helper.make_graph([n], "bc", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_mean.shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w.astype(np.float32), "w")])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    y = Session(m.SerializeToString(), backends=["reference"]).run(None, {"x": x_mean.astype(np.float32)})[0]
    return y.reshape(y.shape[0], y.shape[1], -1).mean(axis=(0, 2)).astype(np.float64)


def correct_biases(model, weights: dict, means: dict, power_of_two: bool = False):
    """The float model with each quantized layer's bias corrected for the mean output error
    of its weight quantization (Nagel et al. 2019, §4.2, empirical form).

    ``weights``: weight tensor -> (node, axis) as :func:`qkernels.quant.plan.plan_tensors`
    gives it (axis None: per tensor); ``means``: :func:`input_means`. For every node, with
    ``eps = dequantize(quantize(W)) - W`` (exactly the model's weight grid):

    - Conv: ``delta_o = mean over positions of Conv(E[x], eps)_o`` with ``E[x]`` the
      per-sample mean input (exact with zero padding, which a per-channel mean is not;
      when the input's spatial size varies between batches, per-channel means times
      ``eps`` summed over the kernel are used instead); a Conv without bias gets one;
    - Gemm: ``delta = alpha * E[x] @ eps'``, subtracted from ``C`` divided by ``beta``
      (``C`` of N values or absent);
    - MatMul: ``delta = E[x] @ eps`` subtracted from the constant operand of an ``Add``
      that alone reads the MatMul's output (a linear layer's bias); a MatMul without such
      an Add has no bias to correct and is listed as skipped.

    Returns ``(model, info)``: a new ModelProto (new bias initializers named
    ``<bias>_bc``) and a list of ``{"node", "bias", "mean_shift_max", "skipped"?}``.
    """
    from onnx import numpy_helper
    model = copy.deepcopy(model)
    g = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    readers = consumers(g)
    outputs = {o.name for o in g.output}
    info, new_inits = [], []
    for wname, (node, axis) in weights.items():
        # the copy's node of the same name
        node = next(n for n in g.node if n.name == node.name and list(n.output) == list(node.output))
        m = means.get(node.name)
        entry = {"node": node.name, "weight": wname}
        info.append(entry)
        if m is None or m.count == 0:
            entry["skipped"] = "no input statistics"
            continue
        eps = _weight_error(inits[wname], axis, power_of_two)
        if node.op_type == "Conv":
            fix = _corrected_conv_bias(node, eps, m, inits)
        elif node.op_type == "Gemm":
            fix = _corrected_gemm_bias(node, eps, m, inits)
        else:
            fix = _corrected_matmul_bias(node, eps, m, inits, readers, outputs)
        if isinstance(fix, str):
            entry["skipped"] = fix
            continue
        new_inits.append(numpy_helper.from_array(np.ascontiguousarray(fix.values), fix.name))
        if fix.add is not None:
            entry["add"] = fix.add
        entry["bias"] = fix.name
        entry["mean_shift_max"] = float(np.abs(fix.delta).max())
    g.initializer.extend(new_inits)
    drop_unused_initializers(g)
    return model, info


class _Bias(NamedTuple):
    """A corrected bias: its new initializer's name and values, the correction, and the
    Add node holding it (MatMul only)."""
    name: str
    values: np.ndarray
    delta: np.ndarray
    add: str | None = None


def _weight_error(w: np.ndarray, axis, power_of_two: bool) -> np.ndarray:
    """``dequantize(quantize(W)) - W`` in float64: exactly the model's weight grid."""
    w = w.astype(np.float32)
    q, scale, _ = quantize_weight(w, axis, power_of_two)
    return dequantize_weight(q, scale, axis).astype(np.float64) - w.astype(np.float64)


def _conv_output_shift(node, eps: np.ndarray, mean: _Mean) -> np.ndarray:
    """Per output channel, the mean output shift that weight error ``eps`` causes."""
    xm = mean.value()
    if xm is not None:
        return _conv_mean_output(node, xm[None], eps)
    # spatial size varies between batches: per-channel input means times eps summed over the kernel
    group = int(node_attrs(node).get("group", 1))
    o, cpg = eps.shape[0], eps.shape[1]
    per_in = mean.channel_value().reshape(group, 1, cpg)            # channel g*cpg + j
    e = eps.reshape(group, o // group, cpg, -1).sum(axis=3)
    return (e * per_in).sum(axis=2).reshape(o)


def _corrected_conv_bias(node, eps: np.ndarray, mean: _Mean, inits: dict) -> _Bias:
    """The Conv's bias minus the shift (a Conv without bias gets one); rewires ``node``."""
    delta = _conv_output_shift(node, eps, mean)
    target, old = (node.input[2], inits[node.input[2]]) if len(node.input) > 2 and node.input[2] \
        else (None, np.zeros(eps.shape[0], np.float32))
    new = (old.astype(np.float64) - delta).astype(old.dtype)
    name = f"{target}_bc" if target else f"{node.name}_bias_bc"
    if target:
        node.input[2] = name
    else:
        node.input.append(name)
    return _Bias(name, new, delta)


def _corrected_gemm_bias(node, eps: np.ndarray, mean: _Mean, inits: dict) -> _Bias | str:
    """Gemm's C minus ``alpha * E[x] @ eps' / beta`` (C of N values or absent); rewires
    ``node``, or says why not."""
    a = node_attrs(node)
    e = eps.T if a.get("transB", 0) else eps                         # (K, N)
    delta = float(a.get("alpha", 1.0)) * (mean.value() @ e)
    beta = float(a.get("beta", 1.0))
    if len(node.input) > 2 and node.input[2]:
        old = inits.get(node.input[2])
        if old is None or old.size not in (1, delta.size) or beta == 0:
            return "C is not a constant of N values"
        new = (np.broadcast_to(old.astype(np.float64).reshape(-1), delta.shape) - delta / beta)
        new = new.reshape(old.shape if old.size == delta.size else delta.shape).astype(old.dtype)
        name = f"{node.input[2]}_bc"
        node.input[2] = name
        return _Bias(name, new, delta)
    if beta == 0:
        return "beta is 0"
    name = f"{node.name}_bias_bc"
    node.input.append(name)
    return _Bias(name, (-delta / beta).astype(np.float32), delta)


def _corrected_matmul_bias(node, eps: np.ndarray, mean: _Mean, inits: dict, readers: dict,
                           outputs: set) -> _Bias | str:
    """The constant of an Add that alone reads the MatMul's output (a linear layer's bias)
    minus ``E[x] @ eps``; rewires the Add, or says why not."""
    users = readers.get(node.output[0], [])
    add = users[0] if len(users) == 1 and node.output[0] not in outputs and users[0].op_type == "Add" else None
    xm = mean.value()
    delta = xm @ eps if xm is not None and xm.ndim == 1 else None
    if add is None or delta is None:
        return "no bias: the MatMul's output is not read by an Add alone"
    k = 1 if add.input[0] == node.output[0] else 0
    old = inits.get(add.input[k])
    if old is None or old.size != delta.size or old.shape[-1:] != delta.shape:
        return "the Add's other operand is not a constant of N values"
    name = f"{add.input[k]}_bc_{node.name}"
    add.input[k] = name
    return _Bias(name, (old.astype(np.float64) - delta).astype(old.dtype), delta, add.name)


# ---------------------------------------------------------------- accuracy budget

def search_accuracy_budget(build: Callable[[set], object], evaluate: Callable[[object], float],
                           candidates: list[str], float_score: float, max_drop: float,
                           always_float: Iterable[str] = (), sensitivity: dict | None = None):
    """Greedily keep layers in float until ``evaluate(model) >= float_score - max_drop``.

    ``build(exclude)`` gives the quantized model with the node names in ``exclude`` left
    in float (it reuses the calibration observers: nothing is recalibrated);
    ``candidates`` are the quantizable nodes in graph order. Sensitivity of a layer:
    ``float_score - evaluate(model with only that layer quantized)`` -- the user's own
    metric, measured once for every candidate (``len(candidates)`` evaluations, and
    only when the fully quantized model misses the budget); interactions between
    layers are not re-measured. Then the most sensitive remaining layer (the earliest
    on ties) goes to float and the model is rebuilt and scored, until the budget holds
    or nothing is left to keep in float.

    Returns ``(model, info)``: ``info`` has ``float_score``, ``quantized_score`` (all
    candidates quantized), ``final_score``, ``max_drop``, ``met``, ``kept_float``
    (in the order chosen), ``sensitivity`` (node -> drop; empty when not needed),
    ``steps`` and ``evaluations``. A given ``sensitivity`` (node -> how much quantizing
    it alone costs, larger is worse) is used instead of measuring it with ``evaluate``.
    """
    base = set(always_float)
    candidates = [c for c in candidates if c not in base]
    calls = 0

    def score(model):
        nonlocal calls
        calls += 1
        v = float(evaluate(model))
        if math.isnan(v):
            raise ValueError("evaluate() returned NaN")
        return v

    exclude = set(base)
    model = build(exclude)
    s = score(model)
    info = {"float_score": float(float_score), "quantized_score": s, "final_score": s, "max_drop": float(max_drop),
            "met": True, "kept_float": [], "sensitivity": {}, "steps": [{"kept_float": [], "score": s}]}
    threshold = float_score - max_drop
    sensitivity = dict(sensitivity or {})
    while s < threshold:
        remaining = [c for c in candidates if c not in exclude]
        if not remaining:
            break
        if not sensitivity:
            for c in candidates:
                only = base | (set(candidates) - {c})
                sensitivity[c] = float(float_score) - score(build(only))
        order = {c: k for k, c in enumerate(candidates)}
        pick = max(remaining, key=lambda c: (sensitivity[c], -order[c]))
        exclude.add(pick)
        info["kept_float"].append(pick)
        model = build(exclude)
        s = score(model)
        info["steps"].append({"kept_float": list(info["kept_float"]), "score": s})
    info["final_score"] = s
    info["met"] = s >= threshold
    info["sensitivity"] = sensitivity
    info["evaluations"] = calls + 0
    if not info["met"]:
        warnings.warn(f"accuracy budget not met: {s:.6g} < float {float_score:.6g} - {max_drop:g} with every "
                      f"quantizable layer kept in float", RuntimeWarning, stacklevel=3)
    return model, info
