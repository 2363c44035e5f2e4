"""The runner's own operators (domain ``qkernels``): the fused ones the cpu backend's
rewrites make (graph/rewrite.py), each the operators it fuses, one after the other, so the
reference gives exactly the unfused graph's values; and ``DynamicQuantizeMatMul`` with
activations quantized per row, which qkernels' quantizer writes (no ONNX operator
quantizes per row at run time)."""
from __future__ import annotations

import numpy as np

from ...ir import Node
from .conv import CONV_ATTRS, _conv_transpose, check_auto_pad
from .ort_contrib import _dynamic_quantize_matmul, _int_to_float, _qlinear_add
from .common import fail, wrap_int32
from .quantized import _qlinear_conv, column_param, exact_int_matmul, require_8bit, saturate
from .registry import op

QK = "qkernels"


@op("QLinearConvAdd", domain=QK, attrs=CONV_ATTRS, check=check_auto_pad)
def _qlinear_conv_add(node, x, sx, zx, w, sw, zw, sy, zy, ts, tz, r, rs, rz, ys, yz=None, b=None):
    """QLinearConv (x ... zy, bias b), then com.microsoft QLinearAdd of its result (read
    with ts, tz) and r (rs, rz) into (ys, yz)."""
    t = _qlinear_conv(node, x, sx, zx, w, sw, zw, sy, zy, b)
    return _qlinear_add(node, t, ts, tz, r, rs, rz, ys, yz)


def _check_fused_conv_transpose(node, graph=None):
    act, params = node.attrs.get("activation"), list(node.attrs.get("activation_params", ()))
    if act not in ("Relu", "Clip") or (act == "Clip" and len(params) != 2):
        return "activation must be Relu or Clip (with activation_params [min, max])"
    return check_auto_pad(node, graph)


@op("FusedConvTranspose", domain=QK, attrs=CONV_ATTRS + ("output_padding", "output_shape", "activation",
                                                         "activation_params"), check=_check_fused_conv_transpose)
def _fused_conv_transpose(node, x, w, b=None):
    """ConvTranspose, then Relu or Clip(min, max) (graph/rewrite.py: fuse_activations)."""
    y = _conv_transpose(node, x, w, b)
    if node.attrs["activation"] == "Relu":
        return np.maximum(y, y.dtype.type(0))
    lo, hi = (y.dtype.type(v) for v in node.attrs["activation_params"])
    return np.minimum(np.maximum(y, lo), hi)


@op("TableLookup", domain=QK, attrs=())
def _table_lookup(node, x, table):
    """table[x] for int8/uint8 x (its byte as the index) and a 256-value table, or
    table[c, x] for a (C, 256) table and x's channel c (axis 1): a DequantizeLinear ->
    elementwise op -> QuantizeLinear chain made once (graph/rewrite.py)."""
    x, table = np.asarray(x), np.asarray(table)
    if table.ndim == 1:
        return table[x.view(np.uint8)]
    if x.ndim < 2 or x.shape[1] != table.shape[0]:
        raise ValueError(f"a table per channel: {table.shape[0]} tables for an input of shape {x.shape}")
    channel = np.arange(table.shape[0]).reshape((1, -1) + (1,) * (x.ndim - 2))
    return table[channel, x.view(np.uint8)]


def _check_gelu_matmul(node, graph=None):
    if node.attrs.get("activation") != "Gelu":
        return "activation must be Gelu"
    if node.attrs.get("approximate", "none") not in ("none", "tanh"):
        return "approximate must be none or tanh"
    return None


@op("MatMulGelu", domain=QK, attrs=("activation", "approximate"), check=_check_gelu_matmul)
def _matmul_gelu(node, a, w, b=None):
    """MatMul(a, w), Add(·, b) when b is given, then ONNX Gelu (``approximate``): a float
    Linear layer and its GELU (graph/rewrite.py fuse_linear_gelu)."""
    from .registry import OPS
    y = np.matmul(a, w)
    if b is not None:
        y = np.add(y, b).astype(y.dtype, copy=False)
    gelu = Node("gelu", "Gelu", "", ["y"], ["z"], {"approximate": node.attrs.get("approximate", "none")})
    return OPS["Gelu"](gelu, y)


@op("MatMulBias", domain=QK)
def _matmul_bias(node, a, w, b, r=None):
    """MatMul(a, w), Add(·, b), then Add(·, r) when r is given: a float Linear layer, and
    the residual after it (graph/rewrite.py fuse_linear_bias)."""
    y = np.matmul(a, w)
    y = np.add(y, b).astype(y.dtype, copy=False)
    return np.add(y, r).astype(y.dtype, copy=False) if r is not None else y


@op("MaskedSoftmax", domain=QK, attrs=("scale", "div"))
def _masked_softmax(node, x, mask):
    """Softmax(axis=-1) of Add(Div(x, scale), mask) (Mul(x, scale) when div is 0): the
    scores, scaling and additive mask of attention (graph/rewrite.py fuse_attention_softmax)."""
    from .registry import OPS
    s = x.dtype.type(node.attrs.get("scale", 1.0))
    t = np.divide(x, s) if node.attrs.get("div", 0) else np.multiply(x, s)
    t = np.add(t, mask).astype(x.dtype, copy=False)
    return OPS["Softmax"](Node("softmax", "Softmax", "", ["t"], ["y"], {"axis": -1}), t)


@op("TransposedMatMul", domain=QK, attrs=("perm_a", "perm_b", "perm_y"))
def _transposed_matmul(node, a, b):
    """Transpose(MatMul(Transpose(a, perm_a), Transpose(b, perm_b)), perm_y), an omitted
    perm: no Transpose (attention's heads; graph/rewrite.py fuse_transpose_matmul)."""
    pa, pb, py = (node.attrs.get(k) for k in ("perm_a", "perm_b", "perm_y"))
    a = np.transpose(a, pa) if pa else a
    b = np.transpose(b, pb) if pb else b
    y = np.matmul(a, b)
    return np.ascontiguousarray(np.transpose(y, py)) if py else y


def _check_per_row(node, graph=None):
    return None if node.attrs.get("per_row", 0) in (0, 1) else "per_row must be 0 or 1"


@op("DynamicQuantizeMatMul", domain=QK, attrs=("per_row",), check=_check_per_row)
def _dynamic_quantize_matmul_rows(node, a, b, sb, zb=None, bias=None):
    """com.microsoft DynamicQuantizeMatMul (a quantized to uint8 by DynamicQuantizeLinear's
    formula, the exact int8 product, times float32(a_scale * b_scale) plus bias), with
    ``per_row=1`` each row of ``a`` (its last axis) quantized with a scale and zero point
    of its own: finer where a few tokens carry outliers (qkernels.quant's
    ``dynamic_rows``). The same float32 steps row by row."""
    if not node.attrs.get("per_row", 0):
        return _dynamic_quantize_matmul(node, a, b, sb, zb, bias)
    if a.dtype != np.float32 or a.ndim < 1:
        fail(node, f"input must be float32 with at least one dimension, got {a.dtype} {a.shape}")
    hi = a.max(-1, keepdims=True, initial=np.float32(0))       # max(0, row max); 0 for no values
    lo = a.min(-1, keepdims=True, initial=np.float32(0))
    # DynamicQuantizeLinear's steps per row (scale 1 for an all-zero row, as ONNX Runtime)
    scale = np.where(hi == lo, np.float32(1), (hi - lo) / np.float32(255)).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        zp = np.rint(np.clip(np.float32(0) - lo / scale, 0, 255))
        q = saturate(np.rint(a / scale).astype(np.float64) + zp, np.uint8)
    require_8bit(node, b, zb)
    b64 = b.astype(np.int64) - (0 if zb is None else column_param(zb).astype(np.int64))
    return _int_to_float(wrap_int32(exact_int_matmul(q.astype(np.int64) - zp.astype(np.int64), b64)), scale, sb, bias)
