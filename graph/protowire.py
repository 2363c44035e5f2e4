"""A model file's weights left in the file: the ONNX protobuf walked at the wire level
(length-delimited fields, read with seek, never the whole file at once) so that each
initializer of the main graph whose data is ``raw_data`` becomes an *external data*
reference to its span in the model file itself. The model is then parsed without its
weights, and :mod:`graph.model` reads each weight straight into its array: loading a
90 MB model costs the weights once, not file bytes + parsed message + arrays (three
times, transiently).

Only what this needs is read: ModelProto field 7 (graph), GraphProto field 5
(initializer), TensorProto field 9 (raw_data); every other field is copied as it is.
Anything unusual (a second graph field, groups, a tensor already external or with two
raw_data fields, a length past the end) gives None: the caller parses the file whole,
as protobuf would.
"""
from __future__ import annotations

import io

#: raw_data shorter than this stays in the message (not worth a read of its own)
MIN_EXTERNAL_BYTES = 1024

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_GRAPH, _INITIALIZER, _RAW_DATA, _EXTERNAL_DATA, _DATA_LOCATION = 7, 5, 9, 13, 14


class _Odd(Exception):
    """The file is not the plain form this walk rewrites."""


def _varint(f) -> int | None:
    shift = value = 0
    while True:
        b = f.read(1)
        if not b:
            if shift:
                raise _Odd
            return None     # end of the message
        value |= (b[0] & 0x7F) << shift
        if b[0] < 0x80:
            return value
        shift += 7
        if shift > 63:
            raise _Odd


def _enc_varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _enc_varint(number << 3 | _LEN) + _enc_varint(len(payload)) + payload


def _fields(f, start: int, end: int):
    """(number, wire type, start of the payload, its length) of each field from ``start``
    to ``end``."""
    f.seek(start)
    while f.tell() < end:
        tag = _varint(f)
        if tag is None:
            raise _Odd
        number, wire = tag >> 3, tag & 7
        if wire == _VARINT:
            start = f.tell()
            _varint(f)
            yield number, wire, start, f.tell() - start
        elif wire in (_I64, _I32):
            start = f.tell()
            size = 8 if wire == _I64 else 4
            yield number, wire, start, size
            f.seek(start + size)
        elif wire == _LEN:
            size = _varint(f)
            start = f.tell()
            if size is None or start + size > end:
                raise _Odd
            yield number, wire, start, size
            f.seek(start + size)
        else:                # groups (deprecated) and reserved wire types
            raise _Odd
    if f.tell() != end:
        raise _Odd


def _raw(f, number, wire, start, size) -> bytes:
    """The field as it is in the file (tag, length, payload)."""
    f.seek(start)
    payload = f.read(size)
    if len(payload) != size:
        raise _Odd
    return _enc_varint(number << 3 | wire) + (_enc_varint(size) if wire == _LEN else b"") + payload


def _tensor(f, start, size, location: str) -> bytes:
    """An initializer's fields, its raw_data (when large) replaced by a reference to it."""
    kept, raw = [], []
    for number, wire, s, n in list(_fields(f, start, start + size)):
        if number in (_EXTERNAL_DATA, _DATA_LOCATION):
            raise _Odd       # already external: left to the whole parse
        if number == _RAW_DATA and wire == _LEN:
            raw.append((s, n))
            continue
        kept.append(_raw(f, number, wire, s, n))
    if len(raw) > 1:
        raise _Odd
    if not raw or raw[0][1] < MIN_EXTERNAL_BYTES:
        f.seek(start)
        return f.read(size)
    offset, length = raw[0]
    refs = b"".join(_field(_EXTERNAL_DATA, _field(1, key.encode()) + _field(2, value.encode()))
                    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))))
    return b"".join(kept) + refs + _enc_varint(_DATA_LOCATION << 3 | _VARINT) + _enc_varint(1)


def without_weights(f: io.BufferedIOBase, size: int, location: str) -> bytes | None:
    """The ModelProto in the open file ``f`` (``size`` bytes) re-encoded with each large
    raw_data of its main graph's initializers an external reference to ``location`` at
    that data's offset; None when the file is not in the plain form (see the module)."""
    try:
        out, graphs = [], 0
        for number, wire, start, n in list(_fields(f, 0, size)):
            if number != _GRAPH or wire != _LEN:
                out.append(_raw(f, number, wire, start, n))
                continue
            graphs += 1
            if graphs > 1:
                raise _Odd       # protobuf would merge them
            parts = []
            for gn, gw, gs, gsize in list(_fields(f, start, start + n)):
                if gn == _INITIALIZER and gw == _LEN:
                    parts.append(_field(_INITIALIZER, _tensor(f, gs, gsize, location)))
                else:
                    parts.append(_raw(f, gn, gw, gs, gsize))
            out.append(_field(_GRAPH, b"".join(parts)))
        return b"".join(out)
    except (_Odd, OSError, ValueError):
        return None
