"""Lane ``models``: valid small ONNX models, mutated (structure, attributes, names,
scales and zero points, huge shapes, dtypes, opsets, external data, the model path,
serialized bytes), loaded with ``qkernels.graph.Session`` and run on random feeds.

Case ``i`` of seed ``s`` draws everything from ``numpy.random.default_rng([s, i])``.
"""
from __future__ import annotations

import functools
import glob
import os
import shutil
import tempfile

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from common import WrongResult

BIG = [2**31, 2**32 + 1, 2**40, 2**63 - 1]
EXTREME_INTS = [0, -1, -2, 3, 100, -100, 2**31, -2**31 - 1, 2**63 - 1, -2**63]
EXTREME_FLOATS = [0.0, -0.0, -1.0, float("inf"), float("-inf"), float("nan"), 1e-45, 1e38, 3.4e38, -1e38]
ELEM_TYPES = [0, T.FLOAT, T.UINT8, T.INT8, T.UINT16, T.INT16, T.INT32, T.INT64, T.STRING, T.BOOL, T.FLOAT16,
              T.DOUBLE, T.UINT32, T.UINT64, T.COMPLEX64, T.BFLOAT16, T.FLOAT8E4M3FN, T.INT4, 99]
#: input positions of scales and zero points in the quantized operators
SCALES = {"QuantizeLinear": [1], "DequantizeLinear": [1], "QLinearConv": [1, 4, 6], "QLinearMatMul": [1, 4, 6]}
ZERO_POINTS = {"QuantizeLinear": [2], "DequantizeLinear": [2], "QLinearConv": [2, 5, 7], "QLinearMatMul": [2, 5, 7]}


# ----------------------------------------------------------------------------- the corpus

def _init(name, arr):
    return nh.from_array(np.asarray(arr), name)


def _model(nodes, inputs, outputs, inits, opset=13):
    m = h.make_model(h.make_graph(nodes, "fuzz", inputs, outputs, inits),
                     opset_imports=[h.make_opsetid("", opset)], producer_name="qkernels-fuzz")
    m.ir_version = 8
    return m


def _conv_chain(r):
    x = h.make_tensor_value_info("x", T.FLOAT, ["N", 3, 8, 8])
    y = h.make_tensor_value_info("y", T.FLOAT, ["N", 5])
    nodes = [h.make_node("Conv", ["x", "w", "b"], ["c"], "conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             h.make_node("Relu", ["c"], ["r"], "relu"),
             h.make_node("MaxPool", ["r"], ["p"], "pool", kernel_shape=[2, 2], strides=[2, 2]),
             h.make_node("Reshape", ["p", "shape"], ["f"], "flat"),
             h.make_node("Gemm", ["f", "fc_w", "fc_b"], ["g"], "fc", transB=1),
             h.make_node("Softmax", ["g"], ["y"], "softmax", axis=-1)]
    inits = [_init("w", r.standard_normal((4, 3, 3, 3), np.float32)), _init("b", r.standard_normal(4, np.float32)),
             _init("shape", np.array([0, -1], np.int64)), _init("fc_w", r.standard_normal((5, 64), np.float32)),
             _init("fc_b", r.standard_normal(5, np.float32))]
    return _model(nodes, [x], [y], inits)


def _matmul_chain(r):
    x = h.make_tensor_value_info("x", T.FLOAT, [2, 4])
    x2 = h.make_tensor_value_info("x2", T.FLOAT, [2, 3])
    y = h.make_tensor_value_info("y", T.FLOAT, [2, 6])
    nodes = [h.make_node("MatMul", ["x", "w"], ["m"], "matmul"), h.make_node("Add", ["m", "b"], ["a"], "add"),
             h.make_node("Relu", ["a"], ["r"], "relu"), h.make_node("Concat", ["r", "x2"], ["c"], "concat", axis=1),
             h.make_node("Softmax", ["c"], ["y"], "softmax", axis=1)]
    inits = [_init("w", r.standard_normal((4, 3), np.float32)), _init("b", r.standard_normal(3, np.float32))]
    return _model(nodes, [x, x2], [y], inits)


def _qdq(x, scale, zp, out, tag):
    return [h.make_node("QuantizeLinear", [x, scale, zp], [f"{out}_q"], f"q_{tag}"),
            h.make_node("DequantizeLinear", [f"{out}_q", scale, zp], [out], f"dq_{tag}")]


def _qdq_conv(r):
    """ORT-style QDQ: Q/DQ on activations, DQ on per-channel int8 weights and int32 bias."""
    x = h.make_tensor_value_info("x", T.FLOAT, [1, 3, 8, 8])
    y = h.make_tensor_value_info("y", T.FLOAT, [1, 4, 8, 8])
    ws = r.uniform(0.005, 0.02, 4).astype(np.float32)
    nodes = _qdq("x", "xs", "xz", "xd", "x") + [
        h.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], "dq_w", axis=0),
        h.make_node("DequantizeLinear", ["b", "bs", "bz"], ["bd"], "dq_b", axis=0),
        h.make_node("Conv", ["xd", "wd", "bd"], ["c"], "conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        h.make_node("Relu", ["c"], ["cr"], "relu")] + _qdq("cr", "ys", "yz", "y", "y")
    inits = [_init("xs", np.float32(0.02)), _init("xz", np.uint8(128)),
             _init("w", r.integers(-127, 128, (4, 3, 3, 3), dtype=np.int8)), _init("ws", ws),
             _init("wz", np.zeros(4, np.int8)), _init("b", r.integers(-500, 500, 4, dtype=np.int32)),
             _init("bs", ws * np.float32(0.02)), _init("bz", np.zeros(4, np.int32)),
             _init("ys", np.float32(0.05)), _init("yz", np.uint8(0))]
    return _model(nodes, [x], [y], inits)


def _qdq_matmul(r):
    x = h.make_tensor_value_info("x", T.FLOAT, ["N", 8])
    y = h.make_tensor_value_info("y", T.FLOAT, ["N", 4])
    nodes = _qdq("x", "xs", "xz", "xd", "x") + [
        h.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], "dq_w"),
        h.make_node("MatMul", ["xd", "wd"], ["m"], "matmul")] + _qdq("m", "ys", "yz", "y", "y")
    inits = [_init("xs", np.float32(0.03)), _init("xz", np.int8(0)),
             _init("w", r.integers(-127, 128, (8, 4), dtype=np.int8)), _init("ws", np.float32(0.01)),
             _init("wz", np.int8(0)), _init("ys", np.float32(0.1)), _init("yz", np.int8(3))]
    return _model(nodes, [x], [y], inits)


def _qlinear_conv(r):
    x = h.make_tensor_value_info("x", T.UINT8, [1, 3, 8, 8])
    y = h.make_tensor_value_info("y", T.UINT8, [1, 4, 4, 4])
    nodes = [h.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"], "qconv",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2])]
    inits = [_init("xs", np.float32(0.02)), _init("xz", np.uint8(120)),
             _init("w", r.integers(-127, 128, (4, 3, 3, 3), dtype=np.int8)),
             _init("ws", r.uniform(0.005, 0.02, 4).astype(np.float32)), _init("wz", np.zeros(4, np.int8)),
             _init("ys", np.float32(0.07)), _init("yz", np.uint8(10)),
             _init("b", r.integers(-1000, 1000, 4, dtype=np.int32))]
    return _model(nodes, [x], [y], inits)


def _qlinear_matmul(r):
    a = h.make_tensor_value_info("a", T.UINT8, [2, 8])
    y = h.make_tensor_value_info("y", T.UINT8, [2, 4])
    nodes = [h.make_node("QLinearMatMul", ["a", "as", "az", "b", "bs", "bz", "ys", "yz"], ["y"], "qmatmul")]
    inits = [_init("as", np.float32(0.02)), _init("az", np.uint8(128)),
             _init("b", r.integers(-127, 128, (8, 4), dtype=np.int8)), _init("bs", np.float32(0.01)),
             _init("bz", np.int8(0)), _init("ys", np.float32(0.05)), _init("yz", np.uint8(128))]
    return _model(nodes, [a], [y], inits)


def _shape_ops(r):
    x = h.make_tensor_value_info("x", T.FLOAT, [2, 3])
    outs = [h.make_tensor_value_info(n, T.FLOAT, None) for n in ("e", "t", "rs", "cs")]
    outs.append(h.make_tensor_value_info("rg", T.INT64, None))
    nodes = [h.make_node("Expand", ["x", "eshape"], ["e"], "expand"),
             h.make_node("Tile", ["x", "reps"], ["t"], "tile"),
             h.make_node("Reshape", ["x", "rshape"], ["rs"], "reshape"),
             h.make_node("Shape", ["x"], ["s"], "shape"),
             h.make_node("ConstantOfShape", ["s"], ["cs"], "cos", value=_init("v", np.array([1.5], np.float32))),
             h.make_node("Range", ["start", "limit", "delta"], ["rg"], "range")]
    inits = [_init("eshape", np.array([2, 2, 3], np.int64)), _init("reps", np.array([1, 2], np.int64)),
             _init("rshape", np.array([3, -1], np.int64)), _init("start", np.int64(0)),
             _init("limit", np.int64(5)), _init("delta", np.int64(1))]
    return _model(nodes, [x], outs, inits)


@functools.lru_cache(maxsize=None)
def corpus() -> dict[str, bytes]:
    """Serialized valid models, built once per process (fixed seeds)."""
    r = np.random.default_rng(1234)
    out = {f.__name__.strip("_"): f(r).SerializeToString()
           for f in (_conv_chain, _matmul_chain, _qdq_conv, _qdq_matmul, _qlinear_conv, _qlinear_matmul, _shape_ops)}
    import qkernels
    for path in sorted(glob.glob(os.path.join(os.path.dirname(qkernels.__file__), "data", "*.onnx"))):
        with open(path, "rb") as f:
            out[os.path.basename(path)] = f.read()
    try:
        from qkernels.bench import zoo
        out["mobilenet_v2"] = zoo.mobilenet_v2(width=0.25, size=32, classes=10).SerializeToString()
        out["resnet18"] = zoo.resnet18(width=0.125, size=32, classes=10).SerializeToString()
    except ImportError:   # an installation without the benchmark harness (and its zoo)
        pass
    return out


def warm_up() -> None:
    import qkernels.graph  # noqa: F401
    corpus()


# ----------------------------------------------------------------------------- mutations

class Ctx:
    """A case's random source, model and folder (external data, path tricks)."""

    def __init__(self, rng, model, folder):
        self.r, self.m, self.dir = rng, model, folder
        self.path = os.path.join(folder, "model.onnx")
        self.path_override = None

    def pick(self, seq):
        return seq[int(self.r.integers(len(seq)))] if len(seq) else None

    def node(self, pred=lambda n: True):
        return self.pick([n for n in self.m.graph.node if pred(n)])

    def init(self, name):
        return next((t for t in self.m.graph.initializer if t.name == name), None)

    def value_names(self):
        g = self.m.graph
        return [v.name for v in g.input] + [t.name for t in g.initializer] + [o for n in g.node for o in n.output]


def m_attr_value(c):
    n = c.node(lambda n: len(n.attribute))
    if n is None:
        return m_attr_add(c)
    a = c.pick(n.attribute)
    if a.type == onnx.AttributeProto.INT:
        a.i = c.pick(EXTREME_INTS)
    elif a.type == onnx.AttributeProto.INTS:
        choice = c.r.integers(4)
        vals = [c.pick(EXTREME_INTS) for _ in a.ints] if choice == 0 else \
            [] if choice == 1 else list(a.ints) + [c.pick(EXTREME_INTS)] if choice == 2 else list(a.ints)[:1]
        del a.ints[:]
        a.ints.extend(vals)
    elif a.type == onnx.AttributeProto.FLOAT:
        a.f = c.pick(EXTREME_FLOATS)
    elif a.type == onnx.AttributeProto.STRING:
        a.s = c.pick([b"", b"GARBAGE", b"SAME_UPPER", b"\xff\xfe", b"NOTSET"])
    return f"attr {n.name}.{a.name} := {h.get_attribute_value(a)!r}"[:120]


ODD_ATTRS = [("alpha", 0.5), ("axis", 100), ("axis", -100), ("group", 0), ("group", 3), ("auto_pad", "GARBAGE"),
             ("auto_pad", "SAME_LOWER"), ("kernel_shape", [3]), ("kernel_shape", [0, 0]), ("strides", [0, 0]),
             ("dilations", [2**31, 1]), ("pads", [2**40, 0, 0, 0]), ("pads", [1, 1, 1]), ("transA", 2),
             ("ceil_mode", 1), ("storage_order", 1), ("saturate", 0), ("output_dtype", 99), ("block_size", 2),
             ("to", 99), ("allowzero", 1), ("foo", 1), ("epsilon", -1.0), ("fmod", 1), ("channels_last", 1)]


def m_attr_add(c):
    n = c.node()
    name, value = c.pick(ODD_ATTRS)
    kept = [a for a in n.attribute if a.name != name]
    del n.attribute[:]
    n.attribute.extend(kept + [h.make_attribute(name, value)])
    return f"attr {n.name}.{name} = {value!r}"


def m_attr_type(c):
    n = c.node(lambda n: len(n.attribute))
    if n is None:
        return m_attr_add(c)
    a = c.pick(n.attribute)
    other = c.pick([1, 2.5, "s", [1, 2], [1.5], ["a"], _init("t", np.ones(2, np.float32)),
                    h.make_graph([], "g", [], [])])
    new = h.make_attribute(a.name, other)
    a.CopyFrom(new)
    return f"attr {n.name}.{a.name} retyped to {onnx.AttributeProto.AttributeType.Name(new.type)}"


def m_attr_remove(c):
    n = c.node(lambda n: len(n.attribute))
    if n is None:
        return m_attr_add(c)
    a = c.pick(n.attribute)
    n.attribute.remove(a)
    return f"attr {n.name}.{a.name} removed"


def m_inputs(c):
    n = c.node()
    kind = c.pick(["empty", "drop", "extra", "swap", "dangling", "cycle", "self"])
    k = int(c.r.integers(len(n.input))) if len(n.input) else 0
    if kind == "empty" and len(n.input):
        n.input[k] = ""
    elif kind == "drop" and len(n.input):
        del n.input[k]
    elif kind == "extra":
        n.input.append(c.pick(c.value_names()))
    elif kind == "swap" and len(n.input) > 1:
        n.input[0], n.input[-1] = n.input[-1], n.input[0]
    elif kind == "dangling" and len(n.input):
        n.input[k] = "nowhere"
    elif kind == "cycle" and len(n.input):
        later = [o for m in c.m.graph.node for o in m.output]
        n.input[k] = c.pick(later[-2:])
    elif kind == "self" and len(n.input):
        n.input[k] = n.output[0]
    return f"inputs {kind} {n.name}[{k}]"


def m_names(c):
    g = c.m.graph
    kind = c.pick(["node_empty", "node_dup", "output_empty", "output_dup", "graph_output_dup", "input_empty",
                   "input_dup", "init_dup", "output_is_input", "graph_output_missing", "no_outputs"])
    n = c.node()
    if kind == "node_empty":
        for m in g.node:
            m.name = ""
    elif kind == "node_dup":
        for m in g.node:
            m.name = "same"
    elif kind == "output_empty":
        n.output[0] = ""
    elif kind == "output_dup" and len(g.node) > 1:
        g.node[0].output[0] = g.node[-1].output[0]
    elif kind == "graph_output_dup":
        g.output.append(g.output[0])
    elif kind == "input_empty" and len(g.input):
        g.input[0].name = ""
    elif kind == "input_dup" and len(g.input):
        g.input.append(g.input[0])
    elif kind == "init_dup" and len(g.initializer):
        t = onnx.TensorProto()
        t.CopyFrom(g.initializer[0])
        t.dims.append(1)
        g.initializer.append(t)
    elif kind == "output_is_input" and len(g.input):
        n.output[0] = g.input[0].name
    elif kind == "graph_output_missing":
        g.output[0].name = "missing"
    elif kind == "no_outputs":
        del g.output[:]
    return f"names {kind}"


def _set_dims(shape_proto, dims):
    del shape_proto.dim[:]
    for d in dims:
        dim = shape_proto.dim.add()
        if isinstance(d, str):
            dim.dim_param = d
        else:
            dim.dim_value = d


def m_dims(c):
    g = c.m.graph
    kind = c.pick(["input", "output", "init", "init_empty"])
    if kind in ("input", "output") and len(getattr(g, kind)):
        v = c.pick(getattr(g, kind))
        dims = [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim]
        how = c.pick(["zero", "neg", "huge", "symbolic", "extra", "drop", "noshape"])
        if how == "noshape":
            v.type.tensor_type.ClearField("shape")
        else:
            k = int(c.r.integers(max(1, len(dims))))
            if how == "extra":
                dims.append(int(c.r.integers(1, 4)))
            elif how == "drop" and dims:
                dims.pop(k)
            elif dims:
                dims[k] = {"zero": 0, "neg": -1, "huge": c.pick(BIG), "symbolic": "S"}[how]
            try:
                _set_dims(v.type.tensor_type.shape, dims)
            except ValueError:   # protobuf refuses 2**63 and above
                pass
        return f"dims {kind} {v.name} {how} -> {dims}"[:120]
    t = c.pick(g.initializer)
    if t is None:
        return "dims (no initializer)"
    dims = list(t.dims)
    how = c.pick(["grow", "shrink", "neg", "huge", "scalar", "zero"])
    if how == "grow":
        dims = dims + [2] if not dims or c.r.random() < 0.5 else [dims[0] + 1] + dims[1:]
    elif how == "shrink":
        dims = dims[1:]
    elif how == "scalar":
        dims = []
    elif dims:
        dims[0] = {"neg": -1, "huge": c.pick(BIG), "zero": 0}[how]
    del t.dims[:]
    t.dims.extend(dims)
    if kind == "init_empty":
        t.ClearField("raw_data")
    return f"dims initializer {t.name} {how} -> {dims}{' (no data)' if kind == 'init_empty' else ''}"


def m_dtype(c):
    g = c.m.graph
    kind = c.pick(["input", "output", "init"])
    new = c.pick(ELEM_TYPES)
    if kind == "init" and len(g.initializer):
        t = c.pick(g.initializer)
        t.data_type = new
        return f"dtype initializer {t.name} -> {new}"
    vs = getattr(g, kind if kind != "init" else "input")
    if not len(vs):
        return "dtype (nothing)"
    v = c.pick(vs)
    v.type.tensor_type.elem_type = new
    return f"dtype {kind} {v.name} -> {new}"


def _replace_init(c, name, arr):
    t = c.init(name)
    if t is not None:
        t.CopyFrom(nh.from_array(np.asarray(arr), name))


def _qparam(c, table):
    """A node input that is a scale (or a zero point) and is an initializer."""
    cands = [(n, n.input[k]) for n in c.m.graph.node for k in table.get(n.op_type, ())
             if k < len(n.input) and c.init(n.input[k]) is not None]
    return c.pick(cands)


def m_scale(c):
    got = _qparam(c, SCALES)
    if got is None:
        return m_attr_value(c)
    n, name = got
    old = nh.to_array(c.init(name))
    kind = c.pick(["value", "value", "length", "dtype", "2d"])
    if kind == "value":
        v = np.full(old.shape, c.pick(EXTREME_FLOATS), np.float32)
        if v.size and c.r.random() < 0.5:
            v.reshape(-1)[0] = np.float32(old.reshape(-1)[0])   # one bad channel among good ones
    elif kind == "length":
        v = np.full(c.pick([0, 3, 7, 100]), 0.01, np.float32)
    elif kind == "dtype":
        v = old.astype(c.pick([np.float64, np.float16, np.int32, np.uint8]))
    else:
        v = np.full((2, 2), 0.01, np.float32)
    _replace_init(c, name, v)
    return f"scale {name} ({n.op_type}) {kind} -> {v.dtype}{v.shape} {v.reshape(-1)[:2].tolist()}"


def m_zero_point(c):
    got = _qparam(c, ZERO_POINTS)
    if got is None:
        return m_attr_value(c)
    n, name = got
    old = nh.to_array(c.init(name))
    kind = c.pick(["range", "dtype", "length", "2d", "float"])
    if kind == "range":
        v = np.full(old.shape, c.pick([300, -200, 2**31 - 1, -2**31]), np.int32)   # as int32: out of range
    elif kind == "dtype":
        v = old.astype(np.uint8 if old.dtype == np.int8 else np.int8)
    elif kind == "length":
        v = np.zeros(c.pick([0, 3, 7, 100]), old.dtype)
    elif kind == "2d":
        v = np.zeros((2, 2), old.dtype)
    else:
        v = old.astype(np.float32)
    _replace_init(c, name, v)
    return f"zero point {name} ({n.op_type}) {kind} -> {v.dtype}{v.shape} {v.reshape(-1)[:2].tolist()}"


def m_huge(c):
    """A new output computed from a huge or tricky shape (constant: folded at load; from
    the input's shape: at run time)."""
    g = c.m.graph
    x = g.input[0].name if len(g.input) else None
    op = c.pick(["ConstantOfShape", "Expand", "Tile", "Range", "Reshape"])
    shape = c.pick([[2**40], [2**28], [2**20, 2**20], [1] * 64, [2] * 64, [-1], [0, 2**40], [2**62, 4]])
    runtime = x is not None and c.r.random() < 0.3
    nodes, inits = [], []
    if runtime:   # shape = Shape(x) * big: known only when running
        nodes += [h.make_node("Shape", [x], ["fz_s"], "fz_shape"),
                  h.make_node("Mul", ["fz_s", "fz_big"], ["fz_shape"], "fz_mul")]
        inits.append(_init("fz_big", np.array([c.pick([2**20, 2**30, 2**40])], np.int64)))
    else:
        inits.append(_init("fz_shape", np.array(shape, np.int64)))
    src = x if x is not None and c.r.random() < 0.5 else "fz_one"
    inits.append(_init("fz_one", np.ones((1, 1), np.float32)))
    if op == "ConstantOfShape":
        nodes.append(h.make_node(op, ["fz_shape"], ["fz_out"], "fz_node"))
    elif op in ("Expand", "Tile"):
        if op == "Tile":
            src = "fz_one"
            inits[-1] = _init("fz_one", np.ones([1] * len(shape), np.float32))
        nodes.append(h.make_node(op, [src, "fz_shape"], ["fz_out"], "fz_node"))
    elif op == "Range":
        start, limit, delta = c.pick([(0, 2**40, 1), (0, 10, 0), (0.0, 1e30, 1e-30), (0, -2**62, -1),
                                      (0.0, float("inf"), 1.0), (0.0, float("nan"), 1.0)])
        dt = np.float32 if isinstance(start, float) else np.int64
        inits += [_init("fz_a", dt(start)), _init("fz_b", np.array(limit, dt)), _init("fz_c", np.array(delta, dt))]
        nodes.append(h.make_node(op, ["fz_a", "fz_b", "fz_c"], ["fz_out"], "fz_node"))
        shape = (start, limit, delta)
    else:
        tricks = [[-1, 0, 0, 0], [0, 0, -1, -1], [2**40, -1], [0, -1], [-1, -1], [3, 0], [-2], [0] * 70]
        inits[0] = _init("fz_shape", np.array(c.pick(tricks), np.int64))
        nodes.append(h.make_node(op, [x or "fz_one", "fz_shape"], ["fz_out"], "fz_node",
                                 allowzero=int(c.r.integers(2))))
        shape = nh.to_array(inits[0]).tolist()
    g.node.extend(nodes)
    g.initializer.extend(inits)
    g.output.append(h.make_tensor_value_info("fz_out", 0, None))
    return f"huge {op} {'runtime' if runtime else 'const'} {str(shape)[:60]}"


def m_op(c):
    n = c.node()
    kind = c.pick(["op", "op", "domain"])
    if kind == "op":
        n.op_type = c.pick(["Relu", "Sigmoid", "Conv", "ConvInteger", "QLinearConv", "MatMul", "Gemm",
                            "MatMulInteger", "QLinearMatMul", "Softmax", "Add", "Concat", "Reshape", "Identity",
                            "BatchNormalization", "DequantizeLinear", "QuantizeLinear", "Foo", ""])
        return f"op {n.name} -> {n.op_type!r}"
    n.domain = c.pick(["com.microsoft", "ai.onnx.ml", "weird", "ai.onnx"])
    return f"op {n.name} domain -> {n.domain}"


def m_opset(c):
    kind = c.pick(["version", "version", "none", "dup", "ms"])
    ops = c.m.opset_import
    if kind == "version":
        ops[0].version = c.pick([1, 7, 11, 12, 13, 17, 19, 21, 22, 23, 99, 2**31, -1, 0])
        return f"opset -> {ops[0].version}"
    if kind == "none":
        ops[0].domain = "other"
    elif kind == "dup":
        ops.append(h.make_opsetid("", 7))
    else:
        ops.append(h.make_opsetid("com.microsoft", 1))
    return f"opset {kind}"


def m_constant_node(c):
    """An initializer becomes a Constant node (valid), sometimes with odd value attributes."""
    g = c.m.graph
    t = c.pick(g.initializer)
    if t is None:
        return "constant (no initializer)"
    g.initializer.remove(t)
    kind = c.pick(["tensor", "tensor", "value_float", "value_ints", "two", "none", "sparse"])
    attrs = {"tensor": {"value": t}, "value_float": {"value_float": 1.5}, "value_ints": {"value_ints": [1, 2]},
             "two": {"value": t, "value_float": 1.0}, "none": {},
             "sparse": {"sparse_value": h.make_sparse_tensor(_init("v", np.array([1.0], np.float32)),
                                                             _init("i", np.array([0], np.int64)), [4])}}[kind]
    g.node.insert(0, h.make_node("Constant", [], [t.name], f"const_{t.name}", **attrs))
    return f"constant node {t.name} ({kind})"


def m_subgraph(c):
    n = c.node()
    n.attribute.append(h.make_attribute("body", h.make_graph([], "g", [], [])))
    return f"graph attribute on {n.name}"


def m_external(c):
    """The largest initializer moves to an external file, with a trick."""
    g = c.m.graph
    if not len(g.initializer):
        return "external (no initializer)"
    t = max(g.initializer, key=lambda t: len(nh.to_array(t).tobytes()))
    raw = nh.to_array(t).tobytes()
    with open(os.path.join(c.dir, "w.bin"), "wb") as f:
        f.write(raw)
    outside = os.path.join(os.path.dirname(c.dir), "outside.bin")
    with open(outside, "wb") as f:
        f.write(raw)
    kind = c.pick(["valid", "length_huge", "offset_past_end", "offset_neg", "offset_text", "dotdot", "absolute",
                   "dev_zero", "fifo", "symlink_out", "symlink_in", "directory", "empty", "missing", "nul",
                   "sparse_512m", "sparse_8g", "length_short", "no_entries"])
    loc, extra = "w.bin", {}
    if kind == "length_huge":
        extra["length"] = str(2**40)
    elif kind == "offset_past_end":
        extra["offset"] = str(len(raw) + 100)
    elif kind == "offset_neg":
        extra["offset"] = "-8"
    elif kind == "offset_text":
        extra["offset"] = "abc"
    elif kind == "dotdot":
        loc = "../outside.bin"
    elif kind == "absolute":
        loc = outside
    elif kind == "dev_zero":
        loc = "/dev/zero"
    elif kind == "fifo":
        os.mkfifo(os.path.join(c.dir, "fifo.bin"))
        loc = "fifo.bin"
    elif kind in ("symlink_out", "symlink_in"):
        os.symlink(outside if kind == "symlink_out" else "w.bin", os.path.join(c.dir, "link.bin"))
        loc = "link.bin"
    elif kind == "directory":
        os.mkdir(os.path.join(c.dir, "sub"))
        loc = "sub"
    elif kind == "empty":
        loc = ""
    elif kind == "missing":
        loc = "missing.bin"
    elif kind == "nul":
        loc = "w\0.bin"
    elif kind.startswith("sparse"):
        with open(os.path.join(c.dir, "w.bin"), "r+b") as f:
            f.truncate(2**29 if kind == "sparse_512m" else 2**33)
    elif kind == "length_short":
        extra["length"] = str(max(0, len(raw) - 1))
    t.ClearField("raw_data")
    del t.float_data[:], t.int32_data[:], t.int64_data[:]
    t.data_location = T.EXTERNAL
    if kind != "no_entries":
        for k, v in {"location": loc, **extra}.items():
            e = t.external_data.add()
            e.key, e.value = k, v
    return f"external {t.name} {kind}"


def m_path(c):
    """The model path itself is odd."""
    kind = c.pick(["dev_zero", "fifo", "directory", "symlink", "missing", "empty"])
    if kind == "dev_zero":
        c.path_override = "/dev/zero"
    elif kind == "fifo":
        c.path_override = os.path.join(c.dir, "fifo.onnx")
        os.mkfifo(c.path_override)
    elif kind == "directory":
        c.path_override = c.dir
    elif kind == "symlink":
        c.path_override = os.path.join(c.dir, "link.onnx")
        os.symlink("model.onnx", c.path_override)
    elif kind == "missing":
        c.path_override = os.path.join(c.dir, "missing.onnx")
    else:
        c.path_override = os.path.join(c.dir, "empty.onnx")
        open(c.path_override, "wb").close()
    return f"path {kind}"


def mutate_bytes(c, data: bytes) -> tuple[bytes, str]:
    b = bytearray(data)
    kind = c.pick(["flip", "flip", "truncate", "splice", "insert", "overwrite", "duplicate"])
    if kind == "flip":
        for _ in range(int(c.r.integers(1, 9))):
            b[int(c.r.integers(len(b)))] ^= 1 << int(c.r.integers(8))
    elif kind == "truncate":
        b = b[:int(c.r.integers(len(b)))]
    elif kind == "splice":
        other = c.pick(list(corpus().values()))
        b = b[:int(c.r.integers(len(b)))] + other[int(c.r.integers(len(other))):]
    elif kind == "insert":
        k = int(c.r.integers(len(b)))
        b[k:k] = c.r.integers(0, 256, int(c.r.integers(1, 16)), dtype=np.uint8).tobytes()
    elif kind == "overwrite":
        k = int(c.r.integers(len(b)))
        b[k:k + 8] = b"\xff" * 8
    else:
        k, n = int(c.r.integers(len(b))), int(c.r.integers(1, 64))
        b[k:k] = b[k:k + n]
    return bytes(b), f"bytes {kind}"


STRUCTURAL = [(m_attr_value, 3), (m_attr_add, 3), (m_attr_type, 1), (m_attr_remove, 1), (m_inputs, 3), (m_names, 2),
              (m_dims, 3), (m_dtype, 2), (m_scale, 4), (m_zero_point, 3), (m_huge, 3), (m_op, 2), (m_opset, 1),
              (m_constant_node, 1), (m_subgraph, 0.3), (m_external, 1), (m_path, 0.15)]


# ----------------------------------------------------------------------------- a case

def feeds_for(sess, r) -> dict | None:
    """Random feeds of the declared shapes and dtypes (symbolic dims: 1..3); None when
    the declared inputs are too big to make."""
    feeds = {}
    for v in sess.get_inputs():
        shape = tuple(d if isinstance(d, int) else int(r.integers(1, 4)) for d in (v.shape or (2,)))
        if np.prod(shape, dtype=object) > 1 << 22:
            return None
        dt = np.dtype(v.dtype) if v.dtype is not None else np.dtype(np.float32)
        if dt.kind == "f":
            feeds[v.name] = (r.standard_normal(shape) * 2).astype(dt)
        elif dt.kind in "iu":
            info = np.iinfo(dt)
            lo, hi = (info.min, info.max) if dt.itemsize == 1 else (-3, 5)
            feeds[v.name] = r.integers(max(lo, info.min), min(hi, info.max), shape, endpoint=True).astype(dt)
        elif dt.kind == "b":
            feeds[v.name] = r.random(shape) < 0.5
        elif dt.kind == "c":
            feeds[v.name] = (r.standard_normal(shape) + 1j).astype(dt)
        else:
            feeds[v.name] = np.full(shape, "a", dtype=dt if dt.kind in "OSU" else object)
    return feeds


def run(seed: int, case: int, desc: list[str], verbose: bool = False) -> None:
    from qkernels.graph import Session
    r = np.random.default_rng([seed, case])
    models = corpus()
    name = sorted(models)[int(r.integers(len(models)))]
    desc.append(f"model {name}")
    root = tempfile.mkdtemp(prefix="qkfuzz-")
    try:
        folder = os.path.join(root, "model")
        os.mkdir(folder)
        c = Ctx(r, onnx.load_from_string(models[name]), folder)
        fns, weights = zip(*STRUCTURAL)
        p = np.array(weights) / sum(weights)
        for _ in range(int(r.choice([0, 1, 1, 1, 2, 2, 3]))):
            fn = fns[int(r.choice(len(fns), p=p))]
            try:
                desc.append(fn(c))
            except Exception as exc:  # noqa: BLE001 - onnx's own helpers refuse what earlier mutations broke
                desc.append(f"{fn.__name__} not applicable ({type(exc).__name__})")
        data = c.m.SerializeToString()
        if r.random() < 0.2:
            data, what = mutate_bytes(c, data)
            desc.append(what)
        with open(c.path, "wb") as f:
            f.write(data)
        if verbose:
            print(onnx.helper.printable_graph(c.m.graph)[:2000])
        sess = Session(c.path_override or c.path)
        feeds = feeds_for(sess, r)
        if feeds is None:
            desc.append("inputs too large to feed: loaded only")
            return
        desc.append("feeds " + ", ".join(f"{k}{v.shape}:{v.dtype}" for k, v in feeds.items()))
        for out in sess.run(None, feeds):
            if not isinstance(out, np.ndarray):
                raise WrongResult("Session.run", f"an output is a {type(out).__name__}, not an ndarray")
    finally:
        shutil.rmtree(root, ignore_errors=True)
