"""Activations: Relu and its relatives, Sigmoid, Gelu, PRelu and the softmax family."""
from __future__ import annotations

import numpy as np

from .common import attr, check_known, erf, norm_axis, require_float, sigmoid, unary_op, widened
from .registry import op


unary_op("Relu", lambda n, x: np.maximum(x, x.dtype.type(0)))
unary_op("Sigmoid", lambda n, x: sigmoid(x), True)
unary_op("Softsign", lambda n, x: x / (1 + np.abs(x)), True)
unary_op("Softplus", lambda n, x: np.logaddexp(x.dtype.type(0), x), True)
unary_op("Mish", lambda n, x: x * np.tanh(np.logaddexp(x.dtype.type(0), x)), True)
unary_op("LeakyRelu", lambda n, x: np.where(x < 0, x * x.dtype.type(attr(n, "alpha", 0.01)), x), True,
         attrs=("alpha",))
unary_op("ThresholdedRelu", lambda n, x: np.where(x > attr(n, "alpha", 1.0), x, 0), True, attrs=("alpha",))
unary_op("Elu", lambda n, x: np.where(x < 0, attr(n, "alpha", 1.0) * np.expm1(x), x), True, attrs=("alpha",))
unary_op("Celu", lambda n, x: np.maximum(0, x) + np.minimum(0, attr(n, "alpha", 1.0)
                                                              * np.expm1(x / attr(n, "alpha", 1.0))),
         True, attrs=("alpha",))
unary_op("Selu", lambda n, x: attr(n, "gamma", 1.05070102214813232421875)
         * np.where(x <= 0, attr(n, "alpha", 1.67326319217681884765625) * np.expm1(x), x), True,
         attrs=("alpha", "gamma"))
unary_op("HardSigmoid", lambda n, x: np.clip(attr(n, "alpha", 0.2) * x + attr(n, "beta", 0.5), 0, 1), True,
         attrs=("alpha", "beta"))
unary_op("HardSwish", lambda n, x: x * np.clip(x / 6 + 0.5, 0, 1), True)
unary_op("Swish", lambda n, x: x * sigmoid(x * x.dtype.type(attr(n, "alpha", 1.0))), True, attrs=("alpha",))
unary_op("Shrink", lambda n, x: np.where(x < -attr(n, "lambd", 0.5), x + attr(n, "bias", 0.0),
                                         np.where(x > attr(n, "lambd", 0.5), x - attr(n, "bias", 0.0), 0)),
         attrs=("lambd", "bias"))


def _gelu(node, x):
    if node.attrs.get("approximate", "none") == "tanh":
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1 + erf(x / np.sqrt(2).astype(x.dtype)))


unary_op("Gelu", _gelu, True, attrs=("approximate",),
         check=check_known(("approximate", "none"), ("none", "tanh"), "approximate"))


@op("PRelu")
def _prelu(node, x, slope):
    return np.where(x < 0, x * slope, x).astype(x.dtype)


# ---------------------------------------------------------------------- softmax family

def _softmax_axis(node, x):
    return norm_axis(node, node.attrs.get("axis", -1), x.ndim)


@op("Softmax", attrs=("axis",))
def _softmax(node, x):
    require_float(node, x)
    axis, w = _softmax_axis(node, x), widened(x)
    e = np.exp(w - np.max(w, axis=axis, keepdims=True))
    return (e / np.sum(e, axis=axis, keepdims=True)).astype(x.dtype)


@op("LogSoftmax", attrs=("axis",))
def _log_softmax(node, x):
    require_float(node, x)
    axis, w = _softmax_axis(node, x), widened(x)
    s = w - np.max(w, axis=axis, keepdims=True)
    return (s - np.log(np.sum(np.exp(s), axis=axis, keepdims=True))).astype(x.dtype)


@op("Hardmax", attrs=("axis",))
def _hardmax(node, x):
    axis = _softmax_axis(node, x)
    idx = np.expand_dims(np.argmax(x, axis=axis), axis)
    y = np.zeros_like(x)
    np.put_along_axis(y, idx, 1, axis=axis)
    return y
