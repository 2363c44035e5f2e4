"""1-D float ``Conv`` on the cpu backend's 2-D convolution (audio models: silero VAD's
STFT and encoder): a Conv whose constant weights are (O, C/groups, K) runs as the 2-D
Conv of height 1 — weights (O, C/groups, 1, K), the input (N, C, L) viewed as
(N, C, 1, L), the result viewed back as (N, O, L'); views only, no copies, so the
node-by-node runner and the plan's bound calls are cpu.py's own. Other Convs go to
cpu.py's maker unchanged.

Importing this module wraps ``cpu.KERNELS["Conv"]`` (graph/backends/__init__.py imports it
after cpu.py).
"""
from __future__ import annotations

import dataclasses

from ..ir import Graph, Node
from . import cpu
from .cpu import _CONV_ATTRS, _const, kernel

_make_conv_2d = cpu.KERNELS["Conv"]


def _attrs_2d(attrs: dict) -> dict | None:
    """The 2-D Conv attributes of a 1-D Conv's (height 1, no padding on it), or None."""
    out = dict(attrs)
    for name, pad in (("strides", 1), ("dilations", 1), ("kernel_shape", 1)):
        if name in attrs:
            if len(attrs[name]) != 1:
                return None
            out[name] = [pad, int(attrs[name][0])]
    if "pads" in attrs:
        if len(attrs["pads"]) != 2:
            return None
        out["pads"] = [0, int(attrs["pads"][0]), 0, int(attrs["pads"][1])]
    return out


@kernel("Conv", attrs=_CONV_ATTRS)
def _make_conv(node: Node, graph: Graph):
    W = _const(graph, node.inputs[1]) if len(node.inputs) > 1 else None
    if W is None or W.ndim != 3:
        return _make_conv_2d(node, graph)
    attrs = _attrs_2d(node.attrs)
    if attrs is None:
        return None
    node2 = dataclasses.replace(node, attrs=attrs)
    graph2 = dataclasses.replace(graph, initializers={**graph.initializers, node.inputs[1]: W[:, :, None, :]})
    inner = _make_conv_2d(node2, graph2)
    if inner is None:
        return None
    x, result = node.inputs[0], node.outputs[0]

    def run(values):
        data = values[x]
        if data.ndim != 3:      # not the 1-D Conv of these weights: the reference says why
            raise cpu._NotServed
        y = inner({**values, x: data[:, :, None, :]})[result]
        return {result: y[:, :, 0, :]}

    def bind(ins, outs):
        binder = getattr(inner, "bind", None)
        if binder is None or ins[0] is None or ins[0].ndim != 3 or outs[0].ndim != 3:
            return None
        return binder([ins[0][:, :, None, :], *ins[1:]], [outs[0][:, :, None, :]])
    run.bind = bind
    run.placement = getattr(inner, "placement", "native")
    return cpu._fallback(node, graph, run)
