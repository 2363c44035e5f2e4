"""Native float operators of transformer encoders in the cpu backend: the Linear layer
with its bias and residual fused (``qkernels::MatMulBias``, graph/rewrite.py
fuse_linear_bias), with its GELU fused (``qkernels::MatMulGelu``, fuse_linear_gelu):
the float GEMM whose output stage runs the native Gelu loop (kernels/eltwise.c) over each
row of its tile while it is in cache, fp32 and fp16 (fp16 rounds once, after the GELU);
attention's softmax with its scaling and additive mask (``qkernels::MaskedSoftmax``, made
by fuse_attention_softmax) in one native pass per row; Gather of an embedding table by
indices computed at run time. Importing this module registers the makers (graph/backends/__init__.py)."""
from __future__ import annotations

from functools import partial

import numpy as np

from ... import _dispatch, _float, _native
from ..ir import Graph, Node
from .cpu import _F16, _F32, _NotServed, _const, _fallback, _inputs, kernel
from .cpu_eltwise import unary_code

_FLOATS = (_F16, _F32)


@kernel("qkernels::MatMulGelu", attrs=("activation", "approximate"))
def _make_matmul_gelu(node: Node, graph: Graph):
    """MatMul by constant weights (K, N) of the input's float dtype, a constant bias, the
    GELU: one GEMM over the input's rows (any leading dimensions), the GELU in its output stage."""
    a, w, b = _inputs(node, 3)
    W, B = _const(graph, w), _const(graph, b)
    op = unary_code(Node(node.name, "Gelu", "", [a], [], {"approximate": node.attrs.get("approximate", "none")}))
    if W is None or W.dtype not in _FLOATS or W.ndim != 2 or op is None or (b and B is None) \
            or node.attrs.get("activation") != "Gelu":
        return None
    return _linear(node, graph, a, w, W, B, act=op)


@kernel("qkernels::MatMulBias")
def _make_matmul_bias(node: Node, graph: Graph):
    """float32 MatMul by constant weights (K, N), its constant bias and the residual
    after it (when given): one GEMM over the input's rows, bias then residual added in its
    output stage (each a float32 rounding, as the Adds make)."""
    a, w, b, r = _inputs(node, 4)
    W, B = _const(graph, w), _const(graph, b)
    if W is None or W.dtype != _F32 or W.ndim != 2 or B is None or B.dtype != _F32 or B.size != W.shape[1]:
        return None
    return _linear(node, graph, a, w, W, B, residual=r)


def _linear(node: Node, graph: Graph, a: str, w: str, W: np.ndarray, B, residual: str = "", act: int | None = None):
    """The runner of a Linear layer: input ``a`` (..., K) times the constant ``W`` (K, N) of
    its float dtype, packed once (and owned: see cpu._fallback), plus the bias ``B`` (or
    None), then (float32) the input ``residual`` when named, then the elementwise
    activation ``act`` (an eltwise op code): one GEMM over the input's rows, all of it in
    the output stage."""
    k, n = W.shape
    dtype, result = W.dtype, node.outputs[0]
    bias = None if B is None else np.ascontiguousarray(np.broadcast_to(B.astype(np.float32).reshape(-1), (n,)))
    pw = _float.PACKED[dtype](W, bias=bias, copy=False)     # (a read-only constant of the session)
    bias = pw.bias if pw.bias is not None else _float._bias(None, n)

    def rows(x, y, res):
        """(A, Y, residual or None) as (M, K), (M, N), (M, N) views of the arrays, or None."""
        if x.dtype != dtype or x.ndim < 1 or x.shape[-1] != k or y.shape != x.shape[:-1] + (n,) or y.dtype != dtype:
            return None
        if res is not None:
            if res.dtype != dtype:
                return None
            try:                        # a residual that broadcasts: rows at stride 0 where it repeats
                res = np.broadcast_to(res, y.shape)
            except ValueError:
                return None
        got = [v.reshape(-1, v.shape[-1]) if v is not None else None for v in (x, y, res)]
        if any(v is not None and v.size and not np.shares_memory(v, o) for v, o in zip(got, (x, y, res))):
            return None
        if got[2] is not None and ((n > 1 and got[2].strides[1] != 4) or got[2].strides[0] < 0):
            return None                 # (the output stage reads residual rows of contiguous columns)
        return got

    def gemm(got, bind=False):
        return _float.gemm2d(got[0], pw, bias, -np.inf, np.inf, got[1], bind, residual=got[2],
                             act=None if act is None else (_dispatch.isa_index(), act))

    def run(values):
        x = values[a]
        y = np.empty(x.shape[:-1] + (n,), dtype) if x.ndim >= 1 else None
        got = rows(x, y, values[residual] if residual else None) if y is not None else None
        if got is None:
            raise _NotServed
        if y.size:
            gemm(got)
        return {result: y}

    def bind(ins, outs):
        ins = list(ins) + [None] * 4
        x, y = ins[0], outs[0]
        if x is None or not x.size or (residual and ins[3] is None):
            return None
        got = rows(x, y, ins[3] if residual else None)
        return None if got is None else gemm(got, bind=True)
    run.bind = bind
    run.owns = {w: lambda: pw.data}
    return _fallback(node, graph, run)


def _mask_rows(x: np.ndarray, mask: np.ndarray):
    """(C-contiguous mask, int64 element offset of each row of x's mask, step 0 or 1) for
    a mask that broadcasts to x's shape; None when it does not."""
    try:
        if np.broadcast_shapes(x.shape, mask.shape) != x.shape:
            return None
    except ValueError:
        return None
    mask = np.ascontiguousarray(mask)
    strides = np.broadcast_to(mask, x.shape).strides
    step = strides[-1] // mask.itemsize
    lead = x.shape[:-1]
    idx = np.indices(lead, dtype=np.int64).reshape(len(lead), -1)
    off = (idx * (np.array(strides[:-1], np.int64) // mask.itemsize)[:, None]).sum(0) if lead \
        else np.zeros(1, np.int64)
    return mask, np.ascontiguousarray(off, np.int64), step


@kernel("qkernels::MaskedSoftmax", attrs=("scale", "div"))
def _make_masked_softmax(node: Node, graph: Graph):
    """Attention's Softmax(x / scale + mask) along the last axis, float32 / float16, one
    native pass per row (the scaling and the mask's row added as each row is read)."""
    scale, div, result = float(node.attrs.get("scale", 1.0)), bool(node.attrs.get("div", 0)), node.outputs[0]

    def call(x, mask, y, bind=False):
        if x.dtype not in _FLOATS or mask.dtype != x.dtype or x.ndim == 0 or x.shape[-1] == 0:
            raise _NotServed
        got = _mask_rows(x, mask)
        if got is None:
            raise _NotServed
        m, off, step = got
        s = float(x.dtype.type(scale))     # the reference's constant, in x's dtype
        return _native.softmax_masked(_dispatch.isa_index(), x.reshape(-1), m, off, step, y.reshape(-1),
                                      off.size, x.shape[-1], s, div, bind)

    def run(values):
        x = np.ascontiguousarray(values[node.inputs[0]])
        y = np.empty_like(x)
        call(x, values[node.inputs[1]], y)
        return {result: y}

    def bind(ins, outs):
        x, mask, y = ins[0], ins[1], outs[0]
        if x is None or mask is None or not x.flags.c_contiguous or not y.flags.c_contiguous \
                or y.shape != x.shape or y.dtype != x.dtype:
            return None
        return call(x, mask, y, bind=True)
    run.bind = bind
    return _fallback(node, graph, run)


@kernel("Gather", attrs=("axis",))
def _make_gather_rows(node: Node, graph: Graph):
    """Gather along axis 0 of a constant table (an embedding) by indices computed at run
    time (int32/int64; negative from the end; one out of range: IndexError): each row
    copied natively. Other Gathers (constant indices, computed data) are left to the
    reference operator and its binder."""
    data, idx_name = _inputs(node, 2)
    table = _const(graph, data)
    axis = node.attrs.get("axis", 0)
    if table is None or table.ndim == 0 or table.shape[0] == 0 or axis not in (0, -table.ndim) \
            or _const(graph, idx_name) is not None:
        return None
    table = np.ascontiguousarray(table)
    result, rows = node.outputs[0], table.shape[0]

    def indices(idx):
        idx = np.asarray(idx)
        if idx.dtype.kind not in "iu" or idx.dtype == np.uint64:   # (uint64 past int64: the reference's error)
            raise _NotServed
        return idx.astype(np.int64, order="C", copy=False)   # (0-d stays 0-d)

    def run(values):
        idx = indices(values[idx_name])
        y = np.empty(idx.shape + table.shape[1:], table.dtype)
        _native.gather_rows(table, idx, y)
        return {result: y}

    def bind(ins, outs):
        idx, y = ins[1], outs[0]
        if idx is None or idx.dtype != np.int64 or not idx.flags.c_contiguous or y.dtype != table.dtype \
                or y.shape != idx.shape + table.shape[1:] or not y.flags.c_contiguous:
            return None
        return [partial(_native.gather_rows_check, idx, rows), _native.gather_rows(table, idx, y, bind=True)]
    run.bind = bind
    return _fallback(node, graph, run)


@kernel("qkernels::TransposedMatMul", attrs=("perm_a", "perm_b", "perm_y"))
def _make_transposed_matmul(node: Node, graph: Graph):
    """MatMul of two float activations read through their Transposes' permuted strides,
    its rows written through the output Transpose's (the batched float GEMM,
    _float.batched_matmul: no copy)."""
    pa, pb, py = (node.attrs.get(k) for k in ("perm_a", "perm_b", "perm_y"))
    result = node.outputs[0]

    def operands(a, b):
        if a is None or b is None or (pa and len(pa) != a.ndim) or (pb and len(pb) != b.ndim):
            raise _NotServed
        a, b = (np.transpose(a, pa) if pa else a), (np.transpose(b, pb) if pb else b)
        if a.dtype not in _FLOATS or b.dtype != a.dtype or a.ndim < 2 or b.ndim < 2:
            raise _NotServed
        return a, b

    def product_view(y):
        """The product's layout as a view of the node's output y."""
        return np.transpose(y, np.argsort(py)) if py else y

    def run(values):
        a, b = operands(values[node.inputs[0]], values[node.inputs[1]])
        shape = np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])
        if py and len(py) != len(shape):
            raise _NotServed
        y = np.empty(tuple(shape[p] for p in py) if py else shape, a.dtype)
        _float.batched_matmul(a, b, product_view(y))
        return {result: y}

    def bind(ins, outs):
        a, b = operands(ins[0], ins[1])
        y = outs[0]
        if y.dtype != a.dtype or not y.flags.c_contiguous or (py and len(py) != y.ndim):
            return None
        return _float.batched_matmul(a, b, product_view(y), bind=True)
    run.bind = bind
    return _fallback(node, graph, run)
