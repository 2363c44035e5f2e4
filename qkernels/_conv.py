"""int8 convolution as a GEMM over the implicit patch matrix (im2col, gathered on
the fly panel by panel, never materialised), on the same prepared GEMM calls as
``matmul``; depthwise convolutions on their direct kernels.

NHWC inside (an NCHW input is copied to NHWC once); weights OHWI or
OIHW, per tensor or per output channel; ONNX QLinearConv / ConvInteger semantics,
with padding that reads the input zero point.
"""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import _dispatch, _native
from ._common import Activation, check_choice, check_no_overlap, check_size, rows_view
from ._conv_geometry import LAYOUTS, geometry, ohwi_weights, output_buffer, to_layout
from ._gemm import PackedWeights, check_bias
from ._layout import nchw_to_nhwc
from ._qtensor import QTensor
from ._requant import output_spec, requant_terms, result_params


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
        self.bias = None if bias is None else check_bias(bias, o)
        scale = np.broadcast_to(w.scale, (o,))
        zp = np.broadcast_to(w.zero_point, (o,))
        og = o // groups
        self.scale = np.ascontiguousarray(scale, np.float32)
        self.zero_point = np.ascontiguousarray(zp, np.int32)
        self.depthwise = cg == 1 and groups > 1
        if self.depthwise:
            # Direct depthwise kernel: int16 weights minus their zero points, [ky][kx][O].
            wz = data[:, :, :, 0].astype(np.int16) - zp.astype(np.int16)[:, None, None]
            self.dw_weights = np.ascontiguousarray(wz.transpose(1, 2, 0).reshape(kh * kw, o))
        # One GEMM B per group, holding its share of the bias (its prepared calls fold it
        # in), except for depthwise: its direct kernels read dw_weights (a GEMM per
        # channel would cost a QTensor and a pack per channel: 1 s of planning for MobileNetV2)
        self.packed = []
        for g in range(0 if self.depthwise else groups):
            b = np.ascontiguousarray(data[g * og:(g + 1) * og]).reshape(og, kh * kw * cg).T   # (K, Og)
            bq = QTensor(b, scale[g * og:(g + 1) * og], zp[g * og:(g + 1) * og], axis=1)
            self.packed.append(PackedWeights(bq, None if self.bias is None else self.bias[g * og:(g + 1) * og]))
        self.dtype = w.dtype
        self._calls: dict[tuple, ConvCall] = {}   # conv2d's fast path: call arguments -> prepared call

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_calls"}

    def oihw(self) -> np.ndarray:
        """The weights (O, C/groups, KH, KW), rebuilt exactly from what is kept (the
        GEMM panels, or the depthwise kernel's weights minus their zero points)."""
        if self.depthwise:
            wz = self.dw_weights.reshape(self.kh, self.kw, self.out_channels) + self.zero_point
            ohwi = wz.transpose(2, 0, 1)[..., None]
        else:
            og = self.out_channels // self.groups
            ohwi = np.concatenate([p.data.T.reshape(og, self.kh, self.kw, self.cg) for p in self.packed])
        out = np.ascontiguousarray(ohwi.transpose(0, 3, 1, 2)).astype(self.dtype)
        out.flags.writeable = False
        return out

    def __setstate__(self, state):
        self.__dict__.update(state, _calls={})

    def __repr__(self):
        return (f"PackedConvWeights(O={self.out_channels}, KH={self.kh}, KW={self.kw}, C/groups={self.cg}, "
                f"groups={self.groups}, dtype={self.dtype})")


def conv2d(x: QTensor, w: QTensor | PackedConvWeights, bias: ArrayLike | None = None, stride=1, padding=0,
           dilation=1, groups: int = 1, layout: str = "NHWC", weight_layout: str = "OHWI",
           out_scale: float | None = None, out_zero_point: int = 0, out_dtype: DTypeLike = None,
           activation: Activation = None, requant: str = "fp32", out: np.ndarray | None = None):
    """int8 convolution: :func:`qkernels.conv2d` on a QTensor ``x`` (documented there;
    positional here, as ``qkernels._gemm.matmul``)."""
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
    call = ConvCall(x, w, bias, stride, padding, dilation, groups, layout, weight_layout, out_scale,
                     out_zero_point, out_dtype, activation, requant, out)
    if key is not None:
        if len(w._calls) > 64:
            w._calls.clear()
        w._calls[key] = call
    return call.run(x._data, out)


class ConvCall:
    """One validated conv2d configuration (input shape and parameters, weights, output
    spec) with everything the kernels need prepared: the depthwise kernel's arguments or
    one :class:`~qkernels._gemm.GemmCall` per group. ``run`` applies it to an input."""

    def __init__(self, x, w, bias, stride, padding, dilation, groups, layout, weight_layout, out_scale,
                 out_zero_point, out_dtype, activation, requant, out):
        if not isinstance(x, QTensor):
            raise TypeError(f"x must be a QTensor, got {type(x).__name__}")
        if x.axis is not None:
            raise ValueError("x must be quantized per tensor (axis=None)")
        check_choice(layout, LAYOUTS, "layout")
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
        oh, ow, sy_, sx_, dy, dx, top, left, bottom, right = geometry(xd.shape, pw.kh, pw.kw, pw.cg, pw.groups,
                                                                      stride, padding, dilation)
        o = pw.out_channels
        spec = output_spec("conv2d", x.dtype, out, out_dtype, out_scale, out_zero_point, activation, requant)
        za, sa = int(x.zero_point), float(x.scale)
        bias_arr = None if bias is None else check_bias(bias, o)
        check_size(n, oh, ow, o, itemsize=spec.dtype.itemsize)
        check_size(n * oh * ow, pw.kh * pw.kw * pw.cg, itemsize=2, what="patch matrix")
        if out is not None:   # run() checks out against each input x; the weights and bias once, here
            check_no_overlap(out, w=w.data if isinstance(w, QTensor) else w, bias=bias)
        self.pw, self.dtype, self.out_dtype = pw, x.dtype, spec.dtype
        self.shape_nhwc = (n, oh, ow, o)
        self.geometry = (oh, ow, pw.kh, pw.kw, sy_, sx_, dy, dx, top, left, za)
        self.pointwise = pw.kh == pw.kw == 1 and sy_ == sx_ == 1 and top == left == bottom == right == 0
        self.isa = _dispatch.isa_index()
        self.result_params = result_params(spec)
        a_signed = x.dtype == np.int8
        if pw.depthwise:
            # groups == C: the direct depthwise kernel, channel multiplier O / C
            if bias_arr is None:
                bias_arr = np.zeros(o, np.int32) if pw.bias is None else pw.bias
            scale, mult, shift = requant_terms(spec.mode, sa, pw.scale, spec.scale)
            self.dw_args = (o // c, pw.dw_weights, a_signed, za, bias_arr, spec.mode, spec.dtype == np.int8,
                            spec.zero_point, spec.lo, spec.hi, scale, mult, shift)
        else:
            og = o // pw.groups
            self.gemms = [pwg.prepare(n * oh * ow, a_signed, za, sa, spec,
                                      None if bias_arr is None else bias_arr[g * og:(g + 1) * og], self.isa)
                          for g, pwg in enumerate(pw.packed)]

    def run(self, data: np.ndarray, out) -> QTensor | np.ndarray:
        """The convolution of input data ``data`` (the prepared shape and dtype) into
        ``out`` (checked) or a new array."""
        if data.dtype != self.dtype:
            raise TypeError(f"x has dtype {data.dtype}; this call was prepared for {self.dtype}")
        nchw = self.nchw
        res = output_buffer(self.shape_nhwc, nchw, out, self.out_dtype, x=data)
        if res.size:
            # NCHW: one transposing copy to NHWC (the native transpose); gathering through
            # NCHW strides measured 5-25x slower than the copy and the NHWC call together
            xd = nchw_to_nhwc(data, copy=False) if nchw else data
            for call in self.bind(xd, res.reshape(-1, self.shape_nhwc[3])):
                call.run()
        res = to_layout(res, nchw, out)
        params = self.result_params
        return res if params is None else QTensor._trusted(res, *params)

    def bind(self, xd: np.ndarray, res2d: np.ndarray, post=None) -> list:
        """The native calls of this convolution of NHWC data ``xd`` (the prepared shape
        and dtype, channels adjacent) into ``res2d`` (pixels, O), bound to both: ``run()``
        each, in order (unchecked: the caller validated both). ``post``: a fused
        QLinearAdd of the result (``_native.gemm``; one group, not depthwise)."""
        pw, o = self.pw, self.shape_nhwc[3]
        if not res2d.size:
            return []
        if post is not None and (pw.depthwise or pw.groups > 1):
            raise ValueError("a fused QLinearAdd needs a convolution of one group")
        if xd.shape[3] == 1 and xd.strides[3] != 1:   # one channel: its stride is arbitrary (numpy's choice)
            xd = np.lib.stride_tricks.as_strided(xd, strides=xd.strides[:3] + (1,), writeable=False)
        if pw.depthwise:
            src = _native.ConvSource(xd.view(np.uint8), *self.geometry)
            return [_native.dwconv(self.isa, src, *self.dw_args, res2d, _dispatch.get_num_threads(), True)]
        og, calls = o // pw.groups, []
        for g, gemm in enumerate(self.gemms):
            xg = xd[..., g * pw.cg:(g + 1) * pw.cg] if pw.groups > 1 else xd
            src = rows_view(xg) if self.pointwise else None   # (N*H*W, C) when pixels lie at one stride
            if src is None:
                src = _native.ConvSource(xg.view(np.uint8), *self.geometry)
            calls.append(gemm.run(src, res2d[:, g * og:(g + 1) * og] if pw.groups > 1 else res2d, bind=True,
                                  post=post))
        return calls
