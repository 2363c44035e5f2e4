"""quantize_model on a BERT-class encoder (bench.encoder: Gather embeddings, LayerNorm,
Softmax, MatMul of two activations, int64 inputs and Shape arithmetic): dynamic int8 in
ONNX Runtime's form, static int8 with the outlier layers kept dynamic within a cosine
budget, SmoothQuant migration, and the fp16 target. ONNX Runtime is the oracle that
runs every output; qkernels' runner must agree with it."""
import warnings

import numpy as np
import pytest
from onnx import TensorProto, numpy_helper

from qkernels.bench.encoder import bert_encoder, cosine, encoder_inputs
from qkernels.graph import Session
from qkernels.quant import quantize_model
from qkernels.quant.smooth import smooth_quant

ort = pytest.importorskip("onnxruntime")

HIDDEN = 64


def _run_ort(model, feeds):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def _run_ours(model, feeds):
    return Session(model.SerializeToString()).run(None, feeds)[0]


def _token_cosine(a, b):
    """Mean over tokens of the cosine of hidden states."""
    return float(cosine(a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])).mean())


def _calib(batches=4, tokens=16):
    return [encoder_inputs(4, tokens, 1000, seed=s) for s in range(batches)]


@pytest.fixture(scope="module")
def encoder():
    return bert_encoder(layers=2, hidden=HIDDEN)


@pytest.fixture(scope="module")
def deep_encoder():
    """4 layers: enough depth for plain static int8 to fall below cosine 0.99."""
    return bert_encoder(layers=4, hidden=HIDDEN, seed=0)


@pytest.fixture(scope="module")
def held_out():
    return encoder_inputs(4, 16, 1000, seed=99, padded=3)


# ---------------------------------------------------------------- dynamic

def _init(model, name):
    return next(numpy_helper.to_array(t) for t in model.graph.initializer if t.name == name)


@pytest.mark.parametrize("per_channel", [True, False])
def test_dynamic_is_ort_quantize_dynamic(encoder, held_out, tmp_path, per_channel):
    """Node for node and weight for weight what onnxruntime.quantization.quantize_dynamic
    writes for the MatMuls (the pattern the runner's fused rewrite expects)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    onnx.save(encoder, tmp_path / "f.onnx")
    quantize_dynamic(tmp_path / "f.onnx", tmp_path / "r.onnx", weight_type=QuantType.QInt8, per_channel=per_channel,
                     op_types_to_quantize=["MatMul"])
    ref = onnx.load(tmp_path / "r.onnx")
    ours = quantize_model(encoder, mode="dynamic", per_channel=per_channel)
    assert sorted(n.op_type for n in ours.graph.node) == sorted(n.op_type for n in ref.graph.node)
    ref_inits = {t.name: numpy_helper.to_array(t) for t in ref.graph.initializer}
    our_inits = {t.name: numpy_helper.to_array(t) for t in ours.graph.initializer}
    quantized = [k for k in ref_inits if k.endswith(("_quantized", "_scale", "_zero_point"))]
    assert len(quantized) == 3 * 12
    for k in quantized:
        assert our_inits[k].dtype == ref_inits[k].dtype and our_inits[k].shape == ref_inits[k].shape, k
        np.testing.assert_array_equal(our_inits[k], ref_inits[k], err_msg=k)
    # every MatMulInteger: a DynamicQuantizeLinear before, Cast and Mul after
    producer = {o: n for n in ours.graph.node for o in n.output}
    readers = {i: n for n in ours.graph.node for i in n.input}
    for n in ours.graph.node:
        if n.op_type == "MatMulInteger":
            assert producer[n.input[0]].op_type == "DynamicQuantizeLinear"
            cast = readers[n.output[0]]
            assert cast.op_type == "Cast" and readers[cast.output[0]].op_type == "Mul"
    np.testing.assert_allclose(_run_ort(ours, held_out), _run_ort(ref, held_out), atol=1e-4)


@pytest.mark.parametrize("per_channel", [True, False])
def test_dynamic_weights_exact(encoder, per_channel):
    """Symmetric int8 weights, scale max|w| / 127 per output column (or per tensor)."""
    q = quantize_model(encoder, mode="dynamic", per_channel=per_channel)
    w = _init(encoder, "/W_28")                     # the first query weight (K, N)
    amax = np.abs(w).max(axis=0) if per_channel else np.abs(w).max()
    scale = (amax / 127).astype(np.float32)
    np.testing.assert_array_equal(_init(q, "/W_28_scale"), scale)
    np.testing.assert_array_equal(_init(q, "/W_28_quantized"), np.clip(np.rint(w / scale), -127, 127).astype(np.int8))
    assert not _init(q, "/W_28_zero_point").any()
    assert _init(q, "/W_28_zero_point").shape == ((HIDDEN,) if per_channel else ())


def test_dynamic_accuracy_and_runner(encoder, held_out):
    q, report = quantize_model(encoder, _calib(), mode="dynamic", return_report=True, progress=False)
    f = _run_ort(encoder, held_out)
    got_ort, got_ours = _run_ort(q, held_out), _run_ours(q, held_out)
    assert _token_cosine(f, got_ort) >= 0.99
    np.testing.assert_allclose(got_ours, got_ort, atol=2e-4)
    # report: every constant-weight MatMul with its weight SQNR (numpy recomputed), outputs vs float
    assert len(report["layers"]) == 12 and report["mode"] == "dynamic"
    row = next(r for r in report["layers"] if r["weight"] == "/W_28")
    w = _init(encoder, "/W_28").astype(np.float64)
    s = np.abs(w).max(0) / 127
    e = np.clip(np.rint(w / s), -127, 127) * s - w
    assert row["weight_sqnr_db"] == pytest.approx(10 * np.log10((w * w).sum() / (e * e).sum()), abs=0.05)
    (out,) = report["outputs"]
    assert out["tensor"] == "last_hidden_state" and 0.99 <= out["cosine"] <= 1.0
    assert quantize_model(encoder, mode="dynamic", return_report=True)[1]["outputs"] == []


# ---------------------------------------------------------------- static

def test_static_outlier_layers_meet_budget(deep_encoder, held_out):
    calib = _calib()
    # attention's MatMuls in int8 too (int8_attention="auto" keeps them float on transformers)
    plain = quantize_model(deep_encoder, calib, min_cosine=None, progress=False, int8_attention=True)
    handled, report = quantize_model(deep_encoder, calib, min_cosine=0.99, progress=False, return_report=True,
                                     measure=False, int8_attention=True)
    budget = report["accuracy_budget"]
    assert budget["met"] and budget["final_score"] >= 0.99 > budget["quantized_score"]
    # what left static int8 went dynamic (constant weights) or float (two activations)
    assert budget["kept_float"] and set(report["dynamic_nodes"]) <= set(budget["kept_float"])
    dyn_ops = [n for n in handled.graph.node if n.op_type == "MatMulInteger"]
    assert len(dyn_ops) == len(report["dynamic_nodes"]) > 0
    # on the calibration data the budget holds; on held-out data the gain is real
    f_cal = [_run_ort(deep_encoder, b) for b in calib]
    assert np.mean([_token_cosine(f, _run_ort(handled, b)) for f, b in zip(f_cal, calib)]) >= 0.99
    f = _run_ort(deep_encoder, held_out)
    c_plain, c_handled = _token_cosine(f, _run_ort(plain, held_out)), _token_cosine(f, _run_ort(handled, held_out))
    assert c_plain < 0.99 <= c_handled
    # ours and ORT on the same quantized model: int8 roundings (and per-row scales) flip on
    # the last bit of a float input, and the flips grow through the layers (the AVX-512 GELU,
    # within 1 ulp of float64 but not ORT's bits, moves tokens by up to ~1 where the other
    # builds stay within 0.02): compared by what the quantization keeps, not elementwise
    ours, theirs = _run_ours(handled, held_out), _run_ort(handled, held_out)
    assert _token_cosine(theirs, ours) >= 0.995
    assert abs(_token_cosine(f, ours) - c_handled) <= 2e-3


def _attention_matmuls(model, float_model):
    inits = {t.name for t in float_model.graph.initializer}
    names = {n.name for n in float_model.graph.node if n.op_type == "MatMul" and not any(i in inits for i in n.input)}
    return [n for n in model.graph.node if n.name in names]


@pytest.mark.parametrize("int8_attention", ["auto", True])
def test_int8_attention(encoder, int8_attention):
    """On a transformer, "auto" leaves the MatMuls of two activations (scores, values)
    float: no DequantizeLinear feeds them; True quantizes their inputs."""
    q = quantize_model(encoder, _calib(2), min_cosine=None, progress=False, int8_attention=int8_attention)
    producers = {o: n.op_type for n in q.graph.node for o in n.output}
    att = _attention_matmuls(q, encoder)
    assert len(att) == 4                   # 2 layers x (scores, values)
    dq_fed = [all(producers.get(i) == "DequantizeLinear" for i in n.input) for n in att]
    assert dq_fed == [int8_attention is True] * 4
    assert sum(n.op_type == "QuantizeLinear" for n in q.graph.node) > 0      # the Linear layers still are


def test_dynamic_rows(encoder, held_out):
    """dynamic_rows=True: each layer one qkernels::DynamicQuantizeMatMul (per_row=1), native,
    the model's values those of the reference backend (tests/test_dynamic_quant.py: the
    operator alone, bit for bit), closer to float than per tensor."""
    per_tensor = quantize_model(encoder, None, mode="dynamic", progress=False)
    rows = quantize_model(encoder, None, mode="dynamic", dynamic_rows=True, progress=False)
    ops = [n for n in rows.graph.node if n.op_type == "DynamicQuantizeMatMul"]
    assert len(ops) == 12 and all(n.domain == "qkernels" and n.attribute[0].i == 1 for n in ops)
    assert not any(n.op_type in ("DynamicQuantizeLinear", "MatMulInteger") for n in rows.graph.node)
    assert any(o.domain == "qkernels" for o in rows.opset_import)
    s = Session(rows.SerializeToString(), num_threads=1)
    assert [s.placement(n) for n in s.graph.nodes if n.op_type == "DynamicQuantizeMatMul"] == ["native"] * 12
    # the bias Adds after them went into the nodes
    assert all(len(n.inputs) == 5 and n.inputs[4] for n in s.graph.nodes if n.op_type == "DynamicQuantizeMatMul")
    ours = s.run(None, held_out)[0]
    ref = Session(rows.SerializeToString(), backends=["reference"]).run(None, held_out)[0]
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)     # LayerNorm, Softmax, GELU: float steps
    f = _run_ort(encoder, held_out)
    assert _token_cosine(f, ours) > _token_cosine(f, _run_ours(per_tensor, held_out))


def test_budget_escalates_to_rows(encoder):
    """A budget that every layer dynamic per tensor misses but per row meets: the layers
    taken out go per row (qkernels::DynamicQuantizeMatMul), not float."""
    q, report = quantize_model(encoder, _calib(2), min_cosine=0.999, progress=False, return_report=True,
                               measure=False)
    budget = report["accuracy_budget"]
    assert budget["met"] and budget["dynamic_per"] == "row" and not budget["escalated_to_float"]
    tensor_all = [st for st in budget["steps"] if st["dynamic_per"] == "tensor" and len(st["dynamic"]) == 12]
    assert tensor_all and tensor_all[0]["score"] < 0.999
    rows = [n for n in q.graph.node if n.op_type == "DynamicQuantizeMatMul"]
    assert len(rows) == len(report["dynamic_nodes"]) > 0 and all(n.domain == "qkernels" for n in rows)
    assert not any(n.op_type == "MatMulInteger" for n in q.graph.node)


def test_static_auto_budget_on_transformers(encoder):
    """min_cosine='auto' (the default) sets the budget on a graph with LayerNorm/Softmax."""
    _, report = quantize_model(encoder, _calib(2), progress=False, return_report=True, measure=False)
    assert report["accuracy_budget"]["min_cosine"] == 0.99
    _, report = quantize_model(encoder, _calib(2), min_cosine=None, progress=False, return_report=True, measure=False)
    assert report["accuracy_budget"] is None


def test_outlier_layers_float(deep_encoder):
    q, report = quantize_model(deep_encoder, _calib(), min_cosine=0.99, outlier_layers="float", progress=False,
                               return_report=True, measure=False)
    assert report["dynamic_nodes"] == [] and report["accuracy_budget"]["met"]
    assert not any(n.op_type == "MatMulInteger" for n in q.graph.node)


# ---------------------------------------------------------------- SmoothQuant

@pytest.mark.parametrize("alpha", [0.0, 0.5, 0.8])
def test_smooth_quant_keeps_float_function(encoder, held_out, alpha):
    smoothed, info = smooth_quant(encoder, _calib(2), alpha)
    # every LayerNorm feeding MatMuls and both GELU outputs
    assert {i["producer"] for i in info} >= {"/Mul_124", "/Mul_229"} and len(info) == 6
    np.testing.assert_allclose(_run_ort(smoothed, held_out), _run_ort(encoder, held_out), rtol=1e-4, atol=1e-4)
    if alpha > 0:
        assert all(i["channel_spread_after"] <= i["channel_spread_before"] * 1.05 for i in info)
        assert any(i["channel_spread_after"] < i["channel_spread_before"] / 2 for i in info)


@pytest.mark.parametrize("model", ["encoder", "deep_encoder"])
def test_smooth_quant_accuracy(model, held_out, request):
    enc = request.getfixturevalue(model)
    f = _run_ort(enc, held_out)
    plain = quantize_model(enc, _calib(), min_cosine=None, progress=False)
    smoothed, report = quantize_model(enc, _calib(), min_cosine=None, smooth_quant=0.5, progress=False,
                                      return_report=True, measure=False)
    assert report["smoothing"] and report["settings"]["smooth_quant"] == 0.5
    assert _token_cosine(f, _run_ort(smoothed, held_out)) >= _token_cosine(f, _run_ort(plain, held_out))


# ---------------------------------------------------------------- fp16

def test_fp16_encoder(encoder, held_out):
    q = quantize_model(encoder, target="fp16")
    f, got_ort, got_ours = _run_ort(encoder, held_out), _run_ort(q, held_out), _run_ours(q, held_out)
    for got in (got_ort, got_ours):
        assert got.dtype == np.float32 and np.isfinite(got).all()
        assert _token_cosine(f, got) >= 0.999
    # interface and integer tensors untouched; float weights all fp16; Casts only at the boundary
    assert [i.type.tensor_type.elem_type for i in q.graph.input] == [TensorProto.INT64] * 3
    assert q.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    kinds = {t.data_type for t in q.graph.initializer}
    assert TensorProto.FLOAT not in kinds and TensorProto.FLOAT16 in kinds and TensorProto.INT64 in kinds
    casts = [n for n in q.graph.node if n.op_type == "Cast"]
    assert [c.attribute[0].i for c in casts] == [TensorProto.FLOAT16, TensorProto.FLOAT]   # mask, output
    # finfo(float32).min clamped, not -inf (0 * -inf would be NaN on attended positions)
    assert all(np.isfinite(numpy_helper.to_array(t)).all() for t in q.graph.initializer)


def test_fp16_keep_fp32_ops(encoder, held_out):
    from qkernels.quant.fp16 import to_fp16
    q = to_fp16(encoder, keep_fp32=("LayerNormalization", "Softmax"))
    got = _run_ort(q, held_out)
    assert _token_cosine(_run_ort(encoder, held_out), got) >= 0.999
    producer = {o: n for n in q.graph.node for o in n.output}
    for n in q.graph.node:
        if n.op_type in ("LayerNormalization", "Softmax"):
            assert producer[n.input[0]].op_type == "Cast"
    # ours against float32, as ONNX Runtime's fp16 run is (both are fp16 roundings away from it:
    # at most 0.014 there, 0.03 here, where the fused GELU and the two runtimes' fp16 steps differ)
    ours, want = _run_ours(q, held_out), _run_ort(encoder, held_out)
    assert _token_cosine(want, ours) >= 0.999
    np.testing.assert_allclose(ours, want, rtol=0, atol=0.05)


# ---------------------------------------------------------------- bad options

@pytest.mark.parametrize("kw", [dict(mode="weights"), dict(mode="dynamic", target="dsp"), dict(min_cosine=1.5),
                                dict(min_cosine="high"), dict(outlier_layers="fp8"), dict(smooth_quant=1.5),
                                dict(smooth_quant=True), dict(smooth_quant=0.5, mode="dynamic"),
                                dict(min_cosine=0.9, min_sqnr_db=20.0), dict(int8_attention="yes"),
                                dict(int8_attention=1), dict(dynamic_rows=1)])
def test_bad_options(encoder, kw):
    with pytest.raises((ValueError, TypeError)):
        quantize_model(encoder, _calib(1), progress=False, **kw)


def test_budget_escalates_to_float(encoder):
    """A budget every-layer-dynamic cannot meet: the search runs again sending layers to float."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)   # the first pass's miss is not the result: no warning
        q, report = quantize_model(encoder, _calib(2), min_cosine=0.9999, progress=False, return_report=True,
                                   measure=False)
    budget = report["accuracy_budget"]
    assert budget["escalated_to_float"] and budget["met"] and budget["final_score"] >= 0.9999
    every_dynamic = [st for st in budget["steps"] if len(st["dynamic"]) == 12]    # the 12 constant-weight MatMuls
    assert every_dynamic and every_dynamic[0]["score"] < 0.9999
    assert report["dynamic_nodes"] == [] and not any(n.op_type == "MatMulInteger" for n in q.graph.node)


def test_cli_modes(encoder, tmp_path):
    import onnx

    from qkernels.__main__ import main
    onnx.save(encoder, tmp_path / "f.onnx")
    np.savez(tmp_path / "c.npz", **encoder_inputs(8, 16, 1000))
    assert main(["quantize", str(tmp_path / "f.onnx"), str(tmp_path / "d.onnx"), "--mode", "dynamic", "--quiet"]) == 0
    assert sum(n.op_type == "MatMulInteger" for n in onnx.load(tmp_path / "d.onnx").graph.node) == 12
    assert main(["quantize", str(tmp_path / "f.onnx"), str(tmp_path / "s.onnx"), "--calib", str(tmp_path / "c.npz"),
                 "--smooth-quant", "0.5", "--min-cosine", "none", "--quiet"]) == 0
    names = {t.name for t in onnx.load(tmp_path / "s.onnx").graph.initializer}
    assert any("_smooth_" in n for n in names)
    with pytest.raises(SystemExit):
        main(["quantize", str(tmp_path / "f.onnx"), str(tmp_path / "x.onnx"), "--min-cosine", "high"])


@pytest.mark.parametrize("trans_b, alpha, beta", [(0, 1.0, 1.0), (1, 0.5, 2.0)])
def test_dynamic_gemm(trans_b, alpha, beta):
    """Gemm: the transposed weight stored (K, N), alpha in the weight scales, beta * C added."""
    from onnx import helper
    rng = np.random.default_rng(3)
    w = rng.standard_normal((24, 40) if trans_b else (40, 24)).astype(np.float32)
    c = rng.standard_normal(24).astype(np.float32)
    g = helper.make_graph([helper.make_node("Gemm", ["x", "w", "c"], ["y"], name="gemm", transB=trans_b,
                                            alpha=alpha, beta=beta)], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 40])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5, 24])],
                          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(c, "c")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    q = quantize_model(model, mode="dynamic")
    assert [n.op_type for n in q.graph.node] == ["DynamicQuantizeLinear", "Mul", "MatMulInteger", "Cast", "Mul", "Add"]
    x = {"x": rng.standard_normal((5, 40)).astype(np.float32)}
    want = alpha * x["x"] @ (w.T if trans_b else w) + beta * c
    got = _run_ort(q, x)
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()
    np.testing.assert_allclose(_run_ours(q, x), got, rtol=1e-5, atol=1e-5)
