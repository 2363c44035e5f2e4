"""TFLite import: a ``.tflite`` flatbuffer into the runner's Graph.

Parser: the ``tflite`` package (PyPI; the classes ``flatc`` generates from TFLite's own
``schema.fbs``, kept in step with TensorFlow's releases, on top of Google's ``flatbuffers``
runtime). It is the schema itself, so there is no hand-written offset arithmetic here to
get wrong; every read it does is bounds-checked by ``flatbuffers``, and a malformed file
raises a Python error that this module turns into a ModelError. Each constant is copied
once out of the file's bytes (checked against its shape and type).

Design: TFLite operators become nodes of our own domain ``qkernels.tflite``
(``qkernels.tflite::Conv2D`` ...), with TFLite's semantics kept whole:

- NHWC stays NHWC. Every tensor keeps TFLite's layout, weights stay OHWI (depthwise
  1HWC): no transposes are inserted, in the graph or in memory.
- Quantization parameters (``QParams``: float32 scales and int zero points, per tensor
  or per channel) ride on the node as attributes ``in_q`` / ``out_q``, so the operators
  compute TFLite's integer arithmetic from the same float32 scales LiteRT reads: the
  fixed-point multipliers of its ``QuantizeMultiplier`` (formed in double, as its kernels
  do), its rounding (``rounding``: ``"up"`` where LiteRT's x86 build runs the op on
  ruy's GEMM, whose rounding right shift rounds ties upward; ``"up8"`` for depthwise,
  whose vector loop rounds blocks of 8 channels so and its scalar tail away from zero,
  as gemmlowp), its activation ranges. Which rounding each op takes was found by
  testing against LiteRT on inputs made to hit exact ties (tests/test_tflite.py).
- The reference backend (:mod:`.backends.reference.tflite`, numpy, exact in int64) and
  the cpu backend (:mod:`.backends.cpu_tflite`, qkernels' native kernels) both implement
  these operators and compute the same bits, which are LiteRT's built-in kernels' bits.

ONNX operators would have forced NCHW and ONNX's float32 requantization (round half to
even on ``acc * scale``), neither of which is TFLite's; a graph-wide "TFLite mode" flag
on ONNX operators would have made every ONNX operator carry a second meaning.

float16 weights (the converter's "float16 quantization": FLOAT16 constants feeding
DEQUANTIZE) become float32 constants at import, which is what LiteRT computes with.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass

import numpy as np

from .errors import ModelError
from .ir import Graph, Node, ValueInfo, topological
from .model import MAX_ELEMENTS, MAX_MODEL_BYTES, _read_regular

DOMAIN = "qkernels.tflite"
IDENTIFIER = b"TFL3"

_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 6: np.bool_, 7: np.int16,
           9: np.int8, 10: np.float64}
_QUANTIZED = (np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int32))   # int32: biases
_ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}


@dataclass(frozen=True, eq=False)
class QParams:
    """A quantized tensor's parameters: ``real = scale * (q - zero_point)``; ``scale`` and
    ``zero_point`` 1-D (one value, or one per index of ``axis``)."""
    scale: np.ndarray        # float32
    zero_point: np.ndarray   # int64
    axis: int = 0

    @property
    def per_tensor(self) -> bool:
        return self.scale.size == 1

    @property
    def s(self) -> np.float32:
        return self.scale[0]

    @property
    def z(self) -> int:
        return int(self.zero_point[0])

    def __repr__(self):
        return f"QParams(scale={self.scale.tolist()[:4]}, zero_point={self.zero_point.tolist()[:4]}, axis={self.axis})"


def is_tflite(model) -> bool:
    """Whether ``model`` (a path or bytes) is a TFLite flatbuffer: its file identifier
    "TFL3" at byte 4, or a path ending in .tflite."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model[4:8]) == IDENTIFIER
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if str(path).lower().endswith(".tflite"):
            return True
        try:   # only a regular file is opened (a FIFO would block; the loaders refuse the rest)
            if not stat.S_ISREG(os.stat(path).st_mode):
                return False
            with open(path, "rb") as f:
                return f.read(8)[4:8] == IDENTIFIER
        except (OSError, ValueError, TypeError):
            return False
    return False


def load_tflite(model) -> Graph:
    """The Graph of a TFLite model (path or bytes); every defect a ModelError, operators
    the runner does not import all listed in one UnsupportedError-like ModelError."""
    if isinstance(model, (str, os.PathLike)):
        data = _read_regular(os.fspath(model), "model")
    else:
        data = bytes(model)
    if len(data) > MAX_MODEL_BYTES:
        raise ModelError(f"the model is {len(data)} bytes, over the 2 GiB flatbuffer limit")
    if len(data) < 8 or data[4:8] != IDENTIFIER:
        raise ModelError("not a TFLite model (no \"TFL3\" file identifier at byte 4)")
    try:
        import tflite
    except ImportError:   # pragma: no cover - a dependency
        raise ModelError("reading .tflite models needs the tflite package (pip install tflite)") from None
    try:
        return _Importer(tflite, data).graph()
    except ModelError:
        raise
    except Exception as exc:   # flatbuffers raises struct.error, IndexError, ... on bad offsets
        raise ModelError(f"malformed TFLite flatbuffer: {type(exc).__name__}: {exc}") from None


class _Importer:
    def __init__(self, tflite, data: bytes):
        self.tfl, self.data = tflite, data
        self.model = tflite.Model.GetRootAsModel(data, 0)
        if self.model.SubgraphsLength() < 1:
            raise ModelError("the TFLite model has no subgraph")
        self.sg = self.model.Subgraphs(0)
        self.names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
        self.inits: dict[str, np.ndarray] = {}
        self.tensors: dict[int, tuple] = {}
        self.taken: set[str] = set()
        self.nodes: list[Node] = []

    # ------------------------------------------------------------------ tensors

    def tensor(self, t: int):
        """(name, dtype, shape, QParams or None, constant array or None) of tensor ``t``."""
        if t in self.tensors:
            return self.tensors[t]
        if not 0 <= t < self.sg.TensorsLength():
            raise ModelError(f"an operator reads tensor {t}, but the subgraph has {self.sg.TensorsLength()}")
        T = self.sg.Tensors(t)
        code = T.Type()
        if code not in _DTYPES:
            raise ModelError(f"tensor {t} has TFLite type {code}, which the runner does not read")
        dtype = np.dtype(_DTYPES[code])
        shape = tuple(int(d) for d in T.ShapeAsNumpy()) if T.ShapeLength() else ()
        if any(d < 0 for d in shape) or int(np.prod(shape, dtype=object)) > MAX_ELEMENTS:
            raise ModelError(f"tensor {t} declares shape {shape}")
        raw_name = T.Name()
        name = (raw_name.decode("utf-8", "replace") if raw_name else "") or f"tensor_{t}"
        name = f"{name}#{t}" if name in self.taken else name
        self.taken.add(name)
        q = None
        Q = T.Quantization()
        if Q is not None and Q.ScaleLength() > 0:
            scale = np.asarray(Q.ScaleAsNumpy(), np.float32).reshape(-1)
            zp = np.asarray(Q.ZeroPointAsNumpy(), np.int64).reshape(-1) if Q.ZeroPointLength() \
                else np.zeros(scale.size, np.int64)
            if zp.size == 1 and scale.size > 1:
                zp = np.repeat(zp, scale.size)
            if zp.size != scale.size or not np.all(np.isfinite(scale)) or np.any(scale <= 0):
                raise ModelError(f"tensor {name!r}: quantization scales {scale[:4]} / zero points {zp[:4]} "
                                 "are not positive finite pairs")
            axis = int(Q.QuantizedDimension())
            if scale.size > 1 and not (0 <= axis < len(shape) and shape[axis] == scale.size):
                raise ModelError(f"tensor {name!r}: {scale.size} scales along axis {axis} of shape {shape}")
            q = QParams(scale, zp, axis)
        const = None
        b = T.Buffer()
        if b > 0:
            if b >= self.model.BuffersLength():
                raise ModelError(f"tensor {name!r} names buffer {b} of {self.model.BuffersLength()}")
            B = self.model.Buffers(b)
            raw = None
            if B.DataLength():
                raw = B.DataAsNumpy()
            elif B.Offset() > 1:   # a buffer stored after the flatbuffer (the converter's large-model layout)
                off, size = int(B.Offset()), int(B.Size())
                if off + size > len(self.data):
                    raise ModelError(f"tensor {name!r}: buffer bytes {off}..{off + size} past the file's end")
                raw = np.frombuffer(self.data, np.uint8, size, off)
            if raw is not None:
                n = int(np.prod(shape, dtype=object))
                if raw.size != n * dtype.itemsize:
                    raise ModelError(f"tensor {name!r}: buffer of {raw.size} bytes for {n} {dtype} values")
                const = np.frombuffer(raw.tobytes(), dtype).reshape(shape)
                if dtype == np.float16:   # float16 weights: what LiteRT's DEQUANTIZE makes of them
                    const = const.astype(np.float32)
                self.inits[name] = const
        self.tensors[t] = (name, dtype, shape, q, const)
        return self.tensors[t]

    # ------------------------------------------------------------------ graph

    def graph(self) -> Graph:
        sg = self.sg
        ops, unsupported = [], []
        for i in range(sg.OperatorsLength()):
            op = sg.Operators(i)
            idx = op.OpcodeIndex()
            if not 0 <= idx < self.model.OperatorCodesLength():
                raise ModelError(f"operator {i} names operator code {idx} of {self.model.OperatorCodesLength()}")
            oc = self.model.OperatorCodes(idx)
            code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
            name = self.names.get(code, f"builtin code {code}")
            if name == "CUSTOM":
                custom = oc.CustomCode()
                name = f"CUSTOM ({custom.decode('utf-8', 'replace') if custom else '?'})"
            ops.append((i, op, name))
            if name not in _TRANSLATORS:
                unsupported.append((i, name))
        if unsupported:
            lines = "\n".join(f"  operator {i}: {name}" for i, name in unsupported)
            raise ModelError(f"{len(unsupported)} TFLite operator(s) the runner does not import:\n{lines}")
        for i, op, name in ops:
            ins = [int(t) for t in op.InputsAsNumpy()] if op.InputsLength() else []
            outs = [int(t) for t in op.OutputsAsNumpy()] if op.OutputsLength() else []
            if not outs:
                raise ModelError(f"operator {i} ({name}) has no output")
            _TRANSLATORS[name](self, f"{name.lower()}_{i}", op, ins, outs)
        inputs = []
        for t in (sg.InputsAsNumpy() if sg.InputsLength() else []):
            n, dt, shape, _, const = self.tensor(int(t))
            if const is None:
                inputs.append(ValueInfo(n, dt, shape))
        outputs = [ValueInfo(*self.tensor(int(t))[:3]) for t in (sg.OutputsAsNumpy() if sg.OutputsLength() else [])]
        if not outputs:
            raise ModelError("the TFLite subgraph has no outputs")
        nodes = topological(self.nodes, set(self.inits) | {v.name for v in inputs})
        produced = {o for n in nodes for o in n.outputs} | set(self.inits) | {v.name for v in inputs}
        missing = [o.name for o in outputs if o.name not in produced]
        if missing:
            raise ModelError(f"graph output(s) {missing} are produced by no operator")
        return Graph(nodes, self.inits, inputs, outputs, opset=13, name="tflite", metadata={"qkernels.format": "tflite"})

    # ------------------------------------------------------------------ helpers

    def options(self, op, cls_name: str):
        table = op.BuiltinOptions()
        cls = getattr(self.tfl, cls_name)
        o = cls()
        if table is not None:
            o.Init(table.Bytes, table.Pos)
            return o
        return None

    def add(self, name: str, op_type: str, ins: list, outs: list, **attrs) -> Node:
        tin = [self.tensor(t) if t >= 0 else None for t in ins]
        tout = [self.tensor(t) for t in outs]
        for t in tin + tout:   # what the operators' arithmetic is written for
            if t is not None and t[3] is not None and t[1] not in _QUANTIZED:
                raise ModelError(f"{name}: quantized {t[1]} tensor {t[0]!r} (16x8 quantization) is not supported; "
                                 "8-bit activations are")
        if tin and tin[0] is not None and tin[0][1].kind == "f" and any(
                t is not None and t[1] in (np.int8, np.uint8) for t in tin[1:]):
            raise ModelError(f"{name}: float input with 8-bit weights (dynamic-range quantization) is not supported")
        _check_quantization(name, op_type, tin, tout)
        attrs.setdefault("in_q", tuple(t[3] if t is not None else None for t in tin))
        attrs.setdefault("out_q", tuple(t[3] for t in tout))
        node = Node(name, op_type, DOMAIN, [t[0] if t is not None else "" for t in tin], [t[0] for t in tout], attrs)
        self.nodes.append(node)
        return node

    def const(self, t: int, what: str) -> np.ndarray:
        c = self.tensor(t)[4]
        if c is None:
            raise ModelError(f"{what} (tensor {self.tensor(t)[0]!r}) must be a constant")
        return c


#: operators whose 8-bit arithmetic reads every 8-bit tensor's scale and zero point
_ARITHMETIC = frozenset({"Conv2D", "DepthwiseConv2D", "FullyConnected", "Add", "Sub", "Mul", "AveragePool2D",
                         "MaxPool2D", "Mean", "Softmax", "Logistic", "Tanh", "HardSwish", "Relu", "Relu6",
                         "ReluN1To1", "Concatenation", "ResizeBilinear", "Pad"})
_WEIGHTED = frozenset({"Conv2D", "DepthwiseConv2D", "FullyConnected"})


def _check_quantization(name: str, op_type: str, tin: list, tout: list) -> None:
    """The quantization an operator's arithmetic needs: every 8-bit tensor quantized,
    per tensor except weights; input and output of one type (QUANTIZE/DEQUANTIZE: the
    quantized side quantized per tensor)."""
    eight = (np.dtype(np.int8), np.dtype(np.uint8))
    if op_type in ("Quantize", "Dequantize"):
        side = tout[0] if op_type == "Quantize" else tin[0]
        other = tin[0] if op_type == "Quantize" else tout[0]
        if side[1] not in eight or side[3] is None or not side[3].per_tensor or \
                (other[1] in eight and (other[3] is None or not other[3].per_tensor)):
            raise ModelError(f"{name}: {op_type.upper()} needs per-tensor 8-bit quantized {side[0]!r} "
                             f"({side[1]}, {side[3]})")
        return
    if op_type not in _ARITHMETIC or not tin or tin[0] is None:
        return
    x, ys = tin[0], tout
    if any(y[1] != x[1] for y in ys):
        raise ModelError(f"{name}: input {x[0]!r} is {x[1]} but output {ys[0][0]!r} is {ys[0][1]}")
    if x[1] not in eight:
        return
    for k, t in enumerate(tin + tout):
        if t is None or t[1] not in eight:
            continue
        weights = op_type in _WEIGHTED and k == 1
        if t[3] is None or (not weights and not t[3].per_tensor):
            raise ModelError(f"{name}: 8-bit tensor {t[0]!r} needs {'its' if weights else 'per-tensor'} "
                             f"quantization parameters, has {t[3]}")
    if op_type in _WEIGHTED and (len(tin) < 2 or tin[1] is None or tin[1][1] != x[1]):
        raise ModelError(f"{name}: {x[1]} input with {tin[1][1] if len(tin) > 1 and tin[1] else 'no'} weights")


def _activation(node_name: str, code: int) -> str:
    if code not in _ACTIVATIONS:
        raise ModelError(f"{node_name}: fused activation {code} is not supported (NONE, RELU, RELU_N1_TO_1, RELU6)")
    return _ACTIVATIONS[code]


def same_padding(size: int, k: int, stride: int, dilation: int) -> tuple[int, int, int]:
    """(out, before, after) of TFLite's SAME padding along one axis."""
    eff = (k - 1) * dilation + 1
    out = (size + stride - 1) // stride
    total = max((out - 1) * stride + eff - size, 0)
    return out, total // 2, total - total // 2


def _pads(name, padding: int, in_shape, kh, kw, sh, sw, dh=1, dw=1) -> tuple[int, int, int, int]:
    if len(in_shape) != 4:
        raise ModelError(f"{name}: a 4-D NHWC input expected, got shape {in_shape}")
    if padding == 0:   # SAME
        _, t, b = same_padding(in_shape[1], kh, sh, dh)
        _, left, r = same_padding(in_shape[2], kw, sw, dw)
        return t, left, b, r
    if padding == 1:
        return 0, 0, 0, 0
    raise ModelError(f"{name}: padding {padding} is neither SAME nor VALID")


# ---------------------------------------------------------------------- translators

_TRANSLATORS = {}


def translator(*names):
    def register(fn):
        for n in names:
            _TRANSLATORS[n] = fn
        return fn
    return register


def _positive(name, **values):
    for k, v in values.items():
        if v < 1:
            raise ModelError(f"{name}: {k} {v} must be at least 1")


def _window(imp, name, op, kind: str) -> tuple:
    """A convolution's options and its (stride h, stride w, dilation h, dilation w), checked."""
    o = imp.options(op, kind)
    sh, sw, dh, dw = o.StrideH(), o.StrideW(), o.DilationHFactor(), o.DilationWFactor()
    _positive(name, stride=min(sh, sw), dilation=min(dh, dw))
    return o, (sh, sw, dh, dw)


@translator("CONV_2D")
def _conv(imp, name, op, ins, outs):
    o, (sh, sw, dh, dw) = _window(imp, name, op, "Conv2DOptions")
    w = imp.const(ins[1], f"{name}: the filter")
    if w.ndim != 4:
        raise ModelError(f"{name}: the filter must be 4-D OHWI, got shape {w.shape}")
    pads = _pads(name, o.Padding(), imp.tensor(ins[0])[2], w.shape[1], w.shape[2], sh, sw, dh, dw)
    imp.add(name, "Conv2D", ins[:3], outs[:1], strides=(sh, sw), dilations=(dh, dw), pads=pads,
            act=_activation(name, o.FusedActivationFunction()), rounding="up")


@translator("DEPTHWISE_CONV_2D")
def _dwconv(imp, name, op, ins, outs):
    o, (sh, sw, dh, dw) = _window(imp, name, op, "DepthwiseConv2DOptions")
    w = imp.const(ins[1], f"{name}: the filter")
    x_shape = imp.tensor(ins[0])[2]
    if w.ndim != 4 or w.shape[0] != 1 or len(x_shape) != 4 or x_shape[3] == 0 or w.shape[3] % x_shape[3]:
        raise ModelError(f"{name}: filter shape {w.shape} does not fit input {x_shape} (1HWC, C a multiple)")
    pads = _pads(name, o.Padding(), x_shape, w.shape[1], w.shape[2], sh, sw, dh, dw)
    # int8: LiteRT's per-channel loop (blocks of 8 channels round ties up, the rest away);
    # uint8: its per-tensor kernel, ties away from zero throughout
    rounding = "up8" if imp.tensor(ins[0])[1] == np.int8 else "away"
    imp.add(name, "DepthwiseConv2D", ins[:3], outs[:1], strides=(sh, sw), dilations=(dh, dw), pads=pads,
            act=_activation(name, o.FusedActivationFunction()), rounding=rounding)


@translator("FULLY_CONNECTED")
def _fc(imp, name, op, ins, outs):
    o = imp.options(op, "FullyConnectedOptions")
    act = _activation(name, o.FusedActivationFunction() if o is not None else 0)
    if o is not None and o.WeightsFormat() != 0:
        raise ModelError(f"{name}: shuffled FULLY_CONNECTED weights are not supported")
    w = imp.const(ins[1], f"{name}: the weights")
    if w.ndim != 2:
        raise ModelError(f"{name}: weights must be 2-D (out, in), got shape {w.shape}")
    imp.add(name, "FullyConnected", ins[:3], outs[:1], act=act, shape=imp.tensor(outs[0])[2], rounding="up")


@translator("ADD", "SUB", "MUL")
def _binary(imp, name, op, ins, outs):
    kind = name.split("_")[0].upper()
    o = imp.options(op, {"ADD": "AddOptions", "SUB": "SubOptions", "MUL": "MulOptions"}[kind])
    act = _activation(name, o.FusedActivationFunction() if o is not None else 0)
    imp.add(name, kind.capitalize(), ins[:2], outs[:1], act=act)


@translator("AVERAGE_POOL_2D", "MAX_POOL_2D")
def _pool(imp, name, op, ins, outs):
    o = imp.options(op, "Pool2DOptions")
    kh, kw, sh, sw = o.FilterHeight(), o.FilterWidth(), o.StrideH(), o.StrideW()
    _positive(name, filter=min(kh, kw), stride=min(sh, sw))
    pads = _pads(name, o.Padding(), imp.tensor(ins[0])[2], kh, kw, sh, sw)
    imp.add(name, "AveragePool2D" if name.startswith("average") else "MaxPool2D", ins[:1], outs[:1],
            kernel=(kh, kw), strides=(sh, sw), pads=pads, act=_activation(name, o.FusedActivationFunction()))


@translator("MEAN")
def _mean(imp, name, op, ins, outs):
    o = imp.options(op, "ReducerOptions")
    rank = len(imp.tensor(ins[0])[2])
    axes = imp.const(ins[1], f"{name}: the axes").reshape(-1)
    if np.any((axes < -rank) | (axes >= rank)):
        raise ModelError(f"{name}: axes {axes.tolist()} outside rank {rank}")
    axes = tuple(sorted({int(a) % rank for a in axes}))
    imp.add(name, "Mean", ins[:1], outs[:1], axes=axes, keep_dims=bool(o.KeepDims()) if o is not None else False)


@translator("RESHAPE", "SQUEEZE", "EXPAND_DIMS")
def _reshape(imp, name, op, ins, outs):
    imp.add(name, "Reshape", ins[:1], outs[:1], shape=imp.tensor(outs[0])[2])


@translator("SOFTMAX")
def _softmax(imp, name, op, ins, outs):
    o = imp.options(op, "SoftmaxOptions")
    imp.add(name, "Softmax", ins[:1], outs[:1], beta=np.float32(o.Beta() if o is not None else 1.0))


@translator("LOGISTIC", "HARD_SWISH", "RELU", "RELU6", "RELU_N1_TO_1", "TANH")
def _unary(imp, name, op, ins, outs):
    key = name.rsplit("_", 1)[0]
    op_type = {"logistic": "Logistic", "hard_swish": "HardSwish", "relu": "Relu", "relu6": "Relu6",
               "relu_n1_to_1": "ReluN1To1", "tanh": "Tanh"}[key]
    imp.add(name, op_type, ins[:1], outs[:1])


@translator("CONCATENATION")
def _concat(imp, name, op, ins, outs):
    o = imp.options(op, "ConcatenationOptions")
    rank = len(imp.tensor(outs[0])[2])
    axis = int(o.Axis())
    if not -rank <= axis < rank:
        raise ModelError(f"{name}: axis {axis} outside rank {rank}")
    imp.add(name, "Concatenation", ins, outs[:1], axis=axis % rank, act=_activation(name, o.FusedActivationFunction()))


@translator("PAD", "PADV2")
def _pad(imp, name, op, ins, outs):
    pads = imp.const(ins[1], f"{name}: the paddings").astype(np.int64)
    rank = len(imp.tensor(ins[0])[2])
    if pads.shape != (rank, 2) or np.any(pads < 0):
        raise ModelError(f"{name}: paddings {pads.tolist()} must be ({rank}, 2), non-negative")
    value = None
    if len(ins) > 2 and ins[2] >= 0:
        value = imp.const(ins[2], f"{name}: the pad value").reshape(-1)[0]
    imp.add(name, "Pad", ins[:1], outs[:1], pads=tuple(map(tuple, pads.tolist())), value=value)


@translator("QUANTIZE", "DEQUANTIZE")
def _quantize(imp, name, op, ins, outs):
    const = imp.tensor(ins[0])[4]
    if name.startswith("dequantize") and const is not None and imp.tensor(ins[0])[3] is None:
        name, _, shape, _, _ = imp.tensor(outs[0])   # float16 weights, decoded once
        value = const.astype(np.float32)
        imp.inits[name] = value
        imp.tensors[outs[0]] = (name, np.dtype(np.float32), shape, None, value)
        return
    imp.add(name, "Quantize" if name.startswith("quantize") else "Dequantize", ins[:1], outs[:1],
            dtype=imp.tensor(outs[0])[1].name)


@translator("RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR")
def _resize(imp, name, op, ins, outs):
    bilinear = name.startswith("resize_bilinear")
    o = imp.options(op, "ResizeBilinearOptions" if bilinear else "ResizeNearestNeighborOptions")
    out_shape = imp.tensor(outs[0])[2]
    if len(out_shape) != 4:
        raise ModelError(f"{name}: 4-D NHWC output expected")
    if bilinear and imp.tensor(ins[0])[1] == np.uint8:
        raise ModelError(f"{name}: uint8 RESIZE_BILINEAR is not supported (LiteRT interpolates it in float; "
                         "int8 and float32 are supported)")
    imp.add(name, "ResizeBilinear" if bilinear else "ResizeNearestNeighbor", ins[:1], outs[:1],
            size=tuple(out_shape[1:3]), align_corners=bool(o.AlignCorners()) if o is not None else False,
            half_pixel_centers=bool(o.HalfPixelCenters()) if o is not None else False)
