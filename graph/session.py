"""Session: load a model, plan it (fold constants, let backends rewrite, partition),
run it. Like ONNX Runtime's InferenceSession."""
from __future__ import annotations

import contextvars
import dataclasses
import threading
import time
from collections import OrderedDict
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from .. import _dispatch
from .._layout import convertible, nhwc_to_nchw
from .backend import PLACEMENTS, Backend, get_backend
from .errors import RunError
from .fold import FOLD_LIMIT, fold_constants
from .ir import Graph, Node, ValueInfo
from .model import CONVERTED_KEY, load_graph
from .partition import Partition, partition
from .plan import Plan, PlanSpec, Replan, trace
from .tflite import is_tflite, load_tflite
from .validate import validate

#: input-shape sets whose plans a session keeps (least recently used dropped first)
PLAN_CACHE = 8


@dataclass(frozen=True)
class NodeArg:
    """A graph input or output: name, shape (ints, symbolic names or None) and numpy dtype."""
    name: str
    shape: tuple | None
    dtype: np.dtype | None

    @property
    def type(self) -> str:   # ONNX Runtime spells it "tensor(float)"
        return f"tensor({self.dtype})" if self.dtype is not None else "tensor(unknown)"


class Session:
    """Run an ONNX model (path, bytes or onnx.ModelProto) or a TFLite model (.tflite path
    or bytes: :mod:`qkernels.graph.tflite`) on qkernels.

    ``backends``: names or Backend instances, most preferred first; ``cpu`` (our kernels)
    and ``reference`` (numpy) are appended as the fallbacks when not listed. Planning
    rewrites (``Backend.rewrite``) come from the listed backends only, and from ``cpu``
    when none are listed: ``backends=["reference"]`` runs the model as written.
    ``num_threads``: threads of the kernels (default: qkernels' setting).
    ``fold_limit``: the most bytes a value computed at load by constant folding may take
    (default :data:`qkernels.graph.fold.FOLD_LIMIT`, 64 MiB); bigger ones are computed
    at run time (0: only Constant nodes fold).
    ``plan``: run on a compiled static plan (:mod:`qkernels.graph.plan`: bound native
    calls over one memory arena, made at the first run of each set of input shapes),
    when every backend gives its steps; False runs node by node every time.
    """

    def __init__(self, model, backends: Sequence | None = None, num_threads: int | None = None,
                 fold_limit: int = FOLD_LIMIT, plan: bool = True):
        from . import backends as _builtin   # noqa: F401  (registers cpu and reference)
        if num_threads is not None:
            _dispatch.check_threads(num_threads)
        self.num_threads = num_threads
        if isinstance(fold_limit, bool) or not isinstance(fold_limit, int) or fold_limit < 0:
            raise ValueError(f"fold_limit must be a non-negative int (bytes), got {fold_limit!r}")
        chain = [get_backend(b) for b in (backends or ["cpu"])]
        rewriters = list(chain)
        for fallback in ("cpu", "reference"):
            if not any(b.name == fallback for b in chain):
                chain.append(get_backend(fallback))
        graph = load_tflite(model) if is_tflite(model) else load_graph(model)
        release_freed_memory()      # the parsed model, gone: its heap must not stack under the packing's
        validate(graph)   # every node checked once, before folding and the backends see it
        self._prepare(graph, chain, rewriters, fold_limit, plan, consume=True)
        release_freed_memory()      # loading, folding and packing left freed heap behind

    @classmethod
    def _nested(cls, graph: Graph, parent: "Session", loop: bool) -> "Session":
        """A session of the subgraph ``graph`` planned like ``parent`` (its backends,
        rewrites, fold limit, plans): its inputs are the subgraph's, then the names it
        reads from around it (``graph.outer``). A ``loop`` body plans an input signature
        at its second run, not its first: a loop whose carried values change shape each
        iteration would otherwise plan every iteration for nothing."""
        self = cls.__new__(cls)
        self.num_threads = None      # the enclosing run's setting applies
        outer = [ValueInfo(name, None, None) for name in graph.outer]
        flat = dataclasses.replace(graph, inputs=list(graph.inputs) + outer, outer=[])
        self._prepare(flat, parent.backends, parent._rewriters, parent._fold_limit, parent._plan_on, loop)
        return self

    def _prepare(self, graph: Graph, chain: list, rewriters: list, fold_limit: int, plan: bool,
                 plan_late: bool = False, consume: bool = False) -> None:
        """Plan ``graph`` (checked): fold, rewrite, plan the control-flow bodies, partition.
        ``consume``: ``graph`` is this session's own (loaded here), its constants given up
        once folded: weights a backend packs are then freed as they are packed."""
        self.backends, self._rewriters, self._fold_limit = chain, rewriters, fold_limit
        self.graph = fold_constants(graph, fold_limit)
        if consume:   # (Constant nodes hold weights too)
            graph.initializers, graph.nodes = {}, []
        for b in rewriters:
            self.graph = b.rewrite(self.graph)
        for name, value in self.graph.initializers.items():   # shared by every run: nothing writes them
            self.graph.initializers[name] = _aligned_constant(value)
        self._plan_on = bool(plan)
        self.graph = self._plan_bodies(self.graph)
        self._partitions: list[Partition] = partition(self.graph, self.backends)
        self._kernels = [p.backend.compile(p.nodes, self.graph) for p in self._partitions]
        self._declared = {v.name: v for v in self.graph.inputs}          # what run() checks
        self._output_names = tuple(o.name for o in self.graph.outputs)
        self._output_set = frozenset(self._output_names)
        self._last_use = self._liveness()
        #: bytes of inputs and intermediate values alive at once at the worst point of the
        #: last run (values are dropped after their last reader: liveness); None before a run
        self.peak_bytes: int | None = None
        #: per-node timings of the last ``run(..., profile=True)`` (None before one)
        self.last_profile: list[dict] | None = None
        self._backend_of = {id(n): p.backend for p in self._partitions for n in p.nodes}
        # a backend's step may be nodes it fused (a new node): known by its outputs
        self._backend_of_output = {o: p.backend for p in self._partitions for n in p.nodes for o in n.outputs if o}
        self._node_steps: list | None = None
        self._plans: OrderedDict = OrderedDict()   # input signature -> _Pool (None: not plannable)
        self._plans_lock = threading.Lock()
        # (feeds' signature, threads, ISA, pool, key) of the plan _run_hot ran last: the next
        # run of the same feeds skips the key and the LRU (at batch 1 they were a fifth of a
        # 1024 x 1024 FullyConnected's run)
        self._hot: tuple | None = None
        self._plan_late = plan_late                 # (see _nested)
        self._seen: OrderedDict = OrderedDict()     # signatures run once, not planned yet
        #: what the last run ran on: "plan" (bound steps over the arena), "trace" (node by
        #: node, making the plan) or "nodes" (node by node); None before a run
        self.last_run: str | None = None

    def _plan_bodies(self, graph: Graph) -> Graph:
        """``graph`` with each control-flow node's subgraphs replaced by their :class:`Body`
        (planned once, here: a run never plans a body again)."""
        nodes = []
        for node in graph.nodes:
            bodies = node.subgraphs()
            if bodies:
                attrs = dict(node.attrs)
                for attr, body in bodies:
                    attrs[attr] = Body(body, Session._nested(body, self, node.op_type != "If"),
                                       f"{node.name}.{attr}")
                node = dataclasses.replace(node, attrs=attrs)
            nodes.append(node)
        return dataclasses.replace(graph, nodes=nodes)

    # ---------------------------------------------------------------- planning

    def _liveness(self) -> list[list[str]]:
        """For each partition, the values no later partition (or output) needs."""
        keep = {o.name for o in self.graph.outputs} | set(self.graph.initializers)
        last = {}
        for k, p in enumerate(self._partitions):
            for name in p.reads:
                last[name] = k
            for n in p.nodes:
                for o in n.outputs:
                    last.setdefault(o, k)
        drops: list[list[str]] = [[] for _ in self._partitions]
        for name, k in last.items():
            if name not in keep:
                drops[k].append(name)
        return drops

    # ---------------------------------------------------------------- introspection

    def get_inputs(self) -> list[NodeArg]:
        return [NodeArg(v.name, v.shape, v.dtype) for v in self.graph.inputs]

    def get_outputs(self) -> list[NodeArg]:
        return [NodeArg(v.name, v.shape, v.dtype) for v in self.graph.outputs]

    @property
    def partitions(self) -> list[tuple[str, list[str]]]:
        """(backend name, node names) of each partition, in run order."""
        return [(p.backend.name, [n.name for n in p.nodes]) for p in self._partitions]

    def placement(self, node: Node) -> str:
        """How ``node`` (of ``self.graph``) runs: "native" (qkernels' kernels), "numpy"
        (numpy/BLAS code of the cpu backend), "reference" (the numpy reference operator)
        or "backend" (another backend's own code): in the newest compiled plan once a run
        made one (where a node the backend leaves to the reference operator was bound to a
        native or numpy call for its shapes), else as its backend plans it."""
        with self._plans_lock:
            pools = [p for p in reversed(self._plans.values()) if p is not None]
        for pool in pools:
            where = pool.placements.get(id(node))
            if where is not None:
                return where
        return self._static_placement(node)

    def _static_placement(self, node: Node) -> str:
        return self._backend(node).placement(node, self.graph)

    def _backend(self, node: Node):
        got = self._backend_of.get(id(node))
        return got if got is not None else self._backend_of_output[node.outputs[0]]

    def explain(self, nodes: bool = False) -> str:
        """The plan: per partition its backend and its operators, grouped by how they run
        (native kernels, numpy, the numpy reference), and under each control-flow node the
        plan of each of its bodies; ``nodes=True`` adds a line per node."""
        lines = [f"{len(self._partitions)} partition(s), {len(self.graph.nodes)} node(s) after planning, "
                 f"{len(self.graph.initializers)} constant(s):"]
        if CONVERTED_KEY in self.graph.metadata:
            lines.insert(0, f"converted at load from opset {self.graph.metadata[CONVERTED_KEY]} to {self.graph.opset}")
        for k, p in enumerate(self._partitions):
            groups: dict[str, dict[str, int]] = {}
            for n in p.nodes:
                ops = groups.setdefault(self.placement(n), {})
                ops[n.key] = ops.get(n.key, 0) + 1
            lines.append(f"  [{k}] {p.backend.name:<10} {len(p.nodes):>4} node(s)")
            for where in PLACEMENTS:
                if where in groups:
                    ops = groups[where]
                    lines.append(f"      {where:<9} {sum(ops.values()):>4}: "
                                 + ", ".join(f"{op} x{c}" if c > 1 else op for op, c in ops.items()))
            if nodes:
                lines += [f"        {n.name}  {n.key}  {self.placement(n)}" for n in p.nodes]
            for n in p.nodes:       # control flow: each body's own plan, indented
                for v in n.attrs.values():
                    if isinstance(v, Body):
                        lines.append(f"      {n.key} body {v.label}:")
                        lines += ["        " + line for line in v.session.explain(nodes).splitlines()]
        return "\n".join(lines)

    def format_profile(self, top: int = 15) -> str:
        """The last ``run(..., profile=True)`` as text: time per operator type and
        placement, then the ``top`` slowest nodes (ValueError before any profiled run)."""
        rows = self.last_profile
        if rows is None:
            raise ValueError("no profiled run yet: call run(..., profile=True) first")
        total = sum(r["seconds"] for r in rows) or 1e-12
        by_op: dict[tuple, list] = {}
        for r in rows:
            acc = by_op.setdefault((r["op"], r["placement"]), [0, 0.0])
            acc[0] += 1
            acc[1] += r["seconds"]
        lines = [f"profile: {len(rows)} node(s), {total * 1e3:.3f} ms in nodes",
                 f"{'operator':<32}{'runs as':<11}{'nodes':>6}{'ms':>10}{'%':>7}"]
        for (op, where), (count, secs) in sorted(by_op.items(), key=lambda kv: -kv[1][1]):
            lines.append(f"{op[:31]:<32}{where:<11}{count:>6}{secs * 1e3:>10.3f}{100 * secs / total:>7.1f}")
        lines += ["", f"{'slowest nodes':<40}{'operator':<24}{'ms':>10}"]
        for r in sorted(rows, key=lambda r: -r["seconds"])[:top]:
            lines.append(f"{r['node'][:39]:<40}{r['op'][:23]:<24}{r['seconds'] * 1e3:>10.3f}")
        return "\n".join(lines)

    # ---------------------------------------------------------------- running

    def _check_feed(self, info: ValueInfo, value) -> np.ndarray:
        arr = value if type(value) is np.ndarray else np.asarray(value)
        if info.dtype is not None and arr.dtype != info.dtype:
            raise RunError(f"input {info.name!r} must be {info.dtype}, got {arr.dtype}")
        if info.shape is not None and arr.shape != info.shape:
            if arr.ndim != len(info.shape):
                raise RunError(f"input {info.name!r} must have {len(info.shape)} dimensions "
                               f"(shape {info.shape}), got shape {arr.shape}")
            for want, got in zip(info.shape, arr.shape):
                if isinstance(want, int) and want != got:
                    raise RunError(f"input {info.name!r} must have shape {info.shape}, got {arr.shape}")
        return arr

    def run(self, output_names: Sequence[str] | None, feeds: Mapping[str, object],
            profile: bool = False) -> list[np.ndarray]:
        """The requested outputs (all when ``output_names`` is None) for ``feeds``.

        ``profile=True`` also times every node (a partition of a backend whose compiled
        code cannot time its nodes is one row): :attr:`last_profile` holds a dict per
        node (``node``, ``op``, ``backend``, ``placement``, ``seconds``) in run order,
        :meth:`format_profile` the table."""
        if not profile and output_names is None and type(feeds) is dict:
            outputs = self._run_hot(feeds)
            if outputs is not None:
                return outputs
        if type(feeds) is not dict and not isinstance(feeds, Mapping):
            raise RunError(f"feeds must be a mapping of input name -> array, got {type(feeds).__name__}")
        declared = self._declared
        if len(feeds) != len(declared) or any(k not in declared for k in feeds):
            unknown = [k for k in feeds if k not in declared]
            if unknown:
                raise RunError(f"unknown input(s) {unknown}; the model's inputs are {list(declared)}")
            raise RunError(f"missing input(s) {[k for k in declared if k not in feeds]}")
        if output_names is None:
            names = list(self._output_names)
        else:
            names = list(output_names)
            bad = [n for n in names if n not in self._output_set]
            if bad:
                raise RunError(f"unknown output(s) {bad}; the model's outputs are {sorted(self._output_set)}")
        arrays = {k: self._check_feed(declared[k], v) for k, v in feeds.items()}
        # the session's thread count applies to this thread's calls only, never process-wide
        with _dispatch.use_num_threads(self.num_threads) if self.num_threads is not None else nullcontext():
            rows = [] if profile else None
            token = _PROFILE.set(rows)     # the bodies of control-flow nodes add their rows
            try:
                outputs = self._execute(arrays, names, rows)
            finally:
                _PROFILE.reset(token)
        if rows is not None:
            self.last_profile = rows
        return outputs

    def _run_hot(self, feeds: dict) -> list | None:
        """All outputs of a run whose input signature has a plan already (its feeds were
        checked when it was made: the same names, shapes and dtypes pass again), with
        nothing else to decide; None for every other run (``run`` decides it). A small
        model's run at batch 1 spent more time in the checks than in its kernels: the
        signature of the last such run (``_hot``) is checked, its feeds copied, its steps
        run and its outputs copied in one native call (``Plan.run_hot``); other feeds
        look their plan up by signature."""
        if _PROFILE.get() is not None:
            return None
        threads = self.num_threads
        now, isa = _dispatch.settings()
        nthreads = now if threads is None else threads
        hot = self._hot
        if hot is not None and hot[1] == nthreads and hot[2] == isa:
            pool = hot[3]
            idle = pool._idle       # (pool.take and give, without their Python frames)
            try:
                plan = idle.pop()
            except IndexError:      # (another thread runs it)
                plan = pool.take()
            try:
                if threads is None or threads == now or plan.native_only:
                    outputs = plan.run_hot(feeds)
                else:
                    with _dispatch.use_num_threads(threads):
                        outputs = plan.run_hot(feeds)
            except Replan:          # (run goes the long way, which decides it)
                self._hot = None
                return None
            idle.append(plan)
            if outputs is not None:
                self.peak_bytes = pool.spec.arena_bytes
                self.last_run = "plan"
                return outputs
        declared = self._declared
        if len(feeds) != len(declared):
            return None
        sig = []
        for name in declared:
            v = feeds.get(name)
            if type(v) is not np.ndarray:
                return None
            sig.append((name, v.shape, v.dtype.str))
        key = (tuple(sig), nthreads, isa)
        with self._plans_lock:
            pool = self._plans.get(key)
            if pool is None:
                return None
            self._plans.move_to_end(key)
            self._hot = (key[0], nthreads, isa, pool, key)
        plan = pool.take()
        try:
            if threads is None or threads == now:
                outputs = plan.run(feeds, self._output_names)
            else:
                with _dispatch.use_num_threads(threads):
                    outputs = plan.run(feeds, self._output_names)
        except Replan:
            self._hot = None
            return None
        pool.give(plan)
        self.peak_bytes = pool.spec.arena_bytes
        self.last_run = "plan"
        return outputs

    def _execute(self, arrays: dict, names: list, rows) -> list:
        """The outputs ``names`` for the checked feeds ``arrays``: on a plan when there is
        one, else node by node."""
        outputs = self._run_planned(arrays, names, rows) if self._plan_on else None
        if outputs is None:
            outputs = self._run_nodes(arrays, names, rows)
            self.last_run = "nodes"
        return outputs

    # ---------------------------------------------------------------- the plan

    def _signature(self, arrays: dict) -> tuple:
        return (tuple([(name, arrays[name].shape, arrays[name].dtype.str) for name in self._declared]),
                _dispatch.get_num_threads(), _dispatch.isa_index())

    def _steps(self) -> list | None:
        """Every node's step, from the backends (None when one does not give its steps)."""
        if self._node_steps is None:
            steps = []
            for p in self._partitions:
                got = p.backend.steps(p.nodes, self.graph)
                if got is None:
                    self._plan_on = False
                    return None
                steps += got
            self._node_steps = steps
        return self._node_steps

    def _run_planned(self, arrays: dict, names: list, rows) -> list | None:
        """The outputs from this signature's plan (made from a traced run the first time),
        or None when it has none (the caller runs node by node)."""
        key = self._signature(arrays)
        with self._plans_lock:
            pool = self._plans.get(key, _MISSING)
            if pool is not _MISSING:
                self._plans.move_to_end(key)
        if pool is None or self._steps() is None:
            return None
        if pool is _MISSING and self._plan_late:
            with self._plans_lock:
                first = key not in self._seen
                self._seen[key] = True
                while len(self._seen) > 4 * PLAN_CACHE:
                    self._seen.popitem(last=False)
            if first:
                return None
        if pool is _MISSING:
            arrays = {k: v if v.flags.c_contiguous else v.copy(order="C") for k, v in arrays.items()}
            outputs, traced = self._trace(arrays, names, rows)
            try:
                pool = _Pool(PlanSpec(self.graph, self._node_steps, traced, [v.name for v in self.graph.inputs]),
                             self._static_placement)
            except Exception:   # not plannable (values that are not numbers, ...): node by node
                pool = None
            release_freed_memory()  # the trace's values, freed
            with self._plans_lock:
                self._plans[key] = pool
                hot = self._hot     # (the most recent: its hits skip the LRU)
                if hot is not None and hot[4] in self._plans:
                    self._plans.move_to_end(hot[4])
                    self._plans.move_to_end(key)
                while len(self._plans) > PLAN_CACHE:
                    self._plans.popitem(last=False)
            self.last_run = "trace"
            return outputs
        try:
            plan = pool.take()
        except Exception:
            plan = None
        if plan is None:
            with self._plans_lock:
                self._plans[key] = None
                self._hot = None
            return None

        timer = None if rows is None else (
            lambda node, where, seconds: rows.append(self._profile_row(node, seconds, where, rows)))
        try:
            outputs = plan.run(arrays, names, timer)
        except Replan:              # shapes that follow the data: this signature runs node by node
            with self._plans_lock:
                self._plans[key] = None
                self._hot = None
            if rows is not None:
                rows.clear()
            return None
        pool.give(plan)             # (not after an error: its arena may be half written)
        self.peak_bytes = pool.spec.arena_bytes
        self.last_run = "plan"
        return outputs

    @property
    def arena_bytes(self) -> int | None:
        """The arena of the most recently used plan, bytes (None before one)."""
        with self._plans_lock:
            pools = [p for p in self._plans.values() if p is not None]
        return pools[-1].spec.arena_bytes if pools else None

    def _trace(self, arrays: dict, names: list, rows) -> tuple[list, dict]:
        """A run node by node on the backends' steps: (outputs, name -> Traced)."""
        values = dict(self.graph.initializers)
        values.update(arrays)
        consts = self.graph.initializers

        def timer(node, seconds):
            rows.append(self._profile_row(node, seconds, None, rows))
        traced, self.peak_bytes = trace(self._node_steps, values, set(names) | set(consts),
                                        None if rows is None else timer, frozenset(consts))
        return [_owned(values[n]) for n in names], traced

    # ---------------------------------------------------------------- node by node

    def _profile_row(self, node: Node, seconds: float, placement: str | None, rows: list) -> dict:
        """A row of :attr:`last_profile` for ``node``. A control-flow node's row counts its
        own time: its bodies' rows, just added before it, count theirs."""
        if any(isinstance(v, Body) for v in node.attrs.values()):
            prefix, k = f"{node.name}.", len(rows)
            while k and rows[k - 1].get("within", "").startswith(prefix):
                k -= 1
                seconds -= rows[k]["seconds"]
            seconds = max(seconds, 0.0)
        return {"node": node.name, "op": node.key, "backend": self._backend(node).name,
                "placement": placement or self.placement(node), "seconds": seconds}

    def _run_nodes(self, arrays: dict, names: list, rows) -> list:
        """The outputs of a run partition by partition."""
        values = dict(self.graph.initializers)
        values.update(arrays)
        consts = self.graph.initializers
        live = peak = sum(v.nbytes for k, v in values.items() if k not in consts)
        for part, kernel, drops in zip(self._partitions, self._kernels, self._last_use):
            produced = kernel(values) if rows is None else self._timed(part, kernel, values, rows)
            values.update(produced)
            live += sum(v.nbytes for v in produced.values())
            peak = max(peak, live)
            for name in drops:
                dead = values.pop(name, None)
                if dead is not None and name not in consts:
                    live -= dead.nbytes
        # kernels may leave strided views (ascontiguousarray would make 0-d arrays 1-d),
        # numpy reductions numpy scalars, and an output may be a (read-only) constant:
        # every output a C-contiguous ndarray the caller owns
        outputs = [_owned(values[n]) for n in names]
        self.peak_bytes = peak
        return outputs

    def _timed(self, part, kernel, values, rows: list) -> dict:

        def timer(node, seconds):
            rows.append(self._profile_row(node, seconds, None, rows))
        if getattr(kernel, "accepts_timer", False):
            return kernel(values, timer=timer)
        t0 = time.perf_counter()
        produced = kernel(values)
        rows.append({"node": f"partition of {len(part.nodes)} node(s)", "op": "(partition)",
                     "backend": part.backend.name, "placement": "backend", "seconds": time.perf_counter() - t0})
        return produced


_MISSING = object()

#: the profile rows of the run in progress in this context (None: not profiling): the
#: bodies of control-flow nodes add theirs, named after the node and its attribute
_PROFILE: contextvars.ContextVar = contextvars.ContextVar("qkernels_graph_profile", default=None)


class Body:
    """A control-flow node's subgraph as the session plans it: a session of its own
    (:meth:`Session._nested`) over the same backends, folded, rewritten, partitioned and
    planned once at load, its plans made per input signature and kept like a model's.
    It takes the place of the Graph in the node's attribute; the operators
    (:mod:`qkernels.graph.backends.reference.control`) call :meth:`run`."""

    def __init__(self, graph: Graph, session: Session, label: str):
        self.graph = graph            # the subgraph as loaded (its declared inputs and outputs)
        self.session = session
        self.label = label            # "<node>.<attribute>": explain() and profiles
        self._inputs = [v.name for v in graph.inputs]
        self._outer = list(graph.outer)
        self._outputs = list(session._output_names)

    def run(self, formal: list, outer: dict) -> list[np.ndarray]:
        """The body's outputs (arrays the caller owns) for its formal inputs ``formal`` (in
        its order) and the values ``outer`` it reads from around it (by its names)."""
        feeds = dict(zip(self._inputs, formal))
        for name in self._outer:
            feeds[name] = outer[name]
        rows = _PROFILE.get()
        if rows is None:
            return self.session._execute(feeds, self._outputs, None)
        mine: list = []
        token = _PROFILE.set(mine)          # (bodies inside this one add theirs here)
        t0 = time.perf_counter()
        try:
            outputs = self.session._execute(feeds, self._outputs, mine)
        finally:
            _PROFILE.reset(token)
        for r in mine:
            within = r.get("within")
            rows.append({**r, "node": f"{self.label}/{r['node']}",
                         "within": self.label if within is None else f"{self.label}/{within}"})
        # one row more: what the body's nodes leave of its time (feeds and outputs copied,
        # its plan looked up, and the profiling itself)
        left = time.perf_counter() - t0 - sum(r["seconds"] for r in mine)
        rows.append({"node": f"{self.label}/(feeds, outputs, plan look-up)", "op": "(body run)", "backend": "-",
                     "placement": "backend", "seconds": max(left, 0.0), "within": self.label})
        return outputs

    def __repr__(self):
        return f"<body {self.label}: {len(self.session.graph.nodes)} node(s)>"


def _malloc_trim():
    """glibc's malloc_trim, or None (other C libraries return freed memory themselves or
    offer no such call)."""
    import ctypes
    import ctypes.util
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_TRIM = _malloc_trim()


def release_freed_memory() -> None:
    """Give the heap freed by a session's set-up back to the system: glibc keeps freed
    blocks for reuse, so loading a model (its protobuf, folded and repacked weights) and
    the first, traced run (every intermediate value, once) left the process' resident
    memory tens of MiB above what stays alive (27 of the 56 MiB the PaddleOCR recogniser
    added at load)."""
    if _TRIM is not None:
        _TRIM(0)


def _aligned_constant(value) -> np.ndarray:
    """A constant as a read-only ndarray (folding may leave numpy scalars) whose data
    starts on a 64-byte line (copied there when it does not), as the kernels read best."""
    arr = np.asarray(value)
    if arr.dtype.kind in "biufc" and arr.nbytes and arr.ctypes.data % 64:
        raw = np.empty(arr.nbytes + 64, np.uint8)
        start = -raw.ctypes.data % 64
        aligned = raw[start:start + arr.nbytes].view(arr.dtype).reshape(arr.shape)
        np.copyto(aligned, arr)
        arr = aligned
    arr.flags.writeable = False
    return arr


class _Pool:
    """The plans of one spec not running now: a call takes one (or makes one), then
    gives it back; calls from several threads each get their own."""

    def __init__(self, spec: PlanSpec, placement):
        self.spec, self._placement = spec, placement
        self._idle: list[Plan] = [Plan(spec, placement)]   # made now: binding errors show at once
        #: how each node's step runs (id(node) -> placement), for Session.placement
        self.placements = self._idle[0].placements()

    def take(self) -> Plan:
        try:
            return self._idle.pop()      # (list.pop and append are atomic: no lock)
        except IndexError:
            return Plan(self.spec, self._placement)

    def give(self, plan: Plan) -> None:
        self._idle.append(plan)


def _owned(value) -> np.ndarray:
    """An output as a C-contiguous ndarray the caller owns. The cpu backend's convolutions
    return NCHW views of NHWC memory: those are copied by the native transpose (numpy's
    strided copy is several times slower), any other view by numpy."""
    v = np.asarray(value)
    if v.flags.c_contiguous and v.flags.writeable:
        return v
    if v.ndim == 4 and convertible(v.dtype):
        return nhwc_to_nchw(v.transpose(0, 2, 3, 1))
    return v.copy(order="C")
