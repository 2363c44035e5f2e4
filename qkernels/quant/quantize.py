"""Post-training quantization of float ONNX models into QDQ form (QuantizeLinear /
DequantizeLinear around the float operators), which qkernels' graph runner turns into
integer kernel calls and ONNX Runtime runs as well.

    quantize_model(model, calibration_data, target="cpu", method="auto")

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

import math
import os
import warnings
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np

from .auto import AUTO_SAMPLES, capture_list, choose_ranges
from .calibration import Batched, CalibrationError, calibrate, replayable
from .dynamic import dynamic_model
from .params import quant_params
from .passes import correct_biases, fold_batch_norm, input_means, search_accuracy_budget
from .passes import equalize as equalize_pass
from .plan import DEFAULT_OP_TYPES, check_node_names, plan_tensors, quantized_layers, weight_axis
from .prepare import prepare
from .fp16 import to_fp16
from .qdq import qdq_model
from .report import build_report, dynamic_report, fp16_report
from .sensitivity import Probe, output_cosine, output_sqnr, probe_each
from .smooth import smooth_quant as smooth_pass
from .shards import Shards, shards_of

__all__ = ["TARGETS", "DEFAULT_OP_TYPES", "quantize_model", "CalibrationError", "calibrate", "fold_batch_norm"]

TARGETS = ("cpu", "dsp", "fp16")
MODES = ("static", "dynamic")
#: the accuracy budget of static mode on transformers (``min_cosine="auto"``): the
#: model outputs' cosine to float (mean over rows) on the first calibration samples
TRANSFORMER_MIN_COSINE = 0.99
#: what static mode keeps out of its static int8 layers when a budget asks: "dynamic"
#: (constant-weight MatMul/Gemm quantized at run time per tensor, then per row where that
#: misses the budget, the rest float), "dynamic_rows" (per row at once) or "float"
OUTLIER_FORMS = ("dynamic", "dynamic_rows", "float")


def quantize_model(model, calibration_data=None, target: str = "cpu", method: str = "auto", *,
                   per_channel: bool = True, reduce_range: bool = False, activation_dtype=np.int8,
                   op_types: Iterable[str] = DEFAULT_OP_TYPES, exclude_nodes: Iterable[str] = (),
                   progress: bool = True, return_report: bool = False, bias_correction: bool = False,
                   equalize: bool = False, evaluate=None, max_drop: float = 0.01, batch_size: int | None = None,
                   measure: bool = True, keep_float: int = 0, min_sqnr_db: float | None = None,
                   client=None, mode: str = "static", min_cosine="auto", outlier_layers: str = "dynamic",
                   smooth_quant: float | None = None, dynamic_rows: bool = False, int8_attention="auto",
                   **observer_options):
    """Quantize a float ONNX model (path, bytes or ModelProto) post-training.

    Returns an ``onnx.ModelProto`` in QDQ form (save it with ``onnx.save``), or
    ``(model, report)`` with ``return_report=True``: a dict (:mod:`qkernels.quant.report`)
    with, per quantized tensor, scale, zero point, range, clipping fraction, SQNR and
    cosine against float (measured by running the float and the quantized model on the
    calibration data; ``measure=False`` skips that pass and its figures), per weight and
    per layer, per model output, and what the passes did. ``calibration_data``: an iterable of feed dicts, a ``.npz``/``.npy`` file or
    folder, a mapping name -> array, or an object with ONNX Runtime's
    ``CalibrationDataReader`` interface (a reader or an iterator is read into memory
    when the data is needed more than once: bias correction, the report). Arrays (a
    mapping, a file or folder) are fed ``batch_size`` samples at a time (default
    :data:`~qkernels.quant.calibration.BATCH_SIZE`, 32) along their leading axis.

    The model is first brought to the form the quantizer plans on
    (:mod:`qkernels.quant.prepare`: an older opset converted to 13, nodes named, constant
    subgraphs -- weights in ``Constant`` nodes among them -- folded into initializers,
    batch norm folded into the Conv before it); the report's ``preprocessing`` says what ran.

    Passes (:mod:`qkernels.quant.passes`):

    * ``equalize=True``: cross-layer equalisation of ``Conv -> [Relu] -> Conv`` pairs on
      the float model (after batch-norm folding, before calibration);
    * ``bias_correction=True``: each quantized layer's bias corrected by the mean output
      error its weight quantization causes on the calibration data;
    * ``evaluate=fn`` (``fn(model_proto) -> score``, higher is better) with ``max_drop``:
      while the quantized model scores below ``fn(float model) - max_drop``, the most
      sensitive remaining layer (largest score drop when it alone is quantized) is kept
      in float and the model rebuilt from the same calibration (no recalibration).

    Calibration data in shards (:class:`~qkernels.quant.data.Shards`: files, a glob
    pattern, callables, a ``dask.bag`` or ``dask.array``) is run shard by shard; with
    ``client`` (a ``distributed.Client``) every pass over the data -- calibration, bias
    correction, the sensitivity of ``keep_float``/``min_sqnr_db`` and the report -- runs
    on the cluster's workers, and the model is the same, bit for bit, as with
    ``client=None`` on the same shards (docs/distributed.md). Given a client, data that
    is not a Shards is made one (a list's items, a pattern's files are the shards).

    Keeping the worst layers in float without writing ``evaluate``
    (:mod:`qkernels.quant.sensitivity`: each layer quantized alone on the first
    calibration samples, its cost the model outputs' SQNR against float):

    * ``keep_float=N``: the ``N`` layers whose quantization alone costs the outputs most
      stay in float;
    * ``min_sqnr_db=X``: layers stay in float, the most costly first, until the
      quantized model's outputs are within ``X`` dB SQNR of float's (measured on those
      samples after each step).
    * ``min_cosine=C``: the same with the outputs' cosine to float (mean over rows of
      the last axis) as the budget. The default ``"auto"`` is
      :data:`TRANSFORMER_MIN_COSINE` on transformers (a Softmax or LayerNormalization in
      the graph) and no budget elsewhere; ``None``: plain static. The layers the budget
      takes out of static int8 (``outlier_layers``): ``"dynamic"`` -- constant-weight
      MatMul/Gemm in the dynamic form of ``mode="dynamic"`` (activations quantized at run
      time from their own range: the FFN-down input after GELU), the others (the
      Softmax-times-V MatMul of two activations) float; ``"float"`` -- all float. The
      ``k`` costliest layers go, ``k`` found by bisection (about ``2 log2 N`` builds);
      where even every layer dynamic misses the budget, the search is run again with them
      dynamic per row (``dynamic_rows`` below), then float. ``"dynamic_rows"``: per row
      at once.
    * ``int8_attention``: whether the MatMuls of two activations (attention's scores and
      its softmax-weighted values) are static int8. ``"auto"``: not on transformers --
      they carry the softmax's outliers, hold a few percent of the operations, and run
      as fused float (qkernels::TransposedMatMul / MaskedSoftmax); elsewhere yes.
    * ``smooth_quant=alpha`` (0..1): SmoothQuant scale migration before calibration
      (:mod:`qkernels.quant.smooth`): per input channel ``s = max|x|^alpha /
      max|W|^(1-alpha)``, x divided by s in its producer (LayerNormalization gamma/beta,
      a Mul by a constant -- GELU's last Mul), W's rows multiplied by s.

    ``mode="dynamic"`` (no calibration data needed): the ``cpu`` target's int8 weights
    (per output channel, or per tensor) for every MatMul/Gemm with a constant weight,
    activations quantized at run time -- node for node the form of ONNX Runtime's
    ``quantize_dynamic`` (:mod:`qkernels.quant.dynamic`). ``dynamic_rows=True``: each
    row of the activations (a token) quantized with a scale and zero point of its own
    (``qkernels::DynamicQuantizeMatMul``, per_row=1: finer where a few tokens carry
    outliers; that model runs on qkernels only, ONNX Runtime has no such operator). The report has the weights'
    SQNR per layer and, with calibration data, the outputs' SQNR and cosine to float.

    ``target="fp16"``: weights and activations float16 (:func:`qkernels.quant.fp16.to_fp16`),
    no calibration.
    """
    from ..graph.model import load_model
    max_drop = _check_options(target, evaluate, max_drop, keep_float, min_sqnr_db)
    _check_transformer_options(mode, target, min_cosine, outlier_layers, smooth_quant, evaluate, min_sqnr_db)
    if not isinstance(dynamic_rows, bool):
        raise TypeError(f"dynamic_rows must be True or False, got {dynamic_rows!r}")
    if not (isinstance(int8_attention, bool) or int8_attention == "auto"):
        raise ValueError(f"int8_attention must be True, False or 'auto', got {int8_attention!r}")
    original = load_model(model)
    proto, preprocessing = prepare(original)
    user_exclude = set(exclude_nodes)
    check_node_names(proto, user_exclude)
    if target == "fp16":
        m = to_fp16(proto)
        return (m, fp16_report()) if return_report else m
    if mode == "dynamic":
        m, layers = dynamic_model(proto, {n.name for n in proto.graph.node} - user_exclude, per_channel,
                                  bool(dynamic_rows))
        if not return_report:
            return m
        return m, dynamic_report(proto, m, layers, per_channel, calibration_data, progress, preprocessing)
    if calibration_data is None:
        raise CalibrationError(f"target {target!r} needs calibration data")
    if min_cosine == "auto":
        min_cosine = TRANSFORMER_MIN_COSINE if (evaluate is None and min_sqnr_db is None and _is_transformer(proto)) \
            else None
    if client is not None or isinstance(calibration_data, Shards):
        calibration_data = shards_of(calibration_data, batch_size)
    elif batch_size is not None:
        if not isinstance(calibration_data, (str, os.PathLike, Mapping)):
            raise ValueError("batch_size applies to calibration arrays (a mapping, a .npz/.npy file or folder); "
                             "batches given as feed dicts keep their own size")
        calibration_data = Batched(calibration_data, batch_size)
    act_dtype = _activation_dtype(target, activation_dtype)
    op_types = tuple(op_types)
    if not (int8_attention if int8_attention != "auto" else not _is_transformer(proto)):
        user_exclude |= activation_matmuls(proto)
    eq_info = sq_info = None
    if equalize:
        proto, eq_info = equalize_pass(proto)
    if bias_correction or (return_report and measure) or smooth_quant is not None or min_cosine is not None:
        calibration_data = replayable(calibration_data)
    if smooth_quant is not None:
        proto, sq_info = smooth_pass(proto, calibration_data, float(smooth_quant))
    acts, _, _ = plan_tensors(proto, op_types, user_exclude)
    dsp, chosen = target == "dsp", None
    if method == "auto":   # the first samples' values kept for the choice
        from ..graph.model import to_graph
        graph = to_graph(proto)
        observers, values = calibrate(proto, calibration_data, acts, method, progress,
                                      capture=capture_list(graph, acts), capture_samples=AUTO_SAMPLES,
                                      client=client, **observer_options)
        chosen = choose_ranges(graph, values, observers, acts, act_dtype, dsp, reduce_range, dsp)
        ranges = {name: rng for name, (_, rng) in chosen.items()}
    else:
        observers = calibrate(proto, calibration_data, acts, method, progress, client=client, **observer_options)
        ranges = {name: observers[name].range(symmetric=dsp) for name in acts}
    act_params = _activation_params(ranges, act_dtype, dsp, reduce_range)
    candidates = [n.name for n, *_ in quantized_layers(proto, op_types, user_exclude)]
    means = input_means(proto, calibration_data, candidates, progress, client) if bias_correction else None
    builder = _Builder(proto, op_types, per_channel, target, act_dtype, act_params, means,
                       {"dynamic": ("tensor", "row"), "dynamic_rows": ("row",)}.get(outlier_layers, ())
                       if min_cosine is not None else ())
    always_float, sensitivity = set(user_exclude), None
    def layer_costs():
        layers = quantized_layers(proto, op_types, user_exclude)
        costs = probe_each(proto, calibration_data, "layer_alone", [(x, w, _axis(builder, n), y) for n, x, w, y in layers],
                           (act_params, act_dtype, dsp), client=client, progress=progress, desc="cost of each layer alone")
        return {n.name: -cost for (n, *_), cost in zip(layers, costs)}
    if keep_float or min_sqnr_db is not None:
        sensitivity = layer_costs()
        worst = sorted(sensitivity, key=lambda c: -sensitivity[c])[:keep_float]
        always_float |= set(worst)
    builder.always_float = set(always_float)
    if evaluate is not None:
        m, budget = search_accuracy_budget(builder.build, evaluate, candidates, float(evaluate(original)), max_drop,
                                           always_float=always_float)
    elif min_sqnr_db is not None:
        probe = Probe(proto, calibration_data)

        def score(model):
            from ..graph import Session
            return output_sqnr(probe.reference, dict(zip(probe.outputs, Session(model.SerializeToString()).run(
                probe.outputs, {k: probe.scope[k] for k in probe_inputs}))))
        probe_inputs = [i.name for i in proto.graph.input if i.name not in probe.graph.initializers]
        m, budget = search_accuracy_budget(builder.build, score, candidates, float(min_sqnr_db), 0.0,
                                           always_float=always_float, sensitivity=sensitivity)
        budget.update(metric="output SQNR dB vs float", min_sqnr_db=budget.pop("float_score"))
    elif min_cosine is not None:
        probe = Probe(proto, calibration_data)
        probe_inputs = [i.name for i in proto.graph.input if i.name not in probe.graph.initializers]

        def score(model):
            from ..graph import Session
            return output_cosine(probe.reference, dict(zip(probe.outputs, Session(model.SerializeToString()).run(
                probe.outputs, {k: probe.scope[k] for k in probe_inputs}))))
        m, budget = _cosine_search(builder, score, candidates, float(min_cosine), always_float,
                                   sensitivity if sensitivity is not None else layer_costs)
        budget.update(outlier_layers=outlier_layers)
    else:
        m, budget = builder.build(always_float), None
    if keep_float:
        budget = {**(budget or {}), "keep_float": keep_float, "kept_float_by_rank": worst,
                  "sensitivity_sqnr_db": {k: -v for k, v in sensitivity.items()}}
    if not return_report:
        return m
    # the search's last build is the model it returns: ``builder.last`` describes that one
    settings = {"per_channel": bool(per_channel), "reduce_range": bool(reduce_range),
                "activation_dtype": act_dtype.name, "bias_correction": bool(bias_correction),
                "equalize": bool(equalize), "op_types": list(op_types), "smooth_quant": smooth_quant}
    return m, build_report(proto, m, calibration_data, target=target, method=method, settings=settings,
                           act_params=act_params, observers=observers, quantized=builder.last,
                           excluded_nodes=user_exclude, accuracy_budget=budget, equalization=eq_info,
                           progress=progress, measure_pass=measure, preprocessing=preprocessing,
                           chosen_methods=None if chosen is None else {k: m for k, (m, _) in chosen.items()},
                           client=client, smoothing=sq_info)


def _check_options(target: str, evaluate, max_drop, keep_float, min_sqnr_db) -> float:
    """Refuse a bad option before any work; returns ``max_drop`` as a float."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    if isinstance(keep_float, bool) or not isinstance(keep_float, int) or keep_float < 0:
        raise ValueError(f"keep_float must be an int >= 0, got {keep_float!r}")
    if min_sqnr_db is not None:
        if evaluate is not None:
            raise ValueError("give either evaluate= (your metric, with max_drop=) or min_sqnr_db= (output SQNR "
                             "against float), not both")
        if not isinstance(min_sqnr_db, (int, float)) or isinstance(min_sqnr_db, bool) or not math.isfinite(min_sqnr_db):
            raise ValueError(f"min_sqnr_db must be a finite number of dB, got {min_sqnr_db!r}")
    if evaluate is not None and not callable(evaluate):
        raise TypeError(f"evaluate must be a function model -> score, got {type(evaluate).__name__}")
    max_drop = float(max_drop)
    if not max_drop >= 0.0:
        raise ValueError(f"max_drop must be >= 0, got {max_drop!r}")
    return max_drop


def _cosine_search(builder, score, candidates, min_cosine, always_float, sensitivity):
    """The smallest ``k`` such that the ``k`` costliest layers (``sensitivity``: node ->
    cost, or a function measuring it, called only when the fully quantized model misses)
    taken out of static int8 bring the outputs' cosine to ``min_cosine``; found by
    bisection (the score grows with ``k`` but for noise: only a ``k`` measured to meet the
    budget is returned). Taken-out layers go dynamic first (per tensor, then per row: the
    builder's ``forms``); where even all of them so miss the budget, the search runs again
    with the next form, float last."""
    order = [c for c in candidates if c not in always_float]
    steps = []

    def attempt(k):
        model = builder.build(set(always_float) | set(order[:k]))
        s = float(score(model))
        steps.append({"kept_float": order[:k], "dynamic": sorted(builder.last.dynamic), "dynamic_per": builder.dynamic,
                      "score": s})
        return model, s

    model, s = attempt(0)
    quantized_score, escalated = s, False
    if s < min_cosine:
        costs = sensitivity() if callable(sensitivity) else sensitivity
        rank = {c: k for k, c in enumerate(order)}
        order.sort(key=lambda c: (-costs.get(c, -math.inf), rank[c]))     # costliest first, ties in graph order
        for form in builder.forms + (None,):
            builder.dynamic = form
            top, (model, s) = len(order), attempt(len(order))
            escalated = form is None
            if s < min_cosine:
                continue            # not even every layer in this form: the next form
            lo, best = 0, (model, s, top)          # lo misses, best meets
            while best[2] - lo > 1:
                mid = (lo + best[2]) // 2
                model, s = attempt(mid)
                if s >= min_cosine:
                    best = (model, s, mid)
                else:
                    lo = mid
            model, s, top = best
            builder.build(set(always_float) | set(order[:top]))    # builder.last describes the model returned
            break
        else:
            top = len(order)
            warnings.warn(f"accuracy budget not met: output cosine {s:.6g} < {min_cosine:g} with every quantizable "
                          f"layer kept in float", RuntimeWarning, stacklevel=3)
        kept = order[:top]
    else:
        kept = []
    return model, {"metric": "output cosine vs float (mean over rows)", "min_cosine": min_cosine,
                   "quantized_score": quantized_score, "final_score": s, "met": s >= min_cosine,
                   "kept_float": kept, "dynamic": sorted(builder.last.dynamic),
                   "dynamic_per": builder.dynamic if builder.last.dynamic else None, "escalated_to_float": escalated,
                   "steps": steps, "evaluations": len(steps)}


def _check_transformer_options(mode, target, min_cosine, outlier_layers, smooth_quant, evaluate, min_sqnr_db):
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "dynamic" and target != "cpu":
        raise ValueError(f"mode='dynamic' quantizes for the cpu target, got target={target!r}")
    if outlier_layers not in OUTLIER_FORMS:
        raise ValueError(f"outlier_layers must be one of {', '.join(OUTLIER_FORMS)}, got {outlier_layers!r}")
    if min_cosine is not None and min_cosine != "auto":
        if isinstance(min_cosine, bool) or not isinstance(min_cosine, (int, float)) or not -1.0 <= min_cosine <= 1.0:
            raise ValueError(f"min_cosine must be a cosine in [-1, 1], 'auto' or None, got {min_cosine!r}")
        if evaluate is not None or min_sqnr_db is not None:
            raise ValueError("give one accuracy budget: evaluate=, min_sqnr_db= or min_cosine=")
    if smooth_quant is not None:
        if isinstance(smooth_quant, bool) or not isinstance(smooth_quant, (int, float)) or not 0.0 <= smooth_quant <= 1.0:
            raise ValueError(f"smooth_quant must be the migration strength alpha in [0, 1], got {smooth_quant!r}")
        if mode != "static" or target == "fp16":
            raise ValueError("smooth_quant applies to static int8 quantization (mode='static', target cpu or dsp)")


def _is_transformer(model) -> bool:
    return any(n.op_type in ("Softmax", "LayerNormalization") for n in model.graph.node)


def activation_matmuls(model) -> set:
    """Names of the MatMul nodes neither of whose inputs is an initializer (attention's
    scores and values: two activations)."""
    inits = {t.name for t in model.graph.initializer}
    return {n.name for n in model.graph.node if n.op_type == "MatMul" and not any(i in inits for i in n.input)}


def _activation_dtype(target: str, activation_dtype) -> np.dtype:
    act_dtype = np.dtype(np.int8 if target == "dsp" else activation_dtype)
    if act_dtype not in (np.dtype(np.int8), np.dtype(np.uint8)):
        raise ValueError(f"activation_dtype must be int8 or uint8, got {act_dtype}")
    return act_dtype


def _activation_params(ranges: dict, act_dtype, dsp: bool, reduce_range: bool) -> dict:
    """tensor -> (scale, zero point, lo, hi) from each tensor's range (``dsp``: symmetric,
    power-of-two scales)."""
    params = {}
    for name, (lo, hi) in ranges.items():
        scale, zp = quant_params(lo, hi, act_dtype, symmetric=dsp, reduce_range=reduce_range, power_of_two=dsp)
        params[name] = (scale, zp, lo, hi)
    return params


@dataclass
class _Quantized:
    """What one build quantized: activations, weights {tensor: (node, axis)}, the nodes
    left in float, and what bias correction did (None when not run)."""
    acts: list
    weights: dict
    exclude: set
    bias_correction: list | None
    dynamic: set = frozenset()


class _Builder:
    """Builds the QDQ model for a set of nodes left in float, from one calibration (the
    accuracy-budget search calls it once per candidate set)."""

    def __init__(self, proto, op_types, per_channel, target, act_dtype, act_params, means, forms=()):
        self.proto, self.op_types, self.per_channel = proto, op_types, per_channel
        self.target, self.act_dtype, self.act_params, self.means = target, act_dtype, act_params, means
        self.forms = tuple(forms)           # the dynamic forms the search tries: "tensor", "row"
        self.dynamic = self.forms[0] if self.forms else None   # the form taken-out layers go to (None: float)
        self.always_float: set = set()      # the user's and keep_float's: float whatever the search
        self.last: _Quantized | None = None

    def build(self, exclude):
        src, bc = self.proto, None
        acts, weights, biases = plan_tensors(src, self.op_types, exclude, self.per_channel)
        if self.means is not None:      # bias correction, then the plan of the corrected model
            src, bc = correct_biases(self.proto, weights, self.means, self.target == "dsp")
            acts, weights, biases = plan_tensors(src, self.op_types, exclude, self.per_channel)
        q = qdq_model(src, {k: self.act_params[k][:2] for k in acts}, weights, biases, self.target, self.act_dtype)
        dynamic = {}
        if self.dynamic and set(exclude) - self.always_float:
            q, dynamic = dynamic_model(q, set(exclude) - self.always_float, self.per_channel, self.dynamic == "row")
        self.last = _Quantized(acts, weights, set(exclude), bc, set(dynamic))
        return q


def _axis(builder: _Builder, node):
    """The axis a layer's weight is quantized along (None: per tensor)."""
    return weight_axis(node) if builder.per_channel else None
