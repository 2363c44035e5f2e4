"""Quantize/dequantize benchmarks: qkernels beside numpy float32 and ONNX Runtime.

Run with::

    python -m pytest bench/test_bench_quant.py --benchmark-only              # 1 thread and all threads
    python -m pytest bench/test_bench_quant.py --benchmark-only -k r18-l1    # one case

The cases (:data:`CASES`) are tensors of real edge models: activations (NHWC feature
maps, transformer token activations) quantized per tensor to int8 or uint8, and a conv
weight quantized per output channel (int8 symmetric, ``axis=0``). Each case and thread
count (1 and all CPUs) gives two benchmark groups, ``quantize-<label>-<t>t`` and
``dequantize-<label>-<t>t``, each holding:

* ``qkernels-int8``: ``qkernels.quantize(x, scale, zero_point, dtype, axis, out=buf)`` /
  ``qkernels.dequantize(q, scale, zero_point, axis=axis, out=buf)`` into a preallocated
  output (as ONNX Runtime's I/O binding); before timing, the result is
  checked equal to the exact numpy float32 reference written here (ONNX QuantizeLinear:
  ``saturate(rint(float32 x / float32 scale) + zero_point)``, round half to even;
  DequantizeLinear: ``(q - zero_point) * scale`` in float32);
* ``numpy-f32``: the same formulas as a numpy user writes them (one thread, always);
* ``ort-int8``: ONNX Runtime one-node ``QuantizeLinear`` / ``DequantizeLinear`` (opset 13,
  scale and zero point as initializers, ``axis`` for per channel) through an I/O binding,
  intra-op spinning off; skipped, visibly, without onnxruntime or onnx. Its outputs
  differing from the exact reference are recorded (``outputs_differing_from_exact``),
  not failed on.

Rates are Gelem/s (elements / median; memory-bound: no % of peak); speed-ups and the
one-process caveat: see ``bench/suite.py`` and ``bench/test_bench_gemm.py``.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
import pytest

import qkernels as qk
from qkernels.bench.peers import onnx_bytes, ort_bound_call, ort_session
from suite import QUICK, THREADS, finish, use_threads


class Case(NamedTuple):
    label: str
    shape: tuple
    source: str
    axis: int | None = None      # None: per tensor; else per channel along this axis (int8 symmetric)
    dtype: str = "int8"


TABLE: tuple[Case, ...] = (
    Case("mbv2-stem-112", (1, 112, 112, 32), "MobileNetV2 stem conv output, NHWC"),
    Case("r18-l1-56", (1, 56, 56, 64), "ResNet-18 layer1 activation, NHWC (asymmetric uint8)", dtype="uint8"),
    Case("mbv2-last-7", (1, 7, 7, 1280), "MobileNetV2 last feature map (1x1 conv to 1280), NHWC"),
    Case("tf-128x384", (128, 384), "transformer activation, 128 tokens x d_model 384 (MiniLM / DeiT-S class)"),
    Case("tf-128x1536", (128, 1536), "transformer feed-forward hidden activation, 128 tokens x 1536"),
    Case("wconv-256x3x3x64", (256, 3, 3, 64), "conv 3x3 weight 64 -> 256 (OHWI), int8 per output channel", 0),
)
QUICK_LABELS = ("r18-l1-56", "tf-128x384")
CASES = [c for c in TABLE if not QUICK or c.label in QUICK_LABELS]
LIBS = ("qkernels-int8", "numpy-f32", "ort-int8")
PARAMS = [pytest.param(c, lib, t, id=f"{c.label}-{lib}-{t}t") for c in CASES for lib in LIBS for t in THREADS]


class Problem(NamedTuple):
    x: np.ndarray       # float32
    scale: object       # Python float (per tensor) or float32 (C,)
    zp: object          # Python int (per tensor) or int8 (C,)
    sb: np.ndarray      # float32 scale, shaped to broadcast against x
    zb: np.ndarray      # float32 zero point, likewise
    lo: int
    hi: int
    q: np.ndarray       # exact reference quantization of x


def _bcast(p, axis, ndim):
    p = np.asarray(p, np.float32)
    return p if axis is None else p.reshape([-1 if i == axis else 1 for i in range(ndim)])


@functools.cache
def _problem(case: Case) -> Problem:
    """Seeded data about 3 sigma wide in the quantized range, ~0.1% of it far outside
    (saturates) and some exact half-step ties (round half to even)."""
    rng = np.random.default_rng([7, *case.shape])
    dt = np.dtype(case.dtype)
    lo, hi = int(np.iinfo(dt).min), int(np.iinfo(dt).max)
    if case.axis is None:
        sigma, mean = 1.5, 0.5 if dt == np.uint8 else 0.0
        x = rng.standard_normal(case.shape, np.float32) * np.float32(sigma) + np.float32(mean)
        scale = float(np.float32(6 * sigma / 255))
        zp = 128 if dt == np.uint8 else 3
    else:                                              # per-channel weights, symmetric
        c = case.shape[case.axis]
        sigma = rng.uniform(0.01, 0.1, c).astype(np.float32)
        x = rng.standard_normal(case.shape, np.float32) * _bcast(sigma, case.axis, len(case.shape))
        scale, zp = (3 * sigma / 127).astype(np.float32), np.zeros(c, np.int8)
    sb, zb = _bcast(scale, case.axis, x.ndim), _bcast(zp, case.axis, x.ndim)
    flat = x.reshape(-1)
    n = flat.size
    far = np.arange(0, n, 997)
    flat[far] = np.where(far % 2, 1e3, -1e3).astype(np.float32)          # saturate both ends
    ties = np.arange(500, n, 991)
    s_at = np.broadcast_to(sb, x.shape).reshape(-1)[ties]
    flat[ties] = (rng.integers(-40, 40, ties.size) + np.float32(0.5)).astype(np.float32) * s_at
    return Problem(x, scale, zp, sb, zb, lo, hi, _ref_quantize(x, sb, zb, lo, hi, dt))


def _ref_quantize(x, sb, zb, lo, hi, dt):
    """ONNX QuantizeLinear, all in float32: divide, round half to even, add the zero point, saturate."""
    y = np.rint(np.divide(x, sb, dtype=np.float32)) + zb
    assert y.dtype == np.float32
    return np.minimum(np.maximum(y, np.float32(lo)), np.float32(hi)).astype(dt)


def _ort_call(case: Case, p: Problem, op: str, threads: int):
    pytest.importorskip("onnx", reason="ONNX Runtime peer needs onnx (pip install onnx)")
    ort = pytest.importorskip("onnxruntime", reason="ONNX Runtime peer skipped: onnxruntime not installed")
    from onnx import TensorProto, helper, numpy_helper
    qtype = {np.dtype(np.int8): TensorProto.INT8, np.dtype(np.uint8): TensorProto.UINT8}[p.q.dtype]
    src, dst = (TensorProto.FLOAT, qtype) if op == "QuantizeLinear" else (qtype, TensorProto.FLOAT)
    inits = [numpy_helper.from_array(np.asarray(p.scale, np.float32), "scale"),
             numpy_helper.from_array(np.asarray(p.zp, p.q.dtype), "zero_point")]
    attrs = {} if case.axis is None else {"axis": case.axis}
    node = helper.make_node(op, ["X", "scale", "zero_point"], ["Y"], **attrs)
    graph = helper.make_graph([node], f"{op}_{case.label}", [helper.make_tensor_value_info("X", src, case.shape)],
                              [helper.make_tensor_value_info("Y", dst, case.shape)], inits)
    sess = ort_session(onnx_bytes(graph), threads, spinning=False)
    out = np.empty(case.shape, p.q.dtype if op == "QuantizeLinear" else np.float32)
    return ort_bound_call(sess, p.x if op == "QuantizeLinear" else p.q, out, "X", "Y"), out, ort.__version__


def _run(benchmark, case, lib, threads, op, fn, ref, out=None, **info):
    benchmark.group = f"{op}-{case.label}-{threads}t"
    if out is not None:                           # ORT: record, do not fail
        info["outputs_differing_from_exact"] = int(np.count_nonzero(out != ref))
    benchmark(fn)
    finish(benchmark, lib=lib, threads=threads, work=int(np.prod(case.shape)), unit="Gelem/s", label=case.label,
           shape=list(case.shape), dtype=case.dtype, axis=case.axis, source=case.source, **info)


@pytest.mark.parametrize("case, lib, threads", PARAMS)
def test_quantize(benchmark, case, lib, threads):
    use_threads(threads)
    p = _problem(case)
    dt, out, info = p.q.dtype, None, {}
    if lib == "qkernels-int8":
        buf = np.empty_like(p.q)            # into a preallocated output, as ONNX Runtime's I/O binding

        def fn():
            return qk.quantize(p.x, p.scale, p.zp, dt, case.axis, out=buf)
        np.testing.assert_array_equal(fn().data, p.q, err_msg="qkernels.quantize differs from the exact reference")
    elif lib == "numpy-f32":
        def fn():
            return np.clip(np.rint(p.x / p.sb) + p.zb, p.lo, p.hi).astype(dt)
        np.testing.assert_array_equal(fn(), p.q, err_msg="numpy peer differs from the exact reference")
    else:
        fn, out, info["onnxruntime"] = _ort_call(case, p, "QuantizeLinear", threads)
        fn()
    _run(benchmark, case, lib, threads, "quantize", fn, p.q, out, **info)


@pytest.mark.parametrize("case, lib, threads", PARAMS)
def test_dequantize(benchmark, case, lib, threads):
    use_threads(threads)
    p = _problem(case)
    ref = (p.q.astype(np.float32) - p.zb) * p.sb
    out, info = None, {}
    if lib == "qkernels-int8":
        buf = np.empty(p.q.shape, np.float32)

        def fn():
            return qk.dequantize(p.q, p.scale, p.zp, axis=case.axis, out=buf)
        y = fn()
        assert y.dtype == np.float32
        np.testing.assert_array_equal(y, ref, err_msg="qkernels.dequantize differs from the float32 reference")
    elif lib == "numpy-f32":
        def fn():
            return (p.q.astype(np.float32) - p.zb) * p.sb
    else:
        fn, out, info["onnxruntime"] = _ort_call(case, p, "DequantizeLinear", threads)
        fn()
    _run(benchmark, case, lib, threads, "dequantize", fn, ref, out, **info)
