"""``qkernels bench --suite models`` (bench/models.py): tiny models through the
prepare step and the per-model processes, the fp32 gate and the int8 comparison, the
CLI's quick path, and the saved JSON through bench/report.py."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qkernels.__main__ import main
from qkernels.bench import models as bench_models
from qkernels.bench import peers, timing

pytest.importorskip("onnx")

TINY_TIMING = {"min_time": 0.001, "repeats": 3, "warmup": 0.0}
TINY = [bench_models.Model(f"mobilenet_v2-{v}", "mobilenet_v2", v, 0.25, 32, 10, "test")
        for v in bench_models.VARIANTS]
REPORT = Path(__file__).resolve().parent.parent / "bench" / "report.py"


def test_tiny_models_run_checked_on_both_libraries_and_report_prints_them(tmp_path):
    pytest.importorskip("onnxruntime")
    rep = bench_models.run_bench(TINY, [1], quick=True, timing=TINY_TIMING, process_per_model=True)
    assert rep["ok"] and not rep["wrong_results"], rep["notes"]
    assert rep["suite"] == "models" and [(r["shape"], r["variant"], r["threads"]) for r in rep["rows"]] == [
        ("mobilenet_v2-fp32", "fp32", 1), ("mobilenet_v2-int8", "int8", 1), ("mobilenet_v2-int8u8", "int8u8", 1)]
    fp32, int8, int8u8 = rep["rows"]
    assert rep["prepared"]["mobilenet_v2-int8u8"]["ops"]["QuantizeLinear"] > 0 and int8u8["check"]["max_diff_lsb"] >= 0
    assert fp32["check"]["within_bound"] is True and fp32["check"]["rel_diff"] <= bench_models.FP32_RTOL
    c = int8["check"]
    assert c["blocking"] is False and c["output_scale"] > 0 and c["max_diff_lsb"] >= 0
    assert c["qdq_float_max_diff_lsb"] >= 0 and rep["prepared"]["mobilenet_v2-int8"]["ort_vs_qdq_float_lsb"] >= 0
    assert isinstance(c["argmax_agrees"], bool) and not timing.check_failed(c)
    for r in rep["rows"]:
        assert r["ms"]["qkernels"] > 0 and r["ms"]["ort"] > 0 and r["qk_over_ort"] > 0
        assert r["rss_growth"]["qkernels"] >= 0 and r["rss_growth"]["ort"] >= 0
        assert r["peak_bytes"] > 0 and r["model_bytes"] > 0 and r["plan_ops"]
    # the int8 row is compared with ORT's float32 model too, and both targets are reported
    assert int8["ms"]["ort-fp32"] == fp32["ms"]["ort"] and int8["qk_over_ort_fp32"] > 0
    assert {t["target"] for t in rep["targets"]} == {"int8 latency <= 0.8x ONNX Runtime int8",
                                                      "int8 latency <= 0.5x ONNX Runtime float32"}
    assert rep["prepared"]["mobilenet_v2-int8"]["ops"]["QuantizeLinear"] > 0
    assert any(n.startswith("qkernels plan of mobilenet_v2-int8") for n in rep["notes"]), rep["notes"]
    assert any(n.startswith("int8 logits of mobilenet_v2-int8 (1 thr)") for n in rep["notes"]), rep["notes"]
    table = bench_models.format_table(rep)
    assert "whole-model bench" in table and "mobilenet_v2" in table and "LSB" in table and "ok " in table
    path = tmp_path / "models.json"
    path.write_text(json.dumps(rep))
    md = subprocess.run([sys.executable, str(REPORT), str(path)], capture_output=True, text=True, check=True).stdout
    assert "| mobilenet_v2 | int8 | w0.25 32px | 1 |" in md and "LSB, argmax" in md
    assert "int8 latency <= 0.8x ONNX Runtime int8" in md
    md = subprocess.run([sys.executable, str(REPORT), "--compare", str(path), str(path)], capture_output=True,
                        text=True, check=True).stdout
    assert "| `mobilenet_v2-fp32` | 1 |" in md and "old ms" in md and "qk / ORT fp32" in md


def test_cli_models_quick_run_saves_json(tmp_path, capsys):
    path = tmp_path / "models.json"
    rc = main(["bench", "--suite", "models", "--quick", "--threads", "1", "--shapes", "resnet18-fp32",
               "--json", str(path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    rep = json.loads(path.read_text())
    [row] = rep["rows"]
    assert row["shape"] == "resnet18-fp32" and row["geometry"] == "w0.5 96px" and row["ms"]["qkernels"] > 0
    if peers.have("onnxruntime"):
        assert row["check"]["within_bound"] is True and row["ms"]["ort"] > 0
    assert "whole-model bench" in out and "resnet18" in out
    assert main(["bench", "--suite", "models", "--shapes", "resnet18-int4"]) == 2


def test_model_tables_and_selection():
    assert [m.label for m in bench_models.MODELS] == [
        "mobilenet_v2-fp32", "mobilenet_v2-int8", "mobilenet_v2-int8u8", "resnet18-fp32", "resnet18-int8",
        "resnet18-int8u8",
        *(f"encoder_t{t}-{v}" for t in (16, 128) for v in ("fp32", "int8dyn", "fp16"))]
    assert all((m.size, m.width) == (224, 1.0) for m in bench_models.models() if not m.real and not m.tokens)
    # the encoders: all-MiniLM-L6-v2's shape at full size, 2 layers of 64 in --quick (CI's smoke run)
    enc = [m for m in bench_models.models() if m.tokens]
    assert {(m.layers, m.hidden, m.heads, m.vocab) for m in enc} == {(6, 384, 12, 30522)}
    assert {(m.layers, m.hidden, m.vocab) for m in bench_models.models(quick=True) if m.tokens} == {(2, 64, 1000)}
    assert enc[1].twin.label == "encoder_t16-fp32" and enc[1].geometry == "6x384 16t" and enc[1].feed == "input_ids"
    x = bench_models.feeds(enc[4])
    assert set(x) == {"input_ids", "attention_mask", "token_type_ids"} and x["input_ids"].shape == (1, 128)
    real = [m for m in bench_models.models() if m.real]        # the trained models, once downloaded
    assert all(bench_models.real_models.cached(m.real) and m.feed == "x" and m.warmup is None for m in real)
    assert not any(m.real for m in bench_models.models(quick=True))
    assert [m.label for m in bench_models.REAL_MODELS][:2] == ["ppocr_cls-fp32", "ppocr_cls-int8"]
    quick = bench_models.models(["mobilenet_v2-int8"], quick=True)
    assert [(m.label, m.width, m.size, m.geometry) for m in quick] == [("mobilenet_v2-int8", 0.5, 96, "w0.5 96px")]
    assert quick[0].twin.label == "mobilenet_v2-fp32" and quick[0].twin.size == 96
    with pytest.raises(ValueError, match="unknown model"):
        bench_models.models(["nope"])


def test_fp32_check_gates_and_int8_comparison_informs():
    ref = np.array([[1.0, -4.0, 2.0]], np.float32)
    good = bench_models.check_fp32(ref + 1e-5, ref)
    assert good["within_bound"] and good["mismatches"] == 0 and good["rel_diff"] < 1e-4
    bad = bench_models.check_fp32(ref + np.array([[0, 0, 1e-2]], np.float32), ref)
    assert not bad["within_bound"] and bad["mismatches"] == 1 and timing.check_failed(bad)
    assert not bench_models.check_fp32(ref[:, :2], ref)["within_bound"]
    c = bench_models.compare_int8(ref + np.array([[0, 0.5, 0]], np.float32), ref, 0.25)
    assert c["max_diff_lsb"] == 2 and c["mismatches"] == 1 and c["argmax_agrees"] and not timing.check_failed(c)
    assert not bench_models.compare_int8(ref[:, ::-1], ref, 0.25)["argmax_agrees"]
    # a wrong fp32 result posts no time: no ratio, no target
    model = TINY[0]
    rec = timing.measure(model, "qkernels", bench_models.OP, 1, TINY_TIMING, lambda: None, bad)
    assert "median_s" not in rec and rec["error"].startswith("wrong result")
    [row] = bench_models.SUITE.rows([rec], [model], [1])
    assert row["ms"]["qkernels"] is None and row["qk_over_ort"] is None
    assert "WRONG" in bench_models.check_cell(row["check"])


def test_encoder_variants_checked_by_embedding_cosine_and_quick_models_share_a_process(tmp_path):
    """The encoder: fp32 gated against ORT, int8dyn (ORT quantize_dynamic) compared by the
    cosine of its sentence embedding to the float32 model's; fp16 timed or, while
    qkernels.quant cannot make it, skipped with the reason in a note. Quick models share a
    process per library: no memory growth is reported for them."""
    pytest.importorskip("onnxruntime")
    tiny = [bench_models.Model(f"encoder_t8-{v}", "encoder_t8", v, 1.0, 0, 0, "test", tokens=8, layers=1,
                               hidden=32, heads=2, vocab=50) for v in bench_models.ENCODER_VARIANTS]
    rep = bench_models.run_bench(tiny, [1], quick=True, timing=TINY_TIMING, libs=("qkernels", "ort"))
    assert rep["ok"] and not rep["wrong_results"], rep["notes"]
    rows = {r["variant"]: r for r in rep["rows"]}
    assert rows["fp32"]["check"]["within_bound"] is True
    dyn = rows["int8dyn"]["check"]
    assert dyn["blocking"] is False and dyn["finite"] and 0.9 < dyn["cosine_to_fp32"] <= 1 + 1e-9
    assert dyn["max_abs_diff_to_ort"] is not None and rows["int8dyn"]["ms"]["ort-fp32"] == rows["fp32"]["ms"]["ort"]
    assert rep["prepared"]["encoder_t8-int8dyn"]["ops"]["MatMulInteger"] > 0
    assert any(n.startswith("encoder_t8-int8dyn (1 thr): cosine") for n in rep["notes"]), rep["notes"]
    if "fp16" in rows:
        assert rows["fp16"]["check"]["cosine_to_fp32"] > 0.99
    else:
        assert any(n.startswith("encoder_t8-fp16 skipped: qkernels.quant") for n in rep["notes"]), rep["notes"]
    assert all(v is None for r in rep["rows"] for v in r["rss_growth"].values())
    assert rep["settings"]["process_per_model"] is False and "cos " in bench_models.format_table(rep)
    path = tmp_path / "encoders.json"
    path.write_text(json.dumps(rep))
    md = subprocess.run([sys.executable, str(REPORT), str(path)], capture_output=True, text=True, check=True).stdout
    assert "| encoder_t8 | int8dyn | 1x32 8t | 1 |" in md and "to fp32 |" in md and "LSB" not in md.split("| --- |")[-1]


def test_without_onnxruntime_int8_models_are_skipped_with_a_note(monkeypatch):
    real = peers.have
    monkeypatch.setattr(peers, "have", lambda name: False if name == "onnxruntime" else real(name))
    rep = bench_models.run_bench([TINY[1]], [1], quick=True, timing=TINY_TIMING)
    assert rep["ok"] and rep["rows"] == [] and rep["settings"]["models"] == []
    assert any(n.startswith("int8 models skipped (mobilenet_v2-int8)") for n in rep["notes"]), rep["notes"]
    assert any(n.startswith("ONNX Runtime columns skipped") for n in rep["notes"]), rep["notes"]
    assert "whole-model bench" in bench_models.format_table(rep)


def test_openvino_columns_run_or_are_skipped_with_a_note(monkeypatch):
    """OpenVINO (its default precision and f32) beside ORT when installed; without it the
    columns are skipped with a note, never a failure."""
    pytest.importorskip("onnxruntime")
    model = TINY[:1]
    if peers.have("openvino"):
        rep = bench_models.run_bench(model, [1], quick=True, timing=TINY_TIMING)
        (row,) = rep["rows"]
        assert row["ms"]["openvino-f32"] > 0 and row["qk_over_openvino_f32"] > 0
        assert row["ms"]["openvino"] > 0 or any("openvino did not compile" in n for n in rep["notes"])
        assert rep["machine"].get("openvino") and "OV f32" in bench_models.format_table(rep)
    real_have = peers.have
    monkeypatch.setattr(peers, "have", lambda m: False if m == "openvino" else real_have(m))
    rep = bench_models.run_bench(model, [1], quick=True, timing=TINY_TIMING)
    assert rep["ok"] and any("OpenVINO columns skipped" in n for n in rep["notes"]), rep["notes"]
    assert rep["rows"][0]["ms"]["openvino"] is None and rep["rows"][0]["ms"]["qkernels"] > 0


@pytest.mark.parametrize("opset, qdq", [(11, False), (12, False), (13, True), (11, True)])
def test_tiny_conv_warm_up_runs_alike_on_both_libraries(opset, qdq):
    """A trained model's warm-up (bench/models.py tiny_conv): valid at the model's opset
    (QDQ raised to 13, the first with per-channel DequantizeLinear), the same on qkernels as
    on ONNX Runtime, and not all zero (a warm-up that computes nothing warms nothing)."""
    ort = pytest.importorskip("onnxruntime")
    import onnx
    from qkernels.graph import Session
    m = bench_models.tiny_conv("x", opset, qdq)
    onnx.checker.check_model(m, full_check=True)
    assert m.opset_import[0].version == (max(opset, 13) if qdq else opset)
    x = {"x": np.linspace(-1, 1, int(np.prod(bench_models.TINY_SHAPE)), dtype=np.float32)
         .reshape(bench_models.TINY_SHAPE)}
    got = Session(m.SerializeToString(), num_threads=1).run(None, x)[0]
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, x)[0]
    assert got.shape == (1, 4, 8, 8) and np.abs(want).max() > 0
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=0.02 if qdq else 1e-5)
