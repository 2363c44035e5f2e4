"""The silero-vad voice-activity detector as its PyPI wheel ships it (``silero-vad``,
``silero_vad/data/*.onnx``): a streaming model whose whole network sits in ``If``
branches chosen by the sample rate, with its recurrent state carried between calls.

* ``silero_vad.onnx`` (opset 16): 25 If nodes, some nested, the decoder an LSTM;
* ``silero_vad_op18_ifless.onnx`` (opset 18): one If, LSTM cells written out as
  Gemm / Sigmoid / Tanh.

Inputs: ``input`` float32 [batch, 512] (a 32 ms chunk at 16 kHz), ``state`` float32
[2, batch, 128], ``sr`` int64 scalar; outputs the speech probability and the next state.

:func:`fetch` downloads the wheel once with pip (``pip download --no-deps``) into the
model cache of :mod:`bench.real_models` and unpacks its ``.onnx`` files; nothing in CI
or in the library downloads anything. :func:`stream` makes the chunks of a synthetic
signal (noise, then bursts of voiced-like harmonics) to feed it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .real_models import CACHE, fetch_wheel

WHEEL = "silero-vad==6.2.3"
MODELS = {"vad": "silero_vad.onnx", "ifless": "silero_vad_op18_ifless.onnx"}
CHUNK = 512           # samples per call at 16 kHz
RATE = 16000


def path(model: str, cache: Path = CACHE) -> Path:
    """Where ``model`` ("vad" or "ifless") is kept in the cache (never downloads)."""
    return Path(cache) / MODELS[model]


def fetch(cache: Path = CACHE) -> dict[str, Path]:
    """Paths of the models, downloading and unpacking the wheel on first use."""
    return fetch_wheel(WHEEL, "silero_vad/data", MODELS, cache)


def stream(chunks: int, seed: int = 0) -> np.ndarray:
    """``chunks`` chunks [chunks, 1, CHUNK] float32 in [-1, 1]: quiet noise with bursts of
    a harmonic tone (a crude vowel) every few chunks, so the detector's output moves."""
    rng = np.random.default_rng(seed)
    t = np.arange(chunks * CHUNK) / RATE
    signal = 0.01 * rng.standard_normal(t.size)
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.5 * t)
    voiced = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / RATE) / k for k in range(1, 6))
    gate = (np.sin(2 * np.pi * 1.5 * t) > 0.2).astype(np.float64)
    signal += 0.3 * gate * voiced
    return np.clip(signal, -1, 1).astype(np.float32).reshape(chunks, 1, CHUNK)


def latency(model: str = "ifless", chunks: int = 200, rounds: int = 7) -> dict[str, float]:
    """Median ms per chunk, 1 thread, of ONNX Runtime and qkernels streaming the same
    chunks with their states carried, alternating in one process (rounds of ``chunks``
    calls each; the median over rounds)."""
    import time

    import onnxruntime as ort

    from qkernels.graph import Session
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    theirs = ort.InferenceSession(str(path(model)), opts, providers=["CPUExecutionProvider"])
    ours = Session(str(path(model)), num_threads=1)
    data, sr = stream(chunks), np.array(RATE, np.int64)

    def run(session):
        state = np.zeros((2, 1, 128), np.float32)
        t0 = time.perf_counter()
        for chunk in data:
            _, state = session.run(None, {"input": chunk, "state": state, "sr": sr})
        return (time.perf_counter() - t0) / chunks * 1e3
    run(ours), run(theirs)     # warm: plans made, caches filled
    times: dict[str, list] = {"onnxruntime": [], "qkernels": []}
    for _ in range(rounds):
        times["onnxruntime"].append(run(theirs))
        times["qkernels"].append(run(ours))
    return {k: float(np.median(v)) for k, v in times.items()}


if __name__ == "__main__":   # OPENBLAS_NUM_THREADS=1 python -m bench.silero
    got = latency()
    print(f"silero-vad (ifless), ms per 512-sample chunk, 1 thread: ONNX Runtime {got['onnxruntime']:.3f}, "
          f"qkernels {got['qkernels']:.3f} ({got['qkernels'] / got['onnxruntime']:.2f}x)")
