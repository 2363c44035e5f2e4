"""float32 2-D convolution in numpy for the cpu backend (qkernels has no fp32 kernels):
the NCHW input, zero-padded, has its patches gathered (``sliding_window_view``, one
copy: the im2col matrix, none for a 1x1 stride-1 convolution) and multiplied by the
weights in one batched BLAS product over the groups, which gives NCHW directly
(depthwise: one small product per channel). Weights are laid out once, when the
session is planned."""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def resolve_padding(padding, in_hw, k_hw, stride, dilation) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) from explicit pads or an auto_pad mode ("valid",
    "same_upper", "same_lower"; ONNX: output = ceil(input / stride), the odd cell at the
    end for SAME_UPPER and at the start for SAME_LOWER)."""
    if not isinstance(padding, str):
        return padding
    if padding == "valid":
        return 0, 0, 0, 0
    pads = []
    for n, k, s, d in zip(in_hw, k_hw, stride, dilation):
        total = max(0, (-(-n // s) - 1) * s + (k - 1) * d + 1 - n)
        small = total // 2
        pads.append((small, total - small) if padding == "same_upper" else (total - small, small))
    return pads[0][0], pads[1][0], pads[0][1], pads[1][1]


class FloatConv:
    """ONNX Conv (2-D, NCHW, weights OIHW) on float32 values: ``conv(x) -> y`` (a new
    C-contiguous NCHW array)."""

    def __init__(self, w: np.ndarray, bias: np.ndarray | None, stride, dilation, padding, groups: int):
        o, cg, kh, kw = (int(d) for d in w.shape)
        self.o, self.cg, self.kh, self.kw, self.groups = o, cg, kh, kw, groups
        self.stride, self.dilation, self.padding = tuple(stride), tuple(dilation), padding
        self.bias = None if bias is None else np.ascontiguousarray(bias, np.float32).reshape(groups, o // groups, 1)
        # (groups, O/groups, C/groups*KH*KW): K ordered (c, ky, kx) like the patches below
        self.mat = np.ascontiguousarray(w.reshape(groups, o // groups, cg * kh * kw), np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        n, c, h, wd = x.shape
        g, cg, kh, kw = self.groups, self.cg, self.kh, self.kw
        if c != cg * g:
            raise ValueError(f"Conv: input has {c} channels; the weights expect {cg} x {g} groups")
        sy, sx = self.stride
        dy, dx = self.dilation
        top, left, bottom, right = resolve_padding(self.padding, (h, wd), (kh, kw), self.stride, self.dilation)
        hp, wp = h + top + bottom, wd + left + right
        eh, ew = (kh - 1) * dy + 1, (kw - 1) * dx + 1
        if hp < eh or wp < ew:
            raise ValueError("Conv: the kernel is larger than the padded input")
        oh, ow = (hp - eh) // sy + 1, (wp - ew) // sx + 1
        if top or left or bottom or right:
            xp = np.zeros((n, c, hp, wp), np.float32)
            xp[:, :, top:top + h, left:left + wd] = x
        else:
            xp = x
        if kh == kw == 1 and sy == sx == 1:
            cols = xp.reshape(n, g, cg, hp * wp)                                  # no copy when contiguous
        else:
            win = sliding_window_view(xp, (eh, ew), axis=(2, 3))                  # (n, c, H', W', eh, ew)
            win = win[:, :, ::sy, ::sx, ::dy, ::dx][:, :, :oh, :ow]              # (n, c, oh, ow, kh, kw)
            cols = win.transpose(0, 1, 4, 5, 2, 3).reshape(n, g, cg * kh * kw, oh * ow)   # the im2col copy
        y = np.matmul(self.mat, cols)                                             # (n, g, O/g, oh*ow)
        if self.bias is not None:
            y += self.bias
        return y.reshape(n, self.o, oh, ow)
