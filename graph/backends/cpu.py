"""The cpu backend: qkernels' kernels for the operators they serve, the reference
operators for the rest."""
from __future__ import annotations

from ..backend import Backend
from ..ir import Graph, Node
from .reference import OPS, run_node

#: op key -> function(node, graph) returning a kernel runner (values -> outputs), or
#: None when this node is not one the kernels serve (dtypes, attributes)
KERNELS: dict = {}


class CpuBackend(Backend):
    name = "cpu"

    def supports(self, node: Node, graph: Graph) -> bool:
        return node.key in KERNELS or node.key in OPS

    def compile(self, nodes: list[Node], graph: Graph):
        steps = []
        for node in nodes:
            make = KERNELS.get(node.key)
            fast = make(node, graph) if make else None
            steps.append(fast or (lambda values, node=node: run_node(node, values)))

        def run(values):
            scope = dict(values)
            out = {}
            for step in steps:
                produced = step(scope)
                scope.update(produced)
                out.update(produced)
            return out
        return run
