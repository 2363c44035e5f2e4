"""int8 convolution benchmarks: qkernels ``conv2d`` beside ONNX Runtime int8
``QLinearConv`` and float32 ``Conv`` at real edge layers, 1 and 2 threads, one process.

Run with ``python -m pytest bench/test_bench_conv.py --benchmark-only``. Each layer is
one benchmark group; ``extra_info`` holds GOP/s (2 x multiply-adds / median). The
layers, problems and ONNX models are :mod:`qkernels.bench_conv`'s (the layer table
through ``bench/shapes.py``), shared with ``python -m qkernels bench --suite conv``,
which also times numpy float32 and XNNPACK, each library in its own process: trust
ratios between libraries from that command (same one-process caveat as
test_bench_gemm.py). Before timing, the qkernels output is checked equal to the exact
int64 reference; ONNX Runtime's int8 output is compared with it too (recorded).
"""
from __future__ import annotations

import functools

import numpy as np
import pytest

import qkernels as qk
from qkernels import bench_conv
from qkernels.bench import ort_bound_call, ort_session
from shapes import LAYERS


@functools.lru_cache(maxsize=None)
def _problem(layer):
    return bench_conv.make_problem(layer)


@functools.lru_cache(maxsize=None)
def _reference(layer):
    return bench_conv.reference(_problem(layer))[1]


def _ort_call(layer, dtype: str, threads: int):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    p = _problem(layer)
    sess = ort_session(bench_conv.ort_model(p, dtype), threads, spinning=False)
    y = np.empty((1, layer.o, layer.out_hw, layer.out_hw), np.int8 if dtype == "int8" else np.float32)
    return ort_bound_call(sess, bench_conv.ort_feed(p, dtype), y, "x", "y"), y


CASES = [pytest.param(layer, lib, t, id=f"{layer.label}-{lib}-{t}thr") for layer in LAYERS
         for lib in ("qkernels", "ort-int8", "ort-fp32") for t in (1, 2)]


@pytest.mark.parametrize("layer,lib,threads", CASES)
def test_conv(benchmark, layer, lib, threads):
    benchmark.group = f"{layer.label}-{threads}thr"
    qk.set_num_threads(threads)
    if lib == "qkernels":
        fn, y = bench_conv.qk_conv(qk, _problem(layer))
        fn()
        np.testing.assert_array_equal(y, _reference(layer), err_msg="qkernels differs from the exact reference")
    else:
        fn, y = _ort_call(layer, lib.split("-")[1], threads)
        fn()
        if lib == "ort-int8":
            benchmark.extra_info["outputs_differing_from_exact"] = int(
                np.count_nonzero(y.transpose(0, 2, 3, 1) != _reference(layer)))
    benchmark(fn)
    stats = getattr(benchmark, "stats", None)
    if stats is not None:                     # None under --benchmark-disable
        benchmark.extra_info["gops"] = layer.ops / stats.stats.median / 1e9
    benchmark.extra_info["source"] = layer.source
