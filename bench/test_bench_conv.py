"""int8 convolution benchmarks (first version, issue 3): qkernels ``conv2d`` beside
ONNX Runtime int8 ``QLinearConv`` and float32 ``Conv`` at real edge layers, one thread.

Run with ``python -m pytest bench/test_bench_conv.py --benchmark-only``. Each layer is
one benchmark group; ``extra_info`` holds GOP/s (2 x multiply-adds / median). Before
timing, the qkernels output (int8 activations) is checked equal to ONNX Runtime's
QLinearConv, which is exact for int8 activations. Same one-process
caveat as test_bench_gemm.py: trust ratios only from separate processes.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
import pytest

import qkernels as qk


class Layer(NamedTuple):
    label: str
    h: int
    c: int
    o: int
    k: int
    stride: int
    depthwise: bool
    source: str

    @property
    def out_hw(self) -> int:
        return -(-self.h // self.stride)

    @property
    def ops(self) -> int:
        per_out = self.k * self.k * (1 if self.depthwise else self.c)
        return 2 * self.out_hw ** 2 * self.o * per_out


LAYERS = (
    Layer("mnv2-stem-3x3s2", 224, 3, 32, 3, 2, False, "MobileNetV2 stem, 224x224x3 -> 32"),
    Layer("mnv2-dw-112", 112, 32, 32, 3, 1, True, "MobileNetV2 depthwise 3x3 112x112x32 s1"),
    Layer("mnv2-dw-56s2", 56, 144, 144, 3, 2, True, "MobileNetV2 depthwise 3x3 56x56x144 s2"),
    Layer("mnv2-dw-14", 14, 384, 384, 3, 1, True, "MobileNetV2 depthwise 3x3 14x14x384 s1"),
    Layer("mnv2-dw-7", 7, 960, 960, 3, 1, True, "MobileNetV2 depthwise 3x3 7x7x960 s1"),
    Layer("mnv2-pw-56", 56, 24, 144, 1, 1, False, "MobileNetV2 1x1 56x56x24 -> 144"),
    Layer("mnv2-pw-14", 14, 64, 384, 1, 1, False, "MobileNetV2 1x1 14x14x64 -> 384"),
    Layer("resnet-3x3-56", 56, 64, 64, 3, 1, False, "ResNet-18 3x3 56x56x64 -> 64"),
    Layer("resnet-stem-7x7s2", 224, 3, 64, 7, 2, False, "ResNet-18 stem 7x7 s2, 224x224x3 -> 64"),
    Layer("effnet-dw5-28", 28, 240, 240, 5, 1, True, "EfficientNet/MobileNetV3 depthwise 5x5 28x28x240"),
)


class Problem(NamedTuple):
    x: np.ndarray        # NHWC int8
    w: np.ndarray        # OHWI int8
    b: np.ndarray
    sw: np.ndarray
    pads: tuple


@functools.lru_cache(maxsize=None)
def _problem(layer: Layer) -> Problem:
    rng = np.random.default_rng(abs(hash(layer.label)) % 2**32)
    x = rng.integers(-128, 128, (1, layer.h, layer.h, layer.c), dtype=np.int8)
    cg = 1 if layer.depthwise else layer.c
    w = rng.integers(-127, 128, (layer.o, layer.k, layer.k, cg), dtype=np.int8)
    b = rng.integers(-5000, 5000, layer.o).astype(np.int32)
    sw = rng.uniform(0.002, 0.01, layer.o).astype(np.float32)
    pads = qk._conv._padding("same", (layer.h, layer.h), (layer.k, layer.k), (layer.stride,) * 2, (1, 1))
    return Problem(x, w, b, sw, pads)


SA, ZA, SY, ZY = 0.05, -3, 0.5, 2


def _qk_call(layer: Layer):
    p = _problem(layer)
    groups = layer.c if layer.depthwise else 1
    packed = qk.pack_conv_weights(qk.QTensor(p.w, p.sw, np.zeros(layer.o, np.int8), axis=0), groups=groups,
                                  bias=p.b)
    x = qk.QTensor(p.x, SA, ZA)
    return lambda: qk.conv2d(x, packed, stride=layer.stride, padding=p.pads, out_scale=SY, out_zero_point=ZY,
                             out_dtype=np.int8)


def _ort_session(layer: Layer, dtype: str):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    p = _problem(layer)
    t = numpy_helper.from_array
    groups = layer.c if layer.depthwise else 1
    w_oihw = np.ascontiguousarray(p.w.transpose(0, 3, 1, 2))
    attrs = dict(strides=[layer.stride] * 2, pads=[p.pads[0], p.pads[1], p.pads[2], p.pads[3]], group=groups)
    shape = [1, layer.c, layer.h, layer.h]
    if dtype == "int8":
        inits = [t(np.array(SA, np.float32), "sa"), t(np.array(ZA, np.int8), "za"), t(w_oihw, "w"),
                 t(p.sw, "sw"), t(np.zeros(layer.o, np.int8), "zw"), t(np.array(SY, np.float32), "sy"),
                 t(np.array(ZY, np.int8), "zy"), t(p.b, "b")]
        node = helper.make_node("QLinearConv", ["x", "sa", "za", "w", "sw", "zw", "sy", "zy", "b"], ["y"], **attrs)
        elem = TensorProto.INT8
        feed = np.ascontiguousarray(p.x.transpose(0, 3, 1, 2))
    else:
        wf = (w_oihw.astype(np.float32) * p.sw.reshape(-1, 1, 1, 1))
        inits = [t(wf, "w"), t((p.b * SA * p.sw).astype(np.float32), "b")]
        node = helper.make_node("Conv", ["x", "w", "b"], ["y"], **attrs)
        elem = TensorProto.FLOAT
        feed = np.ascontiguousarray(p.x.transpose(0, 3, 1, 2)).astype(np.float32) * SA
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", elem, shape)],
                              [helper.make_tensor_value_info("y", elem, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return lambda: sess.run(None, {"x": feed})


CASES = [pytest.param(layer, lib, id=f"{layer.label}-{lib}") for layer in LAYERS
         for lib in ("qkernels", "ort-int8", "ort-fp32")]


@pytest.mark.parametrize("layer,lib", CASES)
def test_conv(benchmark, layer, lib):
    benchmark.group = layer.label
    qk.set_num_threads(1)
    if lib == "qkernels":
        fn = _qk_call(layer)
        got = fn().data
        assert got.shape == (1, layer.out_hw, layer.out_hw, layer.o)
        try:   # int8 activations: ONNX Runtime's QLinearConv is exact, so outputs must be equal
            want = _ort_session(layer, "int8")()[0]
        except pytest.skip.Exception:
            want = None
        if want is not None:
            np.testing.assert_array_equal(got.transpose(0, 3, 1, 2), want)
    else:
        fn = _ort_session(layer, "int8" if lib == "ort-int8" else "fp32")
    fn()
    benchmark(fn)
    benchmark.extra_info["gops"] = layer.ops / benchmark.stats.stats.median / 1e9
    benchmark.extra_info["source"] = layer.source
