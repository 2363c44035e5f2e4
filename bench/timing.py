"""What runs inside a timed worker process: the timing loop, the records it posts and
the worker's entry (a JSON spec in, JSON results out).

Imports neither qkernels nor numpy (see :mod:`worker`, which loads this folder on its own).
"""
from __future__ import annotations

import json
import sys
import time

#: The line before a worker's JSON results on its stdout (whatever the libraries print before).
MARKER = "@@QKBENCH@@"


def median(xs):
    xs = sorted(xs)
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else 0.5 * (xs[mid - 1] + xs[mid])


def time_call(fn, min_time: float, repeats: int, warmup: float) -> dict:
    """Median and minimum seconds per call of ``fn`` over ``repeats`` batches,
    each batch at least ``min_time`` seconds, after ``warmup`` seconds of calls."""
    clock = time.perf_counter
    end = clock() + warmup
    calls = 0
    while calls < 2 or clock() < end:
        fn()
        calls += 1
    number = 1
    while True:
        t0 = clock()
        for _ in range(number):
            fn()
        dt = clock() - t0
        if dt >= min_time:
            break
        number = max(number * 2, int(number * min_time / max(dt, 1e-9) * 1.2))
    per_call = [dt / number]
    for _ in range(repeats - 1):
        t0 = clock()
        for _ in range(number):
            fn()
        per_call.append((clock() - t0) / number)
    return {"median_s": median(per_call), "min_s": min(per_call), "number": number, "repeats": repeats}


def check_failed(check) -> bool:
    """Did a result's ``check`` fail: not exact (int8), or outside its accuracy bound
    (``within_bound``, fp16)? None (no check) is no failure."""
    return bool(check) and (check.get("exact") is False or check.get("within_bound") is False)


def record(item, lib: str, op: str, threads: int, check=None, **more) -> dict:
    """A result record without timing (``more``: e.g. ``error=...``) of ``item`` (any
    suite item: ``label``, ``ops`` (None: no GOP/s) and ``record_fields()``)."""
    return {"lib": lib, "op": op, "threads": threads, "shape": item.label, **item.record_fields(),
            "check": check, **more}


def add_gops(rec: dict, ops: int | None) -> None:
    """GOP/s of a timed record doing ``ops`` operations per call (None: not counted, none)."""
    if ops is None:
        return
    rec["gops_median"] = ops / rec["median_s"] / 1e9
    rec["gops_max"] = ops / rec["min_s"] / 1e9


def measure(item, lib: str, op: str, threads: int, timing: dict, fn, check=None, timer=None) -> dict:
    """The timing record of ``fn`` on ``item``; a blocking wrong ``check`` is not timed.
    ``timer(fn, timing)``: how ``fn`` is timed (default :func:`time_call`)."""
    rec = record(item, lib, op, threads, check)
    if check_failed(check) and check.get("blocking", False):
        rec["error"] = "wrong result: not timed"
        return rec
    rec.update(timer(fn, timing) if timer else time_call(fn, **timing))
    add_gops(rec, item.ops)
    return rec


def compare_exact(got, want) -> dict:
    """An integer output against its exact reference: ``exact``, how many differ and by how much."""
    import numpy as np
    diff = np.abs(got.astype(np.int64) - want.astype(np.int64))
    bad = int(np.count_nonzero(diff))
    return {"exact": bad == 0, "mismatches": bad, "size": int(diff.size),
            "max_abs_diff": int(diff.max()) if diff.size else 0}


def worker_problems(spec: dict, cls, make):
    """``(item, problem)`` for every item of a worker's spec (``cls``: the item type,
    ``make(item, seed)``: its problem builder)."""
    for fields in spec["shapes"]:
        item = cls(**fields)
        yield item, make(item, spec["seed"])


def worker_main(workers: dict) -> int:
    """A worker process: a JSON spec on stdin, ``workers[spec["lib"]](spec, out)`` fills
    ``out``, JSON results on stdout after :data:`MARKER`. ``<lib>-noamx`` runs the worker
    of ``<lib>`` with AMX denied (:func:`peak.deny_amx_tiles`), its records under its own name."""
    from .peak import NOAMX, amx_tiles_permitted, deny_amx_tiles
    spec = json.loads(sys.stdin.read())
    lib = spec["lib"]
    out = {"lib": lib, "threads": spec["threads"], "results": [], "info": {}}
    base = lib[:-len(NOAMX)] if lib.endswith(NOAMX) else lib
    if base != lib:               # a peer with AMX denied: before it is imported
        deny_amx_tiles()
    workers[base](spec, out)
    for r in out["results"]:
        r["lib"] = lib
    # did the library ask Linux for AMX tiles (it does before using them)?
    out["info"]["amx_tiles_permitted"] = amx_tiles_permitted()
    sys.stdout.write(f"\n{MARKER}" + json.dumps(out) + "\n")
    return 0
