"""The runner's own fused operators (domain ``qkernels``, made by the cpu backend's
rewrites, graph/rewrite.py): each the operators it fuses, one after the other, so the
reference gives exactly the unfused graph's values."""
from __future__ import annotations

import numpy as np

from .conv import CONV_ATTRS, check_auto_pad
from .ort_contrib import _qlinear_add
from .quantized import _qlinear_conv
from .registry import op

QK = "qkernels"


@op("QLinearConvAdd", domain=QK, attrs=CONV_ATTRS, check=check_auto_pad)
def _qlinear_conv_add(node, x, sx, zx, w, sw, zw, sy, zy, ts, tz, r, rs, rz, ys, yz=None, b=None):
    """QLinearConv (x ... zy, bias b), then com.microsoft QLinearAdd of its result (read
    with ts, tz) and r (rs, rz) into (ys, yz)."""
    t = _qlinear_conv(node, x, sx, zx, w, sw, zw, sy, zy, b)
    return _qlinear_add(node, t, ts, tz, r, rs, rz, ys, yz)


@op("TableLookup", domain=QK, attrs=())
def _table_lookup(node, x, table):
    """table[x] for int8/uint8 x (its byte as the index) and a 256-value table: a
    DequantizeLinear -> elementwise op -> QuantizeLinear chain made once (graph/rewrite.py)."""
    return np.asarray(table)[np.asarray(x).view(np.uint8)]
