"""Convolution geometry shared by the int8 and fp16 convolutions: layouts, stride,
dilation and padding arguments, output size, weights as OHWI, the NHWC output buffer.
"""
from __future__ import annotations

import numbers

import numpy as np

from ._common import check_choice, check_out
from ._layout import nhwc_to_nchw, transpose_into

LAYOUTS = ("NHWC", "NCHW")
WEIGHT_LAYOUTS = ("OHWI", "OIHW")
# The largest stride, dilation or padding accepted: no real convolution comes near it, and
# below it every index the C kernels compute (padded extent, tap offset) fits 64 bits.
MAX_GEOMETRY = 2**31 - 1


def pair(v, name: str) -> tuple[int, int]:
    """(y, x) from an int or a pair of ints from 1 to MAX_GEOMETRY (stride, dilation)."""
    vals = (v, v) if isinstance(v, numbers.Integral) else tuple(v) if isinstance(v, (tuple, list)) else None
    if vals is None or len(vals) != 2 or not all(isinstance(x, numbers.Integral) and not isinstance(x, bool)
                                                   for x in vals):
        raise TypeError(f"{name} must be an int or a pair of ints, got {v!r}")
    if min(vals) < 1 or max(vals) > MAX_GEOMETRY:
        raise ValueError(f"{name} must be from 1 to {MAX_GEOMETRY}, got {v!r}")
    return int(vals[0]), int(vals[1])


def explicit_padding(padding, in_hw, k_hw, stride, dilation) -> tuple[int, int, int, int]:
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


def ohwi_weights(data: np.ndarray, groups: int, weight_layout: str) -> np.ndarray:
    """Convolution weights (O, KH, KW, C/groups) from OHWI or OIHW (a view), validated
    with the group count (of any dtype: shared by the int8 and fp16 packings)."""
    check_choice(weight_layout, WEIGHT_LAYOUTS, "weight_layout")
    if data.ndim != 4:
        raise ValueError(f"weights must be 4-D ({weight_layout}), got shape {data.shape}")
    check_groups(groups)
    ohwi = data if weight_layout == "OHWI" else data.transpose(0, 2, 3, 1)
    o, kh, kw, cg = ohwi.shape
    if o % groups:
        raise ValueError(f"output channels ({o}) must divide by groups ({groups})")
    if min(o, kh, kw, cg) == 0:
        raise ValueError(f"weights of shape {data.shape} are empty")
    return ohwi


def check_groups(groups) -> None:
    """ValueError unless ``groups`` is a positive int."""
    if isinstance(groups, bool) or not isinstance(groups, numbers.Integral) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")


def geometry(shape, kh: int, kw: int, cg: int, groups: int, stride, padding, dilation) -> tuple:
    """(oh, ow, stride_y, stride_x, dil_y, dil_x, top, left, bottom, right) of a
    convolution of an NHWC input of ``shape``, validated."""
    n, h, wd, c = (int(d) for d in shape)
    if c != cg * groups:
        raise ValueError(f"x has {c} channels; the weights expect {cg} per group x {groups} groups")
    sy_, sx_ = pair(stride, "stride")
    dy, dx = pair(dilation, "dilation")
    top, left, bottom, right = explicit_padding(padding, (h, wd), (kh, kw), (sy_, sx_), (dy, dx))
    eff_h, eff_w = (kh - 1) * dy + 1, (kw - 1) * dx + 1
    if h + top + bottom < eff_h or wd + left + right < eff_w:
        raise ValueError(f"the kernel ({eff_h}x{eff_w} with dilation) is larger than the padded input "
                         f"({h + top + bottom}x{wd + left + right})")
    return ((h + top + bottom - eff_h) // sy_ + 1, (wd + left + right - eff_w) // sx_ + 1,
            sy_, sx_, dy, dx, top, left, bottom, right)


def output_buffer(shape_nhwc, nchw: bool, out, dtype, **inputs) -> np.ndarray:
    """The NHWC array the kernels write: ``out`` itself when it is NHWC (checked not to
    overlap the named ``inputs``)."""
    if out is not None:
        n, oh, ow, o = shape_nhwc
        check_out(out, (n, o, oh, ow) if nchw else shape_nhwc, dtype, **inputs)
    return out if out is not None and not nchw else np.empty(shape_nhwc, dtype)


def to_layout(res: np.ndarray, nchw: bool, out) -> np.ndarray:
    """The NHWC result ``res`` in the caller's layout (into ``out`` when given: checked by
    output_buffer already)."""
    if not nchw:
        return res
    return nhwc_to_nchw(res) if out is None else transpose_into(res, out, False)
