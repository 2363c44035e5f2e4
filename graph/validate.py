"""The one check of a loaded graph's nodes, before any backend or planning pass sees
them (Session calls :func:`validate` right after loading), and the errors of nodes
that fail later, at run time.

:func:`validate` checks each default-domain node against its operator's ONNX schema
(``onnx.defs``, the tables ONNX Runtime verifies too): the number of inputs and
outputs, required inputs and outputs not given as "", attribute names (an attribute
the operator does not define is refused, never ignored), types and required ones;
then the attribute values the model fixes: positive strides, dilations, groups,
axes within the rank of inputs whose rank is known, and quantization parameters that
fit the constants they quantize. Operators without an ONNX schema (com.microsoft,
...) keep their backend's own checks (the reference backend's operator signatures).

:func:`check_size` bounds every tensor an operator makes from values (Expand, Tile,
ConstantOfShape, Range, Pad, OneHot): ``MAX_ELEMENTS`` of :mod:`.model`, the bound of
stored tensors too. :func:`node_errors` turns what a failing operator raises into a
ModelError naming the node.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from functools import lru_cache

import numpy as np

from .errors import ModelError, RunError
from .ir import Graph, Node
from . import model

#: numpy's limit on dimensions (broadcasting: 32 even where arrays may have 64)
MAX_RANK = 32

#: what operators raise on values they cannot compute (numpy's and Python's own errors)
_RAW = (ArithmeticError, LookupError, MemoryError, RuntimeError, TypeError, ValueError)


def fail(node: Node, msg: str):
    raise ModelError(f"node {node.name!r} ({node.key}): {msg}")


def check_size(shape, node: Node) -> tuple:
    """``shape`` as a tuple of ints, when a tensor of that shape may be made (its rank and
    element count within the limits), else ModelError naming ``node``."""
    shape = tuple(int(d) for d in shape)
    if any(d < 0 for d in shape):
        fail(node, f"output shape {shape} has a negative dimension")
    if len(shape) > MAX_RANK:
        fail(node, f"output rank {len(shape)} is above the limit of {MAX_RANK} dimensions")
    n = math.prod(shape)
    if n > model.MAX_ELEMENTS:   # read at each call: a program may change the limit
        fail(node, f"output shape {shape} holds {n} elements, above the limit of {model.MAX_ELEMENTS} "
                   "(qkernels.graph.model.MAX_ELEMENTS)")
    return shape


@contextmanager
def node_errors(node: Node):
    """Run a node's computation: ModelError and RunError pass, any other error of the
    computation (numpy's shape errors, out of memory, ...) becomes a ModelError naming it."""
    try:
        yield
    except (ModelError, RunError):
        raise
    except _RAW as exc:
        raise ModelError(f"node {node.name!r} ({node.key}) fails: {type(exc).__name__}: {exc}") from exc


# ------------------------------------------------------------------------- schemas

@lru_cache(maxsize=None)
def _schema(op_type: str, opset: int):
    """The ONNX schema of a default-domain operator at ``opset``, or None when ONNX does
    not define it there (the backends then say whether they run it)."""
    from onnx import defs
    try:   # (an opset newer than onnx's: its newest schemas)
        schema = defs.get_schema(op_type, min(opset, defs.onnx_opset_version()), "")
    except defs.SchemaError:
        return None
    return None if schema.deprecated else schema


@lru_cache(maxsize=None)
def _attr_kinds():
    import onnx
    A = onnx.defs.OpSchema.AttrType
    # attribute type -> (the Python type of its value as model.py decodes it, is a list)
    return {A.FLOAT: (float, False), A.INT: (int, False), A.STRING: (str, False), A.TENSOR: (np.ndarray, False),
            A.SPARSE_TENSOR: (onnx.SparseTensorProto, False), A.TYPE_PROTO: (onnx.TypeProto, False),
            A.FLOATS: (float, True), A.INTS: (int, True), A.STRINGS: (str, True),
            A.TENSORS: (onnx.TensorProto, True), A.SPARSE_TENSORS: (onnx.SparseTensorProto, True),
            A.TYPE_PROTOS: (onnx.TypeProto, True),   # a GRAPH is a Graph, GRAPHS kept raw
            A.GRAPH: (Graph, False), A.GRAPHS: (onnx.AttributeProto, False)}


def _fits(value, attr_type) -> bool:
    kind, is_list = _attr_kinds()[attr_type]
    if attr_type.name == "GRAPH":   # model.py made it a Graph
        return isinstance(value, Graph)
    if attr_type.name == "GRAPHS":
        return isinstance(value, kind) and value.type == attr_type.value
    if is_list and not isinstance(value, list):
        return False
    # int, float, str exactly (an INT attribute is not a FLOAT one, as ONNX Runtime checks)
    return all(type(v) is kind if kind in (int, float, str) else isinstance(v, kind)
               for v in (value if is_list else [value]))


def arity_text(lo: int, hi: int | None) -> str:
    """How many values an operator takes: "2", "2 to 3" or "at least 2" (hi None: any)."""
    return str(lo) if lo == hi else f"at least {lo}" if hi is None or hi >= 1 << 30 else f"{lo} to {hi}"


def _check_schema(node: Node, schema) -> None:
    for what, names, params, lo, hi in (("input", node.explicit_inputs, schema.inputs, schema.min_input,
                                         schema.max_input),
                                        ("output", node.outputs, schema.outputs, schema.min_output,
                                         schema.max_output)):
        if not lo <= len(names) <= hi:
            fail(node, f"takes {arity_text(lo, hi)} {what}s, got {len(names)}")
        single = type(params[0].option).Single if params else None
        for k, (name, p) in enumerate(zip(names, params)):
            if not name and p.option == single:
                fail(node, f"{what} {k} ({p.name}) is required but given as \"\"")
    for name, value in node.attrs.items():
        a = schema.attributes.get(name)
        if a is None:
            if name.startswith("__"):   # ONNX's internal symbols, allowed on every operator
                continue
            known = ", ".join(sorted(schema.attributes)) or "none"
            fail(node, f"attribute {name!r} is not one of {node.op_type}'s (they are: {known})")
        if not _fits(value, a.type):
            fail(node, f"attribute {name!r} must be {a.type.name}, got {type(value).__name__} {value!r:.60}")
    for name, a in schema.attributes.items():
        if a.required and name not in node.attrs:
            fail(node, f"required attribute {name!r} is missing")


# ---------------------------------------------------------------------- attribute values

#: attribute -> (test of each value, what it must be), wherever the operator has it
_VALUES = {
    "group": (lambda v: v >= 1, "at least 1"), "strides": (lambda v: v >= 1, "at least 1"),
    "dilations": (lambda v: v >= 1, "at least 1"), "kernel_shape": (lambda v: v >= 1, "at least 1"),
    "blocksize": (lambda v: v >= 1, "at least 1"), "pads": (lambda v: v >= 0, "at least 0"),
    "auto_pad": (lambda v: v in ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"),
                 "NOTSET, SAME_UPPER, SAME_LOWER or VALID"),
}

#: op -> how far its ``axis`` may reach past the rank of input 0 (its output's rank is higher)
_AXIS_EXTRA = {"Flatten": 1, "OneHot": 1}

#: op -> its quantization parameters: (data input, scale input, zero-point input, axis),
#: axis None for per-tensor only, "axis" for the node's axis attribute (default 1)
_QPARAMS = {
    "QuantizeLinear": ((0, 1, 2, "axis"),),
    "DequantizeLinear": ((0, 1, 2, "axis"),),
    "QLinearConv": ((0, 1, 2, None), (3, 4, 5, 0), (None, 6, 7, None)),
    "QLinearMatMul": ((3, 4, 5, -1), (None, 6, 7, None)),
    "ConvInteger": ((0, None, 2, None), (1, None, 3, 0)),
    "MatMulInteger": ((1, None, 3, -1),),
}


def _check_values(node: Node, shape_of) -> None:
    for name, (ok, want) in _VALUES.items():
        if name in node.attrs:
            v = node.attrs[name]
            if not all(ok(x) for x in (v if isinstance(v, list) else [v])):
                fail(node, f"attribute {name!r} = {v!r} must be {want}")
    if "axis" in node.attrs and node.op_type not in _QPARAMS and node.inputs:
        shape = shape_of(node.inputs[0])
        if shape is not None:
            _axis(node, node.attrs["axis"], len(shape) + _AXIS_EXTRA.get(node.op_type, 0))
    if node.attrs.get("block_size"):
        return   # blocked quantization: the parameters have the data's rank (checked when run)
    for data, scale, zero_point, axis in _QPARAMS.get(node.op_type, ()):
        _check_qparams(node, shape_of, data, scale, zero_point, node.attrs.get("axis", 1) if axis == "axis" else axis)


def _axis(node: Node, axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        fail(node, f"axis {axis} is out of range for rank {rank}")
    return axis % rank


def _check_qparams(node: Node, shape_of, data: int | None, scale: int | None, zero_point: int, axis) -> None:
    """A scale or zero point given as a constant holds one value (per tensor) or, where
    ``axis`` allows it, is 1-D with one value per index of the data's ``axis``."""
    per_axis = [(k, shape) for k in (scale, zero_point) if k is not None and k < len(node.inputs) and node.inputs[k]
                and (shape := shape_of(node.inputs[k], const=True)) is not None and math.prod(shape) != 1]
    for k, shape in per_axis:
        if axis is None:
            fail(node, f"input {k} must hold one value (per-tensor quantization), got shape {shape}")
        if len(shape) != 1:
            fail(node, f"input {k} must hold one value or be 1-D (per-axis quantization), got shape {shape}")
    if len(per_axis) == 2 and per_axis[0][1] != per_axis[1][1]:
        fail(node, f"the scale and zero point (inputs {scale} and {zero_point}) have different lengths "
                   f"{per_axis[0][1][0]} and {per_axis[1][1][0]}")
    dims = shape_of(node.inputs[data]) if per_axis and data is not None and data < len(node.inputs) else None
    if dims is not None:
        dim = dims[_axis(node, axis, len(dims))]
        if isinstance(dim, int) and dim != per_axis[0][1][0]:
            fail(node, f"input {per_axis[0][0]} holds {per_axis[0][1][0]} values for axis {axis} of length {dim}")


def validate(graph: Graph) -> None:
    """ModelError naming the first node that is malformed (see the module docstring);
    the subgraphs of control-flow nodes are checked too."""
    declared = {v.name: v.shape for v in graph.inputs}

    def shape_of(name: str, const: bool = False):
        """The shape of a value when the model fixes it (a constant, a declared input)."""
        if name in graph.initializers:
            return graph.initializers[name].shape
        return None if const else declared.get(name)

    for node in graph.nodes:
        for _, body in node.subgraphs():
            validate(body)
        if node.domain:
            continue   # no ONNX schema: the backends' own checks apply
        schema = _schema(node.op_type, graph.opset)
        if schema is not None:
            _check_schema(node, schema)
            _check_values(node, shape_of)
