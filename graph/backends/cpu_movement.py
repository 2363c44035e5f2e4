"""Data movement on the native strided copy (kernels/copy.c, ``_native.BoundCopy``):
Concat, Split, Slice, Pad (constant, reflect, edge, wrap), Transpose, DepthToSpace,
SpaceToDepth and com.microsoft QLinearConcat (and Where, on a select loop), registered into :data:`cpu.KERNELS` (imported by
the backends package after cpu: cpu itself does not import this module).

Each operator is a list of moves decided from the shapes and the parameters: strided
copies from views of the inputs into views of the outputs (Concat: each input into its
slice of the output; Pad's reflected and edge borders: views with negative and zero
strides), fills (Pad's constant border) and, for QLinearConcat inputs quantized
otherwise than the output, copies through a 256-entry table built by the reference
operator itself on every value of the input's dtype. Elements move as bytes, so every
result is the reference's, bit for bit (NaN payloads and -0.0 included). The node-by-node
run and the plan run the same moves: a runner makes its outputs and runs them once; a
bound step (the parameters that decide shapes constants in the graph) runs them on the
plan's arrays, whatever their strides (NCHW views of NHWC memory included).

Outputs of Concat, Split, Slice, Pad and QLinearConcat are made in the memory order of
the (first) input, as numpy's concatenate does (a convolution's NCHW view of NHWC memory
stays one); Transpose, DepthToSpace and SpaceToDepth make C-contiguous results.
"""
from __future__ import annotations

import math

import numpy as np

from ... import _dispatch, _native
from ..ir import Graph, Node
from ..validate import check_size
from .cpu import Runner, _fallback, _NotServed, _same_order_runs, kernel
from .reference.common import ints
from .reference.registry import OPS as REFERENCE_OPS
from .reference.shape import _slice_bounds

#: the most moves a Pad by reflection or wrapping is made of (else the reference runs it)
MAX_MOVES = 4096


def _simd() -> bool:
    return _dispatch.get_isa() != "scalar"


def _movable(*arrays) -> bool:
    """Whether the native copy takes arrays of these dtypes (numbers of 1, 2, 4, 8 bytes)."""
    return all(a is not None and a.dtype.kind in "biuf" and a.dtype.itemsize in (1, 2, 4, 8) for a in arrays)


def _empty(shape, dtype, like: np.ndarray | None) -> np.ndarray:
    """A new array of ``shape``: in the memory order of ``like`` (the axes by decreasing
    stride) when given and of that rank, else C-contiguous."""
    if like is None or like.ndim != len(shape) or like.flags.c_contiguous:
        return np.empty(shape, dtype)
    order = sorted(range(like.ndim), key=lambda i: -abs(like.strides[i]))
    return np.empty([shape[i] for i in order], dtype).transpose(np.argsort(order))


def _axis(axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise _NotServed
    return axis % rank


def _split_axis(a: np.ndarray, axis: int, parts: tuple) -> np.ndarray:
    """``a`` with axis ``axis`` split into ``parts`` (a view, whatever a's strides)."""
    s = a.strides[axis]
    inner = [s * math.prod(parts[k + 1:]) for k in range(len(parts))]
    return np.lib.stride_tricks.as_strided(a, a.shape[:axis] + tuple(parts) + a.shape[axis + 1:],
                                           a.strides[:axis] + tuple(inner) + a.strides[axis + 1:],
                                           writeable=a.flags.writeable)


def _along(axis: int, lo: int, hi: int) -> tuple:
    return (slice(None),) * axis + (slice(lo, hi),)


def _movement(node: Node, graph: Graph, plan, params=(), like: int | None = 0) -> Runner | None:
    """A runner (and its bind) for ``plan(ins) -> (outputs, moves)``: ``outputs`` a
    (shape, dtype) per node output, ``moves(outs)`` the BoundCopy moves filling them;
    ``plan`` raises _NotServed for inputs the reference should run. The outputs take the
    memory order of input ``like`` (None: C order). ``params``: the input positions
    that must be constants for a bind."""
    names, outputs = list(node.inputs), list(node.outputs)
    if not outputs or not all(outputs):
        return None
    bindable = all(i >= len(names) or not names[i] or names[i] in graph.initializers for i in params)

    def planned(ins):
        specs, moves = plan(ins)
        try:
            for shape, _ in specs:
                check_size(shape, node)
        except ValueError:      # above the limits: the reference says so
            raise _NotServed from None
        return specs, moves

    def run(values):
        ins = [values[n] if n else None for n in names]
        specs, moves = planned(ins)
        src = ins[like] if like is not None and like < len(ins) else None
        outs = [_empty(shape, dtype, src) for shape, dtype in specs]
        try:
            _native.BoundCopy(moves(outs), None, _simd()).run()
        except (ValueError, TypeError):
            raise _NotServed from None
        return dict(zip(outputs, outs))

    def bind(ins, outs):
        if not bindable:
            return None
        specs, moves = planned(ins)
        if len(specs) != len(outs) or any(o.shape != tuple(s) or o.dtype != d for o, (s, d) in zip(outs, specs)):
            return None
        return _native.BoundCopy(moves(outs), outs[0], _simd())
    run.bind = bind
    return _fallback(node, graph, run)


def _concat_shape(xs: list, axis_attr: int) -> tuple[int, tuple]:
    """The normalized axis and the shape of the concatenation of ``xs`` (_NotServed when
    the shapes do not fit: the reference says why)."""
    x0 = xs[0]
    if x0.ndim == 0:
        raise _NotServed
    axis = _axis(axis_attr, x0.ndim)
    rest = x0.shape[:axis] + x0.shape[axis + 1:]
    if any(x.ndim != x0.ndim or x.shape[:axis] + x.shape[axis + 1:] != rest for x in xs):
        raise _NotServed
    shape = list(x0.shape)
    shape[axis] = sum(x.shape[axis] for x in xs)
    return axis, tuple(shape)


def _concat_moves(y: np.ndarray, axis: int, xs: list, tables=None) -> list:
    """Each x (through its table, when one is given) into its slice of y along ``axis``."""
    moves, off = [], 0
    for k, x in enumerate(xs):
        n = x.shape[axis]
        dst = y[_along(axis, off, off + n)]
        table = None if tables is None else tables[k]
        moves.append((dst, x) if table is None else (dst, x, table))
        off += n
    return moves


@kernel("Concat", attrs=("axis",))
def _make_concat(node: Node, graph: Graph) -> Runner | None:
    if "axis" not in node.attrs:
        return None
    axis_attr = int(node.attrs["axis"])

    def plan(ins):
        xs = [x for x in ins if x is not None]
        if not xs or not _movable(*xs) or any(x.dtype != xs[0].dtype for x in xs):
            raise _NotServed
        axis, shape = _concat_shape(xs, axis_attr)
        return [(shape, xs[0].dtype)], lambda outs: _concat_moves(outs[0], axis, xs)
    return _movement(node, graph, plan)


@kernel("Split", attrs=("axis", "num_outputs", "split"))
def _make_split(node: Node, graph: Graph) -> Runner | None:
    axis_attr = int(node.attrs.get("axis", 0))
    n_out = len(node.outputs)

    def plan(ins):
        x = ins[0]
        if not _movable(x) or x.ndim == 0:
            raise _NotServed
        axis = _axis(axis_attr, x.ndim)
        dim = x.shape[axis]
        split = ins[1] if len(ins) > 1 and ins[1] is not None else node.attrs.get("split")
        if split is not None:
            sizes = ints(split)
        else:
            n = int(node.attrs.get("num_outputs", n_out))
            if n < 1:
                raise _NotServed
            chunk = -(-dim // n)
            sizes = [min(chunk, max(dim - chunk * i, 0)) for i in range(n)]
        if sum(sizes) != dim or len(sizes) != n_out or min(sizes) < 0:
            raise _NotServed
        starts = np.cumsum([0] + sizes[:-1]).tolist()
        specs = [(x.shape[:axis] + (s,) + x.shape[axis + 1:], x.dtype) for s in sizes]
        return specs, lambda outs: [(y, x[_along(axis, b, b + s)]) for y, b, s in zip(outs, starts, sizes)]
    return _movement(node, graph, plan, params=(1,))


@kernel("Slice")
def _make_slice(node: Node, graph: Graph) -> Runner | None:
    def plan(ins):
        x = ins[0]
        if not _movable(x) or len(ins) < 3 or ins[1] is None or ins[2] is None:
            raise _NotServed
        starts, ends = ints(ins[1]), ints(ins[2])
        axes = list(range(len(starts))) if len(ins) < 4 or ins[3] is None else \
            [_axis(a, x.ndim) for a in ints(ins[3])]
        steps = [1] * len(starts) if len(ins) < 5 or ins[4] is None else ints(ins[4])
        if len(set(axes)) != len(axes) or not len(starts) == len(ends) == len(axes) == len(steps) or 0 in steps:
            raise _NotServed
        index = [slice(None)] * x.ndim
        for a, s, e, st in zip(axes, starts, ends, steps):
            index[a] = _slice_bounds(s, e, st, x.shape[a])
        view = x[tuple(index)]
        return [(view.shape, x.dtype)], lambda outs: [(outs[0], view)]
    return _movement(node, graph, plan, params=(1, 2, 3, 4))


@kernel("Transpose", attrs=("perm",))
def _make_transpose(node: Node, graph: Graph) -> Runner | None:
    perm = node.attrs.get("perm")

    def plan(ins):
        x = ins[0]
        if not _movable(x):
            raise _NotServed
        p = list(range(x.ndim))[::-1] if perm is None else [int(a) for a in perm]
        if sorted(p) != list(range(x.ndim)):
            raise _NotServed
        view = x.transpose(p)
        return [(view.shape, x.dtype)], lambda outs: [(outs[0], view)]
    return _movement(node, graph, plan, like=None)


@kernel("DepthToSpace", "SpaceToDepth", attrs=("blocksize", "mode"))
def _make_depth_space(node: Node, graph: Graph) -> Runner | None:
    b = int(node.attrs.get("blocksize", 0))
    dcr = node.attrs.get("mode", "DCR") == "DCR"
    if b < 1 or node.attrs.get("mode", "DCR") not in ("DCR", "CRD"):
        return None
    to_space = node.op_type == "DepthToSpace"

    def plan(ins):
        x = ins[0]
        if not _movable(x) or x.ndim != 4:
            raise _NotServed
        n, c, h, w = x.shape
        if to_space:
            if c % (b * b):
                raise _NotServed
            c2 = c // (b * b)
            shape = (n, c2, h * b, w * b)

            def moves(outs):   # y (n, c2, h, b, w, b) <- x (n, b, b, c2, h, w) or (n, c2, b, b, h, w), permuted
                y6 = _split_axis(_split_axis(outs[0], 3, (w, b)), 2, (h, b))
                src = _split_axis(x, 1, (b, b, c2)).transpose(0, 3, 4, 1, 5, 2) if dcr else \
                    _split_axis(x, 1, (c2, b, b)).transpose(0, 1, 4, 2, 5, 3)
                return [(y6, src)]
        else:
            if h % b or w % b:
                raise _NotServed
            shape = (n, c * b * b, h // b, w // b)

            def moves(outs):   # y (n, b, b, c, h', w') or (n, c, b, b, h', w') <- x (n, c, h', b, w', b), permuted
                x6 = _split_axis(_split_axis(x, 3, (w // b, b)), 2, (h // b, b))
                if dcr:
                    return [(_split_axis(outs[0], 1, (b, b, c)), x6.transpose(0, 3, 5, 1, 2, 4))]
                return [(_split_axis(outs[0], 1, (c, b, b)), x6.transpose(0, 1, 3, 5, 2, 4))]
        return [(shape, x.dtype)], moves
    return _movement(node, graph, plan, like=None)


# --------------------------------------------------------------------------- Pad

def _runs(index: np.ndarray) -> list[tuple[int, int, int, int]]:
    """``index`` (an output position -> input position map of one axis) as maximal runs
    (out start, length, in start, step) of steps 1, 0 or -1."""
    runs, i, n = [], 0, len(index)
    while i < n:
        j, step = i + 1, 1
        if j < n and index[j] - index[i] in (-1, 0, 1):
            step = int(index[j] - index[i])
            while j < n and index[j] - index[j - 1] == step:
                j += 1
        runs.append((i, j - i, int(index[i]), step))
        i = j
    return runs


def _pad_moves(x: np.ndarray, y: np.ndarray, width: list, mode: str, value) -> list:
    """The moves of Pad: for ``constant``, the input into its place and a fill per border
    slab of each axis; for the other modes, per product of the axes' runs (see _runs),
    a view of the input (steps -1 for reflections, 0 for edges) into a box of y."""
    r = x.ndim
    if mode == "constant":
        inner = tuple(slice(b, b + d) for (b, _), d in zip(width, x.shape))
        moves = [(y[inner], x)]
        for a, (b, e) in enumerate(width):
            for lo, hi in ((0, b), (b + x.shape[a], y.shape[a])):
                if hi > lo:
                    moves.append((y[inner[:a] + (slice(lo, hi),)], None, value))
        return moves
    axes_runs = []
    for a, (b, e) in enumerate(width):
        index = np.pad(np.arange(x.shape[a]), (b, e), mode=mode)
        axes_runs.append(_runs(index))
    if math.prod(len(runs) for runs in axes_runs) > MAX_MOVES:
        raise _NotServed
    moves = []
    for box in np.ndindex(*[len(runs) for runs in axes_runs]):
        picked = [axes_runs[a][k] for a, k in enumerate(box)]
        start = x[tuple(slice(src, src + 1) for _, _, src, _ in picked)]
        src = np.lib.stride_tricks.as_strided(start, tuple(n for _, n, _, _ in picked),
                                              tuple(step * x.strides[a] for a, (_, _, _, step) in enumerate(picked)),
                                              writeable=False)
        moves.append((y[tuple(slice(o, o + n) for o, n, _, _ in picked)], src))
    return moves if r else [(y, x)]


@kernel("Pad", attrs=("mode",))
def _make_pad(node: Node, graph: Graph) -> Runner | None:
    mode = node.attrs.get("mode", "constant")
    if mode not in ("constant", "reflect", "edge", "wrap"):
        return None

    def plan(ins):
        x = ins[0]
        if not _movable(x) or len(ins) < 2 or ins[1] is None:
            raise _NotServed
        r = x.ndim
        pads = ints(ins[1])
        axes = list(range(r)) if len(ins) < 4 or ins[3] is None else [_axis(a, r) for a in ints(ins[3])]
        if len(pads) != 2 * len(axes) or len(set(axes)) != len(axes):
            raise _NotServed
        width = [[0, 0] for _ in range(r)]
        for k, a in enumerate(axes):
            width[a] = [pads[k], pads[k + len(axes)]]
        x = x[tuple(slice(max(-b, 0), x.shape[i] - max(-e, 0)) for i, (b, e) in enumerate(width))]   # crop
        width = [(max(b, 0), max(e, 0)) for b, e in width]
        shape = tuple(d + b + e for d, (b, e) in zip(x.shape, width))
        value = None
        if mode == "constant":
            v = ins[2] if len(ins) > 2 and ins[2] is not None else None
            if v is not None and v.size != 1:
                raise _NotServed
            value = np.asarray(0 if v is None else v.reshape(-1)[0]).astype(x.dtype)
        elif x.size == 0 and any(b or e for b, e in width):
            raise _NotServed
        return [(shape, x.dtype)], lambda outs: _pad_moves(x, outs[0], width, mode, value)
    return _movement(node, graph, plan, params=(1, 2, 3))


# ----------------------------------------------------------------- QLinearConcat

_QLINEAR_CONCAT = REFERENCE_OPS["com.microsoft::QLinearConcat"]


def _requant_table(node: Node, x_dtype: np.dtype, rank: int, s, z, sy, zy) -> np.ndarray | None:
    """What the reference QLinearConcat makes of each of the 256 values of ``x_dtype``
    quantized by (s, z), as a table from the input's byte to the output's byte; None when
    that is the identity (a plain copy)."""
    values = np.arange(256, dtype=np.uint8).view(x_dtype).reshape((256,) + (1,) * (rank - 1))
    got = np.asarray(_QLINEAR_CONCAT(node, sy, zy, values, s, z)).reshape(-1)
    if got.dtype.itemsize != 1 or got.size != 256:
        raise _NotServed
    table = np.ascontiguousarray(got.view(np.uint8))
    return None if got.dtype == x_dtype and np.array_equal(table, np.arange(256, dtype=np.uint8)) else table


@kernel("com.microsoft::QLinearConcat", attrs=("axis",))
def _make_qlinear_concat(node: Node, graph: Graph) -> Runner | None:
    if "axis" not in node.attrs or len(node.inputs) < 5 or (len(node.inputs) - 2) % 3:
        return None
    axis_attr = int(node.attrs["axis"])
    triples = range(2, len(node.inputs), 3)
    params = (0, 1) + tuple(i for k in triples for i in (k + 1, k + 2))
    tables: dict = {}     # (input, dtype, rank) -> table, when the parameters are constants
    constant = all(node.inputs[i] in graph.initializers for i in params if node.inputs[i])

    def table_of(k, x, s, z, sy, zy):
        key = (k, x.dtype, x.ndim)
        if constant and key in tables:
            return tables[key]
        t = _requant_table(node, x.dtype, x.ndim, s, z, sy, zy)
        if constant:
            tables[key] = t
        return t

    def plan(ins):
        sy, zy = ins[0], ins[1]
        xs = [ins[k] for k in triples]
        if zy is None or zy.dtype not in (np.int8, np.uint8) or \
                any(x is None or x.dtype not in (np.int8, np.uint8) for x in xs):
            raise _NotServed
        axis, shape = _concat_shape(xs, axis_attr)
        try:
            ts = [table_of(k, ins[k], ins[k + 1], ins[k + 2], sy, zy) for k in triples]
        except (ValueError, TypeError, ArithmeticError):
            raise _NotServed from None
        return [(shape, zy.dtype)], lambda outs: _concat_moves(outs[0], axis, xs, ts)
    return _movement(node, graph, plan, params=params, like=2)


def _where_runs(cond, x, y, out=None):
    """(cond, x, y, out) as 1-D runs of one element order for the native Where: cond bool
    of the result's shape in one run of memory, x and y each of that shape in the same
    order or a single value, of one dtype of 1-8 bytes; out made in cond's order (or the
    given one, which must lie so). None when they are not so."""
    if cond is None or x is None or y is None or cond.dtype != np.bool_ or x.dtype != y.dtype \
            or not _movable(x) or cond.size == 0:
        return None
    try:
        shape = np.broadcast_shapes(cond.shape, x.shape, y.shape)
    except ValueError:
        return None
    if cond.shape != shape:
        return None
    if out is None:
        out = _empty(shape, x.dtype, cond)
    if out.shape != shape or out.dtype != x.dtype:
        return None
    full = [v for v in (x, y) if v.size != 1]
    if any(v.shape != shape for v in full):
        return None
    runs = _same_order_runs(cond, out, *full)
    if runs is None:
        return None
    c, o, *rest = runs
    xr = rest.pop(0) if x.size != 1 else x.reshape(1)
    yr = rest.pop(0) if y.size != 1 else y.reshape(1)
    return c, np.ascontiguousarray(xr), np.ascontiguousarray(yr), o, out


@kernel("Where")
def _make_where(node: Node, graph: Graph) -> Runner | None:
    """Where on one native pass (``_native.where``) when the condition has the result's
    shape and each of x, y that shape in its memory order or a single value (attention
    masks: a computed mask choosing between two constants); moved as bits, so the
    reference's values exactly. Other broadcasts run the reference operator."""
    result = node.outputs[0]

    def run(values):
        got = _where_runs(*(values[i] for i in node.inputs[:3]))
        if got is None:
            raise _NotServed
        _native.where(*got[:4])
        return {result: got[4]}

    def bind(ins, outs):
        got = _where_runs(ins[0], ins[1], ins[2], outs[0])
        return None if got is None else _native.where(*got[:4], bind=True)
    run.bind = bind
    return _fallback(node, graph, run)
