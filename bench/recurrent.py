"""Recurrent layers, qkernels against onnxruntime, 1 thread, in one process alternating
(rounds of each library in turn; the medians of the rounds and their ratio):

* a silero-style LSTM (hidden 128, input 128, batch 1) at sequence lengths 1 to 4, and a
  longer one (sequence 100, hidden 256, input 256), one LSTM node each;
* GRU at the long shape; com.microsoft DynamicQuantizeLSTM (int8 weights) at seq 4 and 100;
* the silero VAD models (when present) per 576-sample chunk, the state fed back.

Run from a checkout: ``OPENBLAS_NUM_THREADS=1 python bench/recurrent.py``.
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

SHAPES = [("LSTM", 1, 1, 128, 128), ("LSTM", 2, 1, 128, 128), ("LSTM", 4, 1, 128, 128),
          ("LSTM", 100, 1, 256, 256), ("GRU", 100, 1, 256, 256),
          ("DynamicQuantizeLSTM", 4, 1, 128, 128), ("DynamicQuantizeLSTM", 100, 1, 256, 256)]
SILERO = [("silero_vad_16k_sequence.onnx", 576), ("silero_vad_openvino_16k.onnx", 576)]
SILERO_DIRS = [os.path.expanduser("~/.cache/qkernels/models/silero"), "/tmp/silero_models"]


def _model(kind, T, N, I, H):
    from onnx import TensorProto, helper, numpy_helper
    G = {"GRU": 3, "LSTM": 4, "DynamicQuantizeLSTM": 4}[kind]
    rng = np.random.default_rng(0)
    dq = kind == "DynamicQuantizeLSTM"
    if dq:    # int8 weights (D, I, 4H), (D, H, 4H), one scale per direction, zero point 0
        inits = [numpy_helper.from_array(rng.integers(-127, 128, (1, I, G * H)).astype(np.int8), "W"),
                 numpy_helper.from_array(rng.integers(-127, 128, (1, H, G * H)).astype(np.int8), "R")]
    else:
        inits = [numpy_helper.from_array((rng.standard_normal((1, G * H, I)) * 0.1).astype(np.float32), "W"),
                 numpy_helper.from_array((rng.standard_normal((1, G * H, H)) * 0.1).astype(np.float32), "R")]
    inits.append(numpy_helper.from_array(rng.standard_normal((1, 2 * G * H)).astype(np.float32) * 0.1, "B"))
    ins = ["X", "W", "R", "B", "", "h0"] + (["c0"] if G == 4 else [])
    outs = ["Y", "Y_h"] + (["Y_c"] if G == 4 else [])
    if dq:
        ins += ["", "ws", "wz", "rs", "rz"]
        inits += [numpy_helper.from_array(np.array([0.002], np.float32), "ws"),
                  numpy_helper.from_array(np.zeros(1, np.int8), "wz"),
                  numpy_helper.from_array(np.array([0.002], np.float32), "rs"),
                  numpy_helper.from_array(np.zeros(1, np.int8), "rz")]
    node = helper.make_node(kind, ins, outs, hidden_size=H, domain="com.microsoft" if dq else None)
    states = ["h0", "c0"][:len(outs) - 1]
    inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, [T, N, I])] + \
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, N, H]) for n in states]
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info(o, TensorProto.FLOAT, None)
                                                    for o in outs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]
                              + ([helper.make_opsetid("com.microsoft", 1)] if dq else []))
    feeds = {"X": rng.standard_normal((T, N, I)).astype(np.float32),
             **{n: rng.standard_normal((1, N, H)).astype(np.float32) for n in states}}
    return model.SerializeToString(), feeds


def _time(fn, min_time=0.05):
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt >= min_time:
            return dt / n
        n = max(2 * n, int(n * min_time / max(dt, 1e-9) * 1.2))


def _compare(label, ours, theirs, rounds=9):
    ours(), theirs()
    a, b = [], []
    for _ in range(rounds):
        a.append(_time(ours))
        b.append(_time(theirs))
    ta, tb = float(np.median(a)), float(np.median(b))
    print(f"{label:42s} qkernels {ta * 1e6:9.1f} us   onnxruntime {tb * 1e6:9.1f} us   ratio {ta / tb:5.2f}")


def main():
    import onnxruntime as ort
    from qkernels.graph import Session
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    print(f"1 thread; {sys.argv[0]}")
    for kind, T, N, I, H in SHAPES:
        model, feeds = _model(kind, T, N, I, H)
        ours = Session(model, num_threads=1)
        theirs = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        _compare(f"{kind} T={T} N={N} I={I} H={H}", lambda: ours.run(None, feeds), lambda: theirs.run(None, feeds))
    for name, size in SILERO:
        path = next((os.path.join(d, name) for d in SILERO_DIRS if os.path.exists(os.path.join(d, name))), None)
        if path is None:
            print(f"{name}: not found, skipped")
            continue
        ours, theirs = Session(path, num_threads=1), ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        x = (np.random.default_rng(1).standard_normal((1, size)) * 0.1).astype(np.float32)
        feeds = {"input": x, **{i.name: np.zeros((2 if i.name == "state" else 1, 1, 128), np.float32)
                                for i in theirs.get_inputs() if i.name != "input"}}
        _compare(f"{name} per chunk", lambda: ours.run(None, feeds), lambda: theirs.run(None, feeds))


if __name__ == "__main__":
    main()
