"""``python -m qkernels demo``: the main job on the shipped model and data.

Loads the small digits CNN and the held-out 8x8 digits shipped in ``qkernels/data``,
calibrates on the calibration split, quantizes the model (QDQ, ``cpu`` target), runs
float and int8 on qkernels' graph runner over the test split, and prints accuracy,
latency and speed-up, beside ONNX Runtime's own ``quantize_static`` when onnxruntime
is installed. Writes the quantized model.
"""
from __future__ import annotations

import importlib.resources
import os
import sys
import time

import numpy as np


def shipped_data():
    """(model path, dict of the calibration and test splits) from the package."""
    root = importlib.resources.files("qkernels") / "data"
    with importlib.resources.as_file(root / "digits.npz") as p:
        data = dict(np.load(p))
    with importlib.resources.as_file(root / "digits_cnn.onnx") as p:
        model = str(p)
    return model, data


def as_input(images: np.ndarray) -> np.ndarray:
    """uint8 pixels 0..16 (N, 8, 8) -> the model's float input (N, 1, 8, 8)."""
    return (images[:, None].astype(np.float32) / np.float32(16.0))


def _latency_ms(run, x, repeats: int = 30) -> float:
    run(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def _ratio(ours, theirs, x, rounds: int = 7, budget_s: float = 0.02) -> tuple[float, float, float]:
    """qkernels' time over ONNX Runtime's on ``x``: rounds alternating the two (each a
    loop of calls taking about ``budget_s``), (median, min, max) of the per-round
    ratios, so that a busy machine slows both alike."""
    ours(x), theirs(x)
    t0 = time.perf_counter()
    theirs(x)
    reps = max(1, int(budget_s / max(time.perf_counter() - t0, 1e-6)))
    ratios = []
    for _ in range(rounds):
        times = []
        for run in (ours, theirs):
            t0 = time.perf_counter()
            for _ in range(reps):
                run(x)
            times.append(time.perf_counter() - t0)
        ratios.append(times[0] / times[1])
    return float(np.median(ratios)), min(ratios), max(ratios)


def _measure(label: str, run, x_test, labels) -> dict:
    pred = run(x_test).argmax(1)
    return {"label": label, "accuracy": float((pred == labels).mean()), "pred": pred,
            "batch_ms": _latency_ms(run, x_test), "single_ms": _latency_ms(run, x_test[:1], 100)}


def _ort_rows(model_path, q_path, calib, x_test, labels, ours_pred, threads, ours=None) -> tuple[list, list[str]]:
    try:
        import onnxruntime as ort
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    except ImportError:
        return [], ["onnxruntime is not installed: its columns are left out (pip install onnxruntime)"]
    import tempfile

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"input": calib[i:i + 50]} for i in range(0, len(calib), 50)])

        def get_next(self):
            return next(self.batches, None)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or 1

    def ort_run(path):
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        return lambda x: sess.run(None, {"input": x})[0]

    def ratios(ours, path, kind):
        theirs = ort_run(path)
        for batch, x in (("batch 400", x_test), ("batch 1", np.ascontiguousarray(x_test[:1]))):
            med, lo, hi = _ratio(ours, theirs, x)
            notes.append(f"qkernels / ONNX Runtime, {kind}, {batch} (same model, alternated): "
                         f"{med:.2f}x [{lo:.2f}-{hi:.2f}]")

    rows, notes = [], []
    import logging
    with tempfile.TemporaryDirectory() as tmp:
        ort_q = os.path.join(tmp, "ort_int8.onnx")
        root = logging.getLogger()
        level, root.level = root.level, logging.ERROR   # its advice to pre-process: not needed here
        try:
            quantize_static(model_path, ort_q, Reader(), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True)
        finally:
            root.level = level
        rows.append(_measure("ONNX Runtime float32", ort_run(model_path), x_test, labels))
        ours_in_ort = _measure("qkernels int8 model in ONNX Runtime", ort_run(q_path), x_test, labels)
        rows.append(ours_in_ort)
        rows.append(_measure("ONNX Runtime quantize_static int8", ort_run(ort_q), x_test, labels))
        from .graph import Session
        theirs = Session(ort_q)
        rows.append(_measure("ORT's int8 model on qkernels", lambda x: theirs.run(None, {"input": x})[0],
                             x_test, labels))
    if ours is not None:
        ratios(ours[0], model_path, "float32")
        ratios(ours[1], q_path, "int8")
    same = int((ours_in_ort["pred"] == ours_pred).sum())
    notes.append(f"our int8 model: ONNX Runtime and qkernels agree on {same} of {len(labels)} predictions")
    return rows, notes


def run_demo(out: str = "digits_cnn_int8.onnx", method: str = "auto", threads: int | None = None,
             with_ort: bool = True, progress: bool = True, stream=None) -> dict:
    """Run the demo; returns its figures (also printed to ``stream``)."""
    import onnx

    from . import set_num_threads
    from .graph import Session
    from .quant import quantize_model
    stream = stream or sys.stdout
    if threads is not None:   # 0 is an error, not the default
        set_num_threads(threads)
    model_path, data = shipped_data()
    calib, x_test, labels = as_input(data["calib_images"]), as_input(data["test_images"]), data["test_labels"]
    t0 = time.perf_counter()
    batches = [{"input": calib[i:i + 50]} for i in range(0, len(calib), 50)]
    qmodel = quantize_model(model_path, batches, target="cpu", method=method, progress=progress)
    quant_s = time.perf_counter() - t0
    onnx.save(qmodel, out)
    f32, i8 = Session(model_path), Session(qmodel)
    ours = (lambda x: f32.run(None, {"input": x})[0], lambda x: i8.run(None, {"input": x})[0])
    rows = [_measure("qkernels float32", ours[0], x_test, labels), _measure("qkernels int8", ours[1], x_test, labels)]
    notes = []
    if with_ort:
        more, notes = _ort_rows(model_path, out, calib, x_test, labels, rows[1]["pred"], threads, ours)
        rows += more
    print(f"qkernels demo: digits CNN ({os.path.basename(model_path)}), {len(calib)} calibration and "
          f"{len(labels)} held-out test images (8x8, scikit-learn's digits)", file=stream)
    print(f"quantized ({method} calibration, cpu target: int8 activations, per-channel int8 weights) in "
          f"{quant_s:.1f} s -> {out}", file=stream)
    print(f"int8 plan: {i8.explain().splitlines()[0]}", file=stream)
    print("", file=stream)
    print(f"{'':38}{'accuracy':>9}{'400 images':>12}{'1 image':>10}", file=stream)
    for r in rows:
        print(f"{r['label']:<38}{r['accuracy'] * 100:>8.2f}%{r['batch_ms']:>10.2f}ms{r['single_ms']:>8.3f}ms",
              file=stream)
    speedup = rows[0]["batch_ms"] / rows[1]["batch_ms"]
    drop = (rows[0]["accuracy"] - rows[1]["accuracy"]) * 100
    print(f"\nint8 vs float32 on qkernels: {speedup:.2f}x the speed, accuracy change {-drop:+.2f} points",
          file=stream)
    for n in notes:
        print(n, file=stream)
    return {"rows": [{k: v for k, v in r.items() if k != "pred"} for r in rows], "speedup": speedup,
            "accuracy_drop_points": drop, "out": out, "notes": notes}
