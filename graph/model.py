"""Loading an ONNX model safely into the runner's Graph: path, bytes or ModelProto;
external data only from inside the model's folder; every defect a ModelError."""
from __future__ import annotations

import os

import numpy as np

from .errors import ModelError
from .ir import Graph, Node, ValueInfo, topological

MIN_OPSET = 13
MAX_ELEMENTS = 1 << 34          # a declared or stored tensor above this is refused (16 G elements)


def _onnx():
    try:
        import onnx
    except ImportError:   # pragma: no cover - onnx is a dependency of the graph runner
        raise ModelError("the graph runner needs the onnx package (pip install onnx)") from None
    return onnx


def load_model(model):
    """An onnx.ModelProto from a path, bytes or a ModelProto, external data loaded."""
    onnx = _onnx()
    from google.protobuf.message import DecodeError
    if isinstance(model, onnx.ModelProto):
        proto, base = model, None
    elif isinstance(model, (bytes, bytearray, memoryview)):
        proto, base = _parse(onnx, bytes(model), DecodeError), None
    elif isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise ModelError(f"cannot read model {path!r}: {exc.strerror or exc}") from None
        proto, base = _parse(onnx, data, DecodeError), os.path.dirname(os.path.abspath(path))
    else:
        raise TypeError(f"model must be a path, bytes or onnx.ModelProto, got {type(model).__name__}")
    _load_external(onnx, proto, base)
    return proto


def _parse(onnx, data: bytes, decode_error):
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except (decode_error, ValueError, RuntimeError) as exc:
        raise ModelError(f"not a valid ONNX model (protobuf does not parse: {exc})") from None
    if not proto.HasField("graph"):
        raise ModelError("not a valid ONNX model: it has no graph (truncated or not ONNX)")
    return proto


def _load_external(onnx, proto, base: str | None) -> None:
    from onnx.external_data_helper import _get_all_tensors, uses_external_data
    for tensor in _get_all_tensors(proto):
        if not uses_external_data(tensor):
            continue
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        if base is None:
            raise ModelError(f"tensor {tensor.name!r} keeps its data in external file {location!r}; "
                             "load the model from its path so the file can be found")
        target = os.path.realpath(os.path.join(base, location))
        if os.path.isabs(location) or os.path.commonpath([target, os.path.realpath(base)]) != os.path.realpath(base):
            raise ModelError(f"tensor {tensor.name!r}: external data path {location!r} points outside the "
                             "model's folder (refused)")
        try:
            offset, length = int(info.get("offset", 0)), info.get("length")
            with open(target, "rb") as f:
                f.seek(offset)
                data = f.read(int(length)) if length is not None else f.read()
        except (OSError, ValueError) as exc:
            raise ModelError(f"tensor {tensor.name!r}: cannot read external data {location!r}: {exc}") from None
        tensor.raw_data = data
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.DEFAULT


def _dtype(onnx, elem_type: int):
    if not elem_type:
        return None
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, TypeError, ValueError):
        raise ModelError(f"unsupported tensor element type {elem_type}") from None


def _value_info(onnx, vi) -> ValueInfo:
    t = vi.type.tensor_type
    shape = None
    if t.HasField("shape"):
        shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim)
        known = [d for d in shape if isinstance(d, int)]
        if any(d < 0 for d in known) or int(np.prod(known, dtype=object)) > MAX_ELEMENTS:
            raise ModelError(f"{vi.name!r} declares shape {shape}, which is negative or too large")
    return ValueInfo(vi.name, _dtype(onnx, t.elem_type), shape)


def _tensor(onnx, t) -> np.ndarray:
    n = int(np.prod(list(t.dims), dtype=object)) if len(t.dims) else 1
    if any(d < 0 for d in t.dims) or n > MAX_ELEMENTS:
        raise ModelError(f"tensor {t.name!r} declares dims {list(t.dims)}, which are negative or too large")
    try:
        arr = onnx.numpy_helper.to_array(t)
    except Exception as exc:   # malformed tensors raise assorted errors inside onnx
        raise ModelError(f"tensor {t.name!r} is malformed: {exc}") from None
    if arr.size != n:
        raise ModelError(f"tensor {t.name!r} holds {arr.size} values for dims {list(t.dims)}")
    return arr


def _attrs(onnx, node) -> dict:
    out = {}
    for a in node.attribute:
        if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
            out[a.name] = a   # kept raw: only ops with subgraphs read it (none are supported yet)
        elif a.type == onnx.AttributeProto.TENSOR:
            out[a.name] = _tensor(onnx, a.t)
        else:
            v = onnx.helper.get_attribute_value(a)
            out[a.name] = v.decode() if isinstance(v, bytes) else [x.decode() if isinstance(x, bytes) else x for x in v] \
                if isinstance(v, list) and v and isinstance(v[0], bytes) else v
    return out


def to_graph(proto) -> Graph:
    """The runner's Graph of a loaded ModelProto (checked: opset, types, order)."""
    onnx = _onnx()
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:
        raise ModelError("the model imports no default-domain opset")
    if opset < MIN_OPSET:
        raise ModelError(f"opset {opset} is older than {MIN_OPSET}, the oldest this runner supports "
                         "(convert it with onnx.version_converter)")
    g = proto.graph
    inits = {t.name: _tensor(onnx, t) for t in g.initializer}
    inputs = [_value_info(onnx, vi) for vi in g.input if vi.name not in inits]
    outputs = [_value_info(onnx, vi) for vi in g.output]
    if not outputs:
        raise ModelError("the graph has no outputs")
    nodes = [Node(n.name or f"{n.op_type}_{k}", n.op_type, "" if n.domain == "ai.onnx" else n.domain,
                  list(n.input), list(n.output), _attrs(onnx, n)) for k, n in enumerate(g.node)]
    names = [n.name for n in nodes]
    if len(set(names)) != len(names):   # unique names: partitions and errors refer to them
        seen: dict[str, int] = {}
        for n in nodes:
            seen[n.name] = seen.get(n.name, 0) + 1
            if seen[n.name] > 1:
                n.name = f"{n.name}#{seen[n.name]}"
    ordered = topological(nodes, set(inits) | {v.name for v in inputs})
    produced = {o for n in nodes for o in n.outputs} | set(inits) | {v.name for v in inputs}
    missing = [o.name for o in outputs if o.name not in produced]
    if missing:
        raise ModelError(f"graph output(s) {missing} are produced by no node")
    return Graph(ordered, inits, inputs, outputs, opset, g.name, {p.key: p.value for p in proto.metadata_props})
