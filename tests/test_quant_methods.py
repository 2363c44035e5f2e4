"""Calibration that does not collapse, and models as exporters leave them (issue 17).

* The entropy search's three corrections, each on the activation shape that broke it
  (measured on PaddleOCR's models): a spike at 0, a spike away from 0 with an
  informative tail, one-sided data far from 0.
* ``method="auto"``: its candidates are exactly the single methods' ranges, its choice
  is in the report, and it is never far below the best single method.
* Every method against ONNX Runtime's same-named calibrator on the same model and data
  (the shipped digits model): never more than 3 dB below.
* Pre-processing: weights held in ``Constant`` nodes of an opset-11 model with a
  BatchNormalization are quantized exactly as the same weights stored as initializers.
"""
import contextlib
import io
import math

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from qkernels.demo import as_input, shipped_data  # noqa: E402
from qkernels.graph import Session  # noqa: E402
from qkernels.quant import make_observer, quant_params, quantize_model  # noqa: E402
from qkernels.quant.observers import AutoObserver  # noqa: E402
from qkernels.quant.params import fake_quantize  # noqa: E402


def _clipped(x, lo, hi):
    return float(np.mean((x < min(lo, 0.0)) | (x > max(hi, 0.0))))


def _own_sqnr(x, lo, hi):
    scale, zp = quant_params(lo, hi, np.int8)
    e = fake_quantize(x, scale, zp, np.int8).astype(np.float64) - x
    return 10 * math.log10(float(np.sum(x.astype(np.float64) ** 2)) / float(np.sum(e * e)))


# ---------------------------------------------------------------- entropy on real shapes

def test_entropy_keeps_the_tail_of_a_relu_output_with_many_zeros():
    rng = np.random.default_rng(0)
    x = np.maximum(rng.standard_normal(400_000), 0).astype(np.float32)
    x[:300_000] = 0.0                            # 3/4 zeros (ReLU and zero padding) -> a spike at 0
    lo, hi = make_observer("entropy").update(x).range()
    assert _clipped(x, lo, hi) <= 1e-4
    assert hi > 0.7 * x.max()


def test_entropy_keeps_the_informative_tail_beside_a_spike_away_from_zero():
    # the recogniser's Add: 90 % of the values within 0.001 of -0.044, the rest up to 0.41
    rng = np.random.default_rng(1)
    spike = -0.0444 + 0.001 * rng.random(360_000)
    tail = rng.uniform(-0.044, 0.41, 40_000)
    x = np.concatenate([spike, tail]).astype(np.float32)
    lo, hi = make_observer("entropy").update(x).range()
    assert _clipped(x, lo, hi) <= 1e-4
    assert _own_sqnr(x, lo, hi) > 30                           # the plain KL search: 6 dB
    unbounded = make_observer("entropy", max_clip=1.0).update(x).range()
    assert _clipped(x, *unbounded) > 1e-3                      # what the bound prevents


def test_entropy_range_of_one_sided_data_far_from_zero_does_not_collapse():
    # a Conv output of the classifier: every value in [-1.74, -0.735]
    x = np.random.default_rng(2).uniform(-1.74, -0.735, 100_000).astype(np.float32)
    lo, hi = make_observer("entropy").update(x).range()
    assert lo < -1.7 and _clipped(x, lo, hi) <= 1e-4


# ---------------------------------------------------------------- auto

def test_auto_candidates_are_the_single_methods_ranges():
    rng = np.random.default_rng(3)
    batches = [rng.laplace(size=5000).astype(np.float32) * s for s in (1.0, 3.0, 0.5)]
    auto = AutoObserver()
    for b in batches:
        auto.update(b)
    for symmetric in (False, True):
        cands = auto.candidates(symmetric)
        assert list(cands) == ["minmax", "percentile", "entropy", "mse"]
        for method, rng_ in cands.items():
            single = make_observer(method)
            for b in batches:
                single.update(b)
            assert rng_ == single.range(symmetric), method


@pytest.fixture(scope="module")
def digits():
    model, data = shipped_data()
    calib = as_input(data["calib_images"])
    held = as_input(data["test_images"])[:200]
    return model, calib, held


def _sqnr(model_a, model_b, x) -> float:
    a = Session(model_a).run(None, {"input": x})[0].astype(np.float64)
    b = Session(model_b).run(None, {"input": x})[0].astype(np.float64)
    return 10 * math.log10(float(np.sum(a * a)) / float(np.sum((a - b) ** 2)))


def test_auto_reports_its_choice_and_is_near_the_best_single_method(digits):
    model, calib, held = digits
    scores = {m: _sqnr(model, quantize_model(model, {"input": calib}, method=m, progress=False), held)
              for m in ("minmax", "percentile", "entropy", "mse")}
    q, report = quantize_model(model, {"input": calib}, method="auto", progress=False, return_report=True)
    assert {t["method"] for t in report["tensors"]} <= {"minmax", "percentile", "entropy", "mse"}
    assert all("method" in t for t in report["tensors"])
    assert _sqnr(model, q, held) > max(scores.values()) - 1.0, scores


# ---------------------------------------------------------------- against ONNX Runtime

ORT_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}


@pytest.mark.parametrize("method", list(ORT_METHODS))
def test_every_method_within_3_db_of_onnxruntimes_same_named_calibrator(digits, tmp_path, method):
    quantization = pytest.importorskip("onnxruntime.quantization",
                                       reason="onnxruntime is not installed: no peer to compare with")
    model, calib, held = digits
    data = iter([{"input": calib[i:i + 50]} for i in range(0, len(calib), 50)])

    class Reader(quantization.CalibrationDataReader):
        def get_next(self):
            return next(data, None)

    src, out = tmp_path / "f.onnx", tmp_path / "q.onnx"
    onnx.save(onnx.load(model), src)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.chdir(tmp_path):
        quantization.quantize_static(str(src), str(out), Reader(), quant_format=quantization.QuantFormat.QDQ,
                                     per_channel=True, activation_type=quantization.QuantType.QInt8,
                                     weight_type=quantization.QuantType.QInt8,
                                     calibrate_method=getattr(quantization.CalibrationMethod, ORT_METHODS[method]))
    ort = _sqnr(str(src), str(out), held)
    ours = _sqnr(str(src), quantize_model(str(src), {"input": calib}, method=method, progress=False), held)
    assert ours > ort - 3.0, (ours, ort)


# ---------------------------------------------------------------- weights in Constant nodes

def _conv_bn_model(constants: bool, opset: int):
    rng = np.random.default_rng(4)
    w = (rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32)
    bn = [np.abs(rng.standard_normal(8)).astype(np.float32) + 0.5, rng.standard_normal(8).astype(np.float32),
          rng.standard_normal(8).astype(np.float32) * 0.1, np.abs(rng.standard_normal(8)).astype(np.float32) + 0.5]
    names = ["w", "gamma", "beta", "mean", "var"]
    values = dict(zip(names, [w, *bn]))
    nodes = [helper.make_node("Constant", [], [k], name=f"const_{k}", value=numpy_helper.from_array(v, k))
             for k, v in values.items()] if constants else []
    nodes += [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
              helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["b"], name="bn"),
              helper.make_node("Relu", ["b"], ["y"], name="relu")]
    inits = [] if constants else [numpy_helper.from_array(v, k) for k, v in values.items()]
    g = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [-1, 8, 8, 8])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def test_constant_node_weights_are_quantized_as_weights_after_folding():
    x = np.random.default_rng(5).standard_normal((16, 3, 8, 8)).astype(np.float32)
    q_init, r_init = quantize_model(_conv_bn_model(False, 13), {"x": x}, progress=False, return_report=True)
    q_const, r_const = quantize_model(_conv_bn_model(True, 11), {"x": x}, progress=False, return_report=True)
    assert [w["node"] for w in r_const["weights"]] == ["conv"] and r_const["weights"][0]["axis"] == 0
    assert "BatchNormalization" not in {n.op_type for n in q_const.graph.node}
    steps = " / ".join(r_const["preprocessing"])
    assert "opset 11" in steps and "constant folding: 5" in steps and "batch-norm folding: 1" in steps
    a = Session(q_init).run(None, {"x": x})[0]
    b = Session(q_const).run(None, {"x": x})[0]
    np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- the report's culprit

def _offset_model():
    """x -> MatMul "first" -> Add "offset" (+1000 on channel 7) -> MatMul "last" (which
    ignores channel 7), and inputs exact on their int8 grid."""
    rng = np.random.default_rng(6)
    w1 = rng.standard_normal((4, 8)).astype(np.float32)
    c = np.zeros(8, np.float32)
    c[7] = 1000.0
    w2 = rng.standard_normal((8, 2)).astype(np.float32)
    w2[7] = 0.0
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="first"),
             helper.make_node("Add", ["h", "c"], ["t"], name="offset"),
             helper.make_node("MatMul", ["t", "w2"], ["y"], name="last")]
    g = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
                          [numpy_helper.from_array(v, k) for k, v in (("w1", w1), ("c", c), ("w2", w2))])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    x = (rng.integers(-8, 8, (64, 4)) / 8).astype(np.float32)     # exact on the int8 grid of its range
    return model, x


def test_report_names_the_add_that_costs_the_outputs_not_the_first_layer():
    """An Add whose output range is set by one huge channel the next layer ignores: its
    per-tensor grid wipes out the channels that matter. The first layer's drop (an
    exact input to a rounded output) is larger, but the Add costs the outputs most."""
    from qkernels.quant import format_report
    from qkernels.quant.report import culprits
    model, x = _offset_model()
    _, r = quantize_model(model, {"x": x}, progress=False, return_report=True)
    assert culprits(r)[0]["tensor"] == "t" and culprits(r)[0]["producer"] == "offset"
    rows = {la["node"]: la for la in r["layers"]}
    assert rows["offset"]["quantized"] is False and rows["offset"]["op_type"] == "Add"
    assert rows["first"]["sqnr_drop_db"] is None          # exact input: no drop to name, no inf
    text = format_report(r)
    marked = [line for line in text.splitlines() if "<- costs the outputs most" in line]
    assert len(marked) == 1 and marked[0].startswith("offset")
    assert " inf" not in text


# ---------------------------------------------------------------- float layers without code

def test_keep_float_keeps_the_layer_that_costs_most():
    model, x = _offset_model()
    q0 = quantize_model(model, {"x": x}, progress=False)
    q1, r = quantize_model(model, {"x": x}, progress=False, keep_float=1, return_report=True)
    assert r["float_nodes"] == ["last"]
    assert r["accuracy_budget"]["kept_float_by_rank"] == ["last"]
    from qkernels.quant import format_report
    assert "keep float 1: the layers whose quantization alone costs the outputs most: last (" in format_report(r)
    feeds = {"x": x}
    ref = Session(model).run(None, feeds)[0].astype(np.float64)

    def sqnr(q):
        e = Session(q).run(None, feeds)[0] - ref
        return 10 * math.log10(float(np.sum(ref * ref)) / float(np.sum(e * e)))
    assert sqnr(q1) > sqnr(q0) + 10


def test_min_sqnr_db_keeps_layers_in_float_until_the_outputs_reach_it():
    model, x = _offset_model()
    _, plain = quantize_model(model, {"x": x}, progress=False, return_report=True)
    want = plain["outputs"][0]["sqnr_db"] + 15
    _, r = quantize_model(model, {"x": x}, progress=False, min_sqnr_db=want, return_report=True)
    ab = r["accuracy_budget"]
    assert ab["met"] and ab["final_score"] >= want and ab["min_sqnr_db"] == want
    assert ab["metric"].startswith("output SQNR") and ab["kept_float"][0] == "last"
    assert r["outputs"][0]["sqnr_db"] >= want - 1.0          # on all the calibration data too
    from qkernels.quant import format_report
    assert f"(at least {want:g} dB: met); kept in float: last" in format_report(r)
    with pytest.raises(ValueError, match="not both"):
        quantize_model(model, {"x": x}, progress=False, min_sqnr_db=20, evaluate=lambda m: 1.0)
    for bad in ({"keep_float": -1}, {"keep_float": 1.5}, {"min_sqnr_db": math.nan}):
        with pytest.raises(ValueError):
            quantize_model(model, {"x": x}, progress=False, **bad)
