"""Dynamic quantization (qkernels.dynamic_matmul, kernels/dynquant.c, the QK_OUT_DQ_F32
output stage) and the graph side: ONNX Runtime's quantize_dynamic chain fused into
com.microsoft DynamicQuantizeMatMul, and the contrib operators DynamicQuantizeMatMul /
MatMulIntegerToFloat.

The reference here is written from ONNX's DynamicQuantizeLinear / MatMulInteger and the
float32 steps of quantize_dynamic's graph (Cast, Mul by a_scale * w_scale, Add bias), in
numpy int64 / float32: the quantized activations, their scale and zero point, and the
int32 sums must equal it exactly, on every ISA path (the ``isa`` fixture)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import qkernels as qk
from qkernels import _dynamic, _native

try:        # the graph tests need onnx and the graph runner; the kernel tests run without them (the
    import onnx     # emulated CPU lanes build the kernels in place, without the qkernels.graph package)
    from onnx import TensorProto, helper, numpy_helper
    from qkernels.graph import Session
    from qkernels.graph.backend import Backend
except ImportError:
    onnx = None
    Backend = object
needs_onnx = pytest.mark.skipif(onnx is None, reason="onnx or the graph runner is not installed: no graph tests")

F32 = np.float32


# ------------------------------------------------------------------------- references

def dql_ref(x):
    """ONNX DynamicQuantizeLinear: (q uint8, scale float32, zero point) of x (scale 1 when
    the range is all zero, as ONNX Runtime)."""
    x = np.asarray(x, F32)
    hi = F32(max(0.0, float(x.max()))) if x.size else F32(0)
    lo = F32(min(0.0, float(x.min()))) if x.size else F32(0)
    scale = F32(1) if hi == lo else F32((hi - lo) / F32(255))
    zp = int(np.rint(np.clip(F32(0) - lo / scale, 0, 255)))
    q = np.clip(np.rint(x / scale).astype(np.float64) + zp, 0, 255).astype(np.uint8)
    return q, scale, zp


def y_ref(ref, x, w, sw, zw, bias, per_row=False):
    """float32(acc) * (sa * sw[n]) (+ bias), acc the exact int32 sums; also (q, sa, za, acc)."""
    k, n = w.shape
    x2 = np.asarray(x, F32).reshape(-1, k)
    rows = [x2[i:i + 1] for i in range(x2.shape[0])] if per_row else [x2]
    ys, qs, sas, zas, accs = [], [], [], [], []
    for r in rows:
        q, sa, za = dql_ref(r)
        acc = ref.gemm_int32(q, w, za, np.broadcast_to(np.asarray(zw, np.int64), (n,)))
        with np.errstate(over="ignore"):     # float32(acc) * scale may overflow to inf: so do the kernels
            y = acc.astype(F32) * (F32(sa) * np.broadcast_to(np.asarray(sw, F32), (n,)))
        if bias is not None:
            y = y + bias
        ys.append(y), qs.append(q), sas.append(sa), zas.append(za), accs.append(acc)
    shape = np.shape(x)[:-1] + (n,)
    return np.concatenate(ys).reshape(shape), np.concatenate(qs), np.array(sas, F32), np.array(zas), \
        np.concatenate(accs)


def weights(rng, k, n, dtype, per_col):
    w = rng.integers(*_range(dtype), size=(k, n), endpoint=True).astype(dtype)
    if per_col:
        sw = (rng.random(n) * 0.02 + 1e-4).astype(F32)
        zw = (rng.integers(0, 256, n) if dtype == np.uint8 else np.zeros(n)).astype(dtype)
        return w, sw, zw, qk.QTensor(w, sw, zw, axis=1)
    sw, zw = F32(rng.random() * 0.02 + 1e-4), int(rng.integers(0, 256)) if dtype == np.uint8 else 0
    return w, sw, zw, qk.QTensor(w, float(sw), zw)


def _range(dtype):
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


def activations(rng, shape, mode):
    if mode == "normal":
        return (rng.standard_normal(shape) * 3).astype(F32)
    if mode == "positive":                 # zero point 0
        return (rng.random(shape) * 5).astype(F32)
    if mode == "negative":                 # zero point 255
        return (-rng.random(shape) * 5).astype(F32)
    if mode == "zeros":                    # scale 1, zero point 0
        return np.zeros(shape, F32)
    if mode == "equal":                    # every value alike
        return np.full(shape, F32(rng.standard_normal() * 10), F32)
    if mode == "huge":                     # a range near float32's largest
        return (rng.standard_normal(shape) * 1e37).astype(F32)
    if mode == "tiny":                     # a range near float32's smallest normal scale
        return (rng.standard_normal(shape) * 1e-30).astype(F32)
    if mode == "ties":                     # values on the rounding ties of x / scale
        x = rng.integers(-255, 256, size=shape).astype(F32) * F32(0.5)
        return x
    raise ValueError(mode)


MODES = ["normal", "positive", "negative", "zeros", "equal", "huge", "tiny", "ties"]
# sizes 1, odd, prime, past the tiles (MR 12 / 6 / 4 / 2 / 1, NR 32 / 16 / 8 / 4, K groups 4 / 8)
DIM = st.sampled_from([1, 2, 3, 5, 7, 11, 12, 13, 17, 31, 32, 33, 47, 64, 65, 97])


def _run_call(ref, x, w, sw, zw, wq, bias, per_row):
    """One DynamicCall on x against the reference: the integer part (quantized activations,
    their parameters) and y, bit for bit; returns (y wanted, the call)."""
    want, q, sa, za, _ = y_ref(ref, x, w, sw, zw, bias, per_row)
    y = np.empty((x.shape[0], w.shape[1]), F32)
    call = _dynamic.DynamicCall(qk.pack_weights(wq), x, y, bias, per_row)
    call.run()
    np.testing.assert_array_equal(call.q, q)
    np.testing.assert_array_equal(call.sa, sa)
    np.testing.assert_array_equal(call.za, za)
    np.testing.assert_array_equal(y, want)
    return want, call


# ------------------------------------------------------------------------------ kernel

@given(m=DIM, k=DIM, n=DIM, mode=st.sampled_from(MODES), wdt=st.sampled_from([np.int8, np.uint8]),
       per_col=st.booleans(), with_bias=st.booleans(), per_row=st.booleans(), seed=st.integers(0, 2**31))
def test_dynamic_matmul_exact(isa, ref, m, k, n, mode, wdt, per_col, with_bias, per_row, seed):
    rng = np.random.default_rng(seed)
    x = activations(rng, (m, k), mode)
    w, sw, zw, wq = weights(rng, k, n, wdt, per_col)
    bias = rng.standard_normal(n).astype(F32) if with_bias else None
    want, call = _run_call(ref, x, w, sw, zw, wq, bias, per_row)
    if call.acc is not None:     # per row: the sums with A's zero point 0 (za * cb[n] enters later)
        zw_n = np.broadcast_to(np.asarray(zw, np.int64), (n,))
        np.testing.assert_array_equal(call.acc, ref.gemm_int32(call.q, w, 0, zw_n))
    np.testing.assert_array_equal(qk.dynamic_matmul(x, wq, bias, per_row=per_row), want)


@given(m=DIM, k=DIM, n=DIM, a_signed=st.booleans(), with_bias=st.booleans(), threads=st.sampled_from([1, 2]),
       seed=st.integers(0, 2**31))
def test_per_row_output_stage_exact(isa, ref, m, k, n, a_signed, with_bias, threads, seed):
    """Per row the GEMM's output stage dequantizes each tile (kernels/gemm_block.c, the
    qk_out_params dq_rows): activations given already quantized, int8 ones too (their
    +128 shift in the column terms the stage adds first), a scale and zero point per row
    from extreme ranges: float32(acc) * (sa[m] * sw[n]) (+ bias), bit for bit, at any
    thread count."""
    qk.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    dt = np.int8 if a_signed else np.uint8
    q = rng.integers(*_range(dt), size=(m, k), endpoint=True).astype(dt)
    sa = (rng.random(m) * 0.1 + 1e-3).astype(F32)
    za = rng.integers(*_range(dt), size=m, endpoint=True).astype(np.int32)
    w, sw, zw, wq = weights(rng, k, n, np.int8, True)
    bias = rng.standard_normal(n).astype(F32) if with_bias else None
    y = np.empty((m, n), F32)
    call = _dynamic.DynamicCall(qk.pack_weights(wq), None, y, bias, True, q=q, a_signed=a_signed)
    call.sa[:], call.za[:] = sa, za
    call.run()
    acc = np.concatenate([ref.gemm_int32(q[i:i + 1], w, za[i], 0) for i in range(m)])
    want = acc.astype(F32) * (sa[:, None] * sw[None, :])
    if bias is not None:
        want = want + bias
    np.testing.assert_array_equal(y, want)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), top=st.sampled_from([255.0, 31.875, 1.0, 3.3e-35, 7.7e30, 100.0]),
       rows=st.sampled_from([1, 2, 3]), k=st.sampled_from([63, 64, 65, 128, 200]), per_row=st.booleans(),
       nudge=st.sampled_from([0, 1, 2, 3]))
def test_quantize_near_half_integers(isa, ref, seed, top, rows, k, per_row, nudge):
    """Activations on and within a few float32 steps of x / scale = j + 1/2 (the AVX-512
    path's quantizing row multiplies by the reciprocal and redoes a block with the division
    when a product lies that near; rows past its blocks of 64), at scales from tiny to huge:
    the bytes of DynamicQuantizeLinear, per tensor and per row."""
    rng = np.random.default_rng(seed)
    scale = F32(F32(top) / F32(255))
    j = rng.integers(0, 255, (rows, k)).astype(F32)     # x / scale in [0.5, 254.5]: the range stays [0, top]
    x = (j + F32(0.5)) * scale
    for step in range(nudge):           # some values a step up or down
        pick = rng.random((rows, k)) < 0.3
        x = np.where(pick, np.nextafter(x, np.where(rng.random((rows, k)) < 0.5, np.inf, -np.inf).astype(F32)), x)
    x = x.astype(F32)
    x[:, 0], x[:, 1] = F32(top), F32(0)      # each row's range [0, top]: the scale above
    n = 5
    w, sw, zw, wq = weights(rng, k, n, np.int8, True)
    _run_call(ref, x, w, sw, zw, wq, None, per_row)


def test_int32_sums_per_tensor(isa, ref):
    """Per tensor the int32 sums are never stored: with weight scale 1 and sa 1 (x already
    integers 0..255, zero point 0: max 255 -> scale 1) y is float32(acc) itself, exact."""
    rng = np.random.default_rng(3)
    for m, k, n in [(1, 1, 1), (13, 97, 33), (25, 64, 65)]:
        x = rng.integers(0, 256, (m, k)).astype(F32)
        x[0, 0] = 255
        w = rng.integers(-128, 128, (k, n)).astype(np.int8)
        y = qk.dynamic_matmul(x, qk.QTensor(w, 1.0, 0))
        np.testing.assert_array_equal(y, ref.gemm_int32(x.astype(np.int64), w).astype(F32))


@settings(max_examples=25)
@given(data=st.data())
def test_views_equal_contiguous(isa, data):
    """Slices, steps, negative and zero strides, batch slices: the same values as the call
    on a contiguous copy."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    k, n = data.draw(DIM), data.draw(DIM)
    base = (rng.standard_normal((4, 9, 3 * k + 2)) * 2).astype(F32)
    views = [base[1, :, 1:k + 1], base[:, ::2, 2:2 + k], base[::-1, ::-3, k:2 * k][:, :, ::-1],
             base[2:3, 4, :k], np.broadcast_to(base[0, 0, :k], (5, k)), base[:, 3, 2 * k:3 * k][::-1],
             base[0, :, ::3][:, :k] if base.shape[2] >= 3 * k else base[0, :, :k]]
    w, sw, zw, wq = weights(rng, k, n, np.int8, data.draw(st.booleans()))
    pw = qk.pack_weights(wq)
    bias = rng.standard_normal(n).astype(F32)
    per_row = data.draw(st.booleans())
    for v in views:
        got = qk.dynamic_matmul(v, pw, bias, per_row=per_row)
        np.testing.assert_array_equal(got, qk.dynamic_matmul(np.ascontiguousarray(v), pw, bias, per_row=per_row))
        assert got.shape == v.shape[:-1] + (n,)


def test_batch_and_vector_shapes(ref):
    rng = np.random.default_rng(1)
    w, sw, zw, wq = weights(rng, 19, 7, np.int8, True)
    x = rng.standard_normal((2, 3, 5, 19)).astype(F32)
    want = y_ref(ref, x, w, sw, zw, None)[0]
    np.testing.assert_array_equal(qk.dynamic_matmul(x, wq), want)
    np.testing.assert_array_equal(qk.dynamic_matmul(x[0, 0, 0], wq), y_ref(ref, x[0, 0, 0], w, sw, zw, None)[0])
    assert qk.dynamic_matmul(np.zeros((0, 19), F32), wq).shape == (0, 7)
    out = np.empty((2, 3, 5, 7), F32)
    assert qk.dynamic_matmul(x, wq, out=out) is out
    np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_raises(isa, bad):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 40)).astype(F32)
    x[3, 17] = bad
    wq = qk.QTensor(rng.integers(-128, 128, (40, 6)).astype(np.int8), 0.01, 0)
    for per_row in (False, True):
        with pytest.raises(qk.DynamicQuantError, match="NaN or infinity"):
            qk.dynamic_matmul(x, wq, per_row=per_row)


def test_range_without_scale_raises(isa):
    wq = qk.QTensor(np.ones((4, 3), np.int8), 0.01, 0)
    huge = np.array([[3e38, -3e38, 0, 1]], F32)          # (max - min) overflows float32
    with pytest.raises(qk.DynamicQuantError, match="range"):
        qk.dynamic_matmul(huge, wq)
    tiny = np.array([[1e-44, 0, 0, 0]], F32)             # scale below the smallest normal
    with pytest.raises(ValueError):
        qk.dynamic_matmul(tiny, wq)


def test_bad_arguments():
    wq = qk.QTensor(np.ones((4, 3), np.int8), 0.01, 0)
    with pytest.raises(TypeError):
        qk.dynamic_matmul(np.ones((2, 4), np.float64), wq)
    with pytest.raises(ValueError, match="not aligned"):
        qk.dynamic_matmul(np.ones((2, 5), F32), wq)
    with pytest.raises(ValueError):
        qk.dynamic_matmul(np.ones((2, 4), F32), wq, np.ones(4, F32))
    with pytest.raises(TypeError):
        qk.dynamic_matmul(np.ones((2, 4), F32), wq, np.ones(3, np.int32))
    with pytest.raises(TypeError):
        qk.dynamic_matmul(np.ones((2, 4), F32), np.ones((4, 3), np.int8))
    with pytest.raises(ValueError):
        qk.dynamic_matmul(np.float32(1), wq)
    x = np.ones((2, 4), F32)
    with pytest.raises(ValueError):
        qk.dynamic_matmul(x, wq, out=np.empty((2, 4), F32))


@given(x=st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=0, max_size=70))
def test_minmax_and_params(isa, x):
    """The vector min / max loop (every ISA path) and the scale / zero point of its range."""
    v = np.array(x, F32)
    isa_index = qk._dispatch.isa_index()
    mn, mx, bad = _native.dynq_minmax(isa_index, v)
    assert not bad
    assert mn == min(0.0, float(v.min()) if v.size else 0.0) and mx == max(0.0, float(v.max()) if v.size else 0.0)
    s, z, st_ = _native.dynq_params(mn, mx)
    with np.errstate(over="ignore"):
        s_want = F32(1) if mn == mx else F32(F32(mx) - F32(mn)) / F32(255)
    if np.isfinite(s_want) and s_want >= np.finfo(F32).tiny:
        assert st_ == 0
        _, s_ref, z_ref = dql_ref(v if v.size else np.zeros(1, F32))
        assert (s, z) == (s_ref, z_ref)
    else:                               # no float32 scale: refused, never a wrong one
        assert st_ == 2
    for bad_value in (np.nan, np.inf):
        w = np.append(v, F32(bad_value))
        assert _native.dynq_minmax(isa_index, np.roll(w, len(x) // 2).astype(F32))[2]


# ---------------------------------------------------------------------- graph: models

class _NoCpu(Backend):
    """Stands in for the cpu fallback: a session on the reference operators only, the
    model as written (no fusion): the oracle."""
    name = "cpu"

    def supports(self, node, graph):
        return False


def _reference(model):
    return Session(model, backends=["reference", _NoCpu()])


def _mlp(rng, k=37, hidden=70, n=19):
    h = helper
    w1 = numpy_helper.from_array((rng.standard_normal((k, hidden)) * 0.2).astype(F32), "w1")
    b1 = numpy_helper.from_array(rng.standard_normal(hidden).astype(F32), "b1")
    w2 = numpy_helper.from_array((rng.standard_normal((hidden, n)) * 0.2).astype(F32), "w2")
    b2 = numpy_helper.from_array(rng.standard_normal(n).astype(F32), "b2")
    nodes = [h.make_node("MatMul", ["x", "w1"], ["m1"]), h.make_node("Add", ["m1", "b1"], ["a1"]),
             h.make_node("Relu", ["a1"], ["r1"]), h.make_node("MatMul", ["r1", "w2"], ["m2"]),
             h.make_node("Add", ["b2", "m2"], ["y"])]
    g = h.make_graph(nodes, "mlp", [h.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "t", k])],
                     [h.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "t", n])], [w1, b1, w2, b2])
    model = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _quantize_dynamic(model, tmp_path, **kw):
    q = pytest.importorskip("onnxruntime.quantization")
    src, dst = tmp_path / "f.onnx", tmp_path / "q.onnx"
    onnx.save(model, src)
    q.quantize_dynamic(str(src), str(dst), **kw)
    return onnx.load(dst)


def _ops(graph_nodes):
    return [n.op_type for n in graph_nodes]


QD_CASES = [(pc, rr, wt) for pc in (False, True) for rr in (False, True) for wt in ("QInt8", "QUInt8")]


@needs_onnx
@pytest.mark.parametrize("per_channel,reduce_range,weight_type", QD_CASES)
def test_quantize_dynamic_mlp_fused_exact(tmp_path, per_channel, reduce_range, weight_type):
    """quantize_dynamic's chains become one DynamicQuantizeMatMul each; the results equal
    the unfused graph's (our reference operators, and ORT without optimizations) bit for bit."""
    ort = pytest.importorskip("onnxruntime")
    from onnxruntime.quantization import QuantType
    rng = np.random.default_rng(5)
    model = _quantize_dynamic(_mlp(rng), tmp_path, per_channel=per_channel, reduce_range=reduce_range,
                              weight_type=getattr(QuantType, weight_type))
    assert _ops(model.graph.node).count("MatMulInteger") == 2
    s = Session(model, num_threads=1)
    assert sorted(_ops(s.graph.nodes)) == ["DynamicQuantizeMatMul", "DynamicQuantizeMatMul", "Relu"]
    assert all(s.placement(n) == "native" for n in s.graph.nodes if n.op_type == "DynamicQuantizeMatMul")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    o = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    r = _reference(model)
    for shape in [(1, 1, 37), (2, 5, 37), (3, 17, 37)]:
        x = (rng.standard_normal(shape) * 2).astype(F32)
        y = s.run(None, {"x": x})[0]
        np.testing.assert_array_equal(y, r.run(None, {"x": x})[0])
        np.testing.assert_array_equal(y, o.run(None, {"x": x})[0])


@needs_onnx
def test_nan_input_falls_back_to_reference(tmp_path):
    rng = np.random.default_rng(2)
    model = _quantize_dynamic(_mlp(rng), tmp_path)
    x = rng.standard_normal((1, 4, 37)).astype(F32)
    x[0, 1, 3] = np.nan
    s, r = Session(model, num_threads=1), _reference(model)
    np.testing.assert_array_equal(s.run(None, {"x": x})[0], r.run(None, {"x": x})[0])
    s2 = Session(model, num_threads=1, plan=False)
    np.testing.assert_array_equal(s2.run(None, {"x": x})[0], r.run(None, {"x": x})[0])
    # the plan's native steps call the reference for the node, in its loop and when profiled,
    # and a finite input afterwards runs natively again
    np.testing.assert_array_equal(s.run(None, {"x": x}, profile=True)[0], r.run(None, {"x": x})[0])
    (pool,) = [p for p in s._plans.values() if p is not None]
    dq = [st for st in pool._idle[0].steps if st[0].op_type == "DynamicQuantizeMatMul"]
    assert dq and all(isinstance(st[1][0], _native.Bound) and st[1][0].fallback is not None for st in dq)
    x[0, 1, 3] = 0.5
    np.testing.assert_array_equal(s.run(None, {"x": x})[0], r.run(None, {"x": x})[0])


@needs_onnx
@pytest.mark.parametrize("per_channel,weight_type", [(True, "QInt8"), (False, "QUInt8")])
def test_quantize_dynamic_encoder(tmp_path, per_channel, weight_type):
    """The BERT-class encoder (bench.encoder): every MatMulInteger fused (query, key and
    value share one DynamicQuantizeLinear), the result close to ORT's on the same model."""
    ort = pytest.importorskip("onnxruntime")
    from onnxruntime.quantization import QuantType
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    try:
        from qkernels.bench.encoder import bert_encoder, encoder_inputs
    finally:
        sys.path.pop(0)
    model = _quantize_dynamic(bert_encoder(layers=2, hidden=64, heads=4), tmp_path, per_channel=per_channel,
                              weight_type=getattr(QuantType, weight_type))
    n_int = _ops(model.graph.node).count("MatMulInteger")
    assert n_int == 12
    s = Session(model, num_threads=1)
    ops = _ops(s.graph.nodes)
    assert ops.count("DynamicQuantizeMatMul") == n_int and "MatMulInteger" not in ops \
        and "DynamicQuantizeLinear" not in ops
    feeds = encoder_inputs(2, 11, 1000, padded=3)
    o = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(s.run(None, feeds)[0], o.run(None, feeds)[0], atol=2e-4, rtol=0)


@needs_onnx
def test_shared_intermediate_not_fused(tmp_path):
    """A chain whose MatMulInteger result is also a graph output is left as it is."""
    rng = np.random.default_rng(4)
    model = _quantize_dynamic(_mlp(rng), tmp_path)
    mi = next(n for n in model.graph.node if n.op_type == "MatMulInteger")
    model.graph.output.append(helper.make_tensor_value_info(mi.output[0], TensorProto.INT32, None))
    s = Session(model, num_threads=1)
    assert _ops(s.graph.nodes).count("DynamicQuantizeMatMul") == 1
    x = rng.standard_normal((2, 3, 37)).astype(F32)
    for a, b in zip(s.run(None, {"x": x}), _reference(model).run(None, {"x": x})):
        np.testing.assert_array_equal(a, b)


@needs_onnx
@pytest.mark.parametrize("per_row", [False, True])
def test_query_key_value_quantize_once(per_row):
    """Three DynamicQuantizeMatMul reading one input (query, key, value) and one reading
    another: the plan's first call on that input quantizes it, the other two read its q,
    scale and zero point; every result equals the reference operators', at several
    shapes; NaN in the input sends all three to the reference, a finite one back."""
    rng = np.random.default_rng(11)
    k, n = 24, 13
    h = helper
    inits, nodes = [], [h.make_node("Relu", ["x"], ["r"])]
    dom, attrs = ("qkernels", {"per_row": 1}) if per_row else ("com.microsoft", {})
    for i, src in enumerate(["x", "x", "r", "x"]):
        w = rng.integers(-127, 128, (k, n)).astype(np.int8)
        inits += [numpy_helper.from_array(w, f"w{i}"),
                  numpy_helper.from_array((rng.random(n) * 0.01 + 1e-3).astype(F32), f"s{i}"),
                  numpy_helper.from_array(rng.standard_normal(n).astype(F32), f"b{i}")]
        nodes.append(h.make_node("DynamicQuantizeMatMul", [src, f"w{i}", f"s{i}", "", f"b{i}"], [f"y{i}"],
                                 domain=dom, **attrs))
    g = h.make_graph(nodes, "qkv", [h.make_tensor_value_info("x", TensorProto.FLOAT, ["t", k])],
                     [h.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, None) for i in range(4)], inits)
    model = h.make_model(g, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("com.microsoft", 1),
                                           h.make_opsetid("qkernels", 1)])
    model.ir_version = 8
    s, r = Session(model, num_threads=1), _reference(model)
    for t in [1, 5, 13, 40, 5]:
        x = (rng.standard_normal((t, k)) * 3).astype(F32)
        for a, b in zip(s.run(None, {"x": x}), r.run(None, {"x": x})):
            np.testing.assert_array_equal(a, b)
    assert ("x", per_row) in s.graph.__dict__["_dynamic_leads"]
    x[2, 3] = np.nan
    for a, b in zip(s.run(None, {"x": x}), r.run(None, {"x": x})):
        np.testing.assert_array_equal(a, b)
    x[2, 3] = 1.5
    for a, b in zip(s.run(None, {"x": x}), r.run(None, {"x": x})):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- contrib operators

def _contrib_model(op, inputs, x_info, inits, n):
    node = helper.make_node(op, inputs, ["y"], domain="com.microsoft")
    graph = helper.make_graph([node], "g", x_info, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              inits)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return model


@needs_onnx
@pytest.mark.parametrize("wdt", [np.int8, np.uint8])
@pytest.mark.parametrize("per_col", [False, True])
@pytest.mark.parametrize("with_zp,with_bias", [(False, False), (True, True), (True, False)])
def test_dynamic_quantize_matmul_op(wdt, per_col, with_zp, with_bias):
    ort = pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(7)
    k, n = 45, 33
    w, sw, zw, _ = weights(rng, k, n, wdt, per_col)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.asarray(sw, F32), "sw")]
    names = ["x", "w", "sw"]
    if with_zp:
        inits.append(numpy_helper.from_array(np.asarray(zw, wdt), "zw"))
        names.append("zw")
    if with_bias:
        if not with_zp:
            names.append("")
        inits.append(numpy_helper.from_array(rng.standard_normal(n).astype(F32), "b"))
        names.append("b")
    model = _contrib_model("DynamicQuantizeMatMul", names,
                           [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)], inits, n)
    s, r = Session(model, num_threads=1), _reference(model)
    assert s.placement(s.graph.nodes[0]) == "native"
    o = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for shape in [(1, k), (13, k), (2, 7, k)]:
        x = (rng.standard_normal(shape) * 3).astype(F32)
        y = s.run(None, {"x": x})[0]
        np.testing.assert_array_equal(y, r.run(None, {"x": x})[0])
        np.testing.assert_array_equal(y, o.run(None, {"x": x})[0])


def _rows_model(k, n, w, sw, zw, per_row, bias=None, bias_add=False):
    """qkernels::DynamicQuantizeMatMul (per_row) of x (..., k); with ``bias_add`` the bias as
    an Add after it (what qkernels' quantizer writes; the rewrite takes it in)."""
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.asarray(sw, F32).reshape(-1), "sw"),
             numpy_helper.from_array(np.asarray(zw, w.dtype).reshape(-1), "zw")]
    names, out = ["x", "w", "sw", "zw"], "y"
    nodes = []
    if bias is not None:
        inits.append(numpy_helper.from_array(bias, "b"))
        if bias_add:
            out = "t"
            nodes.append(helper.make_node("Add", ["t", "b"], ["y"]))
        else:
            names.append("b")
    nodes.insert(0, helper.make_node("DynamicQuantizeMatMul", names, [out], domain="qkernels", per_row=per_row))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("qkernels", 1)])
    model.ir_version = 8
    return model


@needs_onnx
@settings(max_examples=30, deadline=None)
@given(m=DIM, k=DIM, n=DIM, wdt=st.sampled_from([np.int8, np.uint8]), per_col=st.booleans(),
       with_bias=st.booleans(), batch=st.sampled_from([None, 2]), special=st.sampled_from([None, "zeros", "tiny", "huge"]),
       seed=st.integers(0, 2**31))
def test_qkernels_per_row_op(ref, m, k, n, wdt, per_col, with_bias, batch, special, seed):
    """qkernels::DynamicQuantizeMatMul per_row=1 on the native kernel equals its reference
    operator and DynamicQuantizeLinear applied row by row, bit for bit; a row without a
    float32 scale (tiny) sends the node to the reference, with the same result."""
    rng = np.random.default_rng(seed)
    w, sw, zw, _ = weights(rng, k, n, wdt, per_col)
    bias = rng.standard_normal(n).astype(F32) if with_bias else None
    model = _rows_model(k, n, w, np.broadcast_to(sw, (n,)) if per_col else sw, np.broadcast_to(zw, (n,)) if per_col
                        else zw, 1, bias)
    shape = (m, k) if batch is None else (batch, m, k)
    x = (rng.standard_normal(shape) * 3).astype(F32)
    if special:                              # one row of its own kind among ordinary rows
        x.reshape(-1, k)[-1] = activations(rng, (k,), special)
    s = Session(model, num_threads=1)
    assert s.placement(s.graph.nodes[0]) == "native"
    y = s.run(None, {"x": x})[0]
    np.testing.assert_array_equal(y, _reference(model).run(None, {"x": x})[0])
    want = y_ref(ref, x, w, sw, zw, bias, per_row=True)[0]
    np.testing.assert_array_equal(y, want)
    view = np.repeat(x, 2, axis=-1)[..., ::2]           # strided columns: the same values
    np.testing.assert_array_equal(s.run(None, {"x": view})[0], y)


@needs_onnx
def test_qkernels_per_row_op_bias_add_fused_and_per_tensor():
    """The Add of a constant bias after it is taken into the node; per_row=0 is com.microsoft's
    DynamicQuantizeMatMul, bit for bit."""
    rng = np.random.default_rng(11)
    k, n = 40, 24
    w, sw, zw, _ = weights(rng, k, n, np.int8, True)
    bias = rng.standard_normal(n).astype(F32)
    x = (rng.standard_normal((3, 5, k)) * 2).astype(F32)
    for per_row in (1, 0):
        model = _rows_model(k, n, w, sw, zw, per_row, bias, bias_add=True)
        s = Session(model, num_threads=1)
        assert _ops(s.graph.nodes) == ["DynamicQuantizeMatMul"] and s.graph.nodes[0].inputs[4] == "b"
        y = s.run(None, {"x": x})[0]
        np.testing.assert_array_equal(y, _reference(model).run(None, {"x": x})[0])
    ms = _contrib_model("DynamicQuantizeMatMul", ["x", "w", "sw", "zw", "b"],
                        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(sw, "sw"),
                         numpy_helper.from_array(zw.astype(np.int8), "zw"), numpy_helper.from_array(bias, "b")], n)
    np.testing.assert_array_equal(y, Session(ms, num_threads=1).run(None, {"x": x})[0])


@needs_onnx
def test_qkernels_per_row_op_bad_attribute():
    rng = np.random.default_rng(1)
    w, sw, zw, _ = weights(rng, 4, 3, np.int8, False)
    model = _rows_model(4, 3, w, sw, zw, 2)
    with pytest.raises(Exception, match="per_row"):
        Session(model).run(None, {"x": np.ones((2, 4), F32)})


@needs_onnx
@pytest.mark.parametrize("adt", [np.uint8, np.int8])
@pytest.mark.parametrize("per_col", [False, True])
def test_matmul_integer_to_float_op(adt, per_col):
    ort = pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(8)
    k, n = 29, 40
    w, sw, zw, _ = weights(rng, k, n, np.int8, per_col)
    zw = np.asarray(zw, np.int8)
    bias = rng.standard_normal(n).astype(F32)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.asarray(sw, F32), "sw"),
             numpy_helper.from_array(zw, "zw"), numpy_helper.from_array(bias, "b")]
    x_info = [helper.make_tensor_value_info("a", TensorProto.UINT8 if adt == np.uint8 else TensorProto.INT8, None),
              helper.make_tensor_value_info("sa", TensorProto.FLOAT, []),
              helper.make_tensor_value_info("za", TensorProto.UINT8 if adt == np.uint8 else TensorProto.INT8, [])]
    model = _contrib_model("MatMulIntegerToFloat", ["a", "w", "sa", "sw", "za", "zw", "b"], x_info, inits, n)
    s, r = Session(model, num_threads=1), _reference(model)
    assert s.placement(s.graph.nodes[0]) == "native"
    o = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    lo, hi = _range(adt)
    for shape in [(1, k), (12, k), (3, 5, k)]:
        feeds = {"a": rng.integers(lo, hi, shape, endpoint=True).astype(adt), "sa": np.array(0.037, F32),
                 "za": np.array(rng.integers(lo, hi), adt)}
        y = s.run(None, feeds)[0]
        np.testing.assert_array_equal(y, r.run(None, feeds)[0])
        np.testing.assert_array_equal(y, o.run(None, feeds)[0])


@settings(max_examples=20)
@given(m=DIM, k=DIM, n=DIM, per_row=st.booleans(), seed=st.integers(0, 2**31))
def test_seven_bit_weights(isa, ref, m, k, n, per_row, seed):
    """quantize_dynamic's reduce_range weights (7 bits: the AVX2 path's vpmaddubsw kernel
    takes them) through the same call, exact."""
    rng = np.random.default_rng(seed)
    x = activations(rng, (m, k), "normal")
    w = rng.integers(-64, 64, size=(k, n)).astype(np.int8)
    sw = (rng.random(n) * 0.02 + 1e-4).astype(F32)
    wq = qk.QTensor(w, sw, np.zeros(n, np.int8), axis=1)
    assert qk.pack_weights(wq).pairs_128
    bias = rng.standard_normal(n).astype(F32)
    np.testing.assert_array_equal(qk.dynamic_matmul(x, wq, bias, per_row=per_row),
                                  y_ref(ref, x, w, sw, 0, bias, per_row)[0])
