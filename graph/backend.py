"""The backend plug-in protocol, and the registry of backends by name.

A backend says which nodes it can run and compiles a run of nodes (a partition) into a
callable. The runner gives every accelerator backend the nodes it takes, in as few
and as large partitions as it can (each switch between backends costs copies), and
every other node falls back to ``cpu`` (qkernels' kernels), then ``reference``
(plain numpy, every operator: the oracle of the tests).

Third-party backends register through the ``qkernels.backends`` entry-point group: an
entry point named like the backend, pointing at a Backend subclass or a factory
returning an instance::

    [project.entry-points."qkernels.backends"]
    mynpu = "mynpu_qkernels:MyNpuBackend"
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from .ir import Graph, Node

Kernel = Callable[[Mapping[str, np.ndarray]], "dict[str, np.ndarray]"]


#: how a node runs, as ``explain()`` and the profile say: qkernels' native kernels, numpy
#: (BLAS) code of a backend, the numpy reference operator, or a backend's own code; in a
#: profile also "view" (a reshape the compiled plan made a view of its input: no work) and
#: "fixed" (shape arithmetic the plan computed once: a constant of the plan, no work)
PLACEMENTS = ("native", "numpy", "reference", "backend", "view", "fixed")


def run_steps(steps, values, timer=None) -> dict:
    """Run ``steps`` ((node, fn(values) -> outputs) in order) on a copy of ``values``;
    the outputs of all. ``timer(node, seconds)`` is told each step's time when given."""
    import time
    scope = dict(values)
    out = {}
    for node, fn in steps:
        if timer is None:
            produced = fn(scope)
        else:
            t0 = time.perf_counter()
            produced = fn(scope)
            timer(node, time.perf_counter() - t0)
        scope.update(produced)
        out.update(produced)
    return out


class Backend:
    """Subclass and override ``supports`` and ``compile`` (``why_not``, ``rewrite`` and
    ``placement`` are optional). A compiled callable may take a ``timer`` keyword (and
    set ``accepts_timer = True`` on itself): then a profiled run times each node."""

    #: the name sessions and reports use
    name: str = "backend"

    def placement(self, node: Node, graph: Graph) -> str:
        """Optional: how ``node`` runs here, one of :data:`PLACEMENTS` (default "backend")."""
        return "backend"

    def supports(self, node: Node, graph: Graph) -> bool:
        """Can this backend run ``node`` (its op, domain, attributes, and the dtypes and
        constant inputs it sees in ``graph``)?"""
        raise NotImplementedError

    def why_not(self, node: Node, graph: Graph) -> str | None:
        """Optional: why ``supports`` refuses ``node`` (one line, e.g. "auto_pad 'X' not
        supported"), shown next to the node in a session's UnsupportedError; None when
        there is no particular reason to give."""
        return None

    def rewrite(self, graph: Graph) -> Graph:
        """Optional: planning passes of this backend (fusions, layout changes), run on the
        whole graph after constant folding and before partitioning when the session lists
        this backend; the graph returned must compute the same outputs. The default
        returns ``graph`` unchanged."""
        return graph

    def compile(self, nodes: list[Node], graph: Graph) -> Kernel:
        """A callable running ``nodes`` (a partition, in order): it receives a mapping
        with at least every value the partition reads from outside, and returns the
        values it produces (every output of its nodes). It must be safe to call from
        several threads at once."""
        raise NotImplementedError

    def steps(self, nodes: list[Node], graph: Graph) -> "list[tuple[Node, Kernel]] | None":
        """Optional: ``nodes`` as one callable per node, ``fn(values) -> outputs`` (as
        ``compile``'s), each of which may carry ``fn.bind(inputs, outputs)``: the node bound
        to fixed arrays (its inputs, in the node's order, None for an omitted one; its
        outputs, to write), returning a no-argument callable that recomputes the outputs
        in place, or None when it cannot. A session compiles a static plan
        (:mod:`qkernels.graph.plan`) only when every backend of it gives its steps; the
        default, None, keeps the partition whole (run by ``compile``'s callable)."""
        return None

    def __repr__(self):
        return f"<backend {self.name}>"


_REGISTRY: dict[str, Callable[[], Backend]] = {}
_ENTRY_POINTS_LOADED = False


def register_backend(name: str, factory: Callable[[], Backend]) -> None:
    """Make ``name`` usable in ``Session(..., backends=[name])``."""
    _REGISTRY[name] = factory


def _load_entry_points() -> None:
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    from importlib.metadata import entry_points
    for ep in entry_points(group="qkernels.backends"):
        if ep.name not in _REGISTRY:
            _REGISTRY[ep.name] = lambda ep=ep: ep.load()()


def available_backends() -> list[str]:
    _load_entry_points()
    return sorted(_REGISTRY)


def get_backend(spec) -> Backend:
    """A Backend instance from an instance or a registered name."""
    if isinstance(spec, Backend):
        return spec
    if isinstance(spec, str):
        _load_entry_points()
        if spec not in _REGISTRY:
            raise ValueError(f"unknown backend {spec!r}; available: {', '.join(available_backends())}")
        backend = _REGISTRY[spec]()
        if not isinstance(backend, Backend):
            raise TypeError(f"backend {spec!r} made a {type(backend).__name__}, not a qkernels.graph.Backend")
        return backend
    raise TypeError(f"a backend is a name or a qkernels.graph.Backend, got {type(spec).__name__}")
