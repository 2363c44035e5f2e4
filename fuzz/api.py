"""Lane ``api``: hostile calls of the public API (dtypes, shapes, views, parameters,
``out=``). A call is generated twice from the same random draws: once with the arrays as
views (steps, negative strides, broadcast zero strides, transposes, unaligned, read-only)
and ``out=`` possibly aliasing an input, once with contiguous copies. When the first
call succeeds, the second must give the same result, and so must a third on the scalar
ISA at 1 thread (integer calls: exact on every path); else a wrong result.
"""
from __future__ import annotations

import math

import numpy as np

from common import WrongResult

P_BAD = 0.03   # per parameter: the chance of a hostile value
U8, I8, I32, F16, F32 = np.uint8, np.int8, np.int32, np.float16, np.float32
BAD_VALUES = [None, "x", [], [1, 2], -1, 0, 2**31, 2**63, -2**63, 1e308, float("nan"), float("inf"), -float("inf"),
              1e-45, True, b"b", {}, 1 + 1j, np.array([]), np.zeros((2, 2)), np.float64(-0.5), object()]
BAD_DTYPES = [bool, np.int64, np.float64, np.complex64, object, np.int16, np.uint16, F16, I32, U8, I8]
BAD_SCALES = [0.0, -0.1, float("nan"), float("inf"), 1e-45, 1e38, np.float32(3.4e38)]
DIMS = [0, 1, 1, 2, 3, 4, 5, 7, 8, 8, 13, 16, 17, 33]


def warm_up() -> None:
    import qkernels  # noqa: F401


class Maker:
    """Draws a call's arguments; ``contiguous`` makes the same arrays as C-contiguous copies."""

    def __init__(self, seed: int, case: int, contiguous: bool, log: list[str] | None):
        self.r = np.random.default_rng([seed, case, 1])
        self.contig, self.log, self.arrays, self.aliased = contiguous, log, [], False

    def note(self, text: str) -> None:
        if self.log is not None:
            self.log.append(text)

    def pick(self, seq):
        return seq[int(self.r.integers(len(seq)))]

    def dim(self) -> int:
        return self.pick(DIMS) if self.r.random() < 0.95 else int(self.r.integers(40, 130))

    def bad(self, name: str, value, extra=()):
        """``value``, or with probability P_BAD a hostile one."""
        if self.r.random() < P_BAD:
            value = self.pick(BAD_VALUES + list(extra))
            self.note(f"{name}={value!r} (hostile)")
        return value

    # ------------------------------------------------------------------ arrays

    def _values(self, shape, dt: np.dtype, positive=False) -> np.ndarray:
        r = self.r
        if positive:
            return r.uniform(1e-3, 0.1, shape).astype(dt)
        if dt.kind in "iu":
            info = np.iinfo(dt)
            lo, hi = (info.min, info.max) if dt.itemsize == 1 else (-2**20, 2**20) if r.random() < 0.9 \
                else (info.min, info.max)
            return r.integers(max(lo, -2**62), min(hi, 2**62), shape, endpoint=True).astype(dt)
        if dt.kind == "f":
            v = (r.standard_normal(shape) * 3).astype(dt)
            if v.size and r.random() < 0.05:
                v.reshape(-1)[int(r.integers(v.size))] = self.pick([np.nan, np.inf, -np.inf])
            return v
        if dt.kind == "b":
            return r.random(shape) < 0.5
        if dt.kind == "c":
            return (r.standard_normal(shape) + 1j).astype(dt)
        return r.integers(0, 5, shape).astype(object)

    def _view(self, v: np.ndarray, kind: str | None = None, axis: int | None = None) -> tuple[np.ndarray, str]:
        r = self.r
        kind = kind or self.pick(["contiguous"] * 3 + ["steps"] * 3 + ["crop"] * 2 +
                                 ["broadcast", "transpose", "unaligned", "readonly"])
        if v.ndim == 0 or (v.dtype == object and kind == "unaligned"):
            kind = "contiguous"
        if kind == "crop":   # a slice of a larger array along one axis (other axes whole)
            k = int(r.integers(v.ndim)) if axis is None else axis
            off = int(r.integers(2))
            base = np.full(v.shape[:k] + (v.shape[k] + off + int(r.integers(1, 4)),) + v.shape[k + 1:], 7, v.dtype)
            view = base[(slice(None),) * k + (slice(off, off + v.shape[k]),)]
            view[...] = v
            return view, f"crop axis {k} at {off}"
        if kind == "steps":
            steps = [self.pick([1, 1, 2, -1, -2, 3]) for _ in v.shape]
            offs = [int(r.integers(2)) for _ in v.shape]
            slack = [self.pick([0, 1, 3]) for _ in v.shape]
            base = np.full([o + d * abs(s) + e for d, s, o, e in zip(v.shape, steps, offs, slack)], 7, v.dtype)
            view = base[tuple(slice(o, o + d * abs(s), abs(s)) for d, s, o in zip(v.shape, steps, offs))]
            view = view[tuple(slice(None, None, -1 if s < 0 else 1) for s in steps)]
            view[...] = v
            return view, f"steps {steps} offsets {offs} slack {slack}"
        if kind == "broadcast":
            k = int(r.integers(v.ndim))
            return np.broadcast_to(v[(slice(None),) * k + (slice(0, 1),)], v.shape) if v.shape[k] else v, \
                f"broadcast axis {k}"
        if kind == "transpose":
            perm = r.permutation(v.ndim)
            return np.ascontiguousarray(v.transpose(perm)).transpose(np.argsort(perm)), f"transpose {perm.tolist()}"
        if kind == "unaligned" and v.dtype.itemsize > 1:
            view = np.empty(v.nbytes + 1, np.uint8)[1:].view(v.dtype).reshape(v.shape)
            view[...] = v
            return view, "unaligned"
        if kind == "readonly":
            v.flags.writeable = False
            return v, "read-only"
        return v, "contiguous"

    def shape(self, ndim) -> tuple:
        shape = tuple(ndim)
        if self.r.random() < P_BAD:
            shape = self.pick([(), (0,), shape[1:], shape + (2,), tuple(0 if k == 0 else d for k, d in enumerate(shape))])
            self.note(f"shape -> {shape} (hostile)")
        return shape

    def array(self, name: str, shape, dtype, positive=False, view=None, axis=None) -> np.ndarray:
        dt = np.dtype(dtype)
        if self.r.random() < P_BAD:
            dt = np.dtype(self.pick(BAD_DTYPES))
            self.note(f"{name} dtype -> {dt} (hostile)")
        shape = self.shape(shape)
        view, recipe = self._view(self._values(shape, dt, positive), *((view, axis) if view and len(shape) == 4 else ()))
        self.note(f"{name}: {dt}{shape} {recipe}")
        self.arrays.append(view)
        return view.copy() if self.contig else view

    def scale(self, name: str, n: int | None):
        s = float(self.r.uniform(1e-3, 0.1)) if n is None else self.array(name, (n,), F32, positive=True)
        return self.bad(name, s, BAD_SCALES)

    def zero_point(self, name: str, dtype, n: int | None):
        dt = np.dtype(I8 if dtype is I8 else U8)   # dtype may be hostile
        lo, hi = (0, 255) if dt == U8 else (-128, 127)
        z = int(self.r.integers(lo, hi + 1)) if n is None else self.r.integers(lo, hi + 1, n).astype(dt)
        return self.bad(name, z, [256, -129, 300, np.zeros(3, I32)])

    def qtensor(self, name: str, shape, dtype, axis=None, view=None):
        import qkernels as qk
        data = self.array(name, shape, dtype, view=view, axis=2)
        n = data.shape[axis] if axis is not None and data.ndim > abs(axis) - (axis < 0) else None
        return qk.QTensor(data, self.scale(name + ".scale", n), self.zero_point(name + ".zero_point", dtype, n),
                          axis=self.bad(name + ".axis", axis if n is not None else None))

    def out(self, shape, dtype):
        """None, a fresh array, a wrong one, or one aliasing an input (a fresh one when contiguous)."""
        kind = self.pick(["none"] * 12 + ["fresh", "fresh", "alias", "alias", "alias", "dtype", "shape", "strided",
                                         "readonly"])
        if kind == "none" or dtype is None:
            return None
        dt = np.dtype(dtype)
        self.note(f"out: {kind} {dt}{tuple(shape)}")
        if kind == "alias" and not self.contig:
            same = [a for a in self.arrays if a.shape == tuple(shape) and a.dtype == dt and a.flags.writeable]
            self.aliased = True
            if same and self.r.random() < 0.5:
                return same[0]
            need = math.prod(shape) * dt.itemsize
            for a in self.arrays:
                root = a
                while isinstance(root.base, np.ndarray):
                    root = root.base
                if root.flags.c_contiguous and root.flags.writeable and root.nbytes >= need and root.dtype != object:
                    return root.reshape(-1).view(np.uint8)[:need].view(dt).reshape(shape)
            self.aliased = False
        if kind == "dtype":
            return np.empty(shape, np.float64 if dt != np.float64 else I32)
        if kind == "shape":
            return np.empty(tuple(shape) + (1,), dt)
        if kind == "strided":
            return np.empty(tuple(shape) + (2,), dt)[..., 0]
        out = np.empty(shape, dt)
        if kind == "readonly":
            out.flags.writeable = False
        return out


# ----------------------------------------------------------------------------- calls

def _qout(m, default_dtype):
    """The requantization keywords of matmul / conv2d and the output dtype they give."""
    out_dtype = m.bad("out_dtype", m.pick([None, None, U8, I8, I32]), [np.float32, "int8"])
    dt = out_dtype if out_dtype is not None else default_dtype
    kw = {"out_dtype": out_dtype}
    if dt is not I32:
        kw["out_scale"] = m.bad("out_scale", float(m.r.uniform(0.01, 2)), BAD_SCALES)
        kw["out_zero_point"] = m.zero_point("out_zero_point", dt, None)
        kw["activation"] = m.bad("activation", m.pick([None, None, "relu", "relu6", (-1.0, 2.0)]), ["gelu", (2, 1)])
        kw["requant"] = m.bad("requant", m.pick(["fp32", "fixedpoint"]), ["float"])
    return kw, dt if isinstance(dt, type) else None


def c_matmul(m):
    import qkernels as qk
    mm, k, n = m.dim(), m.dim(), m.dim()
    batch = m.pick([(), (), (), (2,), (3, 1)])
    a_dt, b_dt = m.pick([U8, I8]), m.pick([I8, I8, U8])
    a = m.qtensor("a", batch + (mm, k), a_dt)
    b = m.qtensor("b", (k, n), b_dt, axis=-1 if m.r.random() < 0.4 else None)
    bias = m.array("bias", (n,), I32) if m.r.random() < 0.4 else None
    if m.r.random() < 0.4:
        b = qk.pack_weights(b, bias=bias if m.r.random() < 0.5 else None)
    kw, dt = _qout(m, a_dt)
    m.note(f"{kw}")
    out = m.out(batch + (mm, n), dt)
    return "matmul", lambda: qk.matmul(a, b, bias=bias, out=out, **kw)


def c_matmul_float(m):
    import qkernels as qk
    mm, k, n = m.dim(), m.dim(), m.dim()
    dt = m.pick([F16, F32])
    a = m.array("a", (mm, k), dt)
    b = m.array("b", (k, n), dt)
    bias = m.array("bias", (n,), m.pick([F16, F32])) if m.r.random() < 0.4 else None
    if m.r.random() < 0.4:
        b = qk.pack_weights(b, bias=bias)
        bias = None
    act = m.bad("activation", m.pick([None, "relu", (-1.0, 1.0)]))
    out = m.out((mm, n), dt)
    return f"matmul {'f16' if dt == F16 else 'f32'}", lambda: qk.matmul(a, b, bias=bias, activation=act, out=out)


def c_matmul_integer(m):
    import qkernels as qk
    mm, k, n = m.dim(), m.dim(), m.dim()
    a_dt, b_dt = m.pick([U8, I8]), m.pick([U8, I8])
    a = m.array("a", m.pick([(), (2,)]) + (mm, k), a_dt)
    b = m.array("b", (k, n), b_dt)
    za = m.zero_point("a_zero_point", a_dt, None)
    zb = m.zero_point("b_zero_point", b_dt, n if m.r.random() < 0.4 else None)
    out = m.out(a.shape[:-1] + (n,), I32)
    return "matmul_integer", lambda: qk.matmul_integer(a, b, za, zb, out=out)


def _conv_out(h, w, kh, kw, stride, dilation, padding):
    """Output (OH, OW) of the geometry, or None when the padding form is not computed here."""
    if isinstance(padding, str):
        if padding == "valid":
            padding = 0
        else:
            return -(-h // stride), -(-w // stride)
    p = (padding,) * 4 if isinstance(padding, int) else padding * 2 if len(padding) == 2 else \
        (padding[0], padding[1], padding[2], padding[3])
    return ((h + p[0] + p[2] - dilation * (kh - 1) - 1) // stride + 1,
            (w + p[1] + p[3] - dilation * (kw - 1) - 1) // stride + 1)


def _conv_common(m, depthwise: bool):
    trap = m.r.random() < 0.15
    if trap:   # 1x1 over W-cropped one-row images, several (conv2d read the wrong image: issue 12)
        n, h, kh, kw, stride, dil, pad = 2, 1, 1, 1, 1, 1, 0
    else:
        n, h = m.pick([1, 1, 2, 3]), m.pick([1, 2, 3, 5, 8, 9])
        kh, kw = m.pick([1, 1, 2, 3, 3, 5]), m.pick([1, 1, 2, 3, 3, 5])
        stride, dil = m.pick([1, 1, 2, 3]), m.pick([1, 1, 2])
        pad = m.pick([0, 0, 1, 2, (1, 2), (0, 1, 2, 1), "same", "valid", "same_lower"])
    w_ = m.pick([1, 2, 3, 5, 8, 9])
    groups = 1 if depthwise else m.pick([1, 1, 1, 2, 3])
    c = m.pick([1, 2, 3, 4, 8, 16, 17]) * (1 if depthwise else groups)
    o = c * m.pick([1, 1, 2]) if depthwise else groups * m.pick([1, 2, 3, 8, 16])
    kw_ = {"stride": m.bad("stride", stride, [0, (1, 0), 2**40]),
           "padding": m.bad("padding", pad, ["middle", (1, 2, 3), 2**40]),
           "dilation": m.bad("dilation", dil, [0, 2**40])}
    layout = m.pick(["NHWC", "NHWC", "NCHW"])
    wl = m.pick(["OHWI", "OIHW"])
    kw_.update(layout=m.bad("layout", layout, ["NWHC"]), weight_layout=m.bad("weight_layout", wl, ["HWIO"]))
    cg = 1 if depthwise else c // groups
    x_shape = (n, h, w_, c) if layout == "NHWC" else (n, c, h, w_)
    w_shape = (o, kh, kw, cg) if wl == "OHWI" else (o, cg, kh, kw)
    hw = _conv_out(h, w_, kh, kw, stride, dil, pad)
    out_shape = None if hw is None or min(hw) < 1 else ((n, *hw, o) if layout == "NHWC" else (n, o, *hw))
    m.note(f"groups {c if depthwise else groups}, {kw_}")
    return x_shape, w_shape, c if depthwise else groups, o, kw_, out_shape, trap and layout == "NHWC"


def c_conv(m, depthwise=False):
    import qkernels as qk
    x_shape, w_shape, groups, o, kw, out_shape, trap = _conv_common(m, depthwise)
    crop = "crop" if trap else None
    f16 = m.r.random() < 0.2
    if f16:
        x, w = m.array("x", x_shape, F16, view=crop, axis=2), m.array("w", w_shape, F16)
        bias = m.array("bias", (o,), F32) if m.r.random() < 0.4 else None
        dt = F16
    else:
        x_dt = m.pick([U8, I8])
        x = m.qtensor("x", x_shape, x_dt, view=crop)
        w = m.qtensor("w", w_shape, m.pick([I8, I8, U8]), axis=0 if m.r.random() < 0.4 else None)
        bias = m.array("bias", (o,), I32) if m.r.random() < 0.4 else None
        q, dt = _qout(m, x_dt)
        kw.update(q)
        m.note(f"{q}")
    if m.r.random() < 0.3:
        w = qk.pack_conv_weights(w, groups=groups, weight_layout=kw["weight_layout"], bias=bias)
        bias = None
    out = m.out(out_shape, dt) if out_shape else None
    if depthwise:
        return "depthwise_conv2d" + " f16" * f16, lambda: qk.depthwise_conv2d(x, w, bias, out=out, **kw)
    return "conv2d" + " f16" * f16, lambda: qk.conv2d(x, w, bias, groups=groups, out=out, **kw)


def c_depthwise(m):
    return c_conv(m, depthwise=True)


def _shape_axis(m):
    shape = tuple(m.dim() for _ in range(int(m.r.integers(0, 5))))
    axis = int(m.r.integers(-len(shape), len(shape))) if shape and m.r.random() < 0.4 else None
    return shape, axis


def c_quantize(m):
    import qkernels as qk
    shape, axis = _shape_axis(m)
    x = m.array("x", shape, m.pick([F32, F32, np.float64, F16, I32, U8]))
    dtype = m.bad("dtype", m.pick([U8, I8]), ["uint8", np.int16])
    n = shape[axis] if axis is not None else None
    scale, zp = m.scale("scale", n), m.zero_point("zero_point", dtype, n)
    axis = m.bad("axis", axis, [len(shape), 1.5])
    out = m.out(shape, dtype if dtype is U8 or dtype is I8 else None)
    return "quantize", lambda: qk.quantize(x, scale, zp, dtype=dtype, axis=axis, out=out)


def c_dequantize(m):
    import qkernels as qk
    shape, axis = _shape_axis(m)
    dt = m.pick([U8, I8])
    out = None
    if m.r.random() < 0.5:
        q = m.qtensor("q", shape, dt, axis)
        out = m.out(shape, F32)
        return "dequantize", lambda: qk.dequantize(q, out=out)
    data = m.array("q", shape, dt)
    n = shape[axis] if axis is not None else None
    scale, zp = m.scale("scale", n), m.zero_point("zero_point", dt, n)
    out = m.out(shape, F32)
    return "dequantize array", lambda: qk.dequantize(data, scale, zp, axis=axis, out=out)


def c_qtensor(m):
    import qkernels as qk
    mm, k, n = m.dim(), m.dim(), m.dim()
    a = m.qtensor("a", (mm, k), m.pick([U8, I8]))
    b = m.qtensor("b", (k, n), m.pick([I8, U8]), axis=-1 if m.r.random() < 0.3 else None)
    how = m.pick(["matmul", "asarray", "dequantize"])
    return f"QTensor {how}", lambda: a @ b if how == "matmul" else np.asarray(a) if how == "asarray" \
        else b.dequantize()


def c_settings(m):
    """A process-wide setting (restored after the case), then an ordinary call."""
    import qkernels as qk
    name, call = m.pick([c_matmul, c_matmul_integer, c_conv, c_quantize])(m)
    if m.r.random() < 0.5:
        n = m.pick([1, 2, 3, 16, 0, -1, 2**31, 2**63, 1.5, "2", True, None])
        return f"set_num_threads({n!r}) + {name}", lambda: (qk.set_num_threads(n), call())[1]
    isa = m.pick(["scalar", "avx2", "neon", "avx512vnni", "", None, 3, "AVX2"])
    if m.r.random() < 0.5:
        return f"set_isa({isa!r}) + {name}", lambda: (qk.set_isa(isa), call())[1]

    def with_isa():
        with qk.use_isa(isa):
            return call()
    return f"use_isa({isa!r}) + {name}", with_isa


CALLS = [(c_matmul, 4), (c_matmul_float, 1), (c_matmul_integer, 2), (c_conv, 4), (c_depthwise, 2), (c_quantize, 2),
         (c_dequantize, 2), (c_qtensor, 1), (c_settings, 1)]


# ----------------------------------------------------------------------------- a case

def _parts(res) -> list:
    import qkernels as qk
    if isinstance(res, qk.QTensor):
        return [res.data, np.asarray(res.scale), np.asarray(res.zero_point), res.axis]
    return [res]


def _same(a, b) -> bool:
    pa, pb = _parts(a), _parts(b)
    for x, y in zip(pa, pb):
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            if not (isinstance(x, np.ndarray) and isinstance(y, np.ndarray)) or x.dtype != y.dtype \
                    or x.shape != y.shape or not np.array_equal(x, y, equal_nan=x.dtype.kind in "fc"):
                return False
        elif x != y:
            return False
    return len(pa) == len(pb)


def _diff(a, b) -> str:
    x, y = _parts(a)[0], _parts(b)[0]
    if isinstance(x, np.ndarray) and isinstance(y, np.ndarray) and x.shape == y.shape and x.dtype == y.dtype:
        bad = ~((x == y) | (np.isnan(x) & np.isnan(y)) if x.dtype.kind in "fc" else x == y)
        return f"{int(bad.sum())} of {x.size} values differ"
    return f"{type(x).__name__} {getattr(x, 'dtype', '')}{getattr(x, 'shape', '')} vs " \
           f"{type(y).__name__} {getattr(y, 'dtype', '')}{getattr(y, 'shape', '')}"


def _make(seed, case, contiguous, log=None):
    m = Maker(seed, case, contiguous, log)
    fns, weights = zip(*CALLS)
    fn = fns[int(m.r.choice(len(fns), p=np.array(weights) / sum(weights)))]
    name, call = fn(m)
    return name + " (out= aliases an input)" * m.aliased, call


def run(seed: int, case: int, desc: list[str], verbose: bool = False) -> None:
    log: list[str] = []
    try:
        _check(seed, case, log)
    finally:
        desc.extend(log)


def _check(seed: int, case: int, log: list[str]) -> None:
    import qkernels as qk
    name, call = _make(seed, case, False, log)
    log.insert(0, name)
    res = call()
    # the same call on contiguous copies (made afresh: out= may have overwritten an input)
    _, call2 = _make(seed, case, True)
    try:
        ref = call2()
    except Exception as exc:
        raise WrongResult(f"{name}: view ok, copy raised", f"{type(exc).__name__}: {exc}") from None
    if not _same(res, ref):
        raise WrongResult(f"{name}: view vs contiguous", _diff(res, ref))
    if "f16" in name or "f32" in name or "isa" in name or "threads" in name:
        return   # float results may differ by ISA (documented tolerance); settings cases set their own
    _, call3 = _make(seed, case, True)
    threads, isa = qk.get_num_threads(), qk.get_isa()
    try:
        qk.set_num_threads(1)
        with qk.use_isa("scalar"):
            ref3 = call3()
    finally:
        qk.set_num_threads(threads)
    if not _same(ref, ref3):
        raise WrongResult(f"{name}: {isa} vs scalar 1 thread", _diff(ref, ref3))
