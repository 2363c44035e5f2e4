"""com.microsoft transformer operators (onnxruntime's transformer optimizer writes them):
the reference operators (graph/backends/reference/ort_transformer.py) and the cpu
backend's native SkipLayerNormalization and Attention (graph/backends/cpu_ort_transformer.py,
kernels/transformer.c) against onnxruntime, which runs the same com.microsoft ops; the
native attention core's ISA builds against each other (the same bits); bad input; the
encoder as onnxruntime's optimizer fuses it, through both backends, against onnxruntime."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from qkernels import _dispatch, _native
from qkernels.graph import Session
from qkernels.graph.errors import ModelError

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

MS = "com.microsoft"
SETTINGS = settings(max_examples=30, deadline=None)
BACKENDS = (["reference"], ["cpu"])


def _model(op, feeds, inits, attrs, outs, out_types):
    """One com.microsoft node: ``feeds`` graph inputs, ``inits`` initializers (name -> array;
    "" keeps an optional input's place)."""
    names = list(feeds) + list(inits)
    node = helper.make_node(op, names, list(outs), domain=MS, **attrs)
    g = helper.make_graph([node], "g",
                          [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                           for k, v in feeds.items()],
                          [helper.make_tensor_value_info(o, t, None) for o, t in zip(outs, out_types) if o],
                          [numpy_helper.from_array(v, k) for k, v in inits.items() if k])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)])


def _ort(model, feeds):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feeds)


def _check(model, feeds, rtol, atol, native=None):
    """Each backend's outputs against onnxruntime's (over 2 runs: the plan's trace and plan);
    ``native``: the op the cpu backend must run natively."""
    want = _ort(model, feeds)
    for backends in BACKENDS:
        s = Session(model, backends=backends)
        for _ in range(2):
            got = s.run(None, feeds)
            for g, w in zip(got, want):
                assert g.dtype == w.dtype and g.shape == w.shape, (backends, g.shape, w.shape)
                np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=rtol, atol=atol)
        if native and backends == ["cpu"]:
            assert f"{MS}::{native}" in s.explain().split("reference")[0].split("native")[-1]


def _arr(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


# ------------------------------------------------------------------- SkipLayerNormalization

@SETTINGS
@given(st.integers(1, 3), st.integers(1, 9), st.sampled_from([1, 7, 16, 33, 64]), st.sampled_from(["full", "seq", "1seq"]),
       st.booleans(), st.booleans(), st.sampled_from([np.float32, np.float16]), st.integers(0, 2 ** 31))
def test_skip_layer_norm_against_onnxruntime(b, s, h, skip_kind, with_beta, with_bias, dtype, seed):
    rng = np.random.default_rng(seed)
    x = _arr(rng, (b, s, h), dtype, 3)
    skip = _arr(rng, {"full": (b, s, h), "seq": (s, h), "1seq": (1, s, h)}[skip_kind], dtype)
    inits = {"gamma": _arr(rng, (h,), dtype)}
    if with_beta or with_bias:
        inits["beta" if with_beta else ""] = _arr(rng, (h,), dtype)      # "": beta omitted, bias given
    if with_bias:
        inits["bias"] = _arr(rng, (h,), dtype)
    et = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    outs = ("y", "mean", "inv", "sum")
    model = _model("SkipLayerNormalization", {"x": x, "skip": skip}, inits, {"epsilon": 1e-5}, outs,
                   (et, TensorProto.FLOAT, TensorProto.FLOAT, et))
    tol = 1e-5 if dtype == np.float32 else 4e-3
    _check(model, {"x": x, "skip": skip}, tol, tol, native="SkipLayerNormalization")


def test_skip_layer_norm_native_is_the_reference_closely_and_views():
    """The native kernel against the reference operator on strided rows (the runner copies)."""
    rng = np.random.default_rng(1)
    x = _arr(rng, (2, 5, 40), np.float32, 10)[:, :, ::2]
    skip, g, b = _arr(rng, (5, 20), np.float32), _arr(rng, (20,), np.float32), _arr(rng, (20,), np.float32)
    y = np.empty((10, 20), np.float32)
    _native.skip_layer_norm(np.ascontiguousarray(x).reshape(10, 20), skip, None, g, b, 1e-5, y)
    s = x + skip
    m = s.astype(np.float64).mean(-1, keepdims=True)
    want = (s - m) / np.sqrt(((s - m) ** 2).mean(-1, keepdims=True) + np.float32(1e-5)) * g + b
    np.testing.assert_allclose(y.reshape(2, 5, 20), want, rtol=1e-6, atol=1e-6)


def test_skip_layer_norm_bad_input():
    x, g = np.zeros((4, 3), np.float32), np.ones(3, np.float32)
    y = np.empty((4, 3), np.float32)
    for args in ((x, np.zeros((3, 3), np.float32), None, g, None),          # 3 skip rows do not divide 4
                 (x, np.zeros((4, 3), np.float16), None, g, None),          # dtypes differ
                 (x, np.zeros((4, 3), np.float32), None, np.ones(4, np.float32), None),
                 (x[:, ::2], np.zeros((4, 2), np.float32), None, g[:2], None)):   # strided columns
        with pytest.raises(ValueError):
            _native.skip_layer_norm(*args, 1e-5, y if args[0].shape[1] == 3 else np.empty((4, 2), np.float32))
    rng = np.random.default_rng(0)
    model = _model("SkipLayerNormalization", {"x": _arr(rng, (2, 3, 4), np.float32),
                                              "skip": _arr(rng, (2, 2, 4), np.float32)},
                   {"g": np.ones(4, np.float32)}, {}, ("y",), (TensorProto.FLOAT,))
    for backends in BACKENDS:
        with pytest.raises(ModelError, match="skip"):
            Session(model, backends=backends).run(None, {"x": _arr(rng, (2, 3, 4), np.float32),
                                                         "skip": _arr(rng, (2, 2, 4), np.float32)})


# ---------------------------------------------------------------------------- Attention

@st.composite
def attention_cases(draw):
    b, s, n = draw(st.integers(1, 3)), draw(st.integers(1, 12)), draw(st.integers(1, 4))
    hq, hv = draw(st.sampled_from([1, 3, 8, 16])), draw(st.sampled_from([None, 2, 8]))
    mask = draw(st.sampled_from(["none", "end", "end_start", "raw", "raw3"]))
    uni = draw(st.booleans()) and mask in ("none", "raw")
    filt = draw(st.sampled_from([None, -3.4028234663852886e+38])) if not uni else None
    scale = draw(st.sampled_from([None, 0.3]))
    return b, s, n, hq, hv, mask, uni, filt, scale, draw(st.integers(0, 2 ** 31)), draw(st.integers(0, 4))


def _mask_index(rng, kind, b, s):
    ends = rng.integers(1, s + 1, b).astype(np.int32)
    if kind == "end":
        return ends
    if kind == "end_start":
        return np.concatenate([ends, rng.integers(0, ends)]).astype(np.int32)
    raw = (rng.random((b, s)) < 0.7).astype(np.int32)
    raw[:, 0] = 1
    if kind == "raw":
        return raw
    return (rng.random((b, s, s)) < 0.7).astype(np.int32)


def _attention_model(rng, b, s, n, hq, hv, mask, uni, filt, scale, d_in, with_bias=True):
    sizes = [n * hq, n * hq, n * (hv or hq)]
    x = _arr(rng, (b, s, d_in), np.float32)
    inits = {"w": _arr(rng, (d_in, sum(sizes)), np.float32, 1 / np.sqrt(d_in)),
             "bias" if with_bias else "": _arr(rng, (sum(sizes),), np.float32, 0.3)}
    feeds = {"x": x}
    if mask != "none":
        feeds["mask_index"] = _mask_index(rng, mask, b, s)
    attrs = {"num_heads": n}
    if hv:
        attrs["qkv_hidden_sizes"] = sizes
    if uni:
        attrs["unidirectional"] = 1
    if filt is not None:
        attrs["mask_filter_value"] = filt
    if scale is not None:
        attrs["scale"] = scale
    names = ["x", "w", "bias" if with_bias else ""] + (["mask_index"] if mask != "none" else [])
    node = helper.make_node("Attention", names, ["y"], domain=MS, **attrs)
    g = helper.make_graph([node], "g",
                          [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype),
                                                         None if k == "mask_index" else v.shape)
                           for k, v in feeds.items()],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(v, k) for k, v in inits.items() if k])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)])
    return model, feeds


@SETTINGS
@given(attention_cases())
def test_attention_against_onnxruntime(case):
    b, s, n, hq, hv, mask, uni, filt, scale, seed, extra = case
    rng = np.random.default_rng(seed)
    model, feeds = _attention_model(rng, b, s, n, hq, hv, mask, uni, filt, scale, 4 + extra * 5, seed % 3 > 0)
    _check(model, feeds, 1e-5, 1e-5, native="Attention")


def test_attention_past_present_against_onnxruntime():
    """past (2, B, N, P, H) and present: the reference operator (the cpu backend hands it over)."""
    rng = np.random.default_rng(3)
    b, s, n, h, p = 2, 3, 2, 4, 5
    model, feeds = _attention_model(rng, b, s, n, h, None, "none", True, None, None, 8)
    node = model.graph.node[0]
    node.input.extend(["", "past"])
    node.output.append("present")
    model.graph.input.append(helper.make_tensor_value_info("past", TensorProto.FLOAT, (2, b, n, p, h)))
    model.graph.output.append(helper.make_tensor_value_info("present", TensorProto.FLOAT, None))
    feeds["past"] = _arr(rng, (2, b, n, p, h), np.float32)
    _check(model, feeds, 1e-5, 1e-5)


@pytest.mark.parametrize("isa", [i for i in ("scalar", "avx2") if i in _dispatch.SUPPORTED_ISAS])
def test_attention_core_builds_agree_and_views(isa):
    """The native core of each ISA build, on 4 threads: the same bits as the portable build
    on one, from column slices of one packed QKV matrix and a broadcast (stride 0) mask."""
    rng = np.random.default_rng(5)
    b, s, n, hq, hv = 2, 37, 3, 5, 7
    qkv = _arr(rng, (b * s, n * (2 * hq + hv) + 3), np.float32)
    q, k, v = qkv[:, :n * hq], qkv[:, n * hq:2 * n * hq], qkv[:, 2 * n * hq:2 * n * hq + n * hv]
    mask = np.broadcast_to(np.where(rng.random((b, 1, s)) < 0.3, np.float32(-1e4), np.float32(0)), (b, s, s))
    outs = []
    for which, threads in ((_dispatch.ISA_NAMES.index("scalar"), 1), (_dispatch.ISA_NAMES.index(isa), 4)):
        out = np.empty((b * s, n * hv), np.float32)
        _native.attention(which, q, k, v, b, n, mask, 0.4, out, threads=threads)
        outs.append(out)
    assert outs[0].tobytes() == outs[1].tobytes()
    qh, kh, vh = (a.reshape(b, s, n, -1).transpose(0, 2, 1, 3).astype(np.float64) for a in (q, k, v))
    sc = 0.4 * qh @ kh.transpose(0, 1, 3, 2) + mask[:, None]
    e = np.exp(sc - sc.max(-1, keepdims=True))
    want = (e / e.sum(-1, keepdims=True) @ vh).transpose(0, 2, 1, 3).reshape(b * s, -1)
    np.testing.assert_allclose(outs[1], want, rtol=2e-5, atol=2e-6)


def test_attention_bad_input():
    q = np.zeros((4, 6), np.float32)
    out = np.empty((4, 6), np.float32)
    for args in ((q, q, q, 3, 2, None), (q, q[:, :4], q, 2, 2, None), (q, q, q, 2, 4, None),
                 (q, q, q, 2, 2, np.zeros((2, 2, 3), np.float32)), (q.astype(np.float16), q, q, 2, 2, None)):
        with pytest.raises(ValueError):
            _native.attention(0, *args, 1.0, out)
    rng = np.random.default_rng(0)
    model, feeds = _attention_model(rng, 2, 3, 2, 4, None, "end", False, None, None, 8)
    feeds["mask_index"] = np.ones((2, 5), np.int32)                         # neither (B) nor (B, T)
    for backends in BACKENDS:
        with pytest.raises(ModelError, match="mask_index"):
            Session(model, backends=backends).run(None, feeds)
    model.graph.node[0].attribute.append(helper.make_attribute("qkv_hidden_sizes", [8, 4, 12]))
    feeds["mask_index"] = np.ones(2, np.int32)
    for backends in BACKENDS:
        with pytest.raises(ModelError, match="qkv_hidden_sizes"):
            Session(model, backends=backends).run(None, feeds)


def test_multi_head_attention_against_onnxruntime():
    rng = np.random.default_rng(9)
    b, s, t, n, h = 2, 5, 7, 3, 4
    feeds = {"q": _arr(rng, (b, s, n * h), np.float32), "k": _arr(rng, (b, t, n * h), np.float32),
             "v": _arr(rng, (b, t, n * h), np.float32)}
    mask = np.ones((b, t), np.int32)
    mask[1, 4:] = 0
    feeds["m"] = mask
    node = helper.make_node("MultiHeadAttention", ["q", "k", "v", "bias", "m"], ["y"], domain=MS, num_heads=n)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype),
                                                                      v.shape) for k, v in feeds.items()],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(_arr(rng, (3 * n * h,), np.float32), "bias")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)])
    _check(model, feeds, 1e-5, 1e-5)


# ------------------------------------------------------------- EmbedLayerNormalization

@SETTINGS
@given(st.integers(1, 3), st.integers(1, 9), st.sampled_from([1, 8, 33]), st.booleans(), st.booleans(),
       st.integers(0, 2 ** 31))
def test_embed_layer_norm_against_onnxruntime(b, s, h, with_segment, with_mask, seed):
    rng = np.random.default_rng(seed)
    vocab, positions = 50, 16
    feeds = {"ids": rng.integers(0, vocab, (b, s)).astype(np.int32)}
    if with_segment:
        feeds["seg"] = rng.integers(0, 2, (b, s)).astype(np.int32)
    if with_mask:
        m = np.ones((b, s), np.int32)
        m[:, rng.integers(1, s + 1):] = 0
        feeds["mask"] = m
    inits = {"word": _arr(rng, (vocab, h), np.float32), "pos": _arr(rng, (positions, h), np.float32),
             "segemb": _arr(rng, (2, h), np.float32), "gamma": _arr(rng, (h,), np.float32),
             "beta": _arr(rng, (h,), np.float32)}
    names = ["ids", "seg" if with_segment else "", "word", "pos", "segemb" if with_segment else "", "gamma", "beta"]
    names += ["mask"] if with_mask else []
    node = helper.make_node("EmbedLayerNormalization", names, ["y", "mask_index"], domain=MS, epsilon=1e-5)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info(k, TensorProto.INT32, v.shape)
                                        for k, v in feeds.items()],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                           helper.make_tensor_value_info("mask_index", TensorProto.INT32, None)],
                          [numpy_helper.from_array(v, k) for k, v in inits.items() if k in names])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)])
    _check(model, feeds, 1e-5, 1e-5)


def test_embed_layer_norm_bad_ids():
    rng = np.random.default_rng(0)
    names = ["ids", "", "word", "pos", "", "gamma", "beta"]
    node = helper.make_node("EmbedLayerNormalization", names, ["y", "mi"], domain=MS, epsilon=1e-5)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("ids", TensorProto.INT32, (1, 3))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(v, k) for k, v in
                           {"word": _arr(rng, (5, 4), np.float32), "pos": _arr(rng, (8, 4), np.float32),
                            "gamma": np.ones(4, np.float32), "beta": np.zeros(4, np.float32)}.items()])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)])
    for backends in BACKENDS:
        with pytest.raises(ModelError, match="out of range"):
            Session(model, backends=backends).run(None, {"ids": np.array([[1, 5, 2]], np.int32)})


# -------------------------------------------------------------------------------- GELUs

@SETTINGS
@given(st.sampled_from(["Gelu", "BiasGelu", "FastGelu", "FastGeluBias"]), st.integers(1, 3), st.integers(1, 40),
       st.integers(0, 2 ** 31))
def test_gelus_against_onnxruntime(op, rows, n, seed):
    rng = np.random.default_rng(seed)
    x = _arr(rng, (rows, n), np.float32, 3)
    x.flat[:2] = [40, -40][:x.size]
    inits = {"bias": _arr(rng, (n,), np.float32)} if op in ("BiasGelu", "FastGeluBias") else {}
    model = _model(op.replace("Bias", "") if op == "FastGeluBias" else op, {"x": x}, inits, {}, ("y",),
                   (TensorProto.FLOAT,))
    _check(model, {"x": x}, 2e-6, 1e-6)


# ----------------------------------------------------------- the optimized encoder, whole

@pytest.fixture(scope="module")
def fused_encoder():
    pytest.importorskip("onnxruntime.transformers.optimizer")
    from qkernels.bench.encoder import bert_encoder
    from qkernels.bench.ort_fused import ort_fused
    return ort_fused(bert_encoder(layers=2, hidden=64, heads=4), 4, 64, opt_level=1)


def test_fused_encoder_has_the_fused_ops(fused_encoder):
    ops = {n.op_type for n in fused_encoder.graph.node if n.domain == MS}
    assert {"EmbedLayerNormalization", "Attention", "SkipLayerNormalization", "BiasGelu"} <= ops


@pytest.mark.parametrize("backends", BACKENDS)
@pytest.mark.parametrize("batch,tokens,padded", [(1, 16, 0), (3, 21, 6), (2, 1, 0)])
def test_fused_encoder_against_onnxruntime(fused_encoder, backends, batch, tokens, padded):
    from qkernels.bench.encoder import encoder_inputs
    x = encoder_inputs(batch, tokens, 1000, seed=batch + tokens, padded=padded)
    want = ort.InferenceSession(fused_encoder.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, x)[0]
    s = Session(fused_encoder, backends=backends)
    for _ in range(2):
        got = s.run(None, x)[0]
        assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    assert s.last_run == "plan"
    if backends == ["cpu"]:
        native = s.explain().split("native")[1].split("reference")[0]
        assert "Attention" in native and "SkipLayerNormalization" in native
        (pool,) = [p for p in s._plans.values() if p is not None]
        steps = [st for st in pool._idle[0].steps if st[0].op_type in ("Attention", "SkipLayerNormalization")]
        assert len(steps) == 6 and all(st[2] for st in steps)      # each bound: native calls on the arena
        keys = {n.key for n in s.graph.nodes}                      # BiasGelu as Add + Gelu, fused into the GEMM
        assert "qkernels::MatMulGelu" in keys and f"{MS}::BiasGelu" not in keys
