"""Quantized sentence encoder: cosine of the sentence embeddings to float, and qkernels
latency, for every way of quantizing an encoder (ONNX Runtime's two, ours five, fp16).

    python -m bench.quant_encoder /tmp/minilm.onnx [--tokens 16 128] [--seeds 3] [--repeat 20]

Calibration: 4 batches of 4 sentences of 128 tokens (``bench.minilm.inputs`` seeds
1000+); evaluation: batches of 4 sentences at each length, seeds 0.. (different
sentences). Cosine: of sentence-transformers' mean-pooled, L2-normalised embeddings,
ours as qkernels runs them, in brackets the minimum when ONNX Runtime runs them (its
x86 int8 kernels saturate: docs/quant.md); ORT's models as ORT runs them. Latency: ``qkernels.graph.Session(num_threads=1)``, batch 1, the float model
and each variant timed alternately in this one process, median of ``--repeat`` runs.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402


def variants(model, calib):
    """name -> ModelProto (or path for ORT's)."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)

    from qkernels.quant import quantize_model
    d = tempfile.mkdtemp()
    src = os.path.join(d, "float.onnx")
    onnx.save(model, src)
    out = {}
    for pc in (False, True):
        path = os.path.join(d, f"ort_dyn{pc}.onnx")
        quantize_dynamic(src, path, weight_type=QuantType.QInt8, per_channel=pc)
        out[f"ORT quantize_dynamic per_channel={pc}"] = onnx.load(path)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib)

        def get_next(self):
            return next(self.it, None)
    quantize_static(src, os.path.join(d, "ort_qdq.onnx"), Reader(), quant_format=QuantFormat.QDQ)
    out["ORT quantize_static QDQ"] = onnx.load(os.path.join(d, "ort_qdq.onnx"))
    timings = {}
    for name, kw in [("ours dynamic", dict(mode="dynamic")),
                     ("ours dynamic, dynamic_rows=True", dict(mode="dynamic", dynamic_rows=True)),
                     ("ours static plain", dict(min_cosine=None)),
                     ("ours static outliers (min_cosine=0.99)", dict(min_cosine=0.99)),
                     ("ours static + smooth_quant=0.5", dict(min_cosine=None, smooth_quant=0.5)),
                     ("ours static outliers + smooth_quant=0.5", dict(min_cosine=0.99, smooth_quant=0.5)),
                     ("ours fp16", dict(target="fp16"))]:
        t = time.perf_counter()
        out[name] = quantize_model(model, None if kw.get("mode") or kw.get("target") else calib,
                                   progress=False, **kw)
        timings[name] = time.perf_counter() - t
    return out, timings


def main(argv=None):
    import onnx
    import onnxruntime as ort

    from bench.encoder import cosine, sentence_embedding
    from bench.minilm import inputs
    from qkernels.graph import Session
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--tokens", type=int, nargs="+", default=[16, 128])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=20)
    a = ap.parse_args(argv)
    model = onnx.load(a.model)
    calib = [inputs(4, 128, seed=1000 + s) for s in range(4)]
    models, qtime = variants(model, calib)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1

    def ort_run(m, x):
        return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, x)[0]

    print(f"# {os.path.basename(a.model)}: sentence-embedding cosine to float (min / mean over "
          f"{a.seeds} batches x 4 sentences; ours run by qkernels, ORT's by ORT), qkernels latency batch 1, 1 thread\n")
    head = "| variant | quantize s | " + " | ".join(f"cos {t} tok" for t in a.tokens) + " | " + \
        " | ".join(f"ours/float ms {t} tok" for t in a.tokens) + " |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    floats = {t: [ort_run(model, inputs(4, t, seed=s)) for s in range(a.seeds)] for t in a.tokens}
    sessions = {"float": Session(model.SerializeToString(), num_threads=1)}
    for name, m in models.items():
        cells = []
        for t in a.tokens:
            c, c_ort = [], []
            for s in range(a.seeds):
                x = inputs(4, t, seed=s)
                ref = sentence_embedding(floats[t][s], x["attention_mask"])
                got = ort_run(m, x)
                c_ort.append(cosine(ref, sentence_embedding(got, x["attention_mask"])))
                if name.startswith("ours"):      # ours as qkernels runs them (ORT's x86 int8 saturates)
                    got = Session(m.SerializeToString(), num_threads=1).run(None, x)[0]
                    c.append(cosine(ref, sentence_embedding(got, x["attention_mask"])))
            c_ort = np.concatenate(c_ort)
            c = np.concatenate(c) if c else c_ort
            cells.append(f"{c.min():.4f} / {c.mean():.4f} (ORT {c_ort.min():.4f})")
        lat = []
        if name.startswith("ours"):
            sess = Session(m.SerializeToString(), num_threads=1)
            for t in a.tokens:
                x = inputs(1, t, seed=7)
                tf, tq = [], []
                for _ in range(a.repeat):           # A/B alternated: the machine is shared and noisy
                    for sess_, acc in ((sessions["float"], tf), (sess, tq)):
                        t0 = time.perf_counter()
                        sess_.run(None, x)
                        acc.append(time.perf_counter() - t0)
                lat.append(f"{1e3 * np.median(tq):.2f} / {1e3 * np.median(tf):.2f}")
        else:
            lat = ["-"] * len(a.tokens)
        print(f"| {name} | {qtime.get(name, 0):.1f} | " + " | ".join(cells) + " | " + " | ".join(lat) + " |",
              flush=True)


if __name__ == "__main__":
    main()
