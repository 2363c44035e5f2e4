"""float32 2-D convolution in numpy for the cpu backend (qkernels has no fp32 kernels):
the NCHW input is copied once into a zero-padded NHWC buffer, its patches gathered
(``sliding_window_view``, one copy: the im2col matrix) and multiplied by the weights in
one BLAS product per group; a depthwise convolution sums its KH*KW shifted taps instead.
Weights are laid out once, when the session is planned."""
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
        self.bias = None if bias is None else np.ascontiguousarray(bias, np.float32)
        og = o // groups
        self.depthwise = cg == 1 and groups > 1
        if self.depthwise:
            # taps[ky, kx] (C, multiplier): output channel c * m + j reads input channel c
            self.mult = og
            self.taps = np.ascontiguousarray(w.reshape(groups, og, kh, kw).transpose(2, 3, 0, 1), np.float32)
        else:
            # per group, (KH*KW*Cg, Og) with K ordered (ky, kx, c) like the NHWC patches
            self.mats = [np.ascontiguousarray(w[g * og:(g + 1) * og].transpose(2, 3, 1, 0).reshape(kh * kw * cg, og),
                                              np.float32) for g in range(groups)]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        n, c, h, wd = x.shape
        if c != self.cg * self.groups:
            raise ValueError(f"Conv: input has {c} channels; the weights expect {self.cg} x {self.groups} groups")
        sy, sx = self.stride
        dy, dx = self.dilation
        kh, kw = self.kh, self.kw
        top, left, bottom, right = resolve_padding(self.padding, (h, wd), (kh, kw), self.stride, self.dilation)
        hp, wp = h + top + bottom, wd + left + right
        eh, ew = (kh - 1) * dy + 1, (kw - 1) * dx + 1
        if hp < eh or wp < ew:
            raise ValueError("Conv: the kernel is larger than the padded input")
        oh, ow = (hp - eh) // sy + 1, (wp - ew) // sx + 1
        xp = np.zeros((n, hp, wp, c), np.float32)
        xp[:, top:top + h, left:left + wd, :] = x.transpose(0, 2, 3, 1)
        y = np.empty((n, oh, ow, self.o), np.float32)
        if self.depthwise:
            m = self.mult
            acc = y.reshape(n, oh, ow, c, m)
            acc[...] = 0
            tmp = np.empty((n, oh, ow, c, m), np.float32)
            for i in range(kh):
                for j in range(kw):
                    tap = xp[:, i * dy:i * dy + (oh - 1) * sy + 1:sy, j * dx:j * dx + (ow - 1) * sx + 1:sx, :]
                    np.multiply(tap[..., None], self.taps[i, j], out=tmp)
                    acc += tmp
        else:
            if kh == kw == 1 and sy == sx == 1:
                patches = xp[:, :oh, :ow, :]
            else:
                win = sliding_window_view(xp, (eh, ew), axis=(1, 2))          # (n, H', W', c, eh, ew)
                patches = win[:, ::sy, ::sx, :, ::dy, ::dx][:, :oh, :ow].transpose(0, 1, 2, 4, 5, 3)
            og, cg = self.o // self.groups, self.cg
            rows = n * oh * ow
            y2 = y.reshape(rows, self.o)
            for g, mat in enumerate(self.mats):
                pg = patches[..., g * cg:(g + 1) * cg] if self.groups > 1 else patches
                cols = pg.reshape(rows, -1)      # the im2col copy (a view for 1x1 stride 1)
                if self.groups == 1:
                    np.matmul(cols, mat, out=y2)
                else:
                    y2[:, g * og:(g + 1) * og] = cols @ mat
        if self.bias is not None:
            y += self.bias
        return np.ascontiguousarray(y.transpose(0, 3, 1, 2))
