"""Splitting a graph among backends: each node goes to the first backend, in priority
order, that supports it; the order of the nodes is then chosen (among topological
orders) to keep each backend's nodes together, so partitions are few and large."""
from __future__ import annotations

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
    index = {id(n): k for k, n in enumerate(graph.nodes)}
    producer = graph.producers()
    deps = {id(n): {id(producer[i]) for i in n.inputs if i in producer} for n in graph.nodes}
    users: dict[int, list[Node]] = {}
    for n in graph.nodes:
        for d in deps[id(n)]:
            users.setdefault(d, []).append(n)
    waiting = {k: len(v) for k, v in deps.items()}
    ready = [n for n in graph.nodes if not waiting[id(n)]]
    parts: list[Partition] = []
    while ready:
        current = parts[-1].backend if parts else None
        same = [n for n in ready if chosen[id(n)] is current]
        # stay on the current backend while it has ready nodes; else the earliest node
        node = min(same or ready, key=lambda n: index[id(n)])
        ready.remove(node)
        if chosen[id(node)] is current:
            parts[-1].nodes.append(node)
        else:
            parts.append(Partition(chosen[id(node)], [node]))
        for u in users.get(id(node), []):
            waiting[id(u)] -= 1
            if not waiting[id(u)]:
                ready.append(u)
    return parts
