"""numpy implementations of the ONNX operators (registered into reference.OPS).

Conventions (ONNX opset 13 and later; the loader refuses older models):

* dtypes follow the specification: an op returns its inputs' dtype (float16 stays
  float16, int8 stays int8) unless the op defines another. Where numpy would lose
  precision in float16 (sums, products of several terms, transcendental chains), the
  computation runs in float32 and the result is rounded once back to float16.
* integer arithmetic wraps like fixed-width C integers; integer Div truncates toward
  zero.
* the quantized operators are exact: integer accumulations are done exactly (int64, or
  float64 matmuls whose every partial sum is an integer below 2**53), accumulators wrap
  to int32 like ONNX Runtime's, and requantization is
  ``saturate(round_half_even(float32(acc) * float32((s_a * s_b) / s_y)) + z_y)`` with the
  scale computed in float32 in that order, as ONNX Runtime and qkernels do.
* an attribute or mode an op does not implement makes ``why_not`` refuse the node
  (``attrs=`` lists what each op reads, ``check=`` inspects values); a dtype only known
  when running raises ModelError rather than computing something else.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from ..validate import check_size
from ..validate import fail as _fail
from .reference import op

# ----------------------------------------------------------------------------- helpers

#: TensorProto element type -> numpy dtype, for the types the reference ops compute on
TENSOR_TYPES = {
    1: np.dtype(np.float32), 2: np.dtype(np.uint8), 3: np.dtype(np.int8), 4: np.dtype(np.uint16),
    5: np.dtype(np.int16), 6: np.dtype(np.int32), 7: np.dtype(np.int64), 9: np.dtype(np.bool_),
    10: np.dtype(np.float16), 11: np.dtype(np.float64), 12: np.dtype(np.uint32), 13: np.dtype(np.uint64),
}
_TYPE_NAMES = {0: "UNDEFINED", 8: "STRING", 14: "COMPLEX64", 15: "COMPLEX128", 16: "BFLOAT16",
               17: "FLOAT8E4M3FN", 18: "FLOAT8E4M3FNUZ", 19: "FLOAT8E5M2", 20: "FLOAT8E5M2FNUZ",
               21: "UINT4", 22: "INT4", 23: "FLOAT4E2M1", 24: "FLOAT8E8M0", 25: "UINT2", 26: "INT2"}
_QUANT_TYPES = {np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16)}
_FLOATS = {np.dtype(t) for t in (np.float16, np.float32, np.float64)}


def _type_name(t: int) -> str:
    return _TYPE_NAMES.get(int(t), f"type {t}")


def _wdtype(dtype) -> np.dtype:
    """The dtype to compute a float op in: float16 -> float32, others unchanged."""
    dtype = np.dtype(dtype)
    return np.dtype(np.float32) if dtype == np.float16 else dtype


def _w(x: np.ndarray) -> np.ndarray:
    """``x`` in its compute dtype (float16 widened to float32)."""
    return x.astype(np.float32) if x.dtype == np.float16 else x


def _float_input(node, x):
    if x.dtype not in _FLOATS:
        _fail(node, f"input dtype {x.dtype} not supported (float16/32/64 only)")


def _ints(v) -> list[int]:
    return [int(i) for i in np.asarray(v).reshape(-1)]


def _axis(node, axis: int, rank: int) -> int:
    if not -rank <= axis < max(rank, 1):
        _fail(node, f"axis {axis} out of range for rank {rank}")
    return axis % rank if rank else 0


def _scalar(v, default=None):
    if v is None:
        return default
    v = np.asarray(v)
    if v.size != 1:
        raise ValueError(f"expected one value, got shape {v.shape}")
    return v.reshape(-1)[0]


def _wrap_int32(x: np.ndarray) -> np.ndarray:
    """int64 values reduced modulo 2**32 into int32, like int32 accumulators."""
    return np.asarray(x, np.int64).astype(np.int32)   # numpy's int64 -> int32 cast wraps


def _check_known(values, allowed, what):
    def check(node, graph):
        v = node.attrs.get(values[0], values[1])
        if v not in allowed:
            return f"{what} {v!r} not supported (supported: {', '.join(map(str, allowed))})"
        return None
    return check


def _all_checks(*checks):
    def check(node, graph):
        for c in checks:
            why = c(node, graph)
            if why:
                return why
        return None
    return check


# ----------------------------------------------------------------------- elementwise

def _unary(name, fn, floats_only=False, attrs=(), check=None):
    """Register a unary op computed as fn(node, x in its compute dtype)."""
    def impl(node, x):
        if floats_only:
            _float_input(node, x)
        y = fn(node, _w(x))
        return np.asarray(y).astype(x.dtype, copy=False)
    op(name, attrs=attrs, check=check)(impl)


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def _erf(x: np.ndarray) -> np.ndarray:
    try:
        from scipy.special import erf
    except ImportError:   # pragma: no cover - scipy is optional
        erf = np.vectorize(math.erf, otypes=[np.float64])
    return np.asarray(erf(x.astype(np.float64))).astype(x.dtype)


def _attr(node, name, default):
    return node.attrs.get(name, default)


_unary("Abs", lambda n, x: np.abs(x))
_unary("Neg", lambda n, x: np.negative(x))
_unary("Relu", lambda n, x: np.maximum(x, x.dtype.type(0)))
_unary("Exp", lambda n, x: np.exp(x), True)
_unary("Log", lambda n, x: np.log(x), True)
_unary("Sqrt", lambda n, x: np.sqrt(x), True)
_unary("Reciprocal", lambda n, x: np.reciprocal(x), True)
_unary("Floor", lambda n, x: np.floor(x), True)
_unary("Ceil", lambda n, x: np.ceil(x), True)
_unary("Round", lambda n, x: np.round(x), True)          # half to even, like ONNX
_unary("Sign", lambda n, x: np.sign(x))
_unary("Tanh", lambda n, x: np.tanh(x), True)
_unary("Sin", lambda n, x: np.sin(x), True)
_unary("Cos", lambda n, x: np.cos(x), True)
_unary("Tan", lambda n, x: np.tan(x), True)
_unary("Asin", lambda n, x: np.arcsin(x), True)
_unary("Acos", lambda n, x: np.arccos(x), True)
_unary("Atan", lambda n, x: np.arctan(x), True)
_unary("Sinh", lambda n, x: np.sinh(x), True)
_unary("Cosh", lambda n, x: np.cosh(x), True)
_unary("Asinh", lambda n, x: np.arcsinh(x), True)
_unary("Acosh", lambda n, x: np.arccosh(x), True)
_unary("Atanh", lambda n, x: np.arctanh(x), True)
_unary("Erf", lambda n, x: _erf(x), True)
_unary("Sigmoid", lambda n, x: _sigmoid(x), True)
_unary("Softsign", lambda n, x: x / (1 + np.abs(x)), True)
_unary("Softplus", lambda n, x: np.logaddexp(x.dtype.type(0), x), True)
_unary("Mish", lambda n, x: x * np.tanh(np.logaddexp(x.dtype.type(0), x)), True)
_unary("LeakyRelu", lambda n, x: np.where(x < 0, x * x.dtype.type(_attr(n, "alpha", 0.01)), x), True,
       attrs=("alpha",))
_unary("ThresholdedRelu", lambda n, x: np.where(x > _attr(n, "alpha", 1.0), x, 0), True, attrs=("alpha",))
_unary("Elu", lambda n, x: np.where(x < 0, _attr(n, "alpha", 1.0) * np.expm1(x), x), True, attrs=("alpha",))
_unary("Celu", lambda n, x: np.maximum(0, x) + np.minimum(0, _attr(n, "alpha", 1.0)
                                                            * np.expm1(x / _attr(n, "alpha", 1.0))),
       True, attrs=("alpha",))
_unary("Selu", lambda n, x: _attr(n, "gamma", 1.05070102214813232421875)
       * np.where(x <= 0, _attr(n, "alpha", 1.67326319217681884765625) * np.expm1(x), x), True,
       attrs=("alpha", "gamma"))
_unary("HardSigmoid", lambda n, x: np.clip(_attr(n, "alpha", 0.2) * x + _attr(n, "beta", 0.5), 0, 1), True,
       attrs=("alpha", "beta"))
_unary("HardSwish", lambda n, x: x * np.clip(x / 6 + 0.5, 0, 1), True)
_unary("Swish", lambda n, x: x * _sigmoid(x * x.dtype.type(_attr(n, "alpha", 1.0))), True, attrs=("alpha",))
_unary("Shrink", lambda n, x: np.where(x < -_attr(n, "lambd", 0.5), x + _attr(n, "bias", 0.0),
                                       np.where(x > _attr(n, "lambd", 0.5), x - _attr(n, "bias", 0.0), 0)),
       attrs=("lambd", "bias"))


def _gelu(node, x):
    if node.attrs.get("approximate", "none") == "tanh":
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1 + _erf(x / np.sqrt(2).astype(x.dtype)))


_unary("Gelu", _gelu, True, attrs=("approximate",),
       check=_check_known(("approximate", "none"), ("none", "tanh"), "approximate"))


@op("Not")
def _not(node, x):
    return np.logical_not(x)


@op("IsNaN")
def _isnan(node, x):
    return np.isnan(x)


@op("IsInf", attrs=("detect_negative", "detect_positive"))
def _isinf(node, x):
    neg, pos = node.attrs.get("detect_negative", 1), node.attrs.get("detect_positive", 1)
    return (np.isneginf(x) & bool(neg)) | (np.isposinf(x) & bool(pos))


@op("Identity")
def _identity(node, x):
    return x


@op("Dropout", attrs=("seed",))
def _dropout(node, x, ratio=None, training_mode=None):
    # inference: the identity; training with ratio 0 is the identity too. Training with
    # a positive ratio is random and not reproducible against anything: refused.
    if training_mode is not None and bool(_scalar(training_mode)) and float(_scalar(ratio, 0.5)) != 0.0:
        _fail(node, "training_mode=True with a non-zero ratio (random dropout) is not supported")
    if len(node.outputs) > 1:
        return x, np.ones(x.shape, bool)
    return x


def _binary(name, fn, same_dtype=True):
    def impl(node, a, b):
        y = fn(node, a, b)
        return np.asarray(y).astype(a.dtype, copy=False) if same_dtype else y
    op(name)(impl)


_binary("Add", lambda n, a, b: np.add(a, b))
_binary("Sub", lambda n, a, b: np.subtract(a, b))
_binary("Mul", lambda n, a, b: np.multiply(a, b))
_binary("And", lambda n, a, b: np.logical_and(a, b), False)
_binary("Or", lambda n, a, b: np.logical_or(a, b), False)
_binary("Xor", lambda n, a, b: np.logical_xor(a, b), False)
_binary("Equal", lambda n, a, b: np.equal(a, b), False)
_binary("Less", lambda n, a, b: np.less(a, b), False)
_binary("LessOrEqual", lambda n, a, b: np.less_equal(a, b), False)
_binary("Greater", lambda n, a, b: np.greater(a, b), False)
_binary("GreaterOrEqual", lambda n, a, b: np.greater_equal(a, b), False)
_binary("BitwiseAnd", lambda n, a, b: np.bitwise_and(a, b))
_binary("BitwiseOr", lambda n, a, b: np.bitwise_or(a, b))
_binary("BitwiseXor", lambda n, a, b: np.bitwise_xor(a, b))


@op("BitwiseNot")
def _bitwise_not(node, x):
    return np.invert(x)


@op("BitShift", attrs=("direction",),
    check=_check_known(("direction", None), ("LEFT", "RIGHT"), "direction"))
def _bitshift(node, x, y):
    if x.dtype.kind not in "iu":
        _fail(node, f"BitShift needs integers, got {x.dtype}")
    bits = x.dtype.itemsize * 8
    y = np.asarray(y)
    ok = (y >= 0) & (y < bits)
    ys = np.where(ok, y, 0).astype(x.dtype)
    left = node.attrs["direction"] == "LEFT"
    out = np.left_shift(x, ys) if left else np.right_shift(x, ys)   # right: arithmetic for signed
    # a shift by a negative count or by the width or more: the sign extension alone
    # (-1 for a right shift of a negative signed value, else 0)
    fill = np.where((x < 0) & (not left), x.dtype.type(-1) if x.dtype.kind == "i" else 0, 0)
    return np.where(ok, out, fill).astype(x.dtype)


@op("Div")
def _div(node, a, b):
    if a.dtype.kind in "iu":
        q = np.floor_divide(a, b)
        if a.dtype.kind == "i":   # floor -> truncation toward zero
            r = np.remainder(a, b)
            q = q + ((r != 0) & ((a < 0) != (b < 0))).astype(q.dtype)
        return np.asarray(q).astype(a.dtype, copy=False)
    return np.asarray(np.divide(a, b)).astype(a.dtype, copy=False)


@op("Mod", attrs=("fmod",))
def _mod(node, a, b):
    # fmod=1: a - trunc(a / b) * b (sign of a); fmod=0: a - floor(a / b) * b (sign of b)
    f = np.fmod if node.attrs.get("fmod", 0) else np.mod
    return np.asarray(f(a, b)).astype(a.dtype, copy=False)


@op("Pow")
def _pow(node, a, b):
    if a.dtype.kind == "f":
        w = _wdtype(a.dtype)
        return np.power(a.astype(w), b.astype(w)).astype(a.dtype)
    if b.dtype.kind in "iu" and not np.any(b < 0):
        return np.power(a.astype(np.int64), b.astype(np.int64)).astype(a.dtype)
    return np.power(a.astype(np.float64), b.astype(np.float64)).astype(a.dtype)


def _variadic(name, fn, mean=False):
    def impl(node, *xs):
        xs = [x for x in xs if x is not None]
        dtype = xs[0].dtype
        if mean or (name == "Sum" and dtype == np.float16):
            acc = xs[0].astype(_wdtype(dtype))
            for x in xs[1:]:
                acc = acc + x.astype(acc.dtype)
            if mean:
                acc = acc / acc.dtype.type(len(xs)) if acc.dtype.kind == "f" else acc // len(xs)
            return acc.astype(dtype)
        acc = xs[0]
        for x in xs[1:]:
            acc = fn(acc, x)
        return np.asarray(acc).astype(dtype, copy=False)
    op(name)(impl)


_variadic("Max", np.maximum)
_variadic("Min", np.minimum)
_variadic("Sum", np.add)
_variadic("Mean", np.add, mean=True)


@op("Clip")
def _clip(node, x, lo=None, hi=None):
    y = x
    if lo is not None:
        y = np.maximum(y, lo.astype(x.dtype))
    if hi is not None:
        y = np.minimum(y, hi.astype(x.dtype))
    return np.asarray(y).astype(x.dtype, copy=False)


@op("PRelu")
def _prelu(node, x, slope):
    return np.where(x < 0, x * slope, x).astype(x.dtype)


@op("Where")
def _where(node, cond, a, b):
    return np.where(cond, a, b).astype(a.dtype, copy=False)


# ------------------------------------------------------------------------------- types

def _check_cast(node, graph):
    to = node.attrs.get("to")
    if to is None:
        return "attribute 'to' is required"
    if int(to) not in TENSOR_TYPES:
        return f"cast to {_type_name(to)} not supported"
    return None


def _cast_to(node, x, dtype):
    for t, what in ((x.dtype, "from"), (dtype, "to")):
        if t == object or t.kind in "SUV" or t not in TENSOR_TYPES.values():
            _fail(node, f"cast {what} {t} not supported")
    if dtype.kind in "iu" and x.dtype.kind == "f":
        # float -> int truncates toward zero (C); NaN and out-of-range values are
        # undefined in ONNX: give 0 for NaN instead of numpy's platform value
        x = np.where(np.isnan(x), 0, np.trunc(x))
        if dtype.itemsize < 8 or dtype.kind == "u":
            return x.astype(np.float64).astype(np.int64).astype(dtype)
    return x.astype(dtype)


@op("Cast", attrs=("to", "saturate", "round_mode"), check=_check_cast)
def _cast(node, x):
    # saturate and round_mode apply to float8 targets only, which are refused
    return _cast_to(node, x, TENSOR_TYPES[int(node.attrs["to"])])


@op("CastLike", attrs=("saturate", "round_mode"))
def _cast_like(node, x, like):
    return _cast_to(node, x, like.dtype)


# ------------------------------------------------------------------ linear algebra

@op("MatMul")
def _matmul(node, a, b):
    if a.dtype == np.float16:
        return np.matmul(a.astype(np.float32), b.astype(np.float32)).astype(np.float16)
    return np.asarray(np.matmul(a, b)).astype(a.dtype, copy=False)


@op("Gemm", attrs=("alpha", "beta", "transA", "transB"))
def _gemm(node, a, b, c=None):
    dtype = a.dtype
    alpha, beta = node.attrs.get("alpha", 1.0), node.attrs.get("beta", 1.0)
    if node.attrs.get("transA", 0):
        a = a.T
    if node.attrs.get("transB", 0):
        b = b.T
    if a.ndim != 2 or b.ndim != 2:
        _fail(node, f"Gemm needs 2-D A and B, got {a.shape} and {b.shape}")
    wa, wb = _w(a), _w(b)
    y = np.matmul(wa, wb)
    if dtype.kind == "f":
        if alpha != 1.0:
            y = y * y.dtype.type(alpha)
        if c is not None and beta != 0.0:
            y = y + _w(c).astype(y.dtype) * y.dtype.type(beta)
    elif alpha != 1.0 or (c is not None and beta not in (0.0, 1.0)):
        # integer Gemm with fractional alpha/beta: scaled in float64, truncated back
        y = y.astype(np.float64) * alpha
        if c is not None and beta != 0.0:
            y = y + c.astype(np.float64) * beta
    elif c is not None and beta != 0.0:
        y = y + c.astype(dtype)
    return y.astype(dtype, copy=False)


@op("Einsum", attrs=("equation",))
def _einsum(node, *xs):
    dtype = xs[0].dtype
    if dtype not in TENSOR_TYPES.values() or dtype == np.bool_:
        _fail(node, f"input dtype {dtype} not supported")
    return np.asarray(np.einsum(node.attrs["equation"], *[_w(x) for x in xs])).astype(dtype)


@op("Det")
def _det(node, x):
    return np.linalg.det(_w(x)).astype(x.dtype)


# ------------------------------------------------------------------------- shapes

@op("Reshape", attrs=("allowzero",))
def _reshape(node, x, shape):
    asked = shape = _ints(shape)
    if not node.attrs.get("allowzero", 0):
        if any(d == 0 for d in shape[x.ndim:]):
            _fail(node, f"shape {asked} copies (0) a dimension input shape {x.shape} does not have")
        shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    known = math.prod(d for d in shape if d != -1)
    if shape.count(-1) > 1 or any(d < -1 for d in shape) or \
            (x.size != known if -1 not in shape else known == 0 or x.size % known):
        _fail(node, f"cannot reshape {x.shape} to {asked}")
    return x.reshape(shape)


@op("Flatten", attrs=("axis",))
def _flatten(node, x):
    axis = node.attrs.get("axis", 1)
    axis = axis + x.ndim if axis < 0 else axis
    if not 0 <= axis <= x.ndim:
        _fail(node, f"axis {node.attrs.get('axis')} out of range for rank {x.ndim}")
    outer = int(np.prod(x.shape[:axis], dtype=np.int64))
    return x.reshape(outer, int(np.prod(x.shape[axis:], dtype=np.int64)))


@op("Transpose", attrs=("perm",))
def _transpose(node, x):
    perm = node.attrs.get("perm")
    return np.transpose(x, None if perm is None else [int(p) for p in perm])


@op("Concat", attrs=("axis",))
def _concat(node, *xs):
    xs = [x for x in xs if x is not None]
    axis = _axis(node, node.attrs["axis"], xs[0].ndim)
    return np.concatenate(xs, axis=axis)


@op("Squeeze")
def _squeeze(node, x, axes=None):
    if axes is None:
        return np.squeeze(x)
    axes = tuple(_axis(node, a, x.ndim) for a in _ints(axes))
    if any(x.shape[a] != 1 for a in axes):
        _fail(node, f"cannot squeeze axes {axes} of shape {x.shape}")
    return np.squeeze(x, axis=axes)


@op("Unsqueeze")
def _unsqueeze(node, x, axes):
    axes = _ints(axes)
    rank = x.ndim + len(axes)
    axes = sorted(_axis(node, a, rank) for a in axes)
    if len(set(axes)) != len(axes):
        _fail(node, f"repeated axes {axes}")
    shape = list(x.shape)
    for a in axes:
        shape.insert(a, 1)
    return x.reshape(shape)


@op("Shape", attrs=("start", "end"))
def _shape(node, x):
    r = x.ndim
    start, end = node.attrs.get("start", 0), node.attrs.get("end", r)
    start, end = (start + r if start < 0 else start), (end + r if end < 0 else end)
    start, end = min(max(start, 0), r), min(max(end, 0), r)
    return np.array(x.shape[start:end], np.int64)


@op("Size")
def _size(node, x):
    return np.array(x.size, np.int64)


@op("Expand")
def _expand(node, x, shape):
    shape = tuple(_ints(shape))
    check_size(shape, node)   # before broadcasting (numpy's limit is 32 dimensions)
    try:
        out = np.broadcast_shapes(x.shape, shape)
    except ValueError:
        _fail(node, f"cannot expand {x.shape} to {shape}")
    return np.array(np.broadcast_to(x, check_size(out, node)))


@op("Tile")
def _tile(node, x, repeats):
    reps = _ints(repeats)
    if len(reps) != x.ndim:
        _fail(node, f"repeats has {len(reps)} values for rank {x.ndim}")
    check_size([d * r for d, r in zip(x.shape, reps)], node)
    return np.tile(x, reps)


@op("Constant", attrs=("value", "value_float", "value_floats", "value_int", "value_ints", "value_string",
                       "value_strings", "sparse_value"),
    check=lambda node, graph: "sparse_value is not supported" if "sparse_value" in node.attrs else
    (None if len(node.attrs) == 1 else "exactly one value attribute is required"))
def _constant(node):
    (name, v), = node.attrs.items()
    if name == "value":
        return np.array(v)
    if name == "value_float":
        return np.array(v, np.float32)
    if name == "value_floats":
        return np.array(v, np.float32).reshape(-1)
    if name == "value_int":
        return np.array(v, np.int64)
    if name == "value_ints":
        return np.array(v, np.int64).reshape(-1)
    if name == "value_string":
        return np.array(v.decode() if isinstance(v, bytes) else v, dtype=object)
    return np.array([s.decode() if isinstance(s, bytes) else s for s in v], dtype=object)


@op("ConstantOfShape", attrs=("value",))
def _constant_of_shape(node, shape):
    value = node.attrs.get("value")
    value = np.zeros(1, np.float32) if value is None else np.asarray(value).reshape(-1)
    return np.full(check_size(_ints(shape), node), value[0], dtype=value.dtype)


@op("Range", attrs=("stash_type",))
def _range(node, start, limit, delta):
    dtype = start.dtype
    s, l, d = (_scalar(v).astype(_wdtype(dtype)) for v in (start, limit, delta))
    n = max(int(np.ceil((float(l) - float(s)) / float(d))), 0) if dtype.kind == "f" else \
        max(-(-(int(l) - int(s)) // int(d)), 0)
    check_size([n], node)
    if dtype.kind == "f":
        return (s + np.arange(n, dtype=s.dtype) * d).astype(dtype)
    return (int(s) + np.arange(n, dtype=np.int64) * int(d)).astype(dtype)


@op("EyeLike", attrs=("dtype", "k"),
    check=lambda node, graph: None if node.attrs.get("dtype") is None or int(node.attrs["dtype"]) in TENSOR_TYPES
    else f"dtype {_type_name(node.attrs['dtype'])} not supported")
def _eye_like(node, x):
    dtype = TENSOR_TYPES[int(node.attrs["dtype"])] if node.attrs.get("dtype") is not None else x.dtype
    return np.eye(x.shape[0], x.shape[1], k=node.attrs.get("k", 0), dtype=dtype)


@op("Split", attrs=("axis", "num_outputs"))
def _split(node, x, split=None):
    axis = _axis(node, node.attrs.get("axis", 0), x.ndim)
    dim = x.shape[axis]
    n = len(node.outputs)
    if split is not None:
        sizes = _ints(split)
    else:
        n = node.attrs.get("num_outputs", n)
        chunk = -(-dim // n)
        sizes = [min(chunk, max(dim - chunk * i, 0)) for i in range(n)]
    if sum(sizes) != dim:
        _fail(node, f"split sizes {sizes} do not add up to dimension {dim}")
    return tuple(np.split(x, np.cumsum(sizes)[:-1], axis=axis))


def _slice_bounds(start, end, step, dim):
    if step == 0:
        raise ValueError("Slice step cannot be 0")
    start = start + dim if start < 0 else start
    end = end + dim if end < 0 else end
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
        return slice(start, end, step)
    start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
    return slice(start, end if end >= 0 else None, step)


@op("Slice")
def _slice(node, x, starts, ends, axes=None, steps=None):
    starts, ends = _ints(starts), _ints(ends)
    axes = list(range(len(starts))) if axes is None else [_axis(node, a, x.ndim) for a in _ints(axes)]
    steps = [1] * len(starts) if steps is None else _ints(steps)
    if len(set(axes)) != len(axes):
        _fail(node, f"repeated axes {axes}")
    index = [slice(None)] * x.ndim
    for a, s, e, st in zip(axes, starts, ends, steps):
        index[a] = _slice_bounds(s, e, st, x.shape[a])
    return x[tuple(index)]


def _normalize_indices(node, idx, dim):
    idx = idx.astype(np.int64)
    idx = np.where(idx < 0, idx + dim, idx)
    if idx.size and (idx.min() < 0 or idx.max() >= dim):
        raise IndexError(f"node {node.name!r}: index out of range for a dimension of {dim}")
    return idx


@op("Gather", attrs=("axis",))
def _gather(node, x, indices):
    axis = _axis(node, node.attrs.get("axis", 0), x.ndim)
    return np.take(x, _normalize_indices(node, indices, x.shape[axis]), axis=axis)


@op("GatherElements", attrs=("axis",))
def _gather_elements(node, x, indices):
    axis = _axis(node, node.attrs.get("axis", 0), x.ndim)
    return np.take_along_axis(x, _normalize_indices(node, indices, x.shape[axis]), axis=axis)


@op("GatherND", attrs=("batch_dims",))
def _gather_nd(node, x, indices):
    b = node.attrs.get("batch_dims", 0)
    k = indices.shape[-1]
    batch = x.shape[:b]
    out_shape = indices.shape[:-1] + x.shape[b + k:]
    nb = int(np.prod(batch, dtype=np.int64))
    xr = x.reshape((nb,) + x.shape[b:])
    ir = indices.reshape((nb, -1, k)).astype(np.int64)
    dims = np.array(x.shape[b:b + k], np.int64)
    ir = np.where(ir < 0, ir + dims, ir)
    if ir.size and (np.any(ir < 0) or np.any(ir >= dims)):
        raise IndexError(f"node {node.name!r}: GatherND index out of range")
    parts = [xr[i][tuple(ir[i].T)] for i in range(nb)]
    return np.stack(parts).reshape(out_shape) if parts else np.zeros(out_shape, x.dtype)


_REDUCTIONS = ("none", "add", "mul", "max", "min")
_UFUNC = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


@op("ScatterElements", attrs=("axis", "reduction"),
    check=_check_known(("reduction", "none"), _REDUCTIONS, "reduction"))
def _scatter_elements(node, x, indices, updates):
    axis = _axis(node, node.attrs.get("axis", 0), x.ndim)
    idx = _normalize_indices(node, indices, x.shape[axis])
    out = x.copy()
    full = list(np.indices(idx.shape, sparse=False))
    full[axis] = idx
    reduction = node.attrs.get("reduction", "none")
    if reduction == "none":
        out[tuple(full)] = updates
    else:
        _UFUNC[reduction].at(out, tuple(full), updates)
    return out


@op("ScatterND", attrs=("reduction",), check=_check_known(("reduction", "none"), _REDUCTIONS, "reduction"))
def _scatter_nd(node, x, indices, updates):
    out = x.copy()
    k = indices.shape[-1]
    idx = indices.reshape(-1, k).astype(np.int64)
    idx = np.where(idx < 0, idx + np.array(x.shape[:k]), idx)
    upd = updates.reshape((idx.shape[0],) + x.shape[k:])
    reduction = node.attrs.get("reduction", "none")
    for i in range(idx.shape[0]):
        t = tuple(idx[i])
        out[t] = upd[i] if reduction == "none" else _UFUNC[reduction](out[t], upd[i])
    return out


@op("NonZero")
def _nonzero(node, x):
    return np.array(np.nonzero(x), np.int64).reshape(x.ndim, -1)


@op("Compress", attrs=("axis",))
def _compress(node, x, cond):
    axis = node.attrs.get("axis")
    if axis is None:
        return np.compress(cond.reshape(-1), x.reshape(-1))
    return np.compress(cond.reshape(-1), x, axis=_axis(node, axis, x.ndim))


@op("Trilu", attrs=("upper",))
def _trilu(node, x, k=None):
    k = int(_scalar(k, 0))
    return np.triu(x, k) if node.attrs.get("upper", 1) else np.tril(x, k)


@op("OneHot", attrs=("axis",))
def _one_hot(node, indices, depth, values):
    depth = int(_scalar(depth))
    check_size(indices.shape + (depth,), node)
    idx = indices.astype(np.int64)
    idx = np.where(idx < 0, idx + depth, idx)
    axis = node.attrs.get("axis", -1)
    rank = indices.ndim + 1
    axis = _axis(node, axis, rank)
    hot = np.arange(depth).reshape([depth if i == axis else 1 for i in range(rank)])
    mask = np.expand_dims(idx, axis) == hot
    return np.where(mask, values[1], values[0]).astype(values.dtype)


@op("DepthToSpace", attrs=("blocksize", "mode"), check=_check_known(("mode", "DCR"), ("DCR", "CRD"), "mode"))
def _depth_to_space(node, x):
    b = node.attrs["blocksize"]
    n, c, h, w = x.shape
    if node.attrs.get("mode", "DCR") == "DCR":
        t = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    else:
        t = x.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    return t.reshape(n, c // (b * b), h * b, w * b)


@op("SpaceToDepth", attrs=("blocksize", "mode"), check=_check_known(("mode", "DCR"), ("DCR", "CRD"), "mode"))
def _space_to_depth(node, x):
    b = node.attrs["blocksize"]
    n, c, h, w = x.shape
    t = x.reshape(n, c, h // b, b, w // b, b)
    t = t.transpose(0, 3, 5, 1, 2, 4) if node.attrs.get("mode", "DCR") == "DCR" else t.transpose(0, 1, 3, 5, 2, 4)
    return t.reshape(n, c * b * b, h // b, w // b)


@op("Pad", attrs=("mode",), check=_check_known(("mode", "constant"), ("constant", "reflect", "edge", "wrap"),
                                                "mode"))
def _pad(node, x, pads, value=None, axes=None):
    r = x.ndim
    pads = _ints(pads)
    axes = list(range(r)) if axes is None else [_axis(node, a, r) for a in _ints(axes)]
    if len(pads) != 2 * len(axes):
        _fail(node, f"pads has {len(pads)} values for {len(axes)} axes")
    width = [[0, 0] for _ in range(r)]
    for k, a in enumerate(axes):
        width[a] = [pads[k], pads[k + len(axes)]]
    # negative pads crop
    crop = tuple(slice(max(-b, 0), x.shape[i] - max(-e, 0)) for i, (b, e) in enumerate(width))
    x = x[crop]
    width = [(max(b, 0), max(e, 0)) for b, e in width]
    check_size([d + b + e for d, (b, e) in zip(x.shape, width)], node)
    mode = node.attrs.get("mode", "constant")
    if mode == "constant":
        v = _scalar(value, 0)
        return np.pad(x, width, mode="constant", constant_values=np.asarray(v).astype(x.dtype))
    if x.size == 0 and any(b or e for b, e in width):
        _fail(node, f"mode {mode!r} cannot pad an empty tensor")
    return np.pad(x, width, mode={"reflect": "reflect", "edge": "edge", "wrap": "wrap"}[mode])


# ------------------------------------------------------------------------ reductions

def _reduce_axes(node, x, axes_input):
    axes = node.attrs.get("axes") if axes_input is None else _ints(axes_input)
    if axes is None or len(axes) == 0:
        if node.attrs.get("noop_with_empty_axes", 0):
            return None
        return tuple(range(x.ndim))
    return tuple(sorted({_axis(node, int(a), x.ndim) for a in axes}))


def _reduction(name, fn, empty=None, float_work=True):
    def impl(node, x, axes=None):
        ax = _reduce_axes(node, x, axes)
        if ax is None:
            return x
        keep = bool(node.attrs.get("keepdims", 1))
        w = _w(x) if float_work else x
        if empty is not None and any(x.shape[a] == 0 for a in ax):
            shape = tuple(1 if i in ax else d for i, d in enumerate(x.shape)) if keep else \
                tuple(d for i, d in enumerate(x.shape) if i not in ax)
            return np.full(shape, empty(x.dtype), dtype=x.dtype)
        y = fn(w, ax, keep)
        return np.asarray(y).astype(x.dtype, copy=False)
    op(name, attrs=("axes", "keepdims", "noop_with_empty_axes"))(impl)


def _lowest(dtype):
    return -np.inf if dtype.kind == "f" else (False if dtype.kind == "b" else np.iinfo(dtype).min)


def _highest(dtype):
    return np.inf if dtype.kind == "f" else (True if dtype.kind == "b" else np.iinfo(dtype).max)


def _logsumexp(x, ax, keep):
    m = np.max(x, axis=ax, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    y = np.log(np.sum(np.exp(x - m), axis=ax, keepdims=True)) + m
    return y if keep else np.squeeze(y, axis=ax)


_reduction("ReduceSum", lambda x, ax, k: np.sum(x, axis=ax, keepdims=k))
_reduction("ReduceMean", lambda x, ax, k: np.mean(x, axis=ax, keepdims=k))
_reduction("ReduceProd", lambda x, ax, k: np.prod(x, axis=ax, keepdims=k))
_reduction("ReduceMax", lambda x, ax, k: np.max(x, axis=ax, keepdims=k), empty=_lowest, float_work=False)
_reduction("ReduceMin", lambda x, ax, k: np.min(x, axis=ax, keepdims=k), empty=_highest, float_work=False)
_reduction("ReduceL1", lambda x, ax, k: np.sum(np.abs(x), axis=ax, keepdims=k))
_reduction("ReduceL2", lambda x, ax, k: np.sqrt(np.sum(np.square(x), axis=ax, keepdims=k)))
_reduction("ReduceSumSquare", lambda x, ax, k: np.sum(np.square(x), axis=ax, keepdims=k))
_reduction("ReduceLogSum", lambda x, ax, k: np.log(np.sum(x, axis=ax, keepdims=k)))
_reduction("ReduceLogSumExp", _logsumexp, empty=lambda dt: -np.inf)


def _arg(name, fn):
    def impl(node, x):
        axis = _axis(node, node.attrs.get("axis", 0), x.ndim)
        if node.attrs.get("select_last_index", 0):
            y = x.shape[axis] - 1 - fn(np.flip(x, axis), axis=axis)
        else:
            y = fn(x, axis=axis)
        y = np.asarray(y, np.int64)
        return np.expand_dims(y, axis) if node.attrs.get("keepdims", 1) else y
    op(name, attrs=("axis", "keepdims", "select_last_index"))(impl)


_arg("ArgMax", np.argmax)
_arg("ArgMin", np.argmin)


@op("CumSum", attrs=("exclusive", "reverse"))
def _cumsum(node, x, axis):
    axis = _axis(node, int(_scalar(axis)), x.ndim)
    w = _w(x)
    if node.attrs.get("reverse", 0):
        w = np.flip(w, axis)
    y = np.cumsum(w, axis=axis, dtype=w.dtype)
    if node.attrs.get("exclusive", 0):
        y = np.concatenate([np.zeros_like(np.take(y, [0], axis=axis)), np.take(y, range(y.shape[axis] - 1),
                                                                               axis=axis)], axis=axis)
    if node.attrs.get("reverse", 0):
        y = np.flip(y, axis)
    return y.astype(x.dtype)


@op("TopK", attrs=("axis", "largest", "sorted"))
def _topk(node, x, k):
    k = int(_scalar(k))
    axis = _axis(node, node.attrs.get("axis", -1), x.ndim)
    n = x.shape[axis]
    if not 0 <= k <= n:
        _fail(node, f"k={k} is outside [0, {n}]")
    if node.attrs.get("largest", 1):
        # descending by value, ties by ascending index: a stable ascending sort of the
        # reversed array, read backwards
        order = n - 1 - np.flip(np.argsort(np.flip(x, axis), axis=axis, kind="stable"), axis)
    else:
        order = np.argsort(x, axis=axis, kind="stable")
    idx = np.take(order, range(k), axis=axis)
    return np.take_along_axis(x, idx, axis=axis), idx.astype(np.int64)


# ---------------------------------------------------------------------- softmax family

def _softmax_axis(node, x):
    return _axis(node, node.attrs.get("axis", -1), x.ndim)


@op("Softmax", attrs=("axis",))
def _softmax(node, x):
    _float_input(node, x)
    axis, w = _softmax_axis(node, x), _w(x)
    e = np.exp(w - np.max(w, axis=axis, keepdims=True))
    return (e / np.sum(e, axis=axis, keepdims=True)).astype(x.dtype)


@op("LogSoftmax", attrs=("axis",))
def _log_softmax(node, x):
    _float_input(node, x)
    axis, w = _softmax_axis(node, x), _w(x)
    s = w - np.max(w, axis=axis, keepdims=True)
    return (s - np.log(np.sum(np.exp(s), axis=axis, keepdims=True))).astype(x.dtype)


@op("Hardmax", attrs=("axis",))
def _hardmax(node, x):
    axis = _softmax_axis(node, x)
    idx = np.expand_dims(np.argmax(x, axis=axis), axis)
    y = np.zeros_like(x)
    np.put_along_axis(y, idx, 1, axis=axis)
    return y


# -------------------------------------------------------------------- normalization

def _channel_shape(x, v):
    return np.asarray(v).reshape((1, -1) + (1,) * (x.ndim - 2))


@op("BatchNormalization", attrs=("epsilon", "momentum", "training_mode"))
def _batch_norm(node, x, scale, bias, mean, var):
    _float_input(node, x)
    eps = node.attrs.get("epsilon", 1e-5)
    w = _w(x)
    wd = w.dtype
    s, b = (_channel_shape(x, v).astype(wd) for v in (scale, bias))
    if node.attrs.get("training_mode", 0):
        axes = tuple(i for i in range(x.ndim) if i != 1)
        m, v = np.mean(w, axis=axes), np.var(w, axis=axes)
        mom = node.attrs.get("momentum", 0.9)
        y = (w - _channel_shape(x, m)) / np.sqrt(_channel_shape(x, v) + wd.type(eps)) * s + b
        run_m = mean.astype(wd) * wd.type(mom) + m * wd.type(1 - mom)
        run_v = var.astype(wd) * wd.type(mom) + v * wd.type(1 - mom)
        return y.astype(x.dtype), run_m.astype(mean.dtype), run_v.astype(var.dtype)
    if len([o for o in node.outputs if o]) > 1:
        _fail(node, "running mean/var outputs exist only with training_mode=1")
    m, v = (_channel_shape(x, t).astype(wd) for t in (mean, var))
    return ((w - m) / np.sqrt(v + wd.type(eps)) * s + b).astype(x.dtype)


@op("InstanceNormalization", attrs=("epsilon",))
def _instance_norm(node, x, scale, bias):
    _float_input(node, x)
    w = _w(x)
    axes = tuple(range(2, x.ndim))
    m = np.mean(w, axis=axes, keepdims=True)
    v = np.mean(np.square(w - m), axis=axes, keepdims=True)
    y = (w - m) / np.sqrt(v + w.dtype.type(node.attrs.get("epsilon", 1e-5)))
    return (y * _channel_shape(x, scale).astype(w.dtype) + _channel_shape(x, bias).astype(w.dtype)).astype(x.dtype)


def _stash_check(node, graph):
    st = node.attrs.get("stash_type", 1)
    return None if st == 1 else f"stash_type {_type_name(st)} not supported (float only)"


@op("LayerNormalization", attrs=("axis", "epsilon", "stash_type"), check=_stash_check)
def _layer_norm(node, x, scale, bias=None):
    _float_input(node, x)
    axis = _axis(node, node.attrs.get("axis", -1), x.ndim)
    axes = tuple(range(axis, x.ndim))
    w = x.astype(np.float64) if x.dtype == np.float64 else x.astype(np.float32)
    m = np.mean(w, axis=axes, keepdims=True)
    d = w - m
    inv = 1 / np.sqrt(np.mean(d * d, axis=axes, keepdims=True) + w.dtype.type(node.attrs.get("epsilon", 1e-5)))
    y = d * inv * scale.astype(w.dtype)
    if bias is not None:
        y = y + bias.astype(w.dtype)
    stash = np.float64 if x.dtype == np.float64 else np.float32
    return y.astype(x.dtype), m.astype(stash), inv.astype(stash)


@op("RMSNormalization", attrs=("axis", "epsilon", "stash_type"), check=_stash_check)
def _rms_norm(node, x, scale):
    _float_input(node, x)
    axis = _axis(node, node.attrs.get("axis", -1), x.ndim)
    axes = tuple(range(axis, x.ndim))
    w = x.astype(np.float64) if x.dtype == np.float64 else x.astype(np.float32)
    rms = np.sqrt(np.mean(w * w, axis=axes, keepdims=True) + w.dtype.type(node.attrs.get("epsilon", 1e-5)))
    return (w / rms * scale.astype(w.dtype)).astype(x.dtype)


@op("GroupNormalization", attrs=("num_groups", "epsilon", "stash_type"), check=_stash_check)
def _group_norm(node, x, scale, bias):
    _float_input(node, x)
    g = node.attrs["num_groups"]
    n, c = x.shape[:2]
    w = _w(x).reshape(n, g, -1)
    m = np.mean(w, axis=2, keepdims=True)
    v = np.mean(np.square(w - m), axis=2, keepdims=True)
    y = ((w - m) / np.sqrt(v + w.dtype.type(node.attrs.get("epsilon", 1e-5)))).reshape(x.shape)
    if scale.size == g and g != c:   # opset 18: one scale/bias per group
        scale, bias = np.repeat(scale, c // g), np.repeat(bias, c // g)
    return (y * _channel_shape(x, scale).astype(y.dtype) + _channel_shape(x, bias).astype(y.dtype)).astype(x.dtype)


@op("LpNormalization", attrs=("axis", "p"), check=_check_known(("p", 2), (1, 2), "p"))
def _lp_norm(node, x):
    axis = _axis(node, node.attrs.get("axis", -1), x.ndim)
    w = _w(x)
    if node.attrs.get("p", 2) == 1:
        norm = np.sum(np.abs(w), axis=axis, keepdims=True)
    else:
        norm = np.sqrt(np.sum(w * w, axis=axis, keepdims=True))
    return np.where(norm == 0, 0, w / norm).astype(x.dtype)


@op("LRN", attrs=("alpha", "beta", "bias", "size"))
def _lrn(node, x):
    _float_input(node, x)
    size = node.attrs["size"]
    alpha, beta, bias = (node.attrs.get(k, d) for k, d in (("alpha", 1e-4), ("beta", 0.75), ("bias", 1.0)))
    w = _w(x)
    sq = np.square(w)
    c = x.shape[1]
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    padded = np.pad(sq, [(0, 0), (lo, hi)] + [(0, 0)] * (x.ndim - 2))
    s = sum(padded[:, i:i + c] for i in range(size))
    return (w / (bias + alpha / size * s) ** beta).astype(x.dtype)


# ---------------------------------------------------------------- convolution/pooling

_AUTO_PAD = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")
_check_auto_pad = _check_known(("auto_pad", "NOTSET"), _AUTO_PAD, "auto_pad")
_CONV_ATTRS = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")


def _geometry(node, in_sp, kernel, ceil_mode=False):
    """(strides, dilations, pads_begin, pads_end, out) of a convolution or pooling window."""
    n = len(in_sp)
    strides = list(node.attrs.get("strides") or [1] * n)
    dil = list(node.attrs.get("dilations") or [1] * n)
    pads = list(node.attrs.get("pads") or [0] * (2 * n))
    if len(strides) != n or len(dil) != n or len(pads) != 2 * n or len(kernel) != n:
        _fail(node, f"strides/dilations/pads/kernel do not match {n} spatial dimension(s)")
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    begin, end, out = pads[:n], pads[n:], []
    for i in range(n):
        dk = (kernel[i] - 1) * dil[i] + 1
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            o = -(-in_sp[i] // strides[i])
            total = max(0, (o - 1) * strides[i] + dk - in_sp[i])
            begin[i] = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
            end[i] = total - begin[i]
        elif auto_pad == "VALID":
            begin[i] = end[i] = 0
        span = in_sp[i] + begin[i] + end[i] - dk
        if ceil_mode and auto_pad not in ("SAME_UPPER", "SAME_LOWER", "VALID"):
            # (with auto_pad the specification's ceil_mode shapes equal the floor ones)
            o = -(-span // strides[i]) + 1
            if (o - 1) * strides[i] >= in_sp[i] + begin[i]:   # the last window must start inside
                o -= 1
        else:
            o = span // strides[i] + 1
        out.append(max(o, 0))
    return strides, dil, begin, end, out


def _padded(x, begin, end, out, strides, dil, kernel, fill):
    """x padded with ``fill``: ``begin`` before, enough after for every window (at least
    ``end``, and more for ceil_mode windows running past it)."""
    width = [(0, 0), (0, 0)]
    for i in range(len(begin)):
        need = (out[i] - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1 if out[i] else 0
        width.append((begin[i], max(end[i], need - begin[i] - x.shape[2 + i], 0)))
    if all(w == (0, 0) for w in width):
        return x
    return np.pad(x, width, mode="constant", constant_values=fill)


def _windows(xp, kernel, strides, dil, out):
    """(N, C, prod(kernel), *out) view-copies of the windows of padded ``xp``."""
    n, c = xp.shape[:2]
    cols = np.empty((n, c, int(np.prod(kernel, dtype=np.int64))) + tuple(out), xp.dtype)
    for j, offs in enumerate(itertools.product(*[range(k) for k in kernel])):
        index = tuple(slice(o * d, o * d + s * (m - 1) + 1, s) for o, d, s, m in zip(offs, dil, strides, out))
        cols[:, :, j] = xp[(slice(None), slice(None)) + index]
    return cols


def _conv(node, x, w, fill=0):
    """Convolution of x (N, C, *sp) by w (M, C/group, *k) in x's dtype (float32/float64:
    BLAS; integer data is passed as float64 holding exact small integers)."""
    if x.ndim < 3 or w.ndim != x.ndim:
        _fail(node, f"Conv needs X (N, C, ...) and W of the same rank, got {x.shape} and {w.shape}")
    kernel = list(node.attrs.get("kernel_shape") or w.shape[2:])
    if list(kernel) != list(w.shape[2:]):
        _fail(node, f"kernel_shape {kernel} does not match W {w.shape}")
    group = node.attrs.get("group", 1)
    n, c = x.shape[:2]
    m = w.shape[0]
    if c != w.shape[1] * group or m % group:
        _fail(node, f"channels do not match: X {x.shape}, W {w.shape}, group {group}")
    strides, dil, begin, end, out = _geometry(node, x.shape[2:], kernel)
    xp = _padded(x, begin, end, out, strides, dil, kernel, fill)
    cols = _windows(xp, kernel, strides, dil, out)                     # N, C, K, *out
    cols = cols.reshape(n, group, (c // group) * cols.shape[2], -1)    # N, g, C/g*K, O
    wr = w.reshape(group, m // group, -1)                              # g, M/g, C/g*K
    y = np.matmul(wr[None], cols)                                      # N, g, M/g, O
    return y.reshape((n, m) + tuple(out))


@op("Conv", attrs=_CONV_ATTRS, check=_check_auto_pad)
def _conv_op(node, x, w, b=None):
    _float_input(node, x)
    y = _conv(node, _w(x), _w(w).astype(_wdtype(x.dtype)))
    if b is not None:
        y = y + _channel_shape(y, b).astype(y.dtype)
    return y.astype(x.dtype)


_POOL_ATTRS = ("auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "strides")


def _pool_setup(node, x):
    if x.ndim < 3:
        _fail(node, f"pooling needs (N, C, ...) input, got shape {x.shape}")
    kernel = list(node.attrs["kernel_shape"])
    return (kernel,) + _geometry(node, x.shape[2:], kernel, bool(node.attrs.get("ceil_mode", 0)))


@op("MaxPool", attrs=_POOL_ATTRS + ("storage_order",),
    check=_all_checks(_check_auto_pad, _check_known(("storage_order", 0), (0, 1), "storage_order")))
def _max_pool(node, x):
    kernel, strides, dil, begin, end, out = _pool_setup(node, x)
    xp = _padded(x, begin, end, out, strides, dil, kernel, _lowest(x.dtype))
    cols = _windows(xp, kernel, strides, dil, out)
    y = np.max(cols, axis=2)
    if len(node.outputs) < 2 or not node.outputs[1]:
        return y
    # Indices: flat positions in X (N, C, *spatial), row-major (storage_order 0) or
    # column-major spatial (1); the first maximum of a window when several tie
    j = np.argmax(cols, axis=2)                                   # N, C, *out
    offs = np.array(list(itertools.product(*[range(k) for k in kernel])), np.int64)   # K, nsp
    sp = x.shape[2:]
    flat = np.zeros(j.shape, np.int64)
    colmajor = node.attrs.get("storage_order", 0) == 1
    stride_elems = [int(np.prod(sp[i + 1:], dtype=np.int64)) for i in range(len(sp))] if not colmajor else \
        [int(np.prod(sp[:i], dtype=np.int64)) for i in range(len(sp))]
    for i in range(len(sp)):
        o = np.arange(out[i]).reshape([-1 if a == i else 1 for a in range(len(sp))])
        pos = o * strides[i] - begin[i] + offs[j, i] * dil[i]
        flat += pos * stride_elems[i]
    nc = np.arange(x.shape[0] * x.shape[1]).reshape(x.shape[:2] + (1,) * len(sp))
    return y, flat + nc * int(np.prod(sp, dtype=np.int64))


@op("AveragePool", attrs=_POOL_ATTRS + ("count_include_pad",), check=_check_auto_pad)
def _average_pool(node, x):
    _float_input(node, x)
    kernel, strides, dil, begin, end, out = _pool_setup(node, x)
    w = _w(x)
    xp = _padded(w, begin, end, out, strides, dil, kernel, 0)
    total = np.sum(_windows(xp, kernel, strides, dil, out), axis=2)
    # the divisor: window positions inside X, or inside X and its explicit pads
    # (count_include_pad=1); positions past the pads (ceil_mode) never count
    ones = np.ones((1, 1) + x.shape[2:], w.dtype)
    if node.attrs.get("count_include_pad", 0):
        ones = np.pad(ones, [(0, 0), (0, 0)] + list(zip(begin, end)), constant_values=1)
        mask = _padded(ones, [0] * len(begin), [0] * len(begin), out, strides, dil, kernel, 0)
    else:
        mask = _padded(ones, begin, end, out, strides, dil, kernel, 0)
    count = np.sum(_windows(mask, kernel, strides, dil, out), axis=2)
    return (total / count).astype(x.dtype)


@op("GlobalAveragePool")
def _global_average_pool(node, x):
    _float_input(node, x)
    return np.mean(_w(x), axis=tuple(range(2, x.ndim)), keepdims=True).astype(x.dtype)


@op("GlobalMaxPool")
def _global_max_pool(node, x):
    return np.max(x, axis=tuple(range(2, x.ndim)), keepdims=True)


# --------------------------------------------------------------------- quantization

def _quant_param(v, x, axis, block_size, node):
    """A scale or zero point reshaped to broadcast against x: per tensor, per axis or
    blocked (repeated block_size times along axis)."""
    v = np.asarray(v)
    if v.size == 1 and not block_size:
        return v.reshape(())
    axis = _axis(node, axis, x.ndim)
    if block_size:
        if v.ndim != x.ndim:
            _fail(node, f"blocked quantization needs a parameter of rank {x.ndim}, got shape {v.shape}")
        v = np.repeat(v, block_size, axis=axis)
        v = np.take(v, range(x.shape[axis]), axis=axis)
        if v.shape != x.shape:
            _fail(node, f"blocked parameter shape does not match input {x.shape}")
        return v
    if v.ndim != 1 or v.shape[0] != x.shape[axis]:
        _fail(node, f"per-axis parameter of shape {v.shape} does not match axis {axis} of {x.shape}")
    return v.reshape([-1 if i == axis else 1 for i in range(x.ndim)])


def _saturate(y, dtype):
    info = np.iinfo(dtype)
    return np.clip(y, info.min, info.max).astype(dtype)


def _check_quantize(node, graph):
    od = node.attrs.get("output_dtype", 0)
    if od and (int(od) not in TENSOR_TYPES or TENSOR_TYPES[int(od)] not in _QUANT_TYPES):
        return f"output_dtype {_type_name(od)} not supported (uint8, int8, uint16, int16)"
    pr = node.attrs.get("precision", 0)
    if pr and (int(pr) not in TENSOR_TYPES or TENSOR_TYPES[int(pr)] not in _FLOATS):
        return f"precision {_type_name(pr)} not supported"
    return _zero_point_check(node, graph, 2)


def _zero_point_check(node, graph, k):
    if graph is not None and len(node.inputs) > k and node.inputs[k] in graph.initializers:
        zp = graph.initializers[node.inputs[k]]
        if zp.dtype not in _QUANT_TYPES and zp.dtype != np.int32:
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
    if dtype not in _QUANT_TYPES:
        _fail(node, f"quantizing to {dtype} is not supported (uint8, int8, uint16, int16)")
    axis, block = node.attrs.get("axis", 1), node.attrs.get("block_size", 0)
    s = _quant_param(scale, x, axis, block, node)
    # the division runs in `precision` when given, else in the scale's type (spec)
    pdt = TENSOR_TYPES[int(node.attrs["precision"])] if node.attrs.get("precision") else s.dtype
    q = np.rint(x.astype(pdt) / s.astype(pdt)).astype(np.float64)
    if zero_point is not None:
        q = q + _quant_param(zero_point, x, axis, block, node).astype(np.float64)
    return _saturate(q, dtype)


def _check_dequantize(node, graph):
    od = node.attrs.get("output_dtype", 0)
    if od and (int(od) not in TENSOR_TYPES or TENSOR_TYPES[int(od)] not in _FLOATS):
        return f"output_dtype {_type_name(od)} not supported (float16/32/64)"
    return _zero_point_check(node, graph, 2)


@op("DequantizeLinear", attrs=("axis", "block_size", "output_dtype"), check=_check_dequantize)
def _dequantize_linear(node, x, scale, zero_point=None):
    if x.dtype not in _QUANT_TYPES and x.dtype != np.int32:
        _fail(node, f"dequantizing {x.dtype} is not supported (uint8, int8, uint16, int16, int32)")
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
        _fail(node, f"input must be float32, got {x.dtype}")
    hi = np.float32(max(0.0, float(np.max(x)) if x.size else 0.0))
    lo = np.float32(min(0.0, float(np.min(x)) if x.size else 0.0))
    # (max - min) / 255 in float32; ONNX Runtime uses 1.0 when max == min (all zeros),
    # where the specification's formula would divide by zero
    scale = np.float32(1.0) if hi == lo else np.float32((hi - lo) / np.float32(255))
    zp = np.rint(np.clip(np.float32(0) - lo / scale, 0, 255))
    y = _saturate(np.rint(x / scale).astype(np.float64) + float(zp), np.uint8)
    return y, np.array(scale, np.float32), np.array(zp, np.uint8)


def _requant(acc, scale, zero_point, dtype):
    """saturate(rint(float32(int32 acc) * float32 scale) + zero_point)."""
    f = _wrap_int32(acc).astype(np.float32) * np.asarray(scale, np.float32)
    return _saturate(np.rint(f).astype(np.float64) + float(zero_point), dtype)


def _zp(v) -> int:
    return 0 if v is None else int(_scalar(v))


def _int_matmul(a, b):
    """Exact integer matmul of int64 operands whose products are below 2**17 in
    magnitude: float64 BLAS, every partial sum an exact integer below 2**53."""
    k = a.shape[-1]
    if k >= 1 << 36:
        return np.matmul(a, b)
    return np.matmul(a.astype(np.float64), b.astype(np.float64)).astype(np.int64)


def _col_param(v):
    """A per-column parameter of B (scalar, or (N,)) broadcast against (..., M, N)."""
    v = np.asarray(v)
    return v.reshape(()) if v.size == 1 else v.reshape(-1)


def _check_8bit(node, *arrays):
    for a in arrays:
        if a is not None and a.dtype not in (np.uint8, np.int8):
            _fail(node, f"input type {a.dtype} not supported (uint8/int8)")


@op("MatMulInteger")
def _matmul_integer(node, a, b, a_zp=None, b_zp=None):
    _check_8bit(node, a, b)
    a64, b64 = a.astype(np.int64), b.astype(np.int64)
    if a_zp is not None:
        za = np.asarray(a_zp, np.int64)
        a64 = a64 - (za.reshape(()) if za.size == 1 else za.reshape(-1, 1))   # per row (M,)
    if b_zp is not None:
        b64 = b64 - _col_param(b_zp).astype(np.int64)
    return _wrap_int32(_int_matmul(a64, b64))


@op("QLinearMatMul")
def _qlinear_matmul(node, a, sa, za, b, sb, zb, sy, zy):
    _check_8bit(node, a, b, za, zb, zy)
    a64 = a.astype(np.int64) - _zp(za)
    b64 = b.astype(np.int64) - (0 if zb is None else _col_param(zb).astype(np.int64))
    acc = _int_matmul(a64, b64)
    # ONNX Runtime's float32 scale, in its order: (sa * sb) / sy
    scale = (np.float32(_scalar(sa)) * _col_param(sb).astype(np.float32)) / np.float32(_scalar(sy))
    return _requant(acc, scale, _zp(zy), a.dtype if zy is None else zy.dtype)


def _conv_integer_acc(node, x, zx, w, zw):
    """Exact int64 convolution of (x - zx) by (w - zw); padding holds zx (so adds 0)."""
    xs = x.astype(np.float64) - _zp(zx)
    ws = w.astype(np.float64)
    if zw is not None:
        zw = np.asarray(zw, np.float64)
        ws = ws - (zw.reshape(()) if zw.size == 1 else zw.reshape((-1,) + (1,) * (w.ndim - 1)))
    # float64 holds the exact integers; products < 2**17, sums far below 2**53
    return _conv(node, xs, ws).astype(np.int64)


@op("ConvInteger", attrs=_CONV_ATTRS, check=_check_auto_pad)
def _conv_integer(node, x, w, x_zp=None, w_zp=None):
    _check_8bit(node, x, w)
    return _wrap_int32(_conv_integer_acc(node, x, x_zp, w, w_zp))


@op("QLinearConv", attrs=_CONV_ATTRS, check=_check_auto_pad)
def _qlinear_conv(node, x, sx, zx, w, sw, zw, sy, zy, b=None):
    _check_8bit(node, x, w, zx, zw, zy)
    acc = _conv_integer_acc(node, x, zx, w, zw)
    if b is not None:
        acc = acc + _channel_shape(acc, b).astype(np.int64)
    sw = np.asarray(sw, np.float32)
    scale = (np.float32(_scalar(sx)) * sw.reshape(-1)) / np.float32(_scalar(sy))
    scale = scale.reshape(()) if scale.size == 1 else _channel_shape(acc, scale)
    return _requant(acc, scale, _zp(zy), x.dtype if zy is None else zy.dtype)


# ------------------------------------------------------------ com.microsoft (ORT) ops
#
# As onnxruntime's quantizer writes them (docs/ContribOperators.md of onnxruntime).
# Where onnxruntime's exact arithmetic is a lookup table built by dequantize -> float32
# op -> quantize (QLinearSigmoid, QLinearLeakyRelu, QLinearConcat), the same steps here
# give the same table. QLinearAdd/QLinearMul are computed the same way: dequantize ->
# float32 op -> quantize (round half to even, saturate); onnxruntime's SIMD kernels fold
# the scales differently and can differ by one step on ties.

MS = "com.microsoft"


def _dequant(x, s, z):
    """float32 scale * (x - zero point), onnxruntime's lookup-table order."""
    return np.float32(_scalar(s)) * (x.astype(np.int32) - _zp(z)).astype(np.float32)


def _quant(f, s, z, dtype):
    return _saturate(np.rint(np.asarray(f, np.float32) / np.float32(_scalar(s))).astype(np.float64) + _zp(z),
                     dtype)


@op("QLinearAdd", domain=MS)
def _qlinear_add(node, a, sa, za, b, sb, zb, sc, zc=None):
    _check_8bit(node, a, b)
    return _quant(_dequant(a, sa, za) + _dequant(b, sb, zb), sc, zc, a.dtype)


@op("QLinearMul", domain=MS)
def _qlinear_mul(node, a, sa, za, b, sb, zb, sc, zc=None):
    _check_8bit(node, a, b)
    return _quant(_dequant(a, sa, za) * _dequant(b, sb, zb), sc, zc, a.dtype)


@op("QLinearSigmoid", domain=MS)
def _qlinear_sigmoid(node, x, sx, zx, sy, zy=None):
    _check_8bit(node, x)
    return _quant(_sigmoid(_dequant(x, sx, zx)), sy, zy, x.dtype)


@op("QLinearLeakyRelu", domain=MS, attrs=("alpha",))
def _qlinear_leaky_relu(node, x, sx, zx, sy, zy=None):
    _check_8bit(node, x)
    f = _dequant(x, sx, zx)
    return _quant(np.where(f >= 0, f, f * np.float32(node.attrs.get("alpha", 0.01))), sy, zy, x.dtype)


@op("QLinearConcat", domain=MS, attrs=("axis",))
def _qlinear_concat(node, sy, zy, *triples):
    if len(triples) % 3:
        _fail(node, "inputs after Y_scale, Y_zero_point must be (X, X_scale, X_zero_point) triples")
    xs = triples[0::3]
    _check_8bit(node, *xs)
    axis = _axis(node, node.attrs["axis"], xs[0].ndim)
    dtype = zy.dtype
    parts = []
    for x, s, z in zip(xs, triples[1::3], triples[2::3]):
        if float(_scalar(s)) == float(_scalar(sy)) and _zp(z) == _zp(zy):
            parts.append(x.astype(dtype))     # same quantization: copied (onnxruntime too)
        else:
            parts.append(_quant(_dequant(x, s, z), sy, zy, dtype))
    return np.concatenate(parts, axis=axis)


@op("QLinearGlobalAveragePool", domain=MS, attrs=("channels_last",),
    check=_check_known(("channels_last", 0), (0, 1), "channels_last"))
def _qlinear_global_average_pool(node, x, sx, zx, sy, zy):
    # onnxruntime's MLAS (x86 and portable code): an exact int32 sum minus
    # zero_point * image_size, times the float32 scale x_scale / (y_scale * image_size),
    # rounded half to even, plus y_zero_point, saturated
    _check_8bit(node, x)
    if x.ndim < 3:
        _fail(node, f"input must have rank >= 3, got shape {x.shape}")
    last = bool(node.attrs.get("channels_last", 0))
    axes = tuple(range(1, x.ndim - 1)) if last else tuple(range(2, x.ndim))
    size = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    acc = np.sum(x.astype(np.int64), axis=axes, keepdims=True) - _zp(zx) * size
    scale = np.float32(_scalar(sx)) / (np.float32(_scalar(sy)) * np.float32(size))
    return _requant(acc, scale, _zp(zy), x.dtype)


@op("QGemm", domain=MS, attrs=("alpha", "transA", "transB"))
def _qgemm(node, a, sa, za, b, sb, zb, c=None, sy=None, zy=None):
    # onnxruntime: int32 acc = (A - za)(B - zb) + C; scale = alpha * sa * sb[n] (float32,
    # in that order), / y_scale when the output is quantized; float output = acc * scale
    _check_8bit(node, a, b)
    if node.attrs.get("transA", 0):
        a = a.T
    if node.attrs.get("transB", 0):
        b = b.T
    if a.ndim != 2 or b.ndim != 2:
        _fail(node, f"QGemm needs 2-D A and B, got {a.shape} and {b.shape}")
    acc = _int_matmul(a.astype(np.int64) - _zp(za), b.astype(np.int64) - _col_param(zb).astype(np.int64))
    if c is not None:
        acc = acc + c.astype(np.int64)
    scale = np.float32(node.attrs.get("alpha", 1.0)) * np.float32(_scalar(sa)) * _col_param(sb).astype(np.float32)
    if sy is None:
        return _wrap_int32(acc).astype(np.float32) * scale
    scale = scale / np.float32(_scalar(sy))
    return _requant(acc, scale, _zp(zy), np.dtype(np.uint8) if zy is None else zy.dtype)
