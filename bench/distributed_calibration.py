"""Calibration on Dask beside one process (issue 19's figures; checkout-only script).

    python bench/distributed_calibration.py --model digits --samples 20000
    python bench/distributed_calibration.py --model mobilenet --samples 2000 --size 112

Writes the calibration set as .npy shards (``--shard`` samples each), then times, each in
its own process: ``quantize_model(model, Shards(files))`` in one process (its default
threads, and BLAS held to one thread), and the same on a local Dask cluster of
``--workers`` processes (the cluster's start timed apart). It checks that the models are
the same bit for bit and reports every process's peak RSS (a worker's: ``ru_maxrss`` read
on the worker after the run). ``--memory`` also runs the cluster at a quarter of the
samples, to show a worker's peak does not grow with the data.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def _model(args) -> str:
    """The float model's path (MobileNetV2 from bench/zoo.py with a free batch axis)."""
    if args.model == "digits":
        from qkernels.demo import shipped_data
        return shipped_data()[0]
    import onnx
    sys.path.insert(0, os.path.dirname(HERE))
    from bench.zoo import mobilenet_v2
    m = mobilenet_v2(size=args.size)
    for v in (*m.graph.input, *m.graph.output):
        v.type.tensor_type.shape.dim[0].dim_param = "N"
    path = os.path.join(args.dir, f"mobilenet_v2_{args.size}.onnx")
    onnx.save(m, path)
    return path


def _shards(args) -> list[str]:
    """``--samples`` inputs as .npy files of ``--shard`` samples (digits: the shipped
    calibration images with pixel noise; mobilenet: normal noise images)."""
    rng = np.random.default_rng(0)
    paths = []
    for k in range(0, args.samples, args.shard):
        n = min(args.shard, args.samples - k)
        if args.model == "digits":
            from qkernels.demo import as_input, shipped_data
            base = as_input(shipped_data()[1]["calib_images"])
            x = base[rng.integers(0, len(base), n)] + rng.normal(0, 0.05, (n, 1, 8, 8)).astype(np.float32)
        else:
            x = rng.normal(0, 1, (n, 3, args.size, args.size)).astype(np.float32)
        p = os.path.join(args.dir, f"part-{k // args.shard:05d}.npy")
        np.save(p, x.astype(np.float32))
        paths.append(p)
    return paths


def child(args) -> dict:
    import onnx  # noqa: F401  (loaded before the clock starts, as the cluster's workers load it at start)

    from qkernels.quant import Shards, quantize_model
    paths = json.loads(args.paths)
    out = {"mode": args.child}
    if args.child == "cluster":
        from qkernels.quant.cluster import dask_client
        t0 = time.perf_counter()
        with dask_client(workers=args.workers) as client:
            out["start_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            m = quantize_model(args.model_path, Shards(paths, args.batch), method=args.method, progress=False,
                               client=client)
            out["seconds"] = time.perf_counter() - t0
            out["worker_peak_rss_mib"] = sorted(v / 1024 for v in client.run(
                lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss).values())
    else:
        t0 = time.perf_counter()
        m = quantize_model(args.model_path, Shards(paths, args.batch), method=args.method, progress=False)
        out["seconds"] = time.perf_counter() - t0
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["model_sha256"] = hashlib.sha256(m.SerializeToString()).hexdigest()
    return out


def _run(args, mode: str, paths: list[str], model: str, env: dict | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--paths", json.dumps(paths), "--model-path", model,
           "--method", args.method, "--batch", str(args.batch), "--workers", str(args.workers)]
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False)
    if res.returncode:
        raise SystemExit(f"{mode} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=("digits", "mobilenet"), default="digits")
    p.add_argument("--samples", type=int, default=20000)
    p.add_argument("--shard", type=int, default=1000, help="samples per shard file")
    p.add_argument("--size", type=int, default=112, help="mobilenet input size")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--method", default="auto")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--memory", action="store_true", help="also a cluster run on a quarter of the samples")
    p.add_argument("--json", help="write the figures here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--paths", help=argparse.SUPPRESS)
    p.add_argument("--model-path", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    with tempfile.TemporaryDirectory() as d:
        args.dir = d
        model, paths = _model(args), _shards(args)
        rows = {"one process": _run(args, "one", paths, model),
                "one process, BLAS 1 thread": _run(args, "one", paths, model, {"OPENBLAS_NUM_THREADS": "1"}),
                f"{args.workers} workers": _run(args, "cluster", paths, model)}
        if args.memory:
            rows[f"{args.workers} workers, 1/4 of the samples"] = _run(args, "cluster", paths[:max(1, len(paths) // 4)],
                                                                      model)
    base = rows["one process"]["seconds"]
    cluster = rows[f"{args.workers} workers"]
    cpu = platform.processor() or platform.machine()
    try:
        info = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in
                                                  subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines() if ":" in line)}
        cpu = f"{info.get('Model name', cpu)} (family {info.get('CPU family')} model {info.get('Model')}), {os.cpu_count()} cores"
    except OSError:
        pass
    print(f"{args.model}: {args.samples} samples in {len(paths)} shards of {args.shard}, batch {args.batch}, "
          f"method {args.method}; {cpu}")
    for name, r in rows.items():
        extra = f", cluster start {r['start_s']:.1f} s, worker peak RSS {', '.join(f'{v:.0f}' for v in r['worker_peak_rss_mib'])} MiB" \
            if "start_s" in r else ""
        print(f"  {name:<34} {r['seconds']:8.2f} s  {base / r['seconds']:5.2f}x  peak RSS {r['peak_rss_mib']:.0f} MiB"
              f"{extra}  model {r['model_sha256'][:12]}")
    same = len({r["model_sha256"] for name, r in rows.items() if "1/4" not in name})
    print(f"  models bit-identical across the runs: {same == 1}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "samples": args.samples, "shard": args.shard, "batch": args.batch,
                       "method": args.method, "cpu": cpu, "rows": rows, "identical": same == 1,
                       "speedup": base / cluster["seconds"]}, f, indent=1)


if __name__ == "__main__":
    main()
