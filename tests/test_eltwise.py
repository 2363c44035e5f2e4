"""Native elementwise ops (kernels/eltwise.c, graph/backends/cpu_eltwise.py): every ISA
build against the portable one (the same bits; the AVX-512 build's softmax exp: its own bits,
within the stated bound, the same whatever a row's length and place), the exact ops bit for bit against the
numpy reference's own steps, the approximations against float64 within their stated ulp
bounds, float16, broadcasting, array views, the int8 lookup tables against onnxruntime on
all 256 inputs, and graphs (plan on and off, reference, onnxruntime)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import qkernels
from qkernels import _dispatch, _native

try:        # the graph tests need onnx and the graph runner; the kernel tests run without them (the
    import onnx     # emulated CPU lanes build the kernels in place, without the qkernels.graph package)
    from onnx import TensorProto, helper, numpy_helper

    from qkernels.graph import Backend, Session
except ImportError:
    onnx = None
    Backend = object
needs_graph = pytest.mark.skipif(onnx is None, reason="onnx or the graph runner is not installed: no graph tests")

U, B = _native.ELTWISE_UNARY, _native.ELTWISE_BINARY


ISAS = _dispatch.isa_indices()
PORTABLE = 0
#: the build whose softmax exp is its own (fused multiply-adds, kernels/eltwise.c)
OWN = _dispatch.ISA_NAMES.index("avx512vnni")
SOFTMAX_ULP = 3.0    # softmax against float64 of the same x - max, every build (2.3 ulp seen)
SPECIALS = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 1e-38, -1e-38, 3.4e38, -3.4e38, 88.72, 88.73,
                     -87.5, -103.9, -104.5, 9.0, -9.02, 0.625, -0.6249, 2.0 ** -12, 0.5, -3.0, 3.0, 6.0, -6.0],
                    np.float32)
#: stated bounds (kernels/eltwise.c), in float32 ulps of the exact value
ULP = {"Exp": 1.5, "Sigmoid": 3.0, "Tanh": 2.0}
F64 = {"Exp": np.exp, "Tanh": np.tanh,
       "Sigmoid": lambda v: np.where(v >= 0, 1 / (1 + np.exp(-np.abs(v))), np.exp(v) / (1 + np.exp(v)))}

# the numpy reference's float32 steps (graph/backends/reference/activations.py)
EXACT = {
    "Relu": (lambda x, p0, p1: np.maximum(x, np.float32(0)), 0, 0),
    "Clip": (lambda x, p0, p1: np.minimum(np.maximum(x, np.float32(p0)), np.float32(p1)), -0.5, 2.0),
    "HardSigmoid": (lambda x, p0, p1: np.clip(np.float32(p0) * x + np.float32(p1), np.float32(0), np.float32(1)),
                    0.2, 0.5),
    "HardSwish": (lambda x, p0, p1: x * np.clip(x / 6 + 0.5, 0, 1), 0, 0),
    "LeakyRelu": (lambda x, p0, p1: np.where(x < 0, x * np.float32(p0), x), 0.01, 0),
}


def _unary(isa, name, x, p0=0.0, p1=0.0):
    return _native.eltwise_unary(isa, U[name], x, np.empty_like(x), p0, p1)


def _bits_equal(a, b, msg=""):
    """The same bits, any NaN matching any NaN."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype, msg
    nan = np.isnan(a)
    np.testing.assert_array_equal(nan, np.isnan(b), err_msg=msg)
    np.testing.assert_array_equal(a[~nan].view(np.uint32 if a.itemsize == 4 else np.uint16),
                                  b[~nan].view(np.uint32 if a.itemsize == 4 else np.uint16), err_msg=msg)


def _ulp_error(got, x, f64):
    ref = f64(x.astype(np.float64))
    with np.errstate(over="ignore"):
        r32 = ref.astype(np.float32)
    same_inf = np.isinf(r32) & (got == r32)
    ulp = np.maximum(np.spacing(np.abs(np.where(np.isinf(r32), 1, r32))).astype(np.float64), 2.0 ** -149)
    with np.errstate(invalid="ignore"):
        err = np.abs(got.astype(np.float64) - ref) / ulp
    err[same_inf] = 0
    return err


floats = st.lists(st.one_of(st.floats(-120, 120, width=32), st.sampled_from(list(SPECIALS.tolist()))),
                  min_size=1, max_size=70).map(lambda v: np.array(v, np.float32))


@settings(max_examples=50, deadline=None)
@given(x=floats, name=st.sampled_from(sorted(EXACT)))
def test_exact_ops_bit_for_bit(x, name):
    fn, p0, p1 = EXACT[name]
    with np.errstate(all="ignore"):
        want = fn(x, p0, p1)
    for isa in ISAS:
        _bits_equal(_unary(isa, name, x, p0, p1), want, f"{name} isa {isa}")
    y = x.copy()                                     # in place
    _native.eltwise_unary(ISAS[-1], U[name], y, y, p0, p1)
    _bits_equal(y, want)


def _max(a, b):
    """kernels/eltwise.c's max: a NaN a is kept, equal values give b. numpy's own x86 loops
    do this; on aarch64 its maximum/minimum order -0.0 below +0.0 (IEEE 754-2019), so numpy
    is no platform-independent oracle for signed zeros (the emulated NEON lanes found it)."""
    a, b = np.broadcast_arrays(np.asarray(a, np.float32), np.asarray(b, np.float32))
    return np.where((a > b) | np.isnan(a), a, b)


def _min(a, b):
    a, b = np.broadcast_arrays(np.asarray(a, np.float32), np.asarray(b, np.float32))
    return np.where((a < b) | np.isnan(a), a, b)


def test_relu_and_clip_zero_signs_and_nan_match_numpy():
    x = np.array([-0.0, 0.0, np.nan, -np.nan, -1.0, 1.0] * 5, np.float32)
    for isa in ISAS:
        _bits_equal(_unary(isa, "Relu", x), _max(x, 0))
        _bits_equal(_unary(isa, "Clip", x, -0.0, 0.0), _min(_max(x, -0.0), 0.0))
        _bits_equal(_unary(isa, "HardSigmoid", x, 1.0, -0.0), np.clip(x + np.float32(-0.0), np.float32(0),
                                                                        np.float32(1)))


@pytest.mark.parametrize("name", sorted(ULP))
def test_approximations_within_stated_ulp(name):
    """Every 1 in 4099 float32 bit patterns (all binades), plus the specials, on every ISA."""
    bits = np.arange(0, 2 ** 32, 4099, dtype=np.uint64).astype(np.uint32)
    x = np.concatenate([bits.view(np.float32), SPECIALS])
    x = x[~np.isnan(x)]
    want = None
    for isa in ISAS:
        got = _unary(isa, name, x)
        want = got if want is None else want
        _bits_equal(got, want, f"isa {isa} against the portable build")
    with np.errstate(all="ignore"):
        err = _ulp_error(want, x, F64[name])
    assert err.max() <= ULP[name], (name, float(err.max()), x[np.argmax(err)])


def test_approximation_specials():
    x = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 89.0, -200.0, 1e-40, -1e-40], np.float32)
    for isa in ISAS:
        e, s, t = (_unary(isa, n, x) for n in ("Exp", "Sigmoid", "Tanh"))
        _bits_equal(e, np.array([np.inf, 0, np.nan, 1, 1, np.inf, 0, 1, 1], np.float32))
        _bits_equal(s, np.array([1, 0, np.nan, 0.5, 0.5, 1, 0, 0.5, 0.5], np.float32))
        _bits_equal(t, np.array([1, -1, np.nan, 0.0, -0.0, 1, -1, 1e-40, -1e-40], np.float32))


@settings(max_examples=40, deadline=None)
@given(x=floats, name=st.sampled_from(sorted(EXACT) + sorted(ULP)))
def test_float16_is_the_float32_op_rounded_once(x, name):
    h = x.astype(np.float16)
    p0, p1 = EXACT[name][1:] if name in EXACT else (0, 0)
    if name == "Clip":
        p0, p1 = float(np.float16(p0)), float(np.float16(p1))
    with np.errstate(all="ignore"):
        want = _unary(PORTABLE, name, h.astype(np.float32), p0, p1).astype(np.float16)
    for isa in ISAS:
        _bits_equal(_unary(isa, name, h, p0, p1), want, f"{name} isa {isa}")


@needs_graph
@settings(max_examples=50, deadline=None)
@given(shape=st.sampled_from([(1, 1, 1, 1), (1, 3, 5, 7), (2, 17, 3, 3), (1, 33, 1, 1), (1, 8, 2, 9),
                               (1, 3, 17, 31), (2, 300, 1, 1)]),   # float16: past its 256-value blocks
       op=st.sampled_from(sorted(B)), pattern=st.sampled_from(["same", "scalar", "channel", "channel_first"]),
       nhwc=st.booleans(), dtype=st.sampled_from([np.float32, np.float16]), seed=st.integers(0, 2 ** 16))
def test_binary_patterns_bit_for_bit_as_numpy(shape, op, pattern, nhwc, dtype, seed):
    """float32 and float16 (numpy's half loops: the float32 op rounded once) alike."""
    from qkernels.graph.backends.cpu_eltwise import _binary_operands
    rng = np.random.default_rng(seed)
    full = (rng.standard_normal(shape) * (300 if dtype == np.float16 else 1)).astype(dtype)
    full.reshape(-1)[:3] = [np.inf, np.nan, -0.0][:full.size][:3] if full.size >= 3 else full.reshape(-1)[:3]
    if nhwc:
        full = np.ascontiguousarray(full.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    other = {"same": lambda: rng.standard_normal(shape).astype(dtype),
             "scalar": lambda: np.array(rng.standard_normal(), dtype),
             "channel": lambda: rng.standard_normal((shape[1], 1, 1)).astype(dtype),
             "channel_first": lambda: rng.standard_normal((1, shape[1], 1, 1)).astype(dtype)}[pattern]()
    if dtype == np.float16:      # subnormal and overflowing results too
        other.reshape(-1)[:1] = rng.choice([1e-7, 6e4, -3e-5, 0.0])
    if pattern == "same" and nhwc:
        other = np.ascontiguousarray(other.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    ufunc = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[op]
    for a, b in ((full, other), (other, full)):
        with np.errstate(all="ignore"):
            want = ufunc(a, b)
        for isa in ISAS:
            got = _binary_operands(a, b)
            assert got is not None
            with np.errstate(all="ignore"):
                _native.eltwise_binary(isa, B[op], *got[:8])
            _bits_equal(got[8], want, f"{op} {pattern} isa {isa}")


@settings(max_examples=40, deadline=None)
@given(outer=st.integers(1, 3), channels=st.sampled_from([1, 2, 7, 17]), inner=st.sampled_from([1, 3, 16, 31, 300]),
       op=st.sampled_from(sorted(B)), kind=st.sampled_from(["same", "a_channel", "b_channel"]),
       dtype=st.sampled_from([np.float32, np.float16]), seed=st.integers(0, 2 ** 16))
def test_binary_kernel_bit_for_bit_as_numpy(outer, channels, inner, op, kind, dtype, seed):
    """kernels/eltwise.c's binary loop called directly (the emulated lanes run this without
    the graph runner): runs and per-channel operands (channels = 1: a scalar), float32 and
    float16 (past its 256-value blocks), infinities, NaN, signed zeros, subnormal and
    overflowing halves, on every ISA build, bit for bit as numpy."""
    rng = np.random.default_rng(seed)
    shape = (outer, channels, inner)
    full = (rng.standard_normal(shape) * (300 if dtype == np.float16 else 1)).astype(dtype)
    full.reshape(-1)[:3] = np.array([np.inf, np.nan, -0.0], dtype)[:min(3, full.size)]
    per = rng.standard_normal(channels).astype(dtype)
    per[0] = rng.choice([1e-7, 6e4, -3e-5, 0.0]) if dtype == np.float16 else per[0]
    other = full[::-1].copy() if kind == "same" else per
    a, b = (other, full) if kind == "a_channel" else (full, other)
    bcast = lambda v: v.reshape(1, channels, 1) if v is per else v       # noqa: E731
    ufunc = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[op]
    with np.errstate(all="ignore"):
        want = ufunc(bcast(a), bcast(b))
    for isa in ISAS:
        y = np.empty(full.size, dtype)
        with np.errstate(all="ignore"):
            _native.eltwise_binary(isa, B[op], a.reshape(-1), kind == "a_channel", b.reshape(-1),
                                   kind == "b_channel", y, outer, channels, inner)
        _bits_equal(y.reshape(shape), want, f"{op} {kind} isa {isa}")


@needs_graph
@settings(max_examples=40, deadline=None)
@given(shape=st.sampled_from([(1, 3, 5, 7), (2, 16, 3, 1), (1, 9)]), slope=st.sampled_from(["scalar", "channel",
                                                                                              "full"]),
       nhwc=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_prelu_bit_for_bit(shape, slope, nhwc, seed):
    sess_free = _prelu_runner()
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    x.reshape(-1)[:2] = [-0.0, np.nan]
    if nhwc and x.ndim == 4:
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    s = {"scalar": np.array([0.25], np.float32), "channel": rng.standard_normal((shape[1],) + (1,) * (len(shape) - 2)
                                                                                ).astype(np.float32),
         "full": rng.standard_normal(shape).astype(np.float32)}[slope]
    want = np.where(x < 0, x * s, x).astype(np.float32)
    got = sess_free({"x": x, "s": s})["y"]
    _bits_equal(got, want)


def _prelu_runner():
    from qkernels.graph.backends import cpu_eltwise
    from qkernels.graph.ir import Node
    node = Node(op_type="PRelu", inputs=["x", "s"], outputs=["y"], name="p", domain="", attrs={})
    return cpu_eltwise._make_prelu(node, _EmptyGraph())


class _EmptyGraph:
    initializers: dict = {}


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 5), length=st.sampled_from([1, 2, 7, 8, 9, 31, 64, 1000]), log=st.booleans(),
       scale=st.sampled_from([1.0, 30.0, 1e-3]), seed=st.integers(0, 2 ** 16))
def test_softmax_against_float64(rows, length, log, scale, seed):
    x = (np.random.default_rng(seed).standard_normal((rows, length)) * scale).astype(np.float32)
    s = (x - x.max(axis=1, keepdims=True)).astype(np.float64)    # x - max rounds in float32 (as the reference)
    want = s - np.log(np.exp(s).sum(axis=1, keepdims=True)) if log else np.exp(s) / np.exp(s).sum(axis=1,
                                                                                                 keepdims=True)
    first = None
    for isa in ISAS:
        got = _native.softmax(isa, x.reshape(-1), np.empty(x.size, np.float32), rows, length, log).reshape(x.shape)
        first = got if first is None else first
        if isa != OWN or log:
            _bits_equal(got, first)
        if log:
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=2e-6)
        else:
            np.testing.assert_allclose(got, want, rtol=6e-7 * 4, atol=1e-44)


def _ulps(got, want):
    w = np.abs(want).astype(np.float32)
    return np.abs(got.astype(np.float64) - want) / np.maximum(np.spacing(w).astype(np.float64), 2.0 ** -149)


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 6), length=st.one_of(st.integers(1, 40), st.integers(47, 311)),
       scale=st.sampled_from([1e-3, 1.0, 4.0, 30.0]), seed=st.integers(0, 2 ** 16),
       shift=st.integers(0, 17), masked=st.sampled_from([0.0, 0.3]))
def test_softmax_ulp_bound_and_place(rows, length, scale, seed, shift, masked):
    """Softmax on every build within SOFTMAX_ULP of float64 of the same x - max (down
    through the subnormals), -inf entries giving 0; and the bits of a row the same
    whatever its place in the call (row index, alignment of a run that does not start
    at a multiple of 16) and whatever the order of its values, for rows whose float64
    sum is exact (x - max >= -13: the order cannot change it)."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, length)) * scale).astype(np.float32)
    x[rng.random(x.shape) < masked] = -np.inf
    x[:, 0] = np.maximum(x[:, 0], 0)        # (a finite maximum)
    s = (x - x.max(axis=1, keepdims=True)).astype(np.float64)
    want = np.exp(s) / np.exp(s).sum(axis=1, keepdims=True)
    for isa in ISAS:
        got = _native.softmax(isa, x.reshape(-1), np.empty(x.size, np.float32), rows, length).reshape(x.shape)
        assert _ulps(got, want).max() <= SOFTMAX_ULP
        assert np.all(got[x == -np.inf] == 0)
        pad = np.concatenate([rng.standard_normal((shift, length)).astype(np.float32), x])   # rows moved
        moved = _native.softmax(isa, pad.reshape(-1), np.empty(pad.size, np.float32), rows + shift, length)
        _bits_equal(moved.reshape(pad.shape)[shift:], got)
        if s.min() >= -13:     # e within [2^-19, 1], 24 bits each, < 2^9 of them: an exact float64 sum
            k = shift % length
            rolled = _native.softmax(isa, np.roll(x, k, axis=1).reshape(-1), np.empty(x.size, np.float32), rows,
                                     length).reshape(x.shape)
            _bits_equal(rolled, np.roll(got, k, axis=1))


def test_softmax_exp_within_bound_deep():
    """softmax([0, x]) for x in [-104.5, -17.5]: the sum rounds to 1 in float32, so the
    second value is exp(x) itself: within Exp's bound (1.5 ulp) on every build,
    subnormals included, 0 below."""
    xs = np.arange(np.float32(-17.5).view(np.uint32), np.float32(-104.5).view(np.uint32), 61,
                   dtype=np.uint32).view(np.float32)
    rows = np.stack([np.zeros_like(xs), xs], 1)
    for isa in ISAS:
        y = _native.softmax(isa, rows.reshape(-1), np.empty(rows.size, np.float32), xs.size, 2).reshape(rows.shape)
        assert np.all(y[:, 0] == 1)
        assert _ulps(y[:, 1], np.exp(xs.astype(np.float64))).max() <= ULP["Exp"]


def test_softmax_specials():
    x = np.array([[0, 1, np.nan, 2], [0, np.inf, 1, 2], [-np.inf, -np.inf, -np.inf, -np.inf], [-np.inf, 0, 0, 0]],
                 np.float32)
    with np.errstate(all="ignore"):
        for log in (False, True):
            w = x.astype(np.float32)
            s = w - np.max(w, axis=1, keepdims=True)
            want = s - np.log(np.sum(np.exp(s), axis=1, keepdims=True)) if log else np.exp(s) / np.sum(
                np.exp(s), axis=1, keepdims=True)
            got = _native.softmax(0, x.reshape(-1), np.empty(16, np.float32), 4, 4, log).reshape(4, 4)
            np.testing.assert_allclose(got, want, rtol=1e-6)


def test_bad_arguments_raise():
    x = np.zeros(8, np.float32)
    with pytest.raises(ValueError):
        _native.eltwise_unary(0, U["Relu"], x, np.zeros(7, np.float32))
    with pytest.raises(ValueError):
        _native.eltwise_unary(0, U["Relu"], x, np.zeros(8, np.float16))
    with pytest.raises(ValueError):
        _native.eltwise_unary(0, 99, x, x)
    with pytest.raises(ValueError):
        _native.eltwise_unary(0, U["Relu"], x[::2], np.zeros(4, np.float32))
    with pytest.raises(ValueError):
        _native.eltwise_binary(0, B["Add"], x, True, x, True, x, 1, 8, 1)
    with pytest.raises(ValueError):
        _native.eltwise_binary(0, B["Add"], x, False, x[:3], True, x, 2, 3, 1)
    with pytest.raises(ValueError):      # one dtype
        _native.eltwise_binary(0, B["Add"], x, False, x.astype(np.float16), False, x, 1, 1, 8)
    with pytest.raises(ValueError):
        _native.eltwise_prelu(0, x, x[:3], x, 1, 4, 2)
    with pytest.raises(ValueError):
        _native.softmax(0, x, x, 3, 3)
    with pytest.raises(ValueError):
        _native.BoundCopy([(x.view(np.uint8), x.view(np.uint8).copy(), np.zeros(255, np.uint8))])
    with pytest.raises(ValueError):
        _native.BoundCopy([(x.view(np.uint8), x.view(np.uint8).copy(), np.zeros(256, np.int8))])
    ro = np.zeros(8, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError):
        _native.eltwise_unary(0, U["Relu"], x, ro)


# --------------------------------------------------------------------------- graphs

class _NoCpu(Backend):
    name = "cpu"

    def supports(self, node, graph):
        return False


def _model(nodes, inputs, outputs, inits, ms=False, opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid("com.microsoft", 1)] if ms else [])
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return model


def _ort_run(model, feeds):
    ort = pytest.importorskip("onnxruntime")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    rt = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return rt.run(None, feeds)


def _lut_model(op, dtype, sx, zx, sy, zy, alpha=None):
    t = TensorProto.INT8 if dtype == np.int8 else TensorProto.UINT8
    attrs = {} if alpha is None else {"alpha": alpha}
    node = helper.make_node(op, ["x", "sx", "zx", "sy", "zy"], ["y"], domain="com.microsoft", **attrs)
    inits = [numpy_helper.from_array(np.array(v, dt), n) for n, v, dt in
             (("sx", sx, np.float32), ("zx", zx, dtype), ("sy", sy, np.float32), ("zy", zy, dtype))]
    return _model([node], [helper.make_tensor_value_info("x", t, [256])], [helper.make_tensor_value_info("y", t, [256])],
                  inits, ms=True)


@needs_graph
@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
@pytest.mark.parametrize("op,alpha", [("QLinearSigmoid", None), ("QLinearLeakyRelu", 0.1),
                                      ("QLinearLeakyRelu", 0.015625)])
@pytest.mark.parametrize("sx,zx,sy,zy", [(0.05, 3, 1 / 256, -128), (0.1, -5, 0.004, -100), (0.0123, 0, 0.02, 10),
                                         (0.5, 100, 0.0039, 7)])
def test_lookup_tables_match_onnxruntime_on_all_256(dtype, op, alpha, sx, zx, sy, zy):
    info = np.iinfo(dtype)
    zx, zy = int(np.clip(zx + (128 if dtype == np.uint8 else 0), info.min, info.max)), \
        int(np.clip(zy + (128 if dtype == np.uint8 else 0), info.min, info.max))
    model = _lut_model(op, dtype, sx, zx, sy, zy, alpha)
    x = np.arange(256, dtype=np.uint8).view(dtype)
    want = _ort_run(model, {"x": x})[0]
    for plan in (True, False):
        s = Session(model, plan=plan)
        for _ in range(2):
            np.testing.assert_array_equal(s.run(None, {"x": x})[0], want)
        assert "native" in s.explain() and op in s.explain().split("native")[1]
    ref = Session(model, backends=["reference", _NoCpu()])
    np.testing.assert_array_equal(ref.run(None, {"x": x})[0], want)
    xv = np.ascontiguousarray(np.tile(x, 4).reshape(4, 16, 16).transpose(0, 2, 1))   # a view of other memory
    from qkernels.graph.backends.cpu_eltwise import lookup_table
    got = np.empty(xv.size, dtype)
    table = lookup_table(Session(model).graph.nodes[0], Session(model).graph, dtype)
    _native.BoundCopy([(got.view(np.uint8), xv.reshape(-1).view(np.uint8), table.view(np.uint8))]).run()
    np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8)[xv.reshape(-1).view(np.uint8)])


def _float_model(dtype=np.float32):
    t = TensorProto.FLOAT if dtype == np.float32 else TensorProto.FLOAT16
    rng = np.random.default_rng(1)
    C = 8
    inits = [numpy_helper.from_array(rng.standard_normal((C, 1, 1)).astype(dtype), "slope"),
             numpy_helper.from_array(rng.standard_normal((1, C, 1, 1)).astype(dtype), "bias"),
             numpy_helper.from_array(np.array(0.5, dtype), "half"),
             numpy_helper.from_array(rng.standard_normal((C, C, 1, 1)).astype(dtype) * 0.3, "w"),
             numpy_helper.from_array(np.array(-1.0, dtype), "lo"), numpy_helper.from_array(np.array(1.5, dtype), "hi")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]),             # its output: an NCHW view of NHWC memory
             helper.make_node("Sigmoid", ["c"], ["s"]),
             helper.make_node("Tanh", ["s"], ["t"]),
             helper.make_node("Add", ["t", "bias"], ["a"]),
             helper.make_node("HardSwish", ["a"], ["h"]),
             helper.make_node("PRelu", ["h", "slope"], ["p"]),
             helper.make_node("LeakyRelu", ["p"], ["l"], alpha=0.2),
             helper.make_node("Mul", ["l", "half"], ["m"]),
             helper.make_node("Sub", ["m", "c"], ["d"]),
             helper.make_node("Div", ["d", "half"], ["e"]),
             helper.make_node("Exp", ["e"], ["f"]),
             helper.make_node("Clip", ["f", "lo", "hi"], ["g"]),
             helper.make_node("HardSigmoid", ["g"], ["k"], alpha=0.3, beta=0.4),
             helper.make_node("Relu", ["k"], ["r"]),
             helper.make_node("Softmax", ["c"], ["sm"], axis=-1),
             helper.make_node("Flatten", ["r"], ["fl"]),
             helper.make_node("Softmax", ["fl"], ["y"], axis=1)]
    shape = [2, C, 5, 6]
    return _model(nodes, [helper.make_tensor_value_info("x", t, shape)],
                  [helper.make_tensor_value_info("y", t, None), helper.make_tensor_value_info("sm", t, None),
                   helper.make_tensor_value_info("r", t, None)], inits), shape


@needs_graph
def test_float_graph_native_matches_ort_reference_and_plan_bits():
    model, shape = _float_model()
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32) * 2
    want = _ort_run(model, {"x": x})
    ref = Session(model, backends=["reference", _NoCpu()]).run(None, {"x": x})
    plan, nodes = Session(model), Session(model, plan=False)
    got_plan = [plan.run(None, {"x": x}) for _ in range(3)][-1]
    assert plan.last_run == "plan"
    got_nodes = nodes.run(None, {"x": x})
    for g, n, w, r in zip(got_plan, got_nodes, want, ref):
        _bits_equal(g, n)
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-6)
        np.testing.assert_allclose(g, r, rtol=2e-5, atol=1e-6)
    text = plan.explain()
    native = text.split("native")[1].split("\n")[0]
    for op in ("Sigmoid", "HardSwish", "PRelu", "LeakyRelu", "Softmax", "Add", "Mul", "Relu", "Clip"):   # Tanh, Exp: numpy
        assert op in native, (op, text)


@needs_graph
def test_float16_graph_matches_reference():
    model, shape = _float_model(np.float16)
    x = (np.random.default_rng(0).standard_normal(shape) * 2).astype(np.float16)
    ref = Session(model, backends=["reference", _NoCpu()]).run(None, {"x": x})
    plan, nodes = Session(model), Session(model, plan=False)
    got_plan = [plan.run(None, {"x": x}) for _ in range(3)][-1]
    for g, n, r in zip(got_plan, nodes.run(None, {"x": x}), ref):
        _bits_equal(g, n)
        np.testing.assert_allclose(g.astype(np.float32), r.astype(np.float32), rtol=2e-2, atol=2e-2)


@needs_graph
@settings(max_examples=30, deadline=None)
@given(op=st.sampled_from(sorted(EXACT) + sorted(ULP)), view=st.sampled_from(["step", "reversed", "transposed",
                                                                             "sliced"]),
       seed=st.integers(0, 2 ** 16))
def test_runners_on_views_equal_contiguous(op, view, seed):
    """The node-by-node runner on any array view gives what it gives on a contiguous copy."""
    from qkernels.graph.backends import cpu_eltwise
    from qkernels.graph.ir import Node
    attrs = {"HardSigmoid": {"alpha": 0.3, "beta": 0.4}, "LeakyRelu": {"alpha": 0.2}}.get(op, {})
    node = Node(op_type=op, inputs=["x"], outputs=["y"], name="n", domain="", attrs=attrs)
    run = cpu_eltwise._make_unary(node, _EmptyGraph())
    base = np.random.default_rng(seed).standard_normal((6, 10, 12)).astype(np.float32) * 3
    v = {"step": base[:, ::2], "reversed": base[::-1, :, ::-1], "transposed": base.transpose(2, 0, 1),
         "sliced": base[1:4, 2:9, 3:]}[view]
    got = run({"x": v})["y"]
    want = run({"x": np.ascontiguousarray(v)})["y"]
    _bits_equal(got, want)
    assert got.shape == v.shape
