"""``method="auto"``: per tensor, the calibration method whose range hurts least where
it matters -- at the outputs of the nodes that read the tensor.

Every activation is observed once by an :class:`~qkernels.quant.observers.AutoObserver`
(one histogram, from which min-max, percentile, entropy and MSE each give a range).
Then, on the first :data:`AUTO_SAMPLES` samples of the calibration data, each tensor
``x`` is quantized with each candidate range (a QDQ round trip, the tensor's own
scale and zero point), its consumers are run on the reference operators with that
value and every other input in float, and the candidate with the least relative
squared error summed over the consumers' outputs,

    sum_c |f_c(Q(x)) - f_c(x)|^2 / |f_c(x)|^2,

wins (the first listed on ties). A Conv reading the tensor is judged on its first samples
up to :data:`CONV_ELEMENTS` input values (a large early feature map on one or two
samples, a small late one on all of them). A tensor no node reads (a model output) is judged by
its own error. The consumer's view matters because the tensor's own error (what the
MSE range minimises) weighs every value alike: a convolution with large weights on a
few channels, or a HardSigmoid gate whose slope is steep in a narrow band, does not.
"""
from __future__ import annotations

import numpy as np

from .params import fake_quantize, quant_params

__all__ = ["AUTO_SAMPLES", "capture_list", "choose_ranges"]

#: calibration samples the choice runs on (the first ones)
AUTO_SAMPLES = 8


def _relative_error(ref: dict, got: dict) -> float:
    err = 0.0
    for name, y in ref.items():
        y = np.asarray(y).reshape(-1)
        e = np.asarray(got[name]).reshape(-1) - y
        energy = float(np.dot(y, y))
        err += float(np.dot(e, e)) / energy if energy > 0 else float(np.dot(e, e))
    return err


#: values of a Conv's input that judge a candidate: a large feature map needs fewer samples
#: for as steady an estimate, and the convolutions are most of the choice's time
CONV_ELEMENTS = 1 << 18


def _samples_for(consumers, x: np.ndarray) -> np.ndarray:
    """``x`` as its consumers read it for the choice: when they are all Convs (whose
    input's axis 0 is the batch), its first samples up to :data:`CONV_ELEMENTS` values
    (at least one sample); else all of it."""
    if not consumers or any(n.op_type != "Conv" for n in consumers) or x.ndim < 3 or len(x) < 2:
        return x
    return x[:max(1, -(-CONV_ELEMENTS // max(1, x[0].size)))]


def _readers(graph) -> dict:
    """value -> the nodes reading it, each once (a node may read a value twice)."""
    return {k: list({id(n): n for n in v}.values()) for k, v in graph.consumers().items()}


def capture_list(graph, acts) -> list[str]:
    """The tensors :func:`choose_ranges` needs besides ``acts``: every non-constant input
    of the nodes that read them, in ``graph`` (the runner's Graph of the model:
    :func:`~qkernels.quant.calibration.calibrate` captures them on the first samples)."""
    readers = _readers(graph)
    return list(dict.fromkeys(i for a in acts for n in readers.get(a, []) for i in n.inputs
                              if i and i not in graph.initializers))


def choose_ranges(graph, values: dict, observers: dict, acts, act_dtype, symmetric: bool,
                  reduce_range: bool, power_of_two: bool) -> dict:
    """tensor -> (method, (lo, hi)) for every name in ``acts``: ``graph`` the runner's
    Graph of the model, ``values`` the float values of the first samples (the feeds,
    ``acts`` and :func:`capture_list`),
    ``observers`` their AutoObservers; the other arguments as
    :func:`~qkernels.quant.params.quant_params`."""
    from ..graph.backends.reference import run_node
    readers = _readers(graph)
    scope = {**graph.initializers, **values}
    chosen = {}
    for name in acts:
        cands, grids = {}, {}
        for method, (lo, hi) in observers[name].candidates(symmetric).items():
            grid = quant_params(lo, hi, act_dtype, symmetric=symmetric, reduce_range=reduce_range,
                                power_of_two=power_of_two)
            if grid not in grids.values():      # ranges that give the same grid are tried once
                cands[method], grids[method] = (lo, hi), grid
        if len(cands) == 1:
            chosen[name] = next(iter(cands.items()))
            continue
        consumers = readers.get(name, [])
        x = _samples_for(consumers, scope[name])
        base = [run_node(n, {**scope, name: x}) for n in consumers]   # the reference operators, as the trials
        best = None
        for method, (lo, hi) in cands.items():
            scale, zp = grids[method]
            xq = fake_quantize(x, scale, zp, act_dtype)
            if consumers:
                err = sum(_relative_error(ref, run_node(n, {**scope, name: xq})) for n, ref in zip(consumers, base))
            else:
                err = _relative_error({name: x}, {name: xq})
            if best is None or err < best[0]:
                best = (err, method, (lo, hi))
        chosen[name] = best[1:]
    return chosen
