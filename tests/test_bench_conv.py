"""``qkernels bench --suite conv`` (bench/conv.py): a tiny run through the
per-process machinery, the CLI path, the numpy peer and the reference it checks with."""
import json
from pathlib import Path

import numpy as np
import pytest

import qkernels
from qkernels.__main__ import main
from qkernels.bench import conv as bench_conv
from qkernels.bench import peers, timing
from qkernels.bench.conv import Layer

TINY_TIMING = {"min_time": 0.001, "repeats": 3, "warmup": 0.0}
# Tiny geometries that name XNNPACK models, so the missing-folder path is taken.
TINY = [Layer("tiny-dw-s2", 9, 8, 8, 3, 2, True, "test", "dw112s1_int8.tflite"),
        Layer("tiny-3x3", 8, 5, 16, 3, 1, False, "test", "conv3x3_int8.tflite"),
        Layer("tiny-1x1", 6, 7, 9, 1, 1, False, "test")]


def test_tiny_conv_bench_checks_qkernels_exact_and_notes_a_missing_tflite_folder(tmp_path):
    rep = bench_conv.run_bench(TINY, [1], quick=True, timing=TINY_TIMING, tflite_dir=tmp_path / "missing")
    assert rep["ok"] and not rep["wrong_results"], rep["notes"]
    assert [(r["shape"], r["threads"]) for r in rep["rows"]] == [(la.label, 1) for la in TINY]
    for r in rep["rows"]:
        assert r["qkernels_exact"] is True
        assert r["gops"]["qkernels"] > 0 and r["ms"]["qkernels"] > 0 and r["gops"]["numpy-fp32"] > 0
        assert r["gops"]["xnnpack"] is None
    qk_recs = [r for r in rep["results"] if r["lib"] == "qkernels"]
    assert len(qk_recs) == len(TINY) and all(r["check"]["exact"] and r["check"]["blocking"] for r in qk_recs)
    import importlib.util
    # without ai-edge-litert the note says so; with it, that the folder is missing
    why = "missing" if importlib.util.find_spec("ai_edge_litert") else "not importable"
    assert any(n.startswith("XNNPACK column skipped") and why in n for n in rep["notes"]), rep["notes"]
    assert rep["suite"] == "conv" and rep["settings"]["tflite_dir"] is None
    if peers.have("onnxruntime") and peers.have("onnx"):   # int8 activations: ONNX Runtime is exact too
        assert all(r["ort_int8_exact"] is True and r["gops"]["ort-fp32"] > 0 for r in rep["rows"])
    json.dumps(rep)
    table = bench_conv.format_table(rep)
    assert "tiny-3x3" in table and "note: XNNPACK column skipped" in table


def test_cli_conv_suite_quick_run_saves_json(tmp_path, capsys):
    path = tmp_path / "conv.json"
    rc = main(["bench", "--suite", "conv", "--quick", "--threads", "1", "--shapes", "mnv2-dw-112",
               "--tflite-dir", str(tmp_path / "none"), "--json", str(path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    rep = json.loads(path.read_text())
    [row] = rep["rows"]
    assert row["shape"] == "mnv2-dw-112" and row["qkernels_exact"] is True and row["gops"]["qkernels"] > 0
    assert row["gops"]["xnnpack"] is None and row["fastest_peer"] in (None, "ort-int8", "ort-u8")
    assert "int8 convolution bench" in out and "mnv2-dw-112" in out and "XNNPACK column skipped" in out
    assert main(["bench", "--suite", "conv", "--shapes", "no-such-layer"]) == 2


def test_layer_table_quick_subset_and_tflite_models():
    labels = [la.label for la in bench_conv.LAYERS]
    assert len(labels) == len(set(labels)) == 13 and {"pw-56x64-256", "mnv3-dw5-56s2", "effnet-pw-28"} <= set(labels)
    assert [la.label for la in bench_conv.layers(quick=True)] == list(bench_conv.QUICK)
    with pytest.raises(ValueError, match="unknown layer"):
        bench_conv.layers(["nope"])
    named = {la.label: la.tflite for la in bench_conv.LAYERS if la.tflite}
    assert named == {"mnv2-dw-112": "dw112s1_int8.tflite", "mnv2-dw-56s2": "dw56s2_int8.tflite",
                     "pw-56x64-256": "conv1x1_int8.tflite", "resnet-3x3-56": "conv3x3_int8.tflite"}


def test_default_tflite_folder_is_found_from_the_checkout(monkeypatch):
    pytest.importorskip("ai_edge_litert")
    folder = Path(__file__).resolve().parent.parent / "bench" / "tflite"
    if not folder.is_dir():
        pytest.skip("no bench/tflite beside the tests")
    monkeypatch.chdir(folder.parent.parent)
    found, x_layers, notes = bench_conv._xnnpack_plan(bench_conv.LAYERS)
    assert Path(found) == folder.resolve() and not notes
    assert {la.label for la in x_layers} == {la.label for la in bench_conv.LAYERS if la.tflite}


@pytest.mark.parametrize("layer", TINY + [Layer("tiny-dw5", 7, 6, 6, 5, 1, True, "test")], ids=lambda la: la.label)
def test_reference_and_numpy_peer_match_qkernels_and_each_other(layer):
    p = bench_conv.make_problem(layer)
    acc, y_ref = bench_conv.reference(p)
    call, y = bench_conv.qk_conv(qkernels, p)
    call()
    np.testing.assert_array_equal(y, y_ref)
    got = bench_conv.NumpyConv(layer, p.w_float(), p.b_float(), np.float32)(p.x_float())
    np.testing.assert_allclose(got, acc * (np.float32(p.sa) * p.sw), rtol=1e-5, atol=1e-3)


def test_a_wrong_qkernels_result_is_not_timed_and_fails_the_report():
    layer = TINY[0]
    rec = timing.measure(layer, "qkernels", "conv2d-s8", 1, TINY_TIMING, lambda: None,
                         {"exact": False, "blocking": True, "mismatches": 3, "size": 10, "max_abs_diff": 1})
    assert "median_s" not in rec and rec["error"].startswith("wrong result")
    [row] = bench_conv.SUITE.rows([rec], [layer], [1])
    assert row["qkernels_exact"] is False and row["gops"]["qkernels"] is None and not bench_conv.SUITE.check_targets([row])


def test_missing_ai_edge_litert_skips_the_xnnpack_column_with_a_note(monkeypatch):
    have = peers.have
    monkeypatch.setattr(peers, "have", lambda module: module != "ai_edge_litert" and have(module))
    folder, x_layers, notes = bench_conv._xnnpack_plan(bench_conv.LAYERS)
    assert folder is None and x_layers == [] and len(notes) == 1 and "ai_edge_litert" in notes[0]
    assert bench_conv._xnnpack_plan([la for la in bench_conv.LAYERS if not la.tflite]) == (None, [], [])
