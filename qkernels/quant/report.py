"""The quantization report: what each quantized tensor costs, measured against float.

:func:`qkernels.quant.quantize_model` with ``return_report=True`` returns it as a dict
(plain JSON types, so :func:`save_report` / :func:`load_report` round-trip it exactly):

``tensors`` -- one entry per quantized activation, in graph order:
    ``tensor``, ``scale``, ``zero_point``, ``range`` (the observer's ``[lo, hi]``),
    ``min``/``max`` (exact, from calibration), ``producer`` (the node writing it, ""
    for a graph input), ``consumers``, ``clip_fraction`` (share of the float
    calibration values outside the chosen range, extended to include 0 as the
    quantization parameters are), ``sqnr_db`` and ``cosine`` (the quantized model's
    dequantized value against the float model's, end to end: every upstream error
    included), ``own_sqnr_db`` (the float value quantized and dequantized with this
    tensor's own scale and zero point: its rounding and clipping alone),
    ``alone_sqnr_db`` (the model outputs' SQNR when this tensor alone is quantized, on
    the first :data:`REPORT_SAMPLES` calibration samples: what it costs the outputs,
    :mod:`.sensitivity`),
    ``mean_error``, and with ``method="auto"`` the ``method`` chosen for it.
``weights`` -- per quantized weight: ``tensor``, ``node``, ``axis`` (None: per tensor),
    ``scale_min``/``scale_max``, ``sqnr_db``, ``cosine`` and ``range_spread`` (largest
    over smallest per-channel range).
``layers`` -- per quantized node (``quantized`` true) and per other node writing a
    quantized tensor (Add, Mul, Concat, ...: ``quantized`` false, its input SQNR the worst
    of its measured inputs): input and output tensors, their end-to-end SQNR,
    ``sqnr_drop_db`` (input minus output when both are finite: what the node adds to the
    error), ``alone_sqnr_db`` of its output and its weight's SQNR. The culprit is the row
    of lowest ``alone_sqnr_db`` (:func:`culprits` ranks the tensors): a first layer's
    large drop whose error later layers damp ranks low.
``outputs`` -- per model output: ``sqnr_db``, ``cosine``, ``max_abs_error``,
    ``mean_error``.
``preprocessing`` -- what :mod:`qkernels.quant.prepare` did to the float model before
    calibration (opset conversion, constant folding, batch-norm folding), a line each.
``float_nodes`` -- the nodes of the quantized operator types left in float (``exclude_nodes``
    and the accuracy budget's choices); ``dynamic_nodes`` -- those the cosine budget
    (``min_cosine``) made dynamic int8 instead; ``accuracy_budget``, ``equalization``,
    ``smoothing`` (SmoothQuant sites) and ``bias_correction`` -- what those passes did
    (None when not run). ``mode="dynamic"`` reports (:func:`dynamic_report`) have
    ``weights``, ``layers`` (weight SQNR only) and, given calibration data, ``outputs``.

SQNR is ``10 log10(sum x^2 / sum (x - x_q)^2)`` in dB over all calibration values
(``inf`` when the two agree exactly); cosine is ``<x, x_q> / (|x| |x_q|)`` (1 when both
are zero).

:func:`format_report` prints it as tables, :func:`plot_report` draws SQNR per tensor
(matplotlib: ``pip install 'qkernels[plot]'``).
"""
from __future__ import annotations

import json
import math

import numpy as np

from .shards import ShardJob, run_shards
from .graphutil import with_outputs
from .params import fake_quantize
from .plan import quantized_layers
from .weights import dequantize_weight, quantize_weight, range_spread

__all__ = ["build_report", "culprits", "format_report", "format_summary", "save_report", "load_report", "plot_report", "sqnr_db", "cosine"]


def sqnr_db(signal: float, noise: float) -> float:
    """``10 log10(signal / noise)`` from the two sums of squares (inf for no noise)."""
    if noise <= 0.0:
        return math.inf
    if signal <= 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def cosine(dot: float, a2: float, b2: float) -> float:
    if a2 <= 0.0 and b2 <= 0.0:
        return 1.0
    if a2 <= 0.0 or b2 <= 0.0:
        return 0.0
    return float(dot / math.sqrt(a2 * b2))


class _Compare:
    """Running sums for SQNR, cosine and errors of a float tensor x and its estimate y."""

    def __init__(self):
        self.xx = self.ee = self.xy = self.yy = self.err = 0.0
        self.n = 0
        self.max_abs = 0.0

    def add(self, x: np.ndarray, y: np.ndarray, block: int = 1 << 15):
        x = np.asarray(x).reshape(-1)
        y = np.asarray(y).reshape(-1)
        if x.shape != y.shape:
            raise ValueError(f"float and quantized values differ in size: {x.size} vs {y.size}")
        # float64 sums, a cache-sized block at a time (2x faster than converting whole tensors)
        for i in range(0, x.size, block):
            xb = x[i:i + block].astype(np.float64)
            yb = y[i:i + block].astype(np.float64)
            e = yb - xb
            self.xx += float(xb @ xb)
            self.yy += float(yb @ yb)
            self.xy += float(xb @ yb)
            self.ee += float(e @ e)
            self.err += float(e.sum())
            self.max_abs = max(self.max_abs, float(np.abs(e).max()))
        self.n += x.size

    def merge(self, other: "_Compare") -> "_Compare":
        """Add ``other``'s sums (the next shard's) to ours."""
        for k in ("xx", "ee", "xy", "yy", "err", "n"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        self.max_abs = max(self.max_abs, other.max_abs)
        return self

    def sqnr(self):
        return sqnr_db(self.xx, self.ee)

    def cos(self):
        return cosine(self.xy, self.xx, self.yy)

    def mean_error(self):
        return self.err / self.n if self.n else 0.0


def measure(float_model, quant_model, calibration_data, act_params: dict, act_dtype, progress: bool = False,
            client=None):
    """Run the float and the quantized model on every calibration batch (qkernels' runner)
    and compare: per quantized activation (``act_params``: name -> (scale, zero point,
    lo, hi)) and per model output. Returns ``(per tensor stats, per output stats, batches)``.
    Sharded data is compared per shard and the sums added in shard order (on the workers
    of ``client`` when given)."""
    names = list(act_params)
    q_graph_outputs = {o.name for o in quant_model.graph.output}
    q_names = [n if n in q_graph_outputs else f"{n}_dq" for n in names]
    job = _Measure(names, q_names, [o.name for o in float_model.graph.output], act_params, np.dtype(act_dtype).name)
    e2e, own, clipped, outs, seen = run_shards(
        job, [with_outputs(float_model, names), with_outputs(quant_model, q_names)], calibration_data,
        client=client, progress=progress, desc="report")
    tensors = {n: {"clip_fraction": clipped[n] / e2e[n].n if e2e[n].n else 0.0,
                   "sqnr_db": e2e[n].sqnr(), "cosine": e2e[n].cos(), "own_sqnr_db": own[n].sqnr(),
                   "mean_error": e2e[n].mean_error()} for n in names}
    outputs = [{"tensor": o, "sqnr_db": c.sqnr(), "cosine": c.cos(), "max_abs_error": c.max_abs,
                "mean_error": c.mean_error()} for o, c in outs.items()]
    return tensors, outputs, seen


class _Measure(ShardJob):
    """measure() as a shard job: a shard gives (e2e, own, clipped, outputs, batches)."""

    def __init__(self, names, q_names, float_outputs, act_params, act_dtype: str):
        self.names, self.q_names, self.float_outputs = names, q_names, float_outputs
        self.act_params, self.act_dtype = act_params, act_dtype

    def run(self, sessions, batches, index):
        f_session, q_session = sessions
        names, float_outputs = self.names, self.float_outputs
        f_fetch = list(dict.fromkeys(names + float_outputs))
        q_fetch = list(dict.fromkeys(self.q_names + float_outputs))
        e2e = {n: _Compare() for n in names}
        own = {n: _Compare() for n in names}
        clipped = {n: 0 for n in names}
        outs = {o: _Compare() for o in float_outputs}
        seen = 0
        for feeds in batches:
            fv = dict(zip(f_fetch, f_session.run(f_fetch, feeds)))
            qv = dict(zip(q_fetch, q_session.run(q_fetch, feeds)))
            for n, qn in zip(names, self.q_names):
                scale, zp, lo, hi = self.act_params[n]
                x = fv[n]
                e2e[n].add(x, qv[qn])
                own[n].add(x, fake_quantize(x, scale, zp, np.dtype(self.act_dtype)))
                clipped[n] += int(np.count_nonzero((x < min(lo, 0.0)) | (x > max(hi, 0.0))))
            for o in float_outputs:
                outs[o].add(fv[o], qv[o])
            seen += 1
        return e2e, own, clipped, outs, seen

    def merge(self, total, partial):
        for mine, theirs in zip(total[:2] + total[3:4], partial[:2] + partial[3:4]):
            for name, compare in theirs.items():
                mine[name].merge(compare)
        for name, count in partial[2].items():
            total[2][name] += count
        return (*total[:4], total[4] + partial[4])


def weight_stats(arr: np.ndarray, axis, power_of_two: bool) -> dict:
    """Scale range, SQNR, cosine and per-channel range spread of one quantized weight."""
    q, scale, _ = quantize_weight(arr, axis, power_of_two)
    c = _Compare()
    c.add(arr, dequantize_weight(q, scale, axis))
    spread = range_spread(np.moveaxis(arr, axis if axis is not None else 0, 0)) if arr.ndim > 1 else 1.0
    return {"axis": axis, "scale_min": float(np.min(scale)), "scale_max": float(np.max(scale)),
            "sqnr_db": c.sqnr(), "cosine": c.cos(), "range_spread": spread}


# ---------------------------------------------------------------- assembly

def fp16_report() -> dict:
    """The report of the ``fp16`` target: nothing is quantized, nothing measured."""
    return {"target": "fp16", "tensors": [], "weights": [], "layers": [], "outputs": [], "float_nodes": []}


def dynamic_report(float_model, quant_model, layers: dict, per_channel: bool, calibration_data=None,
                   progress: bool = False, preprocessing=()) -> dict:
    """The report of ``mode="dynamic"``: per rewritten layer (``layers``: node -> weight)
    its weight's SQNR and cosine; with ``calibration_data`` the model outputs' SQNR and
    cosine to float (both models run on it)."""
    from onnx import numpy_helper
    inits = {t.name: t for t in float_model.graph.initializer}
    nodes = {n.name: n for n in float_model.graph.node}
    weights, rows = [], []
    for node, w in layers.items():
        arr = numpy_helper.to_array(inits[w]).astype(np.float32)
        if nodes[node].op_type == "Gemm" and any(a.name == "transB" and a.i for a in nodes[node].attribute):
            arr = arr.T
        entry = {"tensor": w, "node": node, **weight_stats(arr, 1 if per_channel else None, False)}
        weights.append(entry)
        rows.append({"node": node, "op_type": nodes[node].op_type, "input": nodes[node].input[0],
                     "output": nodes[node].output[0], "weight": w, "quantized": True, "input_sqnr_db": None,
                     "output_sqnr_db": None, "sqnr_drop_db": None, "alone_sqnr_db": None,
                     "weight_sqnr_db": entry["sqnr_db"], "weight_cosine": entry["cosine"]})
    outputs, batches = [], None
    if calibration_data is not None:
        _, outputs, batches = measure(float_model, quant_model, calibration_data, {}, np.uint8, progress)
    return {"target": "cpu", "mode": "dynamic", "method": "dynamic", "batches": batches,
            "settings": {"per_channel": bool(per_channel), "activation_dtype": "uint8", "op_types": ["MatMul", "Gemm"]},
            "tensors": [], "weights": weights, "layers": rows, "outputs": outputs,
            "float_nodes": [n.name for n in float_model.graph.node
                            if n.op_type in ("MatMul", "Gemm") and n.name not in layers],
            "excluded_nodes": [], "accuracy_budget": None, "equalization": None, "bias_correction": None,
            "preprocessing": list(preprocessing)}


def build_report(float_model, quant_model, calibration_data, *, target: str, method: str, settings: dict,
                 act_params: dict, observers: dict, quantized, excluded_nodes, accuracy_budget, equalization,
                 progress: bool = False, measure_pass: bool = True, preprocessing=(),
                 chosen_methods: dict | None = None, client=None, smoothing=None) -> dict:
    """The report of :func:`qkernels.quant.quantize_model` (the layout is this module's
    docstring): ``float_model`` the float model the quantizer planned on (batch norm
    folded, equalised), ``act_params`` tensor -> (scale, zero point, lo, hi) of every
    calibrated activation, ``observers`` their observers, ``quantized`` what the final
    build quantized (``acts``, ``weights``, ``exclude``, ``bias_correction``), ``settings``
    the options the report repeats (``op_types`` and ``activation_dtype`` among them).
    ``measure_pass=False`` leaves out what only running both models measures (SQNR,
    cosine, clipping, outputs): the report of the plan alone, at no extra cost. With a
    ``client`` the measuring runs on its workers (:mod:`qkernels.quant.shards`)."""
    act_dtype = np.dtype(settings["activation_dtype"])
    pow2 = target == "dsp"
    used = {k: act_params[k] for k in quantized.acts}
    stats, outputs, batches = measure(float_model, quant_model, calibration_data, used, act_dtype, progress,
                                      client) if measure_pass else ({}, [], None)
    weights = _weight_entries(float_model, quantized.weights, pow2)
    alone = _alone_costs(float_model, calibration_data, used, act_dtype, progress, client) if measure_pass else {}
    for name, value in alone.items():
        stats.setdefault(name, {})["alone_sqnr_db"] = value
    layers = _layer_entries(float_model, settings["op_types"], quantized.exclude, stats, weights, list(used))
    float_nodes = [n.name for n in float_model.graph.node
                   if n.op_type in settings["op_types"] and n.name in quantized.exclude
                   and n.name not in quantized.dynamic]
    return {"target": target, "method": method, "batches": batches, "settings": settings,
            "tensors": _tensor_entries(float_model, quantized.acts, act_params, observers, stats, chosen_methods),
            "weights": weights, "layers": layers, "outputs": outputs,
            "float_nodes": float_nodes, "excluded_nodes": sorted(excluded_nodes),
            "accuracy_budget": accuracy_budget, "equalization": equalization,
            "bias_correction": quantized.bias_correction, "preprocessing": list(preprocessing),
            "dynamic_nodes": sorted(quantized.dynamic), "smoothing": smoothing}


def _tensor_entries(model, acts, act_params: dict, observers: dict, stats: dict, chosen: dict | None) -> list[dict]:
    producer = {o: n.name for n in model.graph.node for o in n.output}
    readers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n.name)
    tensors = []
    for name in acts:
        scale, zp, lo, hi = act_params[name]
        tensors.append({"tensor": name, "scale": float(scale), "zero_point": int(zp), "range": [float(lo), float(hi)],
                        "min": float(observers[name].min), "max": float(observers[name].max),
                        "producer": producer.get(name, ""), "consumers": readers.get(name, []),
                        **({"method": chosen[name]} if chosen else {}), **stats.get(name, {})})
    return tensors


def _weight_entries(model, weights: dict, pow2: bool) -> list[dict]:
    from onnx import numpy_helper
    inits = {t.name: t for t in model.graph.initializer}
    return [{"tensor": w, "node": node.name,
             **weight_stats(numpy_helper.to_array(inits[w]).astype(np.float32), axis, pow2)}
            for w, (node, axis) in weights.items()]


#: calibration samples the report's per-tensor costs are measured on (one downstream
#: re-run per quantized tensor: the report's largest part). Fewer are not enough: on 2
#: text lines the classifier is sure of both, its softmax saturates and every cost
#: reads 130-150 dB
REPORT_SAMPLES = 4


def _alone_costs(model, calibration_data, act_params: dict, act_dtype, progress: bool, client=None) -> dict:
    """tensor -> output SQNR (dB) with only that tensor quantized (:mod:`.sensitivity`;
    spread over the workers of ``client`` when given)."""
    from .sensitivity import probe_each
    names = list(act_params)
    costs = probe_each(model, calibration_data, "tensor_alone", [(n, *act_params[n][:2]) for n in names],
                       (act_dtype,), REPORT_SAMPLES, client, progress, "cost of each tensor alone")
    return dict(zip(names, costs))


def _drop(ins, outs):
    """Input minus output SQNR, when both are finite (an exact input has no drop to name)."""
    if ins is None or outs is None or not (math.isfinite(ins) and math.isfinite(outs)):
        return None
    return ins - outs


def _layer_entries(model, op_types, exclude, stats: dict, weights: list[dict], acts: list) -> list[dict]:
    """One row per node that writes a quantized tensor or is a quantized layer, in graph
    order: the quantized layers (input, weight, output) and the other producers (Add,
    Mul, Concat, ...: their inputs' worst SQNR against their output's)."""
    w_by_node = {x["node"]: x for x in weights}
    layer_of = {node.name: (x, w, y) for node, x, w, y in quantized_layers(model, op_types, exclude)}
    producer = {o: n for n in model.graph.node for o in n.output}
    fused = {y for _, _, y in layer_of.values()}      # a fused Relu/Clip's output belongs to its layer's row
    writes = {producer[t].name: t for t in acts if t in producer and t not in fused}
    layers = []
    for node in model.graph.node:
        if node.name in layer_of:
            x, w, y = layer_of[node.name]
            ins = stats.get(x, {}).get("sqnr_db")
        elif node.name in writes:
            y, w = writes[node.name], None
            measured = [stats[i]["sqnr_db"] for i in node.input if "sqnr_db" in stats.get(i, {})]
            x, ins = ", ".join(i for i in node.input if i in stats) or None, min(measured) if measured else None
        else:
            continue
        outs = stats.get(y, {}).get("sqnr_db")
        layers.append({"node": node.name, "op_type": node.op_type, "input": x, "output": y, "weight": w,
                       "quantized": node.name in layer_of, "input_sqnr_db": ins, "output_sqnr_db": outs,
                       "sqnr_drop_db": _drop(ins, outs), "alone_sqnr_db": stats.get(y, {}).get("alone_sqnr_db"),
                       "weight_sqnr_db": w_by_node.get(node.name, {}).get("sqnr_db")})
    return layers


def culprits(report: dict, n: int = 5) -> list[dict]:
    """The ``n`` quantized tensors that cost the model's outputs most when each alone is
    quantized (lowest ``alone_sqnr_db``), worst first."""
    known = [t for t in report.get("tensors") or [] if t.get("alone_sqnr_db") is not None]
    return sorted(known, key=lambda t: t["alone_sqnr_db"])[:n]


# ---------------------------------------------------------------- output

def _f(v, fmt: str) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "exact" if v > 0 else "-inf"        # an SQNR of inf: no error at all
    return format(v, fmt)


def format_summary(report: dict, worst: int = 5) -> str:
    """A few lines for the console: the settings, each model output's SQNR, the ``worst``
    layers by SQNR drop, what stayed in float (:func:`format_report`: every table)."""
    lines = [format_report({k: report.get(k) for k in ("target", "method", "batches", "settings")}).splitlines()[0]]
    for o in (report.get("outputs") or [])[:3]:
        lines.append(f"output {o['tensor']}: SQNR {_f(o['sqnr_db'], '.1f')} dB, cosine {_f(o['cosine'], '.6f')}")
    top = culprits(report, worst)
    if top:
        lines.append("costliest tensors (output SQNR with each alone quantized): "
                     + ", ".join(f"{t['tensor']} from {t.get('producer') or '(input)'} {_f(t['alone_sqnr_db'], '.1f')} dB"
                                 for t in top))
    fl = report.get("float_nodes") or []
    lines.append(f"kept in float: {', '.join(fl) if fl else 'none'}")
    if report.get("dynamic_nodes"):
        lines.append(f"dynamic int8 (activations quantized at run time): {', '.join(report['dynamic_nodes'])}")
    for site in report.get("smoothing") or []:
        lines.append(f"smoothed {site['tensor']} (alpha {site['alpha']:g}, s {site['s_min']:.3g}..{site['s_max']:.3g}): "
                     f"channel spread {site['channel_spread_before']:.3g} -> {site['channel_spread_after']:.3g}")
    passes = ("pre-processing", "keep float", "accuracy budget", "equalized", "not equalized", "bias correction")   # what the passes did
    lines += [line for line in format_report(report).splitlines() if line.startswith(passes)]
    return "\n".join(lines)


def format_report(report: dict) -> str:
    """The report as text tables: activations, weights, layers (the worst marked), outputs."""
    lines = []
    s = report.get("settings", {})
    head = f"target {report.get('target')}"
    if report.get("method"):
        head += f", {report['method']} calibration on {report.get('batches', '?')} batches"
    if s:
        head += (", per-channel" if s.get("per_channel") else ", per-tensor") + " weights"
        if s.get("reduce_range"):
            head += ", reduced range"
    lines.append(head)
    tensors = report.get("tensors", [])
    if tensors:
        lines.append("")
        lines.append(f"{'activation':<28}{'producer':<16}{'method':<11}{'scale':>11}{'zp':>6}{'clip %':>8}"
                     f"{'SQNR dB':>9}{'own dB':>8}{'alone dB':>9}{'cosine':>9}")
        for t in tensors:
            clip = None if t.get("clip_fraction") is None else t["clip_fraction"] * 100
            lines.append(f"{t['tensor'][:27]:<28}{(t.get('producer') or '(input)')[:15]:<16}"
                         f"{(t.get('method') or report.get('method') or '')[:10]:<11}"
                         f"{t['scale']:>11.4g}{t['zero_point']:>6}{_f(clip, '.3f'):>8}"
                         f"{_f(t.get('sqnr_db'), '.1f'):>9}{_f(t.get('own_sqnr_db'), '.1f'):>8}"
                         f"{_f(t.get('alone_sqnr_db'), '.1f'):>9}{_f(t.get('cosine'), '.5f'):>9}")
    weights = report.get("weights", [])
    if weights:
        lines.append("")
        lines.append(f"{'weight':<28}{'node':<16}{'scale min..max':>22}{'SQNR dB':>9}{'cosine':>9}{'spread':>9}")
        for w in weights:
            rng = f"{w['scale_min']:.3g}..{w['scale_max']:.3g}"
            lines.append(f"{w['tensor'][:27]:<28}{w['node'][:15]:<16}{rng:>22}{_f(w['sqnr_db'], '.1f'):>9}"
                         f"{_f(w['cosine'], '.5f'):>9}{_f(w['range_spread'], '.3g'):>9}")
    layers = report.get("layers", [])
    if layers:
        costed = [la for la in layers if la.get("alone_sqnr_db") is not None]
        worst = min(costed, key=lambda la: la["alone_sqnr_db"]) if costed else None
        lines.append("")
        lines.append(f"{'layer':<22}{'op':<18}{'in SQNR':>9}{'out SQNR':>10}{'drop dB':>9}{'alone dB':>10}"
                     f"{'weight dB':>11}")
        for la in layers:
            mark = "  <- costs the outputs most" if la is worst else ""
            op = la["op_type"] + ("" if la.get("quantized", True) else " (float)")
            lines.append(f"{la['node'][:21]:<22}{op[:17]:<18}{_f(la.get('input_sqnr_db'), '.1f'):>9}"
                         f"{_f(la.get('output_sqnr_db'), '.1f'):>10}{_f(la.get('sqnr_drop_db'), '.1f'):>9}"
                         f"{_f(la.get('alone_sqnr_db'), '.1f'):>10}{_f(la.get('weight_sqnr_db'), '.1f'):>11}{mark}")
    outputs = report.get("outputs", [])
    if outputs:
        lines.append("")
        lines.append(f"{'model output':<28}{'SQNR dB':>9}{'cosine':>10}{'max |err|':>11}{'mean err':>11}")
        for o in outputs:
            lines.append(f"{o['tensor'][:27]:<28}{_f(o['sqnr_db'], '.1f'):>9}{_f(o['cosine'], '.6f'):>10}"
                         f"{o['max_abs_error']:>11.4g}{o['mean_error']:>11.3g}")
    if any("own_sqnr_db" in t for t in tensors):   # measured (not a measure=False report)
        low = min(tensors, key=lambda t: t.get("own_sqnr_db", math.inf))
        lines.append("")
        lines.append(f"lowest own-quantization SQNR: {low['tensor']} ({_f(low.get('own_sqnr_db'), '.1f')} dB, "
                     f"{low.get('clip_fraction', 0) * 100:.3f} % clipped)")
    fl = report.get("float_nodes") or []
    lines.append(f"kept in float: {', '.join(fl) if fl else 'none'}")
    if report.get("dynamic_nodes"):
        lines.append(f"dynamic int8 (activations quantized at run time): {', '.join(report['dynamic_nodes'])}")
    for site in report.get("smoothing") or []:
        lines.append(f"smoothed {site['tensor']} (alpha {site['alpha']:g}, s {site['s_min']:.3g}..{site['s_max']:.3g}): "
                     f"channel spread {site['channel_spread_before']:.3g} -> {site['channel_spread_after']:.3g}")
    for step in report.get("preprocessing") or []:
        lines.append(f"pre-processing: {step}")
    ab = report.get("accuracy_budget") or {}
    if ab.get("keep_float"):
        lines.append(f"keep float {ab['keep_float']}: the layers whose quantization alone costs the outputs most: "
                     + ", ".join(f"{n} ({_f(ab['sensitivity_sqnr_db'][n], '.1f')} dB)" for n in ab["kept_float_by_rank"]))
    if "min_sqnr_db" in ab:
        lines.append(f"accuracy budget: output SQNR all quantized {_f(ab['quantized_score'], '.1f')} dB, final "
                     f"{_f(ab['final_score'], '.1f')} dB (at least {ab['min_sqnr_db']:g} dB: "
                     f"{'met' if ab['met'] else 'NOT met'}); kept in float: {', '.join(ab['kept_float']) or 'none'}")
    elif "float_score" in ab:
        lines.append(f"accuracy budget: float {ab['float_score']:.6g}, all quantized {ab['quantized_score']:.6g}, "
                     f"final {ab['final_score']:.6g} (max drop {ab['max_drop']:g}: "
                     f"{'met' if ab['met'] else 'NOT met'}); kept in float: "
                     f"{', '.join(ab['kept_float']) or 'none'}")
    eq = report.get("equalization")
    if eq:
        for p in eq["pairs"]:
            lines.append(f"equalized {' -> '.join(p['nodes'])}: channel range spread {p['spread_before']:.3g} -> "
                         f"{p['spread_after']:.3g}")
        for sk in eq["skipped"]:
            lines.append(f"not equalized {' -> '.join(sk['nodes'])}: {sk['reason']}")
    bc = report.get("bias_correction")
    if bc:
        done = [b for b in bc if "skipped" not in b]
        lines.append(f"bias correction: {len(done)} layer(s) corrected"
                     + "".join(f"; {b['node']} skipped ({b['skipped']})" for b in bc if "skipped" in b))
    return "\n".join(lines)


def _encode(v):
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, dict):
        return {k: _encode(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_encode(x) for x in v]
    return v


_SPECIAL = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def _decode(v):
    if isinstance(v, str) and v in _SPECIAL:
        return _SPECIAL[v]
    if isinstance(v, dict):
        return {k: _decode(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_decode(x) for x in v]
    return v


def save_report(report: dict, path) -> None:
    """Write the report as strict JSON (infinite SQNR as the string "inf")."""
    with open(path, "w") as f:
        json.dump(_encode(report), f, indent=1, allow_nan=False)
        f.write("\n")


def load_report(path) -> dict:
    """Read a report written by :func:`save_report` (the strings "inf"/"-inf"/"nan" back to floats)."""
    with open(path) as f:
        return _decode(json.load(f))


def _figure(**kw):
    """A matplotlib Figure (no pyplot: the user's backend is left alone)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("plotting the quantization report needs matplotlib, which is not installed: "
                          "pip install 'qkernels[plot]' (or pip install matplotlib)") from None
    return Figure(**kw)


def plot_report(report: dict, path) -> None:
    """A bar chart of SQNR (dB) per quantized tensor and per model output, saved to ``path``
    (any format matplotlib writes: .png, .svg, .pdf). Bars: end to end against float;
    dots: the tensor's own quantization. ImportError with the install line when
    matplotlib is missing."""
    tensors = report.get("tensors", [])
    outputs = report.get("outputs", [])
    labels = [t["tensor"] + (f" ({t['producer']})" if t.get("producer") and t["producer"] != t["tensor"] else "")
              for t in tensors] + [f"output {o['tensor']}" for o in outputs]
    cap = 100.0

    def val(v):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return 0.0
        return min(float(v), cap) if v != -math.inf else 0.0

    e2e = [val(t.get("sqnr_db")) for t in tensors] + [val(o.get("sqnr_db")) for o in outputs]
    own = [val(t.get("own_sqnr_db")) for t in tensors]
    x = np.arange(len(labels))
    fig = _figure(figsize=(max(6.0, 0.45 * len(labels) + 2.0), 4.5))
    ax = fig.subplots()
    colors = ["tab:blue"] * len(tensors) + ["tab:orange"] * len(outputs)
    ax.bar(x, e2e, color=colors, label="end to end vs float")
    if own:
        ax.plot(x[:len(own)], own, "k.", markersize=8, label="own quantization only")
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("SQNR (dB)")
    title = f"quantization SQNR per tensor ({report.get('target', '?')}, {report.get('method', '?')})"
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
