"""Whole TFLite models: qkernels' Session beside LiteRT with XNNPACK (its default
delegate; on a CPU with AMX also in a process denied AMX tiles, ``bench/peak.py``, so that
XNNPACK runs its AVX-512 VNNI kernels as qkernels does) and LiteRT's built-in kernels
(``BUILTIN_WITHOUT_DEFAULT_DELEGATES``, the kernels qkernels matches bit for bit), one
thread, each library and model in its own process (idle threads of one library never
steal the other's core).

    python bench/tflite_models.py [--models DIR_OR_FILES ...] [--threads 1] [--repeats 7]

Prints one line per model: milliseconds per run (median of ``--repeats`` batches of
at least 0.3 s each, after a warm-up) and the ratios qkernels / peer (below 1: qkernels
is faster), plus whether qkernels' output equals LiteRT built-in's on the timed input.
A run is the same work on each side: the input set, the model run, the output copied
out (``Session.run``; LiteRT's ``set_tensor``, ``invoke``, ``get_tensor``).
The CPU is named on the first line (lscpu). Skipped with a note without ai-edge-litert.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
LIBS = ("qkernels", "xnnpack", "xnnpack-noamx", "builtin")


def _peak():
    """bench/peak.py (import-light: no qkernels, no numpy), loaded from beside this file."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("qk_bench_peak", HERE / "peak.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown CPU"
    info = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    get = lambda k: info.get(k, "?").strip()   # noqa: E731
    return f"{get('Model name')} (family {get('CPU family')} model {get('Model')})"


def _worker(lib: str, path: str, threads: int, repeats: int, seed: int) -> dict:
    """Runs in its own process: times one library on one model; returns ms and the output."""
    import time

    if lib.endswith("-noamx"):   # before LiteRT starts: its XNNPACK then takes its non-AMX kernels
        _peak().deny_amx_tiles()
        lib = lib[:-len("-noamx")]
    import numpy as np

    if lib == "qkernels":
        from qkernels.graph import Session
        s = Session(path, num_threads=threads)
        inp = s.get_inputs()[0]
        shape, dtype, name = inp.shape, inp.dtype, inp.name
    else:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
        kw = {} if lib == "xnnpack" else {"experimental_op_resolver_type":
                                          OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
        it = Interpreter(model_path=path, num_threads=threads, **kw)
        it.allocate_tensors()
        d = it.get_input_details()[0]
        shape, dtype = tuple(d["shape"]), np.dtype(d["dtype"])
    rng = np.random.default_rng(seed)
    x = (rng.integers(np.iinfo(dtype).min, np.iinfo(dtype).max + 1, shape).astype(dtype) if dtype.kind in "iu"
         else rng.normal(0, 1, shape).astype(dtype))
    if lib == "qkernels":
        def run():
            return s.run(None, {name: x})[0]
    else:
        in_index, out_index = d["index"], it.get_output_details()[0]["index"]

        def run():      # the same work as Session.run: the input set, the model run, the output copied
            it.set_tensor(in_index, x)
            it.invoke()
            return it.get_tensor(out_index)
    first = run()
    end = time.perf_counter() + 0.5
    while time.perf_counter() < end:
        run()
    per_call = []
    for _ in range(repeats):
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < 0.3:
            run()
            n += 1
        per_call.append((time.perf_counter() - t0) / n)
    per_call.sort()
    return {"ms": 1e3 * per_call[len(per_call) // 2], "out": first.tobytes().hex(), "dtype": first.dtype.str}


def _run_one(lib: str, path: Path, args) -> dict:
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(args.threads), QKERNELS_NUM_THREADS=str(args.threads))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", lib, str(path), "--threads", str(args.threads),
           "--repeats", str(args.repeats)]
    got = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    lines = [line for line in got.stdout.splitlines() if line.startswith("{")]
    if got.returncode or not lines:
        return {"error": (got.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(lines[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="*", default=[str(HERE / "tflite")],
                   help="model files or folders of .tflite files (default: bench/tflite)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--worker", nargs=2, metavar=("LIB", "MODEL"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(args.worker[0], args.worker[1], args.threads, args.repeats, seed=0)))
        return 0
    import importlib.util
    if importlib.util.find_spec("ai_edge_litert") is None:
        print("ai-edge-litert is not installed: no LiteRT peer to compare with (pip install ai-edge-litert)")
        return 0
    models = []
    for m in args.models:
        path = Path(m)
        models += sorted(path.glob("*.tflite")) if path.is_dir() else [path]
    print(f"{_cpu()}, {args.threads} thread(s); ms per run, median of {args.repeats}")
    libs = LIBS if _peak().has_amx() else tuple(lib for lib in LIBS if not lib.endswith("-noamx"))
    print(f"{'model':<24}{'qkernels':>10}{'XNNPACK':>10}" + (f"{'XNN noAMX':>10}" if len(libs) == 4 else "")
          + f"{'builtin':>10}{'qk/XNN':>9}" + (f"{'qk/XNNnA':>9}" if len(libs) == 4 else "")
          + f"{'qk/builtin':>11}  bit-exact vs builtin")
    for path in models:
        res = {lib: _run_one(lib, path, args) for lib in libs}
        ms = {lib: r.get("ms") for lib, r in res.items()}
        cells = [f"{ms[lib]:>10.3f}" if ms[lib] else f"{'error':>10}" for lib in libs]
        peers = [("xnnpack", 9)] + ([("xnnpack-noamx", 9)] if len(libs) == 4 else []) + [("builtin", 11)]
        ratio = [f"{ms['qkernels'] / ms[peer]:>{w}.2f}" if ms["qkernels"] and ms[peer] else f"{'-':>{w}}"
                 for peer, w in peers]
        same = (res["qkernels"].get("out") == res["builtin"].get("out")) if ms["qkernels"] and ms["builtin"] else None
        print(f"{path.stem:<24}{''.join(cells)}{''.join(ratio)}  {same}")
        for lib, r in res.items():
            if "error" in r:
                print(f"    {lib}: {r['error']}")
    return 0


class _Suite:
    """``qkernels bench --suite tflite_models``: this table (``--threads``: its first count;
    ``--tflite-dir``: the models' folder; ``--shapes``: model names; ``--quick``: 3 repeats)."""

    def cli(self, args) -> int:
        folder = Path(args.tflite_dir) if args.tflite_dir else HERE / "tflite"
        models = [str(folder / f"{name}.tflite") for name in args.shapes] if args.shapes else [str(folder)]
        return main(["--models", *models, "--threads", str((args.threads or [1])[0]),
                     "--repeats", "3" if args.quick else "7"])


SUITE = _Suite()


if __name__ == "__main__":
    sys.exit(main())
