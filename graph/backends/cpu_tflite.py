"""The ``qkernels.tflite`` operators on qkernels' native kernels (registered into
:data:`cpu.KERNELS`): 8-bit ``Conv2D``, ``DepthwiseConv2D`` and ``FullyConnected``
(per-tensor or per-channel weights) with the ``"tflite"`` requantization of the
kernels' output stage -- TFLite's multipliers (s_in * s_w / s_out with the product in
float32 or double as reference ``float_product`` says; QuantizeMultiplier) and its
rounding, ties upward in the final shift -- and TFLite's activation range as the clamp; so the same bits as the reference operators
(:mod:`.reference.tflite`) and LiteRT. NHWC in, NHWC out: the kernels' own layout, no
copies. The weights are packed once, when the session is planned.

Float32 Conv2D / DepthwiseConv2D / FullyConnected run on the fp32 kernels (sums in
another order than LiteRT's: equal within float rounding, not bit for bit).

8-bit ``Mean`` (over consecutive axes) and ``Softmax`` run on kernels/tfl_rows.c in the
plan (numpy steps node by node); 8-bit same-shape ``Add``, ``Sub`` and
``Mul`` run on kernels/tfl_binary.c (TFLite's
integer steps, ties away from zero as its own kernels round). Everything else (and
values a kernel does not take) runs on the reference operator.
"""
from __future__ import annotations

import numpy as np

from ... import _api, _conv, _dispatch, _native
from ..._common import output_rows, rows_view
from ..._qtensor import QTensor
from ..._requant import OutputSpec, REQUANT_MODES
from ..ir import Graph, Node
from ..tflite import DOMAIN
from .cpu import _INT8, _F32, Runner, _NotServed, _chain, _const, _fallback, kernel
from .reference.tflite import activation_range, add_sub_params, expf, float_product, mean_of_sums, mean_params, \
    mul_params, output_multipliers, scale_input

_CONV_ATTRS = ("in_q", "out_q", "strides", "dilations", "pads", "act", "rounding")
_TFLITE = REQUANT_MODES["tflite"]


def _float_activation(lo: int, hi: int, qy, dtype):
    """TFLite's integer clamp [lo, hi] as the float activation range qkernels' output
    stage turns back into exactly those integers (round(f32(v) / s) + z)."""
    info = np.iinfo(dtype)
    if lo == info.min and hi == info.max:
        return None
    s, z = float(qy.s), qy.z
    return (-np.inf if lo == info.min else (lo - z) * s, np.inf if hi == info.max else (hi - z) * s)


def _weights_qtensor(w: np.ndarray, qw, axis: int, n: int, qx=None) -> QTensor:
    """The weights as a QTensor; ``qx`` given (LiteRT's float32 product of the scales,
    reference ``float_product``): their scale times the input's in float32, the input's
    scale then taken as 1."""
    scale = qw.scale.astype(np.float32) * (np.float32(1) if qx is None else np.float32(qx.s))
    zp = qw.zero_point.astype(w.dtype)
    if qw.per_tensor:
        return QTensor(w, scale.reshape(()), zp.reshape(()))
    return QTensor(w, scale, zp, axis=axis)


def _weights(node: Node, graph: Graph, ndim: int) -> tuple:
    """(W, B or None) when the node's weights (``ndim``-D) and bias are constants, else
    (None, None): the node then runs on its reference operator."""
    b_name = node.inputs[2] if len(node.inputs) > 2 else ""
    W, B = _const(graph, node.inputs[1]), (_const(graph, b_name) if b_name else None)
    if W is None or W.ndim != ndim or (b_name and B is None):
        return None, None
    return W, B


def _shift_may_wrap(qx, qw, qy, channels: int, taps: int, B, float32: bool) -> bool:
    """Whether an output multiplier shifts left far enough for an accumulator of ``taps``
    8-bit products (plus the bias) to leave int32: LiteRT's shift then wraps where the
    kernels' output stage saturates, so such a layer stays on the reference operator
    (no real model comes near: it takes a multiplier of 2^7 and more)."""
    shift = int(np.max(output_multipliers(qx, qw, qy, channels, float32)[1]))
    bound = taps * 255 * 255 + (0 if B is None else int(np.abs(B.astype(np.int64)).max(initial=0)))
    return shift > 0 and bound << shift > (1 << 31) - 1


def _float_act_range(act: str):
    lo, hi = activation_range(act, None, None)
    return None if act == "NONE" else (float(lo), float(hi))


@kernel(f"{DOMAIN}::Conv2D", f"{DOMAIN}::DepthwiseConv2D", attrs=_CONV_ATTRS)
def _make_conv(node: Node, graph: Graph) -> Runner | None:
    a = node.attrs
    x_name = node.inputs[0]
    W, B = _weights(node, graph, 4)
    if W is None:
        return None
    depthwise = node.op_type == "DepthwiseConv2D"
    qx, qw = a["in_q"][0], a["in_q"][1]
    qy = a["out_q"][0]
    if depthwise:   # 1HWC (C = channels * multiplier) -> OHWI with one input channel per group
        o = W.shape[3]
        w_ohwi = np.ascontiguousarray(W[0].transpose(2, 0, 1)[..., None])
    else:
        o = W.shape[0]
        w_ohwi = W
    quantized = qx is not None and W.dtype in _INT8
    if quantized:
        if qw is None or qy is None or not qx.per_tensor or not qy.per_tensor:
            return None
        # the kernels round every channel's ties upward: a depthwise layer whose channels
        # are not whole blocks of 8 (LiteRT rounds the rest away) stays on the reference
        if a["rounding"] != ("up8" if depthwise else "up") or (depthwise and o % 8):
            return None
        if B is not None and B.dtype != np.int32:
            return None
        f32 = float_product(node.op_type, qw, W.dtype)
        if _shift_may_wrap(qx, qw, qy, o, int(np.prod(w_ohwi.shape[1:])), B, f32):
            return None
        wq = _weights_qtensor(w_ohwi, qw, 0, o, qx if f32 else None)
        x_scale = np.float32(1) if f32 else np.float32(qx.s)
        pw = _api.pack_conv_weights(wq, groups=1, weight_layout="OHWI", bias=B) if not depthwise else None
    elif W.dtype == _F32 and (B is None or B.dtype == _F32):
        pw = None
    else:
        return None
    stride, dilation = tuple(a["strides"]), tuple(a["dilations"])
    t, left, b, r = a["pads"]
    padding = (t, left, b, r)
    result = node.outputs[0]
    state = {}

    def packed(channels: int):
        """The packed weights (depthwise: groups = input channels, known at the first call)."""
        got = state.get(channels)
        if got is None:
            if quantized:
                if depthwise:
                    got = _api.pack_conv_weights(wq, groups=channels, weight_layout="OHWI", bias=B)
                else:
                    got = pw
            else:
                got = _api.pack_conv_weights(np.ascontiguousarray(w_ohwi, np.float32),
                                             groups=channels if depthwise else 1, weight_layout="OHWI", bias=B)
            state[channels] = got
        return got

    def call_for(data: np.ndarray):
        if data.ndim != 4 or (quantized and data.dtype != W.dtype) or (not quantized and data.dtype != _F32):
            raise _NotServed
        if depthwise and o % data.shape[3]:
            raise _NotServed
        key = (data.shape, _dispatch.isa_index())
        call = state.get(key)
        if call is None:
            p = packed(data.shape[3])
            if quantized:
                lo, hi = activation_range(a["act"], qy, data.dtype)
                xq = QTensor(data, np.asarray(x_scale), qx.zero_point.astype(data.dtype).reshape(()))
                call = _conv.ConvCall(xq, p, None, stride, padding, dilation, p.groups, "NHWC", "OHWI",
                                      float(qy.s), qy.z, data.dtype, _float_activation(lo, hi, qy, data.dtype),
                                      "tflite", None)
            else:
                call = ("float", p)
            state[key] = call
        return call

    def run(values):
        data = values[x_name]
        call = call_for(data)
        if isinstance(call, tuple):
            return {result: _api.conv2d(data, call[1], stride=stride, padding=padding, dilation=dilation,
                                        groups=data.shape[3] if depthwise else 1,
                                        activation=_float_act_range(a["act"]))}
        return {result: call.run(data, None).data}

    def bind(ins, outs):
        data, y = ins[0], outs[0]
        if data is None or not quantized:
            return None
        call = call_for(data)
        rows = output_rows(y) if y.flags.writeable else None
        if rows is None or y.shape != call.shape_nhwc or y.dtype != call.out_dtype:
            return None
        xd = data
        if xd.shape[3] > 1 and xd.strides[3] != xd.itemsize:
            return None
        return _chain(call.bind(xd, rows))
    run.bind = bind
    return _fallback(node, graph, run)


@kernel(f"{DOMAIN}::FullyConnected", attrs=("in_q", "out_q", "act", "shape", "rounding"))
def _make_fc(node: Node, graph: Graph) -> Runner | None:
    a = node.attrs
    x_name = node.inputs[0]
    W, B = _weights(node, graph, 2)
    if W is None:
        return None
    qx, qw, qy = a["in_q"][0], a["in_q"][1], a["out_q"][0]
    k, n = W.shape[1], W.shape[0]
    shape = tuple(a["shape"])
    quantized = qx is not None and W.dtype in _INT8
    if quantized:
        if qw is None or qy is None or a["rounding"] != "up" or not qx.per_tensor or not qy.per_tensor:
            return None
        f32 = float_product(node.op_type, qw, W.dtype)
        if B is not None and B.dtype != np.int32 or _shift_may_wrap(qx, qw, qy, n, k, B, f32):
            return None
        pw = _api.pack_weights(_weights_qtensor(np.ascontiguousarray(W.T), qw, 1, n, qx if f32 else None), bias=B)
        x_scale = 1.0 if f32 else float(qx.s)
    elif W.dtype == _F32 and (B is None or B.dtype == _F32):
        pw = _api.pack_weights(np.ascontiguousarray(W.T), bias=B)
    else:
        return None
    result = node.outputs[0]
    prepared = {}

    def prepare(rows: int, dtype):
        key = (rows, dtype.char, _dispatch.isa_index())
        call = prepared.get(key)
        if call is None:
            lo, hi = activation_range(a["act"], qy, dtype)
            spec = OutputSpec(dtype, _TFLITE, float(qy.s), qy.z, lo, hi)
            call = prepared[key] = pw.prepare(rows, dtype == np.int8, qx.z, x_scale, spec)
        return call

    def matrix(data):
        if data.size % k or data.size // k * n != int(np.prod(shape)):
            raise _NotServed
        return data.reshape(-1, k)

    def run(values):
        data = values[x_name]
        rows = matrix(data)
        if not quantized:
            if data.dtype != _F32:
                raise _NotServed
            y = _api.matmul(rows, pw, activation=_float_act_range(a["act"]))
            return {result: np.asarray(y).reshape(shape)}
        if data.dtype != W.dtype:
            raise _NotServed
        y = np.empty((rows.shape[0], n), data.dtype)
        prepare(rows.shape[0], data.dtype).run(rows, y)
        return {result: y.reshape(shape)}

    def bind(ins, outs):
        data, y = ins[0], outs[0]
        if data is None or not quantized or data.dtype != W.dtype or y.dtype != data.dtype:
            return None
        rows = rows_view(data.reshape(-1, k)) if data.flags.c_contiguous else None
        out = y.reshape(-1, n) if y.flags.c_contiguous and y.flags.writeable else None
        if rows is None or out is None or out.shape[0] != rows.shape[0]:
            return None
        return prepare(rows.shape[0], data.dtype).run(rows, out, bind=True)
    run.bind = bind
    return _fallback(node, graph, run)


# ------------------------------------------------------------------ 8-bit ADD, SUB, MUL

def binary_tables(node: Node, dtype) -> tuple:
    """(op, ta, tb, za, zb, mult, shift, zy, lo, hi) of kernels/tfl_binary.c for an 8-bit
    ``qkernels.tflite`` Add / Sub / Mul of ``dtype``: the reference operator's arithmetic
    (its multipliers; ADD/SUB inputs pre-scaled into tables of 512: 256 values for LiteRT's
    vector loop, whose uint8 ADD truncates, then 256 for its scalar tail)."""
    q1, q2 = node.attrs["in_q"][:2]
    qy = node.attrs["out_q"][0]
    byte = np.arange(256, dtype=np.uint8).view(dtype).astype(np.int64)
    lo, hi = activation_range(node.attrs["act"], qy, dtype)
    if node.op_type == "Mul":
        m, s = mul_params(q1, q2, qy)
        ta = tb = np.zeros(512, np.int32)
        return 2, ta, tb, q1.z, q2.z, int(m[0]), int(s[0]), qy.z, lo, hi
    (m1, s1), (m2, s2), (mo, so) = add_sub_params(q1, q2, qy)
    truncate = node.op_type == "Add" and np.dtype(dtype) == np.uint8

    def table(z, m, s):
        x = byte - z
        return np.concatenate([scale_input(x, m, s, truncate), scale_input(x, m, s)]).astype(np.int32)
    return (0 if node.op_type == "Add" else 1), table(q1.z, m1, s1), table(q2.z, m2, s2), 0, 0, int(mo[0]), \
        int(so[0]), qy.z, lo, hi


@kernel(f"{DOMAIN}::Add", f"{DOMAIN}::Sub", f"{DOMAIN}::Mul", attrs=("in_q", "out_q", "act"))
def _make_binary(node: Node, graph: Graph) -> Runner | None:
    """Same-shape 8-bit operands on the native loop (one pass, the tables made once per
    dtype); broadcasting operands, and float ones, on the reference operator."""
    qs = list(node.attrs["in_q"][:2]) + [node.attrs["out_q"][0]]
    if any(q is None or not q.per_tensor for q in qs):
        return None
    result = node.outputs[0]
    made = {}

    def params(dtype):
        got = made.get(dtype.char)
        if got is None:
            got = made[dtype.char] = binary_tables(node, dtype)
        return got

    def served(a, b, y=None):
        if a is None or b is None or a.dtype not in _INT8 or b.dtype != a.dtype or a.shape != b.shape \
                or not (a.flags.c_contiguous and b.flags.c_contiguous):
            raise _NotServed
        if y is not None and (y.shape != a.shape or y.dtype != a.dtype or not y.flags.c_contiguous
                              or not y.flags.writeable):
            raise _NotServed
        return params(a.dtype)

    def run(values):
        a, b = values[node.inputs[0]], values[node.inputs[1]]
        p = served(a, b)
        y = np.empty(a.shape, a.dtype)
        op, ta, tb, *rest = p
        _native.tfl_binary(_dispatch.isa_index(), op, a.reshape(-1), b.reshape(-1), ta, tb, *rest, y.reshape(-1))
        return {result: y}

    def bind(ins, outs):
        a, b, y = ins[0], ins[1], outs[0]
        op, ta, tb, *rest = served(a, b, y)
        return _native.tfl_binary(_dispatch.isa_index(), op, a.reshape(-1), b.reshape(-1), ta, tb, *rest, y.reshape(-1),
                                  bind=True)
    run.bind = bind
    return _fallback(node, graph, run)


# ------------------------------------------------------------------ 8-bit MEAN

def _bound_python(fn, x, y):
    """A plan step writing ``fn(x)`` into ``y`` (no value dict, no result check per run),
    or None where ``fn`` does not serve ``x``'s fixed shape and dtype (tried once here)."""
    if x is None:
        return None
    try:
        got = fn(x)
    except _NotServed:
        return None
    if got.shape != y.shape or got.dtype != y.dtype:
        return None
    return lambda: np.copyto(y, fn(x))


def _mean_general(sums: np.ndarray, n: int, z: int, params: tuple, dtype) -> np.ndarray | None:
    """TFLite's QuantizedMeanOrSum on the int64 ``sums`` (changed in place) in a few numpy
    passes, or None where its multiplier shifts left (the reference's arithmetic then):
    (s - n z) m + 2^30 >> 31 folded into one multiply-add (|.| < 2^63), the rounding right
    shift by r ties away from zero as (h + 2^(r-1) - [h < 0]) >> r, + zy, the clamp."""
    spatial, m, shift, zy = params
    if spatial or shift[0] > 0:
        return None
    m, r = int(m[0]), -int(shift[0])
    sums *= m
    sums += (1 << 30) - n * z * m
    sums >>= 31
    if r:
        sums += sums >> 63
        sums += 1 << (r - 1)
        sums >>= r
    sums += zy
    info = np.iinfo(dtype)
    return np.clip(sums, info.min, info.max, out=sums).astype(dtype)


@kernel(f"{DOMAIN}::Mean", attrs=("in_q", "out_q", "axes", "keep_dims"))
def _make_mean(node: Node, graph: Graph) -> Runner | None:
    """The sums by numpy's int16 or int32 reduction, the reference operator's arithmetic on them
    (a global pool's few channels: the multipliers made once; the general case in a few
    int64 passes, :func:`_mean_general`)."""
    if node.attrs["in_q"][0] is None or node.attrs["out_q"][0] is None:
        return None
    axes, keep = tuple(node.attrs["axes"]), node.attrs["keep_dims"]
    z = node.attrs["in_q"][0].z
    made = {}

    def mean(x):
        if x.dtype not in _INT8 or any(ax >= x.ndim for ax in axes):
            raise _NotServed
        n = int(np.prod([x.shape[ax] for ax in axes]))
        if not 0 < n < 1 << 23:
            raise _NotServed
        params = made.get((n, x.ndim))
        if params is None:
            params = made[(n, x.ndim)] = mean_params(node, n, x.ndim)
        # exact sums in int16 where n values fit it (numpy's fastest reduction here), else int32
        narrow = np.int16 if n * (255 if x.dtype == np.uint8 else 128) <= 32767 else np.int32
        sums = x.sum(axis=axes, keepdims=keep, dtype=narrow).astype(np.int64)
        y = _mean_general(sums, n, z, params, x.dtype)
        return mean_of_sums(node, sums, n, x.ndim, x.dtype, params) if y is None else y

    def native(x, y):
        """kernels/tfl_rows.c bound to x and y where the mean is over consecutive axes of a
        contiguous x and its multiplier shifts right; else None."""
        if x is None or x.dtype not in _INT8 or y.dtype != x.dtype or not x.flags.c_contiguous or \
                not y.flags.c_contiguous or any(ax >= x.ndim for ax in axes):
            return None
        first, last = min(axes), max(axes)
        if sorted(axes) != list(range(first, last + 1)):
            return None
        count = int(np.prod(x.shape[first:last + 1]))
        outer, inner = int(np.prod(x.shape[:first])), int(np.prod(x.shape[last + 1:]))
        if not 0 < count < 1 << 23 or y.size != outer * inner:
            return None
        spatial, m, shift, zy = mean_params(node, count, x.ndim)
        if spatial or shift[0] > 0:
            return None
        m = int(m[0])
        return _native.tfl_mean(x, y, outer, count, inner, m, (1 << 30) - count * int(z) * m, -int(shift[0]),
                                int(zy), bind=True)

    return _unary_runner(node, graph, mean, native)


# ------------------------------------------------------------------ 8-bit SOFTMAX

@kernel(f"{DOMAIN}::Softmax", attrs=("in_q", "out_q", "beta"))
def _make_softmax(node: Node, graph: Graph) -> Runner | None:
    """8-bit SOFTMAX as the reference operator computes it (LiteRT's float table of
    exp(-s_in beta d) over the distance d to the row's maximum, summed in order, normalised
    in float32), its table made once; float softmax on the reference."""
    qx, qy = node.attrs["in_q"][0], node.attrs["out_q"][0]
    if qx is None or qy is None or not qx.per_tensor or not qy.per_tensor:
        return None
    table = expf(np.float32(-qx.s * np.float32(node.attrs["beta"])) * np.arange(256, dtype=np.float32))
    sy, zy = np.float32(qy.s), np.float32(qy.z)

    def softmax(x):
        if x.dtype not in _INT8 or x.ndim < 1 or x.size == 0:
            raise _NotServed
        rows = x.reshape(-1, x.shape[-1])
        e = table[np.subtract(rows.max(axis=1, keepdims=True), rows, dtype=np.int16)]
        total = np.cumsum(e, axis=1, dtype=np.float32)[:, -1:]
        e *= np.float32(1.0) / (total * sy)
        np.rint(e, out=e)       # RoundToNearest: half to even
        e += zy
        info = np.iinfo(x.dtype)
        return np.clip(e, info.min, info.max, out=e).astype(x.dtype).reshape(x.shape)

    def native(x, y):
        """kernels/tfl_rows.c bound to contiguous x and y of x's shape; else None."""
        if x is None or x.dtype not in _INT8 or y.dtype != x.dtype or x.shape != y.shape or x.size == 0 or \
                not x.flags.c_contiguous or not y.flags.c_contiguous:
            return None
        return _native.tfl_softmax(x, table, sy, zy, y, x.size // x.shape[-1], x.shape[-1], bind=True)

    return _unary_runner(node, graph, softmax, native)


def _unary_runner(node: Node, graph: Graph, fn, native=None) -> Runner:
    """The runner of y = fn(x): node by node, and in the plan the bound native call
    ``native(x, y)`` gives (where it serves) or else a step calling fn."""
    result = node.outputs[0]

    def run(values):
        return {result: fn(values[node.inputs[0]])}

    def bind(ins, outs):
        bound = None if native is None or outs[0] is None else native(ins[0], outs[0])
        return bound if bound is not None else _bound_python(fn, ins[0], outs[0])
    run.bind = bind
    return _fallback(node, graph, run)
