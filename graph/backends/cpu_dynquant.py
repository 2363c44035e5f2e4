"""Dynamically quantized matrix products on the cpu backend: com.microsoft
``DynamicQuantizeMatMul`` (and qkernels' own, whose ``per_row=1`` quantizes each row of
the activations with parameters of its own) (what graph/rewrite.py's ``fuse_dynamic_quantize`` makes of
ONNX Runtime's quantize_dynamic chain DynamicQuantizeLinear -> MatMulInteger -> Cast ->
Mul -> Add, and what ORT's own optimizer writes) and ``MatMulIntegerToFloat``, on one
native call each (qkernels._dynamic: the activations quantized on the fly, the int8
GEMM, the dequantizing pass), the weights packed once when the node is made. The same
bits as the reference operators (graph/backends/reference/ort_contrib.py); activations
that cannot be quantized (NaN, infinity, a range without a float32 scale) run there.

Importing this module registers the makers (graph/backends/__init__.py)."""
from __future__ import annotations

import numpy as np

from ... import _dynamic
from ..._common import rows_view
from ..._gemm import pack_weights
from ..._qtensor import QTensor
from ..ir import Graph, Node
from .cpu import _F32, _INT8, _NotServed, _const, _fallback, _inputs, kernel
from .reference import run_node


def _weights(graph: Graph, b: str, sb: str, zb: str, bias: str):
    """(packed weights, float32 bias or None) of constant B (K, N) int8/uint8, b_scale
    and b_zero_point per tensor or per column, bias (N,); None when they are not so."""
    B, SB = _const(graph, b), _const(graph, sb)
    ZB = _const(graph, zb) if zb else None
    BIAS = _const(graph, bias) if bias else None
    if B is None or B.ndim != 2 or B.dtype not in _INT8 or SB is None or SB.dtype != _F32 \
            or (zb and (ZB is None or ZB.dtype != B.dtype)) or (bias and (BIAS is None or BIAS.dtype != _F32)):
        return None
    n = B.shape[1]
    per_col = SB.size != 1 or (ZB is not None and ZB.size != 1)
    if SB.size not in (1, n) or (ZB is not None and ZB.size not in (1, n)) or (BIAS is not None and BIAS.shape != (n,)):
        return None
    zero = np.zeros((), B.dtype) if ZB is None else ZB
    if per_col:
        scale = np.broadcast_to(SB.reshape(-1), (n,)).astype(np.float32)
        zp = np.broadcast_to(zero.reshape(-1), (n,)).astype(B.dtype)
        q = QTensor(B, scale, zp, axis=1)
    else:
        q = QTensor(B, float(SB.reshape(())), int(zero.reshape(())))
    return pack_weights(q), (None if BIAS is None else np.ascontiguousarray(BIAS))


@kernel("qkernels::DynamicQuantizeMatMul", attrs=("per_row",))
@kernel("com.microsoft::DynamicQuantizeMatMul", "com.microsoft::MatMulIntegerToFloat")
def _make_dynamic_matmul(node: Node, graph: Graph):
    dynamic = node.op_type == "DynamicQuantizeMatMul"
    per_row = bool(node.attrs.get("per_row", 0))     # qkernels' form: a scale and zero point per row
    if dynamic:
        a, b, sb, zb, bias = _inputs(node, 5)
        sa = za = ""
    else:
        a, b, sa, sb, za, zb, bias = _inputs(node, 7)
    got = _weights(graph, b, sb, zb, bias)
    if got is None:
        return None
    pw, bias_f = got
    k, n = pw.k, pw.n
    result = node.outputs[0]
    # the bound calls of this graph that quantize an input, by (input, per_row): a later
    # node reading the same memory (query, key and value read one LayerNorm) uses their
    # q, sa, za (a plan binds and runs its steps in one order: the first binder runs
    # first, and nothing writes an input before its last reader). A lead keeps its
    # arena alive, so another plan's arena never has its address.
    leads = graph.__dict__.setdefault("_dynamic_leads", {})

    def a_params(sa_v, za_v, dtype):
        """MatMulIntegerToFloat's a_scale / a_zero_point: one float32, one of A's dtype."""
        if sa_v is None or np.size(sa_v) != 1 or sa_v.dtype != _F32 or \
                (za_v is not None and (np.size(za_v) != 1 or za_v.dtype != dtype)):
            raise _NotServed
        return np.float32(sa_v.reshape(())), (0 if za_v is None else int(za_v.reshape(())))

    def make_call(x, y, share=False):
        """The DynamicCall of input x (..., K) and output y (..., N) (views of their
        memory), or None when they are not matrices of rows the call takes in place.
        ``share``: a bound call, which quantizes x once for the nodes that read it."""
        if x.shape[-1:] != (k,) or y.shape != x.shape[:-1] + (n,) or y.dtype != _F32 or not y.flags.writeable \
                or np.may_share_memory(x, y):
            return None
        x2, y2 = rows_view(x), rows_view(y, writeable=True)
        if x2 is None or y2 is None or (n > 1 and y2.strides[1] != 4) or y2.strides[0] < 0:
            return None
        if dynamic:
            if x.dtype != _F32 or (k > 1 and x2.strides[1] != 4):
                return None
            if not share:
                return _dynamic.DynamicCall(pw, x2, y2, bias_f, per_row)
            key, where = (a, per_row), (x2.__array_interface__["data"][0], x2.shape, x2.strides)
            lead = leads.get(key)
            if lead is not None and lead[0] == where:
                return _dynamic.DynamicCall(pw, None, y2, bias_f, lead=lead[1])
            call = _dynamic.DynamicCall(pw, x2, y2, bias_f, per_row)
            leads[key] = (where, call)
            return call
        if x.dtype not in _INT8:
            return None
        return _dynamic.DynamicCall(pw, None, y2, bias_f, q=x2, a_signed=x.dtype == np.int8)

    def run(values):
        x = values[a]
        if x.ndim < 1 or (x.dtype != _F32 if dynamic else x.dtype not in _INT8):
            raise _NotServed
        y = np.empty(x.shape[:-1] + (n,), _F32)
        call = make_call(np.ascontiguousarray(x), y)
        if call is None:
            raise _NotServed
        if not dynamic:
            call.sa[0], call.za[0] = a_params(values[sa], values[za] if za else None, x.dtype)
        try:
            call.run()
        except _dynamic.DynamicQuantError:
            raise _NotServed from None
        return {result: y}

    def bind(ins, outs):
        ins = list(ins) + [None] * 7
        x, y = ins[0], outs[0]
        if x is None or x.ndim < 1:
            return None
        call = make_call(x, y, share=dynamic)
        if call is None:
            return None
        scope = {name: v for name, v in zip(node.inputs, ins) if name}
        bound = call.bound
        if dynamic:     # a native step of the plan's loop; activations it cannot quantize: the reference
            bound.fallback = lambda: np.copyto(y, run_node(node, scope)[result])
            return bound

        def step():
            try:
                if not dynamic:
                    call.sa[0], call.za[0] = a_params(ins[2], ins[4], x.dtype)
                bound()
                ok = not bound.status
            except _NotServed:
                ok = False
            if not ok:       # activations without a float32 quantization, odd parameters: the reference
                np.copyto(y, run_node(node, scope)[result])
        return step
    run.bind = bind
    return _fallback(node, graph, run)
