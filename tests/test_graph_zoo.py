"""The model builders (qkernels.bench.zoo) make valid ONNX that the runner and ONNX
Runtime run alike (small widths and resolutions: fast)."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from qkernels.bench import zoo  # noqa: E402
from qkernels.graph import Session  # noqa: E402


@pytest.mark.parametrize("build", [zoo.mobilenet_v2, zoo.resnet18])
def test_zoo_models_are_valid_and_run_like_onnxruntime(build):
    model = build(width=0.25, size=32, classes=10)
    onnx.checker.check_model(model)
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    got = Session(model).run(None, {"input": x})[0]
    ref = Session(model, backends=["reference"]).run(None, {"input": x})[0]
    assert got.shape == (1, 10)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    ort = pytest.importorskip("onnxruntime")
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
