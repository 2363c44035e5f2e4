"""SmoothQuant scale migration (Xiao et al. 2023) on the float model, before calibration.

A transformer's activations have a few channels tens of times larger than the rest
(after LayerNorm, after GELU); a per-tensor int8 scale sized for them leaves the other
channels a handful of levels. Weights are easy to quantize per output channel. So per
input channel j of a MatMul ``x @ W``::

    s_j = max|x_j| ** alpha / max|W_j,:| ** (1 - alpha)
    x @ W = (x diag(s)^-1) @ (diag(s) W)

``diag(s)^-1`` goes into the op producing x, where it costs nothing: LayerNormalization
(gamma and beta divided by s) or a Mul by a constant (GELU's last ``* 0.5``); ``diag(s)``
into the rows of every constant weight reading x. A producer whose output has other
readers too (the residual Add after a LayerNorm) is duplicated for the MatMuls, so every
other reader sees the values it always saw: the float function is unchanged.
"""
from __future__ import annotations

import numpy as np

from .data import iter_calibration
from .graphutil import consumers, with_outputs

__all__ = ["smoothable", "channel_max", "smooth_quant"]

#: bounds of a migration scale: a dead channel (max 0) must not blow a weight up
_S_MIN, _S_MAX = 1e-4, 1e4


def smoothable(model) -> list[tuple]:
    """``(tensor, producer node, [MatMul readers])`` for every activation read by a
    MatMul with a constant 2-D weight and written by a LayerNormalization (axis -1) or a
    Mul by a constant."""
    from onnx import numpy_helper
    g = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    out = []
    for t, readers in consumers(g).items():
        p = producer.get(t)
        mms = [n for n in readers if n.op_type == "MatMul" and n.input[0] == t and n.input[1] != t
               and n.input[1] in inits and inits[n.input[1]].ndim == 2]
        if p is None or not mms or len({inits[n.input[1]].shape[0] for n in mms}) != 1:
            continue
        k = inits[mms[0].input[1]].shape[0]
        if p.op_type == "LayerNormalization" and p.output[0] == t and _axis(p) == -1 and p.input[1] in inits:
            out.append((t, p, mms))
        elif p.op_type == "Mul" and sum(i in inits for i in p.input) == 1:
            c = inits[next(i for i in p.input if i in inits)]
            if c.size in (1, k) and (c.ndim == 0 or c.shape[-1] in (1, k)):
                out.append((t, p, mms))
    return out


def _axis(node) -> int:
    return next((a.i for a in node.attribute if a.name == "axis"), -1)


def channel_max(model, calibration_data, tensors: list[str]) -> dict:
    """tensor -> max |x| per channel of the last axis over the calibration data (the
    float model run on it)."""
    from ..graph import Session
    inits = {t.name for t in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in inits]
    session = Session(with_outputs(model, tensors).SerializeToString())
    out: dict = {}
    for feeds in iter_calibration(calibration_data, inputs):
        for name, v in zip(tensors, session.run(tensors, feeds)):
            m = np.abs(np.asarray(v, np.float32)).reshape(-1, v.shape[-1]).max(0)
            out[name] = m if name not in out else np.maximum(out[name], m)
    return out


def smooth_quant(model, calibration_data, alpha: float):
    """The model with activation scale migrated into the weights (module docstring);
    returns ``(model, info)``: per smoothed tensor its producer, readers and the range of
    s and of the channel maxima before and after."""
    import copy

    from onnx import numpy_helper
    m = copy.deepcopy(model)
    g = m.graph
    sites = smoothable(m)
    if not sites:
        return m, []
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    amax = channel_max(m, calibration_data, [t for t, _, _ in sites])
    readers = consumers(g)
    info, new_inits, clones = [], [], {}
    for t, p, mms in sites:
        x_max = amax[t].astype(np.float64)
        w_max = np.max([np.abs(inits[n.input[1]]).max(1) for n in mms], axis=0).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            s = np.power(x_max, alpha) / np.power(w_max, 1.0 - alpha)
        s = np.where((x_max > 0) & (w_max > 0) & np.isfinite(s), s, 1.0)
        s = np.clip(s, _S_MIN, _S_MAX).astype(np.float32)
        # x / s in the producer: its float constants divided, as new initializers
        target = p
        if any(n not in mms for n in readers[t]):       # other readers keep the unscaled value
            target = copy.deepcopy(p)
            target.name, target.output[0] = f"{p.name}_smoothed", f"{t}_smoothed"
            del target.output[1:]
            clones[p.name] = target
            for n in mms:
                n.input[0] = target.output[0]
        scaled = [1, 2] if p.op_type == "LayerNormalization" else [k for k, i in enumerate(p.input) if i in inits]
        for k in scaled:
            if k < len(target.input) and target.input[k]:
                name = f"{target.input[k]}_smooth_{target.name.strip('/')}"
                new_inits.append(numpy_helper.from_array((inits[target.input[k]] / s).astype(np.float32), name))
                target.input[k] = name
        for n in mms:
            name = f"{n.input[1]}_smooth_{n.name.strip('/')}"
            new_inits.append(numpy_helper.from_array((inits[n.input[1]] * s[:, None]).astype(np.float32), name))
            n.input[1] = name
        info.append({"tensor": t, "producer": p.name, "duplicated": p.name in clones,
                     "readers": [n.name for n in mms], "alpha": float(alpha),
                     "s_min": float(s.min()), "s_max": float(s.max()),
                     "max_before": float(x_max.max()), "channel_spread_before": _spread(x_max),
                     "channel_spread_after": _spread(x_max / s)})
    nodes = []
    for n in g.node:
        nodes.append(n)
        if n.name in clones:
            nodes.append(clones[n.name])
    del g.node[:]
    g.node.extend(nodes)
    g.initializer.extend(new_inits)
    from .graphutil import drop_unused_initializers
    drop_unused_initializers(g)
    return m, info


def _spread(v: np.ndarray) -> float:
    """Largest over median channel maximum: how far the outlier channels stand out."""
    med = float(np.median(v))
    return float(v.max() / med) if med > 0 else float("inf")
