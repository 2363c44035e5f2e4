"""quantize_model and the demo on the shipped digits CNN: accuracy of the int8 model,
the same predictions in ONNX Runtime, targets' properties, clear errors."""
import io

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from qkernels.demo import as_input, run_demo, shipped_data  # noqa: E402
from qkernels.graph import Session  # noqa: E402
from qkernels.quant import CalibrationError, quantize_model  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    model, data = shipped_data()
    calib = as_input(data["calib_images"])
    return model, [{"input": calib[i:i + 50]} for i in range(0, len(calib), 50)], \
        as_input(data["test_images"]), data["test_labels"]


def _accuracy(model, x, y):
    return float((Session(model).run(None, {"input": x})[0].argmax(1) == y).mean())


@pytest.mark.parametrize("method", ["auto", "minmax", "entropy", "percentile", "mse", "moving_average"])
def test_int8_digits_within_half_a_point_of_float(digits, method):
    model, calib, x, y = digits
    q = quantize_model(model, calib, method=method, progress=False)
    assert _accuracy(q, x, y) >= _accuracy(model, x, y) - 0.005
    ops = [n.op_type for n in Session(q).graph.nodes]
    assert ops.count("QLinearConv") == 2 and "Conv" not in ops      # ran on the integer kernels


def test_quantized_model_gives_the_same_predictions_in_onnxruntime(digits):
    ort = pytest.importorskip("onnxruntime")
    model, calib, x, y = digits
    q = quantize_model(model, calib, progress=False)
    ours = Session(q).run(None, {"input": x})[0]
    so = ort.SessionOptions()
    so.add_session_config_entry("session.qdqisint8allowed", "1")   # ORT's exact s8 path
    theirs = ort.InferenceSession(q.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    np.testing.assert_array_equal(ours.argmax(1), theirs.argmax(1))
    step = float(numpy_helper.to_array(next(t for t in q.graph.initializer if t.name == "logits_scale")))
    assert np.abs(ours - theirs).max() <= step * 1.01                # within one output step


def test_dsp_target_has_power_of_two_scales_and_symmetric_int8(digits):
    model, calib, x, y = digits
    q = quantize_model(model, calib, target="dsp", progress=False)
    inits = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    scales = [v for k, v in inits.items() if k.endswith("_scale") and v.dtype == np.float32 and not k.startswith("b")]
    assert scales
    for s in scales:
        m, _ = np.frexp(np.atleast_1d(s).astype(np.float64))
        assert np.all(m == 0.5), s                                   # powers of two: shifts only
    zps = [v for k, v in inits.items() if k.endswith("_zero_point") and v.dtype == np.int8]
    assert all(np.all(z == 0) for z in zps)
    assert {p.key: p.value for p in q.metadata_props}["qkernels.requant"] == "fixedpoint"
    assert _accuracy(q, x, y) >= _accuracy(model, x, y) - 0.02
    # the runner requantizes such a model in fixed point (integer multiply and rounding
    # shift, ties away from zero) where the ONNX reference rounds a float half to even:
    # the two may differ by a tie, one output step
    from qkernels.graph.backends.cpu import _requant
    s = Session(q)
    assert _requant(s.graph) == "fixedpoint"
    got = s.run(None, {"input": x})[0]
    want = Session(q, backends=["reference"]).run(None, {"input": x})[0]
    step = float(numpy_helper.to_array(next(t for t in q.graph.initializer if t.name == "logits_scale")))
    assert np.abs(got - want).max() <= step * 1.01


def test_fp16_target(digits):
    model, _, x, y = digits
    q = quantize_model(model, target="fp16")
    # the interface stays float32 (a Cast at each boundary), the weights are float16
    assert q.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert q.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert q.graph.node[0].op_type == "Cast" and q.graph.node[-1].op_type == "Cast"
    assert all(t.data_type == TensorProto.FLOAT16 for t in q.graph.initializer if t.data_type in
               (TensorProto.FLOAT, TensorProto.FLOAT16))
    assert _accuracy(q, x, y) >= _accuracy(model, x, y) - 0.005


def test_calibration_in_every_form(digits, tmp_path):
    model, calib, x, _ = digits
    arr = np.concatenate([b["input"] for b in calib])
    np.save(tmp_path / "c.npy", arr)
    np.savez(tmp_path / "c.npz", input=arr)

    class Reader:   # ONNX Runtime's CalibrationDataReader interface
        def __init__(self):
            self.it = iter(calib)

        def get_next(self):
            return next(self.it, None)

    ref = quantize_model(model, calib, progress=False)
    for data in (str(tmp_path / "c.npy"), str(tmp_path / "c.npz"), tmp_path, {"input": arr}, Reader()):
        q = quantize_model(model, data, progress=False)
        assert [numpy_helper.to_array(t).tolist() for t in q.graph.initializer if t.name.endswith("_scale")] == \
            [numpy_helper.to_array(t).tolist() for t in ref.graph.initializer if t.name.endswith("_scale")]


def test_bad_calibration_data_gets_clear_errors(digits):
    model, calib, _, _ = digits
    with pytest.raises(CalibrationError, match="empty"):
        quantize_model(model, [], progress=False)
    with pytest.raises(CalibrationError, match="missing|unknown"):
        quantize_model(model, [{"image": calib[0]["input"]}], progress=False)
    with pytest.raises(CalibrationError, match="shape"):
        quantize_model(model, [{"input": np.zeros((2, 1, 9, 9), np.float32)}], progress=False)
    bad = calib[0]["input"].copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises((CalibrationError, ValueError), match="NaN"):
        quantize_model(model, [{"input": bad}], progress=False)
    with pytest.raises(CalibrationError, match="needs calibration"):
        quantize_model(model, None, progress=False)
    with pytest.raises(ValueError, match="target"):
        quantize_model(model, calib, target="gpu", progress=False)


def test_constant_tensors_quantize_without_division_by_zero():
    """A zero weight matrix and an all-zero input: zero ranges, no NaN/Inf anywhere."""
    w = numpy_helper.from_array(np.zeros((4, 3), np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "z",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])], [w])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    q = quantize_model(model, [{"x": np.zeros((2, 4), np.float32)}], progress=False)
    for t in q.graph.initializer:
        assert np.all(np.isfinite(numpy_helper.to_array(t).astype(np.float64)))
    np.testing.assert_array_equal(Session(q).run(None, {"x": np.ones((2, 4), np.float32)})[0], 0)


def test_demo_runs_and_reports(tmp_path):
    out = io.StringIO()
    res = run_demo(out=str(tmp_path / "q.onnx"), with_ort=False, progress=False, stream=out)
    text = out.getvalue()
    assert "qkernels int8" in text and "accuracy" in text
    assert res["accuracy_drop_points"] <= 0.5
    assert (tmp_path / "q.onnx").exists()


def test_cli_quantize_and_demo_report_errors_clearly(digits, tmp_path, capsys):
    from qkernels.__main__ import main
    model, calib, _, _ = digits
    np.savez(tmp_path / "calib.npz", input=np.concatenate([b["input"] for b in calib]))
    out = tmp_path / "q.onnx"
    assert main(["quantize", model, str(out), "--calib", str(tmp_path / "calib.npz"), "--quiet",
                 "--report", str(tmp_path / "r.json")]) == 0
    assert out.exists() and (tmp_path / "r.json").exists()
    assert main(["quantize", str(tmp_path / "missing.onnx"), str(out), "--calib", str(tmp_path / "calib.npz")]) == 1
    assert "cannot read model" in capsys.readouterr().err
    assert main(["quantize", model, str(tmp_path / "no" / "dir" / "q.onnx"), "--calib",
                 str(tmp_path / "calib.npz"), "--quiet"]) == 2   # a usage error, found before the work
    assert "cannot write" in capsys.readouterr().err
    assert main(["demo", "--method", "nope", "--quiet", "--no-ort", "--out", str(tmp_path / "d.onnx")]) == 1
    assert "unknown calibration method" in capsys.readouterr().err
