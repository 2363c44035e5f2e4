"""Recurrent layers (graph/backends/reference/recurrent.py, graph/backends/cpu_recurrent.py,
kernels/recurrent.c): RNN, GRU and LSTM on the native path against the float64 reference
(hypothesis over sizes 1, odd, prime and past the GEMM's 16-column tile, directions,
sequence_lens, layouts, peepholes, clip, input_forget, linear_before_reset, every
activation), the reference against onnxruntime, the plan against the node-by-node run,
every ISA build, array views against contiguous copies, malformed nodes, the dynamically
quantized com.microsoft DynamicQuantizeLSTM (reference and native) against onnxruntime,
and the silero VAD streaming model end to end.

Tolerance of the native float32 path against the float64 reference: |got - want| <=
2e-5 + 2e-5 |want| on sequences up to 12 steps of O(1) values (float32 GEMM sums and the
3- and 2-ulp sigmoid / tanh, propagated through the steps); the reference against
onnxruntime (float32 with its own approximations): 1e-5 + 1e-5 |want|."""
from __future__ import annotations

import os
import sys
import threading
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import qkernels

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from qkernels.graph import Session  # noqa: E402
from qkernels.graph.errors import ModelError, UnsupportedError  # noqa: E402
from qkernels.graph.backends.reference.recurrent import ACTIVATIONS, dynamic_quantize  # noqa: E402

GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
INPUTS = {"RNN": ["X", "W", "R", "B", "sequence_lens", "initial_h"],
          "GRU": ["X", "W", "R", "B", "sequence_lens", "initial_h"],
          "LSTM": ["X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"]}
OUTPUTS = {"RNN": ["Y", "Y_h"], "GRU": ["Y", "Y_h"], "LSTM": ["Y", "Y_h", "Y_c"]}
WEIGHTS = ("W", "R", "B", "P")
NATIVE_TOL = dict(rtol=2e-5, atol=2e-5)
ORT_TOL = dict(rtol=1e-5, atol=1e-5)
ACTIVATION_NAMES = [a[0] for a in ACTIVATIONS.values()]


def _model(kind, feeds, attrs, outputs=None, consts=WEIGHTS, domain="", opset=14):
    names = INPUTS[kind] if not domain else INPUTS["LSTM"] + ["W_scale", "W_zero_point", "R_scale", "R_zero_point"]
    ins = [n if n in feeds else "" for n in names]
    while ins and not ins[-1]:
        ins.pop()
    outputs = OUTPUTS[kind] if outputs is None else outputs
    op = "DynamicQuantizeLSTM" if domain else kind
    node = helper.make_node(op, ins, outputs, domain=domain or None, **attrs)
    inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
              for n, v in feeds.items() if n not in consts]
    inits = [numpy_helper.from_array(v, n) for n, v in feeds.items() if n in consts]
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info(o, TensorProto.FLOAT, None)
                                                    for o in outputs if o], inits)
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return model


def _operands(kind, T, N, I, H, D, rng, *, lens=False, h0=False, c0=False, peepholes=False, layout=0,
              bias=True, scale=0.5):
    G = GATES[kind]
    f = {"X": rng.standard_normal((T, N, I) if layout == 0 else (N, T, I)).astype(np.float32),
         "W": (rng.standard_normal((D, G * H, I)) * scale).astype(np.float32),
         "R": (rng.standard_normal((D, G * H, H)) * scale).astype(np.float32)}
    if bias:
        f["B"] = rng.standard_normal((D, 2 * G * H)).astype(np.float32)
    if lens:
        f["sequence_lens"] = rng.integers(0 if lens == "zero" else 1, T + 1, N).astype(np.int32)
    state = (D, N, H) if layout == 0 else (N, D, H)
    if h0:
        f["initial_h"] = rng.standard_normal(state).astype(np.float32)
    if c0 and kind == "LSTM":
        f["initial_c"] = rng.standard_normal(state).astype(np.float32)
    if peepholes and kind == "LSTM":
        f["P"] = rng.standard_normal((D, 3 * H)).astype(np.float32)
    return f


def _feeds(f, consts=WEIGHTS):
    return {k: v for k, v in f.items() if k not in consts}


def _reference(model, feeds):
    return Session(model, backends=["reference"]).run(None, feeds)


def _native_session(model, **kw):
    s = Session(model, **kw)
    assert [s.placement(n) for n in s.graph.nodes] == ["native"]
    return s


def _ort(kind, f, attrs, outputs=None):
    """onnxruntime's outputs; it lacks layout 1: layout 0 on transposed operands."""
    ort = pytest.importorskip("onnxruntime")
    if attrs.get("layout", 0) == 1:
        g = {k: (np.ascontiguousarray(v.swapaxes(0, 1)) if k in ("X", "initial_h", "initial_c") else v)
             for k, v in f.items()}
        got = _ort(kind, g, dict(attrs, layout=0), outputs)
        return [r.transpose(2, 0, 1, 3) if r.ndim == 4 else r.transpose(1, 0, 2) for r in got]
    model = _model(kind, f, attrs, outputs)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, _feeds(f))


def _seed(*names) -> int:
    """A seed from the names, the same in every process (str hashes are salted)."""
    return zlib.crc32(" ".join(names).encode())


def _close(got, want, tol):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, **tol)


_SIZES = st.sampled_from([1, 2, 3, 5, 7, 17])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["RNN", "GRU", "LSTM"]), direction=st.sampled_from(["forward", "reverse", "bidirectional"]),
       T=st.sampled_from([1, 2, 3, 7, 12]), N=st.sampled_from([1, 2, 3, 5]), I=_SIZES, H=_SIZES,
       layout=st.sampled_from([0, 1]), lens=st.sampled_from([False, True, "zero"]), h0=st.booleans(),
       peepholes=st.booleans(), extra=st.sampled_from([{}, {"clip": 0.8}, "flag"]), seed=st.integers(0, 2 ** 16))
def test_native_matches_reference(kind, direction, T, N, I, H, layout, lens, h0, peepholes, extra, seed):
    rng = np.random.default_rng(seed)
    D = 2 if direction == "bidirectional" else 1
    f = _operands(kind, T, N, I, H, D, rng, lens=lens, h0=h0, c0=h0, peepholes=peepholes, layout=layout)
    if extra == "flag":
        extra = {"GRU": {"linear_before_reset": 1}, "LSTM": {"input_forget": 1}}.get(kind, {})
    attrs = dict(hidden_size=H, direction=direction, layout=layout, **extra)
    model = _model(kind, f, attrs)
    want = _reference(model, _feeds(f))
    s = _native_session(model)
    first, second = s.run(None, _feeds(f)), s.run(None, _feeds(f))   # node by node, then the plan
    assert s.last_run == "plan"
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    _close(first, want, NATIVE_TOL)


@pytest.mark.parametrize("kind", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("case", ["plain", "lens", "layout1", "clip_peepholes", "flag"])
def test_reference_and_native_match_onnxruntime(kind, direction, case):
    rng = np.random.default_rng(_seed(kind, direction, case))
    D = 2 if direction == "bidirectional" else 1
    layout = 1 if case == "layout1" else 0
    f = _operands(kind, 6, 3, 5, 7, D, rng, lens=case == "lens", h0=True, c0=True, peepholes=case == "clip_peepholes",
                  layout=layout)
    attrs = dict(hidden_size=7, direction=direction, layout=layout)
    if case == "clip_peepholes":
        attrs["clip"] = 0.6
    if case == "flag":
        attrs.update({"GRU": {"linear_before_reset": 1}, "LSTM": {"input_forget": 1}}.get(kind, {}))
    want = _ort(kind, f, attrs)
    model = _model(kind, f, attrs)
    _close(_reference(model, _feeds(f)), want, ORT_TOL)
    _close(_native_session(model).run(None, _feeds(f)), want, ORT_TOL)


@pytest.mark.parametrize("kind", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_every_activation_matches_onnxruntime(kind, name):
    """Each activation in each position of the cell, with its alpha / beta given, then with
    onnxruntime's defaults (the lists run out)."""
    rng = np.random.default_rng(_seed(kind, name))
    per = {"RNN": 1, "GRU": 2, "LSTM": 3}[kind]
    for pos in range(per):
        for given_params in (True, False):
            acts = [a for a in ("Sigmoid", "Tanh", "Tanh")[:per]]
            if kind == "RNN":
                acts = ["Tanh"]
            acts[pos] = name
            attrs = dict(hidden_size=4, activations=acts * 2, direction="bidirectional")
            if given_params:
                attrs["activation_alpha"] = [0.7, 0.3, 1.1, 0.5, 0.9, 0.2]
                attrs["activation_beta"] = [0.4, 0.6, 0.8, 0.1, 0.3, 0.5]
            # 3 steps: an unbounded update gate (Softplus, Relu, Affine as GRU's z) grows h
            # geometrically, and onnxruntime's Softplus, log(1 + exp(x)), is inf past x = 88.7
            # (ours, max(x, 0) + log1p(exp(-|x|)), stays finite): keep both in range
            f = _operands(kind, 3, 2, 3, 4, 2, rng, h0=True, c0=True, scale=0.3)
            want = _ort(kind, f, attrs)
            model = _model(kind, f, attrs)
            for got, tol in ((_reference(model, _feeds(f)), ORT_TOL), (_native_session(model).run(None, _feeds(f)),
                                                                         dict(rtol=5e-5, atol=5e-5))):
                for g, w in zip(got, want):
                    # unbounded activations (Relu, Affine, ...) may grow: compare relative to the size
                    np.testing.assert_allclose(g, w, rtol=tol["rtol"], atol=tol["atol"] * max(1.0, np.abs(w).max()))


@pytest.mark.parametrize("outputs", [["Y"], ["", "Y_h"], ["", "", "Y_c"], ["Y", "", "Y_c"]])
def test_any_subset_of_outputs(outputs):
    rng = np.random.default_rng(3)
    f = _operands("LSTM", 5, 2, 3, 4, 2, rng, h0=True, c0=True, lens=True)
    attrs = dict(hidden_size=4, direction="bidirectional")
    full = _reference(_model("LSTM", f, attrs), _feeds(f))
    model = _model("LSTM", f, attrs, outputs)
    s = _native_session(model)
    for _ in range(2):
        got = s.run(None, _feeds(f))
        _close(got, [full[k] for k, o in enumerate(outputs) if o], NATIVE_TOL)


def test_isa_builds_agree():
    """Every ISA path (portable and AVX2 gate math, each GEMM build, the emulated ones too)
    within the tolerance of the reference."""
    rng = np.random.default_rng(4)
    f = _operands("LSTM", 7, 3, 17, 19, 2, rng, h0=True, c0=True, peepholes=True, lens=True)
    model = _model("LSTM", f, dict(hidden_size=19, direction="bidirectional", clip=2.0))
    want = _reference(model, _feeds(f))
    for isa in qkernels._dispatch.tested_isas():
        with qkernels.use_isa(isa):
            _close(_native_session(model).run(None, _feeds(f)), want, NATIVE_TOL)


@pytest.mark.parametrize("view", ["step", "negative", "transposed_state"])
def test_array_views_equal_contiguous_copies(view):
    rng = np.random.default_rng(5)
    f = _operands("GRU", 5, 3, 4, 6, 2, rng, h0=True)
    attrs = dict(hidden_size=6, direction="bidirectional", linear_before_reset=1)
    model = _model("GRU", f, attrs)
    feeds = _feeds(f)
    if view == "step":
        big = np.zeros((5, 3, 8), np.float32)
        big[:, :, ::2] = feeds["X"]
        feeds["X"] = big[:, :, ::2]
    elif view == "negative":
        feeds["X"] = np.ascontiguousarray(feeds["X"][::-1])[::-1]
    else:
        feeds["initial_h"] = np.ascontiguousarray(feeds["initial_h"].transpose(2, 1, 0)).transpose(2, 1, 0)
    assert not all(v.flags.c_contiguous for v in feeds.values())
    copies = {k: np.ascontiguousarray(v) for k, v in feeds.items()}
    for plan in (False, True):
        s = _native_session(model, plan=plan)
        for a, b in zip(s.run(None, feeds), s.run(None, copies)):
            np.testing.assert_array_equal(a, b)


def test_sequence_lens_as_input_checked_every_run():
    rng = np.random.default_rng(6)
    f = _operands("LSTM", 4, 3, 3, 5, 1, rng, lens=True)
    model = _model("LSTM", f, dict(hidden_size=5), consts=WEIGHTS)
    s = _native_session(model)
    feeds = _feeds(f)
    want = _reference(model, feeds)
    for _ in range(2):
        _close(s.run(None, feeds), want, NATIVE_TOL)
    for bad in ([5, 1, 1], [-1, 2, 2]):
        with pytest.raises(ModelError, match="sequence_lens"):
            s.run(None, dict(feeds, sequence_lens=np.array(bad, np.int32)))
    _close(s.run(None, feeds), want, NATIVE_TOL)      # the plan still serves good values


def test_float16_and_float64_run_the_reference():
    rng = np.random.default_rng(7)
    for dtype in (np.float16, np.float64):
        f = {k: v.astype(dtype) for k, v in _operands("GRU", 3, 2, 3, 4, 1, rng, h0=True).items()}
        model = _model("GRU", f, dict(hidden_size=4))
        got = Session(model).run(None, _feeds(f))
        want = _reference(model, _feeds(f))
        assert got[0].dtype == dtype
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)


def test_threads_share_a_session():
    rng = np.random.default_rng(8)
    f = _operands("LSTM", 6, 2, 5, 9, 2, rng, h0=True, c0=True)
    model = _model("LSTM", f, dict(hidden_size=9, direction="bidirectional"))
    s = _native_session(model)
    inputs = [dict(_feeds(f), X=rng.standard_normal(f["X"].shape).astype(np.float32)) for _ in range(4)]
    want = [s.run(None, x) for x in inputs]
    errors = []

    def work(k):
        for _ in range(10):
            for a, b in zip(s.run(None, inputs[k]), want[k]):
                if not np.array_equal(a, b):
                    errors.append(k)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


# ------------------------------------------------------------------ malformed nodes

def _lstm_case(**attrs):
    rng = np.random.default_rng(9)
    f = _operands("LSTM", 3, 2, 4, 5, 1, rng)
    return f, dict(dict(hidden_size=5), **attrs)


@pytest.mark.parametrize("attrs,match", [
    (dict(activations=["Sigmoid", "Tanh", "Cosine"]), "activation 'Cosine' unknown"),
    (dict(activations=["Sigmoid", "Tanh"]), "3 names expected"),
    (dict(direction="sideways"), "direction 'sideways' unknown"),
    (dict(layout=2), "layout must be 0 or 1"),
    (dict(input_forget=3), "input_forget must be 0 or 1"),
    (dict(hidden_size=-2), "hidden_size must be positive"),
])
def test_malformed_attributes_are_refused(attrs, match):
    f, attrs = _lstm_case(**attrs)
    with pytest.raises(UnsupportedError, match=match):
        Session(_model("LSTM", f, attrs))


@pytest.mark.parametrize("change,match", [
    (lambda f: f.update(W=f["W"][:, :-1]), "W must have shape"),
    (lambda f: f.update(R=f["R"][:, :, :-1]), "R must have shape"),
    (lambda f: f.update(B=f["B"][:, :-2]), "B must have shape"),
    (lambda f: f.update(initial_h=np.zeros((1, 3, 5), np.float32)), "initial_h must have shape"),
    (lambda f: f.update(X=f["X"][0]), "X must be 3-D"),
    (lambda f: f.update(P=np.zeros((1, 5), np.float32)), "P must have shape"),
])
def test_malformed_operands_raise_model_error(change, match):
    f, attrs = _lstm_case()
    change(f)
    with pytest.raises(ModelError, match=match):
        Session(_model("LSTM", f, attrs)).run(None, _feeds(f))


def test_hidden_size_mismatch_raises_model_error():
    f, attrs = _lstm_case(hidden_size=6)
    with pytest.raises(ModelError, match="hidden_size 6"):
        Session(_model("LSTM", f, attrs)).run(None, _feeds(f))


# ---------------------------------------------------------- DynamicQuantizeLSTM

def _dq_operands(rng, T, N, I, H, D, wdt, per_column):
    f = {"X": rng.standard_normal((T, N, I)).astype(np.float32)}
    lo, hi = (-128, 128) if wdt == np.int8 else (0, 256)
    f["W"] = rng.integers(lo, hi, (D, I, 4 * H)).astype(wdt)
    f["R"] = rng.integers(lo, hi, (D, H, 4 * H)).astype(wdt)
    f["B"] = rng.standard_normal((D, 8 * H)).astype(np.float32)
    f["initial_h"] = rng.standard_normal((D, N, H)).astype(np.float32)
    f["initial_c"] = rng.standard_normal((D, N, H)).astype(np.float32)
    f["P"] = rng.standard_normal((D, 3 * H)).astype(np.float32)
    shape = (D, 4 * H) if per_column else (D,)
    zero = 0 if wdt == np.int8 else 128      # onnxruntime: int8 zero point 0, one zero point per direction
    for name in ("W", "R"):
        f[name + "_scale"] = rng.uniform(0.001, 0.01, shape).astype(np.float32)
        f[name + "_zero_point"] = np.full(shape, zero if per_column else zero + (0 if wdt == np.int8 else 3), wdt)
    return f


_DQ_CONSTS = ("W", "R", "B", "P", "W_scale", "W_zero_point", "R_scale", "R_zero_point")


@pytest.mark.parametrize("wdt", [np.int8, np.uint8])
@pytest.mark.parametrize("per_column", [False, True])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("batch,lens", [(1, None), (3, None), (1, [3]), (3, [3, 5, 0])])
def test_dynamic_quantize_lstm_matches_onnxruntime(wdt, per_column, direction, batch, lens):
    """onnxruntime's per-call quantization of X and h (with sequence_lens: the ranges of the
    rows its GEMMs see), the same bits up to its float32 gate math. onnxruntime on one
    thread: with several, it splits the batch rows over its threads and quantizes each
    share of h on its own (results that depend on its thread count)."""
    ort = pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(10)
    D = 2 if direction == "bidirectional" else 1
    f = _dq_operands(rng, 5, batch, 7, 6, D, wdt, per_column)
    if lens is not None:
        f["sequence_lens"] = np.array(lens, np.int32)
    model = _model("LSTM", f, dict(hidden_size=6, direction=direction), consts=_DQ_CONSTS, domain="com.microsoft")
    feeds = _feeds(f, _DQ_CONSTS)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    want = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feeds)
    _close(_reference(model, feeds), want, dict(rtol=1e-5, atol=2e-6))
    s = _native_session(model)
    first, second = s.run(None, feeds), s.run(None, feeds)      # node by node, then the plan
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    _close(second, want, dict(rtol=1e-5, atol=2e-6))


def test_dynamic_quantize_lstm_every_isa_path():
    """The integer GEMMs of every ISA path (exact) and both gate-math builds: within
    float32 rounding of the reference (a quantization step flips only on a rounding tie)."""
    rng = np.random.default_rng(13)
    f = _dq_operands(rng, 7, 2, 19, 17, 2, np.int8, True)
    model = _model("LSTM", f, dict(hidden_size=17, direction="bidirectional"), consts=_DQ_CONSTS,
                   domain="com.microsoft")
    feeds = _feeds(f, _DQ_CONSTS)
    want = _reference(model, feeds)
    for isa in qkernels._dispatch.tested_isas():
        with qkernels.use_isa(isa):
            _close(_native_session(model).run(None, feeds), want, dict(rtol=1e-5, atol=2e-6))


def test_dynamic_quantize_matches_onnxruntime_parameters():
    """The per-call quantization of a GEMM operand against onnxruntime's
    DynamicQuantizeLinear (the same arithmetic: range widened to 0, uint8, half to even)."""
    ort = pytest.importorskip("onnxruntime")
    node = helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "s", "z"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info(n, t, None) for n, t in
                               (("q", TensorProto.UINT8), ("s", TensorProto.FLOAT), ("z", TensorProto.UINT8))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(11)
    for x in (rng.standard_normal((3, 7)), rng.uniform(0.1, 2, (2, 5)), -rng.uniform(0.1, 2, (4, 4)),
              np.zeros((2, 2)), np.array([[0.5, -0.25, 1.0]])):
        x = x.astype(np.float32)
        q, s, z = sess.run(None, {"x": x})
        mq, ms, mz = dynamic_quantize(x)
        assert float(ms) == float(s) and mz == int(z)
        np.testing.assert_array_equal(mq, q)


# ----------------------------------------------------------------- silero VAD

def _silero_cache():
    try:    # bench.silero's model cache (its fetch() unpacks the wheel's vad and ifless models)
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir))
        from bench.real_models import CACHE
        return [str(CACHE)]
    except ImportError:
        return []
    finally:
        sys.path.pop(0)


_SILERO_DIRS = _silero_cache() + [os.path.expanduser("~/.cache/qkernels/models/silero"), "/tmp/silero_models"]


def _silero(name):
    for d in _SILERO_DIRS:
        path = os.path.join(d, name)
        if os.path.exists(path):
            return path
    pytest.skip(f"{name} not found in {' or '.join(_SILERO_DIRS)} (from the PyPI wheel silero-vad==6.2.3)")


def _audio(chunks, size=576):
    rng = np.random.default_rng(12)
    t = np.arange(chunks * size) / 16000.0
    voiced = (np.sin(2 * np.pi * 0.7 * t) > 0) * (0.3 * np.sin(2 * np.pi * 180 * t) + 0.2 * np.sin(2 * np.pi * 410 * t))
    return (voiced + 0.01 * rng.standard_normal(t.size)).astype(np.float32).reshape(chunks, 1, size)


@pytest.mark.parametrize("name", ["silero_vad_16k_sequence.onnx", "silero_vad_openvino_16k.onnx"])
def test_silero_vad_stream_matches_onnxruntime(name):
    """A stream of 576-sample chunks, the LSTM state fed back: the speech probability
    within 1e-5 of onnxruntime, the state within 1e-5 + 1e-5 |state| (its c grows to ~5:
    float32 rounding of either runtime), the LSTM on the native path."""
    ort = pytest.importorskip("onnxruntime")
    path = _silero(name)
    rt = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    s = Session(path)
    assert [s.placement(n) for n in s.graph.nodes if n.op_type == "LSTM"] == ["native"]
    names = [i.name for i in rt.get_inputs()]
    states = {n: np.zeros((2 if n == "state" else 1, 1, 128), np.float32) for n in names if n != "input"}
    ours = dict(states)
    for chunk in _audio(30):
        want = rt.run(None, {"input": chunk, **states})
        got = s.run(None, {"input": chunk, **ours})
        np.testing.assert_allclose(got[0], want[0], rtol=0, atol=1e-5)
        for g, w in zip(got[1:], want[1:]):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
        states = dict(zip([n for n in names if n != "input"], want[1:]))
        ours = dict(zip([n for n in names if n != "input"], got[1:]))
