"""GEMM benchmarks: qkernels int8 and fp16 beside numpy float32 (and float16) and ONNX
Runtime int8.

Run with::

    python -m pytest bench/ --benchmark-only                      # every suite, 1 thread and all threads
    python -m pytest bench/test_bench_gemm.py --benchmark-only -k square-1024    # one shape
    python -m pytest bench/ --benchmark-only --benchmark-json=b.json   # save; later:
    python -m pytest bench/ --benchmark-only --benchmark-compare=<saved> --benchmark-compare-fail=median:10%

Shapes come from ``bench/shapes.py`` (the table of :mod:`qkernels.bench.gemm`, shared with
``python -m qkernels bench`` and docs/performance.md). Each shape and thread count
(1 and all CPUs) is one benchmark group holding:

* ``qkernels-int8``: ``qkernels.matmul`` uint8 A (per tensor) x int8 B (per column,
  packed once outside the timing), fp32 requantization to a preallocated uint8 ``out=``;
  the result is first checked against the exact numpy reference;
* ``qkernels-f16``: ``qkernels.matmul`` on float16 A and packed float16 B, float16 ``out=``
  (not on the ``-w7`` shapes: in fp16 they are their full-range twins), first checked
  within the fp16 accuracy bound (``qkernels.bench.f16.accuracy_check``);
* ``numpy-f32``: float32 ``np.matmul(a, b, out=c)``, its BLAS limited to the thread count
  (threadpoolctl, else OpenBLAS's ``set_num_threads`` through ctypes);
* ``numpy-f16``: ``np.matmul`` on the float16 arrays (no BLAS: 1 thread, small shapes only);
* ``ort-int8``: ONNX Runtime one-node ``QLinearMatMul`` (uint8 x int8 per column, uint8
  out) through an I/O binding, ``intra_op_num_threads`` set; skipped, visibly, when
  onnxruntime or onnx is not installed. Intra-op spinning is turned off here, so that
  its idle pool threads do not steal cores from the next benchmark in this process.

GOP/s (``2*M*N*K`` / median), % of peak and the speed-ups: see ``bench/suite.py``.

Caveat: pytest-benchmark runs everything in ONE process, so the libraries' thread
pools (OpenMP, OpenBLAS, ONNX Runtime) live side by side and idle workers of one can
take a core from another; numpy's OpenBLAS also keeps any OPENBLAS_CORETYPE /
OPENBLAS_L2_SIZE of the environment. Use these suites to track one library across
commits; for ratios between libraries trust ``python -m qkernels bench``, which times
each library and thread count in its own process.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest

import qkernels as qk
from qkernels.bench import f16 as bench_f16
from qkernels.bench.gemm import make_problem, ort_model, reference, shapes
from qkernels.bench.peers import blas_set_num_threads, ort_bound_call, ort_session
from suite import CPUS, QUICK, THREADS, finish, use_threads

SHAPES = shapes(quick=QUICK)
CASES = [pytest.param(s, t, id=f"{s.label}-{t}t") for s in SHAPES for t in THREADS]
#: fp16 has no 7-bit-weight twins: in float16 they are the same GEMM as their full-range shape.
F16_CASES = [c for c in CASES if c.values[0].wbits >= 8]
#: numpy float16 matmul has no BLAS (about 0.4 GOP/s, one thread): timed on small shapes only.
NUMPY_F16_MAX_MNK = 1 << 22


@functools.lru_cache(maxsize=None)
def _problem(shape):
    return make_problem(shape)


@functools.lru_cache(maxsize=None)
def _reference(shape):
    return reference(_problem(shape))


@functools.lru_cache(maxsize=None)
def _problem_f16(shape):
    return bench_f16.make_problem(shape)


def _run(benchmark, fn, shape, threads, lib, peak=None, **info):
    benchmark.group = f"gemm-{shape.label}-{threads}t"
    benchmark(fn)
    finish(benchmark, lib=lib, threads=threads, work=shape.ops, peak=peak, m=shape.m, n=shape.n, k=shape.k, **info)


@pytest.mark.parametrize("shape, threads", CASES)
def test_qkernels_int8_matmul(benchmark, shape, threads):
    use_threads(threads)
    p = _problem(shape)
    aq = qk.QTensor(p.a, p.sa, p.za)
    pw = qk.pack_weights(qk.QTensor(p.b, p.sb, 0, axis=1))
    y = np.empty((shape.m, shape.n), np.uint8)

    def call():
        return qk.matmul(aq, pw, out_scale=p.sy, out_zero_point=p.zy, out=y)

    call()                                    # prepares the call once, outside the timing
    np.testing.assert_array_equal(y, _reference(shape)[1], err_msg="qkernels differs from the exact reference")
    _run(benchmark, call, shape, threads, "qkernels-int8", peak=("int8", shape.wbits))


@pytest.mark.parametrize("shape, threads", F16_CASES)
def test_qkernels_f16_matmul(benchmark, shape, threads):
    use_threads(threads)
    p = _problem_f16(shape)
    pw = qk.pack_weights(p.b)
    y = np.empty((shape.m, shape.n), np.float16)
    call = functools.partial(qk.matmul, p.a, pw, out=y)
    call()
    check = bench_f16.accuracy_check(y, p, "neonfp16" in qk.cpu_info()["f16_kernel"])
    assert check["within_bound"], check
    _run(benchmark, call, shape, threads, "qkernels-f16", peak=("f16",), max_err_rel=check["max_err_rel"])


@pytest.mark.parametrize("shape, threads", CASES)
def test_numpy_float32_matmul(benchmark, shape, threads):
    use_threads(threads)
    controlled = blas_set_num_threads(threads)
    try:
        p = _problem(shape)
        a = (p.a.astype(np.float32) - np.float32(p.za)) * np.float32(p.sa)
        b = p.b.astype(np.float32) * p.sb
        c = np.empty((shape.m, shape.n), np.float32)
        _run(benchmark, functools.partial(np.matmul, a, b, out=c), shape, threads, "numpy-f32",
             blas_threads_controlled=controlled)
    finally:
        blas_set_num_threads(CPUS)


@pytest.mark.parametrize("shape, threads", F16_CASES)
def test_numpy_float16_matmul(benchmark, shape, threads):
    if shape.m * shape.n * shape.k > NUMPY_F16_MAX_MNK or threads > 1:
        pytest.skip("numpy float16 matmul: one thread, about 0.4 GOP/s (timed only on small shapes, 1 thread)")
    p = _problem_f16(shape)
    c = np.empty((shape.m, shape.n), np.float16)
    _run(benchmark, functools.partial(np.matmul, p.a, p.b, out=c), shape, threads, "numpy-f16")


@pytest.mark.parametrize("shape, threads", CASES)
def test_onnxruntime_int8_qlinearmatmul(benchmark, shape, threads):
    pytest.importorskip("onnx", reason="ONNX Runtime peer needs onnx (pip install onnx)")
    ort = pytest.importorskip("onnxruntime", reason="ONNX Runtime peer skipped: onnxruntime not installed")
    use_threads(threads)
    p = _problem(shape)
    sess = ort_session(ort_model(p, "QLinearMatMul"), threads, spinning=False)
    y = np.empty((shape.m, shape.n), np.uint8)
    call = ort_bound_call(sess, p.a, y)
    call()
    # ONNX Runtime's u8 x s8 AVX2 path saturates (vpmaddubsw): recorded, not a failure.
    differing = int(np.count_nonzero(y != _reference(shape)[1]))
    _run(benchmark, call, shape, threads, "ort-int8", onnxruntime=ort.__version__,
         outputs_differing_from_exact=differing)
