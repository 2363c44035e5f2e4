"""Splitting a graph among backends: each node goes to the first backend, in priority
order, that supports it; the order of the nodes is then chosen (among topological
orders) to keep each backend's nodes together, so partitions are few and large."""
from __future__ import annotations

import heapq
from dataclasses import dataclass

from .backend import Backend
from .errors import UnsupportedError
from .ir import Graph, Node


@dataclass
class Partition:
    backend: Backend
    nodes: list[Node]

    @property
    def reads(self) -> list[str]:
        """Values the partition reads from outside itself."""
        made = {o for n in self.nodes for o in n.outputs}
        return list(dict.fromkeys(i for n in self.nodes for i in n.inputs if i and i not in made))


def assign(graph: Graph, backends: list[Backend]) -> dict[int, Backend]:
    """node id -> the first backend that supports it; UnsupportedError lists every node
    that none supports, with the reason the first backend offering a ``why_not(node,
    graph)`` method gives."""
    chosen, missing = {}, []
    for node in graph.nodes:
        for b in backends:
            if b.supports(node, graph):
                chosen[id(node)] = b
                break
        else:
            missing.append((node, _reason(node, graph, backends)))
    if missing:
        raise UnsupportedError(missing)
    return chosen


def _reason(node: Node, graph: Graph, backends: list[Backend]) -> str | None:
    for b in backends:
        why_not = getattr(b, "why_not", None)
        if why_not is not None:
            why = why_not(node, graph)
            if why:
                return why
    return None


def partition(graph: Graph, backends: list[Backend]) -> list[Partition]:
    chosen = assign(graph, backends)
    nodes = graph.nodes
    index = {id(n): k for k, n in enumerate(nodes)}
    producer = graph.producers()
    deps = {id(n): {id(producer[i]) for i in n.inputs if i in producer} for n in nodes}
    users: dict[int, list[Node]] = {}
    for n in nodes:
        for d in deps[id(n)]:
            users.setdefault(d, []).append(n)
    waiting = {k: len(v) for k, v in deps.items()}
    # the ready nodes' positions, one heap per backend (few backends): O(n log n) in all
    ready: dict[int, list[int]] = {id(b): [] for b in backends}
    for k, n in enumerate(nodes):
        if not waiting[id(n)]:
            ready[id(chosen[id(n)])].append(k)
    parts: list[Partition] = []
    while any(ready.values()):
        current = ready[id(parts[-1].backend)] if parts else None
        # stay on the current backend while it has ready nodes; else the earliest node
        heap = current or min((h for h in ready.values() if h), key=lambda h: h[0])
        node = nodes[heapq.heappop(heap)]
        if heap is current:
            parts[-1].nodes.append(node)
        else:
            parts.append(Partition(chosen[id(node)], [node]))
        for u in users.get(id(node), []):
            waiting[id(u)] -= 1
            if not waiting[id(u)]:
                heapq.heappush(ready[id(chosen[id(u)])], index[id(u)])
    return parts
