"""``qkernels bench --suite quant`` (bench/quant.py): a tiny run through the
per-process machinery, the CLI's quick path and its saved JSON through bench/report.py,
the exact references it gates on, and the ONNX Runtime columns skipped with a note when
it is missing."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import qkernels
from qkernels.__main__ import main
from qkernels.bench import SUITES, harness, peers, timing
from qkernels.bench import quant as bench_quant
from qkernels.bench.quant import Case

TINY_TIMING = {"min_time": 0.001, "repeats": 3, "warmup": 0.0}
TINY = [Case("tiny-u8", (1, 5, 7, 3), "test", dtype="uint8"), Case("tiny-s8", (33, 17), "test"),
        Case("tiny-ch", (6, 3, 3, 5), "test", 0)]
HAVE_ORT = peers.have("onnxruntime") and peers.have("onnx")
REPORT = Path(__file__).resolve().parent.parent / "bench" / "report.py"


def test_tiny_quant_bench_checks_qkernels_exact_beside_numpy_and_ort():
    rep = bench_quant.run_bench(TINY, [1], quick=True, timing=TINY_TIMING)
    assert rep["ok"] and not rep["wrong_results"], rep["notes"]
    assert rep["suite"] == "quant" and [(r["shape"], r["threads"]) for r in rep["rows"]] == [(c.label, 1) for c in TINY]
    for r, c in zip(rep["rows"], TINY):
        assert r["quantize_exact"] is True and r["dequantize_exact"] is True
        assert r["dims"] == c.dims and r["elems"] == c.elems and r["kind"] == c.kind
        for col in ("q-qkernels", "dq-qkernels", "q-numpy", "dq-numpy"):
            assert r["gelem_s"][col] > 0 and r["ms"][col] > 0
        assert r["x_numpy_q"] > 0 and r["x_numpy_dq"] > 0
        if HAVE_ORT:
            assert r["gelem_s"]["q-ort"] > 0 and r["x_ort_q"] > 0 and r["x_ort_dq"] > 0
            assert r["ort_exact"] == (True, True)
    qk_recs = [r for r in rep["results"] if r["lib"] == "qkernels"]
    assert sorted(r["op"] for r in qk_recs) == sorted(["quantize", "dequantize"] * len(TINY))
    for rec in qk_recs:      # Gelem/s: the harness's gops of this suite count elements
        c = rec["check"]
        assert c["exact"] and c["blocking"] and c["mismatches"] == 0 and c["size"] == rec["elems"]
        assert rec["gops_median"] == pytest.approx(rec["elems"] / rec["median_s"] / 1e9)
    numpy_recs = [r for r in rep["results"] if r["lib"] == "numpy"]
    assert len(numpy_recs) == 2 * len(TINY) and all(r["check"]["exact"] for r in numpy_recs)
    json.dumps(rep)
    table = bench_quant.format_table(rep)
    assert "quantize/dequantize bench" in table and "dequantize, Gelem/s:" in table and "tiny-ch" in table
    assert "WRONG" not in table


def test_cli_quant_quick_run_saves_json(tmp_path, capsys):
    assert "quant" in SUITES
    path = tmp_path / "quant.json"
    rc = main(["bench", "--suite", "quant", "--quick", "--threads", "1", "--json", str(path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    rep = json.loads(path.read_text())
    assert [r["shape"] for r in rep["rows"]] == list(bench_quant.QUICK) and rep["ok"]
    for r in rep["rows"]:
        assert r["threads"] == 1 and r["quantize_exact"] is True and r["dequantize_exact"] is True
        assert r["gelem_s"]["q-qkernels"] > 0 and r["gelem_s"]["dq-qkernels"] > 0
    assert {r["op"] for r in rep["results"] if r["lib"] == "qkernels"} == {"quantize", "dequantize"}
    assert "quantize, Gelem/s:" in out and "r18-l1-56" in out and "tf-128x384" in out
    if not HAVE_ORT:
        assert "ONNX Runtime columns skipped" in out
    md = subprocess.run([sys.executable, str(REPORT), str(path)], capture_output=True, text=True, check=True).stdout
    assert "| `r18-l1-56` | 1x56x56x64 | u8 tensor | 1 |" in md and "dequantize:" in md
    assert main(["bench", "--suite", "quant", "--shapes", "no-such-case"]) == 2


def test_case_table_and_quick_subset():
    labels = [c.label for c in bench_quant.CASES]
    assert len(labels) == len(set(labels)) == 6 and set(bench_quant.QUICK) <= set(labels)
    assert [c.label for c in bench_quant.cases(quick=True)] == list(bench_quant.QUICK)
    assert {c.kind for c in bench_quant.CASES} == {"s8 tensor", "u8 tensor", "s8 ch ax0"}
    with pytest.raises(ValueError, match="unknown case"):
        bench_quant.cases(["nope"])


@pytest.mark.parametrize("case", bench_quant.cases(quick=True) + [bench_quant.CASES[-1]], ids=lambda c: c.label)
def test_problem_saturates_holds_ties_and_qkernels_matches_the_reference(case):
    p = bench_quant.make_problem(case)
    assert p.q.dtype == np.dtype(case.dtype) and p.x.dtype == np.float32 and p.y.dtype == np.float32
    assert p.q.min() == p.lo and p.q.max() == p.hi                      # saturates at both ends
    frac = np.abs(np.divide(p.x, p.sb, dtype=np.float32)) % 1
    assert np.any(frac == 0.5)                                            # exact half-step ties
    got = qkernels.quantize(p.x, p.scale, p.zp, p.q.dtype, case.axis).data
    assert bench_quant.check_quantized(got, p)["exact"]
    assert bench_quant.compare_values(qkernels.dequantize(p.q, p.scale, p.zp, axis=case.axis), p.y)["exact"]


def test_checks_flag_a_wrong_output_and_a_wrong_result_is_not_timed():
    p = bench_quant.make_problem(TINY[1])
    bad = p.q.copy()
    bad[0, 0] += 1
    c = bench_quant.check_quantized(bad, p)
    assert not c["exact"] and c["mismatches"] == 1 and timing.check_failed(c)
    assert not bench_quant.check_quantized(p.q.astype(np.int16), p)["exact"]          # wrong dtype
    y = p.y.copy()
    y[3, 4] = np.nextafter(y[3, 4], np.float32(np.inf))
    c = bench_quant.compare_values(y, p.y)
    assert not c["exact"] and c["mismatches"] == 1 and c["max_abs_diff"] > 0
    rec = timing.measure(TINY[1], "qkernels", "quantize", 1, TINY_TIMING, lambda: None, dict(c, blocking=True))
    assert "median_s" not in rec and rec["error"].startswith("wrong result")
    [row] = bench_quant.SUITE.rows([rec], [TINY[1]], [1])
    assert row["quantize_exact"] is False and row["gelem_s"]["q-qkernels"] is None and row["x_numpy_q"] is None


def test_missing_onnxruntime_skips_the_ort_columns_with_a_note(monkeypatch):
    have = peers.have
    monkeypatch.setattr(peers, "have", lambda module: module != "onnxruntime" and have(module))
    _, notes, libs = harness.run_setup(True, bench_quant.LIBS)
    assert libs == ["qkernels", "numpy"] and len(notes) == 1 and "ONNX Runtime columns skipped" in notes[0]
