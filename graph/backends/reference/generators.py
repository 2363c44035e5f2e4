"""Operators that make a tensor from attributes or a shape: Constant, ConstantOfShape,
Range, EyeLike."""
from __future__ import annotations

import numpy as np

from ...validate import check_size
from .common import TENSOR_TYPES, compute_dtype, ints, scalar, type_name
from .registry import op


@op("Constant", attrs=("value", "value_float", "value_floats", "value_int", "value_ints", "value_string",
                       "value_strings", "sparse_value"),
    check=lambda node, graph: "sparse_value is not supported" if "sparse_value" in node.attrs else
    (None if len(node.attrs) == 1 else "exactly one value attribute is required"))
def _constant(node):
    (name, v), = node.attrs.items()
    if name == "value":
        return np.array(v)
    if name == "value_float":
        return np.array(v, np.float32)
    if name == "value_floats":
        return np.array(v, np.float32).reshape(-1)
    if name == "value_int":
        return np.array(v, np.int64)
    if name == "value_ints":
        return np.array(v, np.int64).reshape(-1)
    if name == "value_string":
        return np.array(v.decode() if isinstance(v, bytes) else v, dtype=object)
    return np.array([s.decode() if isinstance(s, bytes) else s for s in v], dtype=object)


@op("ConstantOfShape", attrs=("value",))
def _constant_of_shape(node, shape):
    value = node.attrs.get("value")
    value = np.zeros(1, np.float32) if value is None else np.asarray(value).reshape(-1)
    return np.full(check_size(ints(shape), node), value[0], dtype=value.dtype)


@op("Range", attrs=("stash_type",))
def _range(node, start, limit, delta):
    dtype = start.dtype
    s, l, d = (scalar(v).astype(compute_dtype(dtype)) for v in (start, limit, delta))
    n = max(int(np.ceil((float(l) - float(s)) / float(d))), 0) if dtype.kind == "f" else \
        max(-(-(int(l) - int(s)) // int(d)), 0)
    check_size([n], node)
    if dtype.kind == "f":
        return (s + np.arange(n, dtype=s.dtype) * d).astype(dtype)
    return (int(s) + np.arange(n, dtype=np.int64) * int(d)).astype(dtype)


@op("EyeLike", attrs=("dtype", "k"),
    check=lambda node, graph: None if node.attrs.get("dtype") is None or int(node.attrs["dtype"]) in TENSOR_TYPES
    else f"dtype {type_name(node.attrs['dtype'])} not supported")
def _eye_like(node, x):
    dtype = TENSOR_TYPES[int(node.attrs["dtype"])] if node.attrs.get("dtype") is not None else x.dtype
    return np.eye(x.shape[0], x.shape[1], k=node.attrs.get("k", 0), dtype=dtype)
