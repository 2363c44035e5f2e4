"""Compare two ``qkernels bench --json`` reports of one suite, and flag regressions
beyond the noise (``qkernels bench --compare BASELINE.json``, ``bench/report.py --compare``).

What is compared: every qkernels record (library ``qkernels``; each op, shape and thread
count) present in both reports, by its median seconds per call: ``speed = old / new``
(> 1: faster now). The peers' ratios (``x numpy``, ``x ORT``, ...) are shown beside it.

The threshold is derived from measured noise, per record:

* run-to-run noise: a report made with ``--rounds R`` (R >= 3) keeps each record's
  median of every round (``median_s_per_round``: each round is a fresh process). Its
  relative deviations from their median, pooled over the baseline and (when it has
  rounds too) the new report, give ``s`` (sample standard deviation) and ``d``
  (largest absolute deviation of one round);
* the threshold is ``max(3 * s * sqrt(1 + pi / (2 R)), d)``: a single new run differs
  from a median of R runs with variance ``s^2 (1 + pi / (2 R))`` (the variance of a
  median of R normal samples is about ``pi s^2 / (2 R)``); three of those standard
  deviations make a false alarm on pure noise rare (~0.1 % one-sided for normal noise),
  and never below the largest deviation actually seen;
* without rounds in either report the threshold falls back to :data:`DEFAULT_NOISE`,
  the largest threshold measured on the development machine (docs/performance.md,
  "Regression check").

A record is *regressed* when ``speed < 1 - threshold``, *faster* when
``speed > 1 + threshold``. Exit codes of ``qkernels bench --compare``:
:data:`EXIT_REGRESSION` (3) when any record regressed; 1 (a wrong result or a crash) and
2 (usage, a baseline of another suite) come first.

Imports neither qkernels nor numpy.
"""
from __future__ import annotations

import math

from .timing import median

EXIT_REGRESSION = 3
#: Fallback relative threshold when neither report has rounds: the largest per-shape
#: threshold of the quick gemm suite at 1 thread measured on the development machine
#: (bench/results/*-quick-gemm-1t-*.json, 5 rounds; docs/performance.md).
DEFAULT_NOISE = 0.103
#: Standard deviations of a single run's noise a regression must exceed.
SIGMAS = 3.0

#: The peers' ratios shown per suite: (row key, title).
RATIOS = {"conv": (("x_ort_int8", "× ORT int8"), ("x_fastest_peer", "× fastest int8 peer")),
          "f16": (("x_numpy_f32", "× numpy fp32"), ("x_numpy_f16", "× numpy fp16")),
          "quant": (("x_numpy_q", "quantize × numpy"), ("x_ort_q", "quantize × ORT"),
                    ("x_numpy_dq", "dequantize × numpy"), ("x_ort_dq", "dequantize × ORT")),
          "models": (("qk_over_ort", "qk / ORT"), ("qk_over_ort_fp32", "qk / ORT fp32")),
          "gemm": (("x_numpy", "× numpy"), ("x_ort", "× ORT"))}


class CompareError(ValueError):
    """The two reports cannot be compared (different suites)."""


def rel_deviations(per_round) -> list[float]:
    """Relative deviations of each round's time from the rounds' median."""
    if not per_round or len(per_round) < 2:
        return []
    med = median(per_round)
    return [t / med - 1.0 for t in per_round]


def threshold(old_rounds=None, new_rounds=None, default: float = DEFAULT_NOISE, sigmas: float = SIGMAS) -> dict:
    """The relative regression threshold of one record from its per-round times
    (``{"threshold", "s", "d", "rounds", "source"}``; see the module docstring)."""
    devs = rel_deviations(old_rounds) + rel_deviations(new_rounds)
    n = len(old_rounds or []) if old_rounds and len(old_rounds) >= 2 else len(new_rounds or [])
    if len(devs) < 3:
        return {"threshold": default, "s": None, "d": None, "rounds": n, "source": "default"}
    mean = sum(devs) / len(devs)
    s = math.sqrt(sum((x - mean) ** 2 for x in devs) / (len(devs) - 1))
    d = max(abs(x) for x in devs)
    thr = max(sigmas * s * math.sqrt(1.0 + math.pi / (2.0 * max(n, 1))), d)
    return {"threshold": thr, "s": s, "d": d, "rounds": n, "source": "rounds"}


def _qk_records(rep: dict) -> dict:
    return {(r["op"], r["shape"], r["threads"]): r for r in rep.get("results", [])
            if r.get("lib") == "qkernels" and r.get("median_s")}


def compare_reports(old: dict, new: dict, default: float = DEFAULT_NOISE) -> dict:
    """Per qkernels record in both reports: old/new time, speed, threshold, verdict;
    and the peers' ratios of the matching rows. Raises :class:`CompareError` for
    reports of different suites."""
    suite_old, suite_new = old.get("suite", "gemm"), new.get("suite", "gemm")
    if suite_old != suite_new:
        raise CompareError(f"the reports are of different suites ({suite_old} and {suite_new})")
    ratios = RATIOS.get(suite_new, RATIOS["gemm"])
    rows_old = {(r["shape"], r["threads"]): r for r in old.get("rows", [])}
    rows_new = {(r["shape"], r["threads"]): r for r in new.get("rows", [])}
    before, after = _qk_records(old), _qk_records(new)
    out = []
    for key, n in after.items():
        o = before.get(key)
        if o is None:
            continue
        thr = threshold(o.get("median_s_per_round"), n.get("median_s_per_round"), default)
        speed = o["median_s"] / n["median_s"]
        verdict = ("regressed" if speed < 1 - thr["threshold"]
                   else "faster" if speed > 1 + thr["threshold"] else "same")
        ro, rn = rows_old.get(key[1:]) or {}, rows_new.get(key[1:]) or {}
        out.append({"op": key[0], "shape": key[1], "threads": key[2],
                    "old_ms": o["median_s"] * 1e3, "new_ms": n["median_s"] * 1e3,
                    "old_gops": o.get("gops_median"), "new_gops": n.get("gops_median"),
                    "speed": speed, **thr, "verdict": verdict,
                    "ratios": {title: (ro.get(k), rn.get(k)) for k, title in ratios}})
    mo, mn = old.get("machine") or {}, new.get("machine") or {}
    notes = []
    if (mo.get("cpu"), mo.get("cpus")) != (mn.get("cpu"), mn.get("cpus")):
        notes.append(f"different machines: baseline {mo.get('cpu')} ({mo.get('cpus')} CPUs), "
                     f"now {mn.get('cpu')} ({mn.get('cpus')} CPUs): the comparison says little")
    if not out:
        notes.append("no qkernels measurement in common (other shapes or thread counts)")
    return {"suite": suite_new, "rows": out, "regressed": [r for r in out if r["verdict"] == "regressed"],
            "notes": notes}


def _f(x, spec="{:.1f}"):
    return "–" if x is None else spec.format(x)


def format_markdown(cmp: dict) -> str:
    """The comparison as a markdown table (bench/report.py --compare)."""
    titles = [t for _, t in RATIOS.get(cmp["suite"], RATIOS["gemm"])]
    out = ["| op | shape | threads | old GOP/s | new GOP/s | old ms | new ms | new / old speed | threshold "
           "| verdict | " + " | ".join(f"{t} old → new" for t in titles) + " |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |" + " --- |" * len(titles)]
    for r in cmp["rows"]:
        verdict = "**REGRESSED**" if r["verdict"] == "regressed" else r["verdict"]
        out.append(f"| {r['op']} | `{r['shape']}` | {r['threads']} | {_f(r['old_gops'])} | {_f(r['new_gops'])} | "
                   f"{r['old_ms']:.4g} | {r['new_ms']:.4g} | {r['speed']:.2f} | ±{100 * r['threshold']:.1f} % | "
                   f"{verdict} | " + " | ".join(f"{_f(a, '{:.2f}')} → {_f(b, '{:.2f}')}"
                                             for a, b in r["ratios"].values()) + " |")
    return "\n".join(out + [f"\nNote: {n}" for n in cmp["notes"]])


def format_text(cmp: dict, baseline: str = "baseline") -> str:
    """The comparison as the CLI's plain table."""
    hdr = (f"{'op':<12}{'shape':<19}{'thr':>3}{'old GOP/s':>10}{'new GOP/s':>10}{'old ms':>9}{'new ms':>9}"
           f"{'new/old':>8}{'thresh.':>9}  verdict")
    lines = [f"comparison with {baseline}: speed = old time / new time of each qkernels measurement; "
             f"threshold = max({SIGMAS:g} s sqrt(1 + pi/2R), largest deviation) of the run-to-run noise "
             "(s, R: the reports' rounds)", hdr, "-" * len(hdr)]
    for r in cmp["rows"]:
        src = "" if r["source"] == "rounds" else " (default)"
        lines.append(f"{r['op']:<12}{r['shape']:<19}{r['threads']:>3}{_f(r['old_gops'], '{:10.1f}'):>10}"
                     f"{_f(r['new_gops'], '{:10.1f}'):>10}{r['old_ms']:9.4g}{r['new_ms']:9.4g}{r['speed']:8.2f}"
                     f"{'±' + format(100 * r['threshold'], '.1f') + '%':>9}  "
                     + ("REGRESSED" if r["verdict"] == "regressed" else r["verdict"]) + src)
    reg = cmp["regressed"]
    lines.append(f"{len(reg)} regression(s) beyond the noise" + (
        ": " + ", ".join(f"{r['op']} {r['shape']} {r['threads']} thr ({r['speed']:.2f}x)" for r in reg)
        if reg else ""))
    return "\n".join(lines + [f"note: {n}" for n in cmp["notes"]])


def speedups(report: dict) -> tuple[list[str], dict[str, list]]:
    """Bar labels (shape, threads) and, per peer ratio, its values: the data of ``--plot``."""
    ratios = RATIOS.get(report.get("suite", "gemm"), RATIOS["gemm"])
    rows = report.get("rows", [])
    labels = [f"{r['shape']}\n{r['threads']} thr" for r in rows]
    return labels, {title: [r.get(k) for r in rows] for k, title in ratios}


def plot_speedups(report: dict, path: str) -> None:
    """A bar chart of qkernels' speed-ups over its peers (needs matplotlib; ImportError without)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels, series = speedups(report)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(labels) + 2), 4.5))
    width = 0.8 / max(1, len(series))
    for i, (title, vals) in enumerate(series.items()):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(labels))]
        ax.bar(xs, [v if v is not None else 0.0 for v in vals], width, label=title)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_ylabel("speed-up of qkernels (x)")
    ax.set_title(f"qkernels bench --suite {report.get('suite', 'gemm')}: speed-ups over peers")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
