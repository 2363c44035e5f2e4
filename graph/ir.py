"""The runner's view of an ONNX graph: nodes with decoded attributes, initializers as
numpy arrays, typed inputs and outputs, a checked topological order."""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np

from .errors import ModelError


@dataclass
class Node:
    name: str
    op_type: str
    domain: str                     # "" for the default ONNX domain
    inputs: list[str]               # "" marks an omitted optional input
    outputs: list[str]
    attrs: dict = field(default_factory=dict)
    #: the names by which the node's subgraphs (If, Loop, Scan bodies) read the values of
    #: its last len(implicit) inputs from the enclosing scope (ONNX Runtime's implicit
    #: inputs): appended to ``inputs`` so that order, liveness, partitions and plans count
    #: them as the inputs they are; renaming an input never renames what a body calls it
    implicit: tuple = ()

    @property
    def explicit_inputs(self) -> list[str]:
        """The inputs the operator's schema defines (``inputs`` less the implicit ones)."""
        return self.inputs[:len(self.inputs) - len(self.implicit)]

    def subgraphs(self) -> list:
        """(attribute name, Graph) of each subgraph the node holds."""
        return [(k, v) for k, v in self.attrs.items() if isinstance(v, Graph)]

    @property
    def key(self) -> str:
        return f"{self.domain}::{self.op_type}" if self.domain else self.op_type

    def __repr__(self):
        return f"Node({self.name!r}, {self.key}, {self.inputs} -> {self.outputs})"


@dataclass
class ValueInfo:
    name: str
    dtype: np.dtype | None          # None when the model does not say
    shape: tuple | None             # ints, names of symbolic dims (str) or None per axis


@dataclass
class Graph:
    nodes: list[Node]               # topological order
    initializers: dict[str, np.ndarray]
    inputs: list[ValueInfo]         # graph inputs that are not initializers
    outputs: list[ValueInfo]
    opset: int
    name: str = ""
    metadata: dict = field(default_factory=dict)   # the model's metadata_props
    #: a subgraph's free names: what its nodes read from the enclosing graphs (in order)
    outer: list = field(default_factory=list)

    def producers(self) -> dict[str, Node]:
        return {o: n for n in self.nodes for o in n.outputs if o}

    def consumers(self) -> dict[str, list[Node]]:
        out: dict[str, list[Node]] = {}
        for n in self.nodes:
            for i in n.inputs:
                if i:
                    out.setdefault(i, []).append(n)
        return out


def topological(nodes: list[Node], available: set[str]) -> list[Node]:
    """Nodes in an order where every input is produced first (Kahn's algorithm, stable:
    the model's order when it is already valid). ModelError on cycles or inputs that
    nothing produces."""
    produced_by = {}
    for n in nodes:
        for o in n.outputs:
            if o:
                if o in produced_by or o in available:
                    raise ModelError(f"value {o!r} is produced more than once (node {n.name!r})")
                produced_by[o] = n
    for n in nodes:
        for i in n.inputs:
            if i and i not in produced_by and i not in available:
                raise ModelError(f"node {n.name!r} ({n.op_type}) reads {i!r}, which no node, input or "
                                 "initializer provides")
    waiting = {id(n): sum(1 for i in set(n.inputs) if i and i in produced_by) for n in nodes}
    users: dict[int, list[Node]] = {}
    for n in nodes:
        for i in set(n.inputs):
            if i and i in produced_by:
                users.setdefault(id(produced_by[i]), []).append(n)
    # a heap of the ready nodes' positions: always the earliest ready node next, O(n log n)
    index = {id(n): k for k, n in enumerate(nodes)}
    ready = [k for k, n in enumerate(nodes) if waiting[id(n)] == 0]
    order = []
    while ready:
        n = nodes[heapq.heappop(ready)]
        order.append(n)
        for u in users.get(id(n), []):
            waiting[id(u)] -= 1
            if waiting[id(u)] == 0:
                heapq.heappush(ready, index[id(u)])
    if len(order) != len(nodes):
        stuck = [n.name or n.op_type for n in nodes if waiting[id(n)] > 0]
        raise ModelError(f"the graph has a cycle through node(s) {', '.join(stuck[:10])}")
    return order
