"""The reference backend: every supported operator in plain numpy, following the ONNX
specification (opset 13 and later). Slow and simple on purpose: it is the oracle of
the tests and the last fallback of a session.

An operator is a function ``f(node, *inputs) -> output or tuple of outputs``, registered
with ``@op("Name")`` (``@op("Name", domain="com.microsoft")``). Omitted optional inputs
arrive as None.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..backend import Backend
from ..ir import Graph, Node

OPS: dict[str, Callable] = {}


def op(*names: str, domain: str = ""):
    def register(fn):
        for name in names:
            OPS[f"{domain}::{name}" if domain else name] = fn
        return fn
    return register


def run_node(node: Node, values) -> dict:
    fn = OPS[node.key]
    args = [values[i] if i else None for i in node.inputs]
    result = fn(node, *args)
    if not isinstance(result, tuple):
        result = (result,)
    return {name: np.asarray(r) for name, r in zip(node.outputs, result) if name}


class ReferenceBackend(Backend):
    name = "reference"

    def supports(self, node: Node, graph: Graph) -> bool:
        return node.key in OPS

    def compile(self, nodes: list[Node], graph: Graph):
        def run(values):
            scope = dict(values)
            out = {}
            for node in nodes:
                produced = run_node(node, scope)
                scope.update(produced)
                out.update(produced)
            return out
        return run


# The operators themselves live in reference_ops.py (imported for its registrations).
from . import reference_ops  # noqa: E402,F401
