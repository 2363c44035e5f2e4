"""Whole-model benchmarks: the qkernels graph runner beside ONNX Runtime on MobileNetV2
and ResNet-18, float32 and int8, and a BERT-class encoder at 16 and 128 tokens (float32,
ORT quantize_dynamic int8, qkernels.quant fp16: the suite's models, see bench/models.py;
an encoder variant is compared by the cosine of its sentence embedding to float32's).

Run with::

    python -m pytest bench/test_bench_models.py --benchmark-only                   # 224px models
    QKERNELS_BENCH_QUICK=1 python -m pytest bench/test_bench_models.py --benchmark-only   # small ones

The models, their int8 variant, the input and the checks are :mod:`qkernels.bench.models`'
(``python -m qkernels bench --suite models``): each architecture is built once per session
(``write_model``: zoo builder, seeded weights; int8 quantized once by ONNX Runtime's own
tools, QDQ, s8 per channel) into a temporary folder, so both libraries run the
very same bytes. Each architecture and thread count (1 and all CPUs) is one benchmark group
``model-<arch>-<t>t`` holding, in milliseconds per ``run(None, {"input": x})``:

* ``qkernels-int8`` / ``qkernels-fp32``: ``qkernels.graph.Session(model, num_threads=t)``
  on the int8 / float32 model;
* ``ort-int8`` / ``ort-fp32``: ``onnxruntime.InferenceSession`` on the same bytes
  (``intra_op_num_threads`` = t, intra-op spinning off so that its idle pool does not
  steal cores from the next benchmark of this process).

Before timing, qkernels' logits are compared with ONNX Runtime's (1 thread): float32
within ``FP32_RTOL`` of the largest |logit| (else the test fails); int8 is information
(``check`` in ``extra_info``: largest difference in output LSB, argmax agreement). Without
onnxruntime the ORT rows and the int8 models (ORT quantizes them) are skipped, visibly,
and the float32 logits go unchecked. Same one-process caveat as test_bench_gemm.py: for
ratios between libraries trust ``python -m qkernels bench --suite models``.
"""
from __future__ import annotations

import functools
import importlib.util
from typing import NamedTuple

import pytest
from suite import CPUS, QUICK, THREADS, finish, use_threads

from qkernels.bench import models as bench_models
from qkernels.bench.peers import blas_set_num_threads, have, ort_session
from qkernels.bench.timing import check_failed

MODELS = bench_models.models(quick=QUICK)
CASES = [pytest.param(m, lib, t, id=f"{m.arch}-{lib}-{m.variant}-{t}t")
         for arch in dict.fromkeys(m.arch for m in MODELS) for t in THREADS
         for m in MODELS if m.arch == arch for lib in ("qkernels", "ort")]


def _need_ort(why: str):
    return pytest.importorskip("onnxruntime", reason=f"{why}: onnxruntime not installed")


class Prepared(NamedTuple):
    """A model as both libraries run it: its bytes, the timed input, ONNX Runtime's logits."""
    data: bytes
    x: object
    ref: object                   # ORT's logits (1 thread), None without onnxruntime
    output_scale: float | None    # int8: the logits' quantization scale
    ref_qdq: object               # int8: ORT's logits with its optimizations off (float QDQ)
    ref32: object = None          # an encoder variant: ORT's output of the float32 model


@functools.cache
def _prepare(model, folder) -> Prepared:
    path, proto = bench_models.write_model(model, str(folder))
    with open(path, "rb") as f:
        data = f.read()
    x = bench_models.feeds(model)
    have_ort = have("onnxruntime")
    ref, ref_qdq = bench_models.ort_references(data, model, x) if have_ort else (None, None)
    ref32 = None
    if model.tokens and model.variant != "fp32" and have_ort:   # an encoder variant: compared with float32
        ref32 = bench_models.ort_references(bench_models.build(model.twin).SerializeToString(), model.twin, x)[0]
    return Prepared(data, x, ref, bench_models.output_scale(proto), ref_qdq, ref32)


@pytest.fixture(scope="session")
def model_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


def _check(model, p: Prepared, logits) -> dict | None:
    """bench_models' check of qkernels' logits; fails the test only when it is blocking."""
    if p.ref is None:
        return None
    if model.variant == "fp32":
        check = bench_models.check_fp32(logits, p.ref)
    elif model.tokens:
        check = bench_models.compare_embedding(logits, p.ref32, p.x["attention_mask"], p.ref)
    else:
        check = bench_models.compare_int8(logits, p.ref, p.output_scale, p.ref_qdq)
    assert not (check_failed(check) and check.get("blocking")), \
        f"{model.label}: qkernels' logits differ from ONNX Runtime's: {bench_models.check_cell(check)}"
    return check


@pytest.mark.parametrize("model, lib, threads", CASES)
def test_model(benchmark, model_folder, model, lib, threads):
    if lib == "ort":
        ort = _need_ort("ONNX Runtime peer skipped")
    elif model.variant.startswith("int8"):
        _need_ort("int8 model skipped: ONNX Runtime's quantizer makes it")
    elif model.variant == "fp16":
        _need_ort("fp16 encoder skipped: its check needs ONNX Runtime's float32 output")
    if model.real and importlib.util.find_spec("PIL") is None:
        pytest.skip(f"{model.label}: its input (a rendered text line) needs Pillow, not installed")
    use_threads(threads)
    try:
        p = _prepare(model, model_folder)
    except Exception as exc:   # noqa: BLE001 - the fp16 conversion failing is qkernels.quant's, shown as a skip
        if model.variant != "fp16":
            raise
        pytest.skip(f"qkernels.quant.quantize_model(target='fp16') failed on {model.label}: {exc}")
    feeds = p.x
    benchmark.group = f"model-{model.arch}-{threads}t"
    if lib == "ort":
        session = ort_session(p.data, threads, spinning=False)
        session.run(None, feeds)
        benchmark(session.run, None, feeds)
        info = {"onnxruntime": ort.__version__}
    else:
        from qkernels.graph import Session
        # numpy's BLAS (the runner's float convolutions) on 1 thread, as in bench_models' qkernels worker
        info = {"blas_threads_controlled": blas_set_num_threads(1)}
        try:
            session = Session(p.data, num_threads=threads)
            info["check"] = _check(model, p, session.run(None, feeds)[0])
            benchmark(session.run, None, feeds)
        finally:
            blas_set_num_threads(CPUS)
    finish(benchmark, lib=f"{lib}-{model.variant}", threads=threads, work=None, model=model.label,
           geometry=model.geometry, **info)
