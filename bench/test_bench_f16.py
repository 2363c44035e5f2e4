"""fp16 GEMM benchmarks (pytest-benchmark): qkernels fp16 beside numpy float32 and
float16, at the shapes of ``qkernels.bench_f16.SHAPES``, 1 and 2 threads.

Run with ``python -m pytest bench/test_bench_f16.py --benchmark-only``. Before timing,
qkernels' output is checked within the fp16 accuracy contract's bound (the same check
as ``python -m qkernels bench --suite f16``). numpy float16 (no BLAS, about 0.4 GOP/s) is
timed only up to M*N*K = 2^22 here. Same one-process caveat as test_bench_gemm.py.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest

import qkernels as qk
from qkernels import bench_f16

NUMPY_F16_MAX_MNK = 1 << 22


@functools.lru_cache(maxsize=None)
def _problem(label: str):
    shape = next(s for s in bench_f16.SHAPES if s.label == label)
    return shape, bench_f16.make_problem(shape)


CASES = [pytest.param(s.label, lib, t, id=f"{s.label}-{lib}-{t}thr") for s in bench_f16.SHAPES
         for lib in ("qkernels", "numpy-f32", "numpy-f16") for t in (1, 2)]


@pytest.mark.parametrize("label,lib,threads", CASES)
def test_f16_gemm(benchmark, label, lib, threads):
    shape, p = _problem(label)
    benchmark.group = f"f16-{label}-{threads}thr"
    if lib == "qkernels":
        qk.set_num_threads(threads)
        pw = qk.pack_weights(p.b)
        y = np.empty((shape.m, shape.n), np.float16)
        fn = functools.partial(qk.matmul, p.a, pw, out=y)
        fn()
        check = bench_f16.accuracy_check(y, p, "neonfp16" in qk.cpu_info()["f16_kernel"])
        assert check["within_bound"], check
    elif lib == "numpy-f32":
        a, b, c = p.a.astype(np.float32), p.b.astype(np.float32), np.empty((shape.m, shape.n), np.float32)
        fn = functools.partial(np.matmul, a, b, out=c)
    else:
        if shape.m * shape.n * shape.k > NUMPY_F16_MAX_MNK or threads > 1:
            pytest.skip("numpy float16 matmul: one thread, about 0.4 GOP/s (timed only on small shapes)")
        c = np.empty((shape.m, shape.n), np.float16)
        fn = functools.partial(np.matmul, p.a, p.b, out=c)
    benchmark(fn)
    benchmark.extra_info["gops"] = shape.ops / benchmark.stats.stats.median / 1e9
