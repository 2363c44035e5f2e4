"""``qkernels bench --suite f16``: fp16 (and fp32) GEMM speed beside numpy float32 and float16.

The shapes are the int8 suite's (:data:`gemm.SHAPES`, ``--quick``:
:data:`gemm.QUICK`) less its 7-bit-weight twins (``-w7``): those differ from
their full-range rows only in the int8 weights' range, so in fp16 they are the same GEMM.

What is timed, per shape and per thread count:

* ``qkernels``: ``qk.matmul(a16, qk.pack_weights(b16), out=y16)`` on float16 arrays
  (float16 in, float16 out; the weights packed once, outside the timing);
* ``qkernels-f32``: the same call on float32 copies of the same values (qkernels' fp32
  kernels; float32 out);
* ``numpy-f32``: ``np.matmul(a32, b32, out=c32)`` of the same values in float32 (its
  BLAS, threads set as in the GEMM suite);
* ``numpy-f16``: ``np.matmul(a16, b16, out=c16)``: numpy's float16 matmul has no BLAS
  and runs on one thread whatever the thread count (about 0.4 GOP/s), so it is timed
  within a small budget per shape (:data:`NUMPY_F16_BUDGET`: a warm-up call, then at
  most a few calls) and not at all above :data:`NUMPY_F16_MAX_MNK` (M*N*K = 2^27:
  seconds per call), with a note.

Before timing, every qkernels output is compared with a float64 reference within the
accuracy bound of the fp16 contract (:mod:`qkernels._float`, ``tests/test_float.py``)::

    |got - ref| <= |ref| * 2**-11 + e * (|a| @ |b|) + 2**-25

with ``e = K * 2**-23`` (fp32 sums: x86, plain NEON) or ``8 * 2**-11`` (Arm's FP16
arithmetic kernel, ``cpu_info()["f16_kernel"]`` naming ``neonfp16``). An output outside
the bound posts no number and makes the command exit with status 1; the largest error
over ``|a| @ |b|`` is recorded. The fp32 call is held to the fp32 contract the same way
(``|ref| * 2**-24 + K * 2**-23 * (|a| @ |b|) + 2**-126``). Processes, timing, rounds, idle waits and the JSON
report are :mod:`harness`'s machinery.

Imports neither qkernels nor numpy at module level (:mod:`worker` says why).
"""
from __future__ import annotations

import time
from typing import NamedTuple

from . import gemm, peers
from .gemm import Shape
from .harness import Suite, Target, add_peak, blas_label, busy_mark, cell, collect, format_footer, gops_ms, isa_line, \
    peak_line, ratio, run_only, run_setup, selector, settings_of
from .timing import measure, median, time_call, worker_problems

#: The shapes of this suite: the int8 suite's, less the 7-bit-weight variants.
SHAPES: tuple[Shape, ...] = tuple(s for s in gemm.SHAPES if s.wbits >= 8)
QUICK: tuple[str, ...] = tuple(lab for lab in gemm.QUICK if lab in {s.label for s in SHAPES})

#: The targets, checked at the end of every run (reported, never a failure).
TARGET_RATIO_NUMPY_F32 = 0.9    # fp16 GEMM >= 0.9x numpy float32 GOP/s
TARGET_RATIO_NUMPY_F16 = 20.0   # fp16 GEMM >= 20x numpy float16 GOP/s

LIBS = ("qkernels", "qkernels-f32", "numpy", "numpy-f16")
#: Report columns: name -> (worker library, op) of its records.
COLUMNS = {"qkernels": ("qkernels", "matmul-f16"), "qkernels-f32": ("qkernels-f32", "matmul-f32"),
           "numpy-f32": ("numpy", "matmul-f32"), "numpy-f16": ("numpy-f16", "matmul-f16")}
TITLES = {"qkernels": "qkernels", "qkernels-f32": "qk f32", "numpy-f32": "numpy f32", "numpy-f16": "numpy f16"}

#: numpy float16 is timed only up to this M*N*K (about 0.3 s per call at 0.4 GOP/s).
NUMPY_F16_MAX_MNK = 1 << 27
#: numpy float16's time per shape: a warm-up call, then calls while the budget lasts,
#: at most ``max_repeats`` (the usual batches when they fit in the budget).
NUMPY_F16_BUDGET = {"quick": {"budget_s": 0.25, "max_repeats": 3},
                    "full": {"budget_s": 1.0, "max_repeats": 5}}

#: The accumulation error per unit of |a| @ |b| of Arm's FP16-arithmetic kernel.
E_FP16_ARITH = 8 * 2.0 ** -11


#: The shapes named by ``labels`` (all, or the quick subset, when None).
shapes = selector(SHAPES, QUICK)


# ---------------------------------------------------------------- problems and the check

class Problem(NamedTuple):
    """Deterministic data of one shape: the same in every worker process."""
    shape: Shape
    a: object          # float16 (M, K), standard normal
    b: object          # float16 (K, N), normal with variance 1/K (outputs of about unit size)


def make_problem(shape: Shape, seed: int = 0) -> Problem:
    import numpy as np
    rng = np.random.default_rng([seed, shape.m, shape.n, shape.k, 16])
    a = rng.standard_normal((shape.m, shape.k)).astype(np.float16)
    b = (rng.standard_normal((shape.k, shape.n)) / np.sqrt(shape.k)).astype(np.float16)
    return Problem(shape, a, b)


def accumulation_error(k: int, fp16_arith: bool) -> float:
    """``e`` of the bound: per unit of ``|a| @ |b|``."""
    return E_FP16_ARITH if fp16_arith else k * 2.0 ** -23


def accuracy_check(got, p: Problem, fp16_arith: bool = False) -> dict:
    """``got`` (float16 (M, N); float32: the fp32 call) against the float64 reference of
    ``p`` within its contract's bound; ``within_bound`` is the verdict, ``mismatches`` the
    outputs outside it (NaN counts), ``max_err_rel`` the largest ``|got - ref| / (|a| @ |b|)``."""
    import numpy as np
    a64, b64 = p.a.astype(np.float64), p.b.astype(np.float64)
    ref = a64 @ b64
    scale = np.abs(a64) @ np.abs(b64)
    f32 = got.dtype == np.float32
    e = p.shape.k * 2.0 ** -23 if f32 else accumulation_error(p.shape.k, fp16_arith)
    err = np.abs(np.asarray(got, np.float64) - ref)
    bound = np.abs(ref) * 2.0 ** -24 + e * scale + 2.0 ** -126 if f32 else np.abs(ref) * 2.0 ** -11 + e * scale + 2.0 ** -25
    outside = int(np.count_nonzero(~(err <= bound)))
    rel = np.divide(err, scale, out=err.copy(), where=scale > 0)
    return {"within_bound": outside == 0, "mismatches": outside, "size": int(err.size),
            "max_err_rel": float(rel.max()) if rel.size else 0.0,
            "max_err_over_bound": float((err / bound).max()) if err.size else 0.0,
            "max_abs_err": float(err.max()) if err.size else 0.0,
            "e": e, "accumulation": "fp16 chunks of 8, fp32 between" if fp16_arith and not f32 else "fp32"}


def time_budgeted(fn, timing: dict, budget_s: float, max_repeats: int) -> dict:
    """:func:`timing.time_call`'s record of a slow ``fn`` within about ``budget_s``
    seconds: one warm-up call (its time the estimate), then the usual batches when they
    fit in the budget, else single calls while the budget lasts (at most ``max_repeats``;
    none: the warm-up call is the measurement, ``timed_once``)."""
    clock = time.perf_counter
    t0 = clock()
    fn()
    first = clock() - t0
    if timing["warmup"] + (timing["repeats"] + 2) * max(timing["min_time"], first) <= budget_s:
        return dict(time_call(fn, **timing), budget_s=budget_s)
    n = max(0, min(max_repeats, int((budget_s - first) / max(first, 1e-9))))
    per_call = []
    for _ in range(n):
        t0 = clock()
        fn()
        per_call.append(clock() - t0)
    return {"median_s": median(per_call or [first]), "min_s": min(per_call or [first]), "number": 1,
            "repeats": max(n, 1), "budget_s": budget_s, "timed_once": n == 0}


# ---------------------------------------------------------------- workers (in their own processes)

def _problems(spec: dict):
    return worker_problems(spec, Shape, make_problem)


def _worker_qkernels(spec: dict, out: dict) -> None:
    import numpy as np
    qk = peers.qkernels_setup(spec, out)
    fp16_arith = "neonfp16" in str(out["info"]["cpu_info"].get("f16_kernel", ""))
    for shape, p in _problems(spec):
        pw = qk.pack_weights(p.b)
        y = np.empty((shape.m, shape.n), np.float16)

        def call(a=p.a, pw=pw, y=y):
            return qk.matmul(a, pw, out=y)

        call()                                      # packs B once, outside the timing
        check = dict(accuracy_check(y, p, fp16_arith), blocking=True)
        rec = measure(shape, "qkernels", "matmul-f16", spec["threads"], spec["timing"], call, check)
        packed = pw.nbytes                         # what the packed weights hold (fp16 panels)
        rec["weights_bytes"] = {"f16_packed": packed or None, "f16": p.b.nbytes, "f32": shape.k * shape.n * 4}
        out["results"].append(rec)


def _worker_qkernels_f32(spec: dict, out: dict) -> None:
    import numpy as np
    qk = peers.qkernels_setup(spec, out)
    for shape, p in _problems(spec):
        a32, pw = p.a.astype(np.float32), qk.pack_weights(p.b.astype(np.float32))
        y = np.empty((shape.m, shape.n), np.float32)

        def call(a=a32, pw=pw, y=y):
            return qk.matmul(a, pw, out=y)

        call()
        check = dict(accuracy_check(y, p), blocking=True)
        out["results"].append(measure(shape, "qkernels-f32", "matmul-f32", spec["threads"], spec["timing"], call,
                                      check))


def _worker_numpy(spec: dict, out: dict) -> None:
    import numpy as np
    peers.numpy_setup(spec, out)
    peers.matmul_worker(spec, out, _problems(spec), lambda p: (p.a.astype(np.float32), p.b.astype(np.float32)))


def _worker_numpy_f16(spec: dict, out: dict) -> None:
    import numpy as np
    out["info"] = {"numpy": np.__version__}
    budget = spec["budget"]
    peers.matmul_worker(spec, out, _problems(spec), lambda p: (p.a, p.b), "numpy-f16", "matmul-f16",
                        timer=lambda fn, timing: time_budgeted(fn, timing, **budget))


WORKERS = {"qkernels": _worker_qkernels, "qkernels-f32": _worker_qkernels_f32, "numpy": _worker_numpy,
           "numpy-f16": _worker_numpy_f16}


# ---------------------------------------------------------------- the parent process

def _row(s: Shape, recs: dict, find) -> dict:
    """GOP/s and ms of each column, the ratios, the check."""
    gops, ms = gops_ms(recs)
    q, check = gops["qkernels"], recs["qkernels"].get("check") or {}
    return {"mnk": s.mnk, "ops": s.ops, "gops": gops, "ms": ms,
            "x_numpy_f32": ratio(q, gops["numpy-f32"]), "x_numpy_f16": ratio(q, gops["numpy-f16"]),
            "f32_x_numpy_f32": ratio(gops["qkernels-f32"], gops["numpy-f32"]),
            "f32_within_bound": (recs["qkernels-f32"].get("check") or {}).get("within_bound"),
            "numpy_f16_timed_once": recs["numpy-f16"].get("timed_once"),
            "qkernels_within_bound": check.get("within_bound"), "max_err_rel": check.get("max_err_rel"),
            "max_err_over_bound": check.get("max_err_over_bound"),
            "weights_bytes": recs["qkernels"].get("weights_bytes") or {"f32": s.k * s.n * 4}}


def _pow2(n: int) -> str:
    return f"2^{n.bit_length() - 1}" if n > 0 and n & (n - 1) == 0 else str(n)


def check_cell(row: dict) -> str:
    """``ok  9.9e-05  0.52``: within the bound (else ``OUT``), the largest error over
    ``|a| @ |b|`` and over the bound; ``-`` when not checked."""
    ok = row["qkernels_within_bound"]
    if ok is None:
        return "-"
    rel, over = row.get("max_err_rel"), row.get("max_err_over_bound")
    return f"{'ok' if ok else 'OUT':<4}" + cell(rel, "{:.1e}", 9) + cell(over, "{:.2f}", 10)


def weights_cell(wb: dict) -> str:
    """``2048/4096``: KiB of the packed fp16 weights / of the float32 matrix."""
    f16 = wb.get("f16_packed")
    return f"{cell(f16 and f16 / 1024, '{:.0f}', 0)}/{wb['f32'] / 1024:.0f}"


def legend(report: dict) -> str:
    b = report["settings"]["numpy_f16"]
    return (f"GOP/s = 2*M*N*K / median time per call; x f32, x f16: qkernels fp16 over numpy float32 and float16; "
            f"qk f32, f32/np: qkernels' fp32 GEMM on the same values, and over numpy float32; "
            f"each library and thread count in its own process. numpy f16: np.matmul on float16 (no BLAS, one "
            f"thread at any thread count), a warm-up call then at most {b['max_repeats']} calls in about "
            f"{b['budget_s']:g} s per shape ('*': the warm-up call alone), not timed ('-') above "
            f"M*N*K = {_pow2(b['max_mnk'])}. W KiB: packed fp16 weights / float32 B. check: qkernels "
            f"within |ref|*2^-11 + e*(|a|@|b|) + 2^-25 of the float64 reference (e = K*2^-23, 8*2^-11 with Arm FP16 "
            f"arithmetic), the largest error over |a|@|b| and over that bound")


def format_table(report: dict) -> str:
    """The human-readable table of a report made by :func:`run_bench`."""
    m = report["machine"]
    isa = (m.get("qkernels_cpu_info") or {}).get("isa", "?")
    lines = [isa_line(m, "fp16 GEMM", "f16_kernel"),
             "peers: " + blas_label(m) + f", numpy {m.get('numpy')} float16 (np.matmul, no BLAS)",
             legend(report), peak_line(m), ""]
    hdr = (f"{'ISA':<7}{'shape':<19}{'M x N x K':<16}{'thr':>3}" + "".join(f"{TITLES[c]:>10}" for c in COLUMNS)
           + f"{'% peak':>7}{'x f32':>7}{'x f16':>8}{'f32/np':>8}{'W KiB':>11}  check  err/|a||b| err/bound")
    lines += [hdr, "-" * len(hdr)]
    for r in report["rows"]:
        f16 = cell(r["gops"]["numpy-f16"], "{:.2f}", 9) + ("*" if r.get("numpy_f16_timed_once") else " ")
        lines.append(f"{isa:<7}{r['shape']:<19}{r['mnk']:<16}{r['threads']:>3}"
                     + cell(r["gops"]["qkernels"], "{:.1f}", 10) + cell(r["gops"]["qkernels-f32"], "{:.1f}", 10)
                     + cell(r["gops"]["numpy-f32"], "{:.1f}", 10)
                     + f16 + cell(r.get("pct_peak"), "{:.0f}", 7) + cell(r["x_numpy_f32"], "{:.2f}", 7) + cell(r["x_numpy_f16"], "{:.0f}", 8)
                     + cell(r["f32_x_numpy_f32"], "{:.2f}", 8)
                     + weights_cell(r["weights_bytes"]).rjust(11)
                     + f"  {check_cell(r)}" + busy_mark(r))
    return "\n".join(lines + format_footer(report))


def run_bench(shape_list, threads_list, *, quick: bool = False, rounds: int = 1, isa: str | None = None,
              seed: int = 0, libs=LIBS, progress=None, wait_idle_s: float = 0.0, timing: dict | None = None,
              numpy_f16_max_mnk: int = NUMPY_F16_MAX_MNK, numpy_f16_budget: dict | None = None) -> dict:
    """Run every (library, thread count) worker ``rounds`` times; return the report dict
    (``timing``: overrides the quick/full batch settings; ``numpy_f16_*``: numpy
    float16's size limit and time budget)."""
    timing, notes, libs = run_setup(quick, libs, timing)
    budget = dict(numpy_f16_budget or NUMPY_F16_BUDGET["quick" if quick else "full"])
    extra = {lib: (shape_list, {}) for lib in libs}
    if "numpy-f16" in libs:
        small = [s for s in shape_list if s.m * s.n * s.k <= numpy_f16_max_mnk]
        skipped = [s.label for s in shape_list if s not in small]
        if skipped:
            notes.append(f"numpy float16 not timed at {', '.join(skipped)}: M*N*K above "
                         f"{_pow2(numpy_f16_max_mnk)} (seconds per call)")
        run_only(libs, extra, "numpy-f16", small, {"budget": budget})
    got = collect(SUITE.name, libs, shape_list, threads_list, timing=timing, rounds=rounds, isa=isa,
                  seed=seed, progress=progress, wait_idle_s=wait_idle_s, extra_by_lib=extra)
    once = sorted({r["shape"] for r in got["results"] if r.get("timed_once")})
    if once:
        notes.append(f"numpy float16 timed once (its warm-up call alone: over the budget) at {', '.join(once)}")
    settings = settings_of("shapes", shape_list, threads_list, quick=quick, rounds=rounds, wait_idle_s=wait_idle_s,
                           timing=timing, seed=seed, isa=isa, numpy_f16=dict(budget, max_mnk=numpy_f16_max_mnk))
    report = SUITE.report(got, shape_list, threads_list, notes, settings,
                          shapes=[dict(s._asdict(), ops=s.ops) for s in shape_list])
    add_peak(report["rows"], report["machine"], "f16", lambda r: r["gops"]["qkernels"], shape_list)
    return report


SUITE = Suite("f16", COLUMNS, _row, tuple(
    Target(key, need, f"fp16 GEMM >= {need:g}x {what}")
    for key, need, what in (("x_numpy_f32", TARGET_RATIO_NUMPY_F32, "numpy float32"),
                            ("x_numpy_f16", TARGET_RATIO_NUMPY_F16, "numpy float16"))), shapes, run_bench, format_table)
