"""`qkernels bench --compare` / `--plot` and the `% peak` column: the regression check flags a
synthetic slow-down beyond its noise threshold and not a change within it, exit codes,
the peak from a given clock and ISA, the plot skipped visibly without matplotlib."""
import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from qkernels.bench import compare as bench_compare
from qkernels.bench import gemm, harness
from qkernels.bench import peak as bench_peak
from qkernels.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "bench" / "report.py"
BASELINES = sorted((ROOT / "bench" / "results").glob("*quick-gemm-1t*.json"))


def _report(times: dict, rounds_spread: float | None = 0.01, suite: str | None = None, ok: bool = True) -> dict:
    """A minimal gemm-suite report: one qkernels record per shape with median ``times[shape]``
    seconds, and 5 per-round medians spread by +-``rounds_spread`` (None: no rounds)."""
    results, rows = [], []
    for shape, t in times.items():
        rec = {"lib": "qkernels", "op": "matmul-u8", "shape": shape, "threads": 1, "median_s": t,
               "min_s": t * 0.98, "gops_median": 1e-3 / t}
        if rounds_spread is not None:
            rec["median_s_per_round"] = [t * (1 + rounds_spread * f) for f in (-1, -0.5, 0, 0.5, 1)]
        results.append(rec)
        rows.append({"shape": shape, "threads": 1, "x_numpy": 1.5, "x_ort": 1.0, "qkernels": 1e-3 / t})
    rep = {"results": results, "rows": rows, "ok": ok, "wall_s": 0.0, "notes": [],
           "machine": {"cpu": "test CPU", "cpus": 2}}
    if suite:
        rep["suite"] = suite
    return rep


def test_threshold_follows_the_measured_round_noise():
    quiet = bench_compare.threshold([1.0, 1.01, 0.99, 1.005, 0.995])
    noisy = bench_compare.threshold([1.0, 1.10, 0.90, 1.05, 0.95])
    assert quiet["source"] == noisy["source"] == "rounds"
    assert noisy["threshold"] == pytest.approx(10 * quiet["threshold"])
    s = quiet["s"]
    assert quiet["threshold"] == pytest.approx(max(3 * s * math.sqrt(1 + math.pi / 10), quiet["d"]))
    assert bench_compare.threshold(None, None)["threshold"] == bench_compare.DEFAULT_NOISE   # no rounds
    assert bench_compare.threshold([1.0], None, default=0.2)["source"] == "default"


def test_a_regression_beyond_the_threshold_is_flagged_and_one_within_is_not():
    old = _report({"square-64": 1.0e-3, "square-1024": 10e-3})
    thr = bench_compare.threshold(old["results"][0]["median_s_per_round"])["threshold"]
    assert 0.01 < thr < 0.1
    new = _report({"square-64": 1.0e-3 * (1 + 3 * thr),       # 3 thresholds slower: regressed
                   "square-1024": 10e-3 * (1 + 0.5 * thr)},   # half a threshold slower: noise
                  rounds_spread=None)
    cmp = bench_compare.compare_reports(old, new)
    verdicts = {r["shape"]: r["verdict"] for r in cmp["rows"]}
    assert verdicts == {"square-64": "regressed", "square-1024": "same"}
    assert [r["shape"] for r in cmp["regressed"]] == ["square-64"]
    faster = bench_compare.compare_reports(old, _report({"square-64": 0.5e-3, "square-1024": 10e-3}))
    assert {r["shape"]: r["verdict"] for r in faster["rows"]} == {"square-64": "faster", "square-1024": "same"}
    text = bench_compare.format_text(cmp)
    assert "REGRESSED" in text and "1 regression(s)" in text and "square-1024" in text
    md = bench_compare.format_markdown(cmp)
    assert "| matmul-u8 | `square-64` | 1 |" in md and "**REGRESSED**" in md and "× numpy old → new" in md


def test_the_same_report_does_not_regress_and_other_suites_are_refused():
    rep = _report({"square-64": 1e-3})
    assert bench_compare.compare_reports(rep, copy.deepcopy(rep))["regressed"] == []
    with pytest.raises(bench_compare.CompareError, match="different suites"):
        bench_compare.compare_reports(rep, _report({"square-64": 1e-3}, suite="f16"))
    other = _report({"square-64": 1e-3})
    other["machine"]["cpu"] = "another CPU"
    assert any("different machines" in n for n in bench_compare.compare_reports(rep, other)["notes"])


def test_exit_codes_of_the_cli_comparison(capsys):
    old = _report({"square-64": 1e-3})
    fmt = lambda rep: "table"  # noqa: E731
    same = harness.finish_cli(_report({"square-64": 1e-3}), fmt, baseline=old, baseline_path="old.json")
    slow = harness.finish_cli(_report({"square-64": 2e-3}), fmt, baseline=old, baseline_path="old.json")
    wrong = harness.finish_cli(_report({"square-64": 2e-3}, ok=False), fmt, baseline=old)
    suite = harness.finish_cli(_report({"square-64": 1e-3}, suite="f16"), fmt, baseline=old)
    assert (same, slow, wrong, suite) == (0, bench_compare.EXIT_REGRESSION, 1, 2)
    out = capsys.readouterr()
    assert "comparison with old.json" in out.out and "REGRESSED" in out.out
    assert "different suites" in out.err
    assert main(["bench", "--quick", "--compare", "/nonexistent/baseline.json"]) == 2


def test_report_py_compare_exits_3_on_a_regression(tmp_path):
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(_report({"square-64": 1e-3})))
    new.write_text(json.dumps(_report({"square-64": 2e-3})))
    run = lambda a, b: subprocess.run([sys.executable, str(REPORT), "--compare", str(a), str(b)],  # noqa: E731
                                      capture_output=True, text=True)
    slow, same = run(old, new), run(old, old)
    assert slow.returncode == bench_compare.EXIT_REGRESSION and "**REGRESSED**" in slow.stdout
    assert same.returncode == 0 and "| same |" in same.stdout


def test_peak_from_a_given_clock_and_isa():
    # Zen 3 at 2.9 GHz: vpmaddwd 2 pipes x 16 MACs x 2 = 64 ops/cycle -> 185.6 GOP/s (DESIGN.md)
    assert bench_peak.peak_gops(2.9, "avx2", "int8") == pytest.approx(185.6)
    assert bench_peak.peak_gops(2.9, "avx2", "f16") == pytest.approx(92.8)         # 2 x 8 x 2 FMA
    assert bench_peak.peak_gops(2.9, "avx2", "int8", threads=4, cpus=2) == pytest.approx(371.2)
    assert bench_peak.peak_gops(2.9, "avx2", "int8", wbits=7) == pytest.approx(371.2)  # vpmaddubsw
    assert bench_peak.peak_gops(2.0, "neondot", "int8") == pytest.approx(128.0)
    assert bench_peak.peak_gops(2.0, "neon", "f16", f16_kernel="f16_gemm_neonfp16") == pytest.approx(64.0)
    assert bench_peak.peak_gops(2.9, "scalar", "int8") is None
    assert bench_peak.peak_gops(None, "avx2", "int8") is None
    assert bench_peak.pct_peak(92.8, 185.6) == pytest.approx(50.0)
    rows = [{"shape": "square-1024", "threads": 1, "qkernels": 92.8}, {"shape": "x", "threads": 2, "qkernels": None}]
    machine = {"cpus": 2, "qkernels_cpu_info": {"isa": "avx2"}, "clock": {"ghz": 2.9, "method": "given"}}
    harness.add_peak(rows, machine, "int8", lambda r: r["qkernels"], gemm.SHAPES)
    assert rows[0]["pct_peak"] == pytest.approx(50.0) and rows[1]["peak_gops"] == pytest.approx(371.2)
    assert rows[1]["pct_peak"] is None
    assert "64 int8 ops/cycle/core x 2.90 GHz (= 186 GOP/s per core)" in harness.peak_line(machine)


def test_the_clock_is_measured_or_read():
    clock = bench_peak.measure_clock()
    assert clock["method"]
    if clock["ghz"] is not None:
        assert 0.3 < clock["ghz"] < 7.0


def test_plot_is_skipped_visibly_without_matplotlib(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)       # import matplotlib -> ImportError
    rc = harness.finish_cli(_report({"square-64": 1e-3}), lambda rep: "table", plot_path=str(tmp_path / "p.png"))
    assert rc == 0 and not (tmp_path / "p.png").exists()
    assert "--plot skipped" in capsys.readouterr().err and "qkernels[plot]" in bench_compare.__doc__ + "qkernels[plot]"
    labels, series = bench_compare.speedups(_report({"square-64": 1e-3}))
    assert labels == ["square-64\n1 thr"] and series == {"× numpy": [1.5], "× ORT": [1.0]}


def test_new_transformer_shapes_are_in_the_gemm_and_f16_suites():
    from qkernels.bench import f16 as bench_f16
    mnk = {s.label: (s.m, s.n, s.k) for s in gemm.SHAPES}
    assert (128, 384, 384) in mnk.values() and (128, 1536, 384) in mnk.values()
    labels = {s.label for s in bench_f16.SHAPES}
    assert {lab for lab, v in mnk.items() if v in ((128, 384, 384), (128, 1536, 384))} <= labels


@pytest.mark.skipif(not BASELINES, reason="no stored quick gemm baseline")
def test_quick_run_compares_with_the_stored_baseline(capsys):
    base = json.loads(BASELINES[-1].read_text())
    assert base["settings"]["rounds"] >= 3 and base["settings"]["threads"] == [1]
    rc = main(["bench", "--quick", "--threads", "1", "--shapes", "square-64", "--compare", str(BASELINES[-1])])
    out = capsys.readouterr().out
    assert rc in (0, bench_compare.EXIT_REGRESSION)          # speed may vary; never a crash or a wrong result
    assert "comparison with" in out and "square-64" in out and "% peak" in out
