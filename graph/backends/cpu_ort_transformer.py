"""Native com.microsoft transformer operators for the cpu backend (registered into
:data:`cpu.KERNELS`; kernels/transformer.c through ``qkernels._native``):
``SkipLayerNormalization`` (float32, float16: residual + bias + LayerNorm in one pass) and
``Attention`` (float32: the packed QKV projection on the float GEMM with the weights packed
once, then the attention core per batch and head in native code).

What a kernel does not take (other dtypes or ranks, past/present, attention_bias, shapes
the node's constants do not fit) runs on the reference operator
(graph/backends/reference/ort_transformer.py), which also says what is wrong with bad input.
"""
from __future__ import annotations

from functools import partial

import numpy as np

from ... import _api, _dispatch, _float, _native
from ..ir import Graph, Node
from .cpu import _F16, _F32, Runner, _NotServed, _bind_gemm, _const, _fallback, _inputs, kernel
from .reference.ort_transformer import additive_mask


def _skip_rows(x: np.ndarray, skip: np.ndarray) -> np.ndarray:
    """skip as the (rows, n) array the kernel reads row r % rows of, or _NotServed."""
    n = x.shape[-1]
    if skip.shape == x.shape or x.ndim == 3 and skip.shape in ((1,) + x.shape[1:], x.shape[1:]):
        return np.ascontiguousarray(skip).reshape(-1, n)
    raise _NotServed


@kernel("com.microsoft::SkipLayerNormalization", attrs=("epsilon",))
def _make_skip_layer_norm(node: Node, graph: Graph) -> Runner | None:
    """x + skip (+ bias) in float32, then LayerNormalization over the last axis (float64
    statistics, rounded once, as the native LayerNormalization); the optional outputs
    mean, inv_std_var (float32 (..., 1)) and input_skip_bias_sum."""
    eps = float(np.float32(node.attrs.get("epsilon", 1e-12)))
    names = list(node.outputs) + [""] * (4 - len(node.outputs))
    xn, sn, gn, bn, biasn = _inputs(node, 5)

    def vector(v, x):
        if v is None:
            return None
        if v.dtype != x.dtype or v.size != x.shape[-1] or v.ndim != 1:
            raise _NotServed
        return np.ascontiguousarray(v)

    def params(x, skip, gamma, beta, bias):
        if x is None or x.dtype not in (_F32, _F16) or x.ndim not in (2, 3) or x.size == 0 \
                or skip is None or skip.dtype != x.dtype or gamma is None:
            raise _NotServed
        return _skip_rows(x, skip), vector(gamma, x), vector(beta, x), vector(bias, x)

    def run(values):
        x = values[xn]
        skip, gamma, beta, bias = params(x, values[sn], values[gn], values.get(bn) if bn else None,
                                         values.get(biasn) if biasn else None)
        n = x.shape[-1]
        x2 = np.ascontiguousarray(x).reshape(-1, n)
        y = np.empty(x.shape, x.dtype)
        stat = x.shape[:-1] + (1,)
        total = np.empty(x.shape, x.dtype) if names[3] else None
        mean = np.empty(stat, _F32) if names[1] else None
        inv = np.empty(stat, _F32) if names[2] else None
        _native.skip_layer_norm(x2, skip, bias, gamma, beta, eps, y.reshape(-1, n),
                                None if total is None else total.reshape(-1, n),
                                None if mean is None else mean.reshape(-1), None if inv is None else inv.reshape(-1))
        return {k: v for k, v in zip(names, (y, mean, inv, total)) if k}

    def bind(ins, outs):
        ins = list(ins) + [None] * (5 - len(ins))
        x, y = ins[0], outs[0]
        if x is None or ins[1] is None or not x.flags.c_contiguous or not ins[1].flags.c_contiguous:
            return None
        skip, gamma, beta, bias = params(x, ins[1], ins[2], ins[3], ins[4])
        if any(v is not None and not np.shares_memory(v, o) for v, o in ((gamma, ins[2]), (beta, ins[3]),
                                                                           (bias, ins[4]), (skip, ins[1]))):
            return None                     # a copy made now would go stale
        outs = list(outs) + [None] * (4 - len(outs))
        n = x.shape[-1]
        if y.shape != x.shape or y.dtype != x.dtype or not y.flags.c_contiguous:
            return None
        extra = []
        for k, o, dt, shape in zip(names[1:], outs[1:], (_F32, _F32, x.dtype),
                                   (x.shape[:-1] + (1,),) * 2 + (x.shape,)):
            if not k:
                extra.append(None)
                continue
            if o is None or o.dtype != dt or o.shape != shape or not o.flags.c_contiguous:
                return None
            extra.append(o.reshape(-1, n) if dt == x.dtype and shape == x.shape else o.reshape(-1))
        return _native.skip_layer_norm(x.reshape(-1, n), skip, bias, gamma, beta, eps, y.reshape(-1, n),
                                       extra[2], extra[0], extra[1], bind=True)
    run.bind = bind
    return _fallback(node, graph, run)


@kernel("com.microsoft::Attention",
        attrs=("num_heads", "qkv_hidden_sizes", "unidirectional", "mask_filter_value", "scale"))
def _make_attention(node: Node, graph: Graph) -> Runner | None:
    """float32 self-attention with constant packed weights (and bias): the QKV projection
    on the float GEMM (weights packed once, bias in its output stage), the additive mask
    as the reference builds it, the per-head core native. With past, attention_bias or
    past_sequence_length the reference runs."""
    xn, wn, bn, mn = _inputs(node, 4)
    if any(node.inputs[4:]) or len([o for o in node.outputs if o]) > 1:
        return None
    w, bias = _const(graph, wn), _const(graph, bn) if bn else None
    heads = int(node.attrs.get("num_heads", 0))
    if w is None or w.dtype != _F32 or w.ndim != 2 or heads < 1 or (bn and (bias is None or bias.dtype != _F32)):
        return None
    sizes = [int(v) for v in node.attrs.get("qkv_hidden_sizes", [])] or [w.shape[1] // 3] * 3
    if len(sizes) != 3 or sum(sizes) != w.shape[1] or sizes[0] != sizes[1] or any(h % heads or h < heads for h in sizes):
        return None                                         # the reference says what is wrong
    if bias is not None and bias.shape != (w.shape[1],):
        return None
    pw = _float.PACKED[_F32](np.ascontiguousarray(w), bias=None if bias is None else bias.astype(_F32), copy=False)
    uni = int(node.attrs.get("unidirectional", 0))
    filt = float(node.attrs.get("mask_filter_value", -10000.0))
    scale = float(np.float32(node.attrs.get("scale", 0.0) or 1 / np.sqrt(sizes[0] // heads)))
    result = node.outputs[0]
    cut = np.cumsum(sizes)

    def run(values):
        x = values[xn]
        if x.dtype != _F32 or x.ndim != 3 or x.shape[2] != w.shape[0] or x.size == 0:
            raise _NotServed
        b, s, _ = x.shape
        index = values[mn] if mn else None
        mask = None
        if index is not None or uni:
            try:
                mask = additive_mask(node, index, b, s, s, 0, uni, filt)
            except Exception:
                raise _NotServed from None                  # the reference says why
        qkv = _api.matmul(np.ascontiguousarray(x).reshape(b * s, -1), pw)
        out = np.empty((b, s, sizes[2]), _F32)
        _native.attention(_dispatch.isa_index(), qkv[:, :cut[0]], qkv[:, cut[0]:cut[1]], qkv[:, cut[1]:], b, heads,
                          mask, scale, out.reshape(b * s, -1), _dispatch.get_num_threads())
        return {result: out}

    def bind(ins, outs):
        """The plan's steps: the bound QKV GEMM into a buffer of this bind's own, the mask
        rebuilt from mask_index's buffer (a Python step: its values change per run), the
        bound attention core into the output."""
        x, y = ins[0], outs[0]
        if x is None or x.dtype != _F32 or x.ndim != 3 or x.shape[2] != w.shape[0] or x.size == 0 \
                or not x.flags.c_contiguous or len(outs) != 1 or y.dtype != _F32 or not y.flags.c_contiguous:
            return None
        b, s, _ = x.shape
        if y.shape != (b, s, sizes[2]):
            return None
        qkv = np.empty((b * s, w.shape[1]), _F32)
        steps = [_bind_gemm(x.reshape(b * s, -1), pw, None, qkv)]
        index = ins[3] if len(ins) > 3 else None
        mask = None
        if index is not None or uni:
            mask = additive_mask(node, index, b, s, s, 0, uni, filt)     # checks index's shape and dtype now
            if index is not None:
                steps.append(partial(_fill_mask, node, index, mask, uni, filt))
        steps.append(_native.attention(_dispatch.isa_index(), qkv[:, :cut[0]], qkv[:, cut[0]:cut[1]], qkv[:, cut[1]:],
                                       b, heads, mask, scale, y.reshape(b * s, -1), _dispatch.get_num_threads(),
                                       bind=True))
        return None if steps[0] is None else steps
    run.bind = bind
    run.owns = {wn: lambda: pw.data}
    return _fallback(node, graph, run)


def _fill_mask(node: Node, index: np.ndarray, mask: np.ndarray, uni: int, filt: float) -> None:
    b, s, t = mask.shape
    mask[...] = additive_mask(node, index, b, s, t, 0, uni, filt)
