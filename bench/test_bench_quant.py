"""Quantize/dequantize benchmarks: qkernels beside numpy float32 and ONNX Runtime.

Run with::

    python -m pytest bench/test_bench_quant.py --benchmark-only              # 1 thread and all threads
    python -m pytest bench/test_bench_quant.py --benchmark-only -k r18-l1    # one case

The cases are those of ``qkernels bench --suite quant`` (``qkernels.bench.quant.CASES``,
the one table; its ``QUICK`` subset under ``QKERNELS_BENCH_QUICK=1``): tensors of real
edge models, activations (NHWC feature maps, transformer token activations) quantized
per tensor to int8 or uint8, and a conv weight quantized per output channel (int8
symmetric, ``axis=0``); their data and exact references are that module's
(``make_problem``, ``ort_model``). Each case and thread
count (1 and all CPUs) gives two benchmark groups, ``quantize-<label>-<t>t`` and
``dequantize-<label>-<t>t``, each holding:

* ``qkernels-int8``: ``qkernels.quantize(x, scale, zero_point, dtype, axis, out=buf)`` /
  ``qkernels.dequantize(q, scale, zero_point, axis=axis, out=buf)`` into a preallocated
  output (as ONNX Runtime's I/O binding); before timing, the result is
  checked equal to the exact numpy float32 reference (``qkernels.bench.quant``; ONNX QuantizeLinear:
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

import numpy as np
import pytest

import qkernels as qk
from qkernels.bench import quant
from suite import QUICK, THREADS, finish, use_threads

CASES = quant.cases(quick=QUICK)
LIBS = ("qkernels-int8", "numpy-f32", "ort-int8")
PARAMS = [pytest.param(c, lib, t, id=f"{c.label}-{lib}-{t}t") for c in CASES for lib in LIBS for t in THREADS]

#: The data and exact references of a case, made once per session.
_problem = functools.cache(quant.make_problem)


def _ort_call(case: quant.Case, p: quant.Problem, op: str, threads: int):
    pytest.importorskip("onnx", reason="ONNX Runtime peer needs onnx (pip install onnx)")
    ort = pytest.importorskip("onnxruntime", reason="ONNX Runtime peer skipped: onnxruntime not installed")
    return (*quant.ort_call(case, p, op, threads), ort.__version__)


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
    ref = p.y
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
