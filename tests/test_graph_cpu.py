"""The graph runner's ``cpu`` backend: qkernels' kernels under ONNX operators, and its
planning passes (BatchNormalization folding, QDQ -> integer operators, activation fusion).

Oracles: the ``reference`` backend alone (numpy, the ONNX specification) and ONNX Runtime
(skipped, visibly, when it is not installed). Integer results must match bit for bit
where they come straight out of a convolution or matrix product.
"""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from qkernels.graph import Backend, ModelError, Session  # noqa: E402
from qkernels.graph.backends.cpu import CpuBackend  # noqa: E402

OPSET = 17
X_SHAPE = (1, 3, 16, 16)


class _NoCpu(Backend):
    """Stands in for the ``cpu`` fallback so that a session runs on the reference
    operators only, with no cpu planning passes: the independent oracle."""
    name = "cpu"

    def supports(self, node, graph):
        return False


def reference_session(model) -> Session:
    return Session(model, backends=["reference", _NoCpu()])


def _ort():
    return pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: no ORT comparison")


def _model(nodes, inputs, outputs, inits, opset=OPSET, ms=False):
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid("com.microsoft", 1)] if ms else [])
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return model


def assert_fp16_close(got, want, sum_abs):
    """Within the fp16 accuracy contract (docs/api.md) of both sides, against each other:
    each output is one fp16 rounding (2^-11 relative) away from a sum whose error is at
    most 8 * 2^-11 * sum|terms| (fp16 chunks of 8 on Arm; fp32 sums elsewhere are tighter)."""
    got, want = got.astype(np.float64), want.astype(np.float64)
    bound = 2 * 2.0**-11 * np.abs(want) + 8 * 2.0**-11 * sum_abs + 2.0**-24
    assert np.all(np.abs(got - want) <= bound), float(np.max(np.abs(got - want) - bound))


# --------------------------------------------------------------------------- float CNN

def make_cnn(dtype=np.float32, seed=0):
    """Conv+BN+Relu, depthwise Conv (stride 2) + Clip(0, 6), 1x1 Conv, residual Add,
    MaxPool, GlobalAveragePool, Flatten, Gemm. Outputs: the logits ``y`` and the 1x1
    convolution's output ``c3``."""
    rng = np.random.default_rng(seed)
    et = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    inits = []

    def init(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr, dtype), name))
        return name

    n = helper.make_node
    nodes = [
        n("Conv", ["x", init("w1", rng.standard_normal((8, 3, 3, 3)) * 0.3), init("b1", rng.standard_normal(8) * 0.1)],
          ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        n("BatchNormalization", ["c1", init("g1", rng.uniform(0.5, 1.5, 8)), init("be1", rng.standard_normal(8) * 0.1),
                                 init("m1", rng.standard_normal(8) * 0.1), init("v1", rng.uniform(0.5, 2, 8))],
          ["bn1"], epsilon=1e-5, name="bn1"),
        n("Relu", ["bn1"], ["r1"], name="relu1"),
        n("Conv", ["r1", init("wd", rng.standard_normal((8, 1, 3, 3)) * 0.3), init("bd", rng.standard_normal(8) * 0.1)],
          ["c2"], pads=[1, 1, 1, 1], strides=[2, 2], group=8, name="dwconv"),
        n("Clip", ["c2", init("lo", 0.0), init("hi", 6.0)], ["r2"], name="relu6"),
        n("Conv", ["r2", init("wp", rng.standard_normal((8, 8, 1, 1)) * 0.3), init("bp", rng.standard_normal(8) * 0.1)],
          ["c3"], name="pwconv"),
        n("Add", ["c3", "r2"], ["a3"], name="add"),
        n("MaxPool", ["a3"], ["p3"], kernel_shape=[2, 2], strides=[2, 2], name="maxpool"),
        n("GlobalAveragePool", ["p3"], ["g3"], name="gap"),
        n("Flatten", ["g3"], ["f3"], axis=1, name="flatten"),
        n("Gemm", ["f3", init("wf", rng.standard_normal((10, 8)) * 0.3), init("bf", rng.standard_normal(10) * 0.1)],
          ["y"], transB=1, name="fc"),
    ]
    return _model(nodes, [helper.make_tensor_value_info("x", et, list(X_SHAPE))],
                  [helper.make_tensor_value_info("y", et, [1, 10]),
                   helper.make_tensor_value_info("c3", et, [1, 8, 8, 8])], inits)


def _inputs(dtype, n=3):
    return [np.random.default_rng(100 + k).standard_normal(X_SHAPE).astype(dtype) for k in range(n)]


def _ops(session) -> list[str]:
    return [n.key for n in session.graph.nodes]


def test_float_cnn_planning():
    s = Session(make_cnn())
    ops = _ops(s)
    assert "BatchNormalization" not in ops                      # folded into conv1
    assert ops.count("com.microsoft::FusedConv") == 2           # conv1+Relu, dwconv+Clip
    assert "Relu" not in ops and "Clip" not in ops
    cpu = next(b for b in s.backends if b.name == "cpu")
    on_kernels = [n.op_type for n in s.graph.nodes if cpu.on_kernels(n, s.graph)]
    assert sorted(on_kernels) == ["Add", "Conv", "FusedConv", "FusedConv", "Gemm", "GlobalAveragePool"]   # Add: kernels/eltwise.c
    assert [b for b, _ in s.partitions] == ["cpu"]


def test_float_cnn_matches_reference_and_ort():
    model = make_cnn()
    cpu, ref = Session(model), reference_session(model)
    xs = _inputs(np.float32)
    got = [cpu.run(None, {"x": x}) for x in xs]
    for x, outs in zip(xs, got):
        for g, w in zip(outs, ref.run(None, {"x": x})):
            assert g.dtype == np.float32 and g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
    ort = _ort()
    rt = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for x, outs in zip(xs, got):
        for g, t in zip(outs, rt.run(None, {"x": x})):
            np.testing.assert_allclose(g, t, rtol=1e-4, atol=1e-5)


def test_fp16_cnn_matches_reference():
    model = make_cnn(np.float16)
    cpu, ref = Session(model), reference_session(model)
    assert _ops(cpu).count("com.microsoft::FusedConv") == 2
    for x in _inputs(np.float16):
        for g, w in zip(cpu.run(None, {"x": x}), ref.run(None, {"x": x})):
            assert g.dtype == np.float16 and g.shape == w.shape
            # a few fp16 steps: each layer rounds to fp16 on both sides, the folded
            # BatchNormalization rounds its fp16 weights differently, and Arm's fp16
            # arithmetic sums in fp16 chunks (docs/api.md, "fp16")
            scale = float(np.abs(w.astype(np.float32)).max())
            np.testing.assert_allclose(g.astype(np.float32), w.astype(np.float32), rtol=2e-2, atol=1e-2 * scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("trans_a,trans_b,alpha,beta,c_shape", [
    (0, 0, 1.0, 1.0, (5,)), (1, 1, 1.0, 0.5, (1, 5)), (0, 1, 2.0, 1.0, None), (0, 0, 1.0, 1.0, (4, 5))])
def test_float_gemm_and_matmul(dtype, trans_a, trans_b, alpha, beta, c_shape):
    rng = np.random.default_rng(7)
    et = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    a_shape = (6, 4) if trans_a else (4, 6)
    b = rng.standard_normal((5, 6) if trans_b else (6, 5)).astype(dtype)
    inits = [numpy_helper.from_array(b, "b"), numpy_helper.from_array(rng.standard_normal((6, 3)).astype(dtype), "m")]
    ins = ["a", "b"]
    if c_shape:
        inits.append(numpy_helper.from_array(rng.standard_normal(c_shape).astype(dtype), "c"))
        ins.append("c")
    nodes = [helper.make_node("Gemm", ins, ["y"], transA=trans_a, transB=trans_b, alpha=alpha, beta=beta, name="gemm"),
             helper.make_node("Relu", ["y"], ["r"], name="relu"),
             helper.make_node("MatMul", ["a3", "m"], ["z"], name="matmul")]
    model = _model(nodes, [helper.make_tensor_value_info("a", et, list(a_shape)),
                           helper.make_tensor_value_info("a3", et, [2, 3, 6])],
                   [helper.make_tensor_value_info("r", et, None), helper.make_tensor_value_info("z", et, None)], inits)
    cpu, ref = Session(model), reference_session(model)
    feeds = {"a": rng.standard_normal(a_shape).astype(dtype), "a3": rng.standard_normal((2, 3, 6)).astype(dtype)}
    a = feeds["a"].astype(np.float64).T if trans_a else feeds["a"].astype(np.float64)
    bm = b.astype(np.float64).T if trans_b else b.astype(np.float64)
    c = np.abs(numpy_helper.to_array(inits[2]).astype(np.float64)) * abs(beta) if c_shape else 0
    sums = [np.abs(a) @ np.abs(bm) * abs(alpha) + c,
            np.abs(feeds["a3"].astype(np.float64)) @ np.abs(numpy_helper.to_array(inits[1]).astype(np.float64))]
    for g, w, sum_abs in zip(cpu.run(None, feeds), ref.run(None, feeds), sums):
        assert g.dtype == dtype and g.shape == w.shape
        if dtype == np.float32:
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
        else:
            assert_fp16_close(g, w, sum_abs)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("kw", [dict(pads=[0, 1, 2, 1], strides=[2, 1]), dict(auto_pad="SAME_UPPER", strides=[2, 2]),
                                dict(auto_pad="SAME_LOWER", dilations=[2, 1]), dict(group=2, pads=[1, 1, 1, 1]),
                                dict(group=4, pads=[1, 1, 1, 1], dilations=[1, 2])])
def test_float_conv_geometries(dtype, kw):
    rng = np.random.default_rng(3)
    et = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    g = kw.get("group", 1)
    w = (rng.standard_normal((8, 4 // g, 3, 3)) * 0.3).astype(dtype)
    b = (rng.standard_normal(8) * 0.1).astype(dtype)
    model = _model([helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", **kw)],
                   [helper.make_tensor_value_info("x", et, [2, 4, 9, 7])], [helper.make_tensor_value_info("y", et, None)],
                   [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    cpu, ref = Session(model), reference_session(model)
    assert cpu.placement(cpu.graph.nodes[0]) == "native"     # (its weights packed, dropped from the graph)
    x = rng.standard_normal((2, 4, 9, 7)).astype(dtype)
    got, want = cpu.run(None, {"x": x})[0], ref.run(None, {"x": x})[0]
    assert got.shape == want.shape and got.dtype == dtype
    if dtype == np.float32:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    else:   # sum |x w| + |b| by the same convolution of absolute values (float64, reference)
        f64 = np.float64
        absolute = _model([helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", **kw)],
                          [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [2, 4, 9, 7])],
                          [helper.make_tensor_value_info("y", TensorProto.DOUBLE, None)],
                          [numpy_helper.from_array(np.abs(w).astype(f64), "w"),
                           numpy_helper.from_array(np.abs(b).astype(f64), "b")])
        sum_abs = reference_session(absolute).run(None, {"x": np.abs(x).astype(f64)})[0]
        assert_fp16_close(got, want, sum_abs)


# ------------------------------------------------------------------- quantized CNN (ORT)

@pytest.fixture(scope="module")
def quantized_models(tmp_path_factory):
    """The CNN through onnxruntime's quant_pre_process (BatchNormalization folded) and
    quantize_static (s8 activations and weights), in QDQ and QOperator formats, per
    tensor and per channel: {(format, per_channel): ModelProto}."""
    _ort()
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(1)
            self.data = iter([{"x": rng.standard_normal(X_SHAPE).astype(np.float32)} for _ in range(4)])

        def get_next(self):
            return next(self.data, None)

    d = tmp_path_factory.mktemp("quant")
    onnx.save(make_cnn(), d / "float.onnx")
    quant_pre_process(str(d / "float.onnx"), str(d / "pre.onnx"), skip_symbolic_shape=True)
    models = {}
    for fmt in ("QDQ", "QOperator"):
        for per_channel in (False, True):
            out = d / f"{fmt}_{per_channel}.onnx"
            quantize_static(str(d / "pre.onnx"), str(out), Reader(), quant_format=getattr(QuantFormat, fmt),
                            per_channel=per_channel, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
            models[fmt, per_channel] = onnx.load(str(out))
    return models


def _ort_int8(model, ort):
    """ORT running the quantized model in int8 all the way: its x86 default turns QDQ
    int8 activations into uint8 (session.qdqisint8allowed=0), whose AVX2 kernels saturate
    in vpmaddubsw — not exact; with int8 allowed it runs the exact s8 kernels."""
    so = ort.SessionOptions()
    so.add_session_config_entry("session.qdqisint8allowed", "1")
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _scale(model, name):
    return float(next(numpy_helper.to_array(t) for t in model.graph.initializer if t.name == name))


@pytest.mark.parametrize("per_channel", [False, True], ids=["per_tensor", "per_channel"])
@pytest.mark.parametrize("fmt", ["QDQ", "QOperator"])
def test_quantized_cnn_matches_ort(quantized_models, fmt, per_channel):
    ort = _ort()
    model = quantized_models[fmt, per_channel]
    s = Session(model)
    ops = _ops(s)
    # every Conv and Gemm runs in int8 on the kernels: QDQ rewritten like QOperator
    assert not {"Conv", "Gemm", "MatMul", "com.microsoft::FusedConv"} & set(ops), ops
    assert ops.count("QLinearConv") == 3 and ops.count("com.microsoft::QGemm") == 1, ops
    cpu = next(b for b in s.backends if b.name == "cpu")
    on_kernels = [n.op_type for n in s.graph.nodes if cpu.on_kernels(n, s.graph)]
    assert sorted(set(on_kernels) - {"QuantizeLinear", "DequantizeLinear"}) == [
        "QGemm", "QLinearAdd", "QLinearConv", "QLinearGlobalAveragePool"], on_kernels
    assert len(on_kernels) == 4 + ops.count("com.microsoft::QLinearAdd") + ops.count("QuantizeLinear") \
        + ops.count("DequantizeLinear") + ops.count("com.microsoft::QLinearGlobalAveragePool"), on_kernels
    rt = _ort_int8(model, ort)
    y_scale, c3_scale = _scale(model, "y_scale"), _scale(model, "c3_scale")
    for x in _inputs(np.float32, 5):
        (y, c3), (ty, tc3) = s.run(None, {"x": x}), rt.run(None, {"x": x})
        np.testing.assert_array_equal(c3, tc3)            # straight out of three int8 convolutions
        # the logits also pass Add / GlobalAveragePool (ORT: QLinearAdd, whose SIMD
        # scaling may round a tie the other way) and QGemm: within one step
        assert np.abs(y - ty).max() <= 1.01 * y_scale
    assert c3_scale > 0


def test_qdq_cnn_matches_ort_float_path(quantized_models):
    """ORT without graph optimizations runs the QDQ model literally, in float
    (DequantizeLinear -> float Conv -> QuantizeLinear): within one step of our int8."""
    ort = _ort()
    model = quantized_models["QDQ", True]
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    rt = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    s, ref = Session(model), reference_session(model)
    steps = (_scale(model, "y_scale"), _scale(model, "c3_scale"))
    for x in _inputs(np.float32, 3):
        got, theirs, want = s.run(None, {"x": x}), rt.run(None, {"x": x}), ref.run(None, {"x": x})
        for g, t, w, step in zip(got, theirs, want, steps):
            assert np.abs(g - t).max() <= 1.01 * step
            assert np.abs(g - w).max() <= 1.01 * step


# ------------------------------------------------------------- hand-made QDQ patterns

def _qdq_model(relu_zero_point=0, clip=None, per_column=True):
    """x -> Q -> DQ -> Conv(DQ(W), DQ(B)) -> Relu or Clip -> Q -> DQ -> MaxPool -> Q -> DQ
    -> Flatten -> Q -> DQ -> MatMul(DQ(W2), per column or not) -> Q -> DQ, all int8; the
    Relu/Clip output's zero point is not always qmin, so the activation must become an
    integer clamp."""
    rng = np.random.default_rng(5)
    f = np.float32
    i = []

    def init(name, arr, dtype=None):
        i.append(numpy_helper.from_array(np.asarray(arr, dtype), name))
        return name

    w = rng.integers(-127, 128, (6, 3, 3, 3)).astype(np.int8)
    sw = (rng.uniform(0.5, 1.5, 6) * 0.01).astype(f)
    sx = f(0.02)
    bias = rng.integers(-500, 500, 6).astype(np.int32)
    w2 = rng.integers(-127, 128, (6 * 4 * 4, 5)).astype(np.int8)
    sw2 = (rng.uniform(0.5, 1.5, 5 if per_column else 1) * 0.01).astype(f)
    n = helper.make_node
    act = n("Relu", ["c"], ["r"], name="relu") if clip is None else \
        n("Clip", ["c", init("cmin", clip[0], f), init("cmax", clip[1], f)], ["r"], name="clip")
    nodes = [
        n("QuantizeLinear", ["x", init("sx", sx, f), init("zx", 3, np.int8)], ["xq"], name="qx"),
        n("DequantizeLinear", ["xq", "sx", "zx"], ["xd"], name="dqx"),
        n("DequantizeLinear", [init("w", w), init("sw", sw), init("zw", np.zeros(6), np.int8)], ["wd"], axis=0,
          name="dqw"),
        n("DequantizeLinear", [init("b", bias), init("sb", sx * sw), init("zb", np.zeros(6), np.int32)], ["bd"], axis=0,
          name="dqb"),
        n("Conv", ["xd", "wd", "bd"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2], name="conv"),
        act,
        n("QuantizeLinear", ["r", init("sr", 0.05, f), init("zr", relu_zero_point, np.int8)], ["rq"], name="qr"),
        n("DequantizeLinear", ["rq", "sr", "zr"], ["rd"], name="dqr"),
        n("MaxPool", ["rd"], ["p"], kernel_shape=[2, 2], strides=[2, 2], name="pool"),
        n("QuantizeLinear", ["p", "sr", "zr"], ["pq"], name="qp"),
        n("DequantizeLinear", ["pq", "sr", "zr"], ["pd"], name="dqp"),
        n("Flatten", ["pd"], ["fl"], name="flatten"),
        n("QuantizeLinear", ["fl", "sr", "zr"], ["flq"], name="qfl"),
        n("DequantizeLinear", ["flq", "sr", "zr"], ["fld"], name="dqfl"),
        n("DequantizeLinear", [init("w2", w2), init("sw2", sw2), init("zw2", np.zeros(sw2.size), np.int8)], ["w2d"],
          axis=1, name="dqw2"),
        n("MatMul", ["fld", "w2d"], ["m"], name="matmul"),
        n("QuantizeLinear", ["m", init("sm", 0.5, f), init("zm", -7, np.int8)], ["mq"], name="qm"),
        n("DequantizeLinear", ["mq", "sm", "zm"], ["y"], name="dqm"),
    ]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 16, 16])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                   helper.make_tensor_value_info("rd", TensorProto.FLOAT, None)], i)


@pytest.mark.parametrize("relu_zero_point,clip,per_column", [
    (0, None, True), (-128, None, False), (-20, (0.0, 6.0), True), (10, (-1.0, 2.0), False)])
def test_qdq_patterns_rewritten(relu_zero_point, clip, per_column):
    model = _qdq_model(relu_zero_point, clip, per_column)
    s, ref = Session(model), reference_session(model)
    ops = _ops(s)
    assert "Conv" not in ops and "MatMul" not in ops and "QLinearConv" in ops and "QLinearMatMul" in ops, ops
    assert "Relu" not in ops and "MaxPool" in ops and ops.count("DequantizeLinear") == 2   # rd and y
    # the clamp stays an integer Clip unless the saturation already does it
    implied = clip is None and relu_zero_point == -128
    assert ("Clip" in ops) == (not implied), ops
    node = {n.op_type: n for n in s.graph.nodes}
    assert node["MaxPool"].inputs[0] != "rd" and node["Flatten"].inputs[0] == node["MaxPool"].outputs[0]  # on int8
    rng = np.random.default_rng(11)
    for _ in range(3):
        x = rng.standard_normal((2, 3, 16, 16)).astype(np.float32) * 2
        (y, rd), (ry, rrd) = s.run(None, {"x": x}), ref.run(None, {"x": x})
        np.testing.assert_array_equal(rd, rrd)       # int8 conv + clamp == float conv + Relu + Q, here exactly
        assert np.abs(y - ry).max() <= 0.5 * 1.01


def test_qdq_not_rewritten_when_output_is_shared():
    """The Conv's float output is also a graph output: nothing to fuse."""
    model = _qdq_model()
    model.graph.output.append(helper.make_tensor_value_info("c", TensorProto.FLOAT, None))
    s = Session(model)
    assert "Conv" in _ops(s)
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    for g, w in zip(s.run(None, {"x": x}), reference_session(model).run(None, {"x": x})):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------- single integer nodes, bit for bit

def _int_model(node, inputs, inits, out_dtype):
    return _model([node], [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(np.dtype(d)), list(s))
                           for n, d, s in inputs],
                  [helper.make_tensor_value_info(node.output[0], helper.np_dtype_to_tensor_dtype(np.dtype(out_dtype)),
                                                 None)],
                  [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()], ms=True)


def _check_bitwise(model, feeds, on_kernels=True):
    cpu, ref = Session(model), reference_session(model)
    if on_kernels:
        assert cpu.placement(cpu.graph.nodes[0]) == "native"
    got, want = cpu.run(None, feeds)[0], ref.run(None, feeds)[0]
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def _q(rng, shape, dtype):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)


CONV_CASES = [
    dict(pads=[1, 1, 1, 1]),
    dict(strides=[2, 2], pads=[0, 1, 2, 1], dilations=[1, 2]),
    dict(auto_pad="SAME_UPPER", strides=[2, 1]),
    dict(group=2, pads=[1, 1, 1, 1]),
    dict(group=4, pads=[1, 1, 1, 1]),           # depthwise
]


@pytest.mark.parametrize("kw", CONV_CASES)
@pytest.mark.parametrize("xdt,wdt,per_channel", [(np.int8, np.int8, False), (np.int8, np.int8, True),
                                                  (np.uint8, np.int8, True), (np.uint8, np.uint8, False)])
def test_qlinearconv_bitwise(kw, xdt, wdt, per_channel):
    rng = np.random.default_rng(21)
    g = kw.get("group", 1)
    o = 8
    w = _q(rng, (o, 4 // g, 3, 3), wdt)
    n = o if per_channel else 1
    inits = {"sx": np.float32(0.03), "zx": np.array(rng.integers(-5, 5) + (128 if xdt == np.uint8 else 0), xdt),
             "w": w, "sw": (rng.uniform(0.5, 2, n) * 0.01).astype(np.float32).reshape(-1 if per_channel else ()),
             "zw": (np.zeros(n) + (128 if wdt == np.uint8 else 0)).astype(wdt).reshape(-1 if per_channel else ()),
             "sy": np.float32(0.07), "zy": np.array(-3 if xdt == np.int8 else 120, xdt),
             "b": rng.integers(-2000, 2000, o).astype(np.int32)}
    node = helper.make_node("QLinearConv", ["x", "sx", "zx", "w", "sw", "zw", "sy", "zy", "b"], ["y"], name="qconv", **kw)
    model = _int_model(node, [("x", xdt, (2, 4, 11, 9))], inits, xdt)
    _check_bitwise(model, {"x": _q(rng, (2, 4, 11, 9), xdt)})


@pytest.mark.parametrize("kw,k", [(dict(strides=[2, 2], pads=[3, 3, 3, 3]), 7), (dict(strides=[2, 2], pads=[1, 1, 1, 1]), 3),
                                  (dict(pads=[0, 2, 1, 0], dilations=[1, 2]), 3)])
def test_rgb_stem_as_four_channel_pixels_is_bitwise(monkeypatch, kw, k):
    """A uint8 NCHW image of 3 channels under symmetric weights (a CNN's stem) is transposed
    into 4-byte pixels for the VNNI kernel's indirect entries (graph/backends/cpu.py,
    _rgb_as_four_channels): the reference's bytes, run after run on new images, on every
    path; the 4-channel steps bound exactly where the path reads patches in place (kernel
    rows of 7 taps: 28 bytes; of 3 taps, 12 bytes, the patches stay packed, 3 channels)."""
    import qkernels
    from qkernels.graph.backends import cpu as cpu_backend
    rng = np.random.default_rng(26)
    inits = {"sx": np.float32(0.02), "zx": np.array(131, np.uint8), "w": _q(rng, (40, 3, k, k), np.int8),
             "sw": (rng.uniform(0.5, 2, 40) * 0.01).astype(np.float32), "zw": np.zeros(40, np.int8),
             "sy": np.float32(0.3), "zy": np.array(120, np.uint8), "b": rng.integers(-9000, 9000, 40).astype(np.int32)}
    node = helper.make_node("QLinearConv", ["x", "sx", "zx", "w", "sw", "zw", "sy", "zy", "b"], ["y"], name="stem",
                            kernel_shape=[k, k], **kw)
    model = _int_model(node, [("x", np.uint8, (2, 3, 37, 41))], inits, np.uint8)
    made = []
    real = cpu_backend._rgb_as_four_channels
    monkeypatch.setattr(cpu_backend, "_rgb_as_four_channels", lambda *a: made.append(real(*a)) or made[-1])
    ref = reference_session(model)
    for isa in qkernels._dispatch.tested_isas():
        with qkernels.use_isa(isa):
            made.clear()
            cpu = Session(model, num_threads=1)
            for _ in range(3):
                feeds = {"x": _q(rng, (2, 3, 37, 41), np.uint8)}
                np.testing.assert_array_equal(cpu.run(None, feeds)[0], ref.run(None, feeds)[0], err_msg=isa)
            indirect = isa.startswith("avx512vnni") and k == 7
            assert made and all((m is not None) == indirect for m in made), (isa, made)


@pytest.mark.parametrize("kw", CONV_CASES[:4])
@pytest.mark.parametrize("xdt,wdt", [(np.uint8, np.int8), (np.int8, np.int8), (np.uint8, np.uint8)])
def test_convinteger_bitwise(kw, xdt, wdt):
    rng = np.random.default_rng(22)
    g = kw.get("group", 1)
    inits = {"w": _q(rng, (6, 4 // g, 3, 3), wdt), "zx": np.array(7, xdt), "zw": np.array(2, wdt)}
    node = helper.make_node("ConvInteger", ["x", "w", "zx", "zw"], ["y"], name="convint", **kw)
    model = _int_model(node, [("x", xdt, (1, 4, 10, 10))], inits, np.int32)
    _check_bitwise(model, {"x": _q(rng, (1, 4, 10, 10), xdt)})


@pytest.mark.parametrize("const_b,adt,bdt,per_column", [
    (True, np.int8, np.int8, False), (True, np.int8, np.int8, True), (True, np.uint8, np.int8, True),
    (True, np.uint8, np.uint8, False), (False, np.int8, np.int8, False), (False, np.uint8, np.uint8, False)])
def test_qlinearmatmul_bitwise(const_b, adt, bdt, per_column):
    """b packed once when it is a constant, else per call (per tensor)."""
    rng = np.random.default_rng(23)
    n = 7 if per_column else 1
    b = _q(rng, (33, 7), bdt)
    inits = {"sa": np.float32(0.02), "za": np.array(4 + (128 if adt == np.uint8 else 0), adt),
             "sb": (rng.uniform(0.5, 2, n) * 0.01).astype(np.float32).reshape(-1 if per_column else ()),
             "zb": np.full(n, 2 + (128 if bdt == np.uint8 else 0), bdt).reshape(-1 if per_column else ()),
             "sy": np.float32(0.05), "zy": np.array(1 + (128 if adt == np.uint8 else 0), adt)}
    feeds = {"a": _q(rng, (3, 5, 33), adt)}
    inputs = [("a", adt, (3, 5, 33))]
    if const_b:
        inits["b"] = b
    else:
        feeds["b"] = b
        inputs.append(("b", bdt, (33, 7)))
    node = helper.make_node("QLinearMatMul", ["a", "sa", "za", "b", "sb", "zb", "sy", "zy"], ["y"], name="qmm")
    _check_bitwise(_int_model(node, inputs, inits, adt), feeds)


@pytest.mark.parametrize("const_b", [True, False], ids=["packed", "varying_b"])
@pytest.mark.parametrize("adt,bdt,zb_per_column", [(np.uint8, np.int8, False), (np.int8, np.int8, True),
                                                    (np.uint8, np.uint8, True)])
def test_matmulinteger_bitwise(const_b, adt, bdt, zb_per_column):
    rng = np.random.default_rng(24)
    b = _q(rng, (40, 9), bdt)
    inits = {"za": np.array(3, adt), "zb": (rng.integers(0, 5, 9) if zb_per_column else np.array(5)).astype(bdt)}
    feeds = {"a": _q(rng, (2, 6, 40), adt)}
    inputs = [("a", adt, (2, 6, 40))]
    if const_b:
        inits["b"] = b
    else:
        feeds["b"] = b
        inputs.append(("b", bdt, (40, 9)))
    node = helper.make_node("MatMulInteger", ["a", "b", "za", "zb"], ["y"], name="mmi")
    _check_bitwise(_int_model(node, inputs, inits, np.int32), feeds, on_kernels=const_b or not zb_per_column)


@pytest.mark.parametrize("trans_a,trans_b,alpha,float_out,c_shape", [
    (0, 1, 1.0, False, (9,)), (1, 0, 0.5, False, None), (0, 0, 1.0, True, (9,)), (0, 1, 2.0, True, (1, 9))])
def test_qgemm_bitwise(trans_a, trans_b, alpha, float_out, c_shape):
    rng = np.random.default_rng(25)
    inits = {"sa": np.float32(0.02), "za": np.array(-3, np.int8), "b": _q(rng, (9, 30) if trans_b else (30, 9), np.int8),
             "sb": (rng.uniform(0.5, 2, 9) * 0.01).astype(np.float32), "zb": np.zeros(9, np.int8)}
    ins = ["a", "sa", "za", "b", "sb", "zb"]
    if c_shape:
        inits["c"] = rng.integers(-1000, 1000, c_shape).astype(np.int32)
    ins.append("c" if c_shape else "")
    if not float_out:
        inits.update(sy=np.float32(0.04), zy=np.array(2, np.int8))
        ins += ["sy", "zy"]
    node = helper.make_node("QGemm", ins, ["y"], domain="com.microsoft", name="qgemm", transA=trans_a,
                            transB=trans_b, alpha=alpha)
    a_shape = (30, 4) if trans_a else (4, 30)
    model = _int_model(node, [("a", np.int8, a_shape)], inits, np.float32 if float_out else np.int8)
    feeds = {"a": _q(rng, a_shape, np.int8)}
    _check_bitwise(model, feeds)
    ort = _ort()
    theirs = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    np.testing.assert_array_equal(Session(model).run(None, feeds)[0], theirs)


def test_conv_without_constant_weights_runs_on_reference():
    """Weights fed at run time: no kernel (nothing to pack), the reference runs it."""
    rng = np.random.default_rng(26)
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1], name="conv")
    model = _model([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5, 5]),
                            helper.make_tensor_value_info("w", TensorProto.FLOAT, [3, 2, 3, 3])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [])
    s = Session(model)
    assert s.placement(s.graph.nodes[0]) != "native"
    feeds = {"x": rng.standard_normal((1, 2, 5, 5)).astype(np.float32),
             "w": rng.standard_normal((3, 2, 3, 3)).astype(np.float32)}
    np.testing.assert_allclose(s.run(None, feeds)[0], reference_session(model).run(None, feeds)[0], rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_quantize_and_dequantize_linear_run_on_the_kernels_exactly(dtype):
    rng = np.random.default_rng(7)
    elem = TensorProto.UINT8 if dtype == np.uint8 else TensorProto.INT8
    zq = np.array(3 if dtype == np.uint8 else -3, dtype)
    sc = rng.uniform(0.02, 0.1, 5).astype(np.float32)              # per channel, axis 1
    zc = rng.integers(-4, 5, 5).astype(dtype) if dtype == np.int8 else rng.integers(0, 9, 5).astype(dtype)
    inits = [numpy_helper.from_array(np.array(0.05, np.float32), "s"), numpy_helper.from_array(zq, "z"),
             numpy_helper.from_array(sc, "sc"), numpy_helper.from_array(zc, "zc")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"]),
             helper.make_node("QuantizeLinear", ["x", "sc", "zc"], ["qc"], axis=1),
             helper.make_node("DequantizeLinear", ["qc", "sc", "zc"], ["yc"], axis=1)]
    vi = helper.make_tensor_value_info
    model = _model(nodes, [vi("x", TensorProto.FLOAT, [2, 5, 7])],
                   [vi("q", elem, None), vi("y", TensorProto.FLOAT, None), vi("qc", elem, None),
                    vi("yc", TensorProto.FLOAT, None)], inits)
    s, ref = Session(model), reference_session(model)
    cpu = next(b for b in s.backends if b.name == "cpu")
    assert all(cpu.on_kernels(n, s.graph) for n in s.graph.nodes)
    x = (rng.standard_normal((2, 5, 7)) * 5).astype(np.float32)
    x.flat[:4] = [np.inf, -np.inf, 2.5 * 0.05, 1e30]
    for got, want in zip(s.run(None, {"x": x}), ref.run(None, {"x": x})):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    x[0, 0, 0] = np.nan      # refused by the kernels: the reference operator runs it, no error
    assert [g.dtype for g in s.run(None, {"x": x})] == [dtype, np.float32, dtype, np.float32]


# ------------------------------------------------------- QLinearAdd / QLinearMul (native)

from hypothesis import assume, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def _qbinary_model(op, dtype, shape, params):
    et = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    names = ["a", "sa", "za", "b", "sb", "zb", "sy", "zy"]
    inits = []
    for (s, z), tag in zip(params, "aby"):
        inits += [numpy_helper.from_array(np.array(s, np.float32), f"s{tag}"),
                  numpy_helper.from_array(np.array(z, dtype), f"z{tag}")]
    node = helper.make_node(op, names, ["y"], domain="com.microsoft", name="q")
    return _model([node], [helper.make_tensor_value_info(n, et, list(shape)) for n in ("a", "b")],
                  [helper.make_tensor_value_info("y", et, None)], inits, ms=True)


@settings(max_examples=60, deadline=None)
@given(op=st.sampled_from(["QLinearAdd", "QLinearMul"]), signed=st.booleans(), layout=st.sampled_from(
       ["nchw", "nhwc-view", "sliced", "reversed", "broadcast"]), seed=st.integers(0, 2**31),
       c=st.integers(1, 37), hw=st.sampled_from([(1, 1), (3, 5), (8, 8), (14, 14)]))
def test_qlinear_add_and_mul_equal_the_reference_bit_for_bit(op, signed, layout, seed, c, hw):
    """Every layout: the native loop where a and b share one memory order (an NCHW view of
    NHWC memory as convolutions leave it, or plain NCHW), the reference elsewhere; the
    same bits as the reference operator either way, ties and saturation included."""
    rng = np.random.default_rng(seed)
    dtype = np.int8 if signed else np.uint8
    info = np.iinfo(dtype)
    params = [(float(np.float32(2.0 ** rng.uniform(-7, -2))), int(rng.integers(info.min, info.max + 1)))
              for _ in range(3)]
    if rng.random() < 0.3:        # exact ties: scales in powers of two
        params = [(2.0 ** int(rng.integers(-4, 0)), z) for _, z in params]
    shape = (2, c) + hw
    model = _qbinary_model(op, dtype, shape, params)
    cpu, ref = Session(model), reference_session(model)
    if op == "QLinearAdd":   # the native loop runs it unless the precondition refuses the scales
        assert cpu.placement(cpu.graph.nodes[0]) == "native" or params[2][0] < 2.0 ** -20
    a = rng.integers(info.min, info.max + 1, (2, c) + hw).astype(dtype)
    b = rng.integers(info.min, info.max + 1, (2, c) + hw).astype(dtype)
    if layout == "nhwc-view":
        a = np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
        b = np.ascontiguousarray(b.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    elif layout == "sliced":
        a = np.concatenate([a, a], axis=3)[..., ::2]
    elif layout == "reversed":   # negative strides, the same in both
        a, b = np.ascontiguousarray(a[:, ::-1])[:, ::-1], np.ascontiguousarray(b[:, ::-1])[:, ::-1]
    feeds = {"a": a, "b": b}
    want = ref.run(None, {k: np.ascontiguousarray(v) for k, v in feeds.items()})[0]
    if layout == "broadcast":
        model = _qbinary_model(op, dtype, shape, params)
        model.graph.input[1].type.tensor_type.shape.dim[2].dim_value = 1
        model.graph.input[1].type.tensor_type.shape.dim[3].dim_value = 1
        cpu, ref = Session(model), reference_session(model)
        feeds["b"] = np.ascontiguousarray(b[:, :, :1, :1])
        want = ref.run(None, feeds)[0]
    np.testing.assert_array_equal(cpu.run(None, feeds)[0], want)


def test_qlinear_binary_loop_saturates_and_rounds_ties_to_even():
    """On every ISA path (the portable C, its AVX2 and AVX-512 builds on x86): ties to even,
    saturation, and the same bits as the portable loop on random values and scales."""
    import qkernels
    from qkernels import _dispatch, _native
    a = np.array([0, 1, 3, 5, 127, -128, 100, -100], np.int8)
    b = np.zeros_like(a)
    y = np.empty_like(a)
    rng = np.random.default_rng(0)
    ra, rb = (rng.integers(-128, 128, 1000).astype(np.int8) for _ in range(2))
    want = {}
    for isa in qkernels._dispatch.tested_isas():
        with qkernels.use_isa(isa):
            k = _dispatch.isa_index()
        # y = round(a * 0.5 / 1) + 0: 0, 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, 63.5 -> 64, -64, 50, -50
        _native.qlinear_binary(k, False, a, 0.5, 0, b, 1.0, 0, 1.0, 0, y)
        np.testing.assert_array_equal(y, [0, 0, 2, 2, 64, -64, 50, -50], err_msg=isa)
        _native.qlinear_binary(k, False, a, 8.0, 0, b, 1.0, 0, 1.0, 3, y)          # saturation at both ends
        np.testing.assert_array_equal(y, [3, 11, 27, 43, 127, -128, 127, -128], err_msg=isa)
        for mul in (False, True):
            got = _native.qlinear_binary(k, mul, ra, 0.0625, 3, rb, 0.125, -2, 0.25, 1, np.empty_like(ra))
            np.testing.assert_array_equal(got, want.setdefault(mul, got), err_msg=isa)
            for dt in (np.int8, np.uint8):      # scales whose products and quotients round
                ua, ub = ra.view(dt), rb.view(dt)
                got = _native.qlinear_binary(k, mul, ua, 0.0437, 7, ub, 0.0291, 5, 0.0713 if not mul else 0.0031, 2,
                                             np.empty_like(ua))
                np.testing.assert_array_equal(got, want.setdefault((mul, dt), got), err_msg=isa)
        with pytest.raises(ValueError, match="1-D contiguous"):
            _native.qlinear_binary(k, False, a, 1.0, 0, b.astype(np.uint8), 1.0, 0, 1.0, 0, y)


@settings(max_examples=40, deadline=None)
@given(mul=st.booleans(), signed=st.booleans(), seed=st.integers(0, 2**31),
       e=st.tuples(st.floats(-12, 1), st.floats(-12, 1), st.floats(-14, 4)))
@example(mul=False, signed=False, seed=0, e=(-60.0, -60.0, -60.0))    # the correction's smallest output scale
@example(mul=True, signed=True, seed=1, e=(-7.3, -5.1, -14.0))
# scales where the reciprocal's product alone gives other bytes for some pairs (a search)
@example(mul=False, signed=True, seed=1993171918, e=(-2.245283782823643, -10.252576587882002, -2.384119875045295))
@example(mul=False, signed=False, seed=1926231659, e=(-1.5937580340673332, -8.478191242772908, -3.135666256473293))
@example(mul=True, signed=False, seed=716796639, e=(-5.3794561052493775, -0.08868957322553683, 0.49310509513354717))
def test_qlinear_binary_division_is_correctly_rounded_for_every_byte_pair(mul, signed, seed, e):
    """The loop (kernels/qbinary.c, each build) gives the bytes of numpy's float32 steps
    (sa (a - za) op sb (b - zb)) / sy, rounded half to even, saturated, for all 65,536 byte
    pairs, on every ISA path. The pinned scales catch a division replaced by the product
    with the reciprocal (measured no faster with Markstein's correction: the loop's
    conversions, not its vdivps, bound it)."""
    import qkernels
    from qkernels import _dispatch, _native
    rng = np.random.default_rng(seed)
    dt = np.int8 if signed else np.uint8
    info = np.iinfo(dt)
    sa, sb, sy = (np.float32(2.0 ** x * rng.uniform(1, 2)) for x in e)
    za, zb, zy = (int(rng.integers(info.min, info.max + 1)) for _ in range(3))
    q = np.arange(info.min, info.max + 1)
    a, b = (v.astype(dt).ravel() for v in np.meshgrid(q, q))
    fa = sa * (a.astype(np.int32) - za).astype(np.float32)
    fb = sb * (b.astype(np.int32) - zb).astype(np.float32)
    v = (fa * fb if mul else fa + fb) / sy
    assume(np.abs(v).max() <= 2.0 ** 21)                 # the loop's precondition (the plan checks it)
    want = np.clip(np.rint(v).astype(np.int64) + zy, info.min, info.max).astype(dt)
    for isa in qkernels._dispatch.tested_isas():
        with qkernels.use_isa(isa):
            got = _native.qlinear_binary(_dispatch.isa_index(), mul, a, float(sa), za, b, float(sb), zb, float(sy),
                                         zy, np.empty_like(a))
        np.testing.assert_array_equal(got, want, err_msg=isa)


# ------------------------------------------------- global average pooling (native)

def _pool_model(op, dtype, shape, params=None, channels_last=0):
    et = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    inits, names, attrs, domain = [], ["x"], {}, ""
    if params is not None:
        (sx, zx), (sy, zy) = params
        inits = [numpy_helper.from_array(np.array(sx, np.float32), "sx"), numpy_helper.from_array(np.array(zx, dtype), "zx"),
                 numpy_helper.from_array(np.array(sy, np.float32), "sy"), numpy_helper.from_array(np.array(zy, dtype), "zy")]
        names, attrs, domain = ["x", "sx", "zx", "sy", "zy"], {"channels_last": channels_last}, "com.microsoft"
    node = helper.make_node(op, names, ["y"], domain=domain, name="pool", **attrs)
    return _model([node], [helper.make_tensor_value_info("x", et, list(shape))],
                  [helper.make_tensor_value_info("y", et, None)], inits, ms=bool(domain))


@settings(max_examples=60, deadline=None)
@given(quantized=st.booleans(), signed=st.booleans(), channels_last=st.sampled_from([0, 1]),
       layout=st.sampled_from(["contiguous", "nhwc-view", "sliced", "reversed"]), seed=st.integers(0, 2**31),
       c=st.integers(1, 37), hw=st.sampled_from([(1, 1), (3, 5), (7, 7), (1, 9), (14, 14)]))
def test_global_average_pools_on_the_native_loop(quantized, signed, channels_last, layout, seed, c, hw):
    """GlobalAveragePool (float32: within float32 rounding of the float64 mean) and
    com.microsoft QLinearGlobalAveragePool (bit for bit the reference, which is
    onnxruntime's arithmetic: ties, saturation, both memory orders), node by node and on
    the plan (the second run), on any input view."""
    rng = np.random.default_rng(seed)
    dtype = (np.int8 if signed else np.uint8) if quantized else np.float32
    channels_last = channels_last if quantized else 0
    shape = (2,) + hw + (c,) if channels_last else (2, c) + hw
    if quantized:
        info = np.iinfo(dtype)
        params = [(float(np.float32(2.0 ** rng.uniform(-7, 0))), int(rng.integers(info.min, info.max + 1)))
                  for _ in range(2)]
        if rng.random() < 0.3:        # exact ties: scales in powers of two
            params = [(2.0 ** int(rng.integers(-3, 1)), z) for _, z in params]
        x = rng.integers(info.min, info.max + 1, shape).astype(dtype)
        model = _pool_model("QLinearGlobalAveragePool", dtype, shape, params, channels_last)
    else:
        x = rng.standard_normal(shape).astype(np.float32) * np.float32(10.0 ** rng.uniform(-3, 3))
        model = _pool_model("GlobalAveragePool", dtype, shape)
    if layout == "nhwc-view":
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1)).transpose(0, 3, 1, 2)
    elif layout == "sliced":
        x = np.concatenate([x, x], axis=-1)[..., ::2]
    elif layout == "reversed":
        x = np.ascontiguousarray(x[:, ::-1])[:, ::-1]
    cpu, ref = Session(model), reference_session(model)
    assert cpu.placement(cpu.graph.nodes[0]) == "native"
    want = ref.run(None, {"x": np.ascontiguousarray(x)})[0]
    for _ in range(2):
        got = cpu.run(None, {"x": x})[0]
        if quantized:
            np.testing.assert_array_equal(got, want)
        else:
            bound = np.abs(x.astype(np.float64)).mean(axis=(2, 3), keepdims=True) * 2.0**-21 + 1e-30
            assert (np.abs(got.astype(np.float64) - want) <= bound).all()
    assert cpu.last_run == "plan"


@settings(max_examples=40, deadline=None)
@given(dtype=st.sampled_from([np.float32, np.int8, np.uint8]), layout=st.sampled_from(
       ["contiguous", "nhwc-view", "sliced", "reversed"]), seed=st.integers(0, 2**31),
       c=st.one_of(st.integers(1, 19), st.just(300)),        # 300: past the NHWC loop's 256-channel blocks
       hw=st.sampled_from([(1, 1), (5, 7), (8, 8), (13, 13)]), k=st.sampled_from([1, 2, 3]),
       stride=st.sampled_from([1, 2]), pad=st.sampled_from([0, 1]), ceil=st.sampled_from([0, 1]))
def test_max_pool_on_the_plan_equals_the_reference(dtype, layout, seed, c, hw, k, stride, pad, ceil):
    """MaxPool's native loop (the plan's bound step; node by node it is the reference's):
    the reference's values exactly, NaN included, on any input view."""
    rng = np.random.default_rng(seed)
    k = min(k, *hw)                     # every window reaches the input
    pad = min(pad, k - 1)
    shape = (2, c) + hw
    if dtype == np.float32:
        x = rng.standard_normal(shape).astype(np.float32)
        x[rng.random(shape) < 0.02] = np.nan
    else:
        info = np.iinfo(dtype)
        x = rng.integers(info.min, info.max + 1, shape).astype(dtype)
    et = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[k, k], strides=[stride, stride],
                            pads=[pad] * 4, ceil_mode=ceil)
    model = _model([node], [helper.make_tensor_value_info("x", et, list(shape))],
                   [helper.make_tensor_value_info("y", et, None)], [])
    if layout == "nhwc-view":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    elif layout == "sliced":
        x = np.concatenate([x, x], axis=3)[..., ::2]
    elif layout == "reversed":
        x = np.ascontiguousarray(x[:, ::-1])[:, ::-1]
    want = reference_session(model).run(None, {"x": np.ascontiguousarray(x)})[0]
    s = Session(model)
    for _ in range(2):
        np.testing.assert_array_equal(s.run(None, {"x": x})[0], want)
    assert s.last_run == "plan"
    assert all(bound for _, _, bound, _ in next(p for p in s._plans.values() if p)._idle[0].steps)


# ------------------------------------------------------- residual Add fused into a conv

def _residual_block(dtype=np.float32, act="Relu", z_shape=None, groups=1):
    """x -> Conv 3x3 -> Relu -> Conv (groups) -> Add(., z) -> act -> y, z = x (or a second
    input of z_shape: broadcasting)."""
    rng = np.random.default_rng(3)
    c, et = 8, helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    inits = [numpy_helper.from_array(rng.standard_normal((c, c, 3, 3)).astype(dtype) * 0.3, "w1"),
             numpy_helper.from_array(rng.standard_normal((c, c // groups, 1, 1)).astype(dtype) * 0.3, "w2"),
             numpy_helper.from_array(rng.standard_normal(c).astype(dtype), "b2"),
             numpy_helper.from_array(np.array(-0.5, dtype), "lo"), numpy_helper.from_array(np.array(0.7, dtype), "hi")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["h"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Conv", ["r", "w2", "b2"], ["c2"], group=groups),
             helper.make_node("Add", ["c2", "z" if z_shape else "x"], ["s"])]
    if act == "Relu":
        nodes.append(helper.make_node("Relu", ["s"], ["y"]))
    elif act == "Clip":
        nodes.append(helper.make_node("Clip", ["s", "lo", "hi"], ["y"]))
    else:
        nodes.append(helper.make_node("Identity", ["s"], ["y"]))
    inputs = [helper.make_tensor_value_info("x", et, [2, c, 6, 5])]
    if z_shape:
        inputs.append(helper.make_tensor_value_info("z", et, list(z_shape)))
    return _model(nodes, inputs, [helper.make_tensor_value_info("y", et, None)], inits)


@pytest.mark.parametrize("act", ["Relu", "Clip", "none"])
@pytest.mark.parametrize("groups", [1, 2, 8])
def test_residual_add_fused_into_the_conv_gives_the_unfused_floats(act, groups, monkeypatch):
    """Conv -> Add -> (Relu | Clip) becomes one FusedConv with the sum as Z: the same
    floats as the two or three nodes (the conv's rounding, then the Add's), node by node
    and on the plan, the grouped and depthwise kernels included."""
    from qkernels.graph import rewrite
    model = _residual_block(act=act, groups=groups)
    fused = Session(model)
    z_nodes = [n for n in fused.graph.nodes if n.op_type == "FusedConv" and len(n.inputs) > 3 and n.inputs[3]]
    assert len(z_nodes) == 1 and "Add" not in _ops(fused)
    assert fused.placement(z_nodes[0]) == "native"
    monkeypatch.setattr(rewrite, "PASSES", tuple(p for p in rewrite.PASSES if p is not rewrite.fuse_residual_add))
    unfused, ref = Session(model), reference_session(model)
    assert "Add" in _ops(unfused)
    x = np.random.default_rng(0).standard_normal((2, 8, 6, 5)).astype(np.float32)
    x[0, 0, 0, 0] = np.nan
    want = unfused.run(None, {"x": x})[0]
    for _ in range(2):
        got = fused.run(None, {"x": x})[0]
        np.testing.assert_array_equal(got, want)
    assert fused.last_run == "plan"
    np.testing.assert_allclose(got, ref.run(None, {"x": x})[0], rtol=1e-5, atol=1e-5)


def test_residual_that_broadcasts_or_fp16_is_added_right():
    """A Z that broadcasts (here a per-channel input) runs the reference sum; float16 is
    not fused (one rounding of the sum would differ from the Add's two)."""
    x = np.random.default_rng(1).standard_normal((2, 8, 6, 5)).astype(np.float32)
    z = np.random.default_rng(2).standard_normal((1, 8, 1, 1)).astype(np.float32)
    model = _residual_block(z_shape=(1, 8, 1, 1))
    s = Session(model)
    for _ in range(2):
        np.testing.assert_allclose(s.run(None, {"x": x, "z": z})[0],
                                   reference_session(model).run(None, {"x": x, "z": z})[0], rtol=1e-5, atol=1e-5)
    half = Session(_residual_block(np.float16))
    assert "Add" in _ops(half)


@pytest.mark.parametrize("op", ["Add", "Mul"])
@pytest.mark.parametrize("c_shape,folds", [((1, 8, 1, 1), True), ((8, 1, 1), True), ((), True), ((1,), True),
                                           ((5,), False), ((1, 8, 6, 5), False)])
def test_conv_then_constant_add_or_mul_folds_into_the_conv(op, c_shape, folds):
    """Add(Conv(x, W, B), C) with C one value or one per output channel becomes Conv(x, W,
    B + C), Mul(Conv, S) Conv(x, W * S, B * S) (PaddlePaddle exports keep a bias and a
    scale apart so); other constants stay an Add or Mul."""
    rng = np.random.default_rng(4)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b"),
             numpy_helper.from_array(rng.standard_normal(c_shape).astype(np.float32), "c")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["h"], pads=[1, 1, 1, 1]),
             helper.make_node(op, ["c", "h"], ["y"])]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 6, 5])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    s = Session(model)
    assert (op not in _ops(s)) == folds
    x = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)
    for _ in range(2):
        np.testing.assert_allclose(s.run(None, {"x": x})[0], reference_session(model).run(None, {"x": x})[0],
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("chain", [["BatchNormalization"], ["Add", "BatchNormalization"], ["Mul", "Add"],
                                   ["BatchNormalization", "Add"]])
def test_bias_scale_and_batchnorm_fold_into_a_conv_or_conv_transpose(transposed, groups, chain):
    """A Conv or ConvTranspose followed by a BatchNormalization, a constant per-channel Add
    or Mul, in either order (PaddlePaddle's detection head: ConvTranspose -> Add(bias) ->
    BatchNormalization, whose BN ran on numpy), folds into the one operator's weights and
    bias: a ConvTranspose's output channel o is column o % (O/g) of group o // (O/g)."""
    rng = np.random.default_rng(len(chain) * 10 + groups + transposed)
    c, o = 4, 6
    w_shape = (c, o // groups, 2, 2) if transposed else (o, c // groups, 3, 3)
    inits = [numpy_helper.from_array(rng.standard_normal(w_shape).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal((1, o, 1, 1)).astype(np.float32), "k"),
             numpy_helper.from_array(rng.uniform(0.5, 2, o).astype(np.float32), "gamma"),
             numpy_helper.from_array(rng.standard_normal(o).astype(np.float32), "beta"),
             numpy_helper.from_array(rng.standard_normal(o).astype(np.float32), "mean"),
             numpy_helper.from_array(rng.uniform(0.5, 2, o).astype(np.float32), "var")]
    attrs = dict(strides=[2, 2], group=groups) if transposed else dict(pads=[1, 1, 1, 1], group=groups)
    nodes = [helper.make_node("ConvTranspose" if transposed else "Conv", ["x", "w"], ["h0"], **attrs)]
    for i, op in enumerate(chain):
        ins = [f"h{i}", "gamma", "beta", "mean", "var"] if op == "BatchNormalization" else [f"h{i}", "k"]
        nodes.append(helper.make_node(op, ins, [f"h{i + 1}"]))
    nodes[-1].output[0] = "y"
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, c, 5, 4])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    s = Session(model)
    assert _ops(s) == ["ConvTranspose" if transposed else "Conv"], _ops(s)
    x = rng.standard_normal((2, c, 5, 4)).astype(np.float32)
    want = reference_session(model).run(None, {"x": x})[0]
    for _ in range(2):
        np.testing.assert_allclose(s.run(None, {"x": x})[0], want, rtol=1e-5, atol=1e-5)

@pytest.mark.parametrize("groups", [1, 8])
@pytest.mark.parametrize("commuted", [False, True])
def test_paddle_hard_swish_fused_into_the_conv_gives_the_unfused_floats(groups, commuted, monkeypatch):
    """t = Conv; Div(Mul(t, Clip(Add(t, 3), 0, 6)), 6) (PaddlePaddle's export of hard swish)
    becomes one FusedConv whose fp32 output stage applies the four operations in order:
    the same floats as the nodes, NaN included, node by node and on the plan."""
    from qkernels.graph import rewrite
    rng = np.random.default_rng(5)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 8 // groups, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b")]
    inits += [numpy_helper.from_array(np.array(v, np.float32), n) for v, n in ((3, "three"), (0, "zero"),
                                                                               (6, "six"))]
    add_in, mul_in = (["three", "t"], ["c", "t"]) if commuted else (["t", "three"], ["t", "c"])
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["t"], pads=[1, 1, 1, 1], group=groups),
             helper.make_node("Add", add_in, ["a"]), helper.make_node("Clip", ["a", "zero", "six"], ["c"]),
             helper.make_node("Mul", mul_in, ["m"]), helper.make_node("Div", ["m", "six"], ["y"])]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8, 6, 5])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    fused = Session(model)
    assert _ops(fused) == ["com.microsoft::FusedConv"]
    assert fused.graph.nodes[0].attrs["activation"] == "HardSwishDiv"
    monkeypatch.setattr(rewrite, "PASSES", tuple(p for p in rewrite.PASSES if p is not rewrite.fuse_hard_swish))
    unfused = Session(model)
    x = rng.standard_normal((2, 8, 6, 5)).astype(np.float32) * 4
    x[1, 2, 3, 4] = np.nan
    want = unfused.run(None, {"x": x})[0]
    for _ in range(2):
        got = fused.run(None, {"x": x})[0]
        assert np.array_equal(got.view(np.uint32)[~np.isnan(got)], want.view(np.uint32)[~np.isnan(want)])
        assert np.array_equal(np.isnan(got), np.isnan(want))
    assert fused.last_run == "plan"
    np.testing.assert_allclose(got, reference_session(model).run(None, {"x": x})[0], rtol=1e-5, atol=1e-5)



@pytest.mark.parametrize("c, h, w, k, stride", [(8, 6, 5, 3, 1), (16, 2, 21, 5, 1), (40, 3, 19, 5, 1),
                                                (200, 2, 9, 5, 1), (19, 7, 7, 3, 2), (33, 3, 11, 5, 2)])
@pytest.mark.parametrize("tail", ["hswish", "residual"])
def test_depthwise_output_stage_gives_the_same_floats_on_every_path(c, h, w, k, stride, tail):
    """fp32 depthwise convolutions with their fused output stage (PaddlePaddle's hard swish,
    or a residual Add and Relu) on every ISA path: ONNX Runtime's floats within float32
    rounding (rows of a tall kernel over a short feature map sum only the kernel rows
    inside it, kernels/dwconv.c clipped_rows), and the AVX-512 kernel, which stores them
    from its registers, the AVX2 path's bit for bit, NaN included."""
    import qkernels
    rng = np.random.default_rng(c * 100 + h)
    inits = [numpy_helper.from_array(rng.standard_normal((c, 1, k, k)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(c).astype(np.float32), "b")]
    oh, ow = (h - 1) // stride + 1, (w - 1) // stride + 1
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["t"], pads=[k // 2] * 4, group=c, strides=[stride] * 2)]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, h, w])]
    if tail == "hswish":
        inits += [numpy_helper.from_array(np.array(v, np.float32), n) for v, n in ((3, "three"), (0, "zero"),
                                                                                   (6, "six"))]
        nodes += [helper.make_node("Add", ["t", "three"], ["a"]), helper.make_node("Clip", ["a", "zero", "six"], ["cl"]),
                  helper.make_node("Mul", ["t", "cl"], ["m"]), helper.make_node("Div", ["m", "six"], ["y"])]
    else:
        inputs.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, [1, c, oh, ow]))
        nodes += [helper.make_node("Add", ["t", "r"], ["a"]), helper.make_node("Relu", ["a"], ["y"])]
    model = _model(nodes, inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    feeds = {"x": rng.standard_normal((1, c, h, w)).astype(np.float32) * 3}
    feeds["x"][0, c // 2, h // 2, w // 2] = np.nan
    if tail == "residual":
        feeds["r"] = rng.standard_normal((1, c, oh, ow)).astype(np.float32)
    ref = _ort().InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    x86 = {}
    for isa in qkernels._dispatch.tested_isas():
        with qkernels.use_isa(isa):
            s = Session(model, num_threads=1)
            assert _ops(s) == ["com.microsoft::FusedConv"], (isa, _ops(s))
            got = s.run(None, feeds)[0]
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5, err_msg=isa)
        if isa.startswith(("avx2", "avx512")):
            x86[isa] = got
    for isa, got in x86.items():   # the AVX-512 kernel's floats are the AVX2 kernel's and output stage's
        want = x86.get("avx2", got)
        assert np.array_equal(np.isnan(got), np.isnan(want)), isa
        np.testing.assert_array_equal(got[~np.isnan(got)].view(np.uint32), want[~np.isnan(want)].view(np.uint32),
                                      err_msg=isa)

@pytest.mark.parametrize("scales,coords,nearest", [((1, 1, 2, 2), "asymmetric", "floor"),
                                                   ((1, 1, 4, 3), "asymmetric", "floor"),
                                                   ((1, 1, 2, 2), "half_pixel", "round_prefer_floor"),
                                                   ((1, 1, 1.5, 2), "asymmetric", "floor")])
@pytest.mark.parametrize("dtype", [np.float32, np.int8])
def test_nearest_resize_by_whole_factors_on_the_plan(scales, coords, nearest, dtype):
    """Resize nearest is bound in the plan (the native loop, graph/backends/cpu_upsample.py)
    whatever its factors and coordinates; every case equals the reference."""
    rng = np.random.default_rng(6)
    et = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    inits = [numpy_helper.from_array(np.array([], np.float32), "roi"),
             numpy_helper.from_array(np.array(scales, np.float32), "scales")]
    node = helper.make_node("Resize", ["x", "roi", "scales"], ["y"], mode="nearest",
                            coordinate_transformation_mode=coords, nearest_mode=nearest)
    model = _model([node], [helper.make_tensor_value_info("x", et, [2, 3, 5, 4])],
                   [helper.make_tensor_value_info("y", et, None)], inits)
    x = (rng.standard_normal((2, 3, 5, 4)) * 50).astype(dtype)
    x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)   # NHWC memory, as convs leave it
    s = Session(model)
    want = reference_session(model).run(None, {"x": x})[0]
    for _ in range(2):
        np.testing.assert_array_equal(s.run(None, {"x": x})[0], want)
    bound = next(p for p in s._plans.values() if p)._idle[0].bound
    assert bound == 1


@settings(max_examples=30, deadline=None)
@given(op=st.sampled_from(["QLinearAdd", "QLinearMul"]), signed=st.booleans(), first=st.booleans(),
       seed=st.integers(0, 2**31), const_shape=st.sampled_from([(1,), (), (1, 1, 1, 1), (5, 1, 1)]))
def test_qlinear_add_and_mul_of_a_constant_equal_the_reference(op, signed, first, seed, const_shape):
    """A constant operand: a number (one byte table, built by the native loop itself, for
    every value of the other operand), or per channel (broadcast once, when bound); the
    reference's bits, node by node and on the plan, and the table path bound."""
    from qkernels import _native
    rng = np.random.default_rng(seed)
    dtype = np.int8 if signed else np.uint8
    info = np.iinfo(dtype)
    params = [(float(np.float32(2.0 ** rng.uniform(-7, -2))), int(rng.integers(info.min, info.max + 1)))
              for _ in range(3)]
    et = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    inits = [numpy_helper.from_array(rng.integers(info.min, info.max + 1, const_shape).astype(dtype), "k")]
    for (s, z), tag in zip(params, "aby"):
        inits += [numpy_helper.from_array(np.array(s, np.float32), f"s{tag}"),
                  numpy_helper.from_array(np.array(z, dtype), f"z{tag}")]
    ins = ["k", "sa", "za", "x", "sb", "zb"] if first else ["x", "sa", "za", "k", "sb", "zb"]
    node = helper.make_node(op, ins + ["sy", "zy"], ["y"], domain="com.microsoft", name="q")
    model = _model([node], [helper.make_tensor_value_info("x", et, [2, 5, 6, 7])],
                   [helper.make_tensor_value_info("y", et, None)], inits, ms=True)
    x = rng.integers(info.min, info.max + 1, (2, 5, 6, 7)).astype(dtype)
    want = reference_session(model).run(None, {"x": x})[0]
    planned, nodes = Session(model, num_threads=1), Session(model, num_threads=1, plan=False)
    for _ in range(2):
        np.testing.assert_array_equal(planned.run(None, {"x": x})[0], want)
    np.testing.assert_array_equal(nodes.run(None, {"x": x})[0], want)
    (pool,) = [p for p in planned._plans.values() if p is not None]
    (step,) = pool._idle[0].steps
    assert step[2] and planned.placement(planned.graph.nodes[0]) == "native"   # bound, native
    if int(np.prod(const_shape)) == 1 and len(const_shape) <= 4:
        assert isinstance(step[1][0], _native.BoundCopy)                        # the byte table


@settings(max_examples=25, deadline=None)
@given(signed=st.booleans(), conv_first=st.booleans(), skip=st.sampled_from(["conv", "input"]),
       seed=st.integers(0, 2**31), c=st.sampled_from([1, 5, 16, 33]), hw=st.sampled_from([(1, 1), (5, 7), (12, 13)]),
       threads=st.sampled_from([1, 2]), ci=st.sampled_from([3, 16]))
@example(signed=True, conv_first=True, skip="conv", seed=7, c=33, hw=(1, 1), threads=1, ci=3)   # a GEMV's panels, then the add
@example(signed=False, conv_first=False, skip="conv", seed=3, c=33, hw=(12, 13), threads=2, ci=16)   # uint8 read in place
def test_qlinear_conv_and_residual_add_fused_equal_the_two_nodes(signed, conv_first, skip, seed, c, hw, threads, ci):
    """QLinearConv -> QLinearAdd with another tensor (another convolution's NHWC result,
    or an NCHW feed): fused into qkernels::QLinearConvAdd, bound as one convolution whose
    tiles the QLinearAdd loop finishes (when the other tensor lies in NHWC rows), the
    unfused graph's bits node by node and on the plan (1 and 2 threads: tiles or strips of
    whole rows; 16 uint8 input channels: the indirect convolution's panels), the reference's,
    and ONNX Runtime's within its one-step tie difference."""
    rng = np.random.default_rng(seed)
    dt = np.int8 if signed else np.uint8
    et = helper.np_dtype_to_tensor_dtype(np.dtype(dt))
    info = np.iinfo(dt)

    def q(name, s, z):
        return [numpy_helper.from_array(np.array(s, np.float32), f"{name}_s"),
                numpy_helper.from_array(np.array(z, dt), f"{name}_z")]
    zs = {k: int(rng.integers(info.min // 2, info.max // 2)) for k in "xtry"}
    inits = q("x", 0.05, zs["x"]) + q("t", 0.11, zs["t"]) + q("r", 0.09, zs["r"]) + q("y", 0.15, zs["y"])
    inits += [numpy_helper.from_array(rng.integers(-127, 128, (c, ci, 3, 3)).astype(np.int8), "w"),
              numpy_helper.from_array(np.array(0.004, np.float32), "w_s"),
              numpy_helper.from_array(np.array(0, np.int8), "w_z"),
              numpy_helper.from_array(rng.integers(-2000, 2000, c).astype(np.int32), "bias")]
    conv = lambda x, out: helper.make_node(  # noqa: E731
        "QLinearConv", [x, "x_s", "x_z", "w", "w_s", "w_z", out + "_s" if out != "t" else "t_s",
                        out + "_z" if out != "t" else "t_z", "bias"], [out], pads=[1, 1, 1, 1])
    nodes = [conv("x", "t")]
    if skip == "conv":
        nodes.append(conv("x", "r"))
        ins = [helper.make_tensor_value_info("x", et, [1, ci, *hw])]
    else:
        ins = [helper.make_tensor_value_info("x", et, [1, ci, *hw]), helper.make_tensor_value_info("r", et, [1, c, *hw])]
    a, b = (["t", "t_s", "t_z"], ["r", "r_s", "r_z"]) if conv_first else (["r", "r_s", "r_z"], ["t", "t_s", "t_z"])
    nodes.append(helper.make_node("QLinearAdd", a + b + ["y_s", "y_z"], ["y"], domain="com.microsoft"))
    model = _model(nodes, ins, [helper.make_tensor_value_info("y", et, None)], inits, ms=True)
    feeds = {"x": rng.integers(info.min, info.max + 1, (1, ci, *hw)).astype(dt)}
    if skip == "input":
        feeds["r"] = rng.integers(info.min, info.max + 1, (1, c, *hw)).astype(dt)
    want = reference_session(model).run(None, feeds)[0]
    planned, nodes_run = Session(model, num_threads=threads), Session(model, num_threads=1, plan=False)
    assert any(n.op_type == "QLinearConvAdd" for n in planned.graph.nodes)
    for _ in range(2):
        np.testing.assert_array_equal(planned.run(None, feeds)[0], want)
    np.testing.assert_array_equal(nodes_run.run(None, feeds)[0], want)
    (pool,) = [p for p in planned._plans.values() if p is not None]
    fused = [st for st in pool._idle[0].steps if st[0].op_type == "QLinearConvAdd"]
    assert fused and (fused[0][2] or skip == "input")       # bound when the other tensor is NHWC rows
    ort = pytest.importorskip("onnxruntime")
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


@settings(max_examples=30, deadline=None)
@given(op=st.sampled_from(["Sigmoid", "HardSigmoid", "Div", "Mul", "Clip", "LeakyRelu", "Tanh", "HardSwish", "Relu"]),
       signed_in=st.booleans(), signed_out=st.booleans(), seed=st.integers(0, 2**31), shared=st.booleans())
def test_a_dequantize_op_quantize_chain_is_one_byte_table(op, signed_in, signed_out, seed, shared):
    """DequantizeLinear -> an elementwise op with constant operands -> QuantizeLinear is one
    qkernels::TableLookup (the three reference operators on every byte value, once): the
    reference's bits for the unfused chain, node by node and on the plan, bound; a chain
    whose op result is read elsewhere too stays as it is."""
    rng = np.random.default_rng(seed)
    din, dout = (np.int8 if signed_in else np.uint8), (np.int8 if signed_out else np.uint8)
    ein, eout = (helper.np_dtype_to_tensor_dtype(np.dtype(d)) for d in (din, dout))
    zi, zo = (int(rng.integers(np.iinfo(d).min // 2, np.iinfo(d).max // 2)) for d in (din, dout))
    inits = [numpy_helper.from_array(np.array(2.0 ** rng.uniform(-6, -1), np.float32), "s_in"),
             numpy_helper.from_array(np.array(zi, din), "z_in"),
             numpy_helper.from_array(np.array(2.0 ** rng.uniform(-8, -2), np.float32), "s_out"),
             numpy_helper.from_array(np.array(zo, dout), "z_out"),
             numpy_helper.from_array(np.array(rng.uniform(0.5, 7), np.float32), "k"),
             numpy_helper.from_array(np.array(-0.5, np.float32), "lo"),
             numpy_helper.from_array(np.array(1.5, np.float32), "hi")]
    extra = {"Div": ["k"], "Mul": ["k"], "Clip": ["lo", "hi"]}.get(op, [])
    attrs = {"alpha": 0.1} if op == "LeakyRelu" else {}
    nodes = [helper.make_node("DequantizeLinear", ["x", "s_in", "z_in"], ["f"]),
             helper.make_node(op, ["f"] + extra, ["g"], **attrs),
             helper.make_node("QuantizeLinear", ["g", "s_out", "z_out"], ["y"])]
    outs = [helper.make_tensor_value_info("y", eout, None)]
    if shared:
        outs.append(helper.make_tensor_value_info("g", TensorProto.FLOAT, None))
    model = _model(nodes, [helper.make_tensor_value_info("x", ein, [2, 3, 5, 7])], outs, inits)
    x = rng.integers(np.iinfo(din).min, np.iinfo(din).max + 1, (2, 3, 5, 7)).astype(din)
    x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)    # any memory order
    want = reference_session(model).run(None, {"x": np.ascontiguousarray(x)})
    planned, nodes_run = Session(model, num_threads=1), Session(model, num_threads=1, plan=False)
    for _ in range(2):
        got = planned.run(None, {"x": x})
        for g, n in zip(got, nodes_run.run(None, {"x": x})):
            np.testing.assert_array_equal(g, n)
    if shared:   # unfused: the cpu backend's own float op (within its ulp bound), then Q
        np.testing.assert_allclose(got[1], want[1], rtol=1e-6, atol=1e-7)
        assert np.abs(got[0].astype(int) - want[0].astype(int)).max() <= 1
    else:        # the table: the reference operators' bits
        np.testing.assert_array_equal(got[0], want[0])
    tables = [n for n in planned.graph.nodes if n.op_type == "TableLookup"]
    assert len(tables) == (0 if shared else 1)
    if not shared:
        (pool,) = [p for p in planned._plans.values() if p is not None]
        assert all(st[2] for st in pool._idle[0].steps if st[0].op_type == "TableLookup")


@settings(max_examples=25, deadline=None)
@given(signed_in=st.booleans(), signed_out=st.booleans(), seed=st.integers(0, 2**31), c=st.sampled_from([1, 3, 24]),
       nhwc=st.booleans(), dequantized=st.booleans())
def test_a_dequantize_batchnorm_quantize_chain_is_a_byte_table_per_channel(signed_in, signed_out, seed, c, nhwc,
                                                                            dequantized):
    """DequantizeLinear -> BatchNormalization (inference, constant parameters; scale and
    bias themselves dequantized, as ORT's quantizer leaves a lone BN of a detection head)
    -> QuantizeLinear is one qkernels::TableLookup of a (C, 256) table: the reference's
    bytes for the unfused chain (on the reference it ran on numpy, a fifth of the PaddleOCR
    detector's int8 time), from NCHW and NHWC memory, node by node and on the plan."""
    rng = np.random.default_rng(seed)
    din, dout = (np.int8 if signed_in else np.uint8), (np.int8 if signed_out else np.uint8)
    ein, eout = (helper.np_dtype_to_tensor_dtype(np.dtype(d)) for d in (din, dout))
    zi, zo = (int(rng.integers(np.iinfo(d).min // 2, np.iinfo(d).max // 2)) for d in (din, dout))
    scale, bias = rng.uniform(0.2, 3, c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    inits = [numpy_helper.from_array(np.array(2.0 ** rng.uniform(-6, -1), np.float32), "s_in"),
             numpy_helper.from_array(np.array(zi, din), "z_in"),
             numpy_helper.from_array(np.array(2.0 ** rng.uniform(-6, -2), np.float32), "s_out"),
             numpy_helper.from_array(np.array(zo, dout), "z_out"),
             numpy_helper.from_array(rng.standard_normal(c).astype(np.float32), "mean"),
             numpy_helper.from_array(rng.uniform(0.1, 2, c).astype(np.float32), "var")]
    nodes = [helper.make_node("DequantizeLinear", ["x", "s_in", "z_in"], ["f"])]
    if dequantized:
        inits += [numpy_helper.from_array(np.round(scale / 0.02).astype(np.int8), "gq"),
                  numpy_helper.from_array(np.array(0.02, np.float32), "gs"),
                  numpy_helper.from_array(np.round(bias / 0.01).astype(np.int32), "bq"),
                  numpy_helper.from_array(np.array(0.01, np.float32), "bs")]
        nodes += [helper.make_node("DequantizeLinear", ["gq", "gs"], ["gamma"]),
                  helper.make_node("DequantizeLinear", ["bq", "bs"], ["beta"])]
    else:
        inits += [numpy_helper.from_array(scale, "gamma"), numpy_helper.from_array(bias, "beta")]
    nodes += [helper.make_node("BatchNormalization", ["f", "gamma", "beta", "mean", "var"], ["g"], epsilon=1e-3),
              helper.make_node("QuantizeLinear", ["g", "s_out", "z_out"], ["y"])]
    model = _model(nodes, [helper.make_tensor_value_info("x", ein, [2, c, 5, 7])],
                   [helper.make_tensor_value_info("y", eout, None)], inits)
    x = rng.integers(np.iinfo(din).min, np.iinfo(din).max + 1, (2, c, 5, 7)).astype(din)
    if nhwc:
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    want = reference_session(model).run(None, {"x": np.ascontiguousarray(x)})[0]
    planned, nodes_run = Session(model, num_threads=1), Session(model, num_threads=1, plan=False)
    assert _ops(planned) == ["qkernels::TableLookup"]
    assert planned.graph.initializers[planned.graph.nodes[0].inputs[1]].shape == (c, 256)
    for _ in range(2):
        np.testing.assert_array_equal(planned.run(None, {"x": x})[0], want)
        np.testing.assert_array_equal(nodes_run.run(None, {"x": x})[0], want)
    (pool,) = [p for p in planned._plans.values() if p is not None]
    assert all(st[2] for st in pool._idle[0].steps if st[0].op_type == "TableLookup")
    ort = pytest.importorskip("onnxruntime")
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1

@settings(max_examples=25, deadline=None)
@given(signed=st.booleans(), seed=st.integers(0, 2**31), k=st.integers(1, 4), same=st.booleans(),
       axis=st.sampled_from([1, -1, 2]), conv_after=st.booleans())
def test_dequantize_concat_quantize_is_a_qlinear_concat(signed, seed, k, same, axis, conv_after):
    """DequantizeLinear of each input -> Concat -> QuantizeLinear becomes com.microsoft
    QLinearConcat (what ONNX Runtime runs): inputs quantized like the output copied, the
    others requantized; a Concat of the bytes where every input is quantized like the output; the reference's bytes for the float chain, on the plan and node by
    node; followed by a convolution (int8 activations then run as uint8, the concat's
    inputs and output flipped with it) the same bytes too."""
    rng = np.random.default_rng(seed)
    dt = np.int8 if signed else np.uint8
    et = helper.np_dtype_to_tensor_dtype(np.dtype(dt))
    lo, hi = np.iinfo(dt).min, np.iinfo(dt).max
    sy, zy = np.float32(2.0 ** rng.uniform(-5, -2)), dt(rng.integers(lo // 2, hi // 2))
    inits = [numpy_helper.from_array(np.array(sy), "sy"), numpy_helper.from_array(np.array(zy), "zy")]
    nodes, inputs, feeds, dqs = [], [], {}, []
    for i in range(k):
        s_i, z_i = (sy, zy) if same and i % 2 == 0 else (np.float32(2.0 ** rng.uniform(-5, -2)),
                                                        dt(rng.integers(lo // 2, hi // 2)))
        inits += [numpy_helper.from_array(np.array(s_i), f"s{i}"), numpy_helper.from_array(np.array(z_i), f"z{i}")]
        shape = [1, 3, 4, 5]
        shape[axis] += i
        inputs.append(helper.make_tensor_value_info(f"x{i}", et, shape))
        feeds[f"x{i}"] = rng.integers(lo, hi + 1, shape).astype(dt)
        nodes.append(helper.make_node("DequantizeLinear", [f"x{i}", f"s{i}", f"z{i}"], [f"f{i}"]))
        dqs.append(f"f{i}")
    nodes += [helper.make_node("Concat", dqs, ["c"], axis=axis), helper.make_node("QuantizeLinear", ["c", "sy", "zy"],
                                                                                 ["y"])]
    if conv_after and axis == 1:   # a convolution reading the concatenation (its channels: 3 k + k (k - 1) / 2)
        ch = sum(3 + i for i in range(k))
        inits += [numpy_helper.from_array(rng.integers(-127, 128, (2, ch, 1, 1)).astype(np.int8), "wq"),
                  numpy_helper.from_array(np.array(0.01, np.float32), "ws"),
                  numpy_helper.from_array(np.int8(0), "wz"), numpy_helper.from_array(np.array(0.05, np.float32), "so")]
        nodes[-1].output[0] = "yq"
        nodes += [helper.make_node("DequantizeLinear", ["yq", "sy", "zy"], ["yd"]),
                  helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"]),
                  helper.make_node("Conv", ["yd", "wd"], ["o"]), helper.make_node("QuantizeLinear", ["o", "so", "zy"],
                                                                                 ["y"])]
    model = _model(nodes, inputs, [helper.make_tensor_value_info("y", et, None)], inits)
    want = reference_session(model).run(None, feeds)[0]
    planned, nodes_run = Session(model, num_threads=1), Session(model, num_threads=1, plan=False)
    every_same = same and k == 1     # (input 0 quantized like the output: a Concat of the bytes)
    assert ("Concat" if every_same else "com.microsoft::QLinearConcat") in _ops(planned)
    assert ("com.microsoft::QLinearConcat" if every_same else "Concat") not in _ops(planned)
    for _ in range(2):
        np.testing.assert_array_equal(planned.run(None, feeds)[0], want)
        np.testing.assert_array_equal(nodes_run.run(None, feeds)[0], want)

@settings(max_examples=30, deadline=None)
@given(op=st.sampled_from(["Flatten", "MaxPool", "Transpose", "Reshape"]), signed_in=st.booleans(),
       signed_out=st.booleans(), same=st.booleans(), seed=st.integers(0, 2**31))
def test_a_move_between_two_quantizations_runs_on_the_quantized_values(op, signed_in, signed_out, same, seed):
    """DequantizeLinear -> Flatten/MaxPool/Transpose/Reshape -> QuantizeLinear: the move on
    the quantized values, then (quantized otherwise on each side) a byte table of
    Q(DQ(v)): the reference's bits for the float chain, node by node and on the plan."""
    rng = np.random.default_rng(seed)
    if same:
        signed_out = signed_in
    din, dout = (np.int8 if signed_in else np.uint8), (np.int8 if signed_out else np.uint8)
    ein, eout = (helper.np_dtype_to_tensor_dtype(np.dtype(d)) for d in (din, dout))
    zi = int(rng.integers(np.iinfo(din).min // 2, np.iinfo(din).max // 2))
    zo = zi if same else int(rng.integers(np.iinfo(dout).min // 2, np.iinfo(dout).max // 2))
    si = np.float32(2.0 ** rng.uniform(-6, -1))
    so = si if same else np.float32(2.0 ** rng.uniform(-6, -1))
    inits = [numpy_helper.from_array(np.array(si, np.float32), "s_in"), numpy_helper.from_array(np.array(zi, din), "z_in"),
             numpy_helper.from_array(np.array(so, np.float32), "s_out"),
             numpy_helper.from_array(np.array(zo, dout), "z_out"),
             numpy_helper.from_array(np.array([2, -1], np.int64), "shape")]
    args = {"Flatten": ([], {}), "MaxPool": ([], {"kernel_shape": [2, 2], "pads": [1, 0, 0, 1]}),
            "Transpose": ([], {"perm": [0, 2, 3, 1]}), "Reshape": (["shape"], {})}[op]
    nodes = [helper.make_node("DequantizeLinear", ["x", "s_in", "z_in"], ["f"]),
             helper.make_node(op, ["f"] + args[0], ["g"], **args[1]),
             helper.make_node("QuantizeLinear", ["g", "s_out", "z_out"], ["y"])]
    model = _model(nodes, [helper.make_tensor_value_info("x", ein, [2, 3, 5, 7])],
                   [helper.make_tensor_value_info("y", eout, None)], inits)
    x = rng.integers(np.iinfo(din).min, np.iinfo(din).max + 1, (2, 3, 5, 7)).astype(din)
    x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)    # an NCHW view of NHWC memory
    want = reference_session(model).run(None, {"x": np.ascontiguousarray(x)})[0]
    planned, nodes_run = Session(model, num_threads=1), Session(model, num_threads=1, plan=False)
    for _ in range(2):
        np.testing.assert_array_equal(planned.run(None, {"x": x})[0], want)
    np.testing.assert_array_equal(nodes_run.run(None, {"x": x})[0], want)
    ops = sorted(n.op_type for n in planned.graph.nodes)
    assert ops == sorted([op] + ([] if same else ["TableLookup"]))


# ------------------------------------------ 1-D convolutions; Pow, Sqrt, Gather bound

@pytest.mark.parametrize("kw", [{}, {"pads": [2, 1], "strides": [3]}, {"dilations": [2], "pads": [1, 1]},
                                {"group": 3, "auto_pad": "SAME_UPPER"}, {"strides": [2], "relu": True}])
@pytest.mark.parametrize("bias", [False, True])
def test_conv1d_runs_as_a_2d_conv_on_the_kernels(kw, bias):
    rng = np.random.default_rng(7)
    kw = dict(kw)
    relu = kw.pop("relu", False)
    groups = kw.get("group", 1)
    w = rng.standard_normal((6, 6 // groups, 5)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w")] + ([numpy_helper.from_array(rng.standard_normal(6).astype(np.float32),
                                                                          "b")] if bias else [])
    nodes = [helper.make_node("Conv", ["x", "w"] + (["b"] if bias else []), ["c"], **kw)]
    nodes += [helper.make_node("Relu", ["c"], ["y"])] if relu else [helper.make_node("Identity", ["c"], ["y"])]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6, 23])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    x = rng.standard_normal((2, 6, 23)).astype(np.float32)
    s = Session(model)
    conv = next(n for n in s.graph.nodes if "Conv" in n.op_type)
    assert s.placement(conv) == "native" and conv.inputs[1].endswith("/W4")   # 4-D weights (packed, dropped)
    assert conv.op_type == ("FusedConv" if relu else "Conv")          # the Relu fused into it
    want = reference_session(model).run(None, {"x": x})[0]
    for _ in range(2):      # traced, then planned
        np.testing.assert_allclose(s.run(None, {"x": x})[0], want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("indices,axis", [(np.array(-1), 0), (np.array([[0, 2], [-1, 1]]), 1),
                                          (np.array([3, 0, 3]), -1)])
def test_pow_sqrt_and_gather_of_constant_indices_bound_in_place_equal_the_reference(indices, axis):
    rng = np.random.default_rng(8)
    x = rng.random((4, 3, 4)).astype(np.float32) + 0.1
    nodes = [helper.make_node("Pow", ["x", "e"], ["p"]), helper.make_node("Sqrt", ["p"], ["r"]),
             helper.make_node("Gather", ["r", "i"], ["y"], axis=axis)]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                   [numpy_helper.from_array(np.float32(2.5), "e"),
                    numpy_helper.from_array(indices.astype(np.int64), "i")])
    s = Session(model)
    want = reference_session(model).run(None, {"x": x})[0]
    for _ in range(2):
        np.testing.assert_array_equal(s.run(None, {"x": x})[0], want)
    assert s.last_run == "plan"
    plan = next(p for p in s._plans.values() if p is not None)._idle[0]
    assert plan.bound == 3


@pytest.mark.parametrize("op", ["Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual"])
@pytest.mark.parametrize("src,dst", [(np.int64, TensorProto.FLOAT), (np.float32, TensorProto.DOUBLE),
                                     (np.float64, TensorProto.FLOAT), (np.float32, TensorProto.BOOL)])
def test_comparisons_and_casts_bound_in_place_equal_the_reference(op, src, dst):
    rng = np.random.default_rng(9)
    x = (rng.standard_normal((3, 5)) * 1e5).astype(src)
    x[0, :2] = [0, -0.0] if np.dtype(src).kind == "f" else 0
    nodes = [helper.make_node("Cast", ["x"], ["c"], to=dst), helper.make_node("Cast", ["x"], ["d"], to=dst),
             helper.make_node(op, ["c", "d"], ["y"]), helper.make_node(op, ["c", "k"], ["z"])]
    k = numpy_helper.from_array(np.zeros(5, helper.tensor_dtype_to_np_dtype(dst)), "k")
    model = _model(nodes, [helper.make_tensor_value_info("x", helper.np_dtype_to_tensor_dtype(np.dtype(src)), [3, 5])],
                   [helper.make_tensor_value_info(n, 0, None) for n in ("c", "y", "z")], [k])
    s = Session(model)
    want = reference_session(model).run(None, {"x": x})
    for _ in range(2):
        for got, w in zip(s.run(None, {"x": x}), want):
            assert got.dtype == w.dtype
            np.testing.assert_array_equal(got, w)
    assert next(p for p in s._plans.values() if p is not None)._idle[0].bound == 4


# ------------------------------------------------ Flatten -> Gemm read in NHWC memory

def _flatten_gemm_model(c, h, w, trans_b, flatten_out=False, conv=True):
    """x -> [Conv 3x3 -> Relu ->] Flatten -> Gemm(+C) -> y (and the Flatten's f as an output)."""
    rng = np.random.default_rng(c * 100 + h * 10 + w)
    k = c * h * w
    fc = rng.standard_normal((5, k) if trans_b else (k, 5)).astype(np.float32)
    inits = [numpy_helper.from_array(fc, "fc"), numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "fb"),
             numpy_helper.from_array(rng.standard_normal((c, 2, 3, 3)).astype(np.float32), "cw")]
    nodes = ([helper.make_node("Conv", ["x", "cw"], ["cv"], pads=[1, 1, 1, 1]),
              helper.make_node("Relu", ["cv"], ["r"])] if conv else []) + [
        helper.make_node("Flatten", ["r" if conv else "x"], ["f"]),
        helper.make_node("Gemm", ["f", "fc", "fb"], ["y"], transB=trans_b)]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if flatten_out:
        outputs.append(helper.make_tensor_value_info("f", TensorProto.FLOAT, None))
    x_shape = [None, 2 if conv else c, h, w]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)], outputs, inits)


@pytest.mark.parametrize("trans_b", [0, 1])
def test_flatten_gemm_of_another_size_is_refused_clearly(trans_b):
    """An image whose C*H*W is not the Gemm's K (a free spatial size; a fuzzed model found
    it raising IndexError in the weights' reorder): the unfused run's clear error."""
    model = _flatten_gemm_model(3, 4, 4, trans_b)
    for d in model.graph.input[0].type.tensor_type.shape.dim[2:]:
        d.dim_param = "s"
    s = Session(model)
    x = np.zeros((1, 2, 4, 4), np.float32)
    assert s.run(None, {"x": x})[0].shape == (1, 5)
    with pytest.raises((ModelError, ValueError), match="K"):
        s.run(None, {"x": np.zeros((1, 2, 5, 5), np.float32)})


@settings(max_examples=25, deadline=None)
@given(c=st.sampled_from([1, 3, 16, 17]), hw=st.sampled_from([(1, 1), (4, 4), (3, 5)]), batch=st.sampled_from([1, 3, 13]),
       trans_b=st.booleans(), flatten_out=st.booleans(), conv=st.booleans())
def test_flatten_gemm_reads_nhwc_memory_and_equals_the_reference(c, hw, batch, trans_b, flatten_out, conv):
    """A convolution's Flatten read by one Gemm is no step of its own (the Gemm reads the
    NHWC memory with its weights' rows reordered): the reference's values within float32
    rounding of the reordered sums, plan and node by node; a Flatten that is also an output,
    or of a feed, stays a Flatten."""
    model = _flatten_gemm_model(c, *hw, trans_b, flatten_out, conv)
    x = np.random.default_rng(batch).standard_normal((batch, 2 if conv else c) + hw).astype(np.float32)
    ref = reference_session(model).run(None, {"x": x})
    for plan in (True, False):
        s = Session(model)
        s._plan_on = plan
        for _ in range(2):
            got = s.run(None, {"x": x})
            for g, r in zip(got, ref):
                assert g.shape == r.shape
                np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5 * (1 + np.abs(r).max()))
        if plan:
            assert s.last_run == "plan"
            steps = next(p for p in s._plans.values() if p)._idle[0].steps
            assert all(bound for _, _, bound, _ in steps)
            gemm = next(node for node, *_ in steps if node.op_type == "Gemm")
            assert gemm.inputs[0] == ("r" if conv and not flatten_out else "f")   # (a feed's Flatten: a view)
            assert flatten_out or not any(node.op_type == "Flatten" for node, *_ in steps)


# ------------------------------------------------- int8 activations run as uint8

def _flip_model(rng, tail, c=16, hw=(9, 11)):
    """Quantize (int8) -> QLinearConv 3x3 -> MaxPool -> QLinearAdd of a constant -> QLinearAdd
    to a second QLinearConv (fused into it) -> a Sigmoid between a dequantize and a quantize
    (a byte table) -> Concat with a third QLinearConv of the input -> Reshape ->
    QLinearGlobalAveragePool, then
    ``tail``: "dequantize" (float output), "int8" (the int8 pooling is the output) or
    "unknown" (that, and an operator outside the pass's tables, Pad, reads an int8
    activation of the Concat's group: a second output)."""
    S8 = TensorProto.INT8

    def q(name, s, z):
        return [numpy_helper.from_array(np.array(s, np.float32), f"{name}_s"),
                numpy_helper.from_array(np.array(z, np.int8), f"{name}_z")]
    zs = {k: int(rng.integers(-100, 100)) for k in "xabdcgpk"}
    inits = [*q("x", 0.05, zs["x"]), *q("a", 0.09, zs["a"]), *q("b", 0.07, zs["b"]), *q("d", 0.11, zs["d"]),
             *q("c", 0.13, zs["c"]), *q("g", 0.04, zs["g"]), *q("k", 0.06, zs["k"]), *q("p", 0.004, zs["p"]),
             numpy_helper.from_array(rng.integers(-127, 128, (c, 3, 3, 3)).astype(np.int8), "w"),
             numpy_helper.from_array(np.array(0.004, np.float32), "w_s"),
             numpy_helper.from_array(np.array(0, np.int8), "w_z"),
             numpy_helper.from_array(rng.integers(-128, 128, (1, c, 1, 1)).astype(np.int8), "k"),
             numpy_helper.from_array(np.array([1, 2 * c, -1, 1], np.int64), "shape")]
    conv = lambda name, out, z: helper.make_node(  # noqa: E731
        "QLinearConv", ["xq", "x_s", "x_z", "w", "w_s", "w_z", f"{z}_s", f"{z}_z"], [out], pads=[1, 1, 1, 1], name=name)
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_s", "x_z"], ["xq"]),
             conv("c1", "a", "a"), conv("c2", "b", "b"), conv("c3", "e", "c"),
             helper.make_node("MaxPool", ["a"], ["m"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("QLinearAdd", ["m", "a_s", "a_z", "k", "k_s", "k_z", "d_s", "d_z"], ["d"],
                              domain="com.microsoft"),
             helper.make_node("QLinearAdd", ["e", "c_s", "c_z", "d", "d_s", "d_z", "c_s", "c_z"], ["f"],
                              domain="com.microsoft"),     # (fused: qkernels::QLinearConvAdd)
             helper.make_node("DequantizeLinear", ["f", "c_s", "c_z"], ["ff"]),      # (one qkernels::TableLookup)
             helper.make_node("Sigmoid", ["ff"], ["fs"]),
             helper.make_node("QuantizeLinear", ["fs", "p_s", "p_z"], ["t"]),
             helper.make_node("Concat", ["t", "b"], ["cat"], axis=1),
             helper.make_node("Reshape", ["cat", "shape"], ["r"]),
             helper.make_node("QLinearGlobalAveragePool", ["r", "d_s", "d_z", "g_s", "g_z"], ["g"],
                              domain="com.microsoft", channels_last=0)]
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if tail == "int8":
        outs = [helper.make_tensor_value_info("g", S8, None)]
    else:
        nodes.append(helper.make_node("DequantizeLinear", ["g", "g_s", "g_z"], ["y"]))
    if tail == "unknown":
        nodes += [helper.make_node("Pad", ["b", "pads"], ["bp"]),
                  helper.make_node("DequantizeLinear", ["bp", "b_s", "b_z"], ["y2"])]
        inits.append(numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads"))
        outs.append(helper.make_tensor_value_info("y2", TensorProto.FLOAT, None))
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, *hw])], outs, inits, ms=True)


@settings(max_examples=10, deadline=None)
@given(tail=st.sampled_from(["dequantize", "int8", "unknown"]), seed=st.integers(0, 2**31))
def test_int8_activations_run_as_uint8_with_the_same_results(tail, seed):
    """The plan stores int8 activations between quantized operators as uint8 (128 added to
    bytes and zero points, graph/rewrite.py int8_activations_as_uint8): the unflipped
    plan's bits and the reference's, the convolutions' zero points uint8 in the plan, the
    graph's int8 output still int8; a group of tensors of one type that an unknown operator
    or the graph's output holds stays int8 (and only that group)."""
    from qkernels.graph import rewrite as rw
    rng = np.random.default_rng(seed)
    model = _flip_model(rng, tail)
    x = rng.standard_normal((1, 3, 9, 11)).astype(np.float32) * 2
    want = reference_session(model).run(None, {"x": x})
    flipped = Session(model, num_threads=1)
    saved = rw.PASSES
    rw.PASSES = tuple(p for p in saved if p is not rw.int8_activations_as_uint8)
    try:
        plain = Session(model, num_threads=1)
    finally:
        rw.PASSES = saved
    for sess in (flipped, plain):
        for got, w in zip(sess.run(None, {"x": x}), want, strict=True):
            np.testing.assert_array_equal(got, w)
            assert got.dtype == w.dtype == (np.int8 if tail == "int8" else np.float32)
    zp = {(n.name, k): flipped.graph.initializers[n.inputs[k]].dtype.name for n in flipped.graph.nodes
          if n.op_type == "QLinearConv" for k in (2, 7)}
    # groups: the quantized input (a convolution's input and output types are their own),
    # the first convolution's output to the table's input (the fused add's operands and
    # output): uint8 in every case; the table's output to the pooling with the third
    # convolution's output: only where no int8 output or Pad holds it
    rest = "uint8" if tail == "dequantize" else "int8"
    assert zp == {("c1", 2): "uint8", ("c2", 2): "uint8", ("c1", 7): "uint8", ("c2", 7): rest}, zp
    (fused,) = [n for n in flipped.graph.nodes if n.op_type == "QLinearConvAdd"]
    assert [flipped.graph.initializers[fused.inputs[k]].dtype.name for k in (2, 7, 9, 12, 14)] == ["uint8"] * 5
    (table,) = [n for n in flipped.graph.nodes if n.op_type == "TableLookup"]
    assert flipped.graph.initializers[table.inputs[1]].dtype.name == rest
