"""The compiled static plan (qkernels.graph.plan): bit-identical to the node-by-node run
on real CNNs, float and int8; native steps bound; an arena whose places never overlap
while both are alive; a plan per input-shape set; shapes that follow the data fall
back; outputs owned by the caller; calls from several threads; errors mid-plan."""
import threading

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from qkernels.bench import zoo  # noqa: E402
from qkernels.graph import ModelError, Session  # noqa: E402
from qkernels.graph import session as session_module  # noqa: E402

RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def mobilenet():
    return zoo.mobilenet_v2(width=0.35, size=48, classes=10)


@pytest.fixture(scope="module")
def mobilenet_int8(mobilenet):
    from qkernels.quant import quantize_model
    calib = [{"input": RNG.standard_normal((1, 3, 48, 48)).astype(np.float32)} for _ in range(4)]
    return quantize_model(mobilenet, calib, method="minmax", progress=False)


def _pool(s: Session):
    (pool,) = [p for p in s._plans.values() if p is not None]
    return pool


@pytest.mark.parametrize("variant", ["fp32", "int8"])
@pytest.mark.parametrize("threads", [1, 2])
def test_plan_is_bit_identical_to_the_node_by_node_run(variant, threads, mobilenet, mobilenet_int8):
    model = mobilenet if variant == "fp32" else mobilenet_int8
    planned = Session(model, num_threads=threads)
    nodes = Session(model, num_threads=threads, plan=False)
    for k in range(3):
        x = RNG.standard_normal((1, 3, 48, 48)).astype(np.float32)
        (got,) = planned.run(None, {"input": x})
        (want,) = nodes.run(None, {"input": x})
        assert planned.last_run == ("trace" if k == 0 else "plan") and nodes.last_run == "nodes"
        np.testing.assert_array_equal(got, want)
    plan = _pool(planned)._idle[0]
    convs = [s for s in plan.steps if s[0].op_type in ("Conv", "FusedConv", "QLinearConv")]
    assert convs and all(bound for _, _, bound, _ in convs)     # every convolution a bound native call
    assert plan.bound >= len(convs)


def test_arena_places_do_not_overlap_while_alive(mobilenet):
    s = Session(mobilenet, num_threads=1)
    x = RNG.standard_normal((1, 3, 48, 48)).astype(np.float32)
    s.run(None, {"input": x})
    spec = _pool(s).spec
    bases = [v for v in spec.values.values() if v.base is None]
    for i, a in enumerate(bases):
        assert a.offset % 64 == 0
        for b in bases[i + 1:]:
            if a.first <= b.last and b.first <= a.last and a.nbytes and b.nbytes:   # alive together
                assert a.offset + a.nbytes <= b.offset or b.offset + b.nbytes <= a.offset, (a.name, b.name)
    total = sum(v.nbytes for v in bases)
    assert max(v.nbytes for v in bases) <= spec.arena_bytes < total / 2         # places are reused
    assert spec.views                                                           # Flatten/Reshape: views
    s.run(None, {"input": x})
    assert s.peak_bytes == s.arena_bytes == spec.arena_bytes
    consts = s.graph.initializers.values()                                      # copied aligned at load
    assert all(v.ctypes.data % 64 == 0 and not v.flags.writeable for v in consts if v.nbytes)


def _dynamic_model():
    """y = Reshape(x, [-1]) of x's non-zero positions: NonZero's shape follows the data."""
    nodes = [helper.make_node("NonZero", ["x"], ["nz"]),
             helper.make_node("Cast", ["nz"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("Relu", ["f"], ["y"])]
    g = helper.make_graph(nodes, "dyn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def test_shapes_that_follow_the_data_run_node_by_node():
    s = Session(_dynamic_model())
    a = np.array([1, 0, 2, 0], np.float32)
    b = np.array([1, 3, 2, 0], np.float32)
    np.testing.assert_array_equal(s.run(None, {"x": a})[0], [[0, 2]])
    np.testing.assert_array_equal(s.run(None, {"x": a})[0], [[0, 2]])
    assert s.last_run == "plan"
    np.testing.assert_array_equal(s.run(None, {"x": b})[0], [[0, 1, 2]])     # the plan refused: node by node
    assert s.last_run == "nodes"
    np.testing.assert_array_equal(s.run(None, {"x": a})[0], [[0, 2]])
    assert s.last_run == "nodes"


def _mlp_dynamic_batch():
    w = RNG.standard_normal((8, 5)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])]
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 5])],
                          [numpy_helper.from_array(w, "w")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), w


def test_a_plan_per_input_shape_set_least_recently_used_dropped(monkeypatch):
    model, w = _mlp_dynamic_batch()
    s = Session(model)
    monkeypatch.setattr(session_module, "PLAN_CACHE", 3)
    for n in (1, 2, 1, 3, 4, 2):
        x = RNG.standard_normal((n, 8)).astype(np.float32)
        for _ in range(2):
            (y,) = s.run(None, {"x": x})
            np.testing.assert_allclose(y, np.maximum(x @ w, 0), rtol=1e-5, atol=1e-5)
    assert s.last_run == "plan"
    assert [k[0][0][1] for k in s._plans] == [(3, 8), (4, 8), (2, 8)]


def test_the_last_signatures_shortcut_takes_only_the_same_feeds_threads_and_isa():
    """Session._hot (the plan of the last signature, its key and LRU skipped): a feed of
    another shape, dtype or type, another thread count or ISA path goes the long way
    (and gets its own plan), and the result is always the model's."""
    import qkernels
    model, w = _mlp_dynamic_batch()
    s = Session(model)
    fresh = Session(model, plan=False)
    x2 = RNG.standard_normal((2, 8)).astype(np.float32)
    want = lambda x: np.maximum(np.asarray(x, np.float32) @ w, 0)   # noqa: E731
    for _ in range(3):
        np.testing.assert_allclose(s.run(None, {"x": x2})[0], want(x2), rtol=1e-5, atol=1e-5)
    assert s.last_run == "plan" and s._hot is not None and s._hot[0][0][1] == (2, 8)
    x3 = RNG.standard_normal((3, 8)).astype(np.float32)
    np.testing.assert_allclose(s.run(None, {"x": x3})[0], want(x3), rtol=1e-5, atol=1e-5)
    assert s.last_run == "trace"
    for feed in (x2.astype(np.float64), x2.tolist(), x2[:, ::-1], np.asfortranarray(x2)):
        try:
            expect = fresh.run(None, {"x": feed})[0]
        except Exception as e:      # (what the long way does with it, the shortcut does too)
            with pytest.raises(type(e)):
                s.run(None, {"x": feed})
            continue
        np.testing.assert_array_equal(s.run(None, {"x": feed})[0], expect)
    unaligned = np.empty(x2.nbytes + 1, np.uint8)[1:].view(np.float32).reshape(x2.shape)
    unaligned[...] = x2
    assert not unaligned.flags.aligned
    np.testing.assert_array_equal(s.run(None, {"x": unaligned})[0], s.run(None, {"x": x2})[0])
    from qkernels.graph import RunError
    for feeds in ({"y": x2}, {"x": x2, "y": x2}, {}):       # (the shortcut's checks, then the long way's)
        with pytest.raises(RunError):
            s.run(None, feeds)
    with qkernels.use_num_threads(qkernels.get_num_threads() % 2 + 1):   # another count
        np.testing.assert_allclose(s.run(None, {"x": x2})[0], want(x2), rtol=1e-5, atol=1e-5)
        assert s.last_run == "trace"
    with qkernels.use_isa("scalar"):
        np.testing.assert_allclose(s.run(None, {"x": x2})[0], want(x2), rtol=1e-5, atol=1e-5)
        assert s.last_run == "trace"        # its own plan: not the hot one of another path
    np.testing.assert_allclose(s.run(None, {"x": x2})[0], want(x2), rtol=1e-5, atol=1e-5)
    assert s.last_run == "plan"


def test_outputs_are_the_callers_and_feeds_any_view(mobilenet):
    s = Session(mobilenet, num_threads=1)
    x = RNG.standard_normal((1, 3, 48, 96)).astype(np.float32)
    view = x[:, :, :, ::2]                      # a strided feed: copied into its place
    (y0,) = s.run(None, {"input": np.ascontiguousarray(view)})
    (y1,) = s.run(None, {"input": view})
    assert s.last_run == "plan"
    np.testing.assert_array_equal(y0, y1)
    assert y1.flags.c_contiguous and y1.flags.writeable and y1.flags.owndata
    y1[...] = 0                                 # the caller's: the next run is unaffected
    (y2,) = s.run(None, {"input": view})
    np.testing.assert_array_equal(y0, y2)
    assert not np.shares_memory(y2, _pool(s)._idle[0].arena)


def test_calls_from_several_threads_each_get_a_plan(mobilenet):
    s = Session(mobilenet, num_threads=1)
    ref = Session(mobilenet, num_threads=1, plan=False)
    xs = [RNG.standard_normal((1, 3, 48, 48)).astype(np.float32) for _ in range(4)]
    want = [ref.run(None, {"input": x})[0] for x in xs]
    s.run(None, {"input": xs[0]})
    errors = []

    def work(k):
        try:
            for _ in range(5):
                np.testing.assert_array_equal(s.run(None, {"input": xs[k]})[0], want[k])
        except Exception as e:  # noqa: BLE001  (reported below)
            errors.append(e)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert 1 <= len(_pool(s)._idle) <= 4


def test_an_error_mid_plan_is_raised_and_the_session_goes_on():
    nodes = [helper.make_node("Gather", ["d", "i"], ["y"], axis=0)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("d", TensorProto.FLOAT, [3]),
                                       helper.make_tensor_value_info("i", TensorProto.INT64, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    s = Session(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]))
    d = np.array([1, 2, 3], np.float32)
    for _ in range(2):
        np.testing.assert_array_equal(s.run(None, {"d": d, "i": np.array([2, 0])})[0], [3, 1])
    with pytest.raises(ModelError):
        s.run(None, {"d": d, "i": np.array([5, 0])})
    np.testing.assert_array_equal(s.run(None, {"d": d, "i": np.array([1, 1])})[0], [2, 2])
    assert s.last_run == "plan"


def test_profile_on_the_plan_names_every_node(mobilenet):
    s = Session(mobilenet, num_threads=1)
    x = RNG.standard_normal((1, 3, 48, 48)).astype(np.float32)
    s.run(None, {"input": x})
    s.run(None, {"input": x}, profile=True)
    assert s.last_run == "plan"
    rows = s.last_profile
    assert [r["node"] for r in rows] == [n.name for n in s.graph.nodes]
    assert {r["placement"] for r in rows if r["op"] == "Flatten"} == {"view"}
    assert "view" in s.format_profile()


def test_plan_off_runs_node_by_node(mobilenet):
    s = Session(mobilenet, plan=False)
    x = RNG.standard_normal((1, 3, 48, 48)).astype(np.float32)
    for _ in range(2):
        s.run(None, {"input": x})
        assert s.last_run == "nodes"
    assert s.arena_bytes is None


def _concat_model(shared: bool = False):
    """Two convolutions of x concatenated on channels, then a third; ``shared``: the first
    one's result is also an output (so it cannot live inside the Concat's)."""
    w = {n: numpy_helper.from_array(RNG.standard_normal(s).astype(np.float32) * 0.3, n)
         for n, s in [("wa", (5, 3, 3, 3)), ("wb", (4, 3, 1, 1)), ("wc", (6, 9, 3, 3))]}
    b = numpy_helper.from_array(RNG.standard_normal(5).astype(np.float32), "ba")
    nodes = [helper.make_node("Conv", ["x", "wa", "ba"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["x", "wb"], ["b0"]),
             helper.make_node("Relu", ["b0"], ["b"]),
             helper.make_node("Concat", ["a", "b"], ["c"], axis=1),
             helper.make_node("Conv", ["c", "wc"], ["y"], pads=[1, 1, 1, 1], strides=[2, 2])]
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 6, 7])]
    if shared:
        outs.append(helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 5, 11, 13]))
    g = helper.make_graph(nodes, "concat", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 11, 13])],
                          outs, [*w.values(), b])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _one_concat_quantization(model):
    """``model`` (QDQ) with the Concat's inputs quantized like its output (each input's
    QuantizeLinear and DequantizeLinear given the output's scale and zero point)."""
    nodes = list(model.graph.node)
    made = {o: n for n in nodes for o in n.output}
    concat = next(n for n in nodes if n.op_type == "Concat")
    out_q = next(n for n in nodes if n.op_type == "QuantizeLinear" and concat.output[0] in n.input)
    for name in concat.input:
        dq = made[name]
        for n in (dq, made[dq.input[0]]):
            n.input[1], n.input[2] = out_q.input[1], out_q.input[2]
    return model


@pytest.mark.parametrize("variant", ["fp32", "int8", "int8-one-quantization"])
@pytest.mark.parametrize("shared", [False, True])
def test_concat_parts_are_written_in_place_by_their_producers(variant, shared):
    """A Concat whose inputs are made for it alone is no step: their producers write into
    its output's slices (fp32, and int8 where the inputs are quantized like the output:
    a Concat of the bytes; quantized otherwise, ONNX Runtime's QLinearConcat requantizes)."""
    model = _concat_model(shared)
    if variant.startswith("int8"):
        from qkernels.quant import quantize_model
        calib = [{"x": RNG.standard_normal((1, 3, 11, 13)).astype(np.float32)} for _ in range(4)]
        model = quantize_model(model, calib, method="minmax", progress=False)
        if variant == "int8-one-quantization":
            model = _one_concat_quantization(model)
    planned, nodes = Session(model, num_threads=1), Session(model, num_threads=1, plan=False)
    for _ in range(3):
        x = RNG.standard_normal((1, 3, 11, 13)).astype(np.float32)
        got, want = planned.run(None, {"x": x}), nodes.run(None, {"x": x})
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
    assert planned.last_run == "plan"
    spec = _pool(planned).spec
    if variant == "int8":   # (its inputs quantized otherwise than its output: requantized, not in place)
        assert "com.microsoft::QLinearConcat" in [n.key for n in planned.graph.nodes]
        return
    concat = [n for n in spec.views if n.op_type in ("Concat", "QLinearConcat")]
    parts = [v for v in spec.values.values() if v.part is not None]
    if shared:
        assert not concat and not parts
    else:
        assert len(concat) == 1 and len(parts) == 2
        assert all(v.base == concat[0].outputs[0] for v in parts)
        plan = _pool(planned)._idle[0]
        assert all(bound for node, _, bound, _ in plan.steps if "Conv" in node.op_type)   # straight into the slices
        base = plan.arrays[parts[0].base]
        assert all(np.shares_memory(plan.arrays[v.name], base) for v in parts)


def test_a_planned_signature_still_checks_every_feed():
    """The run on a signature that has a plan takes a short way (no checks: the same
    names, shapes and dtypes passed when it was made); anything else is checked as ever."""
    from qkernels.graph import RunError
    model, w = _mlp_dynamic_batch()
    s = Session(model)
    x = RNG.standard_normal((3, 8)).astype(np.float32)
    for _ in range(3):
        np.testing.assert_allclose(s.run(None, {"x": x})[0], np.maximum(x @ w, 0), rtol=1e-5, atol=1e-5)
    assert s.last_run == "plan"
    for bad in ({"x": x.astype(np.float64)}, {"x": x[:, :7].copy()}, {}, {"x": x, "z": x}, {"y": x}):
        with pytest.raises(RunError):
            s.run(None, bad)
    np.testing.assert_allclose(s.run(None, {"x": np.asfortranarray(x)})[0], np.maximum(x @ w, 0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s.run(["y"], {"x": x})[0], np.maximum(x @ w, 0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_the_digits_cnn_flatten_is_a_native_step(variant):
    """The shipped digits CNN (python -m qkernels demo): its convolutions, its Flatten
    of the convolution's NCHW view of NHWC memory (int8: the native strided copy, the
    blocked transpose; fp32: no step, the Gemm reads the NHWC memory, see
    test_graph_cpu.py) and its Gemm are native steps of the plan, with the node-by-node bits."""
    from qkernels import _native
    from qkernels.demo import as_input, shipped_data
    from qkernels.quant import quantize_model
    path, data = shipped_data()
    x = as_input(data["test_images"][:5])
    model = path if variant == "fp32" else quantize_model(path, [{"input": as_input(data["calib_images"][:50])}],
                                                          target="cpu", progress=False)
    s = Session(model)
    want = Session(model, plan=False).run(None, {"input": x})[0]
    for _ in range(2):
        np.testing.assert_array_equal(s.run(None, {"input": x})[0], want)
    plan = _pool(s)._idle[0]
    kinds = {n.op_type: [type(c) for c in calls] for n, calls, _, _ in plan.steps}
    if variant == "int8":
        assert kinds["Flatten"] == [_native.BoundCopy]
    else:
        assert "Flatten" not in kinds and [n.inputs[0] for n, *_ in plan.steps if n.op_type == "Gemm"] == ["r2"]
    assert all(kinds[op] in ([_native.BoundGemm], [_native.BoundDconv])
               for op in kinds if "Conv" in op or "Gemm" in op)
