"""The ``qkernels.tflite`` operators (graph/tflite.py imports TFLite models into them):
NHWC tensors, TFLite's integer arithmetic, exact in int64 numpy.

The arithmetic is TFLite's, as LiteRT's built-in kernels compute it on x86 (each piece
checked bit for bit against LiteRT by tests/test_tflite.py):

- multipliers: ``QuantizeMultiplier`` of a double real scale (frexp, round half away,
  the 2^31 carry) -- :func:`qkernels._requant.fixedpoint_params`, whose convention it is;
  convolution scales formed as ``double(s_in) * double(s_w[c]) / double(s_out)`` (or from the
  float32 product, ``float_product``);
- ``MultiplyByQuantizedMultiplier``: left shift, rounding doubling high multiply (ties
  up, which equals gemmlowp's sign-nudged form), then a rounding right shift: ties away
  from zero in TFLite's scalar code (add, sub, mul, mean's general case, requantize),
  ties upward in its vector code and ruy's GEMM (conv, fully connected; depthwise in
  blocks of 8 channels, its remaining channels away from zero): the node's ``rounding``;
- activation ranges: ``zero_point + round_half_away(float32(v) / scale)``;
- 8-bit softmax and logistic: LiteRT's float lookup tables and float normalisation.
"""
from __future__ import annotations

import numpy as np

from .... import _requant
from ...errors import ModelError
from ...tflite import DOMAIN, QParams
from ...validate import check_size, fail
from .registry import op

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
_ATTRS = ("in_q", "out_q")


# ------------------------------------------------------------------ integer helpers

def quantize_multiplier(real) -> tuple[np.ndarray, np.ndarray]:
    """TFLite's QuantizeMultiplier of double ``real`` scale(s): (Q31 multiplier, shift)
    as int64 arrays, shift positive to the left."""
    mult, shift = _requant.fixedpoint_params(np.atleast_1d(np.asarray(real, np.float64)))
    return mult.astype(np.int64), shift.astype(np.int64)


def rounding_shift(h: np.ndarray, right, rounding: str) -> np.ndarray:
    """``h / 2**right`` rounded to nearest: ties away from zero (gemmlowp's
    RoundingDivideByPOT) or upward (ruy)."""
    right = np.asarray(right, np.int64)
    if rounding == "up":
        return (h + ((np.int64(1) << right) >> 1)) >> right
    mask = (np.int64(1) << right) - 1
    threshold = (mask >> 1) + (h < 0)
    return (h >> right) + ((h & mask) > threshold)


def multiply_by_quantized_multiplier(x, mult, shift, rounding: str = "away") -> np.ndarray:
    """TFLite's MultiplyByQuantizedMultiplier of int32 values ``x`` (int64 array): a left
    shift that wraps in int32 as LiteRT's ``x * (1 << left_shift)`` and its vector shifts
    do (found against LiteRT's MUL with a multiplier above 2^15), the rounding doubling
    high multiply, the rounding right shift."""
    x = np.asarray(x, np.int64)
    mult, shift = np.asarray(mult, np.int64), np.asarray(shift, np.int64)
    x = ((x << np.maximum(shift, 0)) - INT32_MIN) % (1 << 32) + INT32_MIN
    h = (x * mult + (np.int64(1) << 30)) >> 31
    return rounding_shift(h, np.maximum(-shift, 0), rounding)


def blocked_rounding(acc, mult, shift, block: int) -> np.ndarray:
    """MultiplyByQuantizedMultiplier over the last axis of ``acc`` as LiteRT's vector
    loops do it: whole blocks of ``block`` channels round ties upward (NEON's rounding
    shift), the channels after the last whole block away from zero (its scalar tail)."""
    channels = acc.shape[-1]
    if channels % block == 0:
        return multiply_by_quantized_multiplier(acc, mult, shift, "up")
    return np.where(np.arange(channels) < channels // block * block,
                    multiply_by_quantized_multiplier(acc, mult, shift, "up"),
                    multiply_by_quantized_multiplier(acc, mult, shift, "away"))


def round_half_away(v):
    """std::round / TfLiteRound."""
    v = np.asarray(v)
    return np.sign(v) * np.floor(np.abs(v) + v.dtype.type(0.5))


def activation_range(act: str, q: QParams | None, dtype) -> tuple:
    """(lo, hi) of a fused activation: output integers for a quantized output (TFLite's
    CalculateActivationRangeQuantized), floats otherwise."""
    bounds = {"NONE": (None, None), "RELU": (0.0, None), "RELU6": (0.0, 6.0), "RELU_N1_TO_1": (-1.0, 1.0)}
    if act not in bounds:
        raise ModelError(f"fused activation {act!r} is not supported")
    flo, fhi = bounds[act]
    if q is None:
        return (-np.inf if flo is None else flo), (np.inf if fhi is None else fhi)
    info = np.iinfo(dtype)

    def quant(f):
        return q.z + int(round_half_away(np.float32(f) / q.s))
    lo = info.min if flo is None else max(info.min, quant(flo))
    hi = info.max if fhi is None else min(info.max, quant(fhi))
    return lo, hi


def clamp(y, lo, hi, dtype) -> np.ndarray:
    return np.clip(y, lo, hi).astype(dtype)


def expf(x) -> np.ndarray:
    """float32 exp rounded from double (glibc's expf is correctly rounded in practice)."""
    return np.exp(np.asarray(x, np.float64)).astype(np.float32)


def _q(node, k, out=False) -> QParams | None:
    qs = node.attrs["out_q" if out else "in_q"]
    return qs[k] if k < len(qs) else None


def _quantized(node, x) -> bool:
    return x.dtype.kind in "iu" and _q(node, 0) is not None


def _float_act(y, act):
    lo, hi = activation_range(act, None, None)
    return np.clip(y, np.float32(lo), np.float32(hi)).astype(y.dtype) if act != "NONE" else y


# ------------------------------------------------------------------ convolution

def windows(x: np.ndarray, kernel, strides, dilations, pads, fill=0) -> np.ndarray:
    """(N, OH, OW, C, kh, kw) windows of NHWC ``x``, padded with ``fill``."""
    (kh, kw), (sh, sw), (dh, dw), (t, left, b, r) = kernel, strides, dilations, pads
    xp = np.pad(x, ((0, 0), (t, b), (left, r), (0, 0)), constant_values=fill)
    ekh, ekw = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    if xp.shape[1] < ekh or xp.shape[2] < ekw:
        raise ModelError(f"a {kh}x{kw} window does not fit the padded input {xp.shape}")
    win = np.lib.stride_tricks.sliding_window_view(xp, (ekh, ekw), axis=(1, 2))
    return win[:, ::sh, ::sw, :, ::dh, ::dw]


def conv_accumulate(node, x, w, b, zx: int, zw) -> np.ndarray:
    """The exact sums of Conv2D / DepthwiseConv2D (float64 matmuls of integers whose
    every partial sum is below 2**53, so exact), int64, NHWC; or the float result."""
    a = node.attrs
    integer = zx is not None
    xf = x.astype(np.float64) - (zx or 0)
    wf = w.astype(np.float64) - (zw if integer else 0)
    win = windows(xf, w.shape[1:3], a["strides"], a["dilations"], a["pads"])
    if node.op_type == "DepthwiseConv2D":
        mult = w.shape[3] // x.shape[3]
        acc = np.einsum("nhwcij,ijc->nhwc", np.repeat(win, mult, axis=3), wf[0])
    else:
        if w.shape[3] != x.shape[3]:
            fail(node, f"filter {w.shape} does not fit input channels {x.shape[3]}")
        acc = np.tensordot(win, wf.transpose(3, 1, 2, 0), axes=([3, 4, 5], [0, 1, 2]))
    if b is not None:
        acc = acc + b.astype(np.float64)
    return np.rint(acc).astype(np.int64) if integer else acc


def weight_zero_point(qw: QParams, ndim: int) -> np.ndarray:
    """The weights' zero point(s), shaped to broadcast against the weights."""
    if qw.per_tensor:
        return qw.zero_point.reshape(()).astype(np.float64)
    return qw.zero_point.astype(np.float64).reshape([-1 if i == qw.axis else 1 for i in range(ndim)])


def float_product(op: str, qw: QParams, dtype) -> bool:
    """Whether LiteRT forms a layer's multiplier from the float32 product s_in * s_w (its
    legacy ``GetQuantizedConvolutionMultipler``): a fully connected layer with per-tensor
    weights, and uint8 convolutions (``EvalQuantized``'s ``output_multiplier``); int8
    convolutions and per-channel fully connected layers take double(s_in) * double(s_w).
    The two differ in the multiplier's last bits (found against LiteRT: a fully connected
    product of 45.498 output units gave LiteRT's 46, the float32 multiplier's)."""
    return qw.per_tensor if op == "FullyConnected" else np.dtype(dtype) == np.uint8


def product_scales(qx: QParams, qw: QParams, channels: int, float32: bool) -> np.ndarray:
    """s_in * s_w[c] per output channel as LiteRT forms it (``float_product``), float64."""
    sw = np.broadcast_to(qw.scale, (channels,)) if qw.per_tensor else qw.scale
    if float32:
        return (np.float32(qx.s) * sw.astype(np.float32)).astype(np.float64)
    return np.float64(qx.s) * sw.astype(np.float64)


def output_multipliers(qx: QParams, qw: QParams, qy: QParams, channels: int, float32: bool = False):
    """Per-output-channel (mult, shift) of a convolution or fully connected layer:
    ``product_scales`` / double(s_out), as TFLite forms them."""
    return quantize_multiplier(product_scales(qx, qw, channels, float32) / np.float64(qy.s))


@op("Conv2D", "DepthwiseConv2D", domain=DOMAIN, attrs=_ATTRS + ("strides", "dilations", "pads", "act", "rounding"))
def conv2d(node, x, w, b=None):
    if x.ndim != 4:
        fail(node, f"a 4-D NHWC input expected, got shape {x.shape}")
    if not _quantized(node, x):
        y = conv_accumulate(node, x, w, b, None, None).astype(x.dtype)
        return _float_act(y, node.attrs["act"])
    qx, qw, qy = _q(node, 0), _q(node, 1), _q(node, 0, out=True)
    channels = w.shape[3] if node.op_type == "DepthwiseConv2D" else w.shape[0]
    acc = conv_accumulate(node, x, w, b, qx.z, weight_zero_point(qw, 4))
    mult, shift = output_multipliers(qx, qw, qy, channels, float_product(node.op_type, qw, x.dtype))
    rounding = node.attrs["rounding"]
    if rounding == "up8":   # LiteRT's depthwise output loop: 8 channels at a time, then one by one
        y = blocked_rounding(acc, mult, shift, 8)
    else:
        y = multiply_by_quantized_multiplier(acc, mult, shift, rounding)
    return clamp(y + qy.z, *activation_range(node.attrs["act"], qy, x.dtype), x.dtype)


@op("FullyConnected", domain=DOMAIN, attrs=_ATTRS + ("act", "shape", "rounding"))
def fully_connected(node, x, w, b=None):
    k = w.shape[1]
    if x.size % k:
        fail(node, f"input of {x.size} values does not split into rows of {k}")
    rows = x.reshape(-1, k)
    shape = node.attrs["shape"]
    if not _quantized(node, x):
        y = (rows.astype(np.float64) @ w.astype(np.float64).T + (0 if b is None else b)).astype(x.dtype)
        return _float_act(y, node.attrs["act"]).reshape(shape)
    qx, qw, qy = _q(node, 0), _q(node, 1), _q(node, 0, out=True)
    acc = (rows.astype(np.float64) - qx.z) @ (w.astype(np.float64) - weight_zero_point(qw, 2)).T
    if b is not None:
        acc = acc + b.astype(np.float64)
    mult, shift = output_multipliers(qx, qw, qy, w.shape[0], float_product(node.op_type, qw, x.dtype))
    y = multiply_by_quantized_multiplier(np.rint(acc).astype(np.int64), mult, shift, node.attrs["rounding"]) + qy.z
    return clamp(y, *activation_range(node.attrs["act"], qy, x.dtype), x.dtype).reshape(shape)


# ------------------------------------------------------------------ elementwise

def add_sub_params(q1: QParams, q2: QParams, qy: QParams):
    """TFLite's 8-bit ADD/SUB parameters: left shift 20, the inputs' multipliers over
    twice the larger input scale, the output multiplier."""
    twice_max = 2.0 * np.float64(max(q1.s, q2.s))
    m1 = quantize_multiplier(np.float64(q1.s) / twice_max)
    m2 = quantize_multiplier(np.float64(q2.s) / twice_max)
    mo = quantize_multiplier(twice_max / (np.float64(1 << 20) * np.float64(qy.s)))
    return m1, m2, mo


def mul_params(q1: QParams, q2: QParams, qy: QParams):
    """TFLite's 8-bit MUL multiplier: of s1 * s2 / s_out computed in float32 (mul.cc takes the
    tensors' float scales: float products, widened to double only for QuantizeMultiplier).
    A double quotient differs in its last bits, which moves results near a rounding tie and,
    on LiteRT's 16-bit lanes, the low bits of results beyond int16."""
    return quantize_multiplier(np.float64(np.float32(np.float32(q1.s) * np.float32(q2.s)) / np.float32(qy.s)))


@op("Add", "Sub", "Mul", domain=DOMAIN, attrs=_ATTRS + ("act",))
def binary(node, a, b):
    act = node.attrs["act"]
    if not _quantized(node, a):
        y = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply}[node.op_type](a, b)
        return _float_act(np.asarray(y, a.dtype), act) if a.dtype.kind == "f" else y
    q1, q2, qy = _q(node, 0), _q(node, 1), _q(node, 0, out=True)
    x1, x2 = a.astype(np.int64) - q1.z, b.astype(np.int64) - q2.z
    if node.op_type == "Mul":
        m, s = mul_params(q1, q2, qy)
        raw = multiply_by_quantized_multiplier(x1 * x2, m, s)
    else:
        (m1, s1), (m2, s2), (mo, so) = add_sub_params(q1, q2, qy)
        sign = 1 if node.op_type == "Add" else -1
        raw = multiply_by_quantized_multiplier(scale_input(x1, m1, s1) + sign * scale_input(x2, m2, s2), mo, so)
    y = raw + qy.z
    body, saturate = simd_body(node.op_type, a.shape, b.shape, a.dtype)
    if body is not None and node.op_type == "Add" and a.dtype == np.uint8:
        truncated = scale_input(x1, m1, s1, truncate=True) + scale_input(x2, m2, s2, truncate=True)
        raw = np.where(body, multiply_by_quantized_multiplier(truncated, mo, so), raw)
    if body is not None:      # LiteRT's vector loop: 16-bit lanes before the output offset
        r16 = np.clip(raw, -32768, 32767) if saturate else wrap16(raw)
        y = np.where(body, wrap16(r16 + qy.z), y)
    return clamp(y, *activation_range(act, qy, a.dtype), a.dtype)


def scale_input(x, mult, shift, truncate: bool = False):
    """TFLite's 8-bit ADD/SUB input scaling of ``x`` (input minus zero point): ``x << 20``
    times the input's multiplier (shift <= 0), the right shift rounding (ties away from
    zero) as its scalar code does, or truncating (``truncate``) as uint8 ADD's vector loop
    does (``vqrdmulh`` then ``vshlq_s32`` by a negative count: an arithmetic shift; LiteRT's
    optimized_ops.h AddElementwise / AddScalarBroadcast, found against LiteRT: a value
    near an output rounding tie moves by one)."""
    if not truncate:
        return multiply_by_quantized_multiplier(x << 20, mult, shift)
    return multiply_by_quantized_multiplier(x << 20, mult, 0) >> -np.asarray(shift, np.int64)


def wrap16(v):
    """int16 wrap-around of int64 values."""
    return ((np.asarray(v, np.int64) + 32768) & 0xFFFF) - 32768


def simd_body(op: str, shape_a, shape_b, dtype):
    """Where LiteRT's built-in 8-bit ADD / MUL take their vector loop, whose lanes hold the
    scaled result in 16 bits before the output offset is added (found against LiteRT on
    results beyond int16; ``tests/test_tflite.py``; uint8 ADD's lanes also scale the inputs
    with a truncating shift, ``scale_input``): ADD narrows by truncation (a wrap),
    MUL with saturation (uint8 MUL of a run by one value: by truncation), then the offset is
    added with a wrap; the rest, and SUB, are the exact int32 arithmetic. The loop runs over
    the innermost run of the result along which each operand is either all its own values
    or one value (same shapes: everything; [2, 17] by [1, 17] or by [2, 1]: rows of 17), in
    blocks of 16 int8 values (8 for ADD of a run and one value) or 8 uint8 values; what is
    left of a run is its scalar tail.
    ``(mask, saturate)``: a boolean mask of the result's shape (None where no element is in
    a vector loop) and whether the narrowing saturates."""
    if op not in ("Add", "Mul"):
        return None, False
    out = np.broadcast_shapes(tuple(shape_a), tuple(shape_b))
    nd = len(out)
    pa = (1,) * (nd - len(shape_a)) + tuple(shape_a)
    pb = (1,) * (nd - len(shape_b)) + tuple(shape_b)
    dims = [d for d in range(nd) if out[d] != 1][::-1]            # innermost first
    if not dims:
        return None, False
    kind = lambda d: (pa[d] == out[d], pb[d] == out[d])            # noqa: E731 - (a full, b full) along d
    run = 1
    for d in dims:
        if kind(d) != kind(dims[0]):
            break
        run *= out[d]
    signed, both = np.dtype(dtype) == np.int8, kind(dims[0]) == (True, True)
    saturate = op == "Mul" and (signed or both)
    block = 16 if signed and (both or op == "Mul") else 8
    body = run // block * block
    if body == 0:
        return None, saturate
    return (np.arange(int(np.prod(out))) % run < body).reshape(out), saturate


# ------------------------------------------------------------------ pooling, mean

@op("AveragePool2D", "MaxPool2D", domain=DOMAIN, attrs=_ATTRS + ("kernel", "strides", "pads", "act"))
def pool2d(node, x):
    a = node.attrs
    if x.ndim != 4:
        fail(node, f"a 4-D NHWC input expected, got shape {x.shape}")
    valid = windows(np.ones((1,) + x.shape[1:3] + (1,), np.int64), a["kernel"], a["strides"], (1, 1), a["pads"])
    count = valid.sum(axis=(3, 4, 5))[..., None]                  # (1, OH, OW, 1) in-bounds taps
    quantized = _quantized(node, x)
    if node.op_type == "MaxPool2D":
        low = np.iinfo(x.dtype).min if x.dtype.kind in "iu" else -np.inf
        y = windows(x, a["kernel"], a["strides"], (1, 1), a["pads"], fill=low).max(axis=(4, 5))
    elif quantized:
        s = windows(x.astype(np.int64), a["kernel"], a["strides"], (1, 1), a["pads"]).sum(axis=(4, 5))
        half = count // 2
        num = np.where(s > 0, s + half, s - half)
        y = np.sign(num) * (np.abs(num) // count)                  # C division: toward zero
    else:
        s = windows(x.astype(np.float32), a["kernel"], a["strides"], (1, 1), a["pads"]).sum(axis=(4, 5))
        y = (s / count.astype(np.float32)).astype(x.dtype)
    if quantized:
        return clamp(y, *activation_range(a["act"], _q(node, 0, out=True), x.dtype), x.dtype)
    return _float_act(y.astype(x.dtype), a["act"])


@op("Mean", domain=DOMAIN, attrs=_ATTRS + ("axes", "keep_dims"))
def mean(node, x):
    axes, keep = node.attrs["axes"], node.attrs["keep_dims"]
    if any(ax >= x.ndim for ax in axes):
        fail(node, f"axes {axes} outside rank {x.ndim}")
    if not _quantized(node, x):
        return np.mean(x.astype(np.float64), axis=axes, keepdims=keep).astype(x.dtype)
    n = int(np.prod([x.shape[ax] for ax in axes]))
    if n == 0:
        fail(node, "the mean of no values")
    return mean_of_sums(node, x.astype(np.int64).sum(axis=axes, keepdims=keep), n, x.ndim, x.dtype)


def mean_of_sums(node, raw: np.ndarray, n: int, rank: int, dtype, params=None) -> np.ndarray:
    """TFLite's 8-bit MEAN from the sums ``raw`` of the stored values over ``n`` of them
    each (shaped as the result); ``params``: :func:`mean_params`' result, when made before."""
    spatial, m, s, add = mean_params(node, n, rank) if params is None else params
    raw = np.asarray(raw, np.int64)
    if spatial:
        y = blocked_rounding(raw, m, s, 16) + add
    else:
        y = multiply_by_quantized_multiplier(raw - n * _q(node, 0).z, m, s) + add
    info = np.iinfo(dtype)
    return clamp(y, info.min, info.max, dtype)


def mean_params(node, n: int, rank: int) -> tuple:
    """(spatial, multiplier, shift, addend) of an 8-bit MEAN of ``n`` values per sum."""
    qx, qy = _q(node, 0), _q(node, 0, out=True)
    if node.attrs["keep_dims"] and rank == 4 and node.attrs["axes"] == (1, 2):
        # TFLite's spatial int8 mean (optimized_integer_ops::Mean): the raw sum through
        # the multiplier of s_in / (n * s_out) (float32), 16 channels at a time (ties up,
        # the rest away), plus a bias rounded in float32
        real = np.float32(qx.s / (np.float32(n) * qy.s))
        m, s = quantize_multiplier(np.float64(real))
        return True, m, s, qy.z - int(round_half_away(np.float32(np.float32(qx.z) * qx.s) / qy.s))
    # TFLite's QuantizedMeanOrSum: the count folded into the multiplier, truncated
    m, s = quantize_multiplier(np.float64(qx.s) / np.float64(qy.s))
    shift = min(n.bit_length() - 1, 32, 31 + int(s[0]))
    return False, (m << shift) // n, s - shift, qy.z


# ------------------------------------------------------------------ activations

@op("Softmax", domain=DOMAIN, attrs=_ATTRS + ("beta",))
def softmax(node, x):
    beta = np.float32(node.attrs["beta"])
    if not _quantized(node, x):
        z = (x.astype(np.float32) - x.max(axis=-1, keepdims=True)) * beta
        e = np.exp(z.astype(np.float64)).astype(np.float32)
        return (e / e.sum(axis=-1, keepdims=True, dtype=np.float32)).astype(x.dtype)
    qx, qy = _q(node, 0), _q(node, 0, out=True)
    # LiteRT's optimized 8-bit softmax: a float table of exp(-s_in * beta * d) over the
    # distance d to the row's maximum, summed in order, normalised in float32
    table = expf(np.float32(-qx.s * beta) * np.arange(256, dtype=np.float32))
    rows = x.reshape(-1, x.shape[-1]).astype(np.int64)
    e = table[rows.max(axis=1, keepdims=True) - rows]
    total = np.cumsum(e, axis=1, dtype=np.float32)[:, -1:]
    inv = np.float32(1.0) / (total * qy.s)
    p = e * inv
    y = np.rint(p).astype(np.int64) + qy.z      # RoundToNearest: half to even
    info = np.iinfo(x.dtype)
    return clamp(y, info.min, info.max, x.dtype).reshape(x.shape)


def _sigmoid(v):
    return (np.float32(1.0) / (np.float32(1.0) + expf(-v))).astype(np.float32)


@op("Logistic", "Tanh", "HardSwish", "Relu", "Relu6", "ReluN1To1", domain=DOMAIN, attrs=_ATTRS)
def unary(node, x):
    kind = node.op_type
    if not _quantized(node, x):
        xf = x.astype(np.float32)
        if kind == "Logistic":
            y = _sigmoid(xf)
        elif kind == "Tanh":
            y = np.tanh(xf.astype(np.float64))
        elif kind == "HardSwish":
            y = xf * np.clip(xf + np.float32(3), 0, 6) / np.float32(6)
        else:
            y = np.clip(xf, *{"Relu": (0, np.inf), "Relu6": (0, 6), "ReluN1To1": (-1, 1)}[kind])
        return np.asarray(y).astype(x.dtype)
    qy = _q(node, 0, out=True)
    info = np.iinfo(x.dtype)
    if kind in ("Relu", "Relu6", "ReluN1To1"):
        qx = _q(node, 0)
        # ReluPrepare divides the float scales (float32), unlike QUANTIZE's double quotient
        m, s = quantize_multiplier(np.float64(np.float32(qx.s) / np.float32(qy.s)))
        y = multiply_by_quantized_multiplier(x.astype(np.int64) - qx.z, m, s) + qy.z
        act = {"Relu": "RELU", "Relu6": "RELU6", "ReluN1To1": "RELU_N1_TO_1"}[kind]
        return clamp(y, *activation_range(act, qy, x.dtype), x.dtype)
    if kind == "HardSwish":
        return hard_swish_int8(node, x)
    fn = _sigmoid if kind == "Logistic" else (lambda v: np.tanh(v.astype(np.float64)).astype(np.float32))
    qx = _q(node, 0)
    vals = np.arange(info.min, info.max + 1)
    deq = np.float32(qx.s) * (vals - qx.z).astype(np.float32)
    q = round_half_away(fn(deq) * (np.float32(1.0) / qy.s)).astype(np.float32) + np.float32(qy.z)
    table = np.clip(q.astype(np.int64), info.min, info.max)
    return table[x.astype(np.int64) - info.min].astype(x.dtype)


def hard_swish_int8(node, x):
    """TFLite's 8-bit HardSwish (reference_ops::HardSwish): the input on a 7-bit finer
    scale, a "reluish" factor in Q15 and two int16 fixed-point multipliers."""
    qx, qy = _q(node, 0), _q(node, 0, out=True)
    hires_scale = np.float32(np.float32(1.0 / 128.0) * qx.s)
    reluish_scale = np.float32(3.0 / 32768.0)

    def int16_multiplier(real):
        m, e = quantize_multiplier(np.float64(np.float32(real)))
        m16 = np.where(m >= INT32_MAX - (1 << 15), 32767, (m + (1 << 15)) >> 16)
        return m16[0], e[0]
    om, oe = int16_multiplier(hires_scale / qy.s)
    rm, re = int16_multiplier(hires_scale / reluish_scale)
    if oe > 0:
        fail(node, f"input scale / 128 must be below the output scale (LiteRT refuses it too), got "
                   f"{qx.s} and {qy.s}")

    def srdhm16(a, b):
        ab = a * b
        nudge = np.where(ab >= 0, 1 << 14, 1 - (1 << 14))
        r = (ab + nudge)
        r = np.where(r >= 0, r >> 15, -((-r) >> 15))
        return np.where((a == -32768) & (b == -32768), 32767, r)

    def sat16(v):
        return np.clip(v, -32768, 32767)

    v = x.astype(np.int64) - qx.z
    hires = v * 128
    preshift = srdhm16(hires, om)
    relu = hires
    if re > 0:
        relu = sat16(relu << (re - 1))
    relu = srdhm16(relu, rm)
    if re > 0:
        relu = sat16(relu * 2)
    elif re < 0:
        relu = rounding_shift(relu, -re, "away")
    relu = (relu + (1 << 15)) >> 1
    prod = relu * preshift                     # SaturatingDoublingHighMul: truncating
    out = np.where(prod >= 0, prod >> 15, -((-prod) >> 15))
    out = rounding_shift(out, -oe, "away") + qy.z
    info = np.iinfo(x.dtype)
    return clamp(out, info.min, info.max, x.dtype)


# ------------------------------------------------------------------ data movement

@op("Reshape", domain=DOMAIN, attrs=_ATTRS + ("shape",))
def reshape(node, x):
    shape = tuple(node.attrs["shape"])
    if int(np.prod(shape)) != x.size:
        fail(node, f"cannot reshape {x.shape} to {shape}")
    return x.reshape(shape)


@op("Concatenation", domain=DOMAIN, attrs=_ATTRS + ("axis", "act"))
def concatenation(node, *xs):
    if xs[0].dtype.kind in "iu" and _q(node, 0) is not None:
        qy = _q(node, 0, out=True)
        for k in range(len(xs)):
            q = _q(node, k)
            if q is None or q.s != qy.s or q.z != qy.z:
                fail(node, "8-bit inputs must share the output's scale and zero point (as LiteRT requires)")
    y = np.concatenate(xs, axis=node.attrs["axis"])
    if node.attrs["act"] != "NONE":
        if y.dtype.kind == "f":
            return _float_act(y, node.attrs["act"])
        return clamp(y, *activation_range(node.attrs["act"], _q(node, 0, out=True), y.dtype), y.dtype)
    return y


@op("Pad", domain=DOMAIN, attrs=_ATTRS + ("pads", "value"))
def pad(node, x):
    value = node.attrs["value"]
    if value is None:
        qy = _q(node, 0, out=True)
        value = qy.z if qy is not None and x.dtype.kind in "iu" else 0
    check_size([d + a + b for d, (a, b) in zip(x.shape, node.attrs["pads"])], node)   # the model's pads: bounded
    return np.pad(x, node.attrs["pads"], constant_values=np.asarray(value).astype(x.dtype))


@op("Quantize", "Dequantize", domain=DOMAIN, attrs=_ATTRS + ("dtype",))
def quantize(node, x):
    qx, qy = _q(node, 0), _q(node, 0, out=True)
    if node.op_type == "Dequantize":
        if qx is None or not qx.per_tensor:
            fail(node, "per-tensor quantized input expected")
        # LiteRT (its NEON code through NEON_2_SSE on x86): runs of 8 values as
        # float32 x*s - z*s, the rest as float(double(s) * (x - z))
        flat = x.reshape(-1)
        k = flat.size // 8 * 8
        s32 = np.float32(qx.s)
        head = flat[:k].astype(np.float32) * s32 - np.float32(np.float32(qx.z) * s32)
        tail = (np.float64(s32) * (flat[k:].astype(np.int64) - qx.z)).astype(np.float32)
        return np.concatenate([head, tail]).reshape(x.shape)
    if qy is None or not qy.per_tensor:
        fail(node, "per-tensor quantized output expected")
    out_dtype = np.dtype(node.attrs["dtype"])
    info = np.iinfo(out_dtype)
    if x.dtype.kind == "f":
        y = round_half_away(x.astype(np.float32) / qy.s).astype(np.int64) + qy.z
    else:
        # LiteRT's Requantize: 16 values at a time (ties up), then one by one (away)
        m, s = quantize_multiplier(np.float64(qx.s) / np.float64(qy.s))
        y = blocked_rounding(x.astype(np.int64).reshape(-1) - qx.z, m, s, 16).reshape(x.shape) + qy.z
    return clamp(y, info.min, info.max, out_dtype)


# ------------------------------------------------------------------ resize

def _nearest_index(n_out, n_in, align, half):
    scale = np.float32((n_in - 1) / np.float32(n_out - 1)) if align and n_out > 1 else np.float32(n_in / np.float32(n_out))
    v = (np.arange(n_out, dtype=np.float32) + np.float32(0.5 if half else 0)) * scale
    idx = round_half_away(v) if align else np.floor(v)
    idx = np.minimum(idx.astype(np.int64), n_in - 1)
    return np.maximum(idx, 0) if half else idx


def _linear_weights_int(n_out, n_in, align, half):
    """TFLite's ResizeBilinearInteger: 10-bit fixed-point positions."""
    if align and n_out > 1:
        scale = ((1 << 10) * (n_in - 1) + (n_out - 1) // 2) // (n_out - 1)
    else:
        scale = ((1 << 10) * n_in + n_out // 2) // n_out
    v = np.arange(n_out, dtype=np.int64)
    pos = v * scale + scale // 2 - (1 << 9) if half else v * scale
    lo = np.maximum(np.where(pos >= 0, pos >> 10, -((-pos) >> 10)), 0)   # C division toward zero
    up = np.minimum(np.where(pos + 1023 >= 0, (pos + 1023) >> 10, -((-(pos + 1023)) >> 10)), n_in - 1)
    return pos, lo, up


def _linear_weights_float(n_out, n_in, align, half):
    scale = np.float32((n_in - 1) / np.float32(n_out - 1)) if align and n_out > 1 else np.float32(n_in / np.float32(n_out))
    v = np.arange(n_out, dtype=np.float32)
    pos = ((v + np.float32(0.5)) * scale - np.float32(0.5)) if half else v * scale
    lo = np.maximum(np.floor(pos).astype(np.int64), 0)
    up = np.minimum(np.ceil(pos).astype(np.int64), n_in - 1)
    return pos, lo, up


@op("ResizeBilinear", "ResizeNearestNeighbor", domain=DOMAIN, attrs=_ATTRS + ("size", "align_corners",
                                                                            "half_pixel_centers"))
def resize(node, x):
    a = node.attrs
    (oh, ow), align, half = a["size"], a["align_corners"], a["half_pixel_centers"]
    if x.ndim != 4:
        fail(node, f"a 4-D NHWC input expected, got shape {x.shape}")
    h, w = x.shape[1:3]
    check_size((x.shape[0], oh, ow, x.shape[3]), node)
    if node.op_type == "ResizeNearestNeighbor":
        return x[:, _nearest_index(oh, h, align, half)][:, :, _nearest_index(ow, w, align, half)]
    if x.dtype.kind in "iu":
        py, y0, y1 = _linear_weights_int(oh, h, align, half)
        px, x0, x1 = _linear_weights_int(ow, w, align, half)
        fy, fx = (py - (y0 << 10))[None, :, None, None], (px - (x0 << 10))[None, None, :, None]
        xi = x.astype(np.int64)

        def at(yy, xx):
            return xi[:, yy][:, :, xx]
        total = (at(y0, x0) * ((1 << 10) - fy) * ((1 << 10) - fx) + at(y1, x0) * fy * ((1 << 10) - fx)
                 + at(y0, x1) * ((1 << 10) - fy) * fx + at(y1, x1) * fy * fx)
        rnd = np.where(total > 0, 1 << 19, -(1 << 19))
        num = total + rnd
        out = np.sign(num) * (np.abs(num) >> 20)
        info = np.iinfo(x.dtype)
        return clamp(out, info.min, info.max, x.dtype)
    py, y0, y1 = _linear_weights_float(oh, h, align, half)
    px, x0, x1 = _linear_weights_float(ow, w, align, half)
    dy = (py - y0.astype(np.float32))[None, :, None, None]
    dx = (px - x0.astype(np.float32))[None, None, :, None]
    xf = x.astype(np.float32)

    def at(yy, xx):
        return xf[:, yy][:, :, xx]
    one = np.float32(1)
    out = (at(y0, x0) * (one - dy) * (one - dx) + at(y1, x0) * dy * (one - dx)
           + at(y0, x1) * (one - dy) * dx + at(y1, x1) * dy * dx)
    return out.astype(x.dtype)
