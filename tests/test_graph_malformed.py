"""Malformed models are refused with a ModelError (or RunError) naming the node, at load
or at run time, never with a raw AttributeError/KeyError/IndexError/MemoryError; the
cpu backend never runs what the reference operators and ONNX Runtime refuse; and the
validation leaves valid models as they were."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto as TP  # noqa: E402
from onnx import helper, numpy_helper  # noqa: E402

from qkernels.bench import zoo  # noqa: E402
from qkernels.graph import ModelError, RunError, Session, UnsupportedError  # noqa: E402
from qkernels.graph import session as session_module  # noqa: E402


def _model(nodes, inputs, inits=None, outputs=("y",), opset=21, domains=()):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(o, TP.UNDEFINED, None) for o in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]
                             + [helper.make_opsetid(d, 1) for d in domains])


def _refused(model, feeds=None, node="n", match="", backends=None):
    """The model is refused (at load, or when run with ``feeds``) by a ModelError or
    RunError that names ``node``; nothing else escapes."""
    with pytest.raises((ModelError, RunError)) as info:
        s = Session(model, backends=backends)
        s.run(None, feeds or {})
    error = info.value
    names = [n.name for n, _ in error.nodes] if isinstance(error, UnsupportedError) else []
    assert (f"{node!r}" in str(error) or node in names) and match in str(error), str(error)
    return info.value


_X8 = ("x", TP.UINT8, [1, 1, 4, 4])
_FEED8 = {"x": np.zeros((1, 1, 4, 4), np.uint8)}


def _qdq_conv(w_dq_inputs, inits, axis=0):
    """DQ(x) -> Conv(., DQ(w)) -> Q, the QDQ pattern the cpu backend rewrites."""
    nodes = [helper.make_node("DequantizeLinear", ["x", "s", "z"], ["xf"], name="dqx"),
             helper.make_node("DequantizeLinear", w_dq_inputs, ["wf"], name="n", axis=axis),
             helper.make_node("Conv", ["xf", "wf"], ["yf"], name="conv"),
             helper.make_node("QuantizeLinear", ["yf", "s", "z"], ["y"], name="q")]
    base = {"s": np.float32(0.1), "z": np.uint8(0), "w": np.ones((8, 1, 1, 1), np.int8)}
    return _model(nodes, [_X8], {**base, **inits})


# ------------------------------------------------------------ required inputs given as ""

def test_required_input_given_empty_at_constant_folding():
    _refused(_model([helper.make_node("Relu", [""], ["y"], name="n")], []), match="required")


def test_qlinearconv_y_scale_given_empty():
    inits = {"s": np.float32(0.1), "z": np.uint8(0), "w": np.ones((2, 1, 1, 1), np.uint8)}
    node = helper.make_node("QLinearConv", ["x", "s", "z", "w", "s", "z", "", "z"], ["y"], name="n")
    _refused(_model([node], [_X8], inits), _FEED8, match="y_scale")


def test_dequantize_scale_given_empty_before_a_conv():
    _refused(_qdq_conv(["w", "", "zw"], {"zw": np.int8(0)}), _FEED8, match="x_scale")


def test_reference_operator_without_schema_checks_its_arity():
    """com.microsoft operators have no ONNX schema: the reference operator's signature
    is their check (too few inputs, a required one given as "")."""
    few = helper.make_node("QLinearAdd", ["x", "s", "z"], ["y"], name="n", domain="com.microsoft")
    for backends in (None, ["reference"]):
        error = _refused(_model([few], [_X8], {"s": np.float32(0.1), "z": np.uint8(0)}, domains=["com.microsoft"]),
                         _FEED8, backends=backends)
        assert isinstance(error, UnsupportedError) and "inputs" in str(error)
    empty = helper.make_node("QLinearAdd", ["x", "", "z", "x", "s", "z", "s", "z"], ["y"], name="n",
                             domain="com.microsoft")
    _refused(_model([empty], [_X8], {"s": np.float32(0.1), "z": np.uint8(0)}, domains=["com.microsoft"]), _FEED8,
             match="required input")


# ------------------------------------------------------------- arity and attributes

@pytest.mark.parametrize("node, match", [
    (helper.make_node("Relu", ["x", "x"], ["y"], name="n"), "takes 1 inputs, got 2"),
    (helper.make_node("Relu", ["x"], ["y", "y2"], name="n"), "takes 1 outputs, got 2"),
    (helper.make_node("Concat", ["x", "x"], ["y"], name="n"), "required attribute 'axis'"),
    (helper.make_node("Gemm", ["x", "x"], ["y"], name="n", alpha=2), "attribute 'alpha' must be FLOAT"),
    (helper.make_node("Flatten", ["x"], ["y"], name="n", axis=[1]), "attribute 'axis' must be INT"),
    (helper.make_node("Softmax", ["x"], ["y"], name="n", axis=2), "axis 2 is out of range for rank 2"),
    (helper.make_node("MaxPool", ["x"], ["y"], name="n", kernel_shape=[1], strides=[0]), "'strides'"),
])
def test_arity_and_attributes_are_checked_against_the_schema(node, match):
    _refused(_model([node], [("x", TP.FLOAT, [2, 2])]), {"x": np.ones((2, 2), np.float32)}, match=match)


def test_relu_with_alpha_is_not_fused_into_the_conv():
    """Relu has no alpha: the cpu backend used to fuse it into the Conv, ignoring it."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("Relu", ["c"], ["y"], name="n", alpha=0.5)]
    model = _model(nodes, [("x", TP.FLOAT, [1, 1, 4, 4])], {"w": np.ones((2, 1, 1, 1), np.float32)})
    for backends in (None, ["reference"]):
        _refused(model, {"x": np.zeros((1, 1, 4, 4), np.float32)}, match="'alpha'", backends=backends)


def test_conv_group_zero_is_refused():
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="n", group=0)
    _refused(_model([node], [("x", TP.FLOAT, [1, 1, 4, 4])], {"w": np.ones((2, 1, 1, 1), np.float32)}),
             {"x": np.zeros((1, 1, 4, 4), np.float32)}, match="'group'")


# ----------------------------------------------------------- quantization parameters

def test_dequantize_axis_out_of_range_on_per_channel_weights():
    inits = {"sw": np.full(8, 0.1, np.float32), "zw": np.zeros(8, np.int8)}
    _refused(_qdq_conv(["w", "sw", "zw"], inits, axis=100), _FEED8, match="axis 100")


@pytest.mark.parametrize("where", ["qlinearconv", "qdq", "convinteger"])
def test_zero_length_per_channel_zero_point_is_refused(where):
    sw, zw = np.full(8, 0.1, np.float32), np.zeros(0, np.int8)
    if where == "qdq":
        model = _qdq_conv(["w", "sw", "zw"], {"sw": sw, "zw": zw})
    elif where == "qlinearconv":
        node = helper.make_node("QLinearConv", ["x", "s", "z", "w", "sw", "zw", "s", "z"], ["y"], name="n")
        model = _model([node], [_X8], {"s": np.float32(0.1), "z": np.uint8(0), "sw": sw, "zw": zw,
                                       "w": np.ones((8, 1, 1, 1), np.int8)})
    else:
        node = helper.make_node("ConvInteger", ["x", "w", "", "zw"], ["y"], name="n")
        model = _model([node], [_X8], {"zw": zw, "w": np.ones((8, 1, 1, 1), np.int8)})
    _refused(model, _FEED8)


def test_per_tensor_parameter_of_qlinearconv_must_hold_one_value():
    node = helper.make_node("QLinearConv", ["x", "s2", "z", "w", "s", "z", "s", "z"], ["y"], name="n")
    inits = {"s": np.float32(0.1), "s2": np.full(2, 0.1, np.float32), "z": np.uint8(0),
             "w": np.ones((2, 1, 1, 1), np.uint8)}
    _refused(_model([node], [_X8], inits), _FEED8, match="one value")


# ----------------------------------------------------------------------- at run time

def test_reshape_copying_a_dimension_the_input_lacks():
    node = helper.make_node("Reshape", ["x", "shape"], ["y"], name="n")
    model = _model([node], [("x", TP.FLOAT, [2, 3])], {"shape": np.array([-1, 0, 0, 0], np.int64)})
    _refused(model, {"x": np.zeros((2, 3), np.float32)}, match="[-1, 0, 0, 0]")


def test_reshape_to_a_wrong_size():
    node = helper.make_node("Reshape", ["x", "shape"], ["y"], name="n")
    model = _model([node], [("x", TP.FLOAT, [2, 3]), ("shape", TP.INT64, [2])])
    _refused(model, {"x": np.zeros((2, 3), np.float32), "shape": np.array([4, 2], np.int64)}, match="reshape")


def test_expand_to_64_dimensions():
    node = helper.make_node("Expand", ["x", "shape"], ["y"], name="n")
    _refused(_model([node], [("x", TP.FLOAT, [1])], {"shape": np.ones(64, np.int64)}),
             {"x": np.zeros(1, np.float32)}, match="rank 64")


@pytest.mark.parametrize("op", ["ConstantOfShape", "Tile", "Expand", "Range", "Pad", "OneHot"])
def test_outputs_beyond_the_size_limit_are_refused_when_run(op):
    """2**40 elements: a ModelError before anything is allocated, not a MemoryError."""
    big = np.array([1 << 40], np.int64)
    x = ("x", TP.FLOAT, [2])
    cases = {
        "ConstantOfShape": (["shape"], [("shape", TP.INT64, [1])], {"shape": big}),
        "Tile": (["x", "r"], [x, ("r", TP.INT64, [1])], {"x": np.zeros(2, np.float32), "r": big}),
        "Expand": (["x", "s"], [("x", TP.FLOAT, [1]), ("s", TP.INT64, [2])],
                   {"x": np.zeros(1, np.float32), "s": np.array([1 << 20, 1 << 20], np.int64)}),
        "Range": (["a", "b", "c"], [(k, TP.INT64, []) for k in "abc"],
                  {"a": np.array(0), "b": np.array(1 << 40), "c": np.array(1)}),
        "Pad": (["x", "p"], [x, ("p", TP.INT64, [2])], {"x": np.zeros(2, np.float32), "p": np.array([0, 1 << 40])}),
        "OneHot": (["i", "d", "v"], [("i", TP.INT64, [2]), ("d", TP.INT64, []), ("v", TP.FLOAT, [2])],
                   {"i": np.zeros(2, np.int64), "d": np.array(1 << 40), "v": np.zeros(2, np.float32)}),
    }
    inputs, declared, feeds = cases[op]
    _refused(_model([helper.make_node(op, inputs, ["y"], name="n")], declared), feeds, match="limit")


def test_errors_of_operators_at_run_time_name_the_node():
    """Values the operators cannot compute on (shapes that do not broadcast, input
    channels the weights do not have) fail with a ModelError naming the node, on the
    reference operators and on the kernels."""
    add = helper.make_node("Add", ["x", "b"], ["y"], name="n")
    _refused(_model([add], [("x", TP.FLOAT, None), ("b", TP.FLOAT, None)]),
             {"x": np.zeros(3, np.float32), "b": np.zeros(2, np.float32)}, match="broadcast")
    conv = helper.make_node("QLinearConv", ["x", "s", "z", "w", "s", "zw", "s", "z"], ["y"], name="n")
    inits = {"s": np.float32(0.1), "z": np.uint8(0), "zw": np.int8(0), "w": np.ones((2, 3, 1, 1), np.int8)}
    model = _model([conv], [("x", TP.UINT8, None)], inits)
    assert Session(model).partitions == [("cpu", ["n"])]
    _refused(model, {"x": np.zeros((1, 2, 4, 4), np.uint8)})


# ----------------------------------------------------------------- valid models pass

def test_optional_inputs_given_empty_and_default_attributes_are_accepted():
    nodes = [helper.make_node("Clip", ["x", "", "hi"], ["c"], name="clip"),
             helper.make_node("Conv", ["c", "w", ""], ["y"], name="conv", group=1, auto_pad="NOTSET")]
    model = _model(nodes, [("x", TP.FLOAT, [1, 1, 2, 2])], {"hi": np.float32(0.5), "w": np.ones((1, 1, 1, 1),
                                                                                                 np.float32)})
    x = np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2) - 1
    np.testing.assert_array_equal(Session(model).run(None, {"x": x})[0], np.minimum(x, 0.5))


def test_a_zoo_model_runs_as_it_did_without_validation(monkeypatch):
    model = zoo.mobilenet_v2(width=0.25, size=32, classes=10)
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    checked = Session(model)
    monkeypatch.setattr(session_module, "validate", lambda graph: None)
    unchecked = Session(model)
    assert checked.partitions == unchecked.partitions
    np.testing.assert_array_equal(checked.run(None, {"input": x})[0], unchecked.run(None, {"input": x})[0])


def test_expand_of_constants_to_64_dimensions_at_constant_folding():
    node = helper.make_node("Expand", ["x", "shape"], ["y"], name="n")
    _refused(_model([node], [], {"x": np.zeros(1, np.float32), "shape": np.ones(64, np.int64)}), match="rank 64")


def test_conv_bias_of_the_wrong_length_before_a_batchnorm():
    """The BatchNormalization folding leaves it to the Conv, which names itself."""
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="n"),
             helper.make_node("BatchNormalization", ["c", "p", "p", "p", "p"], ["y"], name="bn")]
    inits = {"w": np.ones((4, 1, 1, 1), np.float32), "b": np.zeros(3, np.float32), "p": np.ones(4, np.float32)}
    _refused(_model(nodes, [("x", TP.FLOAT, [1, 1, 2, 2])], inits), {"x": np.zeros((1, 1, 2, 2), np.float32)})


def test_an_opset_newer_than_onnx_is_checked_against_the_newest_schemas():
    model = _model([helper.make_node("Relu", ["x"], ["y"], name="n")], [("x", TP.FLOAT, [2])], opset=2**31)
    np.testing.assert_array_equal(Session(model).run(None, {"x": np.array([-1, 1], np.float32)})[0], [0, 1])
    model = _model([helper.make_node("Relu", ["x"], ["y"], name="n", alpha=1.0)], [("x", TP.FLOAT, [2])], opset=2**31)
    _refused(model, match="'alpha'")


@pytest.mark.parametrize("field", [b"Relu", b"relu_node", b"kept"])
def test_names_that_are_not_utf8_are_refused(field):
    # protobuf hands back bytes for string fields that are not UTF-8 (found by the model fuzzer)
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="relu_node"),
             helper.make_node("LeakyRelu", ["x"], ["z"], name="leaky", alpha=0.5)]
    model = _model(nodes, [("x", TP.FLOAT, [2])], outputs=("y", "z"))
    data = model.SerializeToString()
    if field == b"kept":      # an attribute name
        data = data.replace(b"alpha", b"al\xffha")
    else:
        data = data.replace(field, field[:1] + b"\xff" + field[2:])
    with pytest.raises(ModelError, match="not valid UTF-8"):
        Session(data)


def test_outputs_are_owned_ndarrays_and_constants_stay_read_only():
    # a reduction folded to a numpy scalar, and an output that is a constant, come back as
    # ndarrays the caller may write without changing the next run (found by the model fuzzer)
    nodes = [helper.make_node("ReduceSum", ["c"], ["s"], name="sum", keepdims=0),
             helper.make_node("Identity", ["c"], ["i"], name="ident"),
             helper.make_node("Add", ["x", "s"], ["y"], name="add")]
    model = _model(nodes, [("x", TP.FLOAT, [2])], {"c": np.ones(2, np.float32)}, outputs=("y", "s", "i"))
    sess = Session(model)
    y, s, i = sess.run(None, {"x": np.zeros(2, np.float32)})
    for out in (y, s, i):
        assert type(out) is np.ndarray and out.flags.writeable and out.flags.c_contiguous
    assert s.shape == () and float(s) == 2.0
    i[:] = 7
    s[...] = 9
    y2, s2, i2 = sess.run(None, {"x": np.zeros(2, np.float32)})
    assert float(s2) == 2.0 and np.array_equal(i2, np.ones(2, np.float32)) and np.array_equal(y2, [2, 2])
    assert all(not v.flags.writeable for v in sess.graph.initializers.values())


@pytest.mark.parametrize("clip_max", [None, np.float32(np.nan)])
def test_nan_output_scale_or_clip_bound_is_not_turned_into_an_integer_clamp(clip_max):
    # int(NaN) escaped the QDQ rewrite's clamp (model fuzzer seed 2, case 1215): such a
    # pattern stays as written and runs on the reference operators, like ORT's graph
    # with optimizations off
    nodes = [helper.make_node("DequantizeLinear", ["x", "s", "z"], ["xf"], name="dqx"),
             helper.make_node("DequantizeLinear", ["w", "s", "zw"], ["wf"], name="dqw"),
             helper.make_node("Conv", ["xf", "wf"], ["yf"], name="conv"),
             helper.make_node("Clip", ["yf", "", "hi"], ["cf"], name="clip") if clip_max is not None
             else helper.make_node("Relu", ["yf"], ["cf"], name="relu"),
             helper.make_node("QuantizeLinear", ["cf", "sy", "z"], ["y"], name="q")]
    inits = {"s": np.float32(0.1), "z": np.uint8(0), "zw": np.int8(0), "w": np.ones((2, 1, 1, 1), np.int8),
             "sy": np.float32(np.nan if clip_max is None else 0.1)}
    if clip_max is not None:
        inits["hi"] = clip_max
    sess = Session(_model(nodes, [_X8], inits))
    (y,) = sess.run(None, _FEED8)
    (ref,) = Session(_model(nodes, [_X8], inits), backends=["reference"]).run(None, _FEED8)
    assert y.dtype == np.uint8 and y.shape == (1, 2, 4, 4) and np.array_equal(y, ref)
