"""``qkernels bench --suite f16`` (bench/f16.py): a tiny run through the
per-process machinery, the CLI's quick path, the accuracy check it gates on, and the
saved JSON through bench/report.py."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import qkernels
from qkernels.__main__ import main
from qkernels.bench import f16 as bench_f16
from qkernels.bench import gemm, timing

TINY_TIMING = {"min_time": 0.001, "repeats": 3, "warmup": 0.0}
TINY = [gemm.Shape(7, 24, 40, "tiny-7x24x40", "test"), gemm.Shape(1, 33, 17, "tiny-gemv", "test")]
REPORT = Path(__file__).resolve().parent.parent / "bench" / "report.py"


def _fp16_arith() -> bool:
    return "neonfp16" in qkernels.cpu_info().get("f16_kernel", "")


def test_tiny_f16_bench_checks_qkernels_within_the_bound_and_skips_big_numpy_f16():
    # numpy float16 limited to the smaller shape: the other is skipped with a note
    rep = bench_f16.run_bench(TINY, [1], quick=True, timing=TINY_TIMING, numpy_f16_max_mnk=1000,
                              numpy_f16_budget={"budget_s": 0.05, "max_repeats": 2})
    assert rep["ok"] and not rep["wrong_results"], rep["notes"]
    assert rep["suite"] == "f16" and [(r["shape"], r["threads"]) for r in rep["rows"]] == [(s.label, 1) for s in TINY]
    for r in rep["rows"]:
        assert r["qkernels_within_bound"] is True and 0 <= r["max_err_over_bound"] <= 1
        assert r["gops"]["qkernels"] > 0 and r["gops"]["numpy-f32"] > 0 and r["x_numpy_f32"] > 0
        assert r["f32_within_bound"] is True and r["gops"]["qkernels-f32"] > 0 and r["f32_x_numpy_f32"] > 0
        assert r["weights_bytes"]["f32"] == 4 * int(r["mnk"].split("x")[2]) * int(r["mnk"].split("x")[1])
    big, small = rep["rows"]
    assert big["gops"]["numpy-f16"] is None and big["x_numpy_f16"] is None
    assert small["gops"]["numpy-f16"] > 0 and small["x_numpy_f16"] > 0
    assert any(n.startswith("numpy float16 not timed at tiny-7x24x40") for n in rep["notes"]), rep["notes"]
    qk_recs = [r for r in rep["results"] if r["lib"] == "qkernels"]
    assert len(qk_recs) == len(TINY)
    for rec in qk_recs:
        c = rec["check"]
        assert c["within_bound"] and c["blocking"] and c["mismatches"] == 0 and c["max_err_rel"] < 1e-3
        assert c["e"] == bench_f16.accumulation_error(rec["k"], _fp16_arith())
    json.dumps(rep)
    table = bench_f16.format_table(rep)
    assert "fp16 GEMM bench" in table and "tiny-gemv" in table and "note: numpy float16 not timed" in table


def test_cli_f16_quick_run_saves_json_that_report_prints(tmp_path, capsys):
    path = tmp_path / "f16.json"
    rc = main(["bench", "--suite", "f16", "--quick", "--threads", "1", "--shapes", "square-64", "--json", str(path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    rep = json.loads(path.read_text())
    [row] = rep["rows"]
    assert row["shape"] == "square-64" and row["qkernels_within_bound"] is True and row["gops"]["qkernels"] > 0
    assert row["gops"]["numpy-f32"] > 0 and row["gops"]["numpy-f16"] > 0
    assert {t["target"] for t in rep["targets"]} == {"fp16 GEMM >= 0.9x numpy float32",
                                                      "fp16 GEMM >= 20x numpy float16"}
    assert "fp16 GEMM bench" in out and "square-64" in out
    md = subprocess.run([sys.executable, str(REPORT), str(path)], capture_output=True, text=True, check=True).stdout
    assert "| `square-64` | 1 |" in md and "numpy fp16" in md and "fp16 GEMM >= 20x numpy float16" in md
    md = subprocess.run([sys.executable, str(REPORT), "--compare", str(path), str(path)], capture_output=True,
                        text=True, check=True).stdout
    assert "| `square-64` | 1 |" in md and "× numpy fp16" in md
    assert main(["bench", "--suite", "f16", "--shapes", "square-1024-w7"]) == 2   # the int8-only twin


def test_shapes_are_the_gemm_shapes_less_the_7bit_twins():
    assert [s.label for s in bench_f16.SHAPES] == [s.label for s in gemm.SHAPES if s.wbits >= 8]
    assert [s.label for s in bench_f16.shapes(quick=True)] == [lab for lab in gemm.QUICK if "-w7" not in lab]
    with pytest.raises(ValueError, match="unknown shape"):
        bench_f16.shapes(["nope"])


def test_accuracy_check_flags_an_output_outside_the_bound():
    p = bench_f16.make_problem(gemm.Shape(5, 9, 300, "t", "test"))
    y = qkernels.matmul(p.a, qkernels.pack_weights(p.b))
    good = bench_f16.accuracy_check(y, p, _fp16_arith())
    assert good["within_bound"] and good["mismatches"] == 0 and good["size"] == 45
    bad = y.copy()
    bad[2, 3] = np.float16(float(bad[2, 3]) + 0.5)
    bad[4, 0] = np.nan
    c = bench_f16.accuracy_check(bad, p)
    assert not c["within_bound"] and c["mismatches"] == 2 and timing.check_failed(c)


def test_a_wrong_qkernels_result_is_not_timed_and_fails_the_row():
    shape = TINY[0]
    check = {"within_bound": False, "blocking": True, "mismatches": 3, "size": 10, "max_err_rel": 0.1}
    rec = timing.measure(shape, "qkernels", "matmul-f16", 1, TINY_TIMING, lambda: None, check)
    assert "median_s" not in rec and rec["error"].startswith("wrong result")
    [row] = bench_f16.SUITE.rows([rec], [shape], [1])
    assert row["qkernels_within_bound"] is False and row["gops"]["qkernels"] is None and not bench_f16.SUITE.check_targets([row])
    assert not timing.check_failed(None) and not timing.check_failed({"exact": True})


def test_numpy_f16_budget_times_a_slow_call_a_few_times_or_once():
    calls = []
    rec = bench_f16.time_budgeted(lambda: calls.append(1), TINY_TIMING, budget_s=1.0, max_repeats=2)
    assert rec["median_s"] >= 0 and "timed_once" not in rec      # fast: the usual batches

    def slow():
        import time
        time.sleep(0.02)

    rec = bench_f16.time_budgeted(slow, {"min_time": 0.05, "repeats": 15, "warmup": 0.1}, 0.2, 3)
    assert 1 <= rec["repeats"] <= 3 and not rec["timed_once"] and rec["median_s"] >= 0.02 and rec["number"] == 1
    rec = bench_f16.time_budgeted(slow, {"min_time": 0.05, "repeats": 15, "warmup": 0.1}, 0.01, 5)
    assert rec["timed_once"] and rec["repeats"] == 1
