"""Dynamically quantized BERT-class encoders: qkernels vs ONNX Runtime on the model that
``onnxruntime.quantization.quantize_dynamic`` writes (DynamicQuantizeLinear +
MatMulInteger, per-channel int8 weights), one thread each, in one process, A/B rounds
alternating (the machine is shared: ranges, not single numbers).

    python -m bench.dynquant FLOAT.onnx [--tokens 16 128] [--rounds 7]

Writes FLOAT's quantize_dynamic model next to it in /tmp (or reads it), then prints:

* kernel: qkernels' fused call (qkernels._dynamic: quantize on the fly + int8 GEMM +
  dequantize) vs ORT's com.microsoft DynamicQuantizeMatMul, on the encoder's shapes;
* model: the whole quantized model, qkernels' Session vs ORT's InferenceSession
  (ORT's default optimizations, which fuse the same chain), median and range of the
  rounds' medians, and qkernels' per-operator profile;
* accuracy: cosine of sentence embeddings (bench.encoder.sentence_embedding) of the
  quantized model, run by qkernels and by ORT, to the float model run by ORT.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402


def _ort_session(model, threads=1):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def _per_call(fn, number):
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


def ab(fa, fb, rounds=7, min_time=0.05):
    """Per-call seconds of fa and fb: `rounds` alternating batches each (A, B, A, B, ...),
    a batch at least min_time; returns ([a medians], [b medians])."""
    for f in (fa, fb):
        for _ in range(3):
            f()
    t = max(_per_call(fa, 3), _per_call(fb, 3))
    number = max(1, int(min_time / max(t, 1e-9)))
    ta, tb = [], []
    for _ in range(rounds):
        ta.append(_per_call(fa, number))
        tb.append(_per_call(fb, number))
    return ta, tb


def _fmt(ts):
    ms = sorted(1e3 * t for t in ts)
    return f"{np.median(ms):7.3f} ms [{ms[0]:.3f}-{ms[-1]:.3f}]"


def quantized_model(path: str) -> str:
    """FLOAT's quantize_dynamic model (per-channel int8 weights) in /tmp, made once."""
    out = Path("/tmp") / (Path(path).stem + ".dynamic.onnx")
    if not out.exists() or out.stat().st_mtime < Path(path).stat().st_mtime:
        from onnxruntime.quantization import QuantType, quantize_dynamic
        quantize_dynamic(path, str(out), per_channel=True, weight_type=QuantType.QInt8)
    return str(out)


def kernel_rows(shapes, rounds):
    """qkernels' fused dynamic matmul vs ORT's DynamicQuantizeMatMul, one node each."""
    from onnx import TensorProto as T, helper as h, numpy_helper as nh

    import qkernels as qk
    from qkernels import _dynamic
    rng = np.random.default_rng(0)
    for m, k, n in shapes:
        x = rng.standard_normal((m, k)).astype(np.float32)
        w = rng.integers(-127, 128, (k, n)).astype(np.int8)
        sw = (rng.random(n) * 0.01 + 1e-3).astype(np.float32)
        b = rng.standard_normal(n).astype(np.float32)
        zw = np.zeros(n, np.int8)
        y = np.empty((m, n), np.float32)
        call = _dynamic.DynamicCall(qk.pack_weights(qk.QTensor(w, sw, zw, axis=1)), x, y, b)
        g = h.make_graph([h.make_node("DynamicQuantizeMatMul", ["x", "w", "s", "z", "b"], ["y"],
                                      domain="com.microsoft")], "g",
                         [h.make_tensor_value_info("x", T.FLOAT, [m, k])],
                         [h.make_tensor_value_info("y", T.FLOAT, [m, n])],
                         [nh.from_array(w, "w"), nh.from_array(sw, "s"), nh.from_array(zw, "z"), nh.from_array(b, "b")])
        model = h.make_model(g, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("com.microsoft", 1)])
        sess = _ort_session(model.SerializeToString())
        feed = {"x": x}
        same = np.array_equal(call.run(), sess.run(None, feed)[0])
        ta, tb = ab(call.run, lambda: sess.run(None, feed), rounds)
        print(f"  {m:4d}x{k:4d}x{n:4d}  qkernels {_fmt(ta)}  ORT {_fmt(tb)}  ratio {np.median(ta) / np.median(tb):.2f}"
              f"  bit-identical to ORT: {same}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="the float model (e.g. python -m bench.minilm /tmp/minilm.onnx)")
    ap.add_argument("--tokens", type=int, nargs="+", default=[16, 128])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--no-kernels", action="store_true")
    args = ap.parse_args(argv)

    import onnx
    import qkernels as qk
    from qkernels.graph import Session

    from .encoder import cosine, sentence_embedding
    from .minilm import inputs
    qk.set_num_threads(1)
    qpath = quantized_model(args.model)
    print(f"model {args.model} -> {qpath}; CPU {qk.get_isa()}, 1 thread, {args.rounds} alternating rounds")
    g = onnx.load(args.model, load_external_data=False).graph
    hidden = next(int(i.dims[0]) for i in g.initializer if len(i.dims) == 2 and i.dims[0] == i.dims[1])
    ffn = max(int(d) for i in g.initializer if len(i.dims) == 2 for d in i.dims if d != hidden and d < 8192)
    if not args.no_kernels:
        print("kernel (one node: quantize + int8 GEMM + dequantize + bias):")
        kernel_rows([(t, hidden, n) for t in args.tokens for n in (hidden, ffn)] +
                    [(t, ffn, hidden) for t in args.tokens], args.rounds)
    qk_sess = Session(qpath, num_threads=1)
    ort_q, ort_f = _ort_session(qpath), _ort_session(args.model)
    print("model (whole quantized encoder, batch 1):")
    for t in args.tokens:
        feed = inputs(1, t)
        ta, tb = ab(lambda: qk_sess.run(None, feed), lambda: ort_q.run(None, feed), args.rounds)
        print(f"  {t:4d} tokens  qkernels {_fmt(ta)}  ORT {_fmt(tb)}  ratio {np.median(ta) / np.median(tb):.2f}")
    qk_sess.run(None, inputs(1, args.tokens[-1]), profile=True)
    print(qk_sess.format_profile(8))
    print("accuracy (8 sentences each; cosine of the quantized model's embedding to the float model's, ORT fp32):")
    for t in args.tokens:
        feed = inputs(8, t, seed=1)
        ref = sentence_embedding(ort_f.run(None, feed)[0], feed["attention_mask"])
        for who, sess in (("qkernels", qk_sess), ("ORT", ort_q)):
            c = cosine(sentence_embedding(sess.run(None, feed)[0], feed["attention_mask"]), ref)
            print(f"  {t:4d} tokens  quantized run by {who:8s}  cosine min {c.min():.5f} mean {c.mean():.5f}")


if __name__ == "__main__":
    main()
