"""What every pytest-benchmark suite of this folder shares: the thread counts, the
measured clock and theoretical peak, and the side-by-side summary.

A benchmark test times its call with ``benchmark(fn)`` and then calls :func:`finish`,
which stores in ``extra_info`` (and so in ``--benchmark-json``) the rate (GOP/s, or
Gelem/s for the memory-bound quantize/dequantize), for qkernels rows the share of this
CPU's theoretical peak, and keeps the row for the summary that ``conftest.py`` prints
at the end of the session and adds to the JSON (key ``qkernels_summary``): per
benchmark group and thread count, qkernels' rate, each peer's rate and qkernels'
speed-up over it (peer median time / qkernels median time), all from this one run.

Peak: ``qkernels.bench.peak`` -- ops per cycle per core of the ISA path in use
(``qkernels.get_isa()``, for fp16 the kernel of ``cpu_info()["f16_kernel"]``) x the
clock x the cores used. The clock is measured once per session, in this process, by a
chain of dependent one-cycle adds (x86-64), else read from sysfs or /proc/cpuinfo;
the summary's header says which.
"""
from __future__ import annotations

import functools
import os

import pytest

import qkernels as qk
from qkernels.bench import peak as bench_peak

CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
#: 1 thread and all threads (of this process's CPUs).
THREADS = tuple(sorted({1, CPUS}))
#: ``QKERNELS_BENCH_QUICK=1``: every suite takes its quick subset (the ``--quick`` shapes,
#: layers and small models of ``python -m qkernels bench``); CI runs the suites so, once
#: each, with ``--benchmark-disable``, to keep them working.
QUICK = os.environ.get("QKERNELS_BENCH_QUICK", "") not in ("", "0")

#: Rows of this session: one per finished benchmark (see :func:`finish`).
RESULTS: list[dict] = []


@functools.lru_cache(maxsize=None)
def clock() -> dict:
    """``{"ghz": ..., "method": ...}``: measured once per session."""
    return bench_peak.measure_clock()


@functools.lru_cache(maxsize=None)
def int8_peak() -> dict | None:
    """The measured vpdpbusd peak of the current VNNI path (None elsewhere): once per session."""
    return bench_peak.measure_int8_peak(qk.get_isa())


def peak_gops(dtype: str, threads: int, wbits: int = 8) -> float | None:
    """Theoretical peak GOP/s of qkernels' current path for ``dtype`` ("int8"/"f16"); int8
    on a VNNI path: the measured vpdpbusd peak."""
    return bench_peak.peak_gops(clock()["ghz"], qk.get_isa(), dtype, threads, CPUS, wbits,
                                qk.cpu_info().get("f16_kernel"), (int8_peak() or {}).get("gops_per_core"))


def versions() -> dict:
    """qkernels (and its ISA path), numpy and ONNX Runtime (None: not installed)."""
    import numpy as np
    try:
        import onnxruntime
        ort = onnxruntime.__version__
    except ImportError:
        ort = None
    return {"qkernels": qk.__version__, "isa": qk.get_isa(), "numpy": np.__version__, "onnxruntime": ort}


def use_threads(threads: int) -> None:
    """Skip when ``threads`` exceeds this machine's CPUs, else set qkernels' threads."""
    if threads > CPUS:
        pytest.skip(f"{threads} threads on {CPUS} CPU(s)")
    qk.set_num_threads(threads)


def finish(benchmark, *, lib: str, threads: int, work: float | None = None, unit: str = "GOP/s",
           peak: tuple | None = None, **info) -> None:
    """Record the benchmark just run: ``lib`` (qkernels' "qkernels-<dtype>", or a peer
    such as "numpy-f32", "ort-int8"), ``work`` per call (operations for GOP/s, elements for Gelem/s; None:
    milliseconds only), ``peak`` = ``(dtype, wbits)`` for a qkernels row with a
    theoretical peak. Extra keywords go to ``extra_info``. Nothing is recorded under
    ``--benchmark-disable`` (no timings)."""
    unit = unit if work else "ms"
    benchmark.extra_info.update(lib=lib, threads=threads, **info)
    stats = getattr(benchmark, "stats", None)
    if stats is None:
        return
    median = stats.stats.median
    row = {"group": benchmark.group, "lib": lib, "threads": threads, "median_s": median, "unit": unit,
           "rate": work / median / 1e9 if work else None, "pct_peak": None}
    if lib.startswith("qkernels"):
        row["isa"] = qk.get_isa()
        if peak and row["rate"]:
            row["peak_gops"] = peak_gops(peak[0], threads, *peak[1:])
            row["pct_peak"] = bench_peak.pct_peak(row["rate"], row["peak_gops"])
    benchmark.extra_info.update({k: row[k] for k in ("rate", "unit", "pct_peak") if row[k] is not None})
    RESULTS.append(row)


def summary_rows() -> list[dict]:
    """Per group and qkernels row ("qkernels-int8", "qkernels-f16", ...): its rate, % peak
    and speed-up over every peer (a row whose lib does not start with "qkernels") of the group."""
    groups: dict[str, list[dict]] = {}
    for r in RESULTS:
        groups.setdefault(r["group"], []).append(r)
    rows = []
    for group, rs in groups.items():
        peers = {r["lib"]: r for r in rs if not r["lib"].startswith("qkernels")}
        for mine in [r for r in rs if r["lib"].startswith("qkernels")] or [None]:
            rows.append({"group": group, "threads": rs[0]["threads"], "unit": rs[0]["unit"],
                         "lib": mine["lib"] if mine else None,
                         "qkernels": mine and {k: mine.get(k) for k in ("rate", "median_s", "pct_peak", "isa")},
                         "peers": {lib: {"rate": r["rate"], "median_s": r["median_s"],
                                         "speedup": r["median_s"] / mine["median_s"] if mine else None}
                                   for lib, r in peers.items()}})
    return rows


def _rate(x: dict | None) -> str:
    if not x:
        return "-"
    return f"{x['rate']:.3g}" if x.get("rate") else f"{x['median_s'] * 1e3:.3g} ms"


def format_summary(rows: list[dict]) -> list[str]:
    """The summary as text lines: one line per group."""
    c, pk = clock(), int8_peak()
    measured = f"; int8 % peak of {pk['gops_per_core']:.0f} GOP/s per core, {pk['method']}" if pk else ""
    lines = [f"qkernels beside its peers, this run (ISA {qk.get_isa()}; clock {c['ghz']} GHz, {c['method']}{measured}; "
             f"rates in GOP/s, quantize/dequantize in Gelem/s, models in ms; xN = qkernels' speed-up)"]
    for r in rows:
        mine = r["qkernels"]
        pct = f"{mine['pct_peak']:.0f}% peak" if mine and mine.get("pct_peak") else ""
        peers = "  ".join(f"{lib} {_rate(p)} ({p['speedup']:.2f}x)" if p["speedup"] else f"{lib} {_rate(p)}"
                          for lib, p in sorted(r["peers"].items()))
        lines.append(f"  {r['group']:<30} {r['lib'] or 'qkernels':<15} {_rate(mine):>9} {pct:>9}  {peers}")
    return lines
