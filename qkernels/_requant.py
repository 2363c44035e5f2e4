"""The int8 output stage: from a call's output keywords (out_dtype, out_scale,
out_zero_point, activation, requant) to what the kernels' store needs: a mode, the
per-column requantization terms and the clamp range.

fp32 mode is ONNX QLinearMatMul/QLinearConv (float32 multiply, round half to even);
fixedpoint is gemmlowp/TFLite (Q31 multiplier and shift, rounding right shift).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _native
from ._common import Activation, activation_range, as_dtype, check_choice
from ._qtensor import check_qdtype, check_scale, check_zero_point, int_range

#: "tflite": fixed point as LiteRT's int8 convolutions round on x86 (ruy): the final
#: rounding shift takes ties upward rather than away from zero
REQUANT_MODES = {"fp32": _native.OUT_FP32, "fixedpoint": _native.OUT_FIXEDPOINT, "tflite": _native.OUT_FIXEDPOINT_UP}
_EMPTY_I32 = np.zeros(1, np.int32)
_EMPTY_F32 = np.zeros(1, np.float32)


class OutputSpec(NamedTuple):
    """A validated output: dtype, kernel mode (raw int32 or a requantization), output
    scale and zero point, clamp range [lo, hi] in output units (activation fused)."""
    dtype: np.dtype
    mode: int
    scale: float
    zero_point: int
    lo: int
    hi: int


# The raw accumulators (plus bias): ONNX MatMulInteger / ConvInteger.
INT32_OUTPUT = OutputSpec(np.dtype(np.int32), _native.OUT_INT32, 1.0, 0, 0, 0)


def output_spec(op: str, default_dtype, out, out_dtype, out_scale, out_zero_point, activation,
                requant) -> OutputSpec:
    """Validate the output keywords shared by matmul and conv2d (errors name ``op``):
    the raw int32 mode, or a requantization mode with its clamp range."""
    if out_dtype is None:
        out_dtype = out.dtype if out is not None else default_dtype
    out_dtype = as_dtype(out_dtype, "out_dtype")
    if out_dtype == np.int32:
        if activation is not None or out_scale is not None:
            raise ValueError("int32 output takes no out_scale or activation")
        return INT32_OUTPUT
    check_qdtype(out_dtype, "out_dtype")
    if out_scale is None:
        raise TypeError(f"{op} needs out_scale= for a quantized output (or out_dtype=np.int32)")
    sy = check_scale(out_scale, "out_scale")
    if sy.ndim:
        raise ValueError("out_scale must be a scalar")
    if np.ndim(out_zero_point):
        raise ValueError("out_zero_point must be a scalar")
    zy = int(check_zero_point(out_zero_point, out_dtype, "out_zero_point"))
    check_choice(requant, tuple(REQUANT_MODES), "requant")
    lo, hi = _clamp_range(activation, out_dtype, float(sy), zy)
    return OutputSpec(out_dtype, REQUANT_MODES[requant], float(sy), zy, lo, hi)


def _clamp_range(activation: Activation, out_dtype, out_scale: float, zy: int) -> tuple[int, int]:
    lo, hi = int_range(out_dtype)
    amin, amax = activation_range(activation)

    def q(v: float) -> int:
        if np.isinf(v):
            return hi if v > 0 else lo
        return int(np.clip(np.rint(np.float32(v) / np.float32(out_scale)) + zy, lo, hi))

    return q(amin), q(amax)


def result_params(spec: OutputSpec) -> tuple | None:
    """The output QTensor's 0-d scale and zero point and its call-cache key, made once
    per prepared call and shared by its results (read-only); None for int32 output."""
    if spec.mode == _native.OUT_INT32:
        return None
    scale = np.asarray(np.float32(spec.scale))
    zero_point = np.asarray(np.int32(spec.zero_point))
    scale.flags.writeable = zero_point.flags.writeable = False
    return scale, zero_point, (spec.dtype.char, int(spec.zero_point), float(scale))


def requant_terms(mode: int, sa, sb: np.ndarray, out_scale) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-column (scale, multiplier, shift) arrays of the output stage for ``mode``."""
    if mode == _native.OUT_FP32:
        # float32, in ONNX Runtime's order: (sa * sb) / sy
        with np.errstate(over="ignore", under="ignore"):
            scale = np.ascontiguousarray((np.float32(sa) * sb) / np.float32(out_scale), np.float32)
        if not np.all(np.isfinite(scale)):
            raise ValueError("a_scale * b_scale / out_scale overflows float32; no output can represent it")
        return scale, _EMPTY_I32, _EMPTY_I32
    if mode in (_native.OUT_FIXEDPOINT, _native.OUT_FIXEDPOINT_UP):
        real = (np.float64(sa) * sb.astype(np.float64)) / np.float64(out_scale)
        return (_EMPTY_F32, *fixedpoint_params(real))
    return _EMPTY_F32, _EMPTY_I32, _EMPTY_I32


def fixedpoint_params(real_scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q31 multipliers and shifts (positive = left) with real ≈ mult * 2^(shift-31)."""
    s = np.asarray(real_scale, np.float64)
    mant, exp = np.frexp(s)
    mult = np.floor(mant * 2.0**31 + 0.5).astype(np.int64)   # mant > 0: half away from zero
    carry = mult == 2**31
    mult[carry] //= 2
    exp = exp + carry
    if np.any(exp > 30):
        raise ValueError("fixed-point requantization needs a_scale*b_scale/out_scale < 2^30")
    tiny = exp < -31
    mult[tiny] = 0
    exp[tiny] = 0
    return mult.astype(np.int32), exp.astype(np.int32)
