"""int8 GEMM benchmarks: qkernels beside numpy float32 and ONNX Runtime int8.

Run with::

    python -m pytest bench/ --benchmark-only                      # all shapes, 1 and 2 threads
    python -m pytest bench/ --benchmark-only -k square-1024       # one shape
    python -m pytest bench/ --benchmark-only --benchmark-json=b.json   # save; later:
    python -m pytest bench/ --benchmark-only --benchmark-compare=<saved> --benchmark-compare-fail=median:10%

Shapes come from ``bench/shapes.py`` (the table of :mod:`qkernels.bench`, shared with
``python -m qkernels bench`` and docs/performance.md). Each shape is one benchmark
group holding, at 1 and 2 threads:

* ``qkernels``: ``qkernels.matmul`` uint8 A (per tensor) x int8 B (per column,
  packed once outside the timing), fp32 requantization to a preallocated uint8 ``out=``;
  the result is first checked against the exact numpy reference;
* ``numpy``: float32 ``np.matmul(a, b, out=c)``, its BLAS limited to the thread count
  (threadpoolctl, else OpenBLAS's ``set_num_threads`` through ctypes);
* ``ort``: ONNX Runtime one-node ``QLinearMatMul`` (uint8 x int8 per column, uint8
  out) through an I/O binding, ``intra_op_num_threads`` set; skipped, visibly, when
  onnxruntime or onnx is not installed. Intra-op spinning is turned off here, so that
  its idle pool threads do not steal cores from the next benchmark in this process.

``extra_info`` of every benchmark holds its GOP/s (``2*M*N*K`` / median) and the shape.

Caveat: pytest-benchmark runs everything in ONE process, so the libraries' thread
pools (OpenMP, OpenBLAS, ONNX Runtime) live side by side and idle workers of one can
take a core from another; numpy's OpenBLAS also keeps any OPENBLAS_CORETYPE /
OPENBLAS_L2_SIZE of the environment. Use this suite to track one library across
commits; for ratios between libraries trust ``python -m qkernels bench``, which times
each library and thread count in its own process.
"""
from __future__ import annotations

import functools
import os

import numpy as np
import pytest

import qkernels as qk
from qkernels.bench import blas_set_num_threads, make_problem, ort_bound_call, ort_model, ort_session, reference
from shapes import SHAPES

THREADS = (1, 2)
CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

CASES = [pytest.param(s, t, id=f"{s.label}-{t}t") for s in SHAPES for t in THREADS]


@functools.lru_cache(maxsize=None)
def _problem(shape):
    return make_problem(shape)


@functools.lru_cache(maxsize=None)
def _reference(shape):
    return reference(_problem(shape))


def _skip_oversubscribed(threads):
    if threads > CPUS:
        pytest.skip(f"{threads} threads on {CPUS} CPU(s)")


def _record(benchmark, shape, threads, lib):
    benchmark.group = shape.label
    benchmark.extra_info.update(lib=lib, threads=threads, m=shape.m, n=shape.n, k=shape.k)


def _finish(benchmark, shape):
    stats = getattr(benchmark, "stats", None)
    if stats is not None:                     # None under --benchmark-disable
        benchmark.extra_info["gops_median"] = round(shape.ops / stats.stats.median / 1e9, 2)
        benchmark.extra_info["gops_max"] = round(shape.ops / stats.stats.min / 1e9, 2)


@pytest.fixture
def qk_threads():
    before = qk.get_num_threads()
    yield qk.set_num_threads
    qk.set_num_threads(before)


@pytest.mark.parametrize("shape, threads", CASES)
def test_qkernels_int8_matmul(benchmark, shape, threads, qk_threads):
    _skip_oversubscribed(threads)
    qk_threads(threads)
    p = _problem(shape)
    aq = qk.QTensor(p.a, p.sa, p.za)
    pw = qk.pack_weights(qk.QTensor(p.b, p.sb, 0, axis=1))
    y = np.empty((shape.m, shape.n), np.uint8)

    def call():
        return qk.matmul(aq, pw, out_scale=p.sy, out_zero_point=p.zy, out=y)

    call()                                    # packs B, outside the timing
    _, y_ref = _reference(shape)
    np.testing.assert_array_equal(y, y_ref, err_msg="qkernels result differs from the exact reference")
    _record(benchmark, shape, threads, f"qkernels-{qk.get_isa()}")
    benchmark(call)
    _finish(benchmark, shape)


@pytest.mark.parametrize("shape, threads", CASES)
def test_numpy_float32_matmul(benchmark, shape, threads):
    _skip_oversubscribed(threads)
    controlled = blas_set_num_threads(threads)
    try:
        p = _problem(shape)
        a = (p.a.astype(np.float32) - np.float32(p.za)) * np.float32(p.sa)
        b = p.b.astype(np.float32) * p.sb
        c = np.empty((shape.m, shape.n), np.float32)
        _record(benchmark, shape, threads, "numpy-float32")
        benchmark.extra_info["blas_threads_controlled"] = controlled
        benchmark(np.matmul, a, b, out=c)
        _finish(benchmark, shape)
    finally:
        blas_set_num_threads(CPUS)


@pytest.mark.parametrize("shape, threads", CASES)
def test_onnxruntime_int8_qlinearmatmul(benchmark, shape, threads):
    pytest.importorskip("onnx", reason="ONNX Runtime peer needs onnx (pip install onnx)")
    ort = pytest.importorskip("onnxruntime", reason="ONNX Runtime peer skipped: onnxruntime not installed")
    _skip_oversubscribed(threads)
    p = _problem(shape)
    sess = ort_session(ort_model(p, "QLinearMatMul"), threads, spinning=False)
    y = np.empty((shape.m, shape.n), np.uint8)
    call = ort_bound_call(sess, p.a, y)
    call()
    _, y_ref = _reference(shape)
    _record(benchmark, shape, threads, f"onnxruntime-{ort.__version__}")
    # ONNX Runtime's u8 x s8 AVX2 path saturates (vpmaddubsw): record, do not fail.
    benchmark.extra_info["outputs_differing_from_exact"] = int(np.count_nonzero(y != y_ref))
    benchmark(call)
    _finish(benchmark, shape)
