"""Control flow: If, Loop and Scan (opset 13+ forms), whose bodies are subgraphs.

A session plans each body once, as a session of its own over the same backends, and
puts the result in the node's attribute in place of the Graph (see
:class:`qkernels.graph.session.Body`): an object whose ``run(formal, outer)`` runs the
body on its formal inputs (a list, in the body's order) and on the values it reads
from the scopes around it (a dict by the names the body uses, :attr:`Node.implicit`),
and returns its outputs as arrays the caller owns. The operators here only iterate.

Loops are bounded: a Loop runs at most :data:`MAX_ITERATIONS` iterations (read at each
call, so a program may change it), whatever its trip count, and stops with a ModelError
when its condition still holds then; the scan outputs a Loop or Scan collects count
against :data:`qkernels.graph.model.MAX_ELEMENTS` as they grow. A loop runs in Python
between iterations, so Ctrl-C interrupts it.
"""
from __future__ import annotations

import numpy as np

from ... import model
from ...ir import Graph
from ...validate import fail
from .common import norm_axis
from .registry import op

#: the most iterations one Loop node may run (the guard against malformed or endless loops)
MAX_ITERATIONS = 1 << 20


def _body(node, attr: str):
    body = node.attrs[attr]
    if isinstance(body, Graph) or not hasattr(body, "run"):
        fail(node, "its subgraph runs only inside a Session (the session plans it at load)")
    return body


def _split(node, args) -> tuple[list, dict]:
    """(the explicit inputs, the implicit ones by the names the bodies use)."""
    n = len(args) - len(node.implicit)
    return list(args[:n]), dict(zip(node.implicit, args[n:]))


def _graph(node, attr: str) -> Graph:
    body = node.attrs[attr]
    return body if isinstance(body, Graph) else body.graph


def _one(node, value, what: str):
    v = np.asarray(value)
    if v.size != 1:
        fail(node, f"{what} must hold one value, got shape {list(v.shape)}")
    return v.reshape(-1)[0]


def _stacked(node, parts: list, info, what: str) -> np.ndarray:
    """The per-iteration values ``parts`` stacked along a new axis 0 (each the same shape);
    with no iteration, an empty array of the body output's declared type ``info``."""
    if parts:
        shapes = {p.shape for p in parts}
        if len(shapes) > 1:
            fail(node, f"{what} changes shape between iterations ({sorted(shapes)[:3]}): scan outputs cannot")
        return np.stack(parts)
    if info.dtype is None:
        fail(node, f"{what}: no iteration ran and the body does not declare the output's type")
    dims = tuple(d if isinstance(d, int) else 0 for d in info.shape or ())
    return np.empty((0,) + dims, info.dtype)


def _grow(node, total: int, part) -> int:
    total += np.asarray(part).size
    if total > model.MAX_ELEMENTS:
        fail(node, f"its scan outputs pass {model.MAX_ELEMENTS} elements (qkernels.graph.model.MAX_ELEMENTS)")
    return total


# ----------------------------------------------------------------------------- If

def _check_if(node, graph):
    for attr in ("then_branch", "else_branch"):
        body = _graph(node, attr)
        if body.inputs:
            return f"{attr} takes {len(body.inputs)} input(s); an If branch takes none"
        if len(body.outputs) != len(node.outputs):
            return f"{attr} makes {len(body.outputs)} output(s), the node has {len(node.outputs)}"
    return None


@op("If", attrs=("then_branch", "else_branch"), check=_check_if)
def if_(node, cond, *args):
    _, outer = _split(node, (cond, *args))
    branch = "then_branch" if _one(node, cond, "the condition") else "else_branch"
    return tuple(_body(node, branch).run([], outer))


# --------------------------------------------------------------------------- Loop

def _loop_counts(node) -> tuple[int, int]:
    """(N loop-carried values, K scan outputs) of a Loop node."""
    body = _graph(node, "body")
    return len(body.inputs) - 2, len(body.outputs) - len(body.inputs) + 1


def _check_loop(node, graph):
    body = _graph(node, "body")
    n, k = _loop_counts(node)
    if n < 0 or k < 0:
        return (f"the body takes {len(body.inputs)} input(s) and makes {len(body.outputs)}: it must take "
                "(iteration, condition, N carried) and make (condition, N carried, K scan outputs)")
    if len(node.explicit_inputs) != 2 + n:
        return f"the body carries {n} value(s), the node gives {len(node.explicit_inputs) - 2}"
    if len(node.outputs) > n + k:
        return f"the node has {len(node.outputs)} outputs, the body makes {n + k}"
    return None


@op("Loop", attrs=("body",), check=_check_loop)
def loop(node, trip=None, cond=None, *args):
    explicit, outer = _split(node, (trip, cond, *args))
    carried = explicit[2:]
    body, info = _body(node, "body"), _graph(node, "body")
    n, k = _loop_counts(node)
    limit = MAX_ITERATIONS
    trips = None if trip is None else int(_one(node, trip, "the trip count M"))
    go = True if cond is None else bool(_one(node, cond, "the condition"))
    scans: list[list] = [[] for _ in range(k)]
    it = total = 0
    while go and (trips is None or it < trips):
        if it == limit:
            fail(node, f"ran {limit} iterations and its condition still holds "
                       "(limit: qkernels.graph.backends.reference.control.MAX_ITERATIONS)")
        out = body.run([np.array(it, np.int64), np.array(go), *carried], outer)
        # the body's condition ends the loop even without a condition input, as in ONNX
        # Runtime (the spec's pseudo-code says "ignored" there; ORT is what models meet)
        go = bool(_one(node, out[0], "the body's condition"))
        carried = out[1:1 + n]
        for j in range(k):
            scans[j].append(out[1 + n + j])
            total = _grow(node, total, out[1 + n + j])
        it += 1
    results = list(carried) + [_stacked(node, s, info.outputs[1 + n + j], f"scan output {j}")
                               for j, s in enumerate(scans)]
    return tuple(results[:len(node.outputs)])


# --------------------------------------------------------------------------- Scan

def _scan_attrs(node, m: int, k: int):
    def get(name, count):
        got = node.attrs.get(name)
        got = [0] * count if got is None else [int(v) for v in got]
        if len(got) != count:
            raise ValueError(f"{name} has {len(got)} value(s) for {count}")
        return got
    dirs_in, dirs_out = get("scan_input_directions", m), get("scan_output_directions", k)
    if any(d not in (0, 1) for d in dirs_in + dirs_out):
        raise ValueError("scan directions are 0 (forward) or 1 (reverse)")
    return get("scan_input_axes", m), dirs_in, get("scan_output_axes", k), dirs_out


def _check_scan(node, graph):
    body = _graph(node, "body")
    m = node.attrs.get("num_scan_inputs", 0)
    n = len(node.explicit_inputs) - m
    if m < 1 or n < 0:
        return f"num_scan_inputs {m} must be between 1 and the node's {len(node.explicit_inputs)} inputs"
    if len(body.inputs) != n + m:
        return f"the body takes {len(body.inputs)} input(s); the node gives {n} state(s) and {m} scan input(s)"
    k = len(body.outputs) - n
    if k < 0 or len(node.outputs) != n + k:
        return f"the body makes {len(body.outputs)} output(s); the node has {len(node.outputs)}"
    _scan_attrs(node, m, k)   # ValueError: the registry reports the attributes as malformed
    return None


@op("Scan", attrs=("body", "num_scan_inputs", "scan_input_axes", "scan_input_directions", "scan_output_axes",
                   "scan_output_directions"), check=_check_scan)
def scan(node, *args):
    explicit, outer = _split(node, args)
    body, info = _body(node, "body"), _graph(node, "body")
    m = node.attrs["num_scan_inputs"]
    n = len(explicit) - m
    k = len(info.outputs) - n
    axes_in, dirs_in, axes_out, dirs_out = _scan_attrs(node, m, k)
    states, xs = explicit[:n], [np.asarray(x) for x in explicit[n:]]
    axes_in = [norm_axis(node, a, x.ndim) for a, x in zip(axes_in, xs)]
    lengths = {x.shape[a] for a, x in zip(axes_in, xs)}
    if len(lengths) != 1:
        fail(node, f"its scan inputs have different lengths {sorted(lengths)} along their scan axes")
    steps = lengths.pop()
    scans: list[list] = [[] for _ in range(k)]
    total = 0
    for t in range(steps):
        parts = [np.take(x, steps - 1 - t if d else t, axis=a) for x, a, d in zip(xs, axes_in, dirs_in)]
        out = body.run([*states, *parts], outer)
        states = out[:n]
        for j in range(k):
            scans[j].append(out[n + j])
            total = _grow(node, total, out[n + j])
    results = list(states)
    for j, (parts, axis, d) in enumerate(zip(scans, axes_out, dirs_out)):
        y = _stacked(node, parts[::-1] if d else parts, info.outputs[n + j], f"scan output {j}")
        results.append(np.moveaxis(y, 0, norm_axis(node, axis, y.ndim)))
    return tuple(results)
