"""Seeded fuzzing of qkernels: mutated ONNX models (lane ``models``) and hostile calls of
the public API (lane ``api``), run in subprocess batches with per-case timeouts.

    python fuzz/run.py models --cases 300 --seed 0 --jobs 2
    python fuzz/run.py api --cases 300 --seed 0
    python fuzz/run.py all --cases 20000 --jobs 2
    python fuzz/run.py models --seed 0 --case 17 --verbose     # one case, in this process

Exit status 1 when any case crashed, hung, raised a raw exception or gave a wrong result.
The library is imported only as the installed ``qkernels`` package.
"""
from __future__ import annotations

import argparse
import collections
import faulthandler
import json
import os
import queue
import re
import resource
import select
import subprocess
import sys
import tempfile
import signal
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import LANES, lane_module, place, run_case  # noqa: E402

BATCH = 50


# ----------------------------------------------------------------------------- worker

def _limit_memory(gib: float) -> None:
    """Unbounded allocations become a MemoryError (a raw exception), not an OOM kill."""
    limit = int(gib * (1 << 30))
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def worker(lane: str, seed: int, cases: list[int], mem_gib: float) -> None:
    """Run ``cases`` in order; one JSON line per finished case on the original stdout."""
    results = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)   # whatever the library prints must not mix with the results
    faulthandler.enable()                       # a crash prints the Python stack (to stderr)
    faulthandler.register(signal.SIGUSR1)       # and so does a hang, when the parent asks
    _limit_memory(mem_gib)
    lane_module(lane).warm_up()
    place(__file__)   # imports what classifying needs, so the first exception costs no time
    results.write(json.dumps({"ready": True}) + "\n")
    for i in cases:
        results.write(json.dumps(run_case(lane, seed, i)) + "\n")


# ----------------------------------------------------------------------------- parent

def _worker_cmd(lane, seed, cases, mem_gib):
    flags = [f for f, on in (("-I", sys.flags.isolated), ("-E", sys.flags.ignore_environment),
                             ("-s", sys.flags.no_user_site)) if on]
    return [sys.executable, *flags, os.path.abspath(__file__), "--worker", lane, "--seed", str(seed),
            "--mem-gib", str(mem_gib), "--case", ",".join(map(str, cases))]


def _run_batch(lane, seed, cases, timeout, mem_gib, record) -> None:
    """Run a batch in a worker; when the worker dies or hangs, the case it was on is
    recorded (crash bisection: finished cases are known from their lines) and the rest
    of the batch continues in a fresh worker."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    todo = list(cases)
    while todo:
        with tempfile.TemporaryFile() as err:
            p = subprocess.Popen(_worker_cmd(lane, seed, todo, mem_gib), stdout=subprocess.PIPE, stderr=err,
                                 env=env)
            ready, buf, died = False, b"", None
            deadline = time.monotonic() + max(60, timeout)
            while todo and died is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    p.send_signal(signal.SIGUSR1)   # the stack of the hang, then the end
                    time.sleep(0.5)
                    p.kill()
                    died = "hang"
                    break
                r, _, _ = select.select([p.stdout], [], [], left)
                if not r:
                    continue
                chunk = os.read(p.stdout.fileno(), 65536)
                if not chunk:
                    died = "crash"
                    break
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    msg = json.loads(line)
                    if not msg.get("ready"):
                        todo.pop(0)
                        record(msg)
                    ready = True
                    deadline = time.monotonic() + timeout
            p.stdout.close()
            rc = p.wait()
            if died is None:
                continue
            err.seek(0)
            tail = err.read()[-20000:].decode("utf-8", "replace")
        if not ready:   # the worker could not even start: nothing to bisect
            raise SystemExit(f"fuzz worker failed to start (exit {rc}):\n{tail}")
        if not todo:
            break
        why = f"timeout after {timeout:g}s" if died == "hang" else \
            (f"signal {-rc}" if rc < 0 else f"exit status {rc}")
        record({"lane": lane, "case": todo.pop(0), "status": died, "type": why, "desc": "", **_stack(tail)})


def _stack(stderr: str) -> dict:
    """Where a dead or hung worker was: the innermost library frame of the last stack
    faulthandler printed (innermost first), and that stack as the message."""
    dump = stderr[stderr.rfind("Current thread"):] if "Current thread" in stderr else stderr
    frames = re.findall(r'File "(.*)", line (\d+) in (\S+)', dump)
    where = next((f"{place(f)}:{n}" for f, n, _ in frames if place(f)), "")
    return {"where": where, "message": " <- ".join(f"{os.path.basename(f)}:{n} {fn}" for f, n, fn in frames[:6])
            or (stderr.strip().splitlines() or [""])[-1][:300]}


def run_lane(lane: str, seed: int, cases: list[int], jobs: int, timeout: float, mem_gib: float,
             progress: bool) -> list[dict]:
    batches = queue.Queue()
    for k in range(0, len(cases), BATCH):
        batches.put(cases[k:k + BATCH])
    results, lock = [], threading.Lock()

    def record(r):
        with lock:
            results.append(r)
            if progress and len(results) % 100 == 0:
                print(f"  {lane}: {len(results)}/{len(cases)}", file=sys.stderr, flush=True)

    def job():
        while True:
            try:
                batch = batches.get_nowait()
            except queue.Empty:
                return
            _run_batch(lane, seed, batch, timeout, mem_gib, record)

    threads = [threading.Thread(target=job) for _ in range(max(1, jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(results, key=lambda r: r["case"])


# ----------------------------------------------------------------------------- report

STATUSES = ("ok", "clean", "raw", "crash", "hang", "wrong")
FAILING = ("raw", "crash", "hang", "wrong")


def summary(lane: str, seed: int, results: list[dict], seconds: float) -> str:
    counts = collections.Counter(r["status"] for r in results)
    lines = [f"{lane:<7} {len(results):>6} {counts['ok']:>6} {counts['clean']:>6} {counts['raw']:>6} "
             f"{counts['crash']:>6} {counts['hang']:>6} {counts['wrong']:>6} {seconds:>7.0f}s"]
    for status, title in (("raw", "raw exceptions"), ("wrong", "wrong results"), ("crash", "crashes"),
                          ("hang", "hangs")):
        groups = collections.defaultdict(list)
        for r in results:
            if r["status"] == status:
                groups[(r["type"], r["where"])].append(r)
        if not groups:
            continue
        lines.append(f"  {title} ({counts[status]}), by type and place:")
        for (typ, where), rs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
            ex = rs[0]
            lines.append(f"    {len(rs):>5}  {typ:<22} {where or '-'}")
            lines.append(f"           e.g. case {ex['case']} ({ex['desc'][:90]}): {ex['message'][:150]}")
            lines.append(f"           python fuzz/run.py {lane} --seed {seed} --case {ex['case']} --verbose")
    return "\n".join(lines)


def header(args) -> str:
    import qkernels
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?") \
        if os.path.exists("/proc/cpuinfo") else "?"
    return (f"qkernels fuzz: seed {args.seed}, {args.cases} case(s) per lane, jobs {args.jobs}, timeout "
            f"{args.timeout}s, RLIMIT_AS {args.mem_gib} GiB\nqkernels {qkernels.__file__}\ncpu {cpu}\n"
            f"{'lane':<7} {'cases':>6} {'ran':>6} {'clean':>6} {'raw':>6} {'crash':>6} {'hang':>6} "
            f"{'wrong':>6} {'time':>8}")


def one_case(lane: str, seed: int, case: int, mem_gib: float, timeout: float, verbose: bool) -> dict:
    _limit_memory(mem_gib)
    r = run_case(lane, seed, case, verbose=verbose, alarm=max(1, round(timeout)))
    print(f"{lane} seed {seed} case {case}: {r['status']}" + (f" {r['type']} at {r['where']}" if r["type"] else ""))
    if r["message"]:
        print(f"  {r['message']}")
    return r


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("lane", choices=(*LANES, "all"))
    ap.add_argument("--cases", type=int, default=300, help="cases per lane (default 300)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--case", help="run only these case numbers (comma-separated), in this process")
    ap.add_argument("--verbose", action="store_true", help="with --case: print the mutation and the traceback")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes at once (default 1)")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per case (default 10)")
    ap.add_argument("--mem-gib", type=float, default=4.0, help="address-space limit of a worker (default 4)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    lanes = LANES if args.lane == "all" else (args.lane,)
    if args.worker:
        worker(args.lane, args.seed, [int(c) for c in args.case.split(",")], args.mem_gib)
        return 0
    if args.case is not None:
        results = [one_case(lane, args.seed, int(c), args.mem_gib, args.timeout, args.verbose)
                   for lane in lanes for c in args.case.split(",")]
        return int(any(r["status"] in FAILING for r in results))
    print(header(args), flush=True)
    failed = False
    for lane in lanes:
        t0 = time.monotonic()
        results = run_lane(lane, args.seed, list(range(args.cases)), args.jobs, args.timeout, args.mem_gib,
                           progress=sys.stderr.isatty())
        print(summary(lane, args.seed, results, time.monotonic() - t0), flush=True)
        failed |= any(r["status"] in FAILING for r in results)
    return int(failed)


if __name__ == "__main__":
    sys.exit(main())
