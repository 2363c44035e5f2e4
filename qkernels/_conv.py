"""int8 convolution as a GEMM over the implicit patch matrix (im2col, gathered on
the fly panel by panel, never materialised), on the same kernels as ``matmul``.

NHWC inside (an NCHW input is copied to NHWC once); weights OHWI or
OIHW, per tensor or per output channel; ONNX QLinearConv / ConvInteger semantics,
with padding that reads the input zero point.
"""
from __future__ import annotations

import numbers

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import _dispatch, _f16, _native
from ._gemm import (Activation, PackedWeights, _check_bias, _check_out, _check_size, _gemm2d, _plan_for,
                    _result_params, check_f16_call, output_spec, requant_terms, rows_view)
from ._qtensor import QTensor, check_choice
from ._qtensor import check_no_overlap as _check_no_overlap

_LAYOUTS = ("NHWC", "NCHW")
_WEIGHT_LAYOUTS = ("OHWI", "OIHW")
# The largest stride, dilation or padding accepted: no real convolution comes near it, and
# below it every index the C kernels compute (padded extent, tap offset) fits 64 bits.
MAX_GEOMETRY = 2**31 - 1


def _pair(v, name: str) -> tuple[int, int]:
    vals = (v, v) if isinstance(v, numbers.Integral) else tuple(v) if isinstance(v, (tuple, list)) else None
    if vals is None or len(vals) != 2 or not all(isinstance(x, numbers.Integral) and not isinstance(x, bool)
                                                   for x in vals):
        raise TypeError(f"{name} must be an int or a pair of ints, got {v!r}")
    if min(vals) < 1 or max(vals) > MAX_GEOMETRY:
        raise ValueError(f"{name} must be from 1 to {MAX_GEOMETRY}, got {v!r}")
    return int(vals[0]), int(vals[1])


def _padding(padding, in_hw, k_hw, stride, dilation) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) from an int, (h, w), (top, left, bottom, right) or an
    ONNX auto_pad name: "valid", "same" / "same_upper" (extra cell at the end), "same_lower"."""
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return 0, 0, 0, 0
        if mode not in ("same", "same_upper", "same_lower"):
            raise ValueError(f"padding must be an int, a tuple, 'valid', 'same', 'same_upper' or 'same_lower', "
                             f"got {padding!r}")
        pads = []
        for n, k, s, d in zip(in_hw, k_hw, stride, dilation):
            total = max(0, (-(-n // s) - 1) * s + (k - 1) * d + 1 - n)
            small = total // 2
            pads.append((small, total - small) if mode != "same_lower" else (total - small, small))
        return pads[0][0], pads[1][0], pads[0][1], pads[1][1]
    if isinstance(padding, numbers.Integral) and not isinstance(padding, bool):
        p = (int(padding),) * 4
    elif isinstance(padding, (tuple, list)) and len(padding) == 2:
        p = (padding[0], padding[1], padding[0], padding[1])
    elif isinstance(padding, (tuple, list)) and len(padding) == 4:
        p = tuple(padding)
    else:
        raise TypeError(f"padding must be an int, (h, w), (top, left, bottom, right) or a mode name, got {padding!r}")
    if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and 0 <= v <= MAX_GEOMETRY for v in p):
        raise ValueError(f"padding values must be ints from 0 to {MAX_GEOMETRY}, got {padding!r}")
    return tuple(int(v) for v in p)


class PackedConvWeights:
    """Convolution weights (O, KH, KW, C/groups), packed once per group for reuse.

    Made by :func:`pack_conv_weights`; ``conv2d`` accepts it in place of the weights.
    """

    def __init__(self, w: QTensor, groups: int = 1, weight_layout: str = "OHWI", bias=None):
        if not isinstance(w, QTensor):
            raise TypeError(f"weights must be a QTensor, got {type(w).__name__}")
        if w.axis not in (None, 0):
            raise ValueError("weights may be quantized per tensor or per output channel (axis=0) only")
        data = ohwi_weights(w.data, groups, weight_layout)
        o, kh, kw, cg = data.shape
        self.out_channels, self.kh, self.kw, self.cg, self.groups = o, kh, kw, cg, groups
        self.bias = None if bias is None else _check_bias(bias, o)
        scale = np.broadcast_to(w.scale, (o,))
        zp = np.broadcast_to(w.zero_point, (o,))
        og = o // groups
        self.scale = np.ascontiguousarray(scale, np.float32)
        self.depthwise = cg == 1 and groups > 1
        if self.depthwise:
            # Direct depthwise kernel: int16 weights minus their zero points, [ky][kx][O].
            wz = data[:, :, :, 0].astype(np.int16) - zp.astype(np.int16)[:, None, None]
            self.dw_weights = np.ascontiguousarray(wz.transpose(1, 2, 0).reshape(kh * kw, o))
        # One GEMM B per group, except for depthwise: its direct kernels read dw_weights
        # (a GEMM per channel would cost a QTensor and a pack per channel: 1 s of planning
        # for MobileNetV2)
        self.packed = []
        for g in range(0 if self.depthwise else groups):
            b = np.ascontiguousarray(data[g * og:(g + 1) * og]).reshape(og, kh * kw * cg).T   # (K, Og)
            bq = QTensor(b, scale[g * og:(g + 1) * og], zp[g * og:(g + 1) * og], axis=1)
            self.packed.append(PackedWeights(bq))
        self.dtype = w.dtype
        self._calls: dict[tuple, _ConvCall] = {}   # conv2d's fast path: call arguments -> prepared call

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_calls"}

    def __setstate__(self, state):
        self.__dict__.update(state, _calls={})

    def __repr__(self):
        return (f"PackedConvWeights(O={self.out_channels}, KH={self.kh}, KW={self.kw}, C/groups={self.cg}, "
                f"groups={self.groups}, dtype={self.dtype})")


def pack_conv_weights(w, *, groups: int = 1, weight_layout: str = "OHWI", bias: ArrayLike | None = None):
    """Pack convolution weights once, for every later ``conv2d`` call: a QTensor (OHWI
    or OIHW, per tensor or per output channel) -> PackedConvWeights; a float16 array
    -> fp16 packed weights."""
    if isinstance(w, np.ndarray) and w.dtype == np.float16:
        return _f16.PackedConvWeightsF16(ohwi_weights(w, groups, weight_layout), groups, bias)
    return PackedConvWeights(w, groups, weight_layout, bias)


def ohwi_weights(data: np.ndarray, groups: int, weight_layout: str) -> np.ndarray:
    """Convolution weights (O, KH, KW, C/groups) from OHWI or OIHW (a view), validated
    with the group count (of any dtype: shared by the int8 and fp16 packings)."""
    check_choice(weight_layout, _WEIGHT_LAYOUTS, "weight_layout")
    if data.ndim != 4:
        raise ValueError(f"weights must be 4-D ({weight_layout}), got shape {data.shape}")
    _check_groups(groups)
    ohwi = data if weight_layout == "OHWI" else data.transpose(0, 2, 3, 1)
    o, kh, kw, cg = ohwi.shape
    if o % groups:
        raise ValueError(f"output channels ({o}) must divide by groups ({groups})")
    if min(o, kh, kw, cg) == 0:
        raise ValueError(f"weights of shape {data.shape} are empty")
    return ohwi


def _check_groups(groups) -> None:
    if isinstance(groups, bool) or not isinstance(groups, numbers.Integral) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")


def _geometry(shape, kh: int, kw: int, cg: int, groups: int, stride, padding, dilation) -> tuple:
    """(oh, ow, stride_y, stride_x, dil_y, dil_x, top, left, bottom, right) of a
    convolution of an NHWC input of ``shape``, validated."""
    n, h, wd, c = (int(d) for d in shape)
    if c != cg * groups:
        raise ValueError(f"x has {c} channels; the weights expect {cg} per group x {groups} groups")
    sy_, sx_ = _pair(stride, "stride")
    dy, dx = _pair(dilation, "dilation")
    top, left, bottom, right = _padding(padding, (h, wd), (kh, kw), (sy_, sx_), (dy, dx))
    eff_h, eff_w = (kh - 1) * dy + 1, (kw - 1) * dx + 1
    if h + top + bottom < eff_h or wd + left + right < eff_w:
        raise ValueError(f"the kernel ({eff_h}x{eff_w} with dilation) is larger than the padded input "
                         f"({h + top + bottom}x{wd + left + right})")
    return ((h + top + bottom - eff_h) // sy_ + 1, (wd + left + right - eff_w) // sx_ + 1,
            sy_, sx_, dy, dx, top, left, bottom, right)


def _output_buffer(shape_nhwc, nchw: bool, out, dtype, **inputs) -> np.ndarray:
    """The NHWC array the kernels write: ``out`` itself when it is NHWC (checked not to
    overlap the named ``inputs``)."""
    if out is not None:
        n, oh, ow, o = shape_nhwc
        _check_out(out, (n, o, oh, ow) if nchw else shape_nhwc, dtype, **inputs)
    return out if out is not None and not nchw else np.empty(shape_nhwc, dtype)


def _to_layout(res: np.ndarray, nchw: bool, out) -> np.ndarray:
    if not nchw:
        return res
    if out is not None:
        out[...] = res.transpose(0, 3, 1, 2)
        return out
    return np.ascontiguousarray(res.transpose(0, 3, 1, 2))


def _conv2d_f16(x, w, bias, stride, padding, dilation, groups, layout, weight_layout, activation, out):
    x = _f16._as_f16(x, "x")
    check_choice(layout, _LAYOUTS, "layout")
    if x.ndim != 4:
        raise ValueError(f"x must be 4-D ({layout}), got shape {x.shape}")
    if isinstance(w, (QTensor, PackedConvWeights)):
        raise TypeError("x is float16 but the weights are quantized; pass float16 weights")
    pw = w if isinstance(w, _f16.PackedConvWeightsF16) else pack_conv_weights(w, groups=groups,
                                                                             weight_layout=weight_layout)
    nchw = layout == "NCHW"
    xd = x.transpose(0, 2, 3, 1) if nchw else x
    geometry = _geometry(xd.shape, pw.kh, pw.kw, pw.cg, pw.groups, stride, padding, dilation)
    shape = (xd.shape[0], geometry[0], geometry[1], pw.out_channels)
    _check_size(*shape, itemsize=2)
    _check_size(shape[0] * shape[1] * shape[2], pw.kh * pw.kw * pw.cg, itemsize=4, what="patch matrix")
    res = _output_buffer(shape, nchw, out, np.float16, x=x, w=w, bias=bias)
    return _to_layout(_f16.conv2d(xd, pw, bias, geometry, activation, res), nchw, out)


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

    fp16: ``x`` a float16 array and ``w`` float16 (or packed from one), ``bias`` a float
    array (O,), ``activation`` as above; returns float16 (accuracy: docs/api.md, "fp16").
    """
    if not isinstance(x, QTensor):
        check_f16_call("conv2d", out_scale, out_zero_point, out_dtype, requant)
        return _conv2d_f16(x, w, bias, stride, padding, dilation, groups, layout, weight_layout, activation, out)
    key = None
    if type(w) is PackedConvWeights and type(x) is QTensor and bias is None and x._params is not None:
        # Fast path for the repeated call (a layer run again): the call validated and
        # planned once is found in the weights' cache.
        try:
            key = (x._params, x._data.shape, layout, stride, padding, dilation, out_scale, out_zero_point,
                   out_dtype, activation, requant, _dispatch.isa_index())
            call = w._calls.get(key)
        except TypeError:   # unhashable arguments: take the full path
            key = call = None
        if call is not None:
            return call.run(x._data, out)
    call = _ConvCall(x, w, bias, stride, padding, dilation, groups, layout, weight_layout, out_scale,
                     out_zero_point, out_dtype, activation, requant, out)
    if key is not None:
        if len(w._calls) > 64:
            w._calls.clear()
        w._calls[key] = call
    return call.run(x._data, out)


class _ConvCall:
    """One validated conv2d configuration (input shape and parameters, weights, output
    spec) with everything the kernels need prepared; ``run`` applies it to an input."""

    def __init__(self, x, w, bias, stride, padding, dilation, groups, layout, weight_layout, out_scale,
                 out_zero_point, out_dtype, activation, requant, out):
        if not isinstance(x, QTensor):
            raise TypeError(f"x must be a QTensor, got {type(x).__name__}")
        if x.axis is not None:
            raise ValueError("x must be quantized per tensor (axis=None)")
        check_choice(layout, _LAYOUTS, "layout")
        if x.ndim != 4:
            raise ValueError(f"x must be 4-D ({layout}), got shape {x.shape}")
        self.nchw = layout == "NCHW"
        xd = x.data if layout == "NHWC" else x.data.transpose(0, 2, 3, 1)
        if isinstance(w, PackedConvWeights):
            pw = w
        elif isinstance(w, QTensor):
            pw = PackedConvWeights(w, groups, weight_layout)
        else:
            raise TypeError(f"w must be a QTensor or PackedConvWeights, got {type(w).__name__}")
        n, c = int(xd.shape[0]), int(xd.shape[3])
        oh, ow, sy_, sx_, dy, dx, top, left, bottom, right = _geometry(xd.shape, pw.kh, pw.kw, pw.cg, pw.groups,
                                                                       stride, padding, dilation)
        o = pw.out_channels
        out_dtype, mode, sy, zy, lo, hi = output_spec("conv2d", x.dtype, out, out_dtype, out_scale,
                                                      out_zero_point, activation, requant)
        za, sa = int(x.zero_point), float(x.scale)
        bias_arr = pw.bias if bias is None else _check_bias(bias, o)
        _check_size(n, oh, ow, o, itemsize=out_dtype.itemsize)
        _check_size(n * oh * ow, pw.kh * pw.kw * pw.cg, itemsize=2, what="patch matrix")
        if out is not None:   # run() checks out against each input x; the weights and bias once, here
            _check_no_overlap(out, w=w, bias=bias)
        self.pw, self.dtype, self.mode, self.out_dtype = pw, x.dtype, mode, out_dtype
        self.shape_nhwc = (n, oh, ow, o)
        self.geometry = (oh, ow, pw.kh, pw.kw, sy_, sx_, dy, dx, top, left, za)
        self.pointwise = pw.kh == pw.kw == 1 and sy_ == sx_ == 1 and top == left == bottom == right == 0
        self.isa = _dispatch.isa_index()
        self.a_signed, self.za = x.dtype == np.int8, za
        out_signed = out_dtype == np.int8
        if mode != _native.OUT_INT32:
            self.result_params = _result_params(sy, zy, out_dtype)
        if pw.depthwise:
            # groups == C: the direct depthwise kernel, channel multiplier O / C
            col_add = np.zeros(o, np.int32) if bias_arr is None else bias_arr
            scale, mult, shift = requant_terms(mode, sa, pw.scale, sy)
            self.dw_args = (o // c, pw.dw_weights, self.a_signed, za, col_add, mode, out_signed, zy, lo, hi,
                            scale, mult, shift)
        else:
            og = o // pw.groups
            m = n * oh * ow
            self.group_plans = []
            for g, pwg in enumerate(pw.packed):
                kid = _native.select_kernel(self.isa, m, pwg.pairs_128)
                gbias = None if bias_arr is None else bias_arr[g * og:(g + 1) * og]
                plan = _plan_for(pwg, kid, self.a_signed, za, sa, gbias, bias is None, mode, sy, zy, lo, hi,
                                 out_signed)
                self.group_plans.append((pwg, plan))

    def run(self, data: np.ndarray, out) -> QTensor | np.ndarray:
        if data.dtype != self.dtype:
            raise TypeError(f"x has dtype {data.dtype}; this call was prepared for {self.dtype}")
        nchw = self.nchw
        res = _output_buffer(self.shape_nhwc, nchw, out, self.out_dtype, x=data)
        if res.size:
            # NCHW: one transposing copy to NHWC; gathering through NCHW strides measured
            # 5-25x slower than the copy and the NHWC call together
            xd = np.ascontiguousarray(data.transpose(0, 2, 3, 1)) if nchw else data
            pw, o = self.pw, self.shape_nhwc[3]
            res2d = res.reshape(-1, o)
            if pw.depthwise:
                src = _native.ConvSource(xd.view(np.uint8), *self.geometry)
                _native.dwconv(self.isa, src, *self.dw_args, res2d, _dispatch.get_num_threads())
            else:
                og = o // pw.groups
                for g, (pwg, plan) in enumerate(self.group_plans):
                    xg = xd[..., g * pw.cg:(g + 1) * pw.cg] if pw.groups > 1 else xd
                    src = rows_view(xg) if self.pointwise else None   # (N*H*W, C) when pixels lie at one stride
                    if src is None:
                        src = _native.ConvSource(xg.view(np.uint8), *self.geometry)
                    _gemm2d(src, self.a_signed, self.za, pwg, plan,
                            res2d[:, g * og:(g + 1) * og] if pw.groups > 1 else res2d)
        res = _to_layout(res, nchw, out)
        if self.mode == _native.OUT_INT32:
            return res
        return QTensor._trusted(res, *self.result_params)


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
        raise TypeError(f"x must be a QTensor or a float16 array, got {type(x).__name__}")
    check_choice(layout, _LAYOUTS, "layout")
    if x.ndim != 4:
        raise ValueError(f"x must be 4-D ({layout}), got shape {x.shape}")
    c = int(x.shape[3] if layout == "NHWC" else x.shape[1])
    if isinstance(w, (PackedConvWeights, _f16.PackedConvWeightsF16)):
        if w.groups != c or w.cg != 1:
            raise ValueError(f"packed weights are not depthwise for {c} channels (groups={w.groups}, "
                             f"C/groups={w.cg}); pack them with groups=C")
    elif isinstance(w, (QTensor, np.ndarray)):
        check_choice(weight_layout, _WEIGHT_LAYOUTS, "weight_layout")
        if w.ndim != 4 or w.shape[3 if weight_layout == "OHWI" else 1] != 1:
            raise ValueError(f"depthwise weights must be (O, KH, KW, 1) for OHWI or (O, 1, KH, KW) for OIHW, "
                             f"got shape {w.shape}")
    else:
        raise TypeError(f"w must be a QTensor, a float16 array or packed weights, got {type(w).__name__}")
    return conv2d(x, w, bias, stride=stride, padding=padding, dilation=dilation, groups=c, layout=layout,
                  weight_layout=weight_layout, out_scale=out_scale, out_zero_point=out_zero_point,
                  out_dtype=out_dtype, activation=activation, requant=requant, out=out)
