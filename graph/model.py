"""Loading an ONNX model safely into the runner's Graph: path, bytes or ModelProto;
external data only from inside the model's folder; every defect a ModelError."""
from __future__ import annotations

import itertools
import os
import stat

import numpy as np

from .errors import ModelError
from .protowire import without_weights
from .ir import Graph, Node, ValueInfo, topological

MIN_OPSET = 13                  # the runner's operators are written to opset 13+ semantics
#: metadata key under which a converted model records its original opset (explain() says it)
CONVERTED_KEY = "qkernels.converted_from_opset"
MAX_ELEMENTS = 1 << 34          # a declared or stored tensor above this is refused (16 G elements)
MAX_MODEL_BYTES = (1 << 31) - 1   # protobuf cannot parse a message of 2 GiB (keep weights external)
MAX_DEPTH = 64                  # subgraphs nested deeper than this are refused (a ModelError, not a RecursionError)
#: bits per element of the element types numpy stores in a byte each but ONNX packs
_PACKED_BITS = {"int4": 4, "uint4": 4, "float4_e2m1fn": 4, "int2": 2, "uint2": 2, "float6_e2m3fn": 6,
                "float6_e3m2fn": 6}


def _onnx():
    try:
        import onnx
    except ImportError:   # pragma: no cover - onnx is a dependency of the graph runner
        raise ModelError("the graph runner needs the onnx package (pip install onnx)") from None
    return onnx


def load_model(model):
    """An onnx.ModelProto from a path, bytes or a ModelProto, external data loaded."""
    return _load(model, lazy=False)[0]


def load_graph(model) -> Graph:
    """The runner's Graph of a model (a path, bytes or a ModelProto): :func:`to_graph` of
    :func:`load_model`, but the weights of a model file are read from it straight into
    their arrays (:mod:`graph.protowire`), each once: never the whole file, its parsed
    message and the arrays at the same time."""
    proto, spans = _load(model, lazy=True)
    return to_graph(proto, spans)     # (an older opset's conversion leaves the weights out: upgrade_opset)


def _load(model, lazy: bool):
    """(proto, spans): ``spans`` maps the main graph's initializers left in their files
    (``lazy``, a model given by path) to (file, offset, length), checked; {} otherwise."""
    onnx = _onnx()
    from google.protobuf.message import DecodeError
    if isinstance(model, onnx.ModelProto):
        proto, base = model, None
    elif isinstance(model, (bytes, bytearray, memoryview)):
        proto, base = _parse(onnx, bytes(model), DecodeError), None
    elif isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        data = _read_regular(path, "model", stripped=lazy)
        proto, base = _parse(onnx, data, DecodeError), os.path.dirname(os.path.abspath(path))
    else:
        raise TypeError(f"model must be a path, bytes or onnx.ModelProto, got {type(model).__name__}")
    return proto, _load_external(onnx, proto, base, lazy)


def _read_regular(path: str, what: str, span: tuple[int, int] | None = None, into: np.ndarray | None = None,
                  stripped: bool = False, check: bool = False) -> bytes | None:
    """The bytes of the file ``path`` (``what`` names it in errors): all of them (at most
    MAX_MODEL_BYTES), or the ``span`` (offset, length), read into the uint8 array ``into``
    when given (then None is returned). ``stripped``: a model file with its weights left
    in it (:func:`protowire.without_weights`), when it has the plain form. Refused before
    reading anything: what is not a regular file (a FIFO would block, /dev/zero never
    ends, a folder), a file too large, a span past the end (``check``: only that, None)."""
    def regular(st):
        if not stat.S_ISREG(st.st_mode):
            raise ModelError(f"{what} {path!r} is not a regular file")
    try:
        regular(os.stat(path))
        # non-blocking, and checked again once open: a FIFO swapped in meanwhile cannot block
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
        with os.fdopen(os.open(path, flags), "rb") as f:
            st = os.fstat(f.fileno())
            regular(st)
            offset, length = span if span is not None else (0, st.st_size)
            if span is None and length > MAX_MODEL_BYTES:
                raise ModelError(f"{what} {path!r} is {length} bytes, over protobuf's 2 GiB limit "
                                 "(keep the weights in external data files)")
            if offset + length > st.st_size:
                raise ModelError(f"{what} {path!r} is {st.st_size} bytes; bytes {offset} to {offset + length} "
                                 "are asked for")
            if check:
                return None
            if stripped:
                data = without_weights(f, length, os.path.basename(path))
                if data is not None:
                    return data
            f.seek(offset)
            if into is not None:
                got = f.readinto(memoryview(into))
                if got != length:
                    raise ModelError(f"{what} {path!r} changed while being read")
                return None
            data = f.read(length)
    except ModelError:
        raise
    except (OSError, ValueError) as exc:   # ValueError: a NUL in the path
        raise ModelError(f"cannot read {what} {path!r}: {getattr(exc, 'strerror', None) or exc}") from None
    if len(data) != length:
        raise ModelError(f"{what} {path!r} changed while being read")
    return data


def _parse(onnx, data: bytes, decode_error):
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except (decode_error, ValueError, RuntimeError) as exc:
        raise ModelError(f"not a valid ONNX model (protobuf does not parse: {exc})") from None
    if not proto.HasField("graph"):
        raise ModelError("not a valid ONNX model: it has no graph (truncated or not ONNX)")
    return proto


def _load_external(onnx, proto, base: str | None, lazy: bool = False) -> dict:
    """Every tensor's external data checked (inside the model's folder, the length its
    dims take) and read into it; with ``lazy`` the main graph's initializers of a plain
    element type are left where they are: returned as name -> (file, offset, length)."""
    from onnx.external_data_helper import _get_all_tensors, uses_external_data
    spans, names = {}, [t.name for t in proto.graph.initializer]
    later = {t.name for t in proto.graph.initializer if uses_external_data(t) and names.count(t.name) == 1
             and _dtype(onnx, t.data_type) in _LAZY_DTYPES} if lazy else set()
    for tensor in _get_all_tensors(proto):
        if not uses_external_data(tensor):
            continue
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        if base is None:
            raise ModelError(f"tensor {tensor.name!r} keeps its data in external file {location!r}; "
                             "load the model from its path so the file can be found")
        if "\0" in location:
            raise ModelError(f"tensor {tensor.name!r}: external data path {location!r} holds a NUL byte")
        target = os.path.realpath(os.path.join(base, location))
        if os.path.isabs(location) or os.path.commonpath([target, os.path.realpath(base)]) != os.path.realpath(base):
            raise ModelError(f"tensor {tensor.name!r}: external data path {location!r} points outside the "
                             "model's folder (refused)")
        try:
            offset, length = int(info.get("offset", 0)), info.get("length")
            length = None if length is None else int(length)
        except ValueError:
            raise ModelError(f"tensor {tensor.name!r}: external data offset {info.get('offset')!r} and length "
                             f"{info.get('length')!r} must be integers") from None
        need = _stored_bytes(onnx, tensor)   # read exactly what the dims and type take
        if offset < 0 or length not in (None, need):
            raise ModelError(f"tensor {tensor.name!r}: external data at offset {offset}, length {length}, but "
                             f"its dims {list(tensor.dims)} take {need} bytes")
        if tensor.name in later and tensor.name not in spans:
            _read_regular(target, f"external data file of tensor {tensor.name!r}", (offset, need), check=True)
            spans[tensor.name] = (target, offset, need)
            continue
        _fill_raw(onnx, tensor, (target, offset, need))
    return spans


#: element types whose raw data is the array's own bytes (little-endian), read in place
_LAZY_DTYPES = frozenset(np.dtype(t) for t in (np.float32, np.float64, np.float16, np.int8, np.uint8, np.int16,
                                               np.uint16, np.int32, np.uint32, np.int64, np.uint64, np.bool_))


def _fill_raw(onnx, tensor, span) -> None:
    target, offset, need = span
    tensor.raw_data = _read_regular(target, f"external data file of tensor {tensor.name!r}", (offset, need))
    del tensor.external_data[:]
    tensor.data_location = onnx.TensorProto.DEFAULT


def _read_tensor(onnx, t, span) -> np.ndarray:
    """Initializer ``t``'s array read from its file span straight into 64-byte-aligned
    memory (the kernels' alignment: no copy later), read-only."""
    target, offset, need = span
    dtype = _dtype(onnx, t.data_type)
    n = _elements(t)
    raw = np.empty(need + 64, np.uint8)
    start = -raw.ctypes.data % 64
    buf = raw[start:start + need]
    _read_regular(target, f"external data file of tensor {t.name!r}", (offset, need), into=buf)
    arr = buf.view(dtype.newbyteorder("<")).astype(dtype, copy=False).reshape([int(d) for d in t.dims])
    if arr.size != n:
        raise ModelError(f"tensor {t.name!r} holds {arr.size} values for dims {list(t.dims)}")
    arr.flags.writeable = False
    return arr


def _dtype(onnx, elem_type: int):
    if not elem_type:
        return None
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, TypeError, ValueError):
        raise ModelError(f"unsupported tensor element type {elem_type}") from None


def _text(value, what: str) -> str:
    """A string field of the model: protobuf hands back bytes where it is not UTF-8."""
    if not isinstance(value, str):
        raise ModelError(f"{what} is not valid UTF-8 text: {value!r}")
    return value


def _value_info(onnx, vi) -> ValueInfo:
    _text(vi.name, "a graph input or output name")
    t = vi.type.tensor_type
    shape = None
    if t.HasField("shape"):
        # -1 is how some exporters (paddle2onnx, old PyTorch) write a dynamic dim: ORT reads it so too
        shape = tuple((None if d.dim_value == -1 else d.dim_value) if d.HasField("dim_value")
                      else (_text(d.dim_param, f"a dim of {vi.name!r}") or None) for d in t.shape.dim)
        known = [d for d in shape if isinstance(d, int)]
        if any(d < 0 for d in known) or int(np.prod(known, dtype=object)) > MAX_ELEMENTS:
            raise ModelError(f"{vi.name!r} declares shape {shape}, which is negative or too large")
    return ValueInfo(vi.name, _dtype(onnx, t.elem_type), shape)


def _elements(t) -> int:
    """The element count of TensorProto ``t``'s dims, when they are within the limits."""
    n = int(np.prod(list(t.dims), dtype=object)) if len(t.dims) else 1
    if any(d < 0 for d in t.dims) or n > MAX_ELEMENTS:
        raise ModelError(f"tensor {t.name!r} declares dims {list(t.dims)}, which are negative or too large")
    return n


def _stored_bytes(onnx, t) -> int:
    """The bytes TensorProto ``t``'s data takes in raw (and external) form."""
    dtype = _dtype(onnx, t.data_type)
    if dtype is None or dtype.kind == "O":
        raise ModelError(f"tensor {t.name!r}: element type {t.data_type} cannot be stored as raw data")
    bits = _PACKED_BITS.get(dtype.name, 8 * dtype.itemsize)
    return -(-_elements(t) * bits // 8)


def _tensor(onnx, t) -> np.ndarray:
    n = _elements(t)
    try:
        arr = onnx.numpy_helper.to_array(t)
    except Exception as exc:   # malformed tensors raise assorted errors inside onnx
        raise ModelError(f"tensor {t.name!r} is malformed: {exc}") from None
    if arr.size != n:
        raise ModelError(f"tensor {t.name!r} holds {arr.size} values for dims {list(t.dims)}")
    return arr


def _attrs(onnx, node, opset: int, depth: int) -> dict:
    out = {}
    for a in node.attribute:
        _text(a.name, f"an attribute name of node {node.name or node.op_type!r}")
        if a.type == onnx.AttributeProto.GRAPH:   # a control-flow body: our IR too
            out[a.name] = _graph(onnx, a.g, opset, depth + 1)
        elif a.type == onnx.AttributeProto.GRAPHS:
            out[a.name] = a   # kept raw: no operator we run takes a list of graphs
        elif a.type == onnx.AttributeProto.TENSOR:
            out[a.name] = _tensor(onnx, a.t)
        else:
            try:
                v = onnx.helper.get_attribute_value(a)
                out[a.name] = v.decode() if isinstance(v, bytes) else [x.decode() if isinstance(x, bytes) else x
                                                                       for x in v] \
                    if isinstance(v, list) and v and isinstance(v[0], bytes) else v
            except ValueError as exc:   # an undefined attribute type, a string that is not UTF-8
                raise ModelError(f"node {node.name or node.op_type!r}: attribute {a.name!r} is malformed: {exc}") \
                    from None
    return out


def default_opset(proto) -> int | None:
    """The version of the default ONNX domain that ``proto`` imports (None: none)."""
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)


def upgrade_opset(proto):
    """``proto`` itself when its default opset is MIN_OPSET or later, else its conversion
    by ``onnx.version_converter`` (a new model, with the original opset in its metadata
    under CONVERTED_KEY); a model the converter cannot convert is a ModelError."""
    out, aside, consts = _convert(proto)
    if out is not proto:
        out.graph.initializer.extend(aside)
        if consts:   # first: they read nothing, so the order stays topological
            nodes = consts + list(out.graph.node)
            del out.graph.node[:]
            out.graph.node.extend(nodes)
    return out


def _convert(proto):
    """(model, aside, consts): :func:`upgrade_opset`'s conversion less the main graph's
    large initializers (``aside``) and weight-holding Constant nodes (``consts``), which
    stay ``proto``'s own messages (merged by the caller: :func:`to_graph` reads them where
    they are, never a copy); ``(proto, [], [])`` when there is nothing to convert."""
    onnx = _onnx()
    opset = default_opset(proto)
    if opset is None:
        raise ModelError("the model imports no default-domain opset")
    if opset >= MIN_OPSET:
        return proto, [], []
    from onnx import version_converter
    # The converter copies the whole message several times (into its IR and back): the
    # main graph's large initializers (weights, or still in their file: data not read)
    # go around it as graph inputs of their type and shape and come back after (the
    # PaddleOCR recogniser's load peaked 84 MiB above its imports, for 10 MiB of weights).
    # The adapters read small constants only (shapes, axes, scales), which stay in.
    # Weights held by Constant nodes (PaddlePaddle's exports) go around it the same way.
    slim, aside, consts, added = onnx.ModelProto(), [], [], set()
    _copy_fields(proto, slim, ("graph",))
    _copy_fields(proto.graph, slim.graph, ("initializer", "node"))
    listed = {vi.name for vi in proto.graph.input}      # (old models list their weights as inputs too)

    def around(name, t):
        if name not in listed:
            added.add(name)
            slim.graph.input.append(onnx.helper.make_tensor_value_info(name, t.data_type, list(t.dims)))

    for t in proto.graph.initializer:
        if t.ByteSize() > _ASIDE_BYTES or not _has_data(t):
            aside.append(t)
            around(t.name, t)
        else:
            slim.graph.initializer.append(t)
    for node in proto.graph.node:
        value = _large_constant(node)
        if value is not None:
            consts.append(node)
            around(node.output[0], value)
        else:
            slim.graph.node.append(node)
    try:
        out = version_converter.convert_version(slim, MIN_OPSET)
    except Exception as exc:   # the converter raises assorted errors (RuntimeError, IndexError, ...)
        raise ModelError(f"converting opset {opset} to {MIN_OPSET} failed: {exc}") from None
    if added:
        kept = [vi for vi in out.graph.input if vi.name not in added]
        del out.graph.input[:]
        out.graph.input.extend(kept)
    onnx.helper.set_model_props(out, {**{p.key: p.value for p in proto.metadata_props}, CONVERTED_KEY: str(opset)})
    return out, aside, consts


#: initializers larger than this go around the opset converter (upgrade_opset)
_ASIDE_BYTES = 1024


def _has_data(t) -> bool:
    """Whether a TensorProto holds its values (not left in its file: graph.protowire reads those)."""
    return bool(t.raw_data) or not all(t.dims) or any(len(getattr(t, f)) for f in (
        "float_data", "int32_data", "string_data", "int64_data", "double_data", "uint64_data"))


def _large_constant(node):
    """The tensor of a default-domain Constant node holding one over _ASIDE_BYTES, else None."""
    if node.op_type != "Constant" or node.domain not in ("", "ai.onnx") or len(node.output) != 1:
        return None
    for a in node.attribute:
        if a.name == "value" and a.HasField("t") and a.t.ByteSize() > _ASIDE_BYTES:
            return a.t
    return None


def _copy_fields(src, dst, skip) -> None:
    """Every set field of message src into dst but those named in ``skip`` (repeated ones appended)."""
    for field, value in src.ListFields():
        if field.name in skip:
            continue
        if hasattr(value, "extend"):          # repeated (protobuf 6 dropped FieldDescriptor.label)
            getattr(dst, field.name).extend(value)
        elif hasattr(value, "CopyFrom"):      # a message
            getattr(dst, field.name).CopyFrom(value)
        else:
            setattr(dst, field.name, value)


def to_graph(proto, spans: dict | None = None) -> Graph:
    """The runner's Graph of a loaded ModelProto (checked: opset, types, order); a model
    of an older opset is converted to 13 first (:func:`upgrade_opset`). The subgraphs of
    control-flow nodes become Graphs too (see :func:`_graph`)."""
    onnx = _onnx()
    original = proto
    proto, aside, consts = _convert(proto)     # the weights stay in ``original``: read there
    graph = _graph(onnx, proto.graph, default_opset(proto), spans=spans or {}, aside=aside, consts=consts)
    graph.metadata = {p.key: p.value for p in proto.metadata_props}
    if proto is original:   # converted by an earlier tool (our quantizer keeps the key): not at this load
        graph.metadata.pop(CONVERTED_KEY, None)
    return graph


def _graph(onnx, g, opset: int, depth: int = 0, spans: dict | None = None, aside=(), consts=()) -> Graph:
    """The Graph of GraphProto ``g``, ``depth`` subgraphs down. A subgraph may read values
    of the graphs around it: those names are its ``outer`` list, and a node holding subgraphs gets
    their outer names as implicit inputs (:attr:`Node.implicit`), so that the graph
    around it orders, keeps alive and checks them like any input. ``aside`` and ``consts``:
    initializers and (first) nodes of the main graph that :func:`_convert` kept out of it."""
    sub = depth > 0
    if depth > MAX_DEPTH:
        raise ModelError(f"subgraphs are nested more than {MAX_DEPTH} deep")
    spans = spans or {}      # (the main graph's weights still in their file: read here)
    inits = {_text(t.name, "an initializer's name"): _read_tensor(onnx, t, spans[t.name]) if t.name in spans
             else _tensor(onnx, t) for t in itertools.chain(g.initializer, aside)}
    inputs = [_value_info(onnx, vi) for vi in g.input if vi.name not in inits]
    outputs = [_value_info(onnx, vi) for vi in g.output]
    if not outputs:
        raise ModelError(f"subgraph {g.name!r} has no outputs" if sub else "the graph has no outputs")
    nodes = []
    for k, n in enumerate(itertools.chain(consts, g.node)):
        op_type, domain = _text(n.op_type, f"node {k}'s op_type"), _text(n.domain, f"node {k}'s domain")
        node = Node(_text(n.name, f"node {k}'s name") or f"{op_type}_{k}", op_type,
                    "" if domain == "ai.onnx" else domain, [_text(i, f"an input of node {k}") for i in n.input],
                    [_text(o, f"an output of node {k}") for o in n.output], _attrs(onnx, n, opset, depth))
        free = list(dict.fromkeys(name for _, body in node.subgraphs() for name in body.outer))
        node.inputs += free
        node.implicit = tuple(free)
        nodes.append(node)
    taken = {n.name for n in nodes}
    seen: set[str] = set()
    for n in nodes:   # unique names: partitions and errors refer to them
        if n.name in seen:
            k = 2
            while f"{n.name}#{k}" in taken:
                k += 1
            n.name = f"{n.name}#{k}"
            taken.add(n.name)
        seen.add(n.name)
    local = set(inits) | {v.name for v in inputs}
    outer: list[str] = []
    if sub:   # what no node, input or initializer of the subgraph makes comes from around it
        made = local | {o for n in nodes for o in n.outputs if o}
        outer = list(dict.fromkeys(i for i in [*(i for n in nodes for i in n.inputs), *(o.name for o in outputs)]
                                   if i and i not in made))
    ordered = topological(nodes, local | set(outer))
    produced = {o for n in nodes for o in n.outputs} | local | set(outer)
    missing = [o.name for o in outputs if o.name not in produced]
    if missing:
        raise ModelError(f"graph output(s) {missing} are produced by no node")
    return Graph(ordered, inits, inputs, outputs, opset, g.name, outer=outer)
