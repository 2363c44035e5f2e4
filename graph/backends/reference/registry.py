"""The table of reference operators and what reads it.

An operator is a function ``f(node, *inputs) -> output or tuple of outputs``, registered
with ``@op("Name")`` (``@op("Name", domain="com.microsoft")``). Omitted optional inputs
arrive as None. ``@op(..., attrs=(...))`` names the attributes the function
understands (a node with any other attribute is refused, not run with it ignored;
``attrs=None`` accepts any), and ``@op(..., check=fn)`` adds
``fn(node, graph) -> None | reason`` for attribute values or modes it does not
implement; the function's parameters say how many inputs it takes and which are
required (those without a default may not be omitted). :func:`why_not` gathers all
three, and a session's UnsupportedError shows the reason next to the node. An error the
function raises while running reaches the caller as a ModelError naming the node
(:func:`qkernels.graph.validate.node_errors`).
"""
from __future__ import annotations

import inspect
from typing import Callable

import numpy as np

from ...errors import ModelError
from ...ir import Graph, Node
from ...validate import arity_text, node_errors

OPS: dict[str, Callable] = {}
#: op key -> the attribute names the implementation reads (None: not declared, any)
ATTRS: dict[str, frozenset | None] = {}
#: op key -> fn(node, graph) returning None when the node is supported, else the reason
CHECKS: dict[str, Callable] = {}
#: op key -> (inputs it requires, most inputs it takes or None for any number)
ARITY: dict[str, tuple[int, int | None]] = {}


def _arity(fn) -> tuple[int, int | None]:
    params = list(inspect.signature(fn).parameters.values())[1:]   # after ``node``
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return sum(1 for p in params if p.kind is not p.VAR_POSITIONAL and p.default is p.empty), None
    return sum(1 for p in params if p.default is p.empty), len(params)


def op(*names: str, domain: str = "", attrs=(), check: Callable | None = None):
    def register(fn):
        for name in names:
            key = f"{domain}::{name}" if domain else name
            OPS[key] = fn
            ATTRS[key] = None if attrs is None else frozenset(attrs)
            ARITY[key] = _arity(fn)
            if check is not None:
                CHECKS[key] = check
        return fn
    return register


def why_not(node: Node, graph: Graph | None = None) -> str | None:
    """None when the reference operators can run ``node``; else why not (one line)."""
    if node.key not in OPS:
        return "no implementation of this operator"
    required, most = ARITY[node.key]
    if len(node.inputs) < required or (most is not None and len(node.inputs) > most):
        return f"takes {arity_text(required, most)} inputs, got {len(node.inputs)}"
    omitted = [k for k in range(required) if not node.inputs[k]]
    if omitted:
        return f"required input(s) {omitted} given as \"\""
    known = ATTRS.get(node.key)
    if known is not None:
        extra = sorted(set(node.attrs) - known)
        if extra:
            return f"attribute(s) {', '.join(extra)} not supported"
    check = CHECKS.get(node.key)
    if check is not None:
        try:
            return check(node, graph)
        except (TypeError, ValueError, KeyError, IndexError) as exc:
            return f"malformed attributes ({exc})"
    return None


def run_node(node: Node, values) -> dict:
    fn = OPS[node.key]
    args = [values[i] if i else None for i in node.inputs]
    with node_errors(node), np.errstate(all="ignore"):   # inf/nan results are ONNX semantics, not warnings
        result = fn(node, *args)
    if not isinstance(result, tuple):
        result = (result,)
    if len(node.outputs) > len(result) and any(node.outputs[len(result):]):
        raise ModelError(f"node {node.name!r} ({node.key}) asks for {len(node.outputs)} outputs; "
                         f"the reference implementation makes {len(result)}")
    return {name: np.asarray(r) for name, r in zip(node.outputs, result) if name}
