"""numpy implementations of the ONNX operators (registered into reference.OPS)."""
from __future__ import annotations

import numpy as np

from .reference import op


@op("Identity", "Dropout")
def _identity(node, x, *rest):
    if node.op_type == "Dropout" and len(node.outputs) > 1:
        return x, np.ones(x.shape, bool)
    return x


@op("Relu")
def _relu(node, x):
    return np.maximum(x, x.dtype.type(0))


@op("Add")
def _add(node, a, b):
    return a + b


@op("MatMul")
def _matmul(node, a, b):
    return np.matmul(a, b)
