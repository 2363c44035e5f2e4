"""How well qkernels quantizes real trained models, beside ONNX Runtime's quantizer.

    python bench/quant_quality.py [--models classifier recogniser ...] [--methods ...]
                                  [--calib N] [--eval N] [--json PATH]

For each model of :mod:`bench.real_models` (downloaded on first use, never in CI) and
each calibration method, the float model is quantized by

* qkernels: ``quantize_model(model as shipped, calibration, method=...)`` (its own
  pre-processing: opset conversion, constant and batch-norm folding), int8 activations
  and per-channel int8 weights, the defaults;
* ONNX Runtime: ``quantize_static`` in QDQ format, int8 activations and per-channel
  int8 weights, on the model converted to opset 13 (its quantizer writes invalid models
  below) and then ``quant_pre_process``-ed (its recommended pre-processing),
  with its ``MinMax``, ``Entropy`` and ``Percentile`` calibrators;

on the same calibration inputs, and each quantized model is compared with the float one
on other, held-out inputs: SQNR of the model output (dB), and for the recogniser the
share of inputs whose greedy CTC decoding equals float's, for the classifier the share
whose predicted class does. All models are run by ONNX Runtime for this comparison (the
same engine for both quantizers; ``--runner qkernels`` runs ours on qkernels' runner).
Quantizing time is wall time of the call, calibration included.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import real_models  # noqa: E402

QK_METHODS = ("minmax", "entropy", "percentile", "mse", "auto")
ORT_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}


def sqnr(ref: np.ndarray, got: np.ndarray) -> float:
    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    noise = float(((ref - got) ** 2).sum())
    return math.inf if noise == 0 else 10 * math.log10(float((ref ** 2).sum()) / noise)


def run_ort(model, x: np.ndarray, batch: int = 16) -> np.ndarray:
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    s = ort.InferenceSession(model if isinstance(model, (str, Path)) else model.SerializeToString(), opts,
                             providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    return np.concatenate([s.run(None, {name: x[i:i + batch]})[0] for i in range(0, len(x), batch)])


def run_qk(model, x: np.ndarray, batch: int = 16) -> np.ndarray:
    from qkernels.graph import Session
    s = Session(model if isinstance(model, (str, Path)) else model.SerializeToString(), num_threads=1)
    return np.concatenate([s.run(None, {"x": x[i:i + batch]})[0] for i in range(0, len(x), batch)])


def agreement(model: str, ref: np.ndarray, got: np.ndarray) -> float | None:
    """Share of inputs read as float reads them (classifier: class; recogniser: text)."""
    if model == "classifier":
        return float(np.mean(ref.argmax(-1) == got.argmax(-1)))
    if model == "recogniser":
        return float(np.mean([a == b for a, b in zip(real_models.ctc_decode(ref), real_models.ctc_decode(got))]))
    return None


def ort_quantize(path: Path, calib: np.ndarray, method: str, work: Path, tag: str = ""):
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, \
        quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process
    import onnx
    from onnx import version_converter
    pre = work / f"{path.stem}-pre.onnx"
    if not pre.exists():   # ORT's quantizer writes invalid QDQ for opset < 13: converted first, as users must
        v13 = work / f"{path.stem}-13.onnx"
        onnx.save(version_converter.convert_version(onnx.load(str(path)), 13), str(v13))
        with contextlib.chdir(work):   # it leaves a temporary file in the working folder
            try:           # its symbolic shape inference fails on some exports: then without it
                quant_pre_process(str(v13), str(pre))
            except Exception:
                quant_pre_process(str(v13), str(pre), skip_symbolic_shape=True)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"x": calib[i:i + 1]} for i in range(len(calib))])

        def get_next(self):
            return next(self.items, None)

    out = work / f"{path.stem}-ort-{method}{tag}.onnx"
    t = time.perf_counter()
    quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    calibrate_method=getattr(CalibrationMethod, ORT_METHODS[method]))
    return out, time.perf_counter() - t


def qk_quantize(path: Path, calib: np.ndarray, method: str, **options):
    from qkernels.quant import quantize_model
    t = time.perf_counter()
    m = quantize_model(str(path), {"x": calib}, method=method, progress=False, **options)
    return m, time.perf_counter() - t


def study(models, methods, n_calib: int, n_eval: int, runner: str = "ort", keep_float: int = 0, seeds=(1,),
          **options) -> list[dict]:
    """One row per model and method: per calibration seed (held-out inputs from seed +
    1000), each quantizer's output SQNR, agreement and time; the printed line gives the
    mean over the seeds and the spread."""
    paths = real_models.fetch()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for model in models:
            data = {sd: (real_models.samples(model, n_calib, seed=sd), real_models.samples(model, n_eval, seed=sd + 1000))
                    for sd in seeds}
            refs = {sd: run_ort(paths[model], held) for sd, (_, held) in data.items()}
            run = run_qk if runner == "qkernels" else run_ort
            for method in methods:
                row = {"model": model, "method": method, "seeds": list(seeds)}
                for sd, (calib, held) in data.items():
                    q, t = qk_quantize(paths[model], calib, method, keep_float=keep_float, **options)
                    got = run(q, held)
                    _add(row, "qk", sqnr(refs[sd], got), agreement(model, refs[sd], got), t)
                    if method in ORT_METHODS:
                        with contextlib.redirect_stdout(io.StringIO()):
                            q, t = ort_quantize(paths[model], calib, method, work, tag=str(sd))
                        got = run_ort(q, held)
                        _add(row, "ort", sqnr(refs[sd], got), agreement(model, refs[sd], got), t)
                rows.append(row)
                print(_line(row), flush=True)
    return rows


def _add(row: dict, who: str, db: float, agree, seconds: float) -> None:
    for key, v in (("sqnr_db", db), ("agree", agree), ("seconds", seconds)):
        row.setdefault(f"{who}_{key}", []).append(v)


def _line(r: dict) -> str:
    def cell(who):
        if f"{who}_sqnr_db" not in r:
            return ""
        db, agree, sec = r[f"{who}_sqnr_db"], r[f"{who}_agree"], r[f"{who}_seconds"]
        text = f"{np.mean(db):6.1f} dB"
        if len(db) > 1:
            text += f" ({min(db):.1f}..{max(db):.1f})"
        if agree[0] is not None:
            text += f" {100 * np.mean(agree):4.0f} %"
        return text + f" {np.median(sec):5.1f} s"
    return f"{r['model']:<11}{r['method']:<11}{cell('qk'):<36}| {cell('ort')}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["classifier", "recogniser"], choices=list(real_models.MODELS))
    p.add_argument("--methods", nargs="+", default=list(QK_METHODS))
    p.add_argument("--calib", type=int, default=32, help="calibration inputs (default 32)")
    p.add_argument("--eval", type=int, default=64, help="held-out inputs (default 64)")
    p.add_argument("--runner", choices=("ort", "qkernels"), default="ort",
                   help="the engine that runs qkernels' quantized models (default ort, as for ORT's)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1],
                   help="calibration inputs from each seed, held-out inputs from seed + 1000 (default 1)")
    p.add_argument("--keep-float", type=int, default=0, help="qkernels keeps this many layers in float")
    p.add_argument("--bias-correction", action="store_true", help="qkernels corrects biases")
    p.add_argument("--json", help="write the rows to this file")
    a = p.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    print(f"{'model':<11}{'method':<11}{'qkernels: SQNR (spread), agree, time':<36}| ORT quantize_static")
    rows = study(a.models, a.methods, a.calib, a.eval, a.runner, a.keep_float, a.seeds,
                 **({"bias_correction": True} if a.bias_correction else {}))
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
