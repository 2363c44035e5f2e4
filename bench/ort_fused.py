"""The encoder as onnxruntime's transformer optimizer rewrites it: com.microsoft
``EmbedLayerNormalization``, ``Attention``, ``SkipLayerNormalization``, ``BiasGelu``
(``onnxruntime.transformers.optimizer.optimize_model``, model_type "bert").

    python -m bench.ort_fused IN.onnx OUT.onnx HEADS HIDDEN [OPT_LEVEL]
    OPENBLAS_NUM_THREADS=1 python -m bench.ort_fused --time FUSED.onnx [TOKENS ...]

``--time``: qkernels' Session against onnxruntime on the same fused model, 1 thread each, in
one process alternating A/B (rounds of a few runs each), the per-run milliseconds as
min / median / max over the rounds, and the ratio of the medians.
"""
from __future__ import annotations

import os
import sys
import tempfile
import types

import numpy as np


def split_mask_unsqueeze(model):
    """torch.onnx.export writes the mask's ``[:, None, None, :]`` as two Unsqueezes, which
    is the pattern onnxruntime's attention fusion matches; :mod:`bench.encoder` writes one
    Unsqueeze of axes [1, 2] (the same values). Rewrite it as two, in place."""
    from onnx import helper, numpy_helper
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    for k, n in enumerate(list(g.node)):
        if n.op_type != "Unsqueeze" or len(n.input) < 2 or n.input[1] not in inits:
            continue
        if list(numpy_helper.to_array(inits[n.input[1]]).reshape(-1)) != [1, 2]:
            continue
        one, two, mid = n.output[0] + "_ax1", n.output[0] + "_ax2", n.output[0] + "_mid"
        g.initializer.extend([numpy_helper.from_array(np.array([1], np.int64), one),
                              numpy_helper.from_array(np.array([2], np.int64), two)])
        g.node.remove(n)
        g.node.insert(k, helper.make_node("Unsqueeze", [mid, two], list(n.output)))
        g.node.insert(k, helper.make_node("Unsqueeze", [n.input[0], one], [mid]))
    return model


def ort_fused(model, heads: int, hidden: int, opt_level: int = 1):
    """``model`` (ModelProto or path) through onnxruntime's transformer optimizer, as a ModelProto."""
    import onnx
    if "torch" not in sys.modules:
        # the optimizer imports torch only to read torch.version.hip (a ROCm build)
        stub = types.ModuleType("torch")
        stub.version = types.SimpleNamespace(hip=None)
        sys.modules["torch"] = stub
    from onnxruntime.transformers.optimizer import optimize_model
    if isinstance(model, str):
        model = onnx.load(model)
    model = split_mask_unsqueeze(model)
    with tempfile.TemporaryDirectory() as tmp:      # the optimizer's session reads a file best
        path = os.path.join(tmp, "model.onnx")
        onnx.save(model, path)
        return optimize_model(path, model_type="bert", num_heads=heads, hidden_size=hidden,
                              opt_level=opt_level).model


def time_against_ort(path: str, tokens=(16, 128), rounds: int = 15, runs: int = 5, vocab: int = 1000):
    """{tokens: (ours [min, median, max] ms, ort [min, median, max] ms)}, one thread each."""
    import time

    import onnxruntime as ort
    from bench.encoder import encoder_inputs
    from qkernels.graph import Session
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    peer = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    ours = Session(path, num_threads=1)
    out = {}
    for t in tokens:
        x = encoder_inputs(1, t, vocab)
        a, b = ours.run(None, x)[0], peer.run(None, x)[0]
        err = float(np.abs(a - b).max() / np.abs(b).max())
        samples = {"qkernels": [], "onnxruntime": []}
        for _ in range(rounds):
            for name, fn in (("qkernels", lambda: ours.run(None, x)), ("onnxruntime", lambda: peer.run(None, x))):
                fn()
                t0 = time.perf_counter()
                for _ in range(runs):
                    fn()
                samples[name].append((time.perf_counter() - t0) / runs * 1e3)
        out[t] = ({k: (min(v), float(np.median(v)), max(v)) for k, v in samples.items()}, err)
    return out


if __name__ == "__main__":
    import onnx
    if sys.argv[1] == "--time":
        toks = [int(v) for v in sys.argv[3:]] or [16, 128]
        for t, (stats, err) in time_against_ort(sys.argv[2], toks).items():
            q, o = stats["qkernels"], stats["onnxruntime"]
            print(f"{t:4d} tokens  qkernels {q[0]:.2f}/{q[1]:.2f}/{q[2]:.2f} ms  onnxruntime "
                  f"{o[0]:.2f}/{o[1]:.2f}/{o[2]:.2f} ms  (min/median/max)  ratio {q[1] / o[1]:.2f}  "
                  f"max rel diff {err:.1e}")
        sys.exit(0)
    src, dst, h, d = sys.argv[1:5]
    onnx.save(ort_fused(src, int(h), int(d), int(sys.argv[5]) if len(sys.argv) > 5 else 1), dst)
