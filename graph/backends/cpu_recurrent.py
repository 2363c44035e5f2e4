"""Native float32 RNN, GRU and LSTM of the cpu backend (kernels/recurrent.c through
``qkernels._native.recurrent``): every direction, ``sequence_lens``, both layouts,
peepholes, clip, ``input_forget``, ``linear_before_reset`` and ONNX's whole activation
list (Sigmoid and Tanh on the elementwise ops' approximations, 3 and 2 ulp).

Weights W, R, B and P must be constants: they are packed once, when the node is made.
A call is one bound native step (``_native.BoundRecurrent``): the input projection
x W^T + Wb + Rb of every time step and direction is ONE fp32 GEMM (W of both directions
side by side), then per direction and step h R^T is a GEMM on R packed once (a GRU with
linear_before_reset = 0 splits it: h [Rz Rr]^T, then (r * h) Rh^T) and the gate math
runs in C; no Python per step. The node-by-node runner and the plan's bound call run the
same code. Other dtypes (float16, float64), sequence_lens that are not int32 and
weights that are not constants run the reference operator
(graph/backends/reference/recurrent.py).

com.microsoft DynamicQuantizeLSTM runs the same way on qkernels' integer GEMMs: X (once)
and h (every step) quantized per call in C with onnxruntime's arithmetic, the products
exact with zero point 0 on A, A's zero point folded in afterwards through the weights'
column sums, dequantized as float(acc) * (s_a * s_w), then the LSTM's gate math.

Accuracy: float32 GEMMs (sums in increasing K) and gate math, against the float64
reference: about 1e-6 relative per step, growing with the sequence only as the cell's
own sensitivity; tests/test_recurrent.py holds 2e-5 + 2e-5 |y| on sequences up to 12
steps of values O(1); on the silero VAD stream the speech probability is within 1e-5 of
onnxruntime.
"""
from __future__ import annotations

from functools import partial

import numpy as np

from ... import _api, _dispatch, _float, _gemm, _native
from ..._qtensor import QTensor
from ..._requant import INT32_OUTPUT
from ..errors import ModelError
from ..ir import Graph, Node
from .cpu import _F32, _NotServed, _const, _fallback, _inputs, kernel
from .reference.recurrent import GATES, _KIND_ATTRS, recurrent_spec, sequence_lengths


def _pack(w: np.ndarray, bias: np.ndarray):
    return _api.pack_weights(np.ascontiguousarray(w, _F32), bias=np.ascontiguousarray(bias, _F32))


class _Weights:
    """The node's constant weights, packed: the input projection (both directions side by
    side, biases folded in) and per direction its recurrence GEMM(s)."""

    def __init__(self, spec, W, R, B, P):
        D, H, G = spec.directions, spec.hidden, GATES[spec.kind]
        B = np.zeros((D, 2 * G * H), _F32) if B is None else B
        gru = spec.kind == "GRU"
        xbias, self.r, self.rh = [], [], []
        for d in range(D):
            wb, rb = B[d, :G * H], B[d, G * H:]
            # GRU: Rbh stays with the recurrence (inside r * (h Rh + Rbh), or after (r * h) Rh)
            xbias.append(wb + (np.concatenate([rb[:2 * H], np.zeros(H, _F32)]) if gru else rb))
            if gru and not spec.linear_before_reset:
                self.r.append(_pack(R[d, :2 * H].T, np.zeros(2 * H, _F32)))
                self.rh.append(_pack(R[d, 2 * H:].T, rb[2 * H:]))
            else:
                self.r.append(_pack(R[d].T, np.concatenate([np.zeros(2 * H, _F32), rb[2 * H:]]) if gru
                                    else np.zeros(G * H, _F32)))
                self.rh.append(None)
        self.x = _pack(np.concatenate([W[d].T for d in range(D)], axis=1), np.concatenate(xbias))
        self.p = [None if P is None else np.ascontiguousarray(P[d], _F32) for d in range(D)]

    def bind(self, rows, xw, h, g, rh, rhg):
        """(input projection, per direction the recurrence GEMM(s), None) bound to these arrays."""
        def gemm(a, pw, out):
            return None if pw is None else _float.gemm2d(a, pw, pw.bias, -np.inf, np.inf, out, bind=True)
        return (gemm(rows, self.x, xw), [gemm(h[d], pw, g[d]) for d, pw in enumerate(self.r)],
                [gemm(rh[d], pw, rhg[d]) for d, pw in enumerate(self.rh)], None)


class _QuantWeights:
    """DynamicQuantizeLSTM's int8 / uint8 weights, packed for the integer GEMM with zero
    point 0 on A (X and h are quantized per call, their zero point folded in afterwards
    through the column sums of W - zw and R - zr), with the float terms the dequantization
    needs: per-column scales, column sums, Wb + Rb."""

    def __init__(self, spec, W, R, B, P, w_scale, w_zp, r_scale, r_zp):
        D, H = spec.directions, spec.hidden

        def packed(q, scale, zp):
            cols = q.shape[1]
            scale = np.broadcast_to(scale.reshape(-1, 1), (scale.shape[0], cols // scale.shape[0])).reshape(-1) \
                if scale.ndim == 1 else scale.reshape(-1)
            zp = np.broadcast_to(zp.reshape(-1, 1), (zp.shape[0], cols // zp.shape[0])).reshape(-1) \
                if zp.ndim == 1 else zp.reshape(-1)
            colsum = (q.astype(np.int64) - zp.astype(np.int64)).sum(0).astype(np.int32)
            pw = _gemm.pack_weights(QTensor(np.ascontiguousarray(q), scale.astype(_F32), zp.astype(q.dtype), axis=1))
            return pw, colsum, np.ascontiguousarray(scale, _F32)
        self.x, self.wcs, self.wsw = packed(np.concatenate([W[d] for d in range(D)], axis=1), w_scale, w_zp)
        self.r, self.rcs, self.rsw = zip(*(packed(R[d], r_scale[d:d + 1], r_zp[d:d + 1]) for d in range(D)))
        B = np.zeros((D, 8 * H), _F32) if B is None else B
        self.xb = np.ascontiguousarray(np.concatenate([B[d, :4 * H] + B[d, 4 * H:] for d in range(D)]), _F32)
        self.p = [None if P is None else np.ascontiguousarray(P[d], _F32) for d in range(D)]

    def bind(self, rows, xw, h, g, rh, rhg):
        D, N, H = len(h), h[0].shape[0], h[0].shape[1]
        x = np.ascontiguousarray(rows)
        if x.size and not np.shares_memory(x, rows):
            raise ValueError("X must be C-contiguous to bind")
        xq, xacc = np.empty(x.shape, np.uint8), np.empty(xw.shape, np.int32)
        hq = [np.empty((N, H), np.uint8) for _ in range(D)]
        hacc = [np.empty(g[d].shape, np.int32) for d in range(D)]

        def gemm(pw, a, out):
            return pw.prepare(a.shape[0], False, 0, 1.0, INT32_OUTPUT).run(a, out, bind=True)
        return (gemm(self.x, xq, xacc), [gemm(self.r[d], hq[d], hacc[d]) for d in range(D)], [None] * D,
                (x, xq, xacc, self.wcs, self.wsw, self.xb, hq, hacc, list(self.rcs), list(self.rsw)))


def _state_view(v, layout):
    """A (D, N, H) view of a state tensor in ``layout``."""
    return None if v is None else (v.transpose(1, 0, 2) if layout else v)


def _f32_view(v):
    """``v`` when the native driver reads it in place (float32, last axis contiguous,
    whole-float strides), else a C-contiguous copy."""
    if v is None or (v.dtype == _F32 and (v.shape[-1] <= 1 or v.strides[-1] == 4)
                     and all(s % 4 == 0 for s in v.strides)):
        return v
    return np.ascontiguousarray(v, _F32)


@kernel("RNN", "GRU", "LSTM", attrs=_KIND_ATTRS["LSTM"] + ("linear_before_reset",))
def _make_recurrent(node: Node, graph: Graph):
    w, r, b, p = (_inputs(node, 8)[k] for k in (1, 2, 3, 7))
    W, R = _const(graph, w), _const(graph, r)
    B, P = (_const(graph, n) if n else None for n in (b, p))
    if W is None or R is None or (b and B is None) or (p and P is None) \
            or any(v is not None and v.dtype != _F32 for v in (W, R, B, P)):
        return None
    try:
        spec, _, _, I = recurrent_spec(node, (1, 1, W.shape[-1]) if W.ndim == 3 else (1, 1, 0), W.shape, R.shape,
                                       None if B is None else B.shape, p_shape=None if P is None else P.shape)
    except (ModelError, ValueError):
        return None      # the reference names what is wrong
    return None if I == 0 else _runner(node, graph, spec, I, _Weights(spec, W, R, B, P), W.shape, R.shape)


@kernel("com.microsoft::DynamicQuantizeLSTM", attrs=tuple(a for a in _KIND_ATTRS["LSTM"] if a != "layout"))
def _make_dynamic_quantize_lstm(node: Node, graph: Graph):
    """DynamicQuantizeLSTM with constant weights and quantization parameters: the integer
    GEMMs of qkernels on X and h quantized per call (onnxruntime's arithmetic, in C), the
    gate math of the float LSTM."""
    ins = _inputs(node, 12)
    W, R, B, P, ws, wz, rs, rz = (_const(graph, n) if n else None for n in (ins[1:4] + ins[7:12]))
    if any(v is None for v in (W, R, ws, wz, rs, rz)) or (ins[3] and B is None) or (ins[7] and P is None) \
            or any(v is not None and v.dtype != _F32 for v in (B, P, ws, rs)):
        return None
    try:
        spec, _, _, I = recurrent_spec(node, (1, 1, W.shape[1]) if W.ndim == 3 else (1, 1, 0), W.shape, R.shape,
                                       None if B is None else B.shape, p_shape=None if P is None else P.shape,
                                       w_transposed=True)
    except (ModelError, ValueError):
        return None
    D, H = spec.directions, spec.hidden
    if I == 0 or any(q.dtype not in (np.int8, np.uint8) or z.dtype != q.dtype or s.shape not in ((D,), (D, 4 * H))
                     or z.shape != s.shape for q, s, z in ((W, ws, wz), (R, rs, rz))):
        return None
    return _runner(node, graph, spec, I, _QuantWeights(spec, W, R, B, P, ws, wz, rs, rz), W.shape, R.shape, True)


def _runner(node: Node, graph: Graph, spec, I: int, weights, w_shape, r_shape, w_transposed: bool = False):
    """The runner (node by node and bound) of a recurrent node whose weights are packed."""
    x, lens, h0, c0 = (_inputs(node, 8)[k] for k in (0, 4, 5, 6))
    D, H, G = spec.directions, spec.hidden, GATES[spec.kind]
    acts = [[(_native.RNN_ACTIVATIONS[a.name], a.alpha, a.beta) for a in spec.activations[d]]
            + [(0, 0.0, 0.0)] * (3 - len(spec.activations[d])) for d in range(D)]
    clip = np.inf if spec.clip is None else spec.clip
    names = list(node.outputs) + [""] * (3 - len(node.outputs))
    is_lstm = spec.kind == "LSTM"

    def operands(xv, lv, h0v, c0v):
        """(T, N) for these inputs, the lengths checked; _NotServed (the reference runs
        them) or ModelError (malformed)."""
        if xv.dtype != _F32 or any(v is not None and v.dtype != _F32 for v in (h0v, c0v)) \
                or (lv is not None and lv.dtype != np.int32):
            raise _NotServed
        _, T, N, _ = recurrent_spec(node, xv.shape, w_shape, r_shape, None, None if lv is None else lv.shape,
                                    None if h0v is None else h0v.shape, None if c0v is None else c0v.shape,
                                    w_transposed=w_transposed)
        if T == 0 or N == 0:
            raise _NotServed
        if lv is not None:
            sequence_lengths(node, lv, T, N)
        return T, N

    def make(xv, lv, h0v, c0v, y, yh, yc, T, N):
        """The bound layer writing y (T, D, N, H), yh, yc ((D, N, H) views or None)."""
        xw = np.empty((T * N, D * G * H), _F32)
        two = spec.kind == "GRU" and not spec.linear_before_reset
        gs = (2 if two else G) * H
        h = [np.empty((N, H), _F32) for _ in range(D)]
        g = [np.empty((N, gs), _F32) for _ in range(D)]
        c = [np.empty((N, H), _F32) if is_lstm else None for _ in range(D)]
        rh = [np.empty((N, H), _F32) if two else None for _ in range(D)]
        rhg = [np.empty((N, H), _F32) if two else None for _ in range(D)]
        xgemm, rg, rhgs, dq = weights.bind(xv.reshape(T * N, I), xw, h, g, rh, rhg)
        xw_t, xw_n = (N, 1) if spec.layout == 0 else (1, T)
        return _native.recurrent(_dispatch.isa_index(), spec.kind, spec.reverse, H, clip, spec.input_forget,
                                 spec.linear_before_reset, acts, weights.p, xgemm, xw, xw_t, xw_n, rg, rhgs, g, h, c,
                                 rh, rhg, T, lv, _state_view(h0v, spec.layout),
                                 _state_view(c0v, spec.layout) if is_lstm else None, y, yh, yc, bind=True, dq=dq)

    def y_view(Y):
        return None if Y is None else (Y.transpose(1, 2, 0, 3) if spec.layout else Y)

    def run(values):
        get = (lambda n: values[n] if n else None)
        xv, lv, h0v, c0v = get(x), get(lens), get(h0), get(c0) if is_lstm else None
        T, N = operands(xv, lv, h0v, c0v)
        xv = np.ascontiguousarray(xv)
        h0v, c0v = _f32_view(h0v), _f32_view(c0v)
        lv = None if lv is None else np.ascontiguousarray(lv)
        ys = (T, D, N, H) if spec.layout == 0 else (N, T, D, H)
        ss = (D, N, H) if spec.layout == 0 else (N, D, H)
        Y = np.empty(ys, _F32) if names[0] else None
        Yh = np.empty(ss, _F32) if names[1] else None
        Yc = np.empty(ss, _F32) if names[2] and is_lstm else None
        make(xv, lv, h0v, c0v, y_view(Y), _state_view(Yh, spec.layout), _state_view(Yc, spec.layout), T, N).run()
        return {n: v for n, v in zip(names, (Y, Yh, Yc)) if n and v is not None}

    def bind(ins, outs):
        ins = list(ins) + [None] * (8 - len(ins))
        xv, lv, h0v, c0v = ins[0], ins[4], ins[5], ins[6] if is_lstm else None
        if xv is None or (lens and lv is None) or (h0 and h0v is None) or (c0 and is_lstm and c0v is None):
            return None
        T, N = operands(xv, lv, h0v, c0v)
        rows = xv.reshape(T * N, I)
        if (rows.size and not np.shares_memory(rows, xv)) or _f32_view(h0v) is not h0v \
                or _f32_view(c0v) is not c0v or (lv is not None and not lv.flags.c_contiguous):
            return None
        got = dict(zip([n for n in names if n], outs))
        Y, Yh, Yc = (got.get(n) if n else None for n in names)
        if any(v is not None and _f32_view(v) is not v for v in (Y, Yh, Yc)):
            return None
        bound = make(xv, lv, h0v, c0v, y_view(Y), _state_view(Yh, spec.layout), _state_view(Yc, spec.layout), T, N)
        if lv is None or lens in graph.initializers:
            return bound
        # lengths read at run time: checked (a ModelError naming the node) before the native call
        return [partial(sequence_lengths, node, lv, T, N), bound]
    run.bind = bind
    return _fallback(node, graph, run)
