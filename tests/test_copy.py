"""The native data movement (kernels/copy.c, _native.BoundCopy) and the graph operators
made of it (graph/backends/cpu_movement.py): the strided copy, fill and table copy
against numpy assignment on arbitrary views; Concat, Split, Slice, Pad, Transpose,
DepthToSpace, SpaceToDepth, Where and com.microsoft QLinearConcat against the reference
operators and onnxruntime, bit for bit, on the plan and node by node."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from qkernels import _native

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from qkernels.graph import Session  # noqa: E402
from qkernels.graph.backends import cpu  # noqa: E402
from qkernels.graph.backends.reference import run_node  # noqa: E402

DTYPES = [np.bool_, np.int8, np.uint8, np.int16, np.float16, np.int32, np.float32, np.int64, np.float64, np.uint64]
DIMS = [0, 1, 2, 3, 5, 7, 13, 17, 33]
SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _bits(a: np.ndarray) -> np.ndarray:
    """``a``'s elements as unsigned integers of its size (NaN payloads and -0.0 compared)."""
    a = np.ascontiguousarray(a)
    return a.view(f"u{a.itemsize}") if a.dtype != np.bool_ else a.view(np.uint8)


def assert_same_bits(got, want):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, got.dtype, want.shape, want.dtype)
    np.testing.assert_array_equal(_bits(got), _bits(want))


def _random(rng, shape, dtype) -> np.ndarray:
    """Random bytes as ``dtype`` (NaNs with payloads, infinities, -0.0 included); bools
    0 or 1."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64))
    if dtype == np.bool_:
        return rng.integers(0, 2, n).astype(np.bool_).reshape(shape)
    return rng.integers(0, 256, n * dtype.itemsize, dtype=np.uint8).view(dtype).reshape(shape)


@st.composite
def views(draw, shape, dtype, rng, broadcast=False):
    """An arbitrary view of shape ``shape`` (steps, negative steps, offsets, a
    permutation of the axes; zero strides when ``broadcast``) into a random buffer;
    returns (view, its buffer)."""
    r = len(shape)
    perm = draw(st.permutations(range(r)))
    steps = [draw(st.sampled_from([1, 1, 2, 3, -1, -2])) for _ in range(r)]
    offs = [draw(st.integers(0, 2)) for _ in range(r)]
    inner = [0] * r
    for i, p in enumerate(perm):
        inner[p] = shape[i]
    base = [abs(s) * max(n - 1, 0) + 1 + o for n, s, o in zip(inner, steps, offs)]
    buf = _random(rng, base, dtype)
    index = []
    for n, s, o in zip(inner, steps, offs):
        if s > 0:
            index.append(slice(o, o + s * max(n - 1, 0) + 1 if n else o, s))
        else:
            start = o + abs(s) * max(n - 1, 0)
            index.append(slice(start, None if start + s * n < 0 else start + s * n, s) if n else slice(o, o))
    v = buf[tuple(index) + (Ellipsis,)].transpose(perm)
    assert v.shape == tuple(shape), (v.shape, shape)
    if broadcast and r:
        flat = [draw(st.booleans()) for _ in range(r)]
        small = v[tuple(slice(0, 1) if f else slice(None) for f in flat)]
        v = np.broadcast_to(small, shape)
    return v, buf


shapes = st.lists(st.sampled_from(DIMS), min_size=0, max_size=5).filter(
    lambda s: int(np.prod(s, dtype=np.int64)) <= 20000)


@SETTINGS
@given(data=st.data(), shape=shapes, dtype=st.sampled_from(DTYPES), simd=st.booleans())
def test_strided_copy_equals_numpy_assignment_on_any_views(data, shape, dtype, simd):
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1)))
    src, _ = data.draw(views(shape, dtype, rng, broadcast=True))
    dst, buf = data.draw(views(shape, dtype, rng))
    want_buf = buf.copy()
    want = want_buf[...]
    # the same view of the copy of the buffer, assigned by numpy
    offset = dst.__array_interface__["data"][0] - buf.__array_interface__["data"][0]
    want = np.lib.stride_tricks.as_strided(want_buf.reshape(-1)[offset // buf.itemsize:], dst.shape, dst.strides) \
        if dst.size else want
    if dst.size:
        want[...] = src
    assert _native.copy_into(dst, src, simd) is dst
    assert_same_bits(buf, want_buf)          # the view's elements, and nothing outside it


@SETTINGS
@given(data=st.data(), shape=shapes, dtype=st.sampled_from(DTYPES))
def test_fill_equals_numpy_assignment_on_any_views(data, shape, dtype):
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1)))
    dst, buf = data.draw(views(shape, dtype, rng))
    value = _random(rng, (), dtype)[()]
    want_buf = buf.copy()
    if dst.size:
        offset = dst.__array_interface__["data"][0] - buf.__array_interface__["data"][0]
        np.lib.stride_tricks.as_strided(want_buf.reshape(-1)[offset // buf.itemsize:], dst.shape,
                                        dst.strides)[...] = value
    _native.fill(dst, value)
    assert_same_bits(buf, want_buf)


@SETTINGS
@given(data=st.data(), shape=shapes, signed=st.booleans())
def test_table_copy_on_any_views(data, shape, signed):
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1)))
    dtype = np.int8 if signed else np.uint8
    src, _ = data.draw(views(shape, dtype, rng, broadcast=True))
    dst, _ = data.draw(views(shape, np.uint8, rng))
    table = rng.integers(0, 256, 256, dtype=np.uint8)
    _native.BoundCopy([(dst, src, table)], dst).run()
    assert_same_bits(dst, table[np.asarray(src).view(np.uint8)])


@pytest.mark.parametrize("simd", [True, False])
def test_table_copy_of_contiguous_rows_every_length_and_byte(simd):
    """Contiguous rows take the SIMD lookup where the CPU has AVX-512 VBMI (64 bytes a
    step, the tail masked); every length around the steps, every byte value, both ways
    the same bytes as numpy's indexing, and nothing written past the row."""
    rng = np.random.default_rng(5)
    table = rng.permutation(256).astype(np.uint8)
    for n in [*range(0, 140), 255, 256, 257, 1000, 4099]:
        src = rng.integers(0, 256, n + 3, dtype=np.uint8)[1:n + 1]
        buf = np.full(n + 2, 77, np.uint8)
        _native.BoundCopy([(buf[1:n + 1], src, table)], buf, simd).run()
        assert_same_bits(buf[1:n + 1], table[src])
        assert buf[0] == buf[n + 1] == 77
    every = np.arange(256, dtype=np.uint8)
    got = np.empty(256, np.uint8)
    _native.BoundCopy([(got, every, table)], got, simd).run()
    assert_same_bits(got, table)


@pytest.mark.parametrize("dtype", [np.uint8, np.float16, np.float32, np.int64])
@pytest.mark.parametrize("shape", [(1, 64, 56, 56), (2, 3, 7, 5), (1, 17, 1, 33)])
def test_transposes_merge_axes_and_run_blocked_with_and_without_simd(shape, dtype):
    x = _random(np.random.default_rng(1), shape, dtype)
    want = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    for simd in (False, True):
        y = np.empty(want.shape, dtype)
        bound = _native.BoundCopy([(y, x.transpose(0, 2, 3, 1))], y, simd)
        assert_same_bits(bound.run(), want)
        (dims, blocked), = bound.info()
        n, c, h, w = shape
        if shape == (1, 64, 56, 56):
            assert dims == (h * w, c) and blocked == (np.dtype(dtype).itemsize <= 4)
    # dimensions contiguous in both arrays merge: one run
    y = np.empty((4, 6, 10), np.float32)
    assert _native.BoundCopy([(y, np.ones((4, 6, 10), np.float32))], y).info() == [((240,), False)]


def test_a_source_that_is_its_destination_is_skipped_and_overlaps_refused():
    y = np.zeros((2, 6, 3), np.float32)
    assert len(_native.BoundCopy([(y[:, 2:4], y[:, 2:4])], y)) == 0
    with pytest.raises(ValueError, match="overlaps"):
        _native.BoundCopy([(y[:, 2:4], y[:, 3:5])], y)


@SETTINGS
@given(shape=st.lists(st.sampled_from(DIMS), min_size=0, max_size=3), dtype=st.sampled_from(DTYPES),
       kind=st.sampled_from(["same", "strided", "dtype", "shape", "readonly_dst", "itself"]), seed=st.integers(0, 99))
def test_copy_same_copies_only_equal_contiguous_arrays(shape, dtype, kind, seed):
    """_native.copy_same (a graph plan's feed copy): one memmove for C-contiguous arrays of
    one shape and dtype; False and nothing written for every other pair."""
    rng = np.random.default_rng(seed)
    src = rng.integers(0, 100, shape).astype(dtype)
    dst = np.zeros(shape, dtype)
    if kind == "strided":
        src = np.repeat(src[..., None], 2, axis=-1)[..., 0]
    elif kind == "dtype":
        src = src.astype(np.float32 if np.dtype(dtype) != np.float32 else np.float64)
    elif kind == "shape":
        src = src.reshape(-1)
        if src.shape == dst.shape:
            src = src[None]
    elif kind == "readonly_dst":
        dst.flags.writeable = False
    elif kind == "itself":
        dst = src
    before = dst.copy()
    done = _native.copy_same(dst, src)
    assert done == (kind in ("same", "itself") or (kind == "strided" and src.flags.c_contiguous))
    assert_same_bits(dst, src if done else before)


def test_bad_moves_are_errors():
    y = np.zeros((3, 4), np.float32)
    bad = [([(y, np.zeros((4, 3), np.float32))], ValueError),                  # shape
           ([(y, np.zeros((3, 4), np.int32))], TypeError),                     # dtype
           ([(y, [[0] * 4] * 3)], TypeError),                                  # not an array
           ([(np.zeros((3, 4), np.complex128), np.zeros((3, 4), np.complex128))], TypeError),   # 16 bytes
           ([(np.zeros(3, object), np.zeros(3, object))], TypeError),
           ([(np.broadcast_to(np.zeros(4, np.float32), (3, 4)), y)], ValueError),   # read-only dst
           ([(np.lib.stride_tricks.as_strided(y, (3, 4), (0, 4)), y.copy())], ValueError),   # zero dst stride
           ([(y, None, np.zeros(2))], ValueError),                             # fill value not one scalar
           ([(np.zeros(4, np.uint8), np.zeros(4, np.uint8), np.zeros(255, np.uint8))], ValueError),  # table
           ([(np.zeros(4, np.int16), np.zeros(4, np.int16), np.zeros(256, np.uint8))], ValueError),
           ([(y,)], TypeError), (["y"], TypeError)]
    for moves, error in bad:
        with pytest.raises(error):
            _native.BoundCopy(moves, y)
    # nine axes that do not merge
    big = np.zeros((2,) * 9 + (3,), np.uint8)[..., 0]
    with pytest.raises(ValueError, match="dimensions"):
        _native.copy_into(big, np.zeros((2,) * 9, np.uint8).transpose(list(range(9))[::-1]))


# ---------------------------------------------------------------- graph operators

_ONNX_TYPES = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.uint8): TensorProto.UINT8,
               np.dtype(np.int8): TensorProto.INT8, np.dtype(np.int64): TensorProto.INT64,
               np.dtype(np.float16): TensorProto.FLOAT16, np.dtype(np.bool_): TensorProto.BOOL,
               np.dtype(np.int32): TensorProto.INT32, np.dtype(np.float64): TensorProto.DOUBLE}


def _model(nodes, feeds: dict, outputs, inits: dict = (), opset=18, ms=False):
    inputs = [helper.make_tensor_value_info(k, _ONNX_TYPES[v.dtype], v.shape) for k, v in feeds.items()]
    elem = _ONNX_TYPES[next(iter(feeds.values())).dtype]     # the outputs: of the first input's type
    outs = [helper.make_tensor_value_info(o, elem, None) for o in outputs]
    g = helper.make_graph(nodes, "movement", inputs, outs,
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in dict(inits).items()])
    ops = [helper.make_opsetid("", opset)] + ([helper.make_opsetid("com.microsoft", 1)] if ms else [])
    return helper.make_model(g, opset_imports=ops, ir_version=9).SerializeToString()


def check(nodes, feeds: dict, outputs, inits: dict = (), opset=18, ms=False, ort=True):
    """The model on the plan (traced, then planned: its nodes bound native steps),
    node by node, on the reference operators and on onnxruntime: the same bits."""
    model = _model(nodes, feeds, outputs, inits, opset, ms)
    planned, nodes_run = Session(model), Session(model, plan=False)
    want = None
    if len(planned.graph.nodes) == 1:      # the reference operator itself
        node = planned.graph.nodes[0]
        got = run_node(node, {**feeds, **planned.graph.initializers})
        want = [got[o] for o in outputs]
    for k in range(2):
        got = planned.run(None, feeds)
        assert planned.last_run == ("trace", "plan")[k]
        if want is None:
            want = nodes_run.run(None, feeds)
        for g, w in zip(got, want):
            assert_same_bits(g, w)
    for g, w in zip(nodes_run.run(None, feeds), want):
        assert_same_bits(g, w)
    (pool,) = [p for p in planned._plans.values() if p is not None]
    plan = pool._idle[0]
    movers = [s for s in plan.steps if s[0].op_type in MOVERS]
    assert movers and all(bound and where == "native" for _, _, bound, where in movers)
    assert all(planned.placement(n) == "native" for n in planned.graph.nodes if n.op_type in MOVERS)
    if ort:
        import onnxruntime
        sess = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
        for g, w in zip(sess.run(outputs, feeds), want):   # values (onnxruntime's float16 DepthToSpace
            assert g.dtype == w.dtype                         # quiets signalling NaNs), NaN where NaN
            np.testing.assert_array_equal(g, w)
    return want


MOVERS = {"Concat", "Split", "Slice", "Pad", "Transpose", "DepthToSpace", "SpaceToDepth", "QLinearConcat", "Where"}
GRAPH_DTYPES = [np.float32, np.uint8, np.int8, np.int64, np.float16, np.bool_]
small_shapes = st.lists(st.sampled_from([1, 2, 3, 5, 7]), min_size=1, max_size=4)
GRAPH_SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@GRAPH_SETTINGS
@given(data=st.data(), shape=small_shapes, dtype=st.sampled_from(GRAPH_DTYPES), n=st.integers(1, 4))
def test_concat(data, shape, dtype, n):
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1)))
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    feeds = {}
    for k in range(n):
        s = list(shape)
        s[axis] = data.draw(st.sampled_from([0, 1, 2, 5]))
        feeds[f"x{k}"] = _random(rng, s, dtype)
    check([helper.make_node("Concat", list(feeds), ["y"], axis=axis)], feeds, ["y"])


@GRAPH_SETTINGS
@given(data=st.data(), shape=small_shapes, dtype=st.sampled_from(GRAPH_DTYPES))
def test_split(data, shape, dtype):
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1)))
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = _random(rng, shape, dtype)
    dim = shape[axis]
    if data.draw(st.booleans()):   # sizes as an input (opset 13+)
        cuts = sorted(data.draw(st.lists(st.integers(0, dim), min_size=0, max_size=3)))
        sizes = np.diff([0] + cuts + [dim]).astype(np.int64)
        outs = [f"y{k}" for k in range(len(sizes))]
        check([helper.make_node("Split", ["x", "split"], outs, axis=axis)], {"x": x}, outs, {"split": sizes})
    else:                          # num_outputs (opset 18), the last part the smaller
        n = data.draw(st.integers(1, max(1, dim)))
        outs = [f"y{k}" for k in range(n)]
        chunk = -(-dim // n)       # onnxruntime refuses a split whose last part would be below 0
        check([helper.make_node("Split", ["x"], outs, axis=axis, num_outputs=n)], {"x": x}, outs,
              ort=chunk * (n - 1) < dim)


@GRAPH_SETTINGS
@given(data=st.data(), shape=small_shapes, dtype=st.sampled_from(GRAPH_DTYPES))
def test_slice(data, shape, dtype):
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1)))
    x = _random(rng, shape, dtype)
    axes = data.draw(st.lists(st.integers(-len(shape), len(shape) - 1), min_size=1, max_size=len(shape),
                              unique_by=lambda a: a % len(shape)))
    bound = st.sampled_from([-(2 ** 62), -9, -3, -1, 0, 1, 2, 4, 9, 2 ** 62])
    starts = [data.draw(bound) for _ in axes]
    ends = [data.draw(bound) for _ in axes]
    steps = [data.draw(st.sampled_from([1, 2, 3, -1, -2, -5])) for _ in axes]
    inits = {"s": np.array(starts, np.int64), "e": np.array(ends, np.int64), "a": np.array(axes, np.int64),
             "t": np.array(steps, np.int64)}
    check([helper.make_node("Slice", ["x", "s", "e", "a", "t"], ["y"])], {"x": x}, ["y"], inits)


@GRAPH_SETTINGS
@given(data=st.data(), shape=small_shapes, dtype=st.sampled_from(GRAPH_DTYPES),
       x_form=st.sampled_from(["full", "scalar", "one"]), y_form=st.sampled_from(["full", "scalar", "one"]))
def test_where(data, shape, dtype, x_form, y_form):
    """Where with the condition of the result's shape, x and y full, a scalar or a
    one-value tensor (an attention mask choosing between two constants): the native
    select, the reference's bits (NaN payloads, -0.0)."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1)))
    ort = np.dtype(dtype) in (np.float32, np.uint8, np.int64)       # onnxruntime's Where types among ours
    feeds, inits = {}, {}
    for name, form in (("x", x_form), ("y", y_form)):
        v = _random(rng, shape if form == "full" else [] if form == "scalar" else [1] * len(shape), dtype)
        (feeds if form == "full" else inits)[name] = v
    feeds["c"] = rng.random(shape) < 0.5
    if not any(k in feeds for k in ("x", "y")):     # the model's outputs take the first feed's type
        feeds = {"x0": _random(rng, shape, dtype), **feeds}
        nodes = [helper.make_node("Identity", ["x0"], ["z0"]), helper.make_node("Where", ["c", "x", "y"], ["z"])]
        check(nodes, feeds, ["z"], inits, ort=ort)
        return
    feeds = dict(sorted(feeds.items(), key=lambda kv: kv[0] == "c"))    # c last
    check([helper.make_node("Where", ["c", "x", "y"], ["z"])], feeds, ["z"], inits, ort=ort)


def test_where_broadcasts_run_the_reference_and_views_match():
    """Broadcasts the select does not take (x along one axis, cond smaller than the result)
    run the reference operator: the same values; an NCHW view of NHWC memory runs native."""
    rng = np.random.default_rng(5)
    c = rng.random((2, 3, 4)) < 0.5
    x = rng.standard_normal((1, 3, 1)).astype(np.float32)
    y = rng.standard_normal((2, 3, 4)).astype(np.float32)
    from qkernels.graph.backends import cpu_movement
    assert cpu_movement._where_runs(c, x, y) is None and cpu_movement._where_runs(c[:1], y, y) is None
    nhwc = np.ascontiguousarray(y.transpose(0, 2, 1)).transpose(0, 2, 1)
    got = cpu_movement._where_runs(np.ascontiguousarray(c.transpose(0, 2, 1)).transpose(0, 2, 1), nhwc, x[:, :1, :1])
    assert got is not None
    _native.where(*got[:4])
    assert_same_bits(got[4], np.where(c, nhwc, x[:, :1, :1]))
    model = _model([helper.make_node("Where", ["c", "x", "y"], ["z"])], {"y": y, "c": c}, ["z"], {"x": x})
    np.testing.assert_array_equal(Session(model).run(None, {"y": y, "c": c})[0], np.where(c, x, y))
    with pytest.raises(ValueError):
        _native.where(c.reshape(-1), y.reshape(-1), y.reshape(-1)[:3], np.empty(24, np.float32))


@GRAPH_SETTINGS
@given(data=st.data(), shape=small_shapes, dtype=st.sampled_from(GRAPH_DTYPES))
def test_transpose(data, shape, dtype):
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1)))
    x = _random(rng, shape, dtype)
    perm = data.draw(st.permutations(range(len(shape))))
    kw = {} if data.draw(st.booleans()) and perm == list(range(len(shape)))[::-1] else {"perm": perm}
    check([helper.make_node("Transpose", ["x"], ["y"], **kw)], {"x": x}, ["y"])


@GRAPH_SETTINGS
@given(data=st.data(), shape=small_shapes, dtype=st.sampled_from([np.float32, np.uint8, np.int8, np.int64]),
       mode=st.sampled_from(["constant", "reflect", "edge", "wrap"]))
def test_pad(data, shape, dtype, mode):
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1)))
    x = _random(rng, shape, dtype)
    if dtype == np.float32:       # onnxruntime's Pad reads floats as floats: no NaNs to compare
        x = rng.standard_normal(shape).astype(np.float32)
    r = len(shape)
    axes = data.draw(st.lists(st.integers(-r, r - 1), min_size=1, max_size=r, unique_by=lambda a: a % r))
    # negative pads crop; reflect needs pads below the dimension (onnxruntime), wrap any
    lo = -1 if mode == "constant" else 0
    pads = []
    for a in axes + axes:
        d = shape[a]
        hi = d - 1 if mode == "reflect" else 2 * d + 1 if mode == "wrap" else 4
        pads.append(data.draw(st.integers(lo if d > 1 else 0, hi)))
    inits = {"p": np.array(pads, np.int64), "a": np.array(axes, np.int64)}
    inputs = ["x", "p", "", "a"]
    if mode == "constant" and data.draw(st.booleans()):
        inits["v"] = np.array(rng.integers(-5, 5), dtype)
        inputs[2] = "v"
    check([helper.make_node("Pad", inputs, ["y"], mode=mode)], {"x": x}, ["y"], inits, opset=19)


def test_pad_edges_beyond_onnxruntime():
    """Reflections longer than the dimension (numpy reflects again), a length-1 axis
    and empty tensors: against the reference operator only."""
    x = _random(np.random.default_rng(2), (2, 3, 1, 4), np.float32)
    for mode, pads in [("reflect", [0, 7, 3, 9, 1, 0, 2, 11]), ("wrap", [0, 9, 0, 1, 0, 8, 0, 0]),
                       ("edge", [1, 0, 5, 0, 0, 3, 2, 1]), ("constant", [-1, -2, 2, 1, 1, 2, -1, 0])]:
        check([helper.make_node("Pad", ["x", "p"], ["y"], mode=mode)], {"x": x}, ["y"],
              {"p": np.array(pads, np.int64)}, opset=19, ort=False)
    e = np.zeros((2, 0, 3), np.int8)
    check([helper.make_node("Pad", ["x", "p", "v"], ["y"])], {"x": e}, ["y"],
          {"p": np.array([1, 2, 0, 0, 1, 1], np.int64), "v": np.array(-3, np.int8)}, opset=19)


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
@pytest.mark.parametrize("dtype", [np.float32, np.uint8, np.float16])
@pytest.mark.parametrize("b", [1, 2, 3])
def test_depth_to_space_and_space_to_depth(mode, dtype, b):
    rng = np.random.default_rng(b)
    x = _random(rng, (2, 2 * b * b, 3, 5), dtype)
    check([helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=b, mode=mode)], {"x": x}, ["y"])
    if mode == "DCR":     # onnxruntime's SpaceToDepth: DCR only, floats
        z = _random(rng, (2, 3, 2 * b, 5 * b), dtype)
        check([helper.make_node("SpaceToDepth", ["x"], ["y"], blocksize=b)], {"x": z}, ["y"],
              ort=dtype != np.uint8)


def test_operators_on_nchw_views_of_nhwc_memory():
    """Convolutions make NCHW views of NHWC memory: the moves take those strides (in and
    out), plan and node by node the same bits."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 4, 9, 11)).astype(np.float32)
    w1, w2 = (rng.standard_normal((c, 4, 1, 1)).astype(np.float32) for c in (6, 5))
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"]), helper.make_node("Conv", ["x", "w2"], ["b"]),
             helper.make_node("Concat", ["a", "b", "x"], ["c"], axis=1),
             helper.make_node("Slice", ["c", "s", "en", "ax", "st"], ["d"]),
             helper.make_node("Pad", ["d", "p"], ["e"], mode="reflect"),
             helper.make_node("Transpose", ["e"], ["f"], perm=[0, 2, 3, 1]),
             helper.make_node("Split", ["c"], ["g", "h"], axis=1, num_outputs=2)]
    inits = {"w1": w1, "w2": w2, "s": np.array([1, -1], np.int64), "en": np.array([14, 0], np.int64),
             "ax": np.array([1, 3], np.int64), "st": np.array([2, -2], np.int64),
             "p": np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64)}
    model = _model(nodes, {"x": x}, ["c", "e", "f", "g", "h"], inits)
    planned, nodes_run = Session(model), Session(model, plan=False)
    want = nodes_run.run(None, {"x": x})
    for _ in range(2):
        for g, w in zip(planned.run(None, {"x": x}), want):
            assert_same_bits(g, w)
    plan = [p for p in planned._plans.values() if p is not None][0]._idle[0]
    assert not plan.arrays["a"].flags.c_contiguous      # an NCHW view of NHWC memory
    assert all(bound for node, _, bound, _ in plan.steps)
    import onnxruntime
    ref = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    for g, w in zip(want, ref):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    planned.run(None, {"x": x}, profile=True)
    assert {r["placement"] for r in planned.last_profile if r["op"] in MOVERS} == {"native"}
    assert "native" in planned.explain() and "Concat" in planned.explain()


def test_parameters_that_are_not_constants_run_but_are_not_bound():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    model = _model([helper.make_node("Slice", ["x", "s", "e"], ["y"])],
                   {"x": x, "s": np.array([1], np.int64), "e": np.array([2], np.int64)}, ["y"])
    s = Session(model)
    for k in range(3):
        (got,) = s.run(None, {"x": x, "s": np.array([k % 2], np.int64), "e": np.array([2], np.int64)})
        np.testing.assert_array_equal(got, x[k % 2:2])


def test_concat_bind_skips_an_input_that_is_its_slice_of_the_output():
    node = cpu.Node("c", "Concat", "", ["a", "b"], ["y"], {"axis": 1})
    from qkernels.graph.ir import Graph
    graph = Graph(nodes=[node], initializers={}, inputs=[], outputs=[], opset=18)
    runner = cpu.KERNELS["Concat"](node, graph)
    y = np.zeros((2, 5, 3), np.float32)
    a, b = y[:, :2], np.ones((2, 3, 3), np.float32)
    a[...] = 7
    bound = runner.bind([a, b], [y])
    assert isinstance(bound, _native.Bound) and len(bound) == 1
    bound()
    assert (y[:, :2] == 7).all() and (y[:, 2:] == 1).all()


# ---------------------------------------------------------------- QLinearConcat

def _qconcat(xs, params, out_params, axis, dtype):
    feeds = {f"x{k}": x for k, x in enumerate(xs)}
    inits = {"sy": np.array(out_params[0], np.float32), "zy": np.array(out_params[1], dtype)}
    inputs = ["sy", "zy"]
    for k, (s, z) in enumerate(params):
        inits[f"s{k}"], inits[f"z{k}"] = np.array(s, np.float32), np.array(z, dtype)
        inputs += [f"x{k}", f"s{k}", f"z{k}"]
    node = helper.make_node("QLinearConcat", inputs, ["y"], domain="com.microsoft", axis=axis)
    return check([node], feeds, ["y"], inits, ms=True)


scales = st.sampled_from([1e-6, 0.003, 0.0078125, 0.02, 0.1, 0.5, 1.0, 3.0, 1e3])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), signed=st.booleans(), n=st.integers(1, 4), shape=small_shapes)
def test_qlinear_concat_against_onnxruntime(data, signed, n, shape):
    dtype = np.int8 if signed else np.uint8
    lo, hi = (-128, 127) if signed else (0, 255)
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1)))
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    out_params = (data.draw(scales), data.draw(st.sampled_from([lo, 0, 3, hi])))
    xs, params = [], []
    for _ in range(n):
        s = list(shape)
        s[axis] = data.draw(st.sampled_from([1, 2, 5]))
        xs.append(rng.integers(lo, hi + 1, s).astype(dtype))
        same = data.draw(st.booleans())
        zp = data.draw(st.sampled_from([lo, 0, 7, hi]))
        params.append(out_params if same else (data.draw(scales), zp))
    _qconcat(xs, params, out_params, axis, dtype)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_qlinear_concat_every_value_and_the_tables(dtype):
    info = np.iinfo(dtype)
    every = np.arange(info.min, info.max + 1).astype(dtype).reshape(1, 256)
    out = (0.0473, info.max)
    params = [out, (0.0473, info.min), (0.0001, 5), (250.0, 0), (0.0473 * 2, 0)]
    got = _qconcat([every] * len(params), params, out, 0, dtype)[0]
    assert_same_bits(got[0], every[0])        # the same parameters: a copy


def test_qlinear_concat_bind_copies_inputs_of_the_output_parameters():
    node = cpu.Node("q", "QLinearConcat", "com.microsoft", ["sy", "zy", "a", "sa", "za", "b", "sb", "zb"], ["y"],
                    {"axis": 0})
    from qkernels.graph.ir import Graph
    f32, i8 = (lambda v: np.array(v, np.float32)), (lambda v: np.array(v, np.int8))
    inits = {"sy": f32(0.5), "zy": i8(1), "sa": f32(0.5), "za": i8(1), "sb": f32(0.25), "zb": i8(0)}
    graph = Graph(nodes=[node], initializers=inits, inputs=[], outputs=[], opset=18)
    runner = cpu.KERNELS[node.key](node, graph)
    a, b = (np.arange(-4, 4, dtype=np.int8).reshape(2, 4) for _ in range(2))
    y = np.empty((4, 4), np.int8)
    ins = [inits["sy"], inits["zy"], a, inits["sa"], inits["za"], b, inits["sb"], inits["zb"]]
    bound = runner.bind(ins, [y])
    bound()
    assert [blocked for _, blocked in bound.info()] == [False, False]
    assert_same_bits(y, run_node(node, dict(zip(node.inputs, ins)))["y"])
    assert_same_bits(y[:2], a)
