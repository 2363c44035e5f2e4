"""The quantization report (SQNR, cosine, clipping against float; table, JSON, plot) and
the passes: bias correction, cross-layer equalisation, the accuracy budget."""
import builtins
import math

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from qkernels.__main__ import main  # noqa: E402
from qkernels.demo import as_input, shipped_data  # noqa: E402
from qkernels.graph import Session  # noqa: E402
from qkernels.quant import (equalize, format_report, load_report, plot_report, quantize_model,  # noqa: E402
                            save_report)
from qkernels.quant.passes import range_spread  # noqa: E402


# ---------------------------------------------------------------- models and data

@pytest.fixture(scope="module")
def digits():
    model, data = shipped_data()
    calib = as_input(data["calib_images"])
    return model, [{"input": calib[i:i + 50]} for i in range(0, len(calib), 50)]


@pytest.fixture(scope="module")
def digits_report(digits):
    model, calib = digits
    return quantize_model(model, calib, method="minmax", progress=False, return_report=True)


def _model(nodes, inputs, outputs, inits, opset=13):
    g = helper.make_graph(nodes, "m", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(m)
    return m


def _vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _round_down_weights(rng, shape, out_axis=0):
    """Weights whose int8 grid (scale 1/127 per output channel: one weight of 1.0 each)
    rounds every other weight down by 0.4 of a step: weight quantization then biases
    the output of a layer with positive inputs."""
    k = rng.integers(-100, 100, size=shape).astype(np.float64)
    w = (k + 0.4) / 127.0
    w = np.moveaxis(w, out_axis, 0)
    w.reshape(w.shape[0], -1)[:, 0] = 1.0
    return np.moveaxis(w, 0, out_axis).astype(np.float32)


def _mean_output_error(q, f, x):
    yq = Session(q).run(None, {"x": x})[0]
    yf = Session(f).run(None, {"x": x})[0]
    axes = tuple(i for i in range(yq.ndim) if i != 1)
    return np.abs((yq - yf).mean(axis=axes))       # per output channel


def _depthwise_separable(rng, act="Relu"):
    """dw 3x3 (8 channels, ranges 0.01 .. 10) -> act -> pw 1x1 (8 -> 16) -> Relu -> dw 3x3 (16)."""
    c = 8
    dw = rng.standard_normal((c, 1, 3, 3)).astype(np.float32) * np.logspace(-2, 1, c).reshape(c, 1, 1, 1).astype(
        np.float32)
    inits = {"dw": dw, "dw_b": rng.standard_normal(c).astype(np.float32) * 0.1,
             "pw": rng.standard_normal((16, c, 1, 1)).astype(np.float32) * 0.3,
             "pw_b": rng.standard_normal(16).astype(np.float32) * 0.1,
             "dw2": rng.standard_normal((16, 1, 3, 3)).astype(np.float32),
             "dw2_b": np.zeros(16, np.float32)}
    nodes = [helper.make_node("Conv", ["x", "dw", "dw_b"], ["a"], name="dw", group=c, pads=[1, 1, 1, 1])]
    if act == "Relu":
        nodes.append(helper.make_node("Relu", ["a"], ["a_act"], name="act"))
    else:
        inits["lo"], inits["hi"] = np.array(0, np.float32), np.array(6, np.float32)
        nodes.append(helper.make_node("Clip", ["a", "lo", "hi"], ["a_act"], name="act"))
    nodes += [helper.make_node("Conv", ["a_act", "pw", "pw_b"], ["b"], name="pw"),
              helper.make_node("Relu", ["b"], ["b_act"], name="relu_b"),
              helper.make_node("Conv", ["b_act", "dw2", "dw2_b"], ["y"], name="dw2", group=16, pads=[1, 1, 1, 1])]
    return _model(nodes, [_vi("x", [None, c, 6, 6])], [_vi("y", [None, 16, 6, 6])], inits)


def _weights(model):
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _node_weight(model, node):
    n = next(n for n in model.graph.node if n.name == node)
    return _weights(model)[n.input[1]]


# ---------------------------------------------------------------- the report

def test_report_has_every_field_per_tensor_weight_layer_and_output(digits_report):
    _, r = digits_report
    names = [t["tensor"] for t in r["tensors"]]
    assert names == ["input", "r1", "r2", "f", "logits"]
    for t in r["tensors"]:
        for key in ("tensor", "scale", "zero_point", "range", "min", "max", "producer", "consumers",
                    "clip_fraction", "sqnr_db", "cosine", "own_sqnr_db", "mean_error"):
            assert key in t, key
        assert t["scale"] > 0 and -128 <= t["zero_point"] <= 127
        assert 20 < t["sqnr_db"] and 0.99 < t["cosine"] <= 1 + 1e-12
        assert t["sqnr_db"] <= t["own_sqnr_db"] + 0.5      # end to end includes its own rounding, and more
    assert {t["tensor"]: t["producer"] for t in r["tensors"]}["r1"] == "relu1"
    assert [w["node"] for w in r["weights"]] == ["conv1", "conv2", "fc"]
    assert all(w["sqnr_db"] > 30 and w["axis"] is not None for w in r["weights"])
    # the quantized layers, and every other node writing a quantized tensor (Flatten writes f)
    assert [(la["node"], la["quantized"]) for la in r["layers"]] == \
        [("conv1", True), ("conv2", True), ("flatten", False), ("fc", True)]
    flatten = r["layers"][2]
    assert flatten["input"] == "r2" and flatten["input_sqnr_db"] == r["tensors"][2]["sqnr_db"]
    assert all(la["sqnr_drop_db"] is None or math.isfinite(la["sqnr_drop_db"]) for la in r["layers"])
    # each tensor's cost alone: below the exact output, above the all-quantized output
    for t in r["tensors"]:
        assert r["outputs"][0]["sqnr_db"] - 0.5 <= t["alone_sqnr_db"], t
    conv2 = r["layers"][1]
    assert conv2["input"] == "r1" and conv2["output"] == "r2"
    assert conv2["sqnr_drop_db"] == pytest.approx(conv2["input_sqnr_db"] - conv2["output_sqnr_db"])
    (out,) = r["outputs"]
    assert out["tensor"] == "logits" and out["sqnr_db"] > 35 and out["cosine"] > 0.999
    assert r["float_nodes"] == [] and r["accuracy_budget"] is None
    assert r["batches"] == 4


def test_minmax_clips_nothing_and_entropy_reports_what_it_clips(digits, digits_report):
    _, r = digits_report
    assert all(t["clip_fraction"] == 0.0 for t in r["tensors"])
    model, calib = digits
    _, e = quantize_model(model, calib, method="entropy", progress=False, return_report=True)
    clipped = {t["tensor"]: t["clip_fraction"] for t in e["tensors"]}
    # entropy trims the sparse tail, never more than max_clip (1e-4) of a tensor's values
    assert 0 < clipped["r1"] <= 1e-4 and all(c <= 1e-4 for c in clipped.values())
    _, free = quantize_model(model, calib, method="entropy", max_clip=1.0, progress=False, return_report=True)
    unbounded = {t["tensor"]: t["clip_fraction"] for t in free["tensors"]}
    assert unbounded["r1"] > clipped["r1"]          # the unbounded KL search cuts deeper


def test_8_bit_per_channel_has_higher_sqnr_than_per_tensor_reduced_range(digits, digits_report):
    model, calib = digits
    _, good = digits_report
    _, bad = quantize_model(model, calib, per_channel=False, reduce_range=True, progress=False, return_report=True)
    assert good["outputs"][0]["sqnr_db"] > bad["outputs"][0]["sqnr_db"] + 3
    for g, b in zip(good["weights"], bad["weights"]):
        assert g["sqnr_db"] > b["sqnr_db"]
    assert bad["settings"]["reduce_range"] and not bad["settings"]["per_channel"]


def test_report_table_names_every_tensor_and_the_worst_layer(digits_report):
    _, r = digits_report
    text = format_report(r)
    for name in ("input", "r1", "r2", "logits", "conv1", "conv2", "fc", "SQNR", "cosine", "clip %"):
        assert name in text
    assert text.count("<- costs the outputs most") == 1
    assert "kept in float: none" in text


def test_report_json_round_trip(digits_report, tmp_path):
    _, r = digits_report
    r = dict(r, outputs=r["outputs"] + [{"tensor": "exact", "sqnr_db": math.inf, "cosine": 1.0,
                                         "max_abs_error": 0.0, "mean_error": 0.0}])
    save_report(r, tmp_path / "r.json")
    text = (tmp_path / "r.json").read_text()
    assert "Infinity" not in text and "NaN" not in text          # strict JSON
    assert load_report(tmp_path / "r.json") == r


def test_plot_without_matplotlib_says_how_to_install(digits_report, tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(ImportError, match=r"pip install 'qkernels\[plot\]'"):
        plot_report(digits_report[1], tmp_path / "r.png")
    assert not (tmp_path / "r.png").exists()


def test_plot_draws_sqnr_per_tensor(digits_report, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed: pip install 'qkernels[plot]'")
    plot_report(digits_report[1], tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_prints_a_summary_and_saves_the_report(digits, tmp_path, capsys):
    model, calib = digits
    np.savez(tmp_path / "c.npz", input=np.concatenate([b["input"] for b in calib]))
    args = ["quantize", model, str(tmp_path / "q.onnx"), "--calib", str(tmp_path / "c.npz"), "--quiet",
            "--bias-correction", "--report", str(tmp_path / "r.json")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "SQNR" in out and "bias correction: 3 layer(s) corrected" in out
    assert main(["report", str(tmp_path / "r.json")]) == 0 and "weight" in capsys.readouterr().out
    r = load_report(tmp_path / "r.json")
    assert r["settings"]["bias_correction"] and len(r["tensors"]) == 5
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert main(args + ["--plot", str(tmp_path / "r.png")]) == 2
        assert "pip install 'qkernels[plot]'" in capsys.readouterr().err
    else:
        assert main(args + ["--plot", str(tmp_path / "r.png")]) == 0
        assert (tmp_path / "r.png").exists()


def test_report_reads_one_shot_calibration_data_twice(digits):
    model, calib = digits
    _, r = quantize_model(model, (b for b in calib), progress=False, return_report=True, bias_correction=True)
    assert r["batches"] == 4 and r["outputs"][0]["sqnr_db"] > 35


# ---------------------------------------------------------------- bias correction

def test_bias_correction_removes_the_mean_output_error_of_a_gemm():
    rng = np.random.default_rng(0)
    w = _round_down_weights(rng, (8, 256))
    f = _model([helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="fc", transB=1)],
               [_vi("x", [None, 256])], [_vi("y", [None, 8])], {"w": w, "b": np.zeros(8, np.float32)})
    calib = [{"x": rng.random((64, 256), dtype=np.float32)} for _ in range(4)]
    x = rng.random((512, 256), dtype=np.float32)
    before = _mean_output_error(quantize_model(f, calib, progress=False), f, x)
    q, r = quantize_model(f, calib, progress=False, bias_correction=True, return_report=True)
    after = _mean_output_error(q, f, x)
    assert before.mean() > 0.3                          # 256 weights * 0.4/127 * E[x] = 0.5 x 0.4
    assert after.mean() < before.mean() / 5
    (entry,) = r["bias_correction"]
    assert entry["node"] == "fc" and entry["mean_shift_max"] == pytest.approx(0.4, abs=0.05)


def test_bias_correction_gives_a_padded_conv_without_bias_a_bias():
    rng = np.random.default_rng(1)
    w = _round_down_weights(rng, (6, 16, 3, 3))
    f = _model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=[1, 1, 1, 1])],
               [_vi("x", [None, 16, 5, 5])], [_vi("y", [None, 6, 5, 5])], {"w": w})
    calib = [{"x": rng.random((16, 16, 5, 5), dtype=np.float32)} for _ in range(4)]
    x = rng.random((128, 16, 5, 5), dtype=np.float32)
    before = _mean_output_error(quantize_model(f, calib, progress=False), f, x)
    q = quantize_model(f, calib, progress=False, bias_correction=True)
    after = _mean_output_error(q, f, x)
    assert len(next(n for n in q.graph.node if n.op_type == "Conv").input) == 3       # it has a bias now
    assert "QLinearConv" in [n.op_type for n in Session(q).graph.nodes]              # still integer
    assert before.mean() > 0.1 and after.mean() < before.mean() / 5


def test_bias_correction_corrects_the_add_after_a_matmul():
    rng = np.random.default_rng(2)
    w = _round_down_weights(rng, (256, 8), out_axis=1)
    f = _model([helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"),
                helper.make_node("Add", ["m", "b"], ["y"], name="add")],
               [_vi("x", [None, 256])], [_vi("y", [None, 8])], {"w": w, "b": np.zeros(8, np.float32)})
    calib = [{"x": rng.random((64, 256), dtype=np.float32)} for _ in range(4)]
    x = rng.random((512, 256), dtype=np.float32)
    before = _mean_output_error(quantize_model(f, calib, progress=False), f, x)
    q, r = quantize_model(f, calib, progress=False, bias_correction=True, return_report=True)
    assert _mean_output_error(q, f, x).mean() < before.mean() / 5
    assert r["bias_correction"][0]["add"] == "add"


# ---------------------------------------------------------------- cross-layer equalisation

def test_equalization_keeps_the_float_function_and_evens_the_channel_ranges():
    rng = np.random.default_rng(3)
    f = _depthwise_separable(rng)
    e, info = equalize(f)
    x = rng.standard_normal((4, 8, 6, 6)).astype(np.float32)
    yf, ye = (Session(m).run(None, {"x": x})[0] for m in (f, e))
    np.testing.assert_allclose(ye, yf, rtol=1e-4, atol=1e-4 * np.abs(yf).max())
    assert [p["nodes"] for p in info["pairs"]] == [["dw", "act", "pw"], ["pw", "relu_b", "dw2"]]
    before, after = range_spread(_node_weight(f, "dw")), range_spread(_node_weight(e, "dw"))
    assert before > 500 and after < before / 10
    assert info["pairs"][0]["spread_after"] == pytest.approx(after)
    assert [t.name for t in f.graph.initializer] == ["dw", "dw_b", "pw", "pw_b", "dw2", "dw2_b"]   # input untouched


def test_equalization_helps_per_tensor_quantization():
    rng = np.random.default_rng(4)
    f = _depthwise_separable(rng)
    calib = [{"x": rng.standard_normal((16, 8, 6, 6)).astype(np.float32)} for _ in range(3)]
    _, plain = quantize_model(f, calib, per_channel=False, progress=False, return_report=True)
    _, eq = quantize_model(f, calib, per_channel=False, equalize=True, progress=False, return_report=True)
    assert eq["outputs"][0]["sqnr_db"] > plain["outputs"][0]["sqnr_db"] + 3
    assert eq["equalization"]["pairs"] and "equalized dw -> act -> pw" in format_report(eq)


def test_equalization_does_not_cross_clip():
    rng = np.random.default_rng(5)
    f = _depthwise_separable(rng, act="Clip")
    e, info = equalize(f)
    assert [p["nodes"] for p in info["pairs"]] == [["pw", "relu_b", "dw2"]]
    (skip,) = info["skipped"]
    assert skip["nodes"] == ["dw", "act", "pw"] and "Clip" in skip["reason"]
    np.testing.assert_array_equal(_node_weight(e, "dw"), _node_weight(f, "dw"))


# ---------------------------------------------------------------- the accuracy budget

def _two_layers():
    rng = np.random.default_rng(6)
    f = _model([helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1", transB=1),
                helper.make_node("Relu", ["h"], ["h_act"], name="relu"),
                helper.make_node("Gemm", ["h_act", "w2", "b2"], ["y"], name="fc2", transB=1)],
               [_vi("x", [None, 16])], [_vi("y", [None, 4])],
               {"w1": rng.standard_normal((32, 16)).astype(np.float32), "b1": np.zeros(32, np.float32),
                "w2": rng.standard_normal((4, 32)).astype(np.float32), "b2": np.zeros(4, np.float32)})
    calib = [{"x": rng.standard_normal((32, 16)).astype(np.float32)} for _ in range(2)]
    return f, calib


def _quantized_layers(model):
    dq = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    return {n.name for n in model.graph.node if n.op_type == "Gemm" and n.input[1] in dq}


def test_accuracy_budget_keeps_the_layer_that_costs_accuracy_in_float():
    f, calib = _two_layers()
    calls = []

    def evaluate(model):        # the score falls unless fc2 stays in float
        calls.append(_quantized_layers(model))
        return 0.5 if "fc2" in _quantized_layers(model) else 1.0

    q, r = quantize_model(f, calib, progress=False, evaluate=evaluate, max_drop=0.01, return_report=True)
    assert _quantized_layers(q) == {"fc1"}
    ab = r["accuracy_budget"]
    assert ab["kept_float"] == ["fc2"] and ab["met"] and ab["final_score"] == 1.0
    assert ab["float_score"] == 1.0 and ab["quantized_score"] == 0.5
    assert ab["sensitivity"] == {"fc1": 0.0, "fc2": 0.5}
    assert r["float_nodes"] == ["fc2"] and [la["node"] for la in r["layers"]] == ["fc1"]
    # float, all quantized, each layer alone (2), after keeping fc2 in float
    assert calls == [set(), {"fc1", "fc2"}, {"fc1"}, {"fc2"}, {"fc1"}] and ab["evaluations"] == 4
    assert "kept in float: fc2" in format_report(r)


def test_accuracy_budget_stops_at_once_when_the_quantized_model_is_good_enough(digits):
    model, calib = digits
    _, data = shipped_data()
    x, y = as_input(data["test_images"]), data["test_labels"]
    calls = []

    def accuracy(m):
        calls.append(1)
        return float((Session(m).run(None, {"input": x})[0].argmax(1) == y).mean())

    q, r = quantize_model(model, calib, progress=False, evaluate=accuracy, max_drop=0.01, return_report=True)
    assert len(calls) == 2 and r["accuracy_budget"]["kept_float"] == [] and r["accuracy_budget"]["met"]
    assert accuracy(q) >= r["accuracy_budget"]["float_score"] - 0.01


def test_accuracy_budget_that_cannot_be_met_keeps_everything_in_float_and_warns():
    f, calib = _two_layers()

    def evaluate(model):        # only the very model passed in scores: nothing else can
        return 1.0 if model is f else 0.0

    with pytest.warns(RuntimeWarning, match="not met"):
        q, r = quantize_model(f, calib, progress=False, evaluate=evaluate, max_drop=0.0, return_report=True)
    ab = r["accuracy_budget"]
    assert ab["kept_float"] == ["fc1", "fc2"] and not ab["met"] and ab["final_score"] == 0.0
    assert _quantized_layers(q) == set() and "NOT met" in format_report(r)


def test_per_tensor_gemm_without_transposed_weights_quantizes_its_bias():
    """Gemm with B (K, N), transB=0, per-tensor weights: the int32 bias needs N scales, not K."""
    rng = np.random.default_rng(7)
    f = _model([helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="fc")], [_vi("x", [None, 16])],
               [_vi("y", [None, 4])], {"w": rng.standard_normal((16, 4)).astype(np.float32),
                                       "b": np.ones(4, np.float32)})
    q, r = quantize_model(f, [{"x": rng.standard_normal((8, 16)).astype(np.float32)}], per_channel=False,
                          progress=False, return_report=True)
    assert "QGemm" in [n.op_type for n in Session(q).graph.nodes] and r["outputs"][0]["sqnr_db"] > 30
