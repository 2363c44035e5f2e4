"""Elementwise math: unary functions, arithmetic, variadic Max/Min/Sum/Mean, Clip,
Identity and Dropout."""
from __future__ import annotations

import numpy as np

from ...validate import fail
from .common import binary_op, compute_dtype, erf, scalar, unary_op
from .registry import op


unary_op("Abs", lambda n, x: np.abs(x))
unary_op("Neg", lambda n, x: np.negative(x))
unary_op("Exp", lambda n, x: np.exp(x), True)
unary_op("Log", lambda n, x: np.log(x), True)
unary_op("Sqrt", lambda n, x: np.sqrt(x), True)
unary_op("Reciprocal", lambda n, x: np.reciprocal(x), True)
unary_op("Floor", lambda n, x: np.floor(x), True)
unary_op("Ceil", lambda n, x: np.ceil(x), True)
unary_op("Round", lambda n, x: np.round(x), True)          # half to even, like ONNX
unary_op("Sign", lambda n, x: np.sign(x))
unary_op("Tanh", lambda n, x: np.tanh(x), True)
unary_op("Sin", lambda n, x: np.sin(x), True)
unary_op("Cos", lambda n, x: np.cos(x), True)
unary_op("Tan", lambda n, x: np.tan(x), True)
unary_op("Asin", lambda n, x: np.arcsin(x), True)
unary_op("Acos", lambda n, x: np.arccos(x), True)
unary_op("Atan", lambda n, x: np.arctan(x), True)
unary_op("Sinh", lambda n, x: np.sinh(x), True)
unary_op("Cosh", lambda n, x: np.cosh(x), True)
unary_op("Asinh", lambda n, x: np.arcsinh(x), True)
unary_op("Acosh", lambda n, x: np.arccosh(x), True)
unary_op("Atanh", lambda n, x: np.arctanh(x), True)
unary_op("Erf", lambda n, x: erf(x), True)

binary_op("Add", lambda n, a, b: np.add(a, b))
binary_op("Sub", lambda n, a, b: np.subtract(a, b))
binary_op("Mul", lambda n, a, b: np.multiply(a, b))


@op("Identity")
def _identity(node, x):
    return x


@op("Dropout", attrs=("seed",))
def _dropout(node, x, ratio=None, training_mode=None):
    # inference: the identity; training with ratio 0 is the identity too. Training with
    # a positive ratio is random and not reproducible against anything: refused.
    if training_mode is not None and bool(scalar(training_mode)) and float(scalar(ratio, 0.5)) != 0.0:
        fail(node, "training_mode=True with a non-zero ratio (random dropout) is not supported")
    if len(node.outputs) > 1:
        return x, np.ones(x.shape, bool)
    return x


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
        w = compute_dtype(a.dtype)
        return np.power(a.astype(w), b.astype(w)).astype(a.dtype)
    if b.dtype.kind in "iu" and not np.any(b < 0):
        return np.power(a.astype(np.int64), b.astype(np.int64)).astype(a.dtype)
    return np.power(a.astype(np.float64), b.astype(np.float64)).astype(a.dtype)


def _variadic(name, fn, mean=False):
    def impl(node, *xs):
        xs = [x for x in xs if x is not None]
        dtype = xs[0].dtype
        if mean or (name == "Sum" and dtype == np.float16):
            acc = xs[0].astype(compute_dtype(dtype))
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
