"""Cast and CastLike."""
from __future__ import annotations

import numpy as np

from ...validate import fail
from .common import TENSOR_TYPES, type_name
from .registry import op


def _check_cast(node, graph):
    to = node.attrs.get("to")
    if to is None:
        return "attribute 'to' is required"
    if int(to) not in TENSOR_TYPES:
        return f"cast to {type_name(to)} not supported"
    return None


def _cast_to(node, x, dtype):
    for t, what in ((x.dtype, "from"), (dtype, "to")):
        if t == object or t.kind in "SUV" or t not in TENSOR_TYPES.values():
            fail(node, f"cast {what} {t} not supported")
    if dtype.kind in "iu" and x.dtype.kind == "f":
        # float -> int truncates toward zero (C); NaN and out-of-range values are
        # undefined in ONNX: give 0 for NaN instead of numpy's platform value
        x = np.where(np.isnan(x), 0, np.trunc(x))
        if dtype.itemsize < 8 or dtype.kind == "u":
            return x.astype(np.float64).astype(np.int64).astype(dtype)
    return x.astype(dtype)


@op("Cast", attrs=("to", "saturate", "round_mode"), check=_check_cast)
def _cast(node, x):
    # saturate and round_mode apply to float8 targets only, which are refused
    return _cast_to(node, x, TENSOR_TYPES[int(node.attrs["to"])])


@op("CastLike", attrs=("saturate", "round_mode"))
def _cast_like(node, x, like):
    return _cast_to(node, x, like.dtype)
