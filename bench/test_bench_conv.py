"""Convolution benchmarks: qkernels ``conv2d`` / depthwise in int8 and fp16 beside
numpy float32 and ONNX Runtime (int8 and float32) at the layers of real edge models
(MobileNetV2/V3, ResNet-18/50, EfficientNet-B0), 1 thread and all threads.

Run with ``python -m pytest bench/test_bench_conv.py --benchmark-only`` (``-k mnv2`` for
some layers). The layers, problems and ONNX models are :mod:`qkernels.bench.conv`'s (the
table of ``python -m qkernels bench --suite conv``; ``python bench/shapes.py`` lists it).
Each layer and thread count is one benchmark group holding:

* ``qkernels-int8``: ``conv2d`` of int8 NHWC activations by int8 per-channel weights
  (packed once, with the bias), requantized to an int8 ``out=``; first checked equal to
  the exact int64 reference;
* ``qkernels-f16``: the same layer on the dequantized values in float16 (float16 out),
  first checked within the fp16 contract's bound
  ``|got - ref| <= |ref| * 2**-11 + e * conv(|x|, |w|)`` (``e``: fp32 sums over the taps);
* ``numpy-f32``: float32 NHWC convolution as a numpy user writes it (padded input,
  ``sliding_window_view`` patches, one ``np.matmul``; depthwise: a sum over the taps);
* ``ort-int8`` / ``ort-u8``: ONNX Runtime ``QLinearConv`` with int8 activations (exact) and
  with uint8 activations (its fast AVX2 path, inexact; outputs differing from the exact
  reference are recorded), ``ort-fp32``: float32 ``Conv`` (NCHW), spinning off.

Rates (GOP/s: 2 x multiply-adds / median), % of peak and speed-ups: ``bench/suite.py``;
the one-process caveat of test_bench_gemm.py holds here too.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest

import qkernels as qk
from qkernels.bench import conv as bench_conv
from qkernels.bench.peers import blas_set_num_threads, ort_bound_call, ort_session
from suite import CPUS, QUICK, THREADS, finish, use_threads

LAYERS = bench_conv.layers(quick=QUICK)
LIBS = ("qkernels-int8", "qkernels-f16", "numpy-f32", "ort-int8", "ort-u8", "ort-fp32")
CASES = [pytest.param(la, lib, t, id=f"{la.label}-{lib}-{t}t") for la in LAYERS for lib in LIBS for t in THREADS]


@functools.lru_cache(maxsize=None)
def _problem(layer):
    return bench_conv.make_problem(layer)


@functools.lru_cache(maxsize=None)
def _reference(layer):
    return bench_conv.reference(_problem(layer))[1]


@functools.lru_cache(maxsize=None)
def _f16_problem(layer):
    """float16 input, weights and bias (the dequantized int8 problem), and the float64
    reference and error scale ``conv(|x|, |w|)`` of those float16 values."""
    p = _problem(layer)
    x16, w16 = p.x_float().astype(np.float16), p.w_float().astype(np.float16)
    b = p.b_float()
    x64, w64 = x16.astype(np.float64), w16.astype(np.float64)
    ref = bench_conv.NumpyConv(layer, w64, b, np.float64)(x64).copy()
    scale = bench_conv.NumpyConv(layer, np.abs(w64), np.abs(b), np.float64)(np.abs(x64)).copy()
    return x16, w16, b, ref, scale


def _qk_f16(layer):
    x16, w16, b, ref, scale = _f16_problem(layer)
    packed = qk.pack_conv_weights(w16, groups=layer.c if layer.depthwise else 1, bias=b)
    y = np.empty((1, layer.out_hw, layer.out_hw, layer.o), np.float16)
    call = functools.partial(qk.conv2d, x16, packed, stride=layer.stride, padding=layer.pads, out=y)
    call()
    err = np.abs(y.astype(np.float64) - ref)
    taps = layer.k * layer.k * (1 if layer.depthwise else layer.c)
    bound = np.abs(ref) * 2.0 ** -11 + taps * 2.0 ** -23 * scale + 2.0 ** -24
    outside = int(np.count_nonzero(~(err <= bound)))
    assert outside == 0, f"{outside} fp16 outputs outside the accuracy bound (max err/bound {(err / bound).max():.3g})"
    return call, {"max_err_over_bound": float((err / bound).max())}


def _ort(layer, dtype, threads):
    pytest.importorskip("onnx", reason="ONNX Runtime peer needs onnx")
    ort = pytest.importorskip("onnxruntime", reason="ONNX Runtime peer skipped: onnxruntime not installed")
    p = _problem(layer)
    sess = ort_session(bench_conv.ort_model(p, dtype), threads, spinning=False)
    out_dtype = {"int8": np.int8, "uint8": np.uint8, "fp32": np.float32}[dtype]
    y = np.empty((1, layer.o, layer.out_hw, layer.out_hw), out_dtype)
    call = ort_bound_call(sess, bench_conv.ort_feed(p, dtype), y, "x", "y")
    call()
    info = {"onnxruntime": ort.__version__}
    if dtype != "fp32":      # back to int8 NHWC (uint8: the same values shifted by 128)
        got = y.transpose(0, 2, 3, 1).view(np.uint8) ^ (0x80 if dtype == "uint8" else 0)
        info["outputs_differing_from_exact"] = int(np.count_nonzero(got.view(np.int8) != _reference(layer)))
    return call, info


def _numpy(layer):
    p = _problem(layer)
    conv = bench_conv.NumpyConv(layer, p.w_float(), p.b_float(), np.float32)
    return functools.partial(conv, p.x_float()), {}


@pytest.mark.parametrize("layer, lib, threads", CASES)
def test_conv(benchmark, layer, lib, threads):
    use_threads(threads)
    peak = None
    if lib == "qkernels-int8":
        call, y = bench_conv.qk_conv(qk, _problem(layer))
        call()
        np.testing.assert_array_equal(y, _reference(layer), err_msg="qkernels differs from the exact reference")
        info, peak = {}, ("int8",)
    elif lib == "qkernels-f16":
        (call, info), peak = _qk_f16(layer), ("f16",)
    elif lib == "numpy-f32":
        call, info = _numpy(layer)
        info["blas_threads_controlled"] = blas_set_num_threads(threads)
    else:
        call, info = _ort(layer, {"ort-int8": "int8", "ort-u8": "uint8", "ort-fp32": "fp32"}[lib], threads)
    benchmark.group = f"conv-{layer.label}-{threads}t"
    try:
        benchmark(call)
    finally:
        blas_set_num_threads(CPUS)
    finish(benchmark, lib=lib, threads=threads, work=layer.ops, peak=peak, layer=layer.label,
           geometry=layer.geometry, source=layer.source, **info)
