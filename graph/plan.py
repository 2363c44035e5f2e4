"""The compiled plan of a session: the graph as a flat list of bound calls over one
static memory arena, for one set of input shapes.

A session's first run for new input shapes runs the graph node by node (the trace,
:func:`trace`), freeing each value after its last reader as any run does, and keeps of
each value its shape, dtype and memory order. From the trace a :class:`PlanSpec` is
made once per set of input shapes (and thread count and ISA):

* **buffers**: every input and intermediate value gets a place in one 64-byte-aligned
  arena, in the memory order the trace gave it (a convolution's NCHW view of NHWC
  memory stays one); places are reused by liveness (greedy, largest first, each value
  alive from the step that makes it to its last reader; graph outputs to the end);
* **views**: Reshape, Flatten, Squeeze, Unsqueeze and Identity whose other inputs are
  constants and whose traced result was a view of their input are views in the arena
  too: no step at all; so is a Concat whose inputs are made for it alone (each a
  slice of its output, written there by its producer: XNNPACK's output strides);
* **steps**: each other node, in order. A node whose runner can bind (``fn.bind``, see
  :meth:`~qkernels.graph.Backend.steps`) becomes no-argument calls on fixed arrays
  (the native drivers' ``Bound`` calls, ``BoundGemm`` / ``BoundDw``: blocking, threads
  and packing buffers decided once); any other node runs its
  runner on the arena's arrays and its results are copied into their places, after a
  check that they have the traced shapes and dtypes (a model whose shapes follow its
  data raises :class:`Replan`, and the session runs such shapes node by node).

A :class:`Plan` is a spec made real: the arena and the bound steps, flattened into one
``_native.StepLoop`` (a Cython loop: consecutive native calls run back to back with the
GIL released once, Python only for the steps that are Python). A run copies the
feeds into their places, runs the loop, and copies the requested outputs out (they
never alias the arena). A plan serves one call at a time; a session keeps a pool of
them per spec, so that calls from several threads each get their own.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np

from .._layout import convertible, nhwc_to_nchw
from .._native import Bound, StepLoop, copy_same
from .ir import Graph, Node

ALIGN = 64
#: operators whose result may be a view of their first input (when the others are constants)
VIEW_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"})
#: operators whose result depends on their inputs' shapes only: fixed for a plan
SHAPE_OPS = frozenset({"Shape", "Size"})
#: deterministic operators whose result is fixed for a plan when every input is (a
#: constant or such a result): the shape arithmetic of exported models
#: (Shape -> Gather -> Equal -> If, Concat -> Reshape)
FIXED_OPS = SHAPE_OPS | frozenset({
    "Gather", "Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Not", "And", "Or", "Xor",
    "Cast", "Unsqueeze", "Squeeze", "Concat", "Slice", "Reshape", "Flatten", "Identity", "Add", "Sub",
    "Mul", "Div", "Mod", "Neg", "Abs", "Min", "Max", "Floor", "Ceil", "Where", "Range", "ConstantOfShape",
    "Expand", "Tile", "Transpose", "ReduceProd", "ReduceSum", "ReduceMin", "ReduceMax"})
#: the most elements of a value fixed for a plan (kept apart from the arena)
FIXED_LIMIT = 4096


class Replan(Exception):
    """A step made a value of another shape or dtype than the trace: the plan does not
    hold for this model (its shapes follow its data)."""


class Unplannable(Exception):
    """The graph cannot run on a static plan (values that are not plain numbers, a
    backend that does not give its steps)."""


@dataclass
class _Value:
    name: str
    shape: tuple
    dtype: np.dtype
    strides: tuple | None = None      # None: C order
    offset: int = 0                   # in the arena (base values)
    base: str | None = None           # a view of this value (no place of its own)
    part: tuple | None = None         # (axis, start, stop): the view is that slice of base
    first: int = -1                   # the step that makes it (-1: a feed)
    last: int = -1                    # the last step that reads it

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


@dataclass(frozen=True)
class Traced:
    """What the trace keeps of a value (never the value: its memory is freed by liveness
    as in any run): shape, dtype, its strides when dense (else None), and, for the
    output of a view operator, whether it shared its input's memory."""
    shape: tuple
    dtype: np.dtype
    strides: tuple | None
    view_of_input: bool = False
    fixed: np.ndarray | None = None   # the value itself, when it is the same in every run

    @classmethod
    def of(cls, value, view_of_input: bool = False, fixed: bool = False) -> "Traced":
        arr = np.asarray(value)
        kept = None
        if fixed:
            kept = np.array(arr, order="C", copy=True)
            kept.flags.writeable = False
        return cls(arr.shape, arr.dtype, _dense_strides(arr), view_of_input, kept)


def _is_fixed(node: Node, fixed: set, produced: dict) -> bool:
    """Whether ``node``'s results are the same in every run of a plan: a shape operator,
    or a deterministic one of fixed inputs, with small numeric results."""
    if node.domain or node.op_type not in FIXED_OPS:
        return False
    if node.op_type not in SHAPE_OPS and not all(not i or i in fixed for i in node.inputs):
        return False
    return all(np.asarray(v).dtype.kind in "biuf" and np.asarray(v).size <= FIXED_LIMIT
               for v in produced.values())


def trace(steps: list, values: dict, keep: set, timer=None, constants: frozenset = frozenset()) -> tuple[dict, int]:
    """Run ``steps`` ((node, fn) in order) on ``values`` (constants and feeds), node by
    node, each value dropped after its last reader unless it is in ``keep``; returns
    (name -> :class:`Traced` for the feeds and every value made, the most bytes of values
    not in ``keep`` alive at once); ``values`` keeps the kept ones. ``timer(node,
    seconds)`` is told each node's time. Values that follow from the input shapes and
    ``constants`` alone (:data:`FIXED_OPS`) are traced with their value (``fixed``):
    a plan holds them as constants and skips their steps."""
    import time
    fixed = set(constants)
    last = {}
    for k, (node, _) in enumerate(steps):
        for name in node.inputs:
            last[name] = k
    seen = {name: Traced.of(v) for name, v in values.items()}
    live = peak = sum(np.asarray(v).nbytes for name, v in values.items() if name not in keep)
    for k, (node, fn) in enumerate(steps):
        t0 = time.perf_counter() if timer else 0.0
        produced = fn(values)
        if timer:
            timer(node, time.perf_counter() - t0)
        src = values.get(node.inputs[0]) if node.inputs and node.inputs[0] else None
        is_fixed = _is_fixed(node, fixed, produced)
        if is_fixed:
            fixed.update(produced)
        for name, v in produced.items():
            shares = node.op_type in VIEW_OPS and src is not None and np.shares_memory(np.asarray(v), np.asarray(src))
            seen[name] = Traced.of(v, shares, is_fixed)
        values.update(produced)
        live += sum(np.asarray(v).nbytes for v in produced.values())
        peak = max(peak, live)
        for name in set(node.inputs) | set(produced):
            if name and last.get(name, -1) <= k and name not in keep and name in values:
                live -= np.asarray(values.pop(name)).nbytes
    return seen, peak


def _dense_strides(arr: np.ndarray) -> tuple | None:
    """``arr``'s strides when its elements fill one run of memory in some axis order (a
    C-contiguous array or a transpose of one), else None."""
    if arr.flags.c_contiguous:
        return arr.strides
    if arr.size == 0 or min(arr.strides) < 0:
        return None
    order = sorted(range(arr.ndim), key=lambda i: -arr.strides[i])
    return arr.strides if arr.transpose(order).flags.c_contiguous else None


def _native_call(call) -> bool:
    """Whether a bound call runs qkernels' native code (a bound kernel, or a native function
    with its arguments), not numpy's."""
    return isinstance(call, Bound) or (isinstance(call, partial) and
                                       getattr(call.func, "__module__", None) == "qkernels._native")


class PlanSpec:
    """What the trace decided for one set of input shapes: the steps' nodes, every
    value's shape, dtype, memory order and arena offset, the views (see the module)."""

    def __init__(self, graph: Graph, steps: list[tuple[Node, object]], traced: dict, feeds: list[str]):
        consts = graph.initializers
        self.graph, self.node_steps, self.feeds = graph, steps, feeds
        values: dict[str, _Value] = {}

        def add(name, first):
            t: Traced = traced[name]
            if t.dtype.kind not in "biufc":
                raise Unplannable(f"value {name!r} is {t.dtype}, not a number")
            values[name] = _Value(name, t.shape, t.dtype, t.strides, first=first)

        for name in feeds:
            add(name, -1)
        readers: dict[str, int] = {}
        for node, _ in steps:
            for name in node.inputs:
                readers[name] = readers.get(name, 0) + 1
        outputs = {v.name for v in graph.outputs}
        self.steps: list[tuple[Node, object]] = []   # the nodes that run (views are not steps)
        self.views: list[Node] = []
        #: values the same in every run (shape arithmetic): constants of the plan, no step
        self.fixed: dict[str, np.ndarray] = {}
        for node, fn in steps:
            if node.outputs and all(not o or traced[o].fixed is not None for o in node.outputs) \
                    and not any(o in values for o in node.outputs if o):
                self.fixed.update((o, traced[o].fixed) for o in node.outputs if o)
                continue
            for name in node.outputs:
                if name and name not in values:
                    add(name, len(self.steps))
            src = node.inputs[0] if node.inputs else ""
            out = node.outputs[0] if len(node.outputs) == 1 else ""
            if node.op_type in VIEW_OPS and not node.domain and out and src in values \
                    and all(not i or i in consts or i in self.fixed for i in node.inputs[1:]) \
                    and traced[out].view_of_input:
                values[out].base = values[src].base or src
                values[out].strides = None
                self.views.append(node)
                continue
            if node.op_type == "Concat" and not node.domain and out and _concat_in_place(
                    node, values, readers, outputs):
                self.views.append(node)
                continue
            self.steps.append((node, fn))
        # liveness: a view keeps its base alive; outputs live to the end
        for k, (node, _) in enumerate(self.steps):
            for name in node.inputs:
                if name in values:
                    v = values[name]
                    root = values[v.base] if v.base else v
                    root.last = max(root.last, k)
        for v in values.values():
            if v.base is None:
                v.last = max(v.last, v.first)
        for out in graph.outputs:
            if out.name in values:
                v = values[out.name]
                (values[v.base] if v.base else v).last = len(self.steps)
        self.values = values
        self.arena_bytes = _place([v for v in values.values() if v.base is None])


def _concat_in_place(node: Node, values: dict, readers: dict, outputs: set) -> bool:
    """Make ``node``'s inputs slices of its output, when each is a value of its own made
    by a step (no feed, view or graph output) that only this Concat reads: their
    producers then write into the output's place and the Concat does nothing (the
    output's memory order is the traced one, so its readers see what they saw)."""
    out = values[node.outputs[0]]
    parts = node.inputs
    if out.base is not None or len(set(parts)) != len(parts) or not all(parts):
        return False
    axis = node.attrs.get("axis", 0)
    axis = axis + len(out.shape) if axis < 0 else axis
    start, cuts = 0, []
    for name in parts:
        v = values.get(name)
        if v is None or v.base is not None or v.first < 0 or name in outputs or readers.get(name) != 1 \
                or any(w.base == name for w in values.values()) or v.dtype != out.dtype or len(v.shape) != len(out.shape) or not 0 <= axis < len(out.shape):
            return False
        cuts.append((v, start, start + v.shape[axis]))
        start += v.shape[axis]
    if start != out.shape[axis]:
        return False
    for v, lo, hi in cuts:
        v.base, v.part, v.strides = out.name, (axis, lo, hi), None
    out.first = min(v.first for v, _, _ in cuts)     # its place is written from the first part on
    return True


def _place(buffers: list[_Value]) -> int:
    """Offsets for ``buffers`` (largest first, each at the lowest aligned offset free
    over its lifetime); the arena's size."""
    placed: list[_Value] = []
    end = 0
    for v in sorted(buffers, key=lambda v: (-v.nbytes, v.first)):
        size = -(-v.nbytes // ALIGN) * ALIGN
        busy = sorted((p.offset, p.offset + -(-p.nbytes // ALIGN) * ALIGN) for p in placed
                      if p.first <= v.last and v.first <= p.last)
        offset = 0
        for lo, hi in busy:
            if offset + size <= lo:
                break
            offset = max(offset, hi)
        v.offset = offset
        placed.append(v)
        end = max(end, offset + size)
    return end


class Plan:
    """A :class:`PlanSpec` made real: its arena and its bound steps (see the module)."""

    def __init__(self, spec: PlanSpec, placement):
        self.spec = spec
        consts = {**spec.graph.initializers, **spec.fixed}
        self.consts = consts
        raw = np.empty(spec.arena_bytes + ALIGN, np.uint8)
        start = -raw.ctypes.data % ALIGN
        self.arena = raw
        arrays: dict[str, np.ndarray] = {}
        for v in spec.values.values():
            if v.base is None:
                arrays[v.name] = np.ndarray(v.shape, v.dtype, raw, start + v.offset, v.strides)
        for v in spec.values.values():
            if v.base is not None:
                base = arrays[v.base]
                view = base[(slice(None),) * v.part[0] + (slice(v.part[1], v.part[2]),)] if v.part \
                    else base.reshape(v.shape)
                if v.nbytes and not np.shares_memory(view, base):
                    raise Unplannable(f"{v.name!r} is no longer a view of {v.base!r}")
                arrays[v.name] = view
        self.arrays = arrays
        self.feeds = [(name, arrays[name]) for name in spec.feeds]
        self.steps = []            # (node, calls, bound, placement)
        for node, fn in spec.steps:
            ins = [(consts[i] if i in consts else arrays.get(i)) if i else None for i in node.inputs]
            outs = [arrays[o] for o in node.outputs if o]
            call = None
            binder = getattr(fn, "bind", None)
            if binder is not None:
                try:
                    call = binder(ins, outs)
                except (ValueError, TypeError):
                    call = None
            bound = call is not None
            if call is None:
                call = _copying_step(node, fn, ins, {o: arrays[o] for o in node.outputs if o})
            calls = list(call) if isinstance(call, (list, tuple)) else [call]
            where = placement(node)
            if bound and where == "reference":   # a binder's call in place of the reference operator
                where = "native" if all(_native_call(c) for c in calls) else "numpy"
            self.steps.append((node, calls, bound, where))
        self.loop = StepLoop([c for s in self.steps for c in s[1]])
        self._outs: dict = {}      # output names (a tuple) -> [(array, C-contiguous)]
        #: ``run_hot(feeds)``: every graph output for ``feeds`` in one native call, or None,
        #: nothing run, unless ``feeds`` holds exactly the plan's inputs as aligned
        #: C-contiguous arrays of their traced shapes and dtypes (``StepLoop.run_io`` bound
        #: to the feeds' places and the outputs' arrays: a partial, no Python frame)
        self.run_hot = partial(self.loop.run_io, tuple(self.feeds),
                               tuple(consts[o.name] if o.name in consts else arrays[o.name]
                                     for o in spec.graph.outputs), _copy_out)
        #: every step native: the thread setting of the caller cannot matter (bound calls
        #: decided their threads when bound)
        self.native_only = self.loop.native_steps == len(self.loop)

    def _no_work(self, node: Node) -> str:
        """A node with no step: "fixed" (its output computed once, at planning) or "view"."""
        return "fixed" if node.outputs and node.outputs[0] in self.spec.fixed else "view"

    def placements(self) -> dict:
        """id(node) -> how the node runs in this plan (PLACEMENTS)."""
        steps = {id(s[0]): s[3] for s in self.steps}
        return {id(n): steps.get(id(n)) or self._no_work(n) for n, _ in self.spec.node_steps}

    @property
    def bound(self) -> int:
        """How many steps are bound calls (the others run their node's runner)."""
        return sum(1 for s in self.steps if s[2])

    def run(self, feeds: dict, names: list[str], timer=None) -> list[np.ndarray]:
        for name, slot in self.feeds:
            x = feeds[name]
            if type(x) is not np.ndarray or not copy_same(slot, x):   # (a body's feed may be a scalar)
                np.copyto(slot, x)
        if timer is None:
            self.loop.run()
        else:
            import time
            steps = {id(s[0]): s for s in self.steps}
            for node, _ in self.spec.node_steps:      # in node order; views: no work
                if id(node) not in steps:
                    timer(node, self._no_work(node), 0.0)
                    continue
                _, calls, _, where = steps[id(node)]
                t0 = time.perf_counter()
                for call in calls:
                    call()
                timer(node, where, time.perf_counter() - t0)
        outs = self._outs.get(names) if type(names) is tuple else None
        if outs is None:
            consts = self.consts
            outs = [consts[n] if n in consts else self.arrays[n] for n in names]
            # C-contiguous arrays by their own copy (numpy's fastest); the rest by _copy_out
            outs = [(v, type(v) is np.ndarray and v.flags.c_contiguous) for v in outs]
            if type(names) is tuple:
                self._outs[names] = outs
        return [v.copy() if simple else _copy_out(v) for v, simple in outs]


def _copying_step(node: Node, fn, ins: list, outs: dict):
    """A node's runner on fixed arrays, its results copied into ``outs`` (checked)."""
    scope = {name: v for name, v in zip(node.inputs, ins) if name and v is not None}
    checks = [(name, slot, slot.shape, slot.dtype) for name, slot in outs.items()]

    def step():
        produced = fn(scope)
        for name, slot, shape, dtype in checks:
            got = np.asarray(produced[name])
            if got.shape != shape or got.dtype != dtype:
                raise Replan(f"node {node.name!r} made {name!r} {got.dtype}{list(got.shape)}, "
                             f"traced as {dtype}{list(shape)}")
            np.copyto(slot, got)
    return step


def _copy_out(v: np.ndarray) -> np.ndarray:
    """A C-contiguous copy the caller owns (an NCHW view of NHWC memory through the native
    transpose: numpy's strided copy is several times slower)."""
    if v.ndim == 4 and not v.flags.c_contiguous and convertible(v.dtype) \
            and v.transpose(0, 2, 3, 1).flags.c_contiguous:
        return nhwc_to_nchw(v.transpose(0, 2, 3, 1))
    return np.array(v, order="C", copy=True)
