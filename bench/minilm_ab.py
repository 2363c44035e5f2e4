"""all-MiniLM-L6-v2 beside ONNX Runtime, the two libraries alternated round by round in one
process (both see the same load on a shared machine): the median of the per-round ratios
qkernels / ORT with its interquartile range. The figures of issue 16.

    python -m bench.minilm_ab --tokens 16 128 --forms float ort-dynamic dynamic-rows

Forms (qkernels' model beside ORT's):
  float         the float32 model, both libraries
  ort-dynamic   ORT's ``quantize_dynamic`` model (per channel), both libraries
  dynamic-rows  ours ``mode="dynamic", dynamic_rows=True`` beside ORT on its dynamic model
Models are written once into ``--cache`` (default /tmp/minilm-ab); 1 thread each.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path



def _models(cache: Path, forms):
    import onnx
    from . import minilm
    cache.mkdir(parents=True, exist_ok=True)
    f32 = cache / "float.onnx"
    if not f32.exists():
        onnx.save(minilm.model(), f32)
    paths = {"float": (f32, f32)}
    if {"ort-dynamic", "dynamic-rows"} & set(forms):
        dyn = cache / "ort-dynamic.onnx"
        if not dyn.exists():
            from onnxruntime.quantization import QuantType, quantize_dynamic
            quantize_dynamic(str(f32), str(dyn), per_channel=True, weight_type=QuantType.QInt8)
        paths["ort-dynamic"] = (dyn, dyn)
        rows = cache / "dynamic-rows.onnx"
        if "dynamic-rows" in forms and not rows.exists():
            from qkernels.quant import quantize_model
            onnx.save(quantize_model(str(f32), mode="dynamic", dynamic_rows=True, progress=False), rows)
        paths["dynamic-rows"] = (rows, dyn)
    return {f: paths[f] for f in forms}


def ab(qk_path, ort_path, feed, rounds: int, min_time: float = 0.25):
    """Median and quartiles of the per-round ratio qkernels / ORT, and their medians (ms)."""
    import onnxruntime as ort
    from qkernels.graph import Session
    from .ab import ab as alternate
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    o = ort.InferenceSession(str(ort_path), so, providers=["CPUExecutionProvider"])
    return alternate(Session(str(qk_path), num_threads=1), o, feed, rounds, min_time)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, nargs="+", default=[16, 128])
    ap.add_argument("--forms", nargs="+", default=["float", "ort-dynamic", "dynamic-rows"],
                    choices=["float", "ort-dynamic", "dynamic-rows"])
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/minilm-ab"))
    args = ap.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from . import minilm
    from .tflite_models import _cpu
    print(f"{_cpu()}, 1 thread; qkernels / ORT per round, median [IQR] of {args.rounds} rounds")
    for form, (qk_path, ort_path) in _models(args.cache, args.forms).items():
        for n in args.tokens:
            med, lo, hi, qms, oms = ab(qk_path, ort_path, minilm.inputs(1, n), args.rounds)
            print(f"{form:13s} {n:4d} tokens  {med:.2f} [{lo:.2f}-{hi:.2f}]  qk {qms:.2f} ms  ORT {oms:.2f} ms",
                  flush=True)


if __name__ == "__main__":
    main()
