"""Trained models as people have them (PaddleOCR's classifier, recogniser and detector
from the rapidocr-onnxruntime wheel, see bench/real_models.py and docs/byom.md): they
load as shipped, run like ONNX Runtime runs them, and quantize with every pre-processing
step the guide describes.

The models are a 15 MB download kept out of CI: these tests run where
``bench/real_models.py`` has fetched them into ``QKERNELS_MODEL_CACHE`` (default
``~/.cache/qkernels/models``) and are skipped, saying so, elsewhere.
"""
import math
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("PIL", reason="Pillow draws the text-line inputs")
# bench/real_models.py is a checkout-only script: imported from the checkout, and the path
# taken off again (a source folder left first on sys.path is what spawned processes, Dask's
# workers among them, would then import qkernels from: without its compiled extension)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
try:
    from bench import real_models  # noqa: E402
finally:
    sys.path.pop(0)

from qkernels.graph import Session  # noqa: E402
from qkernels.quant import quantize_model  # noqa: E402

PATHS = {k: real_models.CACHE / v for k, v in real_models.MODELS.items()}
pytestmark = pytest.mark.skipif(not all(p.exists() for p in PATHS.values()),
                                reason=f"the PaddleOCR models are not in {real_models.CACHE} "
                                       "(python -c 'import bench.real_models as r; r.fetch()' downloads them)")


def _ort(path, x):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize("model", list(real_models.MODELS))
def test_models_load_as_shipped_and_agree_with_onnxruntime(model):
    x = real_models.samples(model, 2, seed=7)
    s = Session(str(PATHS[model]), num_threads=1)
    assert s.explain().startswith("converted at load from opset 1")      # 11 or 12, as shipped
    assert not isinstance(s.get_inputs()[0].shape[0], int)             # -1 or symbolic: dynamic
    np.testing.assert_allclose(s.run(None, {"x": x})[0], _ort(PATHS[model], x), atol=2e-4, rtol=1e-3)


def test_classifier_quantizes_with_constant_weights_as_weights_and_keeps_its_answers():
    calib = real_models.samples("classifier", 32, seed=1)
    held = real_models.samples("classifier", 64, seed=1001)
    q, r = quantize_model(str(PATHS["classifier"]), {"x": calib}, progress=False, return_report=True)
    steps = " / ".join(r["preprocessing"])
    assert "opset 11 to 13" in steps and "constant folding" in steps and "batch-norm folding: 35" in steps
    # the 53 convs' and the classifier MatMul's weights, all from Constant nodes, per channel
    assert len(r["weights"]) == 54 and all(w["axis"] is not None for w in r["weights"])
    assert {t["method"] for t in r["tensors"]} <= {"minmax", "percentile", "entropy", "mse"}
    f = _ort(PATHS["classifier"], held)
    got = Session(q, num_threads=1).run(None, {"x": held})[0]
    assert np.mean(f.argmax(1) == got.argmax(1)) >= 0.95
    sqnr = 10 * math.log10(float((f.astype(np.float64) ** 2).sum()) / float(((got - f) ** 2).sum()))
    assert sqnr > 15, sqnr


def test_recogniser_int8_reads_most_lines_as_float_reads_them():
    calib = real_models.samples("recogniser", 16, seed=1)
    held = real_models.samples("recogniser", 32, seed=1001)
    q = quantize_model(str(PATHS["recogniser"]), {"x": calib}, progress=False)
    f = real_models.ctc_decode(_ort(PATHS["recogniser"], held))
    got = real_models.ctc_decode(Session(q, num_threads=1).run(None, {"x": held})[0])
    assert np.mean([a == b for a, b in zip(f, got)]) >= 0.6
