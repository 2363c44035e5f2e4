"""The encoder as onnxruntime's transformer optimizer rewrites it: com.microsoft
``EmbedLayerNormalization``, ``Attention``, ``SkipLayerNormalization``, ``BiasGelu``
(``onnxruntime.transformers.optimizer.optimize_model``, model_type "bert").

    python -m bench.ort_fused IN.onnx OUT.onnx HEADS HIDDEN [OPT_LEVEL]
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


if __name__ == "__main__":
    import onnx
    src, dst, h, d = sys.argv[1:5]
    onnx.save(ort_fused(src, int(h), int(d), int(sys.argv[5]) if len(sys.argv) > 5 else 1), dst)
