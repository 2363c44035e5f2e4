"""What each quantized tensor and each quantized layer costs the model's outputs on its
own: the float model run on the first :data:`SAMPLES` calibration samples, then, for
one change at a time (a tensor through its QDQ pair; a layer's input, weight and output
quantized), only the nodes downstream of the change re-run on the reference operators,
and the outputs compared with float's (SQNR in dB over every model output).

This is "quantizing it alone" (the report's ``alone_sqnr_db``, the culprit ranking, and
the order in which ``keep_float=`` / ``min_sqnr_db=`` keep layers in float): a tensor
whose own error is large but is damped downstream ranks low, an Add whose error every
later layer carries ranks high. Interactions between changes are not measured here;
the accuracy search scores the real quantized model after each step.
"""
from __future__ import annotations

import math

import numpy as np

from .calibration import iter_calibration, split_feeds
from .graphutil import with_outputs
from .params import fake_quantize
from .shards import map_items
from .weights import dequantize_weight, quantize_weight

__all__ = ["SAMPLES", "Probe", "probe_each", "output_sqnr", "output_cosine"]

#: calibration samples the probe runs on (the first ones)
SAMPLES = 4


def _first(model, calibration_data, n: int) -> dict:
    """The first ``n`` samples of the first calibration batch (the whole batch when it
    has no single leading axis to cut)."""
    inits = {t.name for t in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in inits]
    return split_feeds(next(iter(iter_calibration(calibration_data, inputs))), n)[0]


def output_sqnr(ref: dict, got: dict) -> float:
    """SQNR (dB) of ``got`` against ``ref`` over all their arrays together (inf: equal)."""
    signal = noise = 0.0
    for name, y in ref.items():
        y = np.asarray(y, np.float64)
        e = np.asarray(got[name], np.float64) - y
        signal += float(np.vdot(y, y))
        noise += float(np.vdot(e, e))
    if noise == 0.0:
        return math.inf
    return 10.0 * math.log10(signal / noise) if signal > 0 else -math.inf


def output_cosine(ref: dict, got: dict) -> float:
    """Cosine of ``got`` to ``ref``: per output the mean over rows (vectors along the last
    axis: a token's hidden state, a class score vector) of the row cosine; the worst
    output. A row that is zero in both counts as 1."""
    worst = 1.0
    for name, y in ref.items():
        y = np.asarray(y, np.float64)
        g = np.asarray(got[name], np.float64)
        y, g = y.reshape(-1, y.shape[-1] if y.ndim else 1), g.reshape(-1, y.shape[-1] if y.ndim else 1)
        dot, yy, gg = (y * g).sum(1), (y * y).sum(1), (g * g).sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            cos = np.where((yy == 0) & (gg == 0), 1.0, dot / np.sqrt(yy * gg))
        cos = np.nan_to_num(cos, nan=0.0)
        worst = min(worst, float(cos.mean()) if cos.size else 1.0)
    return worst


class Probe:
    """The float ``model``'s values on the first ``samples`` samples of
    ``calibration_data``; :meth:`sqnr` re-runs what a change reaches."""

    def __init__(self, model, calibration_data, samples: int = SAMPLES, feeds: dict | None = None):
        from ..graph import Session
        from ..graph.model import to_graph
        self.graph = to_graph(model)
        names = list(dict.fromkeys(o for n in self.graph.nodes for o in n.outputs if o))
        feeds = _first(model, calibration_data, samples) if feeds is None else feeds
        session = Session(with_outputs(model, names).SerializeToString())
        self.scope = {**self.graph.initializers, **feeds, **dict(zip(names, session.run(names, feeds)))}
        self.outputs = [o.name for o in self.graph.outputs]
        self.reference = {o: self.scope[o] for o in self.outputs}

    def sqnr(self, changes: dict, weights: dict | None = None, after: dict | None = None) -> float:
        """Output SQNR (dB) with the tensors of ``changes`` (name -> value) and
        ``weights`` (initializer -> value) replaced, and the outputs named in ``after``
        (name -> function) passed through it where they are computed."""
        from ..graph.backends.reference import run_node
        after = after or {}
        scope = {**self.scope, **(weights or {}), **changes}
        dirty = set(changes) | set(weights or {})
        for node in self.graph.nodes:
            if not any(i in dirty for i in node.inputs):
                continue
            produced = run_node(node, scope)
            for name, fn in after.items():
                if name in produced:
                    produced[name] = fn(produced[name])
            scope.update(produced)
            dirty.update(produced)
        return output_sqnr(self.reference, {o: scope[o] for o in self.outputs})

    def tensor_alone(self, name: str, scale, zero_point, dtype) -> float:
        """Output SQNR with only tensor ``name`` through its QDQ pair."""
        return self.sqnr({name: fake_quantize(self.scope[name], scale, zero_point, dtype)})

    def layer_alone(self, x: str | None, w: str | None, axis, y: str | None, act_params: dict, dtype,
                    power_of_two: bool = False) -> float:
        """Output SQNR with only one layer quantized: its activation input ``x`` and
        output ``y`` (where they have ``act_params``) and its weight ``w`` (per ``axis``)."""
        changes, weights, after = {}, {}, {}
        if x in act_params:
            changes[x] = fake_quantize(self.scope[x], *act_params[x][:2], dtype)
        if w is not None:
            q, scale, _ = quantize_weight(self.scope[w], axis, power_of_two)
            weights[w] = dequantize_weight(q, scale, axis)
        if y in act_params:
            scale, zp = act_params[y][:2]
            after[y] = lambda v: fake_quantize(v, scale, zp, dtype)
        if not changes and not weights:     # nothing upstream of y changes: y's own pair alone
            return self.sqnr({y: after[y](self.scope[y])}) if after else math.inf
        return self.sqnr(changes, weights, after)


def probe_each(model, calibration_data, call: str, items: list[tuple], shared: tuple = (),
               samples: int = SAMPLES, client=None, progress: bool = False, desc: str = "") -> list[float]:
    """``[probe.<call>(*item, *shared) for item in items]`` on a :class:`Probe` of ``model``
    (its first ``samples`` calibration samples); with a ``client`` the items are spread
    over the workers (each builds its own probe from the same samples: the same values)."""
    feeds = _first(model, calibration_data, samples)
    if client is None:
        probe = Probe(model, None, samples, feeds)
        if progress:
            from tqdm import tqdm
            items = tqdm(items, desc=desc, unit="item")
        return [getattr(probe, call)(*item, *shared) for item in items]
    return map_items(_probe_chunk, list(items), model.SerializeToString(), feeds, call, shared, client=client)


def _probe_chunk(items, model: bytes, feeds, call, shared):
    import onnx
    probe = Probe(onnx.load_from_string(model), None, feeds=feeds)
    return [getattr(probe, call)(*item, *shared) for item in items]
