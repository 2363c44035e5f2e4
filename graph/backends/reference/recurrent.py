"""Recurrent layers: RNN, GRU and LSTM (ONNX, opsets 7 to 22) and onnxruntime's
com.microsoft DynamicQuantizeLSTM, computed in float64 and rounded once to the input's
dtype.

ONNX's conventions, which onnxruntime follows (the oracle of tests/test_recurrent.py):

* gates in ONNX's order: LSTM i, o, f, c; GRU z, r, h; W (D, G*H, I), R (D, G*H, H),
  B (D, 2*G*H) = Wb then Rb, LSTM peepholes P (D, 3*H) = Pi, Po, Pf;
* ``direction`` forward, reverse or bidirectional (D = 2, the reverse pass second);
* ``sequence_lens`` (one per batch row): a row runs its own length only (a reverse
  pass from its last valid step back); Y past a row's length is 0 and its Y_h / Y_c
  are the states at its length (0 for a row of length 0, as onnxruntime);
* ``activations`` (per direction: LSTM f, g, h; GRU f, g; RNN f) from ONNX's list,
  case-insensitive; ``activation_alpha`` / ``activation_beta`` are consumed in order by
  the activations that take them (onnxruntime's defaults when the lists run out:
  LeakyRelu 0.01, HardSigmoid 0.2 / 0.5, Elu 1, the others 0);
* ``clip`` bounds every gate's input before its activation; LSTM ``input_forget``
  couples f = 1 - i; GRU ``linear_before_reset``; ``layout`` 1 puts the batch first
  (X (N, T, I), Y (N, T, D, H), Y_h / Y_c (N, D, H)).

:func:`recurrent_spec` parses and checks a node's attributes and operand shapes once;
the cpu backend's native runner (cpu_recurrent.py) reads the same spec.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ...validate import fail
from .common import ints
from .registry import op

GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
DEFAULT_ACTIVATIONS = {"RNN": ("Tanh",), "GRU": ("Sigmoid", "Tanh"), "LSTM": ("Sigmoid", "Tanh", "Tanh")}
DIRECTIONS = ("forward", "reverse", "bidirectional")


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


#: lower-case name -> (its name, default alpha or None (takes none), default beta or None, f(x, alpha, beta));
#: the defaults are onnxruntime's (LeakyRelu, HardSigmoid and Elu as their operators, the others 0)
ACTIVATIONS = {
    "relu": ("Relu", None, None, lambda x, a, b: np.maximum(x, 0)),
    "tanh": ("Tanh", None, None, lambda x, a, b: np.tanh(x)),
    "sigmoid": ("Sigmoid", None, None, lambda x, a, b: _sigmoid(x)),
    "affine": ("Affine", 0.0, 0.0, lambda x, a, b: a * x + b),
    "leakyrelu": ("LeakyRelu", 0.01, None, lambda x, a, b: np.where(x >= 0, x, a * x)),
    "thresholdedrelu": ("ThresholdedRelu", 0.0, None, lambda x, a, b: np.where(x > a, x, 0)),
    "scaledtanh": ("ScaledTanh", 0.0, 0.0, lambda x, a, b: a * np.tanh(b * x)),
    "hardsigmoid": ("HardSigmoid", 0.2, 0.5, lambda x, a, b: np.clip(a * x + b, 0, 1)),
    "elu": ("Elu", 1.0, None, lambda x, a, b: np.where(x >= 0, x, a * np.expm1(x))),
    "softsign": ("Softsign", None, None, lambda x, a, b: x / (1 + np.abs(x))),
    "softplus": ("Softplus", None, None, lambda x, a, b: np.logaddexp(0, x)),
}


class Activation(NamedTuple):
    name: str          # ONNX's spelling ("Sigmoid")
    alpha: float
    beta: float

    def __call__(self, x):
        return ACTIVATIONS[self.name.lower()][3](x, self.alpha, self.beta)


class RecurrentSpec(NamedTuple):
    kind: str                         # "RNN", "GRU", "LSTM"
    directions: int                   # 1 or 2
    reverse: tuple                    # per direction: runs from the last step back
    hidden: int
    activations: tuple                # per direction: a tuple of Activation
    clip: float | None
    layout: int
    input_forget: bool
    linear_before_reset: bool


_ATTRS = ("activation_alpha", "activation_beta", "activations", "clip", "direction", "hidden_size", "layout")
_KIND_ATTRS = {"RNN": _ATTRS, "GRU": _ATTRS + ("linear_before_reset",), "LSTM": _ATTRS + ("input_forget",)}


def _kind(node) -> str:
    return "LSTM" if node.op_type == "DynamicQuantizeLSTM" else node.op_type


def _activations(node, kind: str, directions: int) -> tuple:
    """Per direction, its activations (with their alpha, beta), or ValueError."""
    per = len(DEFAULT_ACTIVATIONS[kind])
    names = node.attrs.get("activations")
    if names is None:
        names = list(DEFAULT_ACTIVATIONS[kind]) * directions
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    if len(names) != per * directions:
        raise ValueError(f"activations: {per * directions} names expected ({per} per direction), got {len(names)}")
    alphas = [float(v) for v in node.attrs.get("activation_alpha", [])]
    betas = [float(v) for v in node.attrs.get("activation_beta", [])]
    acts = []
    for name in names:
        known = ACTIVATIONS.get(name.lower())
        if known is None:
            raise ValueError(f"activation {name!r} unknown (known: {', '.join(a[0] for a in ACTIVATIONS.values())})")
        spelled, da, db, _ = known
        alpha = (alphas.pop(0) if alphas else da) if da is not None else 0.0
        beta = (betas.pop(0) if betas else db) if db is not None else 0.0
        acts.append(Activation(spelled, float(np.float32(alpha)), float(np.float32(beta))))
    return tuple(tuple(acts[d * per:(d + 1) * per]) for d in range(directions))


def attribute_spec(node) -> RecurrentSpec:
    """The node's attributes, checked (ValueError naming the bad one); ``hidden`` is
    0 when ``hidden_size`` is absent (then R's shape gives it)."""
    kind = _kind(node)
    a = node.attrs
    direction = a.get("direction", "forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    if direction not in DIRECTIONS:
        raise ValueError(f"direction {direction!r} unknown (forward, reverse or bidirectional)")
    directions = 2 if direction == "bidirectional" else 1
    hidden = int(a.get("hidden_size", 0))
    if "hidden_size" in a and hidden <= 0:
        raise ValueError(f"hidden_size must be positive, got {hidden}")
    layout = int(a.get("layout", 0))
    if layout not in (0, 1):
        raise ValueError(f"layout must be 0 or 1, got {layout}")
    clip = a.get("clip")
    if clip is not None and not float(clip) > 0:
        raise ValueError(f"clip must be positive, got {clip}")
    flags = {k: int(a.get(k, 0)) for k in ("input_forget", "linear_before_reset")}
    for k, v in flags.items():
        if v not in (0, 1):
            raise ValueError(f"{k} must be 0 or 1, got {v}")
    return RecurrentSpec(kind, directions, (direction == "reverse",) if directions == 1 else (False, True), hidden,
                         _activations(node, kind, directions), None if clip is None else float(np.float32(clip)),
                         layout, bool(flags["input_forget"]), bool(flags["linear_before_reset"]))


def check_attributes(node, graph) -> str | None:
    try:
        attribute_spec(node)
    except ValueError as exc:
        return str(exc)
    return None


def recurrent_spec(node, x_shape, w_shape, r_shape, b_shape=None, lens_shape=None, h_shape=None, c_shape=None,
                   p_shape=None, w_transposed: bool = False) -> tuple[RecurrentSpec, int, int, int]:
    """(spec, T, N, I) for operands of these shapes (None: omitted), or ModelError
    naming the operand. ``w_transposed``: W (D, I, G*H), R (D, H, G*H)
    (DynamicQuantizeLSTM's layout)."""
    try:
        spec = attribute_spec(node)
    except ValueError as exc:
        fail(node, str(exc))
    D, G = spec.directions, GATES[spec.kind]
    if len(x_shape) != 3:
        fail(node, f"X must be 3-D, got shape {tuple(x_shape)}")
    T, N, I = x_shape if spec.layout == 0 else (x_shape[1], x_shape[0], x_shape[2])
    if len(r_shape) != 3:
        fail(node, f"R must be 3-D, got shape {tuple(r_shape)}")
    H = spec.hidden or (r_shape[1] if w_transposed else r_shape[2])
    if not spec.hidden and H <= 0:
        fail(node, f"hidden size {H} (from R's shape) must be positive")
    spec = spec._replace(hidden=H)

    def expect(name, shape, want):
        if shape is not None and tuple(shape) != tuple(want):
            fail(node, f"{name} must have shape {tuple(want)} (directions {D}, hidden_size {H}, input size {I}), "
                       f"got {tuple(shape)}")
    expect("W", w_shape, (D, I, G * H) if w_transposed else (D, G * H, I))
    expect("R", r_shape, (D, H, G * H) if w_transposed else (D, G * H, H))
    expect("B", b_shape, (D, 2 * G * H))
    expect("sequence_lens", lens_shape, (N,))
    state = (D, N, H) if spec.layout == 0 else (N, D, H)
    expect("initial_h", h_shape, state)
    expect("initial_c", c_shape, state)
    expect("P", p_shape, (D, 3 * H))
    return spec, T, N, I


def sequence_lengths(node, lens, T: int, N: int) -> np.ndarray:
    """The per-row lengths (int64, N), each in [0, T], or ModelError."""
    if lens is None:
        return np.full(N, T, np.int64)
    if lens.dtype.kind not in "iu":
        fail(node, f"sequence_lens must be int32, got {lens.dtype}")
    lens = lens.astype(np.int64).reshape(-1)
    if lens.size and (lens.min() < 0 or lens.max() > T):
        fail(node, f"sequence_lens must lie in [0, {T}] (the sequence length), got {ints(lens)}")
    return lens


def run_recurrent(node, spec: RecurrentSpec, x, wt, rt, b, lens, h0, c0, p):
    """(Y, Y_h, Y_c) in float64, layout 0, for x (T, N, I), wt (D, I, G*H) = Wᵀ,
    rt (D, H, G*H) = Rᵀ, b (D, 2*G*H), lens (N,), h0 / c0 (D, N, H), p (D, 3*H), every
    operand float64. ``x @ wt`` and ``h @ rt`` may be replaced (DynamicQuantizeLSTM's
    integer GEMMs, LSTM and RNN cells): ``wt`` a callable (d, x rows (M, I)) -> (M, G*H),
    ``rt`` a callable (d, h (N, H) of every row, step s, lens) -> (N, G*H)."""
    T, N, _ = x.shape
    D, H, G = spec.directions, spec.hidden, GATES[spec.kind]
    Y = np.zeros((T, D, N, H))
    Yh, Yc = h0.copy(), c0.copy()
    clip = (lambda v: np.clip(v, -spec.clip, spec.clip)) if spec.clip is not None else (lambda v: v)
    for d in range(D):
        mul_w = wt if callable(wt) else (lambda dd, rows: rows @ wt[dd])
        mul_r = (lambda dd, rows: rows @ rt[dd]) if not callable(rt) else None
        acts = spec.activations[d]
        wb, rb = b[d, :G * H], b[d, G * H:]
        xw = mul_w(d, x.reshape(T * N, -1)).reshape(T, N, G * H) + wb
        h, c = Yh[d], Yc[d]
        for s in range(T):
            rows = np.nonzero(s < lens)[0]
            if rows.size == 0:
                break
            t = lens[rows] - 1 - s if spec.reverse[d] else np.full(rows.size, s)
            hr = h[rows]
            gx = xw[t, rows]
            if spec.kind == "GRU" and not spec.linear_before_reset:
                # h~ = g(x Wh + (r * h) Rh + Rbh + Wbh): the reset gate before Rh
                zr = clip(gx[:, :2 * H] + mul_r(d, hr)[:, :2 * H] + rb[:2 * H])
                z, r = acts[0](zr[:, :H]), acts[0](zr[:, H:])
                hh = mul_r(d, r * hr)[:, 2 * H:]
                new = (1 - z) * acts[1](clip(gx[:, 2 * H:] + hh + rb[2 * H:])) + z * hr
            else:
                g = (mul_r(d, hr) if mul_r else rt(d, h, s, lens)[rows]) + rb
                if spec.kind == "RNN":
                    new = acts[0](clip(gx + g))
                elif spec.kind == "GRU":
                    zr = clip(gx[:, :2 * H] + g[:, :2 * H])
                    z, r = acts[0](zr[:, :H]), acts[0](zr[:, H:])
                    new = (1 - z) * acts[1](clip(gx[:, 2 * H:] + r * g[:, 2 * H:])) + z * hr
                else:
                    pre, cr = gx + g, c[rows]
                    pi, po, pf = (p[d, k * H:(k + 1) * H] for k in range(3))
                    i = acts[0](clip(pre[:, :H] + pi * cr))
                    f = 1 - i if spec.input_forget else acts[0](clip(pre[:, 2 * H:3 * H] + pf * cr))
                    cn = f * cr + i * acts[1](clip(pre[:, 3 * H:]))
                    o = acts[0](clip(pre[:, H:2 * H] + po * cn))
                    new = o * acts[2](cn)
                    c[rows] = cn
            h[rows] = new
            Y[t, d, rows] = new
    Yh[:, lens == 0] = Yc[:, lens == 0] = 0      # onnxruntime's: an empty row's states are 0
    return Y, Yh, Yc


def _outputs(spec: RecurrentSpec, dtype, Y, Yh, Yc):
    if spec.layout:
        Y, Yh, Yc = Y.transpose(2, 0, 1, 3), Yh.transpose(1, 0, 2), Yc.transpose(1, 0, 2)
    out = (Y.astype(dtype), Yh.astype(dtype))
    return out + (Yc.astype(dtype),) if spec.kind == "LSTM" else out


def _state(spec, v, D, N, H):
    if v is None:
        return np.zeros((D, N, H))
    v = v.astype(np.float64)
    return v.transpose(1, 0, 2).copy() if spec.layout else v.copy()


def _or_zeros(v, shape):
    return np.zeros(shape) if v is None else v.astype(np.float64)


def _require_float(node, *xs):
    for x in xs:
        if x is not None and (x.dtype.kind != "f" or x.dtype != xs[0].dtype):
            fail(node, f"operands must share one float dtype (float16, float32, float64), got {x.dtype}")


def _float_recurrent(node, x, w, r, b=None, lens=None, h0=None, c0=None, p=None):
    _require_float(node, x, w, r, b, h0, c0, p)
    spec, T, N, I = recurrent_spec(node, x.shape, w.shape, r.shape, None if b is None else b.shape,
                                   None if lens is None else lens.shape, None if h0 is None else h0.shape,
                                   None if c0 is None else c0.shape, None if p is None else p.shape)
    D, H, G = spec.directions, spec.hidden, GATES[spec.kind]
    xs = (x if spec.layout == 0 else x.swapaxes(0, 1)).astype(np.float64)
    Y, Yh, Yc = run_recurrent(
        node, spec, xs, w.astype(np.float64).transpose(0, 2, 1), r.astype(np.float64).transpose(0, 2, 1),
        _or_zeros(b, (D, 2 * G * H)), sequence_lengths(node, lens, T, N), _state(spec, h0, D, N, H),
        _state(spec, c0, D, N, H), _or_zeros(p, (D, 3 * H)))
    return _outputs(spec, x.dtype, Y, Yh, Yc)


@op("RNN", attrs=_KIND_ATTRS["RNN"], check=check_attributes)
def _rnn(node, x, w, r, b=None, lens=None, h0=None):
    return _float_recurrent(node, x, w, r, b, lens, h0)


@op("GRU", attrs=_KIND_ATTRS["GRU"], check=check_attributes)
def _gru(node, x, w, r, b=None, lens=None, h0=None):
    return _float_recurrent(node, x, w, r, b, lens, h0)


@op("LSTM", attrs=_KIND_ATTRS["LSTM"], check=check_attributes)
def _lstm(node, x, w, r, b=None, lens=None, h0=None, c0=None, p=None):
    return _float_recurrent(node, x, w, r, b, lens, h0, c0, p)


# ------------------------------------------------- com.microsoft DynamicQuantizeLSTM

def dynamic_quantize(a: np.ndarray, range_rows: int | None = None) -> tuple[np.ndarray, np.float32, int]:
    """onnxruntime's per-call quantization of a float32 GEMM operand (its LSTM's
    GetQuantizationParameter + MlasQuantizeLinear): uint8, the range [min, max] (of the
    first ``range_rows`` rows, default all) widened to hold 0, scale (max - min) / 255
    (1 for an all-zero range), zero point round-half-even(-min / scale) in [0, 255],
    q = clamp(rint(a / scale) + zp, 0, 255), float32 throughout. Returns (q as int64,
    scale, zero point)."""
    a = np.asarray(a, np.float32)
    r = a if range_rows is None else a[:range_rows]
    lo = min(np.float32(r.min()), np.float32(0)) if r.size else np.float32(0)
    hi = max(np.float32(r.max()), np.float32(0)) if r.size else np.float32(0)
    scale = np.float32(1) if hi == lo else np.float32((hi - lo) / np.float32(255))
    zp = int(np.rint(np.clip(np.float32(0) - lo / scale, np.float32(0), np.float32(255))))
    q = np.clip(np.rint(a / scale) + np.float32(zp), 0, 255).astype(np.int64)
    return q, scale, zp


def _dq_matmul(a, wq, zw, sw, range_rows=None) -> np.ndarray:
    """float32 a (M, K) times int8/uint8 weights wq (K, N) (zero point zw, scale sw: one
    or one per column) as onnxruntime: a quantized per call (its range from the first
    ``range_rows`` rows), an exact integer product, then float32(acc) * float32(sa * sw)."""
    q, sa, za = dynamic_quantize(a, range_rows)
    acc = (q - za) @ (wq.astype(np.int64) - zw.astype(np.int64))
    return acc.astype(np.float32) * (sa * sw.astype(np.float32))


def _check_dq_inputs(node, graph):
    missing = [k for k in (0, 1, 2, 8, 9, 10, 11) if k >= len(node.inputs) or not node.inputs[k]]
    if missing:
        return f"required input(s) {missing} missing (X, W, R, W_scale, W_zero_point, R_scale, R_zero_point)"
    return check_attributes(node, graph)


@op("DynamicQuantizeLSTM", domain="com.microsoft", attrs=tuple(a for a in _KIND_ATTRS["LSTM"] if a != "layout"),
    check=_check_dq_inputs)
def _dynamic_quantize_lstm(node, x, w, r, b=None, lens=None, h0=None, c0=None, p=None, w_scale=None, w_zp=None,
                           r_scale=None, r_zp=None):
    """LSTM whose W (D, I, 4H) and R (D, H, 4H) are int8/uint8 with scales and zero points
    (per direction, or per direction and column): each GEMM's float operand (all of X
    once; h at every step) quantized per call (:func:`dynamic_quantize`), the products
    exact in integers; the rest as LSTM, in float64."""
    _require_float(node, x, b, h0, c0, p)
    if x.dtype != np.float32:
        fail(node, f"X must be float32, got {x.dtype}")
    spec, T, N, I = recurrent_spec(node, x.shape, w.shape, r.shape, None if b is None else b.shape,
                                   None if lens is None else lens.shape, None if h0 is None else h0.shape,
                                   None if c0 is None else c0.shape, None if p is None else p.shape,
                                   w_transposed=True)
    D, H = spec.directions, spec.hidden
    params = {}
    for name, q, s, z in (("W", w, w_scale, w_zp), ("R", r, r_scale, r_zp)):
        if q.dtype not in (np.int8, np.uint8) or z.dtype != q.dtype:
            fail(node, f"{name} and its zero point must be int8 or uint8 alike, got {q.dtype} and {z.dtype}")
        if s.dtype != np.float32 or s.shape not in ((D,), (D, 4 * H)) or z.shape != s.shape:
            fail(node, f"{name}_scale (float32) and {name}_zero_point must have shape ({D},) or ({D}, {4 * H}), "
                       f"got {s.shape} and {z.shape}")
        params[name] = [(q[d], z[d], s[d]) for d in range(D)]

    lengths = sequence_lengths(node, lens, T, N)
    # the ranges of the rows onnxruntime's GEMMs see: X's first max(lens) steps; at step s,
    # h of the rows that ran step s - 1 (all at s = 0: the initial state; the others are 0)
    x_rows = int(lengths.max(initial=0)) * N

    def mul_w(d, rows):
        return _dq_matmul(rows, *params["W"][d], x_rows).astype(np.float64)

    def mul_r(d, h, s, lens):
        ran = lens >= s
        return _dq_matmul(np.where(ran[:, None], h, 0), *params["R"][d]).astype(np.float64)
    Y, Yh, Yc = run_recurrent(
        node, spec, x.astype(np.float64), mul_w, mul_r,
        _or_zeros(b, (D, 8 * H)), lengths, _state(spec, h0, D, N, H),
        _state(spec, c0, D, N, H), _or_zeros(p, (D, 3 * H)))
    return _outputs(spec, x.dtype, Y, Yh, Yc)
