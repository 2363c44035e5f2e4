"""Native pooling, reductions and layer normalization (kernels/pool_avg.c, kernels/reduce.c,
graph/backends/cpu_pool.py): each kernel against plain float64/int64 numpy with
hypothesis (sizes 1, odd, prime; windows past the edges; padding and ceil_mode corners;
NaN/inf; arbitrary views against contiguous copies), com.microsoft QLinearAveragePool
bit for bit against onnxruntime, and graph-level models (plan on and off: the same bits).

Accuracy stated and tested here:
- AveragePool float32: the taps inside X summed in float32 in window order, one division:
  |y - exact| <= (K + 1) * 2**-24 * (sum |taps| / count) for K taps; float16 adds its
  one rounding (2**-11 relative). Bit-identical whatever the memory order of X and Y.
- ReduceSum / ReduceMean float32: float64 sums rounded once: |y - exact| <= 2**-24 |exact|
  + 2**-45 sum |x|. ReduceMax / ReduceMin / GlobalMaxPool: exact, NaN propagating.
- LayerNormalization: float64 statistics, one rounding of each output: |y - exact| <=
  2**-23 |exact| + 2**-30 (float32), bit-identical whatever the memory order of X.
- QLinearAveragePool: onnxruntime's arithmetic, bit for bit (its reference operator too).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from qkernels import _native
from qkernels.graph import Session
from qkernels.graph.backends.reference import run_node
from qkernels.graph.backends.reference.conv import _pool_setup
from qkernels.graph.backends.reference.ort_contrib import ort_pool_geometry
from qkernels.graph.ir import Node

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

SETTINGS = settings(max_examples=50, deadline=None)


def _node(op, attrs, inputs=("x",), outputs=("y",), domain=""):
    return Node("n", op, domain, list(inputs), list(outputs), dict(attrs))


# ------------------------------------------------------------------------ array views

def _view(a: np.ndarray, kind: int) -> np.ndarray:
    """``a``'s values as a view of some other memory: 0 contiguous, 1 NHWC memory (4-D),
    2 every other element of a bigger array, 3 reversed in memory, 4 Fortran order."""
    if kind == 1 and a.ndim == 4:
        return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    if kind == 2:
        big = np.zeros(tuple(2 * d for d in a.shape), a.dtype)
        v = big[tuple(slice(None, None, 2) for _ in a.shape)]
        v[...] = a
        return v
    if kind == 3:
        r = np.ascontiguousarray(a[tuple(slice(None, None, -1) for _ in a.shape)])
        return r[tuple(slice(None, None, -1) for _ in a.shape)]
    if kind == 4:
        return np.asfortranarray(a)
    return np.ascontiguousarray(a)


views = st.integers(0, 4)


def _bits(a: np.ndarray) -> bytes:
    """The bytes of ``a``, every NaN as one NaN: the sign of a NaN made from inf - inf
    follows the instruction that made it (vector or scalar), not the value."""
    a = np.array(a, copy=True, order="C")
    if a.dtype.kind == "f":
        a[np.isnan(a)] = np.nan
    return a.tobytes()


def _floats(rng, shape, dtype, special):
    x = (rng.standard_normal(shape) * rng.choice([1e-3, 1, 100])).astype(dtype)
    if special and x.size:
        idx = rng.integers(0, x.size, max(1, x.size // 7))
        x.reshape(-1)[idx] = rng.choice(np.array([np.nan, np.inf, -np.inf, 0.0, -0.0], dtype), idx.size)
    return x


# ------------------------------------------------------------------------ AveragePool

def _pool_attrs(draw, h, w):
    k = [draw(st.integers(1, 4)), draw(st.integers(1, 4))]
    attrs = {"kernel_shape": k, "strides": [draw(st.integers(1, 3)), draw(st.integers(1, 3))]}
    if draw(st.booleans()):
        attrs["dilations"] = [draw(st.integers(1, 2)), draw(st.integers(1, 2))]
    mode = draw(st.sampled_from(["pads", "pads", "SAME_UPPER", "SAME_LOWER", "VALID", "none"]))
    if mode == "pads":
        attrs["pads"] = [draw(st.integers(0, kk - 1)) for kk in k + k]
    elif mode != "none":
        attrs["auto_pad"] = mode
    if draw(st.booleans()):
        attrs["ceil_mode"] = 1
    if draw(st.booleans()):
        attrs["count_include_pad"] = 1
    return attrs


@st.composite
def pool_cases(draw, quantized=False):
    n, c = draw(st.sampled_from([1, 2])), draw(st.sampled_from([1, 3, 8, 17]))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    attrs = _pool_attrs(draw, h, w)
    if quantized:
        attrs.pop("dilations", None)
    return (n, c, h, w), attrs, draw(st.integers(0, 2 ** 31))


def _avg_exact(x, geom, include):
    """float64 AveragePool with ONNX's divisor, and sum |taps| per window (the bound)."""
    kernel, strides, dil, begin, end, out = geom
    x64 = x.astype(np.float64)
    n, c, h, w = x.shape
    y, mag = np.empty((n, c) + tuple(out)), np.empty((n, c) + tuple(out))
    for oy in range(out[0]):
        for ox in range(out[1]):
            py = [oy * strides[0] + k * dil[0] - begin[0] for k in range(kernel[0])]
            px = [ox * strides[1] + k * dil[1] - begin[1] for k in range(kernel[1])]
            iy, ix = [i for i in py if 0 <= i < h], [i for i in px if 0 <= i < w]
            taps = x64[:, :, iy][:, :, :, ix]
            if include:
                cnt = sum(-begin[0] <= i < h + end[0] for i in py) * sum(-begin[1] <= i < w + end[1] for i in px)
            else:
                cnt = len(iy) * len(ix)
            with np.errstate(all="ignore"):
                y[:, :, oy, ox] = taps.sum((2, 3)) / cnt
                mag[:, :, oy, ox] = np.abs(taps).sum((2, 3)) / cnt
    return y, mag


def _run_avg(node, x, y=None):
    geom = _pool_setup(node, x)
    kernel, strides, dil, begin, end, out = geom
    if y is None:
        y = np.empty(x.shape[:2] + tuple(out), x.dtype)
    _native.avg_pool(x, y, *kernel, *strides, *dil, *begin, *end, bool(node.attrs.get("count_include_pad", 0)))
    return y, geom


@SETTINGS
@given(pool_cases(), st.sampled_from([np.float32, np.float16]), views, views, st.booleans())
def test_average_pool_against_float64_and_views(case, dtype, vin, vout, special):
    shape, attrs, seed = case
    node = _node("AveragePool", attrs)
    x = _floats(np.random.default_rng(seed), shape, dtype, special)
    geom = _pool_setup(node, x)
    assume(min(geom[-1]) >= 1)
    y, _ = _run_avg(node, x)
    exact, mag = _avg_exact(x, geom, attrs.get("count_include_pad", 0))
    taps = attrs["kernel_shape"][0] * attrs["kernel_shape"][1]
    eps = 2.0 ** -24 if dtype == np.float32 else 2.0 ** -11
    tol = (taps + 1) * 2.0 ** -24 * mag + eps * np.abs(exact) + (0 if dtype == np.float32 else 2.0 ** -24)
    finite = np.isfinite(exact) & np.isfinite(mag)
    with np.errstate(invalid="ignore"):
        err = np.abs(y.astype(np.float64) - exact)
    assert np.all(err[finite] <= tol[finite])
    np.testing.assert_array_equal(np.isnan(y), np.isnan(exact))     # NaN and inf windows as numpy's sums
    inf = np.isinf(exact)
    np.testing.assert_array_equal(y[inf], exact[inf])
    # the reference operator: the same arithmetic up to its float32 sum order
    ref = run_node(node, {"x": x})["y"]
    close = finite & np.isfinite(ref)
    with np.errstate(invalid="ignore"):
        assert np.all(np.abs(y.astype(np.float64) - ref)[close] <= 2 * tol[close])
    # any memory order of x and y: the same bits (NaN signs aside)
    yv = _view(np.zeros_like(y), vout)
    _run_avg(node, _view(x, vin), yv)
    assert _bits(yv) == _bits(y)


def test_average_pool_bad_input():
    x = np.zeros((1, 2, 4, 4), np.float32)
    with pytest.raises(ValueError):
        _native.avg_pool(x, np.zeros((1, 2, 4, 4), np.float64), 2, 2, 1, 1, 1, 1, 0, 0, 1, 1, False)
    with pytest.raises(ValueError):
        _native.avg_pool(x, np.zeros((1, 3, 4, 4), np.float32), 2, 2, 1, 1, 1, 1, 0, 0, 1, 1, False)
    with pytest.raises(ValueError):
        _native.avg_pool(x, np.zeros((1, 2, 4, 4), np.float32), 0, 2, 1, 1, 1, 1, 0, 0, 1, 1, False)
    with pytest.raises(ValueError):
        _native.avg_pool(x.astype(np.int8), np.zeros((1, 2, 4, 4), np.int8), 2, 2, 1, 1, 1, 1, 0, 0, 1, 1, False)
    ro = np.zeros((1, 2, 4, 4), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError):
        _native.avg_pool(x, ro, 2, 2, 1, 1, 1, 1, 0, 0, 1, 1, False)
    with pytest.raises((ValueError, TypeError)):
        _native.avg_pool(x[:, :, :, :3].view(np.uint8)[..., 1:].view(np.uint8), ro, 2, 2, 1, 1, 1, 1, 0, 0, 1, 1, False)


# --------------------------------------------------------------- QLinearAveragePool

def _q_model(shape, dtype, attrs, sx, zx, sy, zy):
    et = TensorProto.INT8 if dtype == np.int8 else TensorProto.UINT8
    inits = [helper.make_tensor("sx", TensorProto.FLOAT, [], [sx]), helper.make_tensor("zx", et, [], [zx]),
             helper.make_tensor("sy", TensorProto.FLOAT, [], [sy]), helper.make_tensor("zy", et, [], [zy])]
    node = helper.make_node("QLinearAveragePool", ["x", "sx", "zx", "sy", "zy"], ["y"], domain="com.microsoft",
                            **attrs)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", et, list(shape))],
                          [helper.make_tensor_value_info("y", et, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])


def _q_case(case, dtype, last, scale_kind):
    shape, attrs, seed = case
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    if last:
        attrs = dict(attrs, channels_last=1)
        shape = (shape[0],) + shape[2:] + (shape[1],)
    x = rng.integers(info.min, info.max + 1, shape).astype(dtype)
    if scale_kind == "ties":      # means of two integers at scale 1: halves, rounded to even
        sx, sy, zx = 1.0, 1.0, 0
        x = (x // 4).astype(dtype)
    else:
        sx = float(np.float32(rng.uniform(1e-3, 2)))
        sy = float(np.float32(sx * (rng.uniform(0.02, 0.2) if scale_kind == "saturating" else rng.uniform(0.3, 3))))
        zx = int(rng.integers(info.min, info.max + 1))
    zy = int(rng.integers(info.min, info.max + 1))
    return x, attrs, sx, zx, sy, zy


def _q_native(x, attrs, sx, zx, sy, zy, view=0):
    node = _node("QLinearAveragePool", attrs, ("x", "sx", "zx", "sy", "zy"), domain="com.microsoft")
    last = attrs.get("channels_last", 0)
    xc = x.transpose(0, 3, 1, 2) if last else x
    kernel, strides, begin, end, out = ort_pool_geometry(node, xc)
    y = _view(np.zeros(xc.shape[:2] + tuple(out), x.dtype), view)
    _native.qlinear_avg_pool(_view(xc, view), y, *kernel, *strides, *begin, *end,
                             bool(attrs.get("count_include_pad", 0)), sx, zx, sy, zy)
    return y.transpose(0, 2, 3, 1) if last else y


def _q_reference(x, attrs, sx, zx, sy, zy):
    node = _node("QLinearAveragePool", attrs, ("x", "sx", "zx", "sy", "zy"), domain="com.microsoft")
    vals = {"x": x, "sx": np.float32(sx), "zx": np.array(zx, x.dtype), "sy": np.float32(sy),
            "zy": np.array(zy, x.dtype)}
    return run_node(node, vals)["y"]


def _window_fits(attrs, shape, last):
    sp = shape[1:-1] if last else shape[2:]
    k = attrs["kernel_shape"]
    return all(kk <= s for kk, s in zip(k, sp)) and (attrs.get("auto_pad", "NOTSET") != "VALID" or True)


@SETTINGS
@given(pool_cases(quantized=True), st.sampled_from([np.uint8, np.int8]), st.booleans(),
       st.sampled_from(["random", "saturating", "ties"]), views)
def test_qlinear_average_pool_native_is_the_reference(case, dtype, last, scale_kind, view):
    x, attrs, sx, zx, sy, zy = _q_case(case, dtype, last, scale_kind)
    node = _node("QLinearAveragePool", attrs, ("x", "sx", "zx", "sy", "zy"), domain="com.microsoft")
    xc = x.transpose(0, 3, 1, 2) if last else x
    kernel, _, begin, end, out = ort_pool_geometry(node, xc)
    assume(min(out) >= 1 and all(0 <= p < k for p, k in zip(begin + end, kernel + kernel)))
    assume(not (list(xc.shape[2:]) == list(kernel) and not any(begin + end)))   # the global case: its own kernel
    np.testing.assert_array_equal(_q_native(x, attrs, sx, zx, sy, zy, view), _q_reference(x, attrs, sx, zx, sy, zy))


@settings(max_examples=40, deadline=None)
@given(pool_cases(quantized=True), st.sampled_from([np.uint8, np.int8]), st.booleans(),
       st.sampled_from(["random", "saturating", "ties"]))
def test_qlinear_average_pool_is_onnxruntime_bit_for_bit(case, dtype, last, scale_kind):
    ort = pytest.importorskip("onnxruntime")
    x, attrs, sx, zx, sy, zy = _q_case(case, dtype, last, scale_kind)
    xc = x.transpose(0, 3, 1, 2) if last else x
    node = _node("QLinearAveragePool", attrs, ("x", "sx", "zx", "sy", "zy"), domain="com.microsoft")
    kernel, _, _, begin, end, out = _pool_setup(node, xc)
    # onnxruntime refuses pads >= kernel and crashes on empty outputs: neither is asked
    assume(min(out) >= 1 and all(p < k for p, k in zip(begin + end, kernel + kernel)))
    assume(all(k <= s for k, s in zip(kernel, xc.shape[2:])))
    model = _q_model(x.shape, dtype, attrs, sx, zx, sy, zy)
    (want,) = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_array_equal(_q_reference(x, attrs, sx, zx, sy, zy), want)
    planned, nodes = Session(model), Session(model, plan=False)
    for _ in range(2):
        np.testing.assert_array_equal(planned.run(None, {"x": x})[0], want)
    np.testing.assert_array_equal(nodes.run(None, {"x": x})[0], want)


def test_qlinear_average_pool_bad_input():
    x = np.zeros((1, 2, 4, 4), np.uint8)
    with pytest.raises(ValueError):   # pads not smaller than the window (onnxruntime refuses them)
        _native.qlinear_avg_pool(x, np.zeros((1, 2, 4, 4), np.uint8), 2, 2, 1, 1, 2, 0, 0, 0, False, 1.0, 0, 1.0, 0)
    with pytest.raises(ValueError):
        _native.qlinear_avg_pool(x, np.zeros((1, 2, 3, 3), np.int8), 2, 2, 1, 1, 0, 0, 0, 0, False, 1.0, 0, 1.0, 0)
    with pytest.raises(ValueError):
        _native.qlinear_avg_pool(x, np.zeros((1, 2, 3, 3), np.uint8), 2, 2, 1, 1, 0, 0, 0, 0, False, 1.0, 300, 1.0, 0)
    with pytest.raises(ValueError):
        _native.qlinear_avg_pool(x.astype(np.float32), np.zeros((1, 2, 3, 3), np.float32), 2, 2, 1, 1, 0, 0, 0, 0,
                                 False, 1.0, 0, 1.0, 0)


# ------------------------------------------------------------------------ reductions

@st.composite
def reduce_cases(draw):
    rank = draw(st.integers(1, 5))
    shape = tuple(draw(st.sampled_from([1, 2, 3, 5, 7, 17])) for _ in range(rank))
    axes = sorted(draw(st.sets(st.integers(0, rank - 1), min_size=1)))
    return shape, axes, draw(st.integers(0, 2 ** 31))


def _permuted(a: np.ndarray, seed: int) -> np.ndarray:
    """``a`` with its memory in a random axis order (a dense, non-C-order view)."""
    order = np.random.default_rng(seed).permutation(a.ndim)
    return np.ascontiguousarray(a.transpose(order)).transpose(np.argsort(order))


@SETTINGS
@given(reduce_cases(), st.sampled_from(["sum", "mean", "max", "min"]), st.sampled_from([np.float32, np.int8, np.uint8]),
       views, st.booleans(), st.booleans())
def test_reduce_against_numpy_and_views(case, name, dtype, view, permute, special):
    shape, axes, seed = case
    op = {"sum": 0, "mean": 1, "max": 2, "min": 3}[name]
    assume(dtype == np.float32 or op >= 2)
    rng = np.random.default_rng(seed)
    if dtype == np.float32:
        x = _floats(rng, shape, dtype, special)
    else:
        x = rng.integers(np.iinfo(dtype).min, np.iinfo(dtype).max + 1, shape).astype(dtype)
    keep = tuple(1 if i in axes else d for i, d in enumerate(shape))
    y = np.empty(keep, dtype)
    _native.reduce(x, y, axes, op)
    if op >= 2:
        want = (np.max if op == 2 else np.min)(x, axis=tuple(axes), keepdims=True)
        np.testing.assert_array_equal(y, want)                 # exact, NaN propagating
    else:
        x64 = x.astype(np.float64)
        with np.errstate(all="ignore"):
            want = (np.sum if op == 0 else np.mean)(x64, axis=tuple(axes), keepdims=True)
            mag = (np.sum if op == 0 else np.mean)(np.abs(x64), axis=tuple(axes), keepdims=True)
        fin = np.isfinite(mag)
        with np.errstate(invalid="ignore"):
            assert np.all(np.abs(y - want)[fin] <= (2.0 ** -24 * np.abs(want) + 2.0 ** -45 * mag)[fin] + 1e-45)
        np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
    xv = _view(x, view)
    if permute:
        xv = _permuted(x, seed)
    yv = _view(np.zeros(keep, dtype), view)
    _native.reduce(xv, yv, axes, op)
    if op >= 2:
        np.testing.assert_array_equal(yv, y)
    else:
        np.testing.assert_allclose(yv, y, rtol=2 ** -22, atol=1e-30, equal_nan=True)


def test_reduce_bad_input():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError):
        _native.reduce(x, np.zeros((2, 3), np.float32), [1], 0)       # y's shape
    with pytest.raises(ValueError):
        _native.reduce(x, np.zeros((2, 1), np.float64), [1], 0)
    with pytest.raises(ValueError):
        _native.reduce(x.astype(np.int8), np.zeros((2, 1), np.int8), [1], 0)    # no integer sums
    with pytest.raises(ValueError):
        _native.reduce(np.zeros((2, 0), np.float32), np.zeros((2, 1), np.float32), [1], 2)
    with pytest.raises(ValueError):
        _native.reduce(x, np.zeros((2, 1), np.float32), [1], 7)


# ------------------------------------------------------------------- layer normalization

@st.composite
def ln_cases(draw):
    rank = draw(st.integers(1, 4))
    shape = tuple(draw(st.sampled_from([1, 2, 3, 7, 16, 37])) for _ in range(rank))
    return shape, draw(st.integers(-rank, rank - 1)), draw(st.integers(0, 2 ** 31))


def _ln_exact(x, axis, scale, bias, eps):
    x64 = x.astype(np.float64)
    axes = tuple(range(axis % x.ndim, x.ndim))
    m = x64.mean(axes, keepdims=True)
    v = ((x64 - m) ** 2).mean(axes, keepdims=True)
    inv = 1 / np.sqrt(v + eps)
    y = (x64 - m) * inv * scale.astype(np.float64)
    return (y + bias.astype(np.float64) if bias is not None else y), m, inv


@SETTINGS
@given(ln_cases(), st.sampled_from([np.float32, np.float16]), st.booleans(), views, st.booleans())
def test_layer_norm_against_float64_and_views(case, dtype, with_bias, view, permute):
    shape, axis, seed = case
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * rng.choice([0.01, 1, 30]) + rng.choice([0, 5])).astype(dtype)
    a = axis % x.ndim
    scale = rng.standard_normal(shape[a:]).astype(dtype)
    bias = rng.standard_normal(shape[a:]).astype(dtype) if with_bias else None
    rows, n = int(np.prod(shape[:a], dtype=np.int64)), int(np.prod(shape[a:], dtype=np.int64))
    eps = float(np.float32(1e-5))
    y = np.empty((rows, n), dtype)
    mean, inv = np.empty(rows, np.float32), np.empty(rows, np.float32)
    _native.layer_norm(x.reshape(rows, n), scale.reshape(-1), None if bias is None else bias.reshape(-1), eps, y,
                       mean, inv)
    want, m, k = _ln_exact(x, a, scale, bias, eps)
    want = want.reshape(rows, n)
    if dtype == np.float32:
        assert np.all(np.abs(y - want) <= 2.0 ** -23 * np.abs(want) + 2.0 ** -30 * (1 + np.abs(want).max()))
    else:
        np.testing.assert_allclose(y.astype(np.float64), want, rtol=2.0 ** -10, atol=2.0 ** -14)
    np.testing.assert_allclose(mean, m.reshape(-1), rtol=2.0 ** -23, atol=1e-30)
    np.testing.assert_allclose(inv, k.reshape(-1), rtol=2.0 ** -22)
    # the same bits from any memory order of x (through the runner's 2-D view or copy)
    xv = _permuted(x, seed) if permute else _view(x, view)
    node = _node("LayerNormalization", {"axis": axis}, ("x", "s", "b") if with_bias else ("x", "s"),
                 ("y", "m", "i"))
    from qkernels.graph.backends.cpu_pool import _make_layer_norm
    from qkernels.graph.ir import Graph
    graph = Graph.__new__(Graph)
    graph.initializers = {}
    runner = _make_layer_norm(node, graph)
    vals = {"x": xv, "s": scale, "b": bias}
    got = runner(vals)
    np.testing.assert_array_equal(got["y"].reshape(rows, n), y)
    np.testing.assert_array_equal(got["m"].reshape(-1), mean)
    np.testing.assert_array_equal(got["i"].reshape(-1), inv)


def _ln_isas():
    import qkernels
    from qkernels import _dispatch
    got = {}
    for isa in qkernels._dispatch.tested_isas():
        with qkernels.use_isa(isa):
            got.setdefault(_dispatch.isa_index(), isa)
    return sorted(got)


@pytest.mark.parametrize("isa", _ln_isas())
@SETTINGS
@given(rows=st.sampled_from([1, 2, 5, 16]), n=st.sampled_from([1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 64, 384, 385]),
       seed=st.integers(0, 2 ** 31), with_bias=st.booleans(), strided=st.sampled_from(["none", "x", "scale", "y"]),
       big=st.sampled_from([0.0, 1e-30, 1.0, 1e30]), stats=st.booleans())
def test_layer_norm_every_build_same_bits(isa, rows, n, seed, with_bias, strided, big, stats):
    """The float32 LayerNorm of every ISA build (AVX2, AVX-512, emulated: the compiler's
    vectorisation of the same float64 loops; contiguous rows take a copy of the loops with
    unit strides) gives the portable build's bits, on contiguous rows and on views with
    any one operand strided (the general loops)."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, n)) * (big or 1) + rng.choice([0.0, 3.0])).astype(np.float32)
    if big == 0.0:
        x[:] = np.float32(rng.standard_normal())      # a constant row: variance 0, inv = 1/sqrt(eps)
    scale = rng.standard_normal(n).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32) if with_bias else None
    if strided == "x":
        x = np.repeat(x, 2, axis=1)[:, ::2]
    if strided == "scale":
        scale = np.repeat(scale, 3)[::3]
        bias = None if bias is None else np.repeat(bias, 3)[::3]

    def run(i):
        y = np.full((rows, 2 * n), np.nan, np.float32)[:, ::2] if strided == "y" else np.empty((rows, n), np.float32)
        mean, inv = (np.empty(rows, np.float32), np.empty(rows, np.float32)) if stats else (None, None)
        _native.layer_norm(x, scale, bias, float(np.float32(1e-5)), y, mean, inv, isa=i)
        return [a.view(np.uint32) for a in (np.ascontiguousarray(y), mean, inv) if a is not None]

    for got, want in zip(run(isa), run(0)):
        np.testing.assert_array_equal(got, want)


def test_layer_norm_bad_input():
    x = np.zeros((2, 3), np.float32)
    s = np.ones(3, np.float32)
    with pytest.raises(ValueError):
        _native.layer_norm(x, s.astype(np.float16), None, 1e-5, np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError):
        _native.layer_norm(x, np.ones(4, np.float32), None, 1e-5, np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError):
        _native.layer_norm(x, s, None, 1e-5, np.zeros((2, 3), np.float16))
    with pytest.raises(ValueError):
        _native.layer_norm(x, s, None, 1e-5, np.zeros((2, 3), np.float32), np.zeros(3, np.float32))
    with pytest.raises(ValueError):
        _native.layer_norm(np.zeros((2, 0), np.float32), s[:0], None, 1e-5, np.zeros((2, 0), np.float32))


# ---------------------------------------------------------------------- graph level

def _model(op, x, attrs=None, inits=(), outs=("y",), opset=18, domain="", out_types=None):
    et = helper.np_dtype_to_tensor_dtype(x.dtype)
    node = helper.make_node(op, ["x"] + [n for n, _ in inits], list(outs), domain=domain, **(attrs or {}))
    types = out_types or [et] + [TensorProto.FLOAT] * (len(outs) - 1)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", et, x.shape)],
                          [helper.make_tensor_value_info(o, t, None) for o, t in zip(outs, types)],
                          [numpy_helper.from_array(v, n) for n, v in inits])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


RNG = np.random.default_rng(7)
GRAPH_CASES = {
    "avgpool-fp32": ("AveragePool", RNG.standard_normal((1, 8, 11, 11), np.float32),
                     {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [2, 2], "ceil_mode": 1,
                      "count_include_pad": 1}, (), ("y",), 19, 1e-6),
    "avgpool-fp16": ("AveragePool", RNG.standard_normal((2, 5, 9, 7)).astype(np.float16),
                     {"kernel_shape": [3, 2], "dilations": [2, 1], "pads": [2, 0, 1, 1]}, (), ("y",), 19, 1e-3),
    "reducemean-18": ("ReduceMean", RNG.standard_normal((2, 5, 7), np.float32), {"keepdims": 0},
                      (("axes", np.array([1, -1])),), ("y",), 18, 1e-6),
    "reducesum-13": ("ReduceSum", RNG.standard_normal((3, 4, 5), np.float32), {},
                     (("axes", np.array([0, 2])),), ("y",), 13, 1e-6),
    "reducemax-13": ("ReduceMax", RNG.standard_normal((2, 5, 7), np.float32), {"axes": [0, 2]}, (), ("y",), 13, 0),
    "reducemin-all": ("ReduceMin", RNG.standard_normal((2, 5, 7), np.float32), {"keepdims": 0}, (), ("y",), 18, 0),
    "globalmaxpool": ("GlobalMaxPool", RNG.standard_normal((2, 5, 7, 3), np.float32), {}, (), ("y",), 18, 0),
    "layernorm-fp32": ("LayerNormalization", RNG.standard_normal((2, 5, 384), np.float32), {"axis": -1},
                       (("s", RNG.standard_normal(384).astype(np.float32)),
                        ("b", RNG.standard_normal(384).astype(np.float32))), ("y", "m", "i"), 17, 1e-5),
    "layernorm-fp16": ("LayerNormalization", (RNG.standard_normal((2, 5, 6, 4)) * 3 + 10).astype(np.float16),
                       {"axis": 2, "epsilon": 1e-3}, (("s", RNG.standard_normal((6, 4)).astype(np.float16)),),
                       ("y", "m", "i"), 17, 2e-3),
}


@pytest.mark.parametrize("name", sorted(GRAPH_CASES))
def test_graph_native_plan_and_nodes_against_onnxruntime(name):
    ort = pytest.importorskip("onnxruntime")
    op, x, attrs, inits, outs, opset, tol = GRAPH_CASES[name]
    model = _model(op, x, attrs, inits, outs, opset)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    planned, nodes = Session(model), Session(model, plan=False)
    for k in range(3):
        got = planned.run(None, {"x": x})
        assert planned.last_run == ("trace" if k == 0 else "plan")
    ref = nodes.run(None, {"x": x})
    for g, r, w in zip(got, ref, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        assert _bits(g) == _bits(r)                          # plan and node-by-node: the same bits
        np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=tol, atol=tol)
    assert f"native       1: {op}" in planned.explain()
    (pool,) = [p for p in planned._plans.values() if p is not None]
    (step,) = pool._idle[0].steps
    assert step[2] and all(isinstance(c, _native.Bound) for c in step[1])   # bound: one native call


def test_graph_int8_global_max_pool_and_reduce_max_are_native_and_exact():
    x = RNG.integers(-128, 128, (2, 3, 5, 4)).astype(np.int8)
    for op, attrs, axes in (("GlobalMaxPool", {}, (2, 3)), ("ReduceMax", {"axes": [1, 3]}, (1, 3)),
                            ("ReduceMin", {"axes": [0], "keepdims": 0}, (0,))):
        model = _model(op, x, attrs, opset=13)
        s = Session(model)
        fn = np.max if op != "ReduceMin" else np.min
        want = fn(x, axis=axes, keepdims=attrs.get("keepdims", 1) == 1)
        for _ in range(2):
            np.testing.assert_array_equal(s.run(None, {"x": x})[0], want)
        np.testing.assert_array_equal(Session(model, plan=False).run(None, {"x": x})[0], want)
        assert f"native       1: {op}" in s.explain()


def test_graph_nhwc_memory_input_through_a_conv():
    """AveragePool after a convolution (whose output is an NCHW view of NHWC memory):
    the plan's pool reads it in place, the same bits as node by node."""
    ort = pytest.importorskip("onnxruntime")
    w = RNG.standard_normal((16, 3, 3, 3)).astype(np.float32) * 0.2
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("AveragePool", ["c"], ["p"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("GlobalMaxPool", ["p"], ["g"]),
             helper.make_node("ReduceMean", ["p"], ["y"], axes=[2, 3], keepdims=0)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, 3, 12, 12))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                           helper.make_tensor_value_info("g", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(w, "w")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    x = RNG.standard_normal((1, 3, 12, 12)).astype(np.float32)
    planned = Session(model)
    for _ in range(2):
        got = planned.run(None, {"x": x})
    ref = Session(model, plan=False).run(None, {"x": x})
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    for a, b, c in zip(got, ref, want):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-5)
