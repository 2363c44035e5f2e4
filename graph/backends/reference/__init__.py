"""The reference backend: every supported operator in plain numpy, following the ONNX
specification (opset 13 and later). Slow and simple on purpose: it is the oracle of
the tests and the last fallback of a session.

:mod:`.registry` holds the operator table (``OPS``, ``ATTRS``, ``CHECKS``, ``ARITY``), the
``@op`` decorator that fills it, :func:`why_not` and :func:`run_node`; one module per
family of operators registers into it when this package is imported.

Conventions of the operators:

* dtypes follow the specification: an op returns its inputs' dtype (float16 stays
  float16, int8 stays int8) unless the op defines another. Where numpy would lose
  precision in float16 (sums, products of several terms, transcendental chains), the
  computation runs in float32 and the result is rounded once back to float16.
* integer arithmetic wraps like fixed-width C integers; integer Div truncates toward
  zero.
* the quantized operators are exact: integer accumulations are done exactly (int64, or
  float64 matmuls whose every partial sum is an integer below 2**53), accumulators wrap
  to int32 like ONNX Runtime's, and requantization is
  ``saturate(round_half_even(float32(acc) * float32((s_a * s_b) / s_y)) + z_y)`` with the
  scale computed in float32 in that order, as ONNX Runtime and qkernels do.
* an attribute or mode an op does not implement makes ``why_not`` refuse the node
  (``attrs=`` lists what each op reads, ``check=`` inspects values); a dtype only known
  when running raises ModelError rather than computing something else.
"""
from __future__ import annotations

from ...backend import Backend, run_steps
from ...ir import Graph, Node
# the families register their operators into the registry when imported
from . import (activations, cast, control, conv, elementwise, fused, generators, indexing, linalg,  # noqa: F401
               logical, normalization, ort_contrib, ort_transformer, quantized, recurrent, reduction, resize, shape, tflite)
from .registry import ARITY, ATTRS, CHECKS, OPS, op, run_node, why_not

__all__ = ["ReferenceBackend", "OPS", "ATTRS", "CHECKS", "ARITY", "op", "run_node", "why_not"]


class ReferenceBackend(Backend):
    name = "reference"

    def supports(self, node: Node, graph: Graph) -> bool:
        return why_not(node, graph) is None

    def why_not(self, node: Node, graph: Graph) -> str | None:
        return why_not(node, graph)

    def placement(self, node: Node, graph: Graph) -> str:
        return "reference"

    def steps(self, nodes: list[Node], graph: Graph):
        return [(node, lambda values, node=node: run_node(node, values)) for node in nodes]

    def compile(self, nodes: list[Node], graph: Graph):
        steps = self.steps(nodes, graph)

        def run(values, timer=None):
            return run_steps(steps, values, timer)
        run.accepts_timer = True
        return run
