"""bench/encoder.py's two attention graphs (the classic export's and the SDPA one of
transformers 5's export): the same function, in ONNX Runtime and in the runner, with
padding in the mask."""
import numpy as np
import pytest

from qkernels.bench.encoder import bert_encoder, cosine, encoder_inputs, sentence_embedding
from qkernels.graph import Session


def test_sdpa_graph_computes_what_the_eager_one_does():
    ort = pytest.importorskip("onnxruntime")
    x = encoder_inputs(2, 12, 100, seed=1, padded=3)
    eager = bert_encoder(2, 32, 4, vocab=100, seed=5)
    sdpa = bert_encoder(2, 32, 4, vocab=100, seed=5, attention="sdpa")
    ops = {n.op_type for n in sdpa.graph.node}
    assert {"Where", "Expand", "IsNaN"} <= ops and "Div" not in ops - {n.op_type for n in eager.graph.node}
    ref = ort.InferenceSession(eager.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, x)[0]
    for model in (eager, sdpa):
        data = model.SerializeToString()
        for y in (ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, x)[0],
                  Session(data, num_threads=1).run(None, x)[0]):
            assert np.abs(y - ref).max() <= 1e-4 * np.abs(ref).max()
            e = cosine(sentence_embedding(y, x["attention_mask"]), sentence_embedding(ref, x["attention_mask"]))
            assert e.min() > 1 - 1e-9


def test_unknown_attention_is_a_value_error():
    with pytest.raises(ValueError, match="attention"):
        bert_encoder(1, 16, 2, vocab=10, attention="flash")
