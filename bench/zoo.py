"""Model builders for tests and benchmarks: MobileNetV2 and ResNet-18 as float32 ONNX
graphs made with ``onnx.helper``, random weights (seeded), opset 13, NCHW input.

Architectures follow the papers (Sandler et al. 2018; He et al. 2016) with the
torchvision layouts: Conv → BatchNormalization → ReLU6/ReLU, inverted residual blocks
with a depthwise 3x3, basic blocks with a projection shortcut, global average pooling
and a Gemm classifier. ``width`` scales channels and ``size`` the input resolution, so
tests can build small versions of the same graphs.
"""
from __future__ import annotations

import numpy as np


class _Builder:
    def __init__(self, seed: int):
        from onnx import helper, numpy_helper
        self.helper, self.numpy_helper = helper, numpy_helper
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.count = [], [], 0

    def name(self, kind: str) -> str:
        self.count += 1
        return f"{kind}_{self.count}"

    def const(self, kind: str, arr: np.ndarray) -> str:
        n = self.name(kind)
        self.inits.append(self.numpy_helper.from_array(np.asarray(arr, np.float32), n))
        return n

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        out = self.name(op.lower())
        self.nodes.append(self.helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def conv_bn(self, x: str, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1,
                act: str | None = "Relu") -> str:
        fan_in = cin // groups * k * k
        w = self.rng.standard_normal((cout, cin // groups, k, k)) * np.sqrt(2.0 / fan_in)
        y = self.node("Conv", [x, self.const("w", w)], kernel_shape=[k, k], strides=[stride, stride],
                      pads=[k // 2] * 4, group=groups)
        scale = self.rng.uniform(0.5, 1.5, cout)
        bias = self.rng.uniform(-0.1, 0.1, cout)
        mean = self.rng.uniform(-0.1, 0.1, cout)
        var = self.rng.uniform(0.5, 1.5, cout)
        y = self.node("BatchNormalization", [y, self.const("bn_s", scale), self.const("bn_b", bias),
                                              self.const("bn_m", mean), self.const("bn_v", var)], epsilon=1e-5)
        if act == "Relu":
            y = self.node("Relu", [y])
        elif act == "Relu6":
            y = self.node("Clip", [y, self.const("min", np.float32(0)), self.const("max", np.float32(6))])
        return y

    def head(self, x: str, cin: int, classes: int) -> str:
        y = self.node("GlobalAveragePool", [x])
        y = self.node("Flatten", [y], axis=1)
        w = self.rng.standard_normal((classes, cin)) * np.sqrt(1.0 / cin)
        return self.node("Gemm", [y, self.const("fc_w", w), self.const("fc_b", np.zeros(classes))], transB=1)

    def model(self, name: str, out: str, size: int, classes: int):
        from onnx import TensorProto
        h = self.helper
        self.nodes[-1].output[0] = "logits"
        for n in self.nodes:   # rename readers of `out`
            n.input[:] = ["logits" if i == out else i for i in n.input]
        graph = h.make_graph(self.nodes, name, [h.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                         [1, 3, size, size])],
                             [h.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes])], self.inits)
        return h.make_model(graph, opset_imports=[h.make_opsetid("", 13)], producer_name="qkernels.bench.zoo")


def _ch(c: float, width: float) -> int:
    """Channels scaled by width, rounded to a multiple of 8 (MobileNet's rule)."""
    v = max(8, int(c * width + 4) // 8 * 8)
    return v + 8 if v < 0.9 * c * width else v


def mobilenet_v2(width: float = 1.0, size: int = 224, classes: int = 1000, seed: int = 0):
    """MobileNetV2 (ReLU6, expansion 6, the paper's 17 inverted residual blocks)."""
    b = _Builder(seed)
    c = _ch(32, width)
    x = b.conv_bn("input", 3, c, 3, 2, act="Relu6")
    for t, cout, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                          (6, 160, 3, 2), (6, 320, 1, 1)):
        cout = _ch(cout, width)
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = c * t
            y = b.conv_bn(x, c, hidden, 1, act="Relu6") if t != 1 else x
            y = b.conv_bn(y, hidden, hidden, 3, stride, groups=hidden, act="Relu6")
            y = b.conv_bn(y, hidden, cout, 1, act=None)
            x = b.node("Add", [x, y]) if stride == 1 and c == cout else y
            c = cout
    last = _ch(1280, max(1.0, width))
    x = b.conv_bn(x, c, last, 1, act="Relu6")
    return b.model("mobilenet_v2", b.head(x, last, classes), size, classes)


def resnet18(width: float = 1.0, size: int = 224, classes: int = 1000, seed: int = 0):
    """ResNet-18 (basic blocks 2-2-2-2, projection shortcuts where the shape changes)."""
    b = _Builder(seed)
    c = _ch(64, width)
    x = b.conv_bn("input", 3, c, 7, 2)
    x = b.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    for cout, s in ((64, 1), (128, 2), (256, 2), (512, 2)):
        cout = _ch(cout, width)
        for i in range(2):
            stride = s if i == 0 else 1
            y = b.conv_bn(x, c, cout, 3, stride)
            y = b.conv_bn(y, cout, cout, 3, 1, act=None)
            short = b.conv_bn(x, c, cout, 1, stride, act=None) if stride != 1 or c != cout else x
            x = b.node("Relu", [b.node("Add", [y, short])])
            c = cout
    return b.model("resnet18", b.head(x, c, classes), size, classes)
