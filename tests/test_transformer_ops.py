"""Native float ops of transformer encoders (kernels/eltwise.c, the float GEMM's output
stage, graph/rewrite.py fuse_gelu / fuse_linear_gelu, graph/backends/cpu_transformer.py):
Erf and Gelu against float64 within their stated bounds on every ISA build (fp32, fp16,
extremes, NaN/inf; the AVX-512 build's own GELU and softmax exp: its own bits, the same
whatever a value's place in a call), the GEMM with the GELU fused against the unfused native path on every
ISA path, the GELU spellings of torch and TF exports recognised (and not when an
intermediate is read elsewhere), and BERT-class encoders against onnxruntime."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st
from scipy.special import erf as erf64

import qkernels
from qkernels import _dispatch, _float, _native
from qkernels.graph.backends import cpu
from qkernels.graph.ir import Graph, Node, ValueInfo

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from qkernels.graph import Session  # noqa: E402
from qkernels.graph.rewrite import fuse_gelu, fuse_linear_gelu  # noqa: E402

U = _native.ELTWISE_UNARY
ISA_NAMES = list(qkernels._dispatch.tested_isas())
ISAS = _dispatch.isa_indices()
#: the build that evaluates GELU's erf and softmax's exp with fused multiply-adds (kernels/eltwise.c):
#: its own bits, within the stated bounds; every other build gives the portable build's
OWN = _dispatch.ISA_NAMES.index("avx512vnni")
SPECIALS = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 1e-38, -1e-38, 3.4e38, -3.4e38, 1.0, -1.0,
                     0.99999994, 1.0000001, 3.91, 3.92, 3.93, 4.0, -4.0, 9.0, -9.0, 20.0, -20.0, 2.0 ** -12],
                    np.float32)
ERF_ULP = 3.0        # kernels/eltwise.c: 2.6 ulp seen
GELU_BOUND = 2.0     # in units of ulp(gelu(x)) + 2^-24 |x| (1.25 seen)


def _gelu64(x, approximate="none"):
    x = x.astype(np.float64)
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1 + erf64(x / np.sqrt(2)))


def _unary(isa, name, x):
    return _native.eltwise_unary(isa, U[name], x, np.empty_like(x))


def _ulp(ref):
    with np.errstate(over="ignore"):
        r = np.abs(ref).astype(np.float32)
    return np.maximum(np.spacing(np.where(np.isinf(r), np.float32(3e38), r)).astype(np.float64), 2.0 ** -149)


def _check_erf(x, got):
    ref = erf64(x.astype(np.float64))
    nan = np.isnan(x)
    np.testing.assert_array_equal(np.isnan(got), nan)
    err = np.abs(got[~nan].astype(np.float64) - ref[~nan]) / _ulp(ref[~nan])
    assert err.max(initial=0) <= ERF_ULP, (err.max(), x[~nan][np.argmax(err)])
    assert np.all(np.abs(got[~nan]) <= 1)


def _check_gelu(x, got, approximate):
    with np.errstate(over="ignore", invalid="ignore"):
        ref = _gelu64(x, approximate)
    ok = np.isfinite(x)
    tol = GELU_BOUND * (_ulp(ref[ok]) + 2.0 ** -24 * np.abs(x[ok].astype(np.float64)))
    err = np.abs(got[ok].astype(np.float64) - ref[ok])
    assert np.all(err <= tol), (err / tol).max()
    # +inf: inf; -inf: NaN, as the reference's formula ((-inf / 2) * (1 + -1)) gives
    np.testing.assert_array_equal(np.isnan(got), np.isnan(x) | (x == -np.inf))
    np.testing.assert_array_equal(got[x == np.inf], np.inf)


floats = st.lists(st.one_of(st.floats(width=32), st.floats(-8, 8, width=32), st.sampled_from(SPECIALS.tolist())),
                  min_size=1, max_size=97).map(lambda v: np.array(v, np.float32))


@pytest.mark.parametrize("isa", ISAS)
def test_erf_sweep_within_bound(isa):
    """One float32 bit pattern in 997 over every binade (both signs) and the specials."""
    pos = np.arange(0, 0x7F800000, 997, dtype=np.uint32).view(np.float32)
    x = np.concatenate([pos, -pos, SPECIALS])
    _check_erf(x, _unary(isa, "Erf", x))


@pytest.mark.parametrize("isa", ISAS)
@given(x=floats)
@settings(max_examples=60, deadline=None)
def test_erf_gelu_every_build(isa, x):
    """Every build gives the portable build's bits (the AVX-512 build's Gelu: its own),
    within the stated bounds, whatever a value's place in the run (lanes, tail); float16
    is float32 math rounded once."""
    got = _unary(isa, "Erf", x)
    np.testing.assert_array_equal(got.view(np.uint32), _unary(0, "Erf", x).view(np.uint32))
    _check_erf(x, got)
    for name, approximate in (("Gelu", "none"), ("GeluTanh", "tanh")):
        g = _unary(isa, name, x)
        if not (isa == OWN and name == "Gelu"):
            np.testing.assert_array_equal(g.view(np.uint32), _unary(0, name, x).view(np.uint32))
        _check_gelu(x, g, approximate)
        for shift in (1, 7, 16, 23):     # the same values at other places of a longer run
            ext = _unary(isa, name, np.concatenate([np.resize(x[::-1], shift), x, np.resize(x, shift)]))
            np.testing.assert_array_equal(ext[shift:shift + x.size].view(np.uint32), g.view(np.uint32))
    with np.errstate(over="ignore"):
        h = x.astype(np.float16)
    for name in ("Erf", "Gelu", "GeluTanh"):
        want = _unary(isa if isa == OWN else 0, name, h.astype(np.float32)).astype(np.float16)
        np.testing.assert_array_equal(_unary(isa, name, h).view(np.uint16), want.view(np.uint16))


def test_gelu_sweep_within_bound():
    pos = np.arange(0, 0x7F800000, 1999, dtype=np.uint32).view(np.float32)
    x = np.concatenate([pos, -pos, SPECIALS, np.linspace(-12, 12, 100001, dtype=np.float32)])
    for isa in ISAS:
        _check_gelu(x, _unary(isa, "Gelu", x), "none")
        _check_gelu(x, _unary(isa, "GeluTanh", x), "tanh")


# ------------------------------------------------------------------ cpu backend nodes

def _node_graph(node, inits=None):
    return Graph([node], dict(inits or {}), [ValueInfo("x", None, None)], [ValueInfo("y", None, None)], 20)


@pytest.mark.parametrize("op,attrs", [("Erf", {}), ("Gelu", {}), ("Gelu", {"approximate": "tanh"})])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@given(data=st.data())
@settings(max_examples=25, deadline=None)
def test_cpu_unary_node_views(op, attrs, dtype, data):
    """The cpu backend's runner on arrays and views (steps, negative strides, transposes)
    gives the same values as on a contiguous copy, and the reference's within the bound."""
    shape = data.draw(st.lists(st.integers(1, 9), min_size=1, max_size=3))
    x = np.random.default_rng(data.draw(st.integers(0, 99))).normal(0, 3, [2 * d for d in shape]).astype(dtype)
    view = x[tuple(slice(None, None, -2) if k % 2 else slice(1, None, 2) for k in range(len(shape)))]
    if view.ndim > 1:
        view = view.swapaxes(0, -1)
    node = Node("n", op, "", ["x"], ["y"], dict(attrs))
    run = cpu.KERNELS[op](node, _node_graph(node))
    got, want = run({"x": view})["y"], run({"x": np.ascontiguousarray(view)})["y"]
    assert got.shape == view.shape and got.dtype == dtype
    np.testing.assert_array_equal(got, want)
    if dtype == np.float32:    # against float64 (the reference's float32 1 + erf cancels bits)
        _check_erf(view.ravel(), got.ravel()) if op == "Erf" else \
            _check_gelu(view.ravel(), got.ravel(), attrs.get("approximate", "none"))
    else:                      # float32 math rounded once to float16
        f = {"Erf": "Erf", "Gelu": "GeluTanh" if attrs else "Gelu"}[op]
        want = _unary(_dispatch.isa_index(), f, np.ascontiguousarray(view, np.float32).ravel()).astype(np.float16)
        np.testing.assert_array_equal(got.ravel(), want)


# ------------------------------------------------------- the GELU in the GEMM's output stage

@pytest.mark.parametrize("isa", ISA_NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("op", ["Gelu", "GeluTanh"])
@given(m=st.integers(1, 27), k=st.integers(1, 41), n=st.integers(1, 70), step=st.sampled_from([1, 2, -1]),
       seed=st.integers(0, 999), scale=st.sampled_from([1.0, 30.0]))
@settings(max_examples=15, deadline=None)
def test_gemm_gelu_fused_equals_unfused(isa, dtype, op, m, k, n, step, seed, scale):
    """fp32: the fused GEMM + GELU gives the unfused native path's floats (GEMM with the
    bias, then the Gelu loop) bit for bit; fp16 (one rounding instead of two): within
    fp16 rounding of it. A as a view (row steps, reversed rows)."""
    rng = np.random.default_rng(seed)
    a_full = (rng.normal(0, scale, (abs(step) * m, k))).astype(dtype)
    a = a_full[::step] if step != 1 else a_full
    b = rng.normal(0, 1 / np.sqrt(k), (k, n)).astype(dtype)
    bias = rng.normal(0, 1, n).astype(np.float32)
    with qkernels.use_isa(isa):
        pw = _float.PACKED[np.dtype(dtype)](b)
        fused, plain = np.empty((m, n), dtype), np.empty((m, n), dtype)
        _float.gemm2d(a, pw, bias, -np.inf, np.inf, fused, act=(_dispatch.isa_index(), U[op]))
        _float.gemm2d(a, pw, bias, -np.inf, np.inf, plain)
        unfused = _unary(_dispatch.isa_index(), op, plain.ravel()).reshape(m, n)
    if dtype == np.float32:
        np.testing.assert_array_equal(fused, unfused)
        return
    pre = plain.astype(np.float64)
    tol = 2.0 ** -9 * (np.abs(unfused.astype(np.float64)) + np.abs(pre)) + 2.0 ** -24
    assert np.all(np.abs(fused.astype(np.float64) - unfused.astype(np.float64)) <= tol)


def test_gemm_gelu_act_rejects_bad_codes():
    pw = _float.PackedWeightsF32(np.ones((3, 4), np.float32))
    out = np.empty((2, 4), np.float32)
    with pytest.raises(ValueError):
        _float.gemm2d(np.ones((2, 3), np.float32), pw, _float._bias(None, 4), -np.inf, np.inf, out,
                      act=(_dispatch.isa_index(), U["Clip"]))
    with pytest.raises(ValueError):
        _float.gemm2d(np.ones((2, 3), np.float32), pw, _float._bias(None, 4), -np.inf, np.inf, out,
                      act=(_dispatch.isa_index(), 999))


# ------------------------------------------------------------------ the GELU rewrite

def _gelu_model(spelling, dtype=np.float32, extra_output=False, opset=17):
    """x -> MatMul(W) -> Add(b) -> GELU spelled as ``spelling`` -> y."""
    rng = np.random.default_rng(0)
    t = TensorProto.FLOAT if dtype == np.float32 else TensorProto.FLOAT16
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, (24, 37)).astype(dtype), "W"),
             numpy_helper.from_array(rng.normal(0, 1, 37).astype(dtype), "b")]

    def c(name, v):
        inits.append(numpy_helper.from_array(np.array(v, dtype), name))
        return name
    nodes = [helper.make_node("MatMul", ["x", "W"], ["mm"]), helper.make_node("Add", ["b", "mm"], ["h"])]
    mk = lambda op, ins, out, **kw: nodes.append(helper.make_node(op, ins, [out], **kw))  # noqa: E731
    if spelling == "torch":      # HF BERT: x * (erf(x / sqrt2) + 1) * 0.5
        mk("Div", ["h", c("s", np.sqrt(2.0))], "d"), mk("Erf", ["d"], "e"), mk("Add", ["e", c("one", 1.0)], "g")
        mk("Mul", ["h", "g"], "p"), mk("Mul", ["p", c("half", 0.5)], "y")
    elif spelling == "tf":       # 0.5 * x * (1 + erf(x * 0.70710677))
        mk("Mul", [c("r", np.sqrt(0.5)), "h"], "d"), mk("Erf", ["d"], "e"), mk("Add", [c("one", 1.0), "e"], "g")
        mk("Mul", [c("half", 0.5), "h"], "p"), mk("Mul", ["p", "g"], "y")
    elif spelling == "half_first":   # x * ((erf(x * 0.70710677) + 1) * 0.5)
        mk("Mul", ["h", c("r", np.sqrt(0.5))], "d"), mk("Erf", ["d"], "e"), mk("Add", ["e", c("one", 1.0)], "g")
        mk("Mul", ["g", c("half", 0.5)], "p"), mk("Mul", ["h", "p"], "y")
    elif spelling in ("gelu", "gelu_tanh"):
        attrs = {"approximate": "tanh"} if spelling == "gelu_tanh" else {}
        mk("Gelu", ["h"], "y", **attrs)
    outs = [helper.make_tensor_value_info("y", t, None)]
    if extra_output:
        outs.append(helper.make_tensor_value_info("g", t, None))
    g = helper.make_graph(nodes, "gelu", [helper.make_tensor_value_info("x", t, ["B", "T", 24])], outs, inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _ort(model, feeds):
    ort = pytest.importorskip("onnxruntime")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feeds)


@pytest.mark.parametrize("spelling,opset", [("torch", 17), ("tf", 17), ("half_first", 17), ("gelu", 20),
                                            ("gelu_tanh", 20)])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_gelu_spellings_fused(spelling, opset, dtype):
    model = _gelu_model(spelling, dtype, opset=opset)
    s = Session(model.SerializeToString(), num_threads=1)
    ops = [n.key for n in s.graph.nodes]
    assert ops == ["qkernels::MatMulGelu"], ops
    assert s.placement(s.graph.nodes[0]) == "native"
    x = np.random.default_rng(1).normal(0, 2, (2, 5, 24)).astype(dtype)
    got, want = s.run(None, {"x": x})[0], _ort(model, {"x": x})[0]
    assert got.dtype == dtype and got.shape == want.shape == (2, 5, 37)
    if dtype == np.float32:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    else:   # ORT rounds the MatMul and the Add to fp16 before the GELU; we round once
        np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=1e-2, atol=1e-2)
    ref = Session(model.SerializeToString(), backends=["reference"]).run(None, {"x": x})[0]
    tol = (1e-5, 1e-5) if dtype == np.float32 else (1e-2, 1e-2)
    np.testing.assert_allclose(got.astype(np.float32), ref.astype(np.float32), rtol=tol[0], atol=tol[1])


def test_gelu_not_fused_when_intermediate_read():
    model = _gelu_model("torch", extra_output=True)
    s = Session(model.SerializeToString(), num_threads=1)
    assert "Erf" in [n.op_type for n in s.graph.nodes]
    x = np.random.default_rng(2).normal(0, 2, (1, 3, 24)).astype(np.float32)
    for got, want in zip(s.run(None, {"x": x}), _ort(model, {"x": x})):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_gelu_rewrite_keeps_other_constants():
    """A scale that is not 1/sqrt2 (or a factor that is not 0.5) is not a GELU."""
    model = _gelu_model("torch")
    for init in model.graph.initializer:
        if init.name == "half":
            init.CopyFrom(numpy_helper.from_array(np.array(0.25, np.float32), "half"))
    s = Session(model.SerializeToString(), num_threads=1)
    ops = [n.key for n in s.graph.nodes]
    assert "Erf" in ops and "Gelu" not in ops and "qkernels::MatMulGelu" not in ops
    x = np.random.default_rng(3).normal(0, 2, (1, 3, 24)).astype(np.float32)
    np.testing.assert_allclose(s.run(None, {"x": x})[0], _ort(model, {"x": x})[0], rtol=1e-5, atol=1e-6)


def test_fuse_gelu_pass_alone():
    """fuse_gelu makes one Gelu reading the Linear's output; fuse_linear_gelu then takes
    the MatMul, the bias Add and the Gelu."""
    from qkernels.graph.model import load_model, to_graph
    g = to_graph(load_model(_gelu_model("tf")))
    g1 = fuse_gelu(g)
    assert [n.op_type for n in g1.nodes] == ["MatMul", "Add", "Gelu"]
    assert g1.nodes[2].inputs == [g1.nodes[1].outputs[0]] and g1.nodes[2].outputs == ["y"]
    assert [n.op_type for n in g.nodes].count("Erf") == 1          # the argument is not modified
    g2 = fuse_linear_gelu(g1)
    assert [(n.key, n.inputs, n.outputs) for n in g2.nodes] == [("qkernels::MatMulGelu", ["x", "W", "b"], ["y"])]


# --------------------------------------------------------------------- encoders vs ORT

def test_bert_encoder_gelu_fused_and_matches_ort():
    from qkernels.bench.encoder import bert_encoder, encoder_inputs
    layers = 2
    model = bert_encoder(layers=layers, hidden=64, heads=4)
    s = Session(model.SerializeToString(), num_threads=1)
    keys = [n.key for n in s.graph.nodes]
    assert keys.count("qkernels::MatMulGelu") == layers and "Erf" not in keys
    for batch, tokens, padded in ((1, 1, 0), (2, 13, 3), (1, 40, 0)):
        feeds = encoder_inputs(batch, tokens, 1000, padded=padded)
        got, want = s.run(None, feeds)[0], _ort(model, feeds)[0]
        assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


# ------------------------------------------------------ batched MatMul of two activations

def _shapes_2act():
    dims = st.integers(1, 4)
    return st.tuples(st.lists(dims, max_size=2), st.lists(dims, max_size=2), st.integers(1, 29), st.integers(1, 37),
                     st.integers(1, 41))


@pytest.mark.parametrize("isa", ISA_NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@given(shapes=_shapes_2act(), seed=st.integers(0, 999), view=st.sampled_from(["plain", "transposed", "steps"]))
@settings(max_examples=12, deadline=None)
def test_batched_matmul_vs_float64(isa, dtype, shapes, seed, view):
    """_float.batched_matmul against float64 matmul within the float GEMM's bound
    (K 2^-23 sum |a b| fp32; fp16: one rounding more), broadcast batch dimensions (a
    dimension of 1 against another), transposed and stepped views against a contiguous copy."""
    ba, ones, m, k, n = shapes
    # b's batch: a's last len(ones) axes, some of them 1 (broadcast), or 1s of its own when longer
    bb = [1 if one % 2 else (ba[len(ba) - len(ones) + i] if i >= len(ones) - len(ba) else one)
          for i, one in enumerate(ones)]
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 1, (*ba, m, k)).astype(dtype)
    if view == "transposed":    # K^T as exports make it: a transposed view, read in place
        b = np.swapaxes(rng.normal(0, 1, (*bb, n, k)).astype(dtype), -1, -2)
    elif view == "steps":
        b = rng.normal(0, 1, (*bb, 2 * k, n)).astype(dtype)[..., ::-2, :]
        a = np.ascontiguousarray(a[..., ::-1, :])[..., ::-1, :]
    else:
        b = rng.normal(0, 1, (*bb, k, n)).astype(dtype)
    with qkernels.use_isa(isa):
        got = _float.batched_matmul(a, b)
        again = _float.batched_matmul(np.ascontiguousarray(a), np.ascontiguousarray(b))
    want = np.matmul(a.astype(np.float64), b.astype(np.float64))
    assert got.shape == want.shape and got.dtype == dtype
    np.testing.assert_array_equal(got, again)
    bound = k * 2.0 ** -23 * np.matmul(np.abs(a.astype(np.float64)), np.abs(b.astype(np.float64)))
    if dtype == np.float16:
        bound = bound + 2.0 ** -11 * np.abs(want) + 2.0 ** -25     # (fp16 subnormals: absolute)
    assert np.all(np.abs(got.astype(np.float64) - want) <= bound + 1e-30)


@pytest.mark.parametrize("isa", ISA_NAMES)
@given(k=st.integers(0, 70), n=st.integers(1, 70), seed=st.integers(0, 999),
       view=st.sampled_from(["plain", "transposed", "transposed_reversed", "steps", "reversed", "both"]))
@settings(max_examples=30, deadline=None)
def test_float32_b_panels_are_the_layout(isa, k, n, seed, view):
    """fp32 B packed from any view (one copy per k step when a step's values are
    contiguous, else each source row along K -- with AVX-512, 16 x 16 transposes of rows
    whose k values are contiguous; the padding zeroed first) is the panel
    layout itself: NR columns per panel, k-major, zero padded; K = 0: one step of zeros.
    The bits of every value kept (NaN payloads, -0.0)."""
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2 ** 32, (k, n), dtype=np.uint64).astype(np.uint32)
    b = bits.view(np.float32)
    if view == "transposed":
        b = np.ascontiguousarray(b.T).T
    elif view == "transposed_reversed":      # rows along k, columns at a negative stride
        b = np.ascontiguousarray(b.T[::-1])[::-1].T
    elif view == "steps":
        big = np.zeros((2 * k, 3 * n), np.float32)
        big[::2, ::3] = b
        b = big[::2, ::3]
    elif view == "reversed":
        b = np.ascontiguousarray(b[::-1, ::-1])[::-1, ::-1]
    elif view == "both":
        b = np.ascontiguousarray(b[::-1].T).T[::-1]
    assert np.array_equal(b.view(np.uint32), bits)
    with qkernels.use_isa(isa):
        kid = _float._kernel(1, np.float32)
    info = _native.kernel_info(kid)
    nr = info[3]
    if info[6] & 0x0f != 3:          # (only the QK_PACK_F32 panels: k-major floats)
        pytest.skip("not a k-major float32 panel kernel")
    packed = _native.pack_b(kid, b, False, np.zeros(n, np.int32))[0].view(np.uint32)
    panels = -(-n // nr)
    want = np.zeros((panels, max(k, 1), nr), np.uint32)
    padded = np.zeros((max(k, 1), panels * nr), np.uint32)
    padded[:k, :n] = bits
    want[:] = padded.reshape(max(k, 1), panels, nr).transpose(1, 0, 2)
    np.testing.assert_array_equal(packed, want.reshape(-1))


def test_batched_matmul_extremes_and_errors():
    a = np.array([[[np.inf, 1.0], [np.nan, 0.0], [3e38, 3e38]]], np.float32)
    b = np.array([[[1.0], [1.0]]], np.float32)
    np.testing.assert_array_equal(_float.batched_matmul(a, b), np.matmul(a, b))
    with pytest.raises(TypeError):
        _float.batched_matmul(a, b.astype(np.float16))
    with pytest.raises(ValueError):
        _float.batched_matmul(a, np.ones((2, 3, 1), np.float32))
    with pytest.raises(ValueError):
        _float.batched_matmul(a, b, out=np.empty((1, 3, 2), np.float32))
    np.testing.assert_array_equal(_float.batched_matmul(np.ones((2, 3, 0), np.float32), np.ones((0, 4), np.float32)),
                                  np.zeros((2, 3, 4), np.float32))
    # out: a transposed view (the product written in that layout); an overlapping view is refused
    a, b = np.random.default_rng(0).normal(0, 1, (2, 3, 5, 4)).astype(np.float32), np.ones((4, 6), np.float32)
    y = np.empty((2, 5, 3, 6), np.float32)
    _float.batched_matmul(a, b, y.transpose(0, 2, 1, 3))
    np.testing.assert_allclose(y, np.matmul(a, b).transpose(0, 2, 1, 3), rtol=1e-6)
    with pytest.raises(ValueError):
        _float.batched_matmul(a, b, np.broadcast_to(np.empty((1, 3, 5, 6), np.float32), (2, 3, 5, 6)))
    base = np.empty((3, 5, 6), np.float32)
    with pytest.raises(ValueError):   # writeable, but both batch items in one place
        _float.batched_matmul(a, b, np.lib.stride_tricks.as_strided(base, (2, 3, 5, 6), (0, *base.strides)))


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_attention_matmuls_in_a_session(dtype):
    """Q K^T and weights x V of two graph inputs (4-D, a broadcast batch axis) run natively
    (bound to the plan's buffers) and match onnxruntime."""
    t = TensorProto.FLOAT if dtype == np.float32 else TensorProto.FLOAT16
    nodes = [helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
             helper.make_node("MatMul", ["q", "kt"], ["s"]), helper.make_node("MatMul", ["s", "v"], ["y"])]
    g = helper.make_graph(nodes, "attn", [helper.make_tensor_value_info(n, t, None) for n in "qkv"],
                          [helper.make_tensor_value_info("y", t, None)])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    rng = np.random.default_rng(0)
    feeds = {"q": rng.normal(0, 1, (2, 3, 17, 8)).astype(dtype), "k": rng.normal(0, 1, (2, 3, 17, 8)).astype(dtype),
             "v": rng.normal(0, 1, (1, 3, 17, 5)).astype(dtype)}
    s = Session(model.SerializeToString(), num_threads=1)
    assert [n.key for n in s.graph.nodes] == ["qkernels::TransposedMatMul", "MatMul"]   # K^T read in place
    assert all(s.placement(n) == "native" for n in s.graph.nodes)
    got, want = s.run(None, feeds)[0], _ort(model, feeds)[0]
    tol = 1e-5 if dtype == np.float32 else 2e-2
    np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=tol, atol=tol)


# ------------------------------------------------- attention softmax with scale and mask

def _softmax64(v):
    v = v.astype(np.float64)
    e = np.exp(v - v.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


MASKS = {"key": lambda b, h, t: (b, 1, 1, t), "full": lambda b, h, t: (b, 1, t, t),
         "same": lambda b, h, t: (b, h, t, t),
         "scalar": lambda b, h, t: (), "row": lambda b, h, t: (t,), "col": lambda b, h, t: (b, 1, t, 1)}


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("mask_kind", sorted(MASKS))
@given(b=st.integers(1, 3), h=st.integers(1, 3), t=st.integers(1, 37), div=st.booleans(), seed=st.integers(0, 999),
       big=st.booleans())
@settings(max_examples=8, deadline=None)
def test_masked_softmax_kernel(isa, dtype, mask_kind, b, h, t, div, seed, big):
    """Softmax(x / s + mask) (or x * s) against float64 of the same float32 (float16:
    rounded) steps: within the softmax's error; masked positions (finfo.min) give 0."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 30 if big else 3, (b, h, t, t)).astype(dtype)
    mask = np.where(rng.random(MASKS[mask_kind](b, h, t)) < 0.3, np.finfo(dtype).min, 0).astype(dtype)
    s = dtype(np.sqrt(32.0) if div else 0.125)
    from qkernels.graph.backends.cpu_transformer import _mask_rows
    m, off, step = _mask_rows(x, mask)
    y = np.empty_like(x)
    _native.softmax_masked(isa, x.reshape(-1), m, off, step, y.reshape(-1), off.size, t, float(s), div)
    f32 = np.float32
    pre = (x.astype(f32) / f32(s) if div else x.astype(f32) * f32(s)) + mask.astype(f32)
    want = _softmax64(pre)
    atol = 2e-6 if dtype == np.float32 else 2.0 ** -11 + 1e-7
    np.testing.assert_allclose(y.astype(np.float64), want, rtol=1e-5 if dtype == np.float32 else 2.0 ** -10, atol=atol)
    np.testing.assert_allclose(y.astype(np.float64).sum(-1), 1, rtol=0, atol=t * atol + 1e-5)
    u = np.uint16 if dtype == np.float16 else np.uint32
    # the Softmax node of the same build on the scaled, masked scores: the same bits
    sm = np.empty(pre.size, np.float32)
    _native.softmax(isa, np.ascontiguousarray(pre, np.float32).reshape(-1), sm, pre.size // t, t, False)
    np.testing.assert_array_equal(y.view(u), sm.astype(dtype).reshape(y.shape).view(u))
    if isa not in (0, OWN):   # every other build: the portable build's bits
        y0 = np.empty_like(x)
        _native.softmax_masked(0, x.reshape(-1), m, off, step, y0.reshape(-1), off.size, t, float(s), div)
        np.testing.assert_array_equal(y.view(u), y0.view(u))


@pytest.mark.parametrize("isa", ISAS)
@given(t=st.sampled_from([1, 2, 15, 16, 17, 33, 64, 97, 128, 131]), rows=st.integers(1, 5),
       seed=st.integers(0, 2 ** 31), depth=st.sampled_from([5.0, 59.0, 62.0, 70.0, 90.0, 104.0, 120.0]))
@settings(max_examples=30, deadline=None)
def test_softmax_division_every_build(isa, t, rows, seed, depth):
    """Softmax's e / sum and the masked softmax's x / s: the builds with FMA take
    Markstein's correction of e * (1 / sum), rows with an e below 2^-90 (not 0), scores
    or scales near the subnormals or overflow the division: every build gives the
    portable build's bits (its division; the AVX-512 build: its Softmax node's bits on the
    quotients, its exp being its own), whatever the row's depth below its maximum (down
    through the subnormals to 0), plain and masked."""
    rng = np.random.default_rng(seed)
    x = (-rng.random((rows, t)) * depth).astype(np.float32)
    x[:, rng.integers(0, t)] = 0.0
    mask = np.zeros(t, np.float32)
    off = np.zeros(rows, np.int64)
    y, ym, y0 = (np.empty_like(x) for _ in range(3))
    _native.softmax(isa, x.reshape(-1), y.reshape(-1), rows, t, False)
    _native.softmax_masked(isa, x.reshape(-1), mask, off, 1, ym.reshape(-1), rows, t, 1.0, False)
    ref = isa if isa == OWN else 0
    _native.softmax(ref, x.reshape(-1), y0.reshape(-1), rows, t, False)
    for s in (np.float32(5.656854), np.float32(-0.37), np.float32(3e-7), np.float32(1.5e6)):   # x / s first
        yd, yd0 = np.empty_like(x), np.empty_like(x)
        xs = x * np.float32(rng.choice([1.0, 1e-28, 1e28, -3.0]))
        xs[0, 0] = rng.choice([0.0, -0.0, 1e-40, 3e38])
        _native.softmax_masked(isa, xs.reshape(-1), mask, off, 1, yd.reshape(-1), rows, t, float(s), True)
        if isa == OWN:       # numpy's float32 quotient, then the Softmax node
            _native.softmax(isa, (xs / s).reshape(-1), yd0.reshape(-1), rows, t, False)
        else:
            _native.softmax_masked(0, xs.reshape(-1), mask, off, 1, yd0.reshape(-1), rows, t, float(s), True)
        np.testing.assert_array_equal(yd.view(np.uint32), yd0.view(np.uint32))
    np.testing.assert_array_equal(y.view(np.uint32), y0.view(np.uint32))
    np.testing.assert_array_equal(ym.view(np.uint32), y0.view(np.uint32))
    # (the portable build divides: no FMA without ISA flags)
    assert np.all(np.abs(y0.astype(np.float64).sum(-1) - 1) < 1e-5)
    np.testing.assert_allclose(y, _softmax64(x), rtol=1e-5, atol=2e-7)


@pytest.mark.parametrize("isa", ISAS)
@given(t=st.sampled_from([31, 32, 33, 47, 63, 64, 65, 96, 128, 130]), rows=st.integers(1, 4),
       seed=st.integers(0, 2 ** 31), special=st.sampled_from([None, np.nan, np.inf, -np.inf, 0.0, -0.0]),
       where=st.sampled_from(["body", "tail", "both", "all"]), log=st.booleans())
@settings(max_examples=25, deadline=None)
@example(t=31, rows=4, seed=9077, special=np.nan, where="body", log=False)   # a body column past t = 31 (found)
def test_softmax_row_max_every_build(isa, t, rows, seed, special, where, log):
    """The row maximum of every build (AVX-512: 32 values a step, the tail after them) gives
    the portable build's bits (the AVX-512 build's softmax: NaN where it has NaN, its own
    exp elsewhere; masked the same bits as plain): NaN in the body or in the tail (the
    lanes' NaN), infinities, +0 / -0 ties; masked and plain softmax, log softmax."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 4, (rows, t)).astype(np.float32)
    if special is not None:
        cols = {"body": [int(rng.integers(0, min(32, t)))], "tail": [t - 1], "both": [0, t - 1],
                "all": list(range(t))}[where]
        x[:, cols] = np.float32(special)
    if special == 0.0 and where == "all":
        x[:, ::2] = np.float32(-0.0)
    mask = np.zeros(t, np.float32)
    off = np.zeros(rows, np.int64)

    def masked(i):
        y = np.empty_like(x)
        _native.softmax_masked(i, x.reshape(-1), mask, off, 1, y.reshape(-1), rows, t, 0.125, False)
        return y.view(np.uint32)

    def plain(i, v=x, log=log):
        y = np.empty_like(v)
        _native.softmax(i, v.reshape(-1), y.reshape(-1), rows, t, log)
        return y.view(np.uint32)

    if isa != OWN:
        np.testing.assert_array_equal(masked(isa), masked(0))
        np.testing.assert_array_equal(plain(isa), plain(0))
        return
    np.testing.assert_array_equal(masked(isa), plain(isa, x * np.float32(0.125), False))   # (* 2^-3: exact)
    np.testing.assert_array_equal(plain(isa, log=True), plain(0, log=True))               # (no exp of its own)
    got, want = plain(isa).view(np.float32), plain(0).view(np.float32)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-44)


@pytest.mark.parametrize("isa", ISAS)
@given(t=st.one_of(st.integers(1, 40), st.sampled_from([9, 25, 47, 63, 64, 65, 97, 127, 128, 129, 131, 255, 257, 311])),
       rows=st.integers(1, 40), seed=st.integers(0, 2 ** 31), div=st.booleans(), step=st.sampled_from([0, 1]),
       scale=st.sampled_from([30.0, 3.0, 0.01]), masked=st.sampled_from([0.0, 0.3, 1.0]), inplace=st.booleans(),
       fill=st.sampled_from([-np.inf, np.finfo(np.float32).min, -80.0]))
@settings(max_examples=60, deadline=None)
def test_masked_softmax_rows_every_build(isa, t, rows, seed, div, step, scale, masked, inplace, fill):
    """The float32 masked softmax over blocks of rows of any length (the AVX-512 build's
    fused passes: 16 lanes, the tail through lane masks, rows past one 32-row block), in
    place or not, a mask of one value per row or a row of values with -inf / finfo.min /
    -80 (exp below 2^-90) entries, whole rows masked: the portable build's bits, and
    within float32 rounding of float64 of the same scaled scores (the AVX-512 build: its
    Softmax node's bits on those scores)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, scale, (rows, t)).astype(np.float32)
    mask = np.where(rng.random((rows, t if step else 1)) < masked, fill, 0.0).astype(np.float32)
    off = (np.arange(rows) * mask.shape[1]).astype(np.int64)
    s = np.float32(np.sqrt(32.0) if div else 0.125)

    def run(i):
        y = x.copy() if inplace else np.empty_like(x)
        _native.softmax_masked(i, (y if inplace else x).reshape(-1), mask.reshape(-1), off, step, y.reshape(-1),
                               rows, t, float(s), div)
        return y

    y = run(isa)
    pre = (x / s if div else x * s) + (mask if step else mask[:, :1])
    if isa == OWN:   # its Softmax node on the same scores: the same bits
        want = np.empty_like(pre)
        with np.errstate(invalid="ignore"):
            _native.softmax(isa, np.ascontiguousarray(pre).reshape(-1), want.reshape(-1), rows, t, False)
        np.testing.assert_array_equal(y.view(np.uint32), want.view(np.uint32))
    else:
        np.testing.assert_array_equal(y.view(np.uint32), run(0).view(np.uint32))
    full = np.all(pre == -np.inf, -1)    # a row of -inf: -inf - -inf, NaN (as the reference)
    assert np.isnan(y[full]).all()
    with np.errstate(invalid="ignore"):
        want = _softmax64(pre[~full])
    np.testing.assert_allclose(y[~full].astype(np.float64), want, rtol=1e-5, atol=2e-7)


def test_masked_softmax_specials_and_errors():
    x = np.array([[1.0, np.nan, 2.0], [np.inf, 0.0, 1.0], [1.0, 2.0, 3.0]], np.float32)
    mask = np.array([0.0, 0.0, -np.inf], np.float32)
    from qkernels.graph.backends.cpu_transformer import _mask_rows
    m, off, step = _mask_rows(x, mask)
    y = _native.softmax_masked(0, x.reshape(-1), m, off, step, np.empty(9, np.float32), 3, 3, 1.0, False).reshape(3, 3)
    assert np.isnan(y[0]).all() and np.isnan(y[1]).all()          # NaN and inf - inf rows: NaN, as the reference
    np.testing.assert_allclose(y[2], [1 / (1 + np.e), np.e / (1 + np.e), 0], rtol=1e-6)
    with pytest.raises(ValueError):     # an offset past the mask
        _native.softmax_masked(0, x.reshape(-1), m, off + 1, step, np.empty(9, np.float32), 3, 3, 1.0, False)
    with pytest.raises(ValueError):
        _native.softmax_masked(0, x.reshape(-1), m.astype(np.float16), off, step, np.empty(9, np.float32), 3, 3,
                               1.0, False)


def _attention_model(scale_op="Div", scale_first=False, mask_first=False, opset=17, axis=-1, dtype=np.float32,
                     mask_shape=("B", 1, 1, "T")):
    t = TensorProto.FLOAT if dtype == np.float32 else TensorProto.FLOAT16
    inits = [numpy_helper.from_array(np.array(8.0 if scale_op == "Div" else 0.125, dtype), "c")]
    nodes = [helper.make_node("MatMul", ["q", "k"], ["s0"])]
    if scale_op:
        nodes.append(helper.make_node(scale_op, ["c", "s0"] if scale_first else ["s0", "c"], ["s"]))
    sc = "s" if scale_op else "s0"
    nodes += [helper.make_node("Add", ["m", sc] if mask_first else [sc, "m"], ["a"]),
              helper.make_node("Softmax", ["a"], ["y"], axis=axis)]
    ins = [helper.make_tensor_value_info("q", t, ["B", 2, "T", 8]),
           helper.make_tensor_value_info("k", t, ["B", 2, 8, "T"]),
           helper.make_tensor_value_info("m", t, list(mask_shape))]
    g = helper.make_graph(nodes, "attn", ins, [helper.make_tensor_value_info("y", t, None)], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("kw,fused", [({}, True), ({"scale_op": "Mul", "scale_first": True}, True),
                                      ({"mask_first": True}, True), ({"scale_op": ""}, True),
                                      ({"mask_shape": ("B", 1, "T", "T")}, True), ({"dtype": np.float16}, True),
                                      ({"axis": 2}, False)])
def test_attention_softmax_rewrite_vs_ort(kw, fused):
    model = _attention_model(**kw)
    dtype = kw.get("dtype", np.float32)
    s = Session(model.SerializeToString(), num_threads=1)
    keys = [n.key for n in s.graph.nodes]
    assert ("qkernels::MaskedSoftmax" in keys) == fused, keys
    if fused:
        assert "Softmax" not in keys and "Add" not in keys and s.placement(s.graph.nodes[-1]) == "native"
    rng = np.random.default_rng(5)
    b, t = 2, 11
    mshape = [b if d == "B" else t if d == "T" else d for d in kw.get("mask_shape", ("B", 1, 1, "T"))]
    feeds = {"q": rng.normal(0, 2, (b, 2, t, 8)).astype(dtype), "k": rng.normal(0, 2, (b, 2, 8, t)).astype(dtype),
             "m": np.where(rng.random(mshape) < 0.3, np.finfo(dtype).min, 0).astype(dtype)}
    got, want = s.run(None, feeds)[0], _ort(model, feeds)[0]
    tol = 1e-5 if dtype == np.float32 else 3e-3
    np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=tol, atol=tol)


# ------------------------------------------------------------- embedding Gather

def _gather_model(dtype=np.float32, vocab=50, hidden=7, idx_type=TensorProto.INT64):
    t = TensorProto.FLOAT if dtype == np.float32 else TensorProto.FLOAT16
    table = np.random.default_rng(0).normal(0, 1, (vocab, hidden)).astype(dtype)
    g = helper.make_graph([helper.make_node("Gather", ["W", "ids"], ["y"], axis=0)], "emb",
                          [helper.make_tensor_value_info("ids", idx_type, None)],
                          [helper.make_tensor_value_info("y", t, None)], [numpy_helper.from_array(table, "W")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model, table


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@given(shape=st.lists(st.integers(0, 6), max_size=3), seed=st.integers(0, 99), view=st.booleans())
@settings(max_examples=20, deadline=None)
def test_gather_embedding_rows(dtype, shape, seed, view):
    """Native rows of a constant table by run-time int64 indices (negative from the end),
    any index shape (views too): numpy's take, bit for bit, in a session (planned) and
    node by node."""
    model, table = _gather_model(dtype)
    rng = np.random.default_rng(seed)
    ids = rng.integers(-50, 50, [2 * d for d in shape] if view else shape).astype(np.int64)
    if view:
        ids = ids[tuple(slice(None, None, -2) for _ in shape)]
    s = Session(model.SerializeToString(), num_threads=1)
    assert s.placement(s.graph.nodes[0]) == "native"
    want = np.take(table, ids, axis=0)
    for _ in range(2):
        np.testing.assert_array_equal(s.run(None, {"ids": ids})[0], want)
    node = s.graph.nodes[0]
    run = cpu.KERNELS["Gather"](node, s.graph)
    np.testing.assert_array_equal(run({"ids": ids, "W": table})["y"], want)


@pytest.mark.parametrize("bad", [50, -51, 1 << 40])
def test_gather_embedding_out_of_range(bad):
    model, _ = _gather_model()
    s = Session(model.SerializeToString(), num_threads=1)
    ids = np.array([[1, bad, 3]], np.int64)
    with pytest.raises(Exception, match="out of range|out of bounds|index"):
        s.run(None, {"ids": ids})
    np.testing.assert_array_equal(s.run(None, {"ids": np.array([[1]], np.int64)})[0].shape, (1, 1, 7))


def test_gather_int32_indices():
    model, table = _gather_model(idx_type=TensorProto.INT32)
    s = Session(model.SerializeToString(), num_threads=1)
    ids = np.array([[0, -1, 49]], np.int32)
    np.testing.assert_array_equal(s.run(None, {"ids": ids})[0], np.take(table, ids, axis=0))


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@given(perm_a=st.permutations(range(4)), perm_b=st.permutations(range(4)), use=st.sampled_from(["a", "b", "ab"]),
       dims=st.lists(st.integers(1, 9), min_size=5, max_size=5), twice=st.booleans(),
       perm_y=st.sampled_from([None, [0, 2, 1, 3], [1, 0, 2, 3], [2, 1, 0, 3], [0, 1, 3, 2]]))
@settings(max_examples=25, deadline=None)
def test_transpose_into_matmul(dtype, perm_a, perm_b, use, dims, twice, perm_y):
    """MatMul(Transpose(a), Transpose(b)) of any perms: one TransposedMatMul reading the
    operands through their strides (planned and node by node), numpy's product within the
    GEMM's bound; a Transpose read elsewhere too (a graph output) is left alone."""
    b0, h, m, k, n = dims
    want_a, want_b = (b0, h, m, k), (b0, h, k, n)
    inv = lambda p: list(np.argsort(p))  # noqa: E731
    t = TensorProto.FLOAT if dtype == np.float32 else TensorProto.FLOAT16
    rng = np.random.default_rng(sum(dims))
    a, b = rng.normal(0, 1, want_a).astype(dtype), rng.normal(0, 1, want_b).astype(dtype)
    feeds, nodes, ins = {}, [], []
    for name, x, p, on in (("a", a, perm_a, "a" in use), ("b", b, perm_b, "b" in use)):
        if on:   # feed the permuted array; the Transpose undoes it
            feeds[name] = np.ascontiguousarray(np.transpose(x, inv(p)))
            nodes.append(helper.make_node("Transpose", [name], [name + "t"], perm=list(p)))
            ins.append(name + "t")
        else:
            feeds[name] = x
            ins.append(name)
    nodes.append(helper.make_node("MatMul", ins, ["y0" if perm_y else "y"]))
    if perm_y:   # an output Transpose: fused when it keeps the last axis last
        nodes.append(helper.make_node("Transpose", ["y0"], ["y"], perm=perm_y))
    outs = [helper.make_tensor_value_info("y", t, None)]
    if twice and nodes[0].op_type == "Transpose":
        outs.append(helper.make_tensor_value_info(nodes[0].output[0], t, None))
    g = helper.make_graph(nodes, "tm", [helper.make_tensor_value_info(nm, t, None) for nm in ("a", "b")], outs)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    s = Session(model.SerializeToString(), num_threads=1)
    keys = [nd.key for nd in s.graph.nodes]
    fused = "qkernels::TransposedMatMul" in keys
    out_fused = perm_y is not None and perm_y[-1] == 3
    assert fused == (not twice or use == "ab" or out_fused), keys    # (twice: the first Transpose is also an output)
    assert ("Transpose" in keys) == (twice or (perm_y is not None and not out_fused)), keys
    want = np.matmul(a.astype(np.float64), b.astype(np.float64))
    bound = k * 2.0 ** -23 * np.matmul(np.abs(a.astype(np.float64)), np.abs(b.astype(np.float64)))
    if perm_y:
        want, bound = np.transpose(want, perm_y), np.transpose(bound, perm_y)
    if dtype == np.float16:
        bound = bound + 2.0 ** -11 * np.abs(want) + 2.0 ** -25
    for _ in range(2):   # the first run node by node (the trace), the second planned
        got = s.run(None, feeds)[0]
        assert got.shape == want.shape and np.all(np.abs(got.astype(np.float64) - want) <= bound)


# ------------------------------------------------------- Linear layers: bias and residual fused

def _linear_model(n_in, n_out, residual: str, dtype=np.float32, seed=0):
    """y = (x W + b) [+ r]: r "input" (a computed value of y's shape), "row" (a (1, N)
    input that broadcasts) or "" (none)."""
    rng = np.random.default_rng(seed)
    et = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    w = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["b", "m"], ["s"])]
    inputs = [helper.make_tensor_value_info("x", et, [None, None, n_in])]
    if residual:
        nodes.append(helper.make_node("Add", ["s", "r"], ["y"]))
        shape = [1, n_out] if residual == "row" else [None, None, n_out]
        inputs.append(helper.make_tensor_value_info("r", et, shape))
    else:
        nodes.append(helper.make_node("Identity", ["s"], ["y"]))
    g = helper.make_graph(nodes, "lin", inputs, [helper.make_tensor_value_info("y", et, None)],
                          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("residual", ["", "input", "row"])
@pytest.mark.parametrize("rows,n_in,n_out", [(1, 1, 1), (3, 7, 33), (16, 64, 96), (29, 130, 17)])
def test_linear_bias_and_residual_fused_give_the_unfused_floats(monkeypatch, residual, rows, n_in, n_out):
    from qkernels.graph import rewrite
    model = _linear_model(n_in, n_out, residual, seed=rows + n_in)
    rng = np.random.default_rng(rows)
    feeds = {"x": rng.standard_normal((2, rows, n_in)).astype(np.float32)}
    if residual:
        feeds["r"] = rng.standard_normal((1, n_out) if residual == "row" else (2, rows, n_out)).astype(np.float32)
    fused = Session(model.SerializeToString())
    ops = [n.key for n in fused.graph.nodes]
    assert "qkernels::MatMulBias" in ops and ops.count("Add") == 0
    monkeypatch.setattr(rewrite, "PASSES", tuple(p for p in rewrite.PASSES if p is not rewrite.fuse_linear_bias))
    plain = Session(model.SerializeToString())
    assert "qkernels::MatMulBias" not in [n.key for n in plain.graph.nodes]
    ref = Session(model.SerializeToString(), backends=["reference"])
    for _ in range(2):         # traced, then planned
        got, want = fused.run(None, feeds)[0], plain.run(None, feeds)[0]
        np.testing.assert_array_equal(got, want)                 # the same float32 roundings
        np.testing.assert_allclose(got, ref.run(None, feeds)[0], rtol=1e-5, atol=1e-5)
    assert fused.last_run == "plan"


def test_float16_linear_layers_are_not_fused():
    s = Session(_linear_model(8, 8, "input", np.float16).SerializeToString())
    assert "qkernels::MatMulBias" not in [n.key for n in s.graph.nodes]


def test_encoder_linear_layers_fused():
    from qkernels.bench.encoder import bert_encoder, encoder_inputs
    m = bert_encoder(layers=2, hidden=64, heads=4)
    s = Session(m.SerializeToString())
    keys = [n.key for n in s.graph.nodes]
    assert keys.count("qkernels::MatMulBias") == 2 * 5 and keys.count("qkernels::MatMulGelu") == 2
    x = encoder_inputs(2, 9, 1000, padded=2)
    want = _ort(m, x)[0]
    got = s.run(None, x)[0]
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_linear_residual_views_run_and_agree():
    """A residual of reversed or strided columns (not the output stage's rows): the
    reference operator runs it, with the same result as on a contiguous copy."""
    model = _linear_model(12, 10, "input", seed=5)
    s = Session(model.SerializeToString(), plan=False)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 12)).astype(np.float32)
    big = rng.standard_normal((2, 3, 20)).astype(np.float32)
    for r in (big[..., ::2], big[..., 10:][..., ::-1], big[:, ::-1, :10]):
        got = s.run(None, {"x": x, "r": r})[0]
        want = s.run(None, {"x": x, "r": np.ascontiguousarray(r)})[0]
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
