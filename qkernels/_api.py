"""The public calls that take int8, fp16 and fp32 operands: each checks which one it
got and hands the call to the int8 path (qkernels._gemm, qkernels._conv) or the float
path (qkernels._float). Everything else is theirs: validation, packing, kernels.
"""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import _conv, _float, _gemm
from ._common import Activation, as_dtype, check_choice
from ._conv import PackedConvWeights
from ._conv_geometry import LAYOUTS, WEIGHT_LAYOUTS
from ._gemm import PackedWeights
from ._qtensor import QTensor


def _check_no_quant_keywords(op: str, x, out_scale, out_zero_point, out_dtype, requant) -> None:
    """Float calls take no quantization keywords (TypeError otherwise)."""
    dtype = np.asarray(x).dtype
    if out_scale is not None or not (out_zero_point is None or np.ndim(out_zero_point) == 0 and out_zero_point == 0) \
            or not (isinstance(requant, str) and requant == "fp32") or \
            (out_dtype is not None and as_dtype(out_dtype, "out_dtype") != dtype):
        raise TypeError(f"{op} on {dtype} operands returns {dtype} and takes no out_scale, out_zero_point, "
                        "requant or other out_dtype")


def pack_weights(b, bias: ArrayLike | None = None):
    """Pack weights for reuse: quantized ``b`` (QTensor (K, N), per tensor or per
    column) -> PackedWeights; a float16 / float32 array (K, N) -> PackedWeightsF16 / F32."""
    if isinstance(b, np.ndarray) and b.dtype in _float.PACKED:
        return _float.PACKED[b.dtype](b, bias)
    return _gemm.pack_weights(b, bias)


def pack_conv_weights(w, *, groups: int = 1, weight_layout: str = "OHWI", bias: ArrayLike | None = None):
    """Pack convolution weights once, for every later ``conv2d`` call: a QTensor (OHWI
    or OIHW, per tensor or per output channel) -> PackedConvWeights; a float16 or float32
    array -> float packed weights of its dtype."""
    if isinstance(w, np.ndarray) and w.dtype in _float.PACKED_CONV:
        return _float.PACKED_CONV[w.dtype](w, groups, weight_layout, bias)
    return PackedConvWeights(w, groups, weight_layout, bias)


def matmul(a: QTensor, b: QTensor | PackedWeights, *, bias: ArrayLike | None = None,
           out_scale: float | None = None, out_zero_point: int = 0, out_dtype: DTypeLike = None,
           activation: Activation = None, requant: str = "fp32",
           out: np.ndarray | None = None) -> QTensor | np.ndarray:
    """Quantized matrix product, like ``numpy.matmul`` on the real values.

    Parameters
    ----------
    a : QTensor, shape (..., M, K) or (K,), uint8 or int8, per-tensor parameters.
    b : QTensor (..., K, N) or (K,), int8 or uint8, per tensor or per column (last
        axis); or PackedWeights (K, N) from :func:`pack_weights`. Batch dimensions
        broadcast like ``numpy.matmul``.
    bias : int32 array (N,) at scale ``a.scale * b.scale`` (default: the bias given
        to :func:`pack_weights`, else none).
    out_scale, out_zero_point : output quantization; ``out_scale`` is required unless
        ``out_dtype`` is int32.
    out_dtype : np.uint8 or np.int8 (default: a's dtype), or np.int32 for the raw
        accumulators plus bias (ONNX MatMulInteger with bias).
    activation : None, "relu", "relu6" or (min, max) in real units, fused as a clamp.
    requant : "fp32" (ONNX QLinearMatMul: float32 multiply, round half to even),
        "fixedpoint" (int32 multiplier and shift, gemmlowp rounding: the final shift's
        ties away from zero) or "tflite" (the same with ties upward, as LiteRT's int8
        convolutions round on x86).
    out : optional C-contiguous output array of the result's shape and dtype, not
        overlapping an input (ValueError).

    Returns a QTensor (quantized output) or an int32 ndarray (``out_dtype=np.int32``).
    Inputs of any strides and alignment are read in place (no copy).

    fp16 and fp32: ``a`` and ``b`` float16 (float32) arrays, or ``b`` from ``pack_weights``
    of one, ``bias`` a float array (N,), ``activation`` as above; returns float16 (float32)
    (see docs/api.md, "fp16" and "fp32", for the accuracy contract). Quantization keywords
    do not apply.
    """
    if isinstance(a, QTensor):
        return _gemm.matmul(a, b, bias, out_scale, out_zero_point, out_dtype, activation, requant, out)
    if isinstance(b, (QTensor, PackedWeights)):
        raise TypeError(f"matmul: a is {type(a).__name__} but b is quantized; quantize a (QTensor) "
                        "or pass float16 or float32 arrays for both")
    _check_no_quant_keywords("matmul", b if isinstance(b, _float.PackedWeightsF16) else a, out_scale,
                             out_zero_point, out_dtype, requant)
    return _float.matmul(a, b, bias, activation, out)


def conv2d(x: QTensor, w: QTensor | PackedConvWeights, bias: ArrayLike | None = None, *, stride=1, padding=0,
           dilation=1, groups: int = 1, layout: str = "NHWC", weight_layout: str = "OHWI",
           out_scale: float | None = None, out_zero_point: int = 0, out_dtype: DTypeLike = None,
           activation: Activation = None, requant: str = "fp32", out: np.ndarray | None = None):
    """Quantized 2-D convolution (ONNX QLinearConv; ConvInteger with ``out_dtype=np.int32``).

    Parameters
    ----------
    x : QTensor (N, H, W, C) for ``layout="NHWC"`` or (N, C, H, W) for ``"NCHW"``;
        uint8/int8, per tensor. Any strides (an NCHW array is copied to NHWC once).
    w : QTensor (O, KH, KW, C/groups) for ``weight_layout="OHWI"`` or (O, C/groups, KH, KW)
        for ``"OIHW"``; int8/uint8, per tensor or per output channel (axis=0). Or
        PackedConvWeights from :func:`pack_conv_weights` (its groups and layout apply).
    bias : int32 (O,) at scale ``x.scale * w.scale`` (default: the packed bias, if any).
    stride, dilation : int or (sh, sw), at most MAX_GEOMETRY (2**31 - 1).
    padding : int, (ph, pw), (top, left, bottom, right) of at most MAX_GEOMETRY, "valid",
        "same" / "same_upper" or "same_lower" (ONNX auto_pad). Padded cells hold the
        input zero point.
    groups : channel groups (C and O divide by it).
    out_scale, out_zero_point, out_dtype, activation, requant : as :func:`qkernels.matmul`.
    out : optional C-contiguous output of the result's shape and dtype, not overlapping
        an input (ValueError).

    Returns a QTensor (N, OH, OW, O) — (N, O, OH, OW) for NCHW — or an int32 ndarray.

    fp16 and fp32: ``x`` a float16 (float32) array and ``w`` of the same dtype (or packed
    from one), ``bias`` a float array (O,), ``activation`` as above; returns ``x``'s dtype
    (accuracy: docs/api.md, "fp16" and "fp32").
    """
    if isinstance(x, QTensor):
        return _conv.conv2d(x, w, bias, stride, padding, dilation, groups, layout, weight_layout, out_scale,
                            out_zero_point, out_dtype, activation, requant, out)
    if isinstance(w, (QTensor, PackedConvWeights)):
        raise TypeError(f"conv2d: x is {type(x).__name__} but the weights are quantized; quantize x (QTensor) "
                        "or pass float16 or float32 arrays for both")
    _check_no_quant_keywords("conv2d", x, out_scale, out_zero_point, out_dtype, requant)
    return _float.conv2d(x, w, bias, stride, padding, dilation, groups, layout, weight_layout, activation, out)


def depthwise_conv2d(x: QTensor, w: QTensor | PackedConvWeights, bias: ArrayLike | None = None, *, stride=1,
                     padding=0, dilation=1, layout: str = "NHWC", weight_layout: str = "OHWI",
                     out_scale: float | None = None, out_zero_point: int = 0, out_dtype: DTypeLike = None,
                     activation: Activation = None, requant: str = "fp32", out: np.ndarray | None = None):
    """Quantized depthwise convolution: :func:`conv2d` with ``groups`` = input channels.

    ``w`` holds C * multiplier filters of one input channel each: a QTensor (O, KH, KW, 1)
    for ``weight_layout="OHWI"`` or (O, 1, KH, KW) for ``"OIHW"`` (PyTorch's depthwise
    layout), O = C * multiplier, output channel ``c * multiplier + j`` reading input
    channel ``c``; or PackedConvWeights packed with ``groups=C``. Everything else is as
    in :func:`conv2d`; the direct depthwise kernels run.
    """
    if not isinstance(x, (QTensor, np.ndarray)):
        raise TypeError(f"x must be a QTensor or a float16 or float32 array, got {type(x).__name__}")
    check_choice(layout, LAYOUTS, "layout")
    if x.ndim != 4:
        raise ValueError(f"x must be 4-D ({layout}), got shape {x.shape}")
    c = int(x.shape[3] if layout == "NHWC" else x.shape[1])
    if isinstance(w, (PackedConvWeights, _float.PackedConvWeightsF16)):
        if w.groups != c or w.cg != 1:
            raise ValueError(f"packed weights are not depthwise for {c} channels (groups={w.groups}, "
                             f"C/groups={w.cg}); pack them with groups=C")
    elif isinstance(w, (QTensor, np.ndarray)):
        check_choice(weight_layout, WEIGHT_LAYOUTS, "weight_layout")
        if w.ndim != 4 or w.shape[3 if weight_layout == "OHWI" else 1] != 1:
            raise ValueError(f"depthwise weights must be (O, KH, KW, 1) for OHWI or (O, 1, KH, KW) for OIHW, "
                             f"got shape {w.shape}")
    else:
        raise TypeError(f"w must be a QTensor, a float16 or float32 array or packed weights, got {type(w).__name__}")
    return conv2d(x, w, bias, stride=stride, padding=padding, dilation=dilation, groups=c, layout=layout,
                  weight_layout=weight_layout, out_scale=out_scale, out_zero_point=out_zero_point,
                  out_dtype=out_dtype, activation=activation, requant=requant, out=out)
