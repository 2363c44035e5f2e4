"""The ONNX quantized operators: QuantizeLinear/DequantizeLinear, DynamicQuantizeLinear,
MatMulInteger, QLinearMatMul, ConvInteger, QLinearConv; and the exact integer helpers
(accumulation, int32 wrap, requantization) the com.microsoft operators share."""
from __future__ import annotations

import numpy as np

from ...validate import fail
from .common import FLOAT_TYPES, QUANT_TYPES, TENSOR_TYPES, channel_shape, norm_axis, scalar, type_name, \
    wrap_int32
from .conv import CONV_ATTRS, check_auto_pad, convolve
from .registry import op


def _quant_param(v, x, axis, block_size, node):
    """A scale or zero point reshaped to broadcast against x: per tensor, per axis or
    blocked (repeated block_size times along axis)."""
    v = np.asarray(v)
    if v.size == 1 and not block_size:
        return v.reshape(())
    axis = norm_axis(node, axis, x.ndim)
    if block_size:
        if v.ndim != x.ndim:
            fail(node, f"blocked quantization needs a parameter of rank {x.ndim}, got shape {v.shape}")
        v = np.repeat(v, block_size, axis=axis)
        v = np.take(v, range(x.shape[axis]), axis=axis)
        if v.shape != x.shape:
            fail(node, f"blocked parameter shape does not match input {x.shape}")
        return v
    if v.ndim != 1 or v.shape[0] != x.shape[axis]:
        fail(node, f"per-axis parameter of shape {v.shape} does not match axis {axis} of {x.shape}")
    return v.reshape([-1 if i == axis else 1 for i in range(x.ndim)])


def saturate(y, dtype):
    info = np.iinfo(dtype)
    return np.clip(y, info.min, info.max).astype(dtype)


def _check_quantize(node, graph):
    od = node.attrs.get("output_dtype", 0)
    if od and (int(od) not in TENSOR_TYPES or TENSOR_TYPES[int(od)] not in QUANT_TYPES):
        return f"output_dtype {type_name(od)} not supported (uint8, int8, uint16, int16)"
    pr = node.attrs.get("precision", 0)
    if pr and (int(pr) not in TENSOR_TYPES or TENSOR_TYPES[int(pr)] not in FLOAT_TYPES):
        return f"precision {type_name(pr)} not supported"
    return _zero_point_check(node, graph, 2)


def _zero_point_check(node, graph, k):
    if graph is not None and len(node.inputs) > k and node.inputs[k] in graph.initializers:
        zp = graph.initializers[node.inputs[k]]
        if zp.dtype not in QUANT_TYPES and zp.dtype != np.int32:
            return f"zero point type {zp.dtype} not supported"
    return None


@op("QuantizeLinear", attrs=("axis", "block_size", "output_dtype", "precision", "saturate"),
    check=_check_quantize)
def _quantize_linear(node, x, scale, zero_point=None):
    if zero_point is not None:
        dtype = zero_point.dtype
    elif node.attrs.get("output_dtype"):
        dtype = TENSOR_TYPES[int(node.attrs["output_dtype"])]
    else:
        dtype = np.dtype(np.uint8)
    if dtype not in QUANT_TYPES:
        fail(node, f"quantizing to {dtype} is not supported (uint8, int8, uint16, int16)")
    axis, block = node.attrs.get("axis", 1), node.attrs.get("block_size", 0)
    s = _quant_param(scale, x, axis, block, node)
    # the division runs in `precision` when given, else in the scale's type (spec)
    pdt = TENSOR_TYPES[int(node.attrs["precision"])] if node.attrs.get("precision") else s.dtype
    q = np.rint(x.astype(pdt) / s.astype(pdt)).astype(np.float64)
    if zero_point is not None:
        q = q + _quant_param(zero_point, x, axis, block, node).astype(np.float64)
    return saturate(q, dtype)


def _check_dequantize(node, graph):
    od = node.attrs.get("output_dtype", 0)
    if od and (int(od) not in TENSOR_TYPES or TENSOR_TYPES[int(od)] not in FLOAT_TYPES):
        return f"output_dtype {type_name(od)} not supported (float16/32/64)"
    return _zero_point_check(node, graph, 2)


@op("DequantizeLinear", attrs=("axis", "block_size", "output_dtype"), check=_check_dequantize)
def _dequantize_linear(node, x, scale, zero_point=None):
    if x.dtype not in QUANT_TYPES and x.dtype != np.int32:
        fail(node, f"dequantizing {x.dtype} is not supported (uint8, int8, uint16, int16, int32)")
    axis, block = node.attrs.get("axis", 1), node.attrs.get("block_size", 0)
    s = _quant_param(scale, x, axis, block, node)
    d = x.astype(np.int64)
    if zero_point is not None:
        # (x - zero_point) in integers, then float32: ONNX Runtime's order (exact for
        # int32 inputs, where float32(x) - float32(zp) would round twice)
        d = d - _quant_param(zero_point, x, axis, block, node).astype(np.int64)
    out = TENSOR_TYPES[int(node.attrs["output_dtype"])] if node.attrs.get("output_dtype") else scale.dtype
    if s.dtype == np.float64:
        return (d.astype(np.float64) * s).astype(out)
    return (d.astype(np.float32) * s.astype(np.float32)).astype(out)


@op("DynamicQuantizeLinear")
def _dynamic_quantize_linear(node, x):
    if x.dtype != np.float32:
        fail(node, f"input must be float32, got {x.dtype}")
    hi = np.float32(max(0.0, float(np.max(x)) if x.size else 0.0))
    lo = np.float32(min(0.0, float(np.min(x)) if x.size else 0.0))
    # (max - min) / 255 in float32; ONNX Runtime uses 1.0 when max == min (all zeros),
    # where the specification's formula would divide by zero
    scale = np.float32(1.0) if hi == lo else np.float32((hi - lo) / np.float32(255))
    zp = np.rint(np.clip(np.float32(0) - lo / scale, 0, 255))
    y = saturate(np.rint(x / scale).astype(np.float64) + float(zp), np.uint8)
    return y, np.array(scale, np.float32), np.array(zp, np.uint8)


def requantize(acc, scale, zero_point, dtype):
    """saturate(rint(float32(int32 acc) * float32 scale) + zero_point)."""
    f = wrap_int32(acc).astype(np.float32) * np.asarray(scale, np.float32)
    return saturate(np.rint(f).astype(np.float64) + float(zero_point), dtype)


def zero_point_value(v) -> int:
    return 0 if v is None else int(scalar(v))


def exact_int_matmul(a, b):
    """Exact integer matmul of int64 operands whose products are below 2**17 in
    magnitude: float64 BLAS, every partial sum an exact integer below 2**53."""
    k = a.shape[-1]
    if k >= 1 << 36:
        return np.matmul(a, b)
    return np.matmul(a.astype(np.float64), b.astype(np.float64)).astype(np.int64)


def column_param(v):
    """A per-column parameter of B (scalar, or (N,)) broadcast against (..., M, N)."""
    v = np.asarray(v)
    return v.reshape(()) if v.size == 1 else v.reshape(-1)


def require_8bit(node, *arrays):
    for a in arrays:
        if a is not None and a.dtype not in (np.uint8, np.int8):
            fail(node, f"input type {a.dtype} not supported (uint8/int8)")


@op("MatMulInteger")
def _matmul_integer(node, a, b, a_zp=None, b_zp=None):
    require_8bit(node, a, b)
    a64, b64 = a.astype(np.int64), b.astype(np.int64)
    if a_zp is not None:
        za = np.asarray(a_zp, np.int64)
        a64 = a64 - (za.reshape(()) if za.size == 1 else za.reshape(-1, 1))   # per row (M,)
    if b_zp is not None:
        b64 = b64 - column_param(b_zp).astype(np.int64)
    return wrap_int32(exact_int_matmul(a64, b64))


@op("QLinearMatMul")
def _qlinear_matmul(node, a, sa, za, b, sb, zb, sy, zy):
    require_8bit(node, a, b, za, zb, zy)
    a64 = a.astype(np.int64) - zero_point_value(za)
    b64 = b.astype(np.int64) - (0 if zb is None else column_param(zb).astype(np.int64))
    acc = exact_int_matmul(a64, b64)
    # ONNX Runtime's float32 scale, in its order: (sa * sb) / sy
    scale = (np.float32(scalar(sa)) * column_param(sb).astype(np.float32)) / np.float32(scalar(sy))
    return requantize(acc, scale, zero_point_value(zy), a.dtype if zy is None else zy.dtype)


def _conv_integer_acc(node, x, zx, w, zw):
    """Exact int64 convolution of (x - zx) by (w - zw); padding holds zx (so adds 0)."""
    xs = x.astype(np.float64) - zero_point_value(zx)
    ws = w.astype(np.float64)
    if zw is not None:
        zw = np.asarray(zw, np.float64)
        ws = ws - (zw.reshape(()) if zw.size == 1 else zw.reshape((-1,) + (1,) * (w.ndim - 1)))
    # float64 holds the exact integers; products < 2**17, sums far below 2**53
    return convolve(node, xs, ws).astype(np.int64)


@op("ConvInteger", attrs=CONV_ATTRS, check=check_auto_pad)
def _conv_integer(node, x, w, x_zp=None, w_zp=None):
    require_8bit(node, x, w)
    return wrap_int32(_conv_integer_acc(node, x, x_zp, w, w_zp))


@op("QLinearConv", attrs=CONV_ATTRS, check=check_auto_pad)
def _qlinear_conv(node, x, sx, zx, w, sw, zw, sy, zy, b=None):
    require_8bit(node, x, w, zx, zw, zy)
    acc = _conv_integer_acc(node, x, zx, w, zw)
    if b is not None:
        acc = acc + channel_shape(acc, b).astype(np.int64)
    sw = np.asarray(sw, np.float32)
    scale = (np.float32(scalar(sx)) * sw.reshape(-1)) / np.float32(scalar(sy))
    scale = scale.reshape(()) if scale.size == 1 else channel_shape(acc, scale)
    return requantize(acc, scale, zero_point_value(zy), x.dtype if zy is None else zy.dtype)
