"""The parent process of ``qkernels bench``: one :class:`Suite` per kind of benchmark,
the worker processes that time each library and thread count on their own, the report
(rows, targets, notes, machine), its tables and the command line.

Timing discipline: every (library, thread count) pair runs in its own Python process
(:mod:`worker`), started with ``sys.executable`` and told its thread count through the
environment (``QKERNELS_NUM_THREADS``; ``OPENBLAS_NUM_THREADS``/``OMP_NUM_THREADS``/
``MKL_NUM_THREADS`` and, where possible, the BLAS's own ``set_num_threads``; ONNX
Runtime's ``intra_op_num_threads``): idle worker threads of one library would otherwise
steal a core from the next. The numpy process runs without ``OPENBLAS_CORETYPE`` and
``OPENBLAS_L2_SIZE``, which, when a machine sets them, slow a current numpy's OpenBLAS.
Each call is warmed up, then repeated in batches of at least ``min_time`` seconds; the
median batch time per call is reported (the minimum is kept too).

Imports neither qkernels nor numpy at module level.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import time
from typing import Callable, NamedTuple

from . import compare, peers
from .timing import MARKER, add_gops, check_failed, median

#: A worker during which other processes kept more than this many CPUs busy gets a warning.
FOREIGN_CPUS_WARN = 0.15
SETTINGS = {  # seconds per timed batch, batches per measurement, warm-up seconds
    "quick": {"min_time": 0.02, "repeats": 7, "warmup": 0.05},
    "full": {"min_time": 0.05, "repeats": 15, "warmup": 0.15},
}
_NUMPY_UNSET_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def select(table, quick_labels, labels=None, quick: bool = False, what: str = "shape") -> list:
    """The items of ``table`` named by ``labels`` (all, or those in ``quick_labels``,
    when None); ValueError naming any unknown label."""
    if labels:
        by_label = {s.label: s for s in table}
        unknown = [lab for lab in labels if lab not in by_label]
        if unknown:
            raise ValueError(f"unknown {what} label(s) {', '.join(unknown)}; "
                             f"expected some of {', '.join(by_label)}")
        return [by_label[lab] for lab in labels]
    if quick:
        return [s for s in table if s.label in quick_labels]
    return list(table)


def selector(table, quick_labels, what: str = "shape"):
    """``select(labels=None, quick=False)`` of one table: its items named by ``labels``
    (all, or the quick subset, when None)."""
    def select_items(labels=None, quick: bool = False) -> list:
        return select(table, quick_labels, labels, quick, what)
    return select_items


# ---------------------------------------------------------------- a suite

class Target(NamedTuple):
    """A goal checked on every row it applies to (``when(row)``): the row's ratio ``key``
    at least ``need`` (``at_most``: at most); ``what`` says it (a callable: per row)."""
    key: str
    need: float
    what: str | Callable
    when: Callable = lambda row: True
    at_most: bool = False


class Suite(NamedTuple):
    """One benchmark suite: ``qkernels bench --suite <name>``.

    ``name``: the suite (the report's ``suite``) and the module of its ``WORKERS`` (one
    per library, each run in its own process); ``columns``: report column -> (worker
    library, op) of its records; ``row(item, recs, find)``: a row's own entries from
    its records by column (``find(lib, op, label)``: any other record at its thread count); ``targets``: the goals checked on the rows; ``select(labels,
    quick=)``, ``run(items, threads, **kw)`` (the report) and ``table(report)``: its items,
    its run and its text table; ``options``: the CLI arguments ``run`` takes too."""
    name: str
    columns: dict
    row: Callable
    targets: tuple
    select: Callable
    run: Callable
    table: Callable
    options: tuple = ()

    def rows(self, results: list[dict], items, threads_list) -> list[dict]:
        """One row per (item, thread count): the label, the thread count, the suite's
        entries, the most CPUs other processes kept busy meanwhile."""
        index = {(r["lib"], r["op"], r["shape"], r["threads"]): r for r in results}
        rows = []
        for t in threads_list:
            for item in items:
                recs = {col: index.get((lib, op, item.label, t)) or {} for col, (lib, op) in self.columns.items()}
                def find(lib, op, label, t=t):
                    return index.get((lib, op, label, t)) or {}

                rows.append({"shape": item.label, "threads": t, **self.row(item, recs, find),
                             "foreign_cpus": foreign_cpus(index, item.label, t)})
        return rows

    def check_targets(self, rows: list[dict]) -> list[dict]:
        """Every target on every row it applies to: met or not."""
        out = []
        for goal in self.targets:
            for r in rows:
                ratio = r.get(goal.key)
                if ratio is not None and goal.when(r):
                    what = goal.what(r) if callable(goal.what) else goal.what
                    out.append({"target": what, "shape": r["shape"], "threads": r["threads"], "ratio": ratio,
                                "met": ratio <= goal.need if goal.at_most else ratio >= goal.need})
        return out

    def report(self, got: dict, items, threads_list, notes: list, settings: dict, **more) -> dict:
        """The report of a run: the rows of :func:`collect`'s results (``got``), the targets."""
        rows = self.rows(got["results"], items, threads_list)
        return make_report(got, rows, self.check_targets(rows), notes, settings=settings, suite=self.name, **more)

    def cli(self, args) -> int:
        """``qkernels bench --suite <name>``: :func:`run_cli` of this suite."""
        options = {name: getattr(args, name, None) for name in self.options}
        return run_cli(args, self.select, lambda items, threads, **kw: self.run(items, threads, **options, **kw),
                       self.table)


def run_only(libs: list, extra_by_lib: dict, lib: str, items, spec: dict) -> None:
    """``lib`` (a peer that cannot run every item) runs only ``items``, its worker told
    ``spec``; dropped from ``libs`` when there are none."""
    if items:
        extra_by_lib[lib] = (items, spec)
    else:
        libs.remove(lib)


def settings_of(what: str, items, threads_list, *, quick, rounds, wait_idle_s, timing, seed, isa, **more) -> dict:
    """A report's ``settings``: the run's arguments, the items' labels under ``what``."""
    return {"quick": quick, "threads": list(threads_list), what: [s.label for s in items], "rounds": rounds,
            "wait_idle_s": wait_idle_s, "timing": timing, "seed": seed, "isa": isa, **more}


def gops_ms(recs: dict) -> tuple[dict, dict]:
    """GOP/s and milliseconds per call of each column's record (None: not timed)."""
    return ({col: r.get("gops_median") for col, r in recs.items()},
            {col: r["median_s"] * 1e3 if "median_s" in r else None for col, r in recs.items()})


def ratio(a, b):
    """``a / b``, None when either is missing (or zero)."""
    return a / b if a and b else None


def foreign_cpus(index: dict, label: str, threads: int) -> float | None:
    """The most CPUs other processes kept busy during any measurement of ``label`` at
    ``threads`` (``index``: records by (lib, op, label, threads))."""
    foreign = [r.get("foreign_cpus") for (_, _, lab, th), r in index.items()
               if lab == label and th == threads and r.get("foreign_cpus") is not None]
    return max(foreign) if foreign else None


def add_peak(rows: list[dict], machine: dict, dtype: str, gops_of, shape_list, applies=lambda row: True) -> None:
    """Each row's ``peak_gops`` (this CPU's theoretical peak for ``dtype`` at the row's
    thread count, :mod:`peak`; for int8 the measured ``vpdpbusd`` peak where the worker
    measured one, ``machine["int8_peak"]``) and ``pct_peak`` (qkernels' GOP/s,
    ``gops_of(row)``, as a percentage of it; None for rows ``applies`` rejects);
    ``machine["peak"]`` says how."""
    from .peak import ops_per_cycle, pct_peak, peak_gops
    qi = machine.get("qkernels_cpu_info") or {}
    isa, f16k = qi.get("isa"), qi.get("f16_kernel")
    ghz = (machine.get("clock") or {}).get("ghz")
    measured = (machine.get("int8_peak") or {}) if dtype == "int8" else {}
    per_core = measured.get("gops_per_core")
    wbits = {s.label: getattr(s, "wbits", 8) for s in shape_list}
    for r in rows:
        w = wbits.get(r["shape"], 8)
        r["peak_gops"] = peak_gops(ghz, isa, dtype, r["threads"], machine.get("cpus"), w, f16k, per_core) \
            if applies(r) else None
        r["pct_peak"] = pct_peak(gops_of(r), r["peak_gops"])
    opc = ops_per_cycle(isa, dtype, 8, f16k)
    if per_core:
        opc = round(per_core / ghz) if ghz else None
    machine["peak"] = {"dtype": dtype, "isa": isa, "clock_ghz": ghz, "ops_per_cycle_per_core": opc,
                       **({"measured_gops_per_core": per_core, "measured_by": measured.get("method")}
                          if per_core else {}),
                       "formula": ("measured GOP/s per core" if per_core else "ops/cycle/core x clock GHz")
                       + " x min(threads, CPUs)"}


# ---------------------------------------------------------------- worker processes

def _worker_env(lib: str, threads: int, isa: str | None) -> tuple[dict, list[str]]:
    env = dict(os.environ)
    unset = []
    blas_threads = threads if lib == "numpy" else 1
    env["OPENBLAS_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(blas_threads)
    env["OMP_NUM_THREADS"] = str(threads if lib in ("numpy", "qkernels") else 1)
    env["QKERNELS_NUM_THREADS"] = str(threads)
    if lib == "numpy":
        for var in _NUMPY_UNSET_ENV:
            if env.pop(var, None) is not None:
                unset.append(var)
    if isa and lib == "qkernels":
        env["QKERNELS_ISA"] = isa
    return env, unset


def _qkernels_root() -> str | None:
    """The folder the qkernels package of this process is imported from."""
    pkg = sys.modules.get("qkernels")
    return os.path.dirname(os.path.dirname(os.path.abspath(pkg.__file__))) if pkg and pkg.__file__ else None


def run_worker(lib: str, threads: int, shape_list, timing: dict, *, module: str = "gemm", seed: int = 0,
               isa: str | None = None, timeout: float = 600, **extra) -> dict:
    """Time ``lib`` on ``shape_list`` at ``threads`` threads in a fresh process running
    the workers of the suite ``module``; ``extra`` goes into the worker's spec (e.g.
    ``int32=True``)."""
    import resource
    env, unset = _worker_env(lib, threads, isa)
    busy0, wall0 = _cpu_busy_s(), time.perf_counter()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    spec = {"lib": lib, "threads": threads, "shapes": [s._asdict() for s in shape_list],
            "timing": timing, "seed": seed, "env_unset": unset, **extra}
    worker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")
    # cwd: the folder this process's qkernels comes from (the worker puts it first on
    # sys.path), so the qkernels worker imports the same qkernels, never an unbuilt source tree.
    proc = subprocess.run([sys.executable, worker, module], input=json.dumps(spec), capture_output=True,
                          text=True, env=env, timeout=timeout, cwd=_qkernels_root())
    if proc.returncode != 0 or MARKER not in proc.stdout:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-8:]
        raise RuntimeError(f"{lib} worker ({threads} thread(s)) failed with status "
                           f"{proc.returncode}:\n  " + "\n  ".join(tail))
    out = json.loads(proc.stdout.rsplit(MARKER, 1)[1])
    busy1, wall1 = _cpu_busy_s(), time.perf_counter()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    self1 = resource.getrusage(resource.RUSAGE_SELF)
    if busy0 is not None and busy1 is not None and wall1 > wall0:
        ours = (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
                + self1.ru_utime + self1.ru_stime - self0.ru_utime - self0.ru_stime)
        foreign = max(0.0, (busy1 - busy0) - ours) / (wall1 - wall0)
        for r in out["results"]:
            r["foreign_cpus"] = round(foreign, 3)
    return out


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _cpu_busy_s() -> float | None:
    """Seconds of non-idle CPU time of the whole machine since boot (Linux), all CPUs added."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)      # idle + iowait
    busy = sum(fields[:8]) - idle                                 # without guest (counted in user)
    return busy / os.sysconf("SC_CLK_TCK")


def wait_idle(max_wait: float, threshold: float = FOREIGN_CPUS_WARN, window: float = 1.0) -> float | None:
    """Wait (at most ``max_wait`` s) until the machine has been idle for one ``window``:
    fewer than ``threshold`` CPUs busy. Returns the last busy reading (None: unknown)."""
    end = time.perf_counter() + max_wait
    while True:
        b0, t0 = _cpu_busy_s(), time.perf_counter()
        if b0 is None:
            return None
        time.sleep(window)
        busy = (_cpu_busy_s() - b0) / (time.perf_counter() - t0)
        if busy < threshold or time.perf_counter() >= end:
            return round(busy, 3)


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):  # pragma: no cover - not Unix
        return None


def _merge_rounds(recs: list[dict], ops: int | None) -> dict:
    """One record from the same measurement in several rounds: median of medians
    (``ops``: the operations of one call, None when not counted)."""
    first = dict(recs[0])
    timed = [r for r in recs if "median_s" in r]
    if not timed:
        return first
    first["median_s"] = median([r["median_s"] for r in timed])
    first["min_s"] = min(r["min_s"] for r in timed)
    add_gops(first, ops)
    first["rounds"] = len(timed)
    foreign = [r["foreign_cpus"] for r in recs if r.get("foreign_cpus") is not None]
    if foreign:
        first["foreign_cpus"] = max(foreign)
    if len(timed) > 1:
        first["median_s_per_round"] = [r["median_s"] for r in timed]
        if ops is not None:
            first["gops_median_per_round"] = [r["gops_median"] for r in timed]
    failed = [r["check"] for r in recs if check_failed(r.get("check"))]
    if failed:
        first["check"] = failed[0]
    return first


def collect(module: str, libs, shape_list, threads_list, *, timing: dict, rounds: int = 1,
            isa: str | None = None, seed: int = 0, progress=None, wait_idle_s: float = 0.0,
            extra_by_lib=None, process_per_item: bool = False) -> dict:
    """Run every (library, thread count) worker of the suite ``module`` ``rounds`` times.

    ``extra_by_lib``: per library, its items (instead of ``shape_list``) and more spec
    entries: ``{lib: (items, {key: value})}``. ``process_per_item``: one process per
    (library, thread count, item) instead of one per (library, thread count), so that
    nothing of one item (its peak memory above all) is left in the next one's process.
    Returns the parts of a report every suite shares: ``results`` (rounds merged),
    ``infos`` (per library), ``notes``, ``failed`` (a worker crashed), ``wrong``
    (qkernels records failing their check) and ``machine``."""
    extra_by_lib = extra_by_lib or {}
    load_before = _loadavg()
    notes: list[str] = []
    raw: dict[tuple, list[dict]] = {}
    all_items = {s.label: s for s in shape_list}
    infos: dict[str, dict] = {}
    failed = False
    for rnd in range(rounds):
        for t in threads_list:
            for lib in libs:
                items, extra = extra_by_lib.get(lib, (shape_list, {}))
                for group in ([[item] for item in items] if process_per_item else [items]):
                    if wait_idle_s > 0:
                        busy_now = wait_idle(wait_idle_s)
                        if progress and busy_now is not None and busy_now >= FOREIGN_CPUS_WARN:
                            progress(f"machine still busy ({busy_now} CPUs) after waiting {wait_idle_s:g} s")
                    tag = f", {group[0].label}" if process_per_item else ""
                    if progress:
                        progress(f"[round {rnd + 1}/{rounds}] {lib}, {t} thread(s){tag} ...")
                    try:
                        res = run_worker(lib, t, group, timing, module=module, seed=seed, isa=isa, **extra)
                    except (RuntimeError, subprocess.TimeoutExpired) as exc:
                        notes.append(f"{lib} at {t} thread(s){tag} failed: {exc}")
                        failed = True
                        continue
                    infos.setdefault(lib, {}).update(res["info"])
                    for r in res["results"]:
                        raw.setdefault((r["lib"], r["op"], r["shape"], r["threads"]), []).append(r)
                    all_items.update((item.label, item) for item in group)
    busy: dict[tuple, float] = {}
    for k, v in raw.items():
        for r in v:
            if (r.get("foreign_cpus") or 0) > FOREIGN_CPUS_WARN:
                busy[(k[0], k[3])] = max(busy.get((k[0], k[3]), 0.0), r["foreign_cpus"])
    if busy:
        notes.append("other processes kept CPUs busy during these measurements (most CPUs busy besides "
                     f"the bench): {', '.join(f'{lib} {t} thr {c:.2f}' for (lib, t), c in sorted(busy.items()))}"
                     "; such figures (2 threads above all) are unreliable: rerun on an idle machine")
    results = [_merge_rounds(v, getattr(all_items.get(k[2]), "ops", None)) for k, v in raw.items()]
    wrong = [r for r in results if r["lib"] == "qkernels" and check_failed(r.get("check"))]
    for r in wrong:
        how = "differ from the reference" if "exact" in r["check"] else "are outside the accuracy bound"
        notes.append(f"qkernels {r['op']} WRONG at {r['shape']} {r['threads']} thread(s): "
                     f"{r['check']['mismatches']} of {r['check']['size']} outputs {how}")
    np_info = infos.get("numpy", {})
    if np_info.get("env_unset"):
        notes.append(f"numpy ran without {', '.join(np_info['env_unset'])} (set here; they slow OpenBLAS)")
    if "numpy" in infos and not np_info.get("blas_threads_set_at_runtime"):
        notes.append("numpy BLAS threads set by environment only (no threadpoolctl, no OpenBLAS symbol)")
    qinfo = infos.get("qkernels", {})
    amx = {lib: info["amx_tiles_permitted"] for lib, info in infos.items() if "amx_tiles_permitted" in info}
    if any(amx.values()):
        notes.append("AMX: " + ", ".join(f"{lib} {'asked for AMX tiles' if v else 'without AMX'}"
                                         for lib, v in sorted(amx.items()))
                     + " (arch_prctl XCOMP_PERM after its run); an AMX peer may run above the vpdpbusd peak")
    machine = {
        "cpu": _cpu_model(), "cpus": cpu_count(), "platform": platform.platform(),
        "python": platform.python_version(), "qkernels": qinfo.get("qkernels"),
        "qkernels_cpu_info": qinfo.get("cpu_info"), "clock": qinfo.get("clock"),
        "int8_peak": qinfo.get("int8_peak"),
        "numpy": np_info.get("numpy") or qinfo.get("numpy"),
        "blas": np_info.get("blas"), "onnxruntime": infos.get("ort", {}).get("onnxruntime"),
        "onnx": infos.get("ort", {}).get("onnx"), "loadavg_before": load_before, "amx_tiles_permitted": amx,
        "openvino": infos.get("openvino", infos.get("openvino-f32", {})).get("openvino"),
    }
    return {"results": results, "infos": infos, "notes": notes, "failed": failed, "wrong": wrong,
            "machine": machine}


# ---------------------------------------------------------------- the report

def make_report(got: dict, rows: list, targets: list, notes: list, *, settings: dict, suite: str | None = None,
                **more) -> dict:
    """A suite's report: ``settings``, its items and other entries (``more``), then the
    parts :func:`collect` (``got``) gives every suite, ``rows``, ``targets`` and ``notes``
    (before collect's); ``ok`` unless a worker failed or a qkernels result is wrong."""
    return {
        "schema": 1, **({"suite": suite} if suite else {}),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": settings, **more, "machine": got["machine"], "results": got["results"], "rows": rows,
        "targets": targets, "notes": notes + got["notes"], "ok": not got["wrong"] and not got["failed"],
        "wrong_results": bool(got["wrong"]),
    }


def run_setup(quick: bool, libs, timing: dict | None = None) -> tuple[dict, list[str], list]:
    """The start of a suite's run: its batch settings (``timing``, else the quick or full
    ones), its notes so far and its libraries, ONNX Runtime's (``ort``, ``ort-noamx``)
    dropped with a note when it does not import, the peers with AMX denied
    (``*-noamx``) dropped on a CPU without AMX."""
    from .peak import NOAMX, has_amx
    libs = list(libs)
    notes: list[str] = []
    if "ort" in libs and not (peers.have("onnxruntime") and peers.have("onnx")):
        libs = [lib for lib in libs if lib not in ("ort", "ort" + NOAMX)]
        notes.append("ONNX Runtime columns skipped: onnxruntime and onnx are not both importable "
                     "(pip install onnxruntime onnx)")
    if any(lib.endswith(NOAMX) for lib in libs) and not has_amx():
        libs = [lib for lib in libs if not lib.endswith(NOAMX)]   # the same as the peers themselves here
    return dict(timing or SETTINGS["quick" if quick else "full"]), notes, libs


# ---------------------------------------------------------------- tables

def cell(x, spec: str = "{:.1f}", width: int = 8) -> str:
    """``x`` formatted by ``spec``, right-aligned in ``width``; ``-`` when None."""
    return spec.format(x).rjust(width) if x is not None else "-".rjust(width)


def isa_line(m: dict, what: str, kernels_key: str = "gemm_kernels") -> str:
    """The first line of a table: qkernels' version, ISA path and kernels (``cpu_info()``'s
    ``kernels_key``), the machine."""
    qi = (m.get("qkernels_cpu_info") or {})
    kernels = qi.get(kernels_key) or qi.get("gemm_kernel") or "?"
    if isinstance(kernels, (list, tuple)):
        kernels = ", ".join(kernels)
    return (f"qkernels {m.get('qkernels')} {what} bench: ISA {qi.get('isa', '?')} "
            f"(kernels {kernels}), {m['cpu']}, {m['cpus']} CPU(s)")


def peak_line(m: dict) -> str:
    """How the ``% peak`` column was computed (ops/cycle, clock and how it was found)."""
    pk, clk = m.get("peak") or {}, m.get("clock") or {}
    if pk.get("measured_gops_per_core"):
        return (f"% peak = qkernels GOP/s over the measured {pk['dtype']} peak, {pk['measured_gops_per_core']:.0f} "
                f"GOP/s per core ({pk['measured_by']}; = {pk['ops_per_cycle_per_core']} ops/cycle at the "
                f"{clk.get('ghz')} GHz clock) x cores used")
    if not pk.get("ops_per_cycle_per_core") or not clk.get("ghz"):
        return f"% peak: no peak for ISA {pk.get('isa')} (clock {clk.get('ghz')}, {clk.get('method', '?')})"
    opc, ghz = pk["ops_per_cycle_per_core"], clk["ghz"]
    return (f"% peak = qkernels GOP/s over {opc} {pk['dtype']} ops/cycle/core x {ghz:.2f} GHz "
            f"(= {opc * ghz:.0f} GOP/s per core) x cores used; clock {clk.get('method')}"
            + ("; 7-bit-weight rows: vpmaddubsw, 2x the ops/cycle" if pk["dtype"] == "int8" and pk.get("isa") == "avx2"
               else ""))


def blas_label(m: dict) -> str:
    """numpy's version and BLAS, e.g. ``numpy 2.4.6 float32 (scipy-openblas 0.3.31 Haswell)``."""
    blas = m.get("blas") or {}
    return (f"numpy {m.get('numpy')} float32 "
            f"({blas.get('name', 'BLAS')} {blas.get('version', '')} {blas.get('corename', '')}".rstrip() + ")")


def busy_mark(row: dict) -> str:
    return "  (busy machine)" if (row["foreign_cpus"] or 0) > FOREIGN_CPUS_WARN else ""


def format_footer(report: dict) -> list[str]:
    """The lines closing every suite's table: targets met or not, then the notes."""
    lines = []
    if report["targets"]:
        lines += ["", "targets:"]
        for t in report["targets"]:
            lines.append(f"  {'met    ' if t['met'] else 'NOT MET'}  {t['target']}: {t['shape']}, "
                         f"{t['threads']} thr, ratio {t['ratio']:.2f}")
    for note in report["notes"]:
        lines.append(f"note: {note}")
    return lines


# ---------------------------------------------------------------- the command line

def run_cli(args, select, run, fmt) -> int:
    """``qkernels bench``: print the table, optionally save JSON.

    ``select(labels, quick=)``, ``run(items, threads, quick=, rounds=, isa=, progress=,
    wait_idle_s=)`` and ``fmt(report)`` are the suite's (:meth:`Suite.cli`).
    Exit status (:func:`finish_cli`): 1 when a qkernels result is wrong or a worker failed,
    2 for a usage error, 3 when ``--compare`` found a regression beyond the noise, else 0
    (missing targets do not fail the command: they are reported)."""
    quick = bool(getattr(args, "quick", False))
    labels = getattr(args, "shapes", None)
    try:
        shape_list = select(labels, quick=quick)
    except ValueError as exc:
        print(f"qkernels bench: {exc}", file=sys.stderr)
        return 2
    threads_list = list(dict.fromkeys(getattr(args, "threads", None) or [1, cpu_count()]))
    if any(t < 1 for t in threads_list):
        print("qkernels bench: --threads must be positive", file=sys.stderr)
        return 2
    rounds = getattr(args, "rounds", None) or 1
    baseline_path, plot_path = getattr(args, "compare", None), getattr(args, "plot", None)
    baseline = None
    if baseline_path:                         # read first: a bad baseline fails before minutes of timing
        try:
            with open(baseline_path) as f:
                baseline = json.load(f)
        except (OSError, ValueError) as exc:
            print(f"qkernels bench: cannot read the baseline {baseline_path!r}: {exc}", file=sys.stderr)
            return 2
    t0 = time.perf_counter()

    def progress(msg):
        print(msg, file=sys.stderr, flush=True)

    report = run(shape_list, threads_list, quick=quick, rounds=rounds, isa=getattr(args, "isa", None),
                 progress=progress, wait_idle_s=getattr(args, "wait_idle", None) or 0.0)
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    return finish_cli(report, fmt, path=getattr(args, "json", None), baseline=baseline,
                      baseline_path=baseline_path, plot_path=plot_path)


def finish_cli(report: dict, fmt, *, path=None, baseline=None, baseline_path=None, plot_path=None) -> int:
    """The end of ``qkernels bench``: compare with ``baseline`` (a loaded report), save
    JSON to ``path``, print the table (and the comparison), draw ``plot_path``.

    Exit status: 1 when a qkernels result is wrong or a worker failed; else 2 when the
    baseline is of another suite; else :data:`compare.EXIT_REGRESSION` (3) when a
    qkernels measurement regressed beyond the noise threshold; else 0."""
    cmp, rc = None, 0
    if baseline is not None:
        try:
            cmp = compare.compare_reports(baseline, report)
        except compare.CompareError as exc:
            print(f"qkernels bench: --compare: {exc}", file=sys.stderr)
            rc = 2
        else:
            report["comparison"] = dict(cmp, baseline=baseline_path, regressed=len(cmp["regressed"]))
            rc = compare.EXIT_REGRESSION if cmp["regressed"] else 0
    if path:                                  # saved first: a closed stdout must not lose it
        with open(path, "w") as f:
            json.dump(report, f, indent=1)
            f.write("\n")
    try:
        print(fmt(report))
        print(f"({report['wall_s']} s)" + (f"; saved {path}" if path else ""))
        if cmp is not None:
            print()
            print(compare.format_text(cmp, baseline_path or "baseline"))
        sys.stdout.flush()
    except BrokenPipeError:                   # e.g. piped into head
        sys.stdout = open(os.devnull, "w")
    if plot_path:
        try:
            compare.plot_speedups(report, plot_path)
        except ImportError:
            print("qkernels bench: --plot skipped: it needs matplotlib, which is not installed "
                  "(pip install 'qkernels[plot]')", file=sys.stderr)
        else:
            print(f"wrote the plot {plot_path}")
    return rc if report["ok"] else 1
