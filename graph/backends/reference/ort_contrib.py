"""com.microsoft operators (ONNX Runtime's contrib domain) that its quantizer writes."""
from __future__ import annotations

import functools
import itertools

import numpy as np

from ...validate import fail
from .common import all_checks, check_known, norm_axis, scalar, sigmoid, wrap_int32
from .conv import _pool_setup, check_auto_pad
from .quantized import _dynamic_quantize_linear, _matmul_integer, column_param, exact_int_matmul, requantize, \
    require_8bit, saturate, zero_point_value
from .registry import op

# As onnxruntime's quantizer writes them (docs/ContribOperators.md of onnxruntime).
# Where onnxruntime's exact arithmetic is a lookup table built by dequantize -> float32
# op -> quantize (QLinearSigmoid, QLinearLeakyRelu, QLinearConcat), the same steps here
# give the same table. QLinearAdd/QLinearMul are computed the same way: dequantize ->
# float32 op -> quantize (round half to even, saturate); onnxruntime's SIMD kernels fold
# the scales differently and can differ by one step on ties.

MS = "com.microsoft"


def _dequant(x, s, z):
    """float32 scale * (x - zero point), onnxruntime's lookup-table order."""
    return np.float32(scalar(s)) * (x.astype(np.int32) - zero_point_value(z)).astype(np.float32)


def _quant(f, s, z, dtype):
    q = np.rint(np.asarray(f, np.float32) / np.float32(scalar(s))).astype(np.float64)
    return saturate(q + zero_point_value(z), dtype)


@op("QLinearAdd", domain=MS)
def _qlinear_add(node, a, sa, za, b, sb, zb, sc, zc=None):
    require_8bit(node, a, b)
    return _quant(_dequant(a, sa, za) + _dequant(b, sb, zb), sc, zc, a.dtype)


@op("QLinearMul", domain=MS)
def _qlinear_mul(node, a, sa, za, b, sb, zb, sc, zc=None):
    require_8bit(node, a, b)
    return _quant(_dequant(a, sa, za) * _dequant(b, sb, zb), sc, zc, a.dtype)


@op("QLinearSigmoid", domain=MS)
def _qlinear_sigmoid(node, x, sx, zx, sy, zy=None):
    require_8bit(node, x)
    return _quant(sigmoid(_dequant(x, sx, zx)), sy, zy, x.dtype)


@op("QLinearLeakyRelu", domain=MS, attrs=("alpha",))
def _qlinear_leaky_relu(node, x, sx, zx, sy, zy=None):
    require_8bit(node, x)
    f = _dequant(x, sx, zx)
    return _quant(np.where(f >= 0, f, f * np.float32(node.attrs.get("alpha", 0.01))), sy, zy, x.dtype)


@op("QLinearConcat", domain=MS, attrs=("axis",))
def _qlinear_concat(node, sy, zy, *triples):
    if len(triples) % 3:
        fail(node, "inputs after Y_scale, Y_zero_point must be (X, X_scale, X_zero_point) triples")
    xs = triples[0::3]
    require_8bit(node, *xs)
    axis = norm_axis(node, node.attrs["axis"], xs[0].ndim)
    dtype = zy.dtype
    parts = []
    for x, s, z in zip(xs, triples[1::3], triples[2::3]):
        if float(scalar(s)) == float(scalar(sy)) and zero_point_value(z) == zero_point_value(zy):
            parts.append(x.astype(dtype))     # same quantization: copied (onnxruntime too)
        else:
            parts.append(_quant(_dequant(x, s, z), sy, zy, dtype))
    return np.concatenate(parts, axis=axis)


@op("QLinearGlobalAveragePool", domain=MS, attrs=("channels_last",),
    check=check_known(("channels_last", 0), (0, 1), "channels_last"))
def _qlinear_global_average_pool(node, x, sx, zx, sy, zy):
    # onnxruntime's MLAS (x86 and portable code): an exact int32 sum minus
    # zero_point * image_size, times the float32 scale x_scale / (y_scale * image_size),
    # rounded half to even, plus y_zero_point, saturated
    require_8bit(node, x)
    if x.ndim < 3:
        fail(node, f"input must have rank >= 3, got shape {x.shape}")
    last = bool(node.attrs.get("channels_last", 0))
    axes = tuple(range(1, x.ndim - 1)) if last else tuple(range(2, x.ndim))
    size = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    acc = np.sum(x.astype(np.int64), axis=axes, keepdims=True) - zero_point_value(zx) * size
    scale = np.float32(scalar(sx)) / (np.float32(scalar(sy)) * np.float32(size))
    return requantize(acc, scale, zero_point_value(zy), x.dtype)


def _grid(arrays):
    """1-D arrays reshaped to broadcast against each other along axes of their own
    (np.ix_, which reads boolean arrays as index lists)."""
    n = len(arrays)
    return [a.reshape([-1 if i == j else 1 for j in range(n)]) for i, a in enumerate(arrays)]


def ort_pool_geometry(node, xc):
    """(kernel, strides, begin, end, out) of onnxruntime's contrib pooling over (N, C, ...)
    ``xc``: ONNX's geometry, but SAME_UPPER / SAME_LOWER pads as onnxruntime computes them,
    ``(ceil(in / s) - 1) * s + k - in`` not clamped at 0 and halved with C's truncation
    (a stride past the kernel then shifts the windows, as onnxruntime does); VALID with
    ceil_mode keeps the last partial window as onnxruntime does. Explicit pads
    must be at least 0 and smaller than the kernel (onnxruntime refuses others)."""
    kernel, strides, _, begin, end, out = _pool_setup(node, xc)
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        for i, (n, s, k) in enumerate(zip(xc.shape[2:], strides, kernel)):
            need = (-(-n // s) - 1) * s + k - n
            half = need + 1 if auto_pad == "SAME_LOWER" else need
            begin[i] = int(np.trunc(half / 2))
            end[i] = need - begin[i]
    elif auto_pad == "VALID":
        if node.attrs.get("ceil_mode", 0):       # onnxruntime: VALID windows in ceil mode too
            for i, (n, s, k) in enumerate(zip(xc.shape[2:], strides, kernel)):
                o = -(-(n - k) // s) + 1
                out[i] = o - 1 if (o - 1) * s >= n else o
    elif any(p >= k or p < 0 for p, k in zip(begin + end, kernel + kernel)):
        fail(node, f"pads {begin + end} must be at least 0 and smaller than the kernel {kernel} (onnxruntime)")
    return kernel, strides, begin, end, out


@op("QLinearAveragePool", domain=MS,
    attrs=("auto_pad", "ceil_mode", "channels_last", "count_include_pad", "kernel_shape", "pads", "strides"),
    check=all_checks(check_auto_pad, check_known(("channels_last", 0), (0, 1), "channels_last")))
def _qlinear_average_pool(node, x, sx, zx, sy, zy=None):
    # onnxruntime's contrib kernel (qlinear_pool.cc): each tap dequantized to float32
    # (x_scale * (x - zx)), the taps inside X (no dilations) summed in float32 in window
    # order, divided by the float32 count (the whole kernel with count_include_pad, else
    # the taps inside X: onnxruntime's rule, not AveragePool's), then
    # nearbyintf(v / y_scale + y_zero_point) saturated. A kernel covering the whole
    # unpadded image is its global average pool (the integer arithmetic above).
    require_8bit(node, x)
    if x.ndim < 3:
        fail(node, f"input must have rank >= 3, got shape {x.shape}")
    last = bool(node.attrs.get("channels_last", 0))
    xc = np.moveaxis(x, -1, 1) if last else x
    kernel, strides, begin, end, out = ort_pool_geometry(node, xc)
    sp = xc.shape[2:]
    axes = tuple(range(2, xc.ndim))
    zxv, zyv = zero_point_value(zx), zero_point_value(zy)
    if list(sp) == list(kernel) and not any(begin + end):
        size = int(np.prod(sp, dtype=np.int64))
        acc = np.sum(xc.astype(np.int64), axis=axes, keepdims=True) - zxv * size
        y = requantize(acc, np.float32(scalar(sx)) / (np.float32(scalar(sy)) * np.float32(size)), zyv, x.dtype)
    else:
        f = np.float32(scalar(sx)) * (xc.astype(np.int32) - zxv).astype(np.float32)
        starts = [np.arange(o) * s - b for o, s, b in zip(out, strides, begin)]
        total = np.zeros(xc.shape[:2] + tuple(out), np.float32)
        for offs in itertools.product(*[range(k) for k in kernel]):   # window order; +0.0 for taps outside X
            pos = [st + o for st, o in zip(starts, offs)]
            inside = functools.reduce(np.logical_and, _grid([(p >= 0) & (p < n) for p, n in zip(pos, sp)]))
            tap = f[(slice(None), slice(None)) + np.ix_(*[np.clip(p, 0, n - 1) for p, n in zip(pos, sp)])]
            total += np.where(inside, tap, np.float32(0))
        if node.attrs.get("count_include_pad", 0):
            count = np.float32(np.prod(kernel, dtype=np.int64))
        else:
            spans = [np.minimum(st + k, n) - np.maximum(st, 0) for st, k, n in zip(starts, kernel, sp)]
            count = functools.reduce(np.multiply, _grid(spans)).astype(np.float32)
        v = (total / count) / np.float32(scalar(sy)) + np.float32(zyv)
        r = np.rint(v.astype(np.float32))
        info = np.iinfo(x.dtype)
        y = np.where(np.isnan(r), info.min, np.clip(np.nan_to_num(r), info.min, info.max)).astype(x.dtype)
    return np.moveaxis(y, 1, -1) if last else y


@op("QGemm", domain=MS, attrs=("alpha", "transA", "transB"))
def _qgemm(node, a, sa, za, b, sb, zb, c=None, sy=None, zy=None):
    # onnxruntime: int32 acc = (A - za)(B - zb) + C; scale = alpha * sa * sb[n] (float32,
    # in that order), / y_scale when the output is quantized; float output = acc * scale
    require_8bit(node, a, b)
    if node.attrs.get("transA", 0):
        a = a.T
    if node.attrs.get("transB", 0):
        b = b.T
    if a.ndim != 2 or b.ndim != 2:
        fail(node, f"QGemm needs 2-D A and B, got {a.shape} and {b.shape}")
    acc = exact_int_matmul(a.astype(np.int64) - zero_point_value(za),
                           b.astype(np.int64) - column_param(zb).astype(np.int64))
    if c is not None:
        acc = acc + c.astype(np.int64)
    scale = np.float32(node.attrs.get("alpha", 1.0)) * np.float32(scalar(sa)) * column_param(sb).astype(np.float32)
    if sy is None:
        return wrap_int32(acc).astype(np.float32) * scale
    scale = scale / np.float32(scalar(sy))
    return requantize(acc, scale, zero_point_value(zy), np.dtype(np.uint8) if zy is None else zy.dtype)


def _int_to_float(acc, sa, sb, bias):
    """ONNX Runtime's quantize_dynamic steps after MatMulInteger: Cast to float32, times
    float32(a_scale * b_scale) (per column or per tensor), plus the bias: one float32
    rounding each, the order the unfused graph takes (graph/rewrite.py fuses it). ``sa``:
    one scale, or one per row (keepdims: qkernels' per-row DynamicQuantizeMatMul)."""
    sa = np.asarray(sa, np.float32)
    y = acc.astype(np.float32) * ((sa.reshape(()) if sa.size == 1 else sa) * column_param(sb).astype(np.float32))
    return y if bias is None else y + np.asarray(bias, np.float32)


@op("MatMulIntegerToFloat", domain=MS)
def _matmul_integer_to_float(node, a, b, sa, sb, za=None, zb=None, bias=None):
    """float32(MatMulInteger(a, b, za, zb)) * (sa * sb) + bias; a per tensor."""
    require_8bit(node, a, b, za, zb)
    if np.size(sa) != 1 or (za is not None and np.size(za) != 1):
        fail(node, "a_scale and a_zero_point must be scalars")
    return _int_to_float(_matmul_integer(node, a, b, za, zb), sa, sb, bias)


@op("DynamicQuantizeMatMul", domain=MS)
def _dynamic_quantize_matmul(node, a, b, sb, zb=None, bias=None):
    """a quantized by DynamicQuantizeLinear (uint8, per tensor), then as
    MatMulIntegerToFloat: quantize_dynamic's DynamicQuantizeLinear -> MatMulInteger ->
    Cast -> Mul -> Add chain in one operator."""
    require_8bit(node, b, zb)
    q, sa, za = _dynamic_quantize_linear(node, a)
    return _int_to_float(_matmul_integer(node, q, b, za, zb), sa, sb, bias)
