"""Any model, float or quantized, beside ONNX Runtime (or OpenVINO, ``--peer``), the two
alternated round by round in one process (both see the same load on a shared machine): the
median of the per-round ratios qkernels / peer with its interquartile range, and optionally
both per-Conv profiles side by side (ORT).

    python -m bench.ab resnet18 mobilenet_v2 digits:400
    python -m bench.ab model.onnx --shape 1 3 224 224 --layers
    python -m bench.ab resnet18 --packed-conv      # fp32 convolutions on packed patches
    python -m bench.ab resnet18 --no-winograd      # fp32 3 x 3 convolutions as GEMMs of patches
    python -m bench.ab resnet18 --peer openvino-f32   # beside OpenVINO's CPU plugin instead

A model is an .onnx path (its first input fed with ``--shape``, or the model's own static
shape), a zoo builder (``resnet18``, ``mobilenet_v2``: float32, 1 x 3 x 224 x 224, written
once into ``--cache``) or ``digits`` (the demo's CNN); ``name:B`` sets the batch. 1 thread each.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def resolve(spec: str, cache: Path, shape=None):
    """(path, input name, input array) of a model spec."""
    import onnx
    name, _, batch = spec.partition(":")
    if name == "digits":
        from qkernels.demo import shipped_data
        path = Path(shipped_data()[0])
    elif name.endswith(".onnx"):
        path = Path(name)
    else:
        from . import zoo
        cache.mkdir(parents=True, exist_ok=True)
        path = cache / f"{name}.onnx"
        if not path.exists():
            onnx.save(getattr(zoo, name)(), path)
    graph = onnx.load(str(path), load_external_data=False).graph
    inits = {i.name for i in graph.initializer}
    inp = next(i for i in graph.input if i.name not in inits)
    dims = [d.dim_value or 1 for d in inp.type.tensor_type.shape.dim]
    if shape:
        dims = list(shape)
    if batch:
        dims[0] = int(batch)
    x = np.random.default_rng(0).standard_normal(dims).astype(np.float32)
    return path, inp.name, x


def sessions(path: Path, ort_profile: str | None = None, feed=None, packed_conv: bool = False,
             winograd: bool = True):
    """qkernels' and ORT's sessions, 1 thread. ``packed_conv``: qkernels' fp32 and uint8 convolutions on
    packed patch panels, not read in place; ``winograd`` False: no fp32 convolution by Winograd's
    F(2x2, 3x3) (the plan binds them on its first run, of ``feed``)."""
    import onnxruntime as ort
    from qkernels import _dispatch
    from qkernels.graph import Session
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    if ort_profile:
        so.enable_profiling = True
        so.profile_file_prefix = ort_profile
    q = Session(str(path), num_threads=1)
    if packed_conv or not winograd:
        with _dispatch.indirect_conv(not packed_conv), _dispatch.winograd(winograd):
            q.run(None, feed)
    return q, ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


class OpenVINO:
    """OpenVINO's CPU plugin on the same file with ORT's ``run(None, feed)``: one stream of 1
    thread, latency hint, its default precision or (``f32``) INFERENCE_PRECISION_HINT f32,
    as the suite's OV and OV f32 columns (bench/models.py)."""

    def __init__(self, path: Path, f32: bool = False):
        import openvino as ov
        cfg = {"INFERENCE_NUM_THREADS": "1", "NUM_STREAMS": "1", "PERFORMANCE_HINT": "LATENCY"}
        if f32:
            cfg["INFERENCE_PRECISION_HINT"] = "f32"
        self.request = ov.Core().compile_model(str(path), "CPU", cfg).create_infer_request()

    def run(self, _names, feed):
        return list(self.request.infer(feed).values())


def ab(q, o, feed, rounds: int, min_time: float = 0.25):
    """Median and quartiles of the per-round ratio qkernels / ORT, and their medians (ms)."""
    def per_call(fn):
        fn()
        n, t0 = 0, time.perf_counter()
        while (t := time.perf_counter() - t0) < min_time or n == 0:
            fn()
            n += 1
        return t / n

    runs = (lambda: q.run(None, feed), lambda: o.run(None, feed))
    per_call(runs[0]), per_call(runs[1])  # warm both
    qs, os_ = [], []
    for r in range(rounds):
        first = r % 2               # alternate who goes first
        t = [per_call(runs[(first + i) % 2]) for i in range(2)]
        qs.append(t[first])
        os_.append(t[1 - first])
    ratio = np.array(qs) / np.array(os_)
    return (np.median(ratio), np.percentile(ratio, 25), np.percentile(ratio, 75),
            1e3 * np.median(qs), 1e3 * np.median(os_))


def ort_node_us(profile_json: str) -> dict[str, tuple[str, list]]:
    """ORT's kernel times per node, in execution order: name -> (op, [us of each run])."""
    per: dict[str, tuple[str, list]] = {}
    for e in json.load(open(profile_json)):
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            n = e["name"][: -len("_kernel_time")]
            per.setdefault(n, (e.get("args", {}).get("op_name", "?"), []))[1].append(e["dur"])
    return per


def layers(path: Path, feed, runs: int = 30, packed_conv: bool = False):
    """qkernels' per-node times in execution order, each convolution beside ORT's convolution of
    the same rank in ORT's order (ORT renames the nodes it fuses and relayouts, but keeps the
    graph's order of convolutions): medians of ``runs`` profiled runs of each, alternated, and
    the median of the per-run ratios."""
    with tempfile.TemporaryDirectory() as tmp:
        q, o = sessions(path, os.path.join(tmp, "ort"), feed, packed_conv)
        q.run(None, feed)
        per: dict[str, list] = {}
        for _ in range(runs):
            o.run(None, feed)
            q.run(None, feed, profile=True)
            for r in q.last_profile:
                per.setdefault(r["node"], [r["op"], []])[1].append(r["seconds"] * 1e6)
        ort_us = ort_node_us(o.end_profiling())
    ort_convs = [(n, np.array(t[-runs:], float)) for n, (op, t) in ort_us.items() if "Conv" in op]
    print(f"  {'node':24s} {'op':28s} {'qk us':>9s}  {'ORT node':24s} {'ORT us':>9s} ratio")
    k, conv_qk, conv_ort = 0, 0.0, 0.0
    for n, (op, t) in per.items():
        t = np.array(t)
        tail = ""
        if "Conv" in str(op) and k < len(ort_convs):
            on, ot = ort_convs[k]
            k += 1
            conv_qk, conv_ort = conv_qk + np.median(t), conv_ort + np.median(ot)
            tail = f"{on[:24]:24s} {np.median(ot):9.1f} {np.median(t / ot):5.2f}"
        print(f"  {n[:24]:24s} {str(op)[:28]:28s} {np.median(t):9.1f}  {tail}")
    print(f"  convolutions: qk {conv_qk:.1f} us, ORT {conv_ort:.1f} us; all nodes: qk "
          f"{sum(np.median(t) for _, t in per.values()):.1f} us, ORT "
          f"{sum(np.median(t[-runs:]) for _, t in ort_us.values()):.1f} us")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--shape", type=int, nargs="+", help="the input shape of an .onnx path")
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--min-time", type=float, default=0.25, help="seconds per library per round")
    ap.add_argument("--layers", action="store_true", help="also print both per-node profiles")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/qk-ab"))
    ap.add_argument("--packed-conv", action="store_true",
                    help="qkernels' fp32 and uint8 convolutions on packed patches (the path before indirect ones)")
    ap.add_argument("--no-winograd", action="store_true",
                    help="no fp32 3 x 3 convolution by Winograd's F(2x2, 3x3) (the GEMM of their patches)")
    ap.add_argument("--peer", choices=("ort", "openvino", "openvino-f32"), default="ort",
                    help="the library beside qkernels (OpenVINO: its CPU plugin, default or f32 precision)")
    args = ap.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from .tflite_models import _cpu
    peer = {"ort": "ORT", "openvino": "OV", "openvino-f32": "OV f32"}[args.peer]
    print(f"{_cpu()}, 1 thread; qkernels / {peer} per round, median [IQR] of {args.rounds} rounds")
    for spec in args.models:
        path, name, x = resolve(spec, args.cache, args.shape)
        feed = {name: x}
        q, o = sessions(path, None, feed, args.packed_conv, not args.no_winograd)
        if args.peer != "ort":
            o = OpenVINO(path, f32=args.peer == "openvino-f32")
        med, lo, hi, qms, oms = ab(q, o, feed, args.rounds, args.min_time)
        print(f"{spec:20s} {tuple(x.shape)}  {med:.2f} [{lo:.2f}-{hi:.2f}]  qk {qms:.3f} ms  {peer} {oms:.3f} ms",
              flush=True)
        if args.layers:
            layers(path, feed, packed_conv=args.packed_conv)


if __name__ == "__main__":
    main()
