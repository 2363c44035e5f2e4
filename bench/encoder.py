"""A BERT-class encoder as the ONNX graph a standard opset-17 export gives (Hugging Face
``BertModel`` through ``torch.onnx.export``): for tests, benchmarks and the trained
sentence encoder of :mod:`bench.minilm`.

The graph is what such an export holds, op for op, so the runner meets the patterns real
models have: embeddings by ``Gather`` (positions by ``Slice`` of a constant table up to
the sequence length read with ``Shape``), the attention mask made additive by
``Unsqueeze``/``Cast``/``Sub``/``Mul``, heads split and merged by ``Reshape`` targets
built with ``Shape``/``Gather``/``Unsqueeze``/``Concat`` and ``Transpose``, scores
``Div`` by the square root of the head size, ``Softmax``, the exact GELU as
``Div``/``Erf``/``Add``/``Mul``/``Mul``, post-norm ``LayerNormalization``.

Inputs ``input_ids``, ``attention_mask``, ``token_type_ids`` (int64, [batch, tokens]);
output ``last_hidden_state`` (float32, [batch, tokens, hidden]).
:func:`sentence_embedding` is sentence-transformers' mean pooling + L2 normalisation.

``attention="sdpa"``: the attention of the graph transformers 5's ``torch.onnx.export`` gives
with its default SDPA attention (see ``bench/minilm_torch_check.py``): the mask made a
boolean [batch, 1, tokens, tokens] by ``Cast``/``Unsqueeze``/``Expand``, made additive in
every layer by ``Where`` (0 or the float32 minimum); queries and keys each scaled by ``Mul``
with head_size^-1/4; the probabilities guarded by ``IsNaN``/``Where`` after ``Softmax``.

Weights: seeded random ones (``weights=None``), or a dict of Hugging Face's names
(``encoder.layer.0.attention.self.query.weight``, [out, in] as torch stores them).
"""
from __future__ import annotations

import numpy as np


def random_weights(layers: int, hidden: int, ffn: int, vocab: int, positions: int = 512,
                   seed: int = 0, outliers: bool = True) -> dict[str, np.ndarray]:
    """BERT's initialisation (normal, std 0.02; LayerNorm 1/0), with, when ``outliers``,
    what trained encoders have and static int8 loses accuracy to: a few hidden channels
    of large LayerNorm gain (activation outliers) and FFN inputs of long-tailed range."""
    rng = np.random.default_rng(seed)

    def n(*shape, std=0.02):
        return (rng.standard_normal(shape) * std).astype(np.float32)

    w = {"embeddings.word_embeddings.weight": n(vocab, hidden, std=0.5),
         "embeddings.position_embeddings.weight": n(positions, hidden, std=0.2),
         "embeddings.token_type_embeddings.weight": n(2, hidden, std=0.2),
         "embeddings.LayerNorm.weight": np.ones(hidden, np.float32),
         "embeddings.LayerNorm.bias": np.zeros(hidden, np.float32)}
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for name in ("query", "key", "value"):
            w[p + f"attention.self.{name}.weight"] = n(hidden, hidden, std=1 / np.sqrt(hidden))
            w[p + f"attention.self.{name}.bias"] = n(hidden)
        w[p + "attention.output.dense.weight"] = n(hidden, hidden, std=1 / np.sqrt(hidden))
        w[p + "attention.output.dense.bias"] = n(hidden)
        w[p + "intermediate.dense.weight"] = n(ffn, hidden, std=1 / np.sqrt(hidden))
        w[p + "intermediate.dense.bias"] = n(ffn)
        w[p + "output.dense.weight"] = n(hidden, ffn, std=1 / np.sqrt(ffn))
        w[p + "output.dense.bias"] = n(hidden)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            gain = 1 + n(hidden, std=0.1)
            if outliers:
                gain[rng.choice(hidden, max(1, hidden // 64), replace=False)] *= 12
            w[p + norm + ".weight"] = gain.astype(np.float32)
            w[p + norm + ".bias"] = n(hidden)
    return w


def bert_encoder(layers: int = 2, hidden: int = 64, heads: int = 4, ffn: int | None = None,
                 vocab: int = 1000, positions: int = 512, eps: float = 1e-12, seed: int = 0,
                 weights: dict | None = None, opset: int = 17, attention: str = "eager"):
    """The encoder as an ``onnx.ModelProto`` (see the module docstring; ``attention``:
    ``"eager"`` or ``"sdpa"``)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if attention not in ("eager", "sdpa"):
        raise ValueError(f"attention must be 'eager' or 'sdpa', not {attention!r}")
    ffn = ffn or 4 * hidden
    w = weights if weights is not None else random_weights(layers, hidden, ffn, vocab, positions, seed)
    vocab = w["embeddings.word_embeddings.weight"].shape[0]
    head = hidden // heads
    nodes, inits = [], []
    count = [0]

    def name(kind):
        count[0] += 1
        return f"/{kind}_{count[0]}"

    def const(arr, kind="c"):
        nm = name(kind)
        inits.append(numpy_helper.from_array(np.asarray(arr), nm))
        return nm

    def node(op, ins, **attrs):
        out = name(op)
        nodes.append(helper.make_node(op, ins, [out], name=out, **attrs))
        return out

    def linear(x, prefix):           # torch's Linear as exported: MatMul by Wᵀ, then Add bias
        y = node("MatMul", [x, const(np.ascontiguousarray(w[prefix + ".weight"].T), "W")])
        return node("Add", [const(w[prefix + ".bias"], "b"), y])

    def layer_norm(x, prefix):
        return node("LayerNormalization", [x, const(w[prefix + ".weight"], "g"),
                                           const(w[prefix + ".bias"], "b")], axis=-1, epsilon=eps)

    def dim(x, i):                    # a dimension of x as a 1-element int64 tensor
        return node("Unsqueeze", [node("Gather", [node("Shape", [x]), const(np.int64(i))], axis=0),
                                  const(np.array([0], np.int64))])

    def split_heads(x, perm):
        shape = node("Concat", [dim(x, 0), dim(x, 1), const(np.array([heads], np.int64)),
                                const(np.array([head], np.int64))], axis=0)
        return node("Transpose", [node("Reshape", [x, shape])], perm=perm)

    ids, tt = "input_ids", "token_type_ids"
    length = dim(ids, 1)
    pos = node("Slice", [const(np.arange(positions, dtype=np.int64)[None], "position_ids"),
                         const(np.array([0], np.int64)), length, const(np.array([1], np.int64))])
    x = node("Add", [node("Gather", [const(w["embeddings.word_embeddings.weight"], "word"), ids]),
                     node("Gather", [const(w["embeddings.token_type_embeddings.weight"], "type"), tt])])
    x = node("Add", [x, node("Gather", [const(w["embeddings.position_embeddings.weight"], "pos"), pos])])
    x = layer_norm(x, "embeddings.LayerNorm")

    lowest = np.float32(np.finfo(np.float32).min)
    if attention == "eager":
        m = node("Cast", [node("Unsqueeze", ["attention_mask", const(np.array([1, 2], np.int64))])],
                 to=TensorProto.FLOAT)
        m = node("Mul", [node("Sub", [const(np.float32(1.0)), m]), const(lowest)])
    else:   # a boolean [batch, 1, tokens, tokens] mask, made additive by Where in each layer
        m = node("Cast", [node("Unsqueeze", ["attention_mask", const(np.array([1, 2], np.int64))])],
                 to=TensorProto.BOOL)
        m = node("Expand", [m, node("Concat", [dim(ids, 0), const(np.array([1], np.int64)), length, length],
                                    axis=0)])

    for i in range(layers):
        p = f"encoder.layer.{i}."
        q = split_heads(linear(x, p + "attention.self.query"), [0, 2, 1, 3])
        k = split_heads(linear(x, p + "attention.self.key"), [0, 2, 3, 1])
        v = split_heads(linear(x, p + "attention.self.value"), [0, 2, 1, 3])
        if attention == "eager":
            s = node("Div", [node("MatMul", [q, k]), const(np.float32(np.sqrt(head)))])
            p_ = node("Softmax", [node("Add", [s, m])], axis=-1)
        else:
            root = const(np.float32(head ** -0.25))
            s = node("MatMul", [node("Mul", [q, root]), node("Mul", [k, root])])
            p_ = node("Softmax", [node("Add", [s, node("Where", [m, const(np.float32(0.0)), const(lowest)])])],
                      axis=-1)
            p_ = node("Where", [node("IsNaN", [p_]), const(np.float32(0.0)), p_])
        a = node("MatMul", [p_, v])
        a = node("Transpose", [a], perm=[0, 2, 1, 3])
        a = node("Reshape", [a, node("Concat", [dim(a, 0), dim(a, 1),
                                                const(np.array([hidden], np.int64))], axis=0)])
        x = layer_norm(node("Add", [linear(a, p + "attention.output.dense"), x]),
                       p + "attention.output.LayerNorm")
        h = linear(x, p + "intermediate.dense")
        g = node("Add", [node("Erf", [node("Div", [h, const(np.float32(np.sqrt(2.0)))])]),
                         const(np.float32(1.0))])
        h = node("Mul", [node("Mul", [h, g]), const(np.float32(0.5))])
        x = layer_norm(node("Add", [linear(h, p + "output.dense"), x]), p + "output.LayerNorm")
    nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"]))

    io = [helper.make_tensor_value_info(nm, TensorProto.INT64, ["batch", "tokens"])
          for nm in ("input_ids", "attention_mask", "token_type_ids")]
    out = [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT,
                                         ["batch", "tokens", hidden])]
    g = helper.make_graph(nodes, "bert_encoder", io, out, inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="qkernels-bench")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def encoder_inputs(batch: int, tokens: int, vocab: int, seed: int = 0, padded: int = 0):
    """Token ids (CLS ... SEP shaped, ids 1..vocab-1), an attention mask with ``padded``
    padding positions at the end of every row, token types 0."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocab, size=(batch, tokens), dtype=np.int64)
    mask = np.ones((batch, tokens), np.int64)
    if padded:
        mask[:, tokens - padded:] = 0
        ids[:, tokens - padded:] = 0
    return {"input_ids": ids, "attention_mask": mask,
            "token_type_ids": np.zeros((batch, tokens), np.int64)}


def sentence_embedding(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """sentence-transformers' pooling of all-MiniLM: the mean over unmasked tokens, then
    L2-normalised (float64)."""
    m = mask.astype(np.float64)[..., None]
    e = (hidden.astype(np.float64) * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    return e / np.linalg.norm(e, axis=-1, keepdims=True)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two embedding batches (float64)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
