"""TFLite import (qkernels.graph.tflite): models on our Session against LiteRT's built-in
kernels (``ai-edge-litert``'s Interpreter without its default XNNPACK delegate), bit for
bit for 8-bit models, on the cpu backend (native kernels) and the reference backend.

The per-operator tests build small .tflite flatbuffers here (the ``tflite`` package's
generated builders on ``flatbuffers``), with random shapes, scales and zero points, and
run each on LiteRT as the oracle. Float models are compared within float rounding (the
sums run in another order than LiteRT's).
"""
from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

import qkernels
from qkernels.graph import ModelError, Session

flatbuffers = pytest.importorskip("flatbuffers")
tflite = pytest.importorskip("tflite")

ROOT = Path(__file__).resolve().parents[1]
REPO_MODELS = sorted((ROOT / "bench" / "tflite").glob("*.tflite"))
SHARED = ROOT.parent / "shared" / "tflite"

_TYPES = {np.dtype(np.float32): 0, np.dtype(np.float16): 1, np.dtype(np.int32): 2, np.dtype(np.uint8): 3,
          np.dtype(np.int64): 4, np.dtype(np.int16): 7, np.dtype(np.int8): 9}


def litert():
    """LiteRT's Interpreter and resolver types (skip without ai-edge-litert)."""
    mod = pytest.importorskip("ai_edge_litert.interpreter")
    return mod.Interpreter, mod.OpResolverType


# ---------------------------------------------------------------- building models

def _m(name):
    return importlib.import_module(f"tflite.{name}")


def _offsets(b, start, offsets):
    start(b, len(offsets))
    for o in reversed(offsets):
        b.PrependUOffsetTRelative(o)
    return b.EndVector()


def build(tensors, ops, inputs, outputs, version: int = 1) -> bytes:
    """A .tflite flatbuffer. ``tensors``: dicts of shape, dtype and optionally data (a
    constant), scale / zero_point / axis (quantization); ``ops``: (BUILTIN_NAME, inputs,
    outputs, (OptionsTable, {Field: value}) or None)."""
    b = flatbuffers.Builder(1024)
    blobs = [None] + [np.ascontiguousarray(np.asarray(t["data"], t["dtype"])).tobytes()
                      for t in tensors if t.get("data") is not None]
    buffer_of, k = [], 1
    for t in tensors:
        buffer_of.append(k if t.get("data") is not None else 0)
        k += t.get("data") is not None
    buf_offs = []
    for raw in blobs:
        vec = None
        if raw is not None:
            b.StartVector(1, len(raw), 16)      # 16-byte aligned, as the converter writes them
            b.head -= len(raw)
            b.Bytes[b.head:b.head + len(raw)] = raw
            vec = b.EndVector()
        _m("Buffer").Start(b)
        if vec is not None:
            _m("Buffer").AddData(b, vec)
        buf_offs.append(_m("Buffer").End(b))
    tensor_offs = []
    for k, t in enumerate(tensors):
        name = b.CreateString(t.get("name", f"t{k}"))
        shape = b.CreateNumpyVector(np.asarray(t["shape"], np.int32))
        q = None
        if t.get("scale") is not None:
            Q = _m("QuantizationParameters")
            sc = b.CreateNumpyVector(np.asarray(t["scale"], np.float32).reshape(-1))
            zp = b.CreateNumpyVector(np.asarray(t.get("zero_point", 0), np.int64).reshape(-1))
            Q.Start(b)
            Q.AddScale(b, sc)
            Q.AddZeroPoint(b, zp)
            Q.AddQuantizedDimension(b, t.get("axis", 0))
            q = Q.End(b)
        T = _m("Tensor")
        T.Start(b)
        T.AddShape(b, shape)
        T.AddType(b, _TYPES[np.dtype(t["dtype"])])
        T.AddBuffer(b, buffer_of[k])
        T.AddName(b, name)
        if q is not None:
            T.AddQuantization(b, q)
        tensor_offs.append(T.End(b))
    codes = sorted({o[0] for o in ops})
    code_offs = []
    for c in codes:
        v = getattr(tflite.BuiltinOperator, c)
        OC = _m("OperatorCode")
        OC.Start(b)
        OC.AddDeprecatedBuiltinCode(b, min(v, 127))
        OC.AddBuiltinCode(b, v)
        OC.AddVersion(b, version)
        code_offs.append(OC.End(b))
    op_offs = []
    for name, ins, outs, options in ops:
        opt = None
        if options is not None:
            M = _m(options[0])
            M.Start(b)
            for field, value in options[1].items():
                getattr(M, "Add" + field)(b, value)
            opt = M.End(b)
        iv = b.CreateNumpyVector(np.asarray(ins, np.int32))
        ov = b.CreateNumpyVector(np.asarray(outs, np.int32))
        O = _m("Operator")
        O.Start(b)
        O.AddOpcodeIndex(b, codes.index(name))
        O.AddInputs(b, iv)
        O.AddOutputs(b, ov)
        if opt is not None:
            O.AddBuiltinOptionsType(b, getattr(tflite.BuiltinOptions, options[0]))
            O.AddBuiltinOptions(b, opt)
        op_offs.append(O.End(b))
    S = _m("SubGraph")
    tv = _offsets(b, S.StartTensorsVector, tensor_offs)
    opv = _offsets(b, S.StartOperatorsVector, op_offs)
    iv = b.CreateNumpyVector(np.asarray(inputs, np.int32))
    ov = b.CreateNumpyVector(np.asarray(outputs, np.int32))
    S.Start(b)
    S.AddTensors(b, tv)
    S.AddInputs(b, iv)
    S.AddOutputs(b, ov)
    S.AddOperators(b, opv)
    sg = S.End(b)
    M = _m("Model")
    sgv = _offsets(b, M.StartSubgraphsVector, [sg])
    cv = _offsets(b, M.StartOperatorCodesVector, code_offs)
    bv = _offsets(b, M.StartBuffersVector, buf_offs)
    M.Start(b)
    M.AddVersion(b, 3)
    M.AddOperatorCodes(b, cv)
    M.AddSubgraphs(b, sgv)
    M.AddBuffers(b, bv)
    b.Finish(M.End(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def qt(shape, scale, zero_point, dtype=np.int8, **kw):
    return dict(shape=list(shape), dtype=dtype, scale=np.atleast_1d(scale), zero_point=np.atleast_1d(zero_point), **kw)


def ft(shape, dtype=np.float32, **kw):
    return dict(shape=list(shape), dtype=dtype, **kw)


# ---------------------------------------------------------------- running both

def random_feed(rng, shape, dtype):
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max + 1, shape).astype(dtype)
    return rng.normal(0, 2, shape).astype(dtype)


def compare(model: bytes | str, backends=(None, ["reference"]), runs: int = 2, seed: int = 0, exact: bool = True,
            inputs=None):
    """Runs ``model`` on LiteRT's built-in kernels and on a Session per backend list over
    ``runs`` random inputs (or once over ``inputs``, arrays in the model's input order);
    asserts equal outputs (or close ones for float)."""
    Interpreter, Resolver = litert()
    kw = dict(model_content=model) if isinstance(model, bytes) else dict(model_path=str(model))
    it = Interpreter(**kw, experimental_op_resolver_type=Resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES, num_threads=1)
    it.allocate_tensors()
    sessions = [Session(model if isinstance(model, bytes) else str(model), backends=b) for b in backends]
    rng = np.random.default_rng(seed)
    details = it.get_input_details()
    for _ in range(1 if inputs is not None else runs):
        feeds = {}
        for k, d in enumerate(details):
            x = inputs[k] if inputs is not None else random_feed(rng, tuple(d["shape"]), d["dtype"])
            it.set_tensor(d["index"], x)
            feeds[d["name"]] = x
        it.invoke()
        want = [it.get_tensor(o["index"]) for o in it.get_output_details()]
        for s, b in zip(sessions, backends):
            got = s.run(None, {i.name: feeds[i.name] for i in s.get_inputs()})
            for g, w in zip(got, want):
                assert g.shape == tuple(w.shape) and g.dtype == w.dtype, (b, g.shape, w.shape)
                if exact:
                    bad = np.flatnonzero(g != w)
                    assert bad.size == 0, f"backends {b}: {bad.size} of {g.size} differ, first at {bad[:5]}: " \
                                          f"{g.reshape(-1)[bad[:5]]} vs LiteRT {w.reshape(-1)[bad[:5]]}"
                else:
                    np.testing.assert_allclose(g, w, rtol=2e-4, atol=2e-4 * float(np.abs(w).max() + 1))
    return sessions


# ---------------------------------------------------------------- whole models

@pytest.mark.parametrize("path", REPO_MODELS, ids=[p.stem for p in REPO_MODELS])
def test_repo_model_matches_litert_builtin_bit_for_bit(path):
    runs = 1 if path.stat().st_size > 2_000_000 else 2
    compare(path, runs=runs)


def test_shared_models_match_litert_builtin_bit_for_bit():
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent (the repository's copies are tested above)")
    models = sorted(SHARED.glob("*int8*.tflite"))
    assert models
    for path in models:
        compare(path, backends=(None,), runs=1)


def test_mobilenet_runs_natively_in_nhwc():
    path = ROOT / "bench" / "tflite" / "mnv2_int8.tflite"
    s = Session(str(path))
    kinds = {n.op_type for n in s.graph.nodes}
    assert "Transpose" not in kinds and {"Conv2D", "DepthwiseConv2D", "Add", "Mean", "Softmax"} <= kinds
    for n in s.graph.nodes:
        if n.op_type in ("Conv2D", "DepthwiseConv2D", "FullyConnected", "Add"):
            assert s.placement(n) == "native", n
    x = np.zeros(s.get_inputs()[0].shape, np.int8)
    first = s.run(None, {s.get_inputs()[0].name: x})[0]
    assert s.last_run == "trace" and np.array_equal(s.run(None, {s.get_inputs()[0].name: x})[0], first)
    assert s.last_run == "plan"


# ---------------------------------------------------------------- operators, 8-bit

COMMON = settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
scales = st.floats(1e-3, 0.2)
zps = st.integers(-128, 127)
acts = st.sampled_from([0, 1, 3, 2])   # NONE, RELU, RELU6, RELU_N1_TO_1
dtypes = st.sampled_from([np.int8, np.uint8])


def shifted(dtype, *zero_points):
    """int8 zero points moved into uint8's range for a uint8 model."""
    return [z + 128 if dtype == np.uint8 else z for z in zero_points]


@COMMON
@given(h=st.integers(1, 9), w=st.integers(1, 9), c=st.integers(1, 40), o=st.integers(1, 70), k=st.integers(1, 3),
       stride=st.integers(1, 2), dil=st.integers(1, 2), same=st.booleans(), act=acts, per_channel=st.booleans(),
       sx=scales, zx=zps, sy=scales, zy=zps, ties=st.booleans(), dtype=dtypes, seed=st.integers(0, 2**16))
def test_conv2d_int8(h, w, c, o, k, stride, dil, same, act, per_channel, sx, zx, sy, zy, ties, dtype, seed):
    """int8: per-channel symmetric weights; uint8 (TFLite's older scheme): per-tensor
    asymmetric weights. Up to 70 output channels: full 32-column tiles (the AVX-512
    kernels' own output stage) and their edges."""
    if not same and (h < (k - 1) * dil + 1 or w < (k - 1) * dil + 1):
        return
    rng = np.random.default_rng(seed)
    wq = rng.integers(-127, 128, (o, k, k, c)).astype(np.int8)
    sw = rng.uniform(1e-3, 2e-2, o if per_channel else 1)
    if ties:    # small weights, power-of-two scales (multiplier 2^-5): 1 output in 16 an exact half
        wq = rng.integers(-3, 4, wq.shape).astype(np.int8)
        sx, sy, sw = 2.0 ** -3, 2.0 ** -1, np.full_like(sw, 2.0 ** -3)
    bias = rng.integers(-5000, 5000, o).astype(np.int32)
    oh = -(-h // stride) if same else (h - (k - 1) * dil - 1) // stride + 1
    ow = -(-w // stride) if same else (w - (k - 1) * dil - 1) // stride + 1
    zw = np.zeros_like(sw, int)
    if dtype == np.uint8:
        sw, zw = sw[:1], np.array([int(rng.integers(100, 156))])
        wq = (wq.astype(np.int64) + zw[0]).clip(0, 255).astype(np.uint8)
        zx, zy = shifted(dtype, zx, zy)
    model = build([qt((1, h, w, c), sx, zx, dtype), qt(wq.shape, sw, zw, dtype, data=wq),
                   qt((o,), np.float32(sx) * sw.astype(np.float32), np.zeros_like(sw, int), dtype=np.int32, data=bias),
                   qt((1, oh, ow, o), sy, zy, dtype)],
                  [("CONV_2D", [0, 1, 2], [3], ("Conv2DOptions", dict(Padding=0 if same else 1, StrideW=stride,
                    StrideH=stride, DilationWFactor=dil, DilationHFactor=dil, FusedActivationFunction=act)))], [0], [3])
    compare(model, seed=seed)


@COMMON
@given(h=st.integers(1, 12), w=st.integers(1, 12), c=st.integers(1, 40), mult=st.sampled_from([1, 1, 2]),
       k=st.sampled_from([1, 3, 5]), stride=st.integers(1, 2), same=st.booleans(), act=acts, sx=scales, zx=zps,
       sy=scales, zy=zps, ties=st.booleans(), seed=st.integers(0, 2**16))
def test_depthwise_conv2d_int8(h, w, c, mult, k, stride, same, act, sx, zx, sy, zy, ties, seed):
    if not same and (h < k or w < k):
        return
    rng = np.random.default_rng(seed)
    o = c * mult
    wq = rng.integers(-127, 128, (1, k, k, o)).astype(np.int8)
    sw = rng.uniform(1e-3, 2e-2, o)
    if ties:
        wq = rng.integers(-3, 4, wq.shape).astype(np.int8)
        sx, sy, sw = 2.0 ** -3, 2.0 ** -1, np.full_like(sw, 2.0 ** -3)
    bias = rng.integers(-3000, 3000, o).astype(np.int32)
    oh = -(-h // stride) if same else (h - k) // stride + 1
    ow = -(-w // stride) if same else (w - k) // stride + 1
    model = build([qt((1, h, w, c), sx, zx), qt(wq.shape, sw, np.zeros(o, int), axis=3, data=wq),
                   qt((o,), np.float32(sx) * sw.astype(np.float32), np.zeros(o, int), dtype=np.int32, data=bias),
                   qt((1, oh, ow, o), sy, zy)],
                  [("DEPTHWISE_CONV_2D", [0, 1, 2], [3], ("DepthwiseConv2DOptions", dict(
                      Padding=0 if same else 1, StrideW=stride, StrideH=stride, DepthMultiplier=mult,
                      DilationWFactor=1, DilationHFactor=1, FusedActivationFunction=act)))], [0], [3])
    compare(model, seed=seed)


@COMMON
@given(rows=st.integers(1, 14), k=st.integers(1, 70), n=st.integers(1, 70), act=acts, sx=scales, zx=zps, sy=scales,
       zy=zps, bias=st.booleans(), ties=st.booleans(), seed=st.integers(0, 2**16))
def test_fully_connected_int8(rows, k, n, act, sx, zx, sy, zy, bias, ties, seed):
    rng = np.random.default_rng(seed)
    wq = rng.integers(-127, 128, (n, k)).astype(np.int8)
    sw = float(rng.uniform(1e-3, 2e-2))
    if ties:
        wq = rng.integers(-3, 4, wq.shape).astype(np.int8)
        sx, sy, sw = 2.0 ** -3, 2.0 ** -1, 2.0 ** -3
    tensors = [qt((rows, k), sx, zx), qt((n, k), sw, 0, data=wq), qt((rows, n), sy, zy)]
    ins = [0, 1, -1]
    if bias:
        tensors.append(qt((n,), np.float32(sx) * np.float32(sw), 0, dtype=np.int32,
                          data=rng.integers(-5000, 5000, n).astype(np.int32)))
        ins = [0, 1, 3]
    model = build(tensors, [("FULLY_CONNECTED", ins, [2], ("FullyConnectedOptions", dict(FusedActivationFunction=act)))],
                  [0], [2])
    compare(model, seed=seed)


@COMMON
@given(op=st.sampled_from(["ADD", "SUB", "MUL"]), shape=st.lists(st.integers(1, 7), min_size=1, max_size=4),
       broadcast=st.booleans(), act=acts, s1=scales, z1=zps, s2=scales, z2=zps, sy=scales, zy=zps,
       ties=st.booleans(), seed=st.integers(0, 2**16))
def test_add_sub_mul_int8(op, shape, broadcast, act, s1, z1, s2, z2, sy, zy, ties, seed):
    if ties:   # scales that make the rounding shifts land on exact halves often
        s1 = s2 = 0.05
        sy = 0.1 if op != "MUL" else 0.05 * 0.05 * 2
    shape2 = [1] * (len(shape) - 1) + [shape[-1]] if broadcast else shape
    options = {"ADD": "AddOptions", "SUB": "SubOptions", "MUL": "MulOptions"}[op]
    model = build([qt(shape, s1, z1), qt(shape2, s2, z2), qt(shape, sy, zy)],
                  [(op, [0, 1], [2], (options, dict(FusedActivationFunction=act)))], [0, 1], [2])
    compare(model, seed=seed)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(op=st.sampled_from(["ADD", "SUB", "MUL"]), dtype=dtypes, n=st.integers(1, 40),
       pattern=st.sampled_from(["same", "scalar", "scalar_first", "rows", "cols", "outer"]), act=acts,
       s1=st.floats(0.05, 2.0), s2=st.floats(0.05, 2.0), sy=st.floats(1e-4, 0.02), z1=zps, z2=zps, zy=zps,
       seed=st.integers(0, 2**16))
def test_add_mul_results_beyond_int16_as_litert(op, dtype, n, pattern, act, s1, s2, sy, z1, z2, zy, seed):
    """Output scales far below the inputs' (scaled results beyond 16 bits): LiteRT's vector
    loop keeps 16-bit lanes before the output offset (ADD wraps, MUL saturates, then the
    offset wraps), its scalar tail and SUB do not; its runs and blocks as
    graph/backends/reference/tflite.py ``simd_body`` says, on every broadcast form."""
    z1, z2, zy = shifted(dtype, z1, z2, zy)
    sa, sb = {"same": ([2, n], [2, n]), "scalar": ([2, n], [1]), "scalar_first": ([1], [2, n]),
              "rows": ([3, n], [1, n]), "cols": ([3, n], [3, 1]), "outer": ([2, 3, n], [2, 1, n])}[pattern]
    out = list(np.broadcast_shapes(tuple(sa), tuple(sb)))
    options = {"ADD": "AddOptions", "SUB": "SubOptions", "MUL": "MulOptions"}[op]
    model = build([qt(sa, s1, z1, dtype), qt(sb, s2, z2, dtype), qt(out, sy, zy, dtype)],
                  [(op, [0, 1], [2], (options, dict(FusedActivationFunction=act)))], [0, 1], [2])
    compare(model, seed=seed)


def test_uint8_add_vector_loop_truncates_its_scaled_inputs():
    """LiteRT's uint8 ADD scales each input in its vector loop (blocks of 8) with a truncating
    shift, in its scalar tail with a rounding one (reference ``scale_input``). A CI draw found
    value 10 of the first model one lower in LiteRT than a rounding model gave (its 16-bit
    lanes wrap results beyond int16 into range); in the second, two input pairs (found by a
    search of the models) sit at an output rounding tie within range: their results in the
    vector loop differ from the same pairs' in the tail."""
    z1, z2, zy = shifted(np.uint8, 118, 28, 0)
    model = build([qt([2, 10], 0.05, z1, np.uint8), qt([2, 10], 1.8474257103196585, z2, np.uint8),
                   qt([2, 10], 1e-4, zy, np.uint8)], [("ADD", [0, 1], [2], ("AddOptions", dict()))], [0, 1], [2])
    compare(model, seed=4)
    model = build([qt([18], 1.326491355895996, 82, np.uint8), qt([18], 1.9900368452072144, 162, np.uint8),
                   qt([18], 6.497775029856712e-05, 224, np.uint8)], [("ADD", [0, 1], [2], ("AddOptions", dict()))],
                  [0, 1], [2])
    a, b = np.array([115, 154] * 9, np.uint8), np.array([140, 114] * 9, np.uint8)
    sessions = compare(model, inputs=[a, b])
    y = sessions[0].run(None, {i.name: v for i, v in zip(sessions[0].get_inputs(), (a, b))})[0]
    assert (y[:2] != y[16:]).all(), y      # 16 values in the vector loop, 2 in the tail


@pytest.mark.parametrize("op, dtype, per_channel, case", [
    ("FULLY_CONNECTED", np.int8, False, (0.059889443, 0.011913804, 0.029457415, -7, -125, -110, -100)),
    ("FULLY_CONNECTED", np.int8, True, (0.1831086, 0.015279254, 0.055472504, 33, 112, -125, 15)),
    ("FULLY_CONNECTED", np.uint8, False, (0.09082596, 0.016227424, 0.1669374, 88, 195, 229, 32)),
    ("CONV_2D", np.int8, False, (0.059889443, 0.011913804, 0.029457415, -7, -125, -110, -100)),
    ("CONV_2D", np.uint8, False, (0.09082596, 0.016227424, 0.1669374, 88, 195, 229, 32)),
    ("DEPTHWISE_CONV_2D", np.int8, False, (0.10095775872468948, 0.0017146881436929107, 0.02138582058250904, 24, 6,
                                           -126, -91)),
    ("DEPTHWISE_CONV_2D", np.uint8, False, (0.10286549478769302, 0.01565929874777794, 0.17855720221996307, 27, 83,
                                            128, 235))])
def test_multiplier_from_the_scales_product_as_litert(op, dtype, per_channel, case):
    """LiteRT forms a fully connected layer's multiplier (per-tensor weights) and a uint8
    (depthwise) convolution's from the float32 product s_in * s_w, the rest from double(s_in) *
    double(s_w) (reference ``float_product``): each case, found by a search of the scales,
    is an input x and weight w whose output differs between the two (a CI-like draw found
    the first: 45.498 output units, LiteRT 46). Native kernels and the reference."""
    sx, sw, sy, zx, zy, xv, wv = case
    zw = 128 if dtype == np.uint8 else 0
    swa = np.full(2 if per_channel else 1, sw, np.float32)
    w = np.full((2, 1), wv, dtype)                  # raw weight values
    if op == "FULLY_CONNECTED":
        model = build([qt((1, 1), sx, zx, dtype), qt((2, 1), swa, np.full(swa.size, zw), dtype, data=w),
                       qt((1, 2), sy, zy, dtype)], [(op, [0, 1, -1], [2], ("FullyConnectedOptions", dict()))], [0], [2])
    else:       # 1x1, one input channel (depthwise: two) into two output channels
        dw = op == "DEPTHWISE_CONV_2D"
        options = ("DepthwiseConv2DOptions", dict(Padding=1, StrideW=1, StrideH=1, DepthMultiplier=1,
                                                  DilationWFactor=1, DilationHFactor=1)) if dw else \
            ("Conv2DOptions", dict(Padding=1, StrideW=1, StrideH=1, DilationWFactor=1, DilationHFactor=1))
        model = build([qt((1, 1, 1, 1 + dw), sx, zx, dtype),
                       qt((1, 1, 1, 2) if dw else (2, 1, 1, 1), swa, np.full(swa.size, zw), dtype,
                          data=w.reshape((1, 1, 1, 2) if dw else (2, 1, 1, 1))),
                       qt((2,), np.float32(sx) * swa, np.zeros(swa.size, int), dtype=np.int32,
                          data=np.zeros(2, np.int32)), qt((1, 1, 1, 2), sy, zy, dtype)],
                      [(op, [0, 1, 2], [3], options)], [0], [3])
    x_shape = (1, 1) if op == "FULLY_CONNECTED" else (1, 1, 1, 1 + (op == "DEPTHWISE_CONV_2D"))
    compare(model, inputs=[np.full(x_shape, xv, dtype)])


def test_left_shifts_of_the_output_multiplier_wrap_as_litert():
    """LiteRT shifts left by ``x * (1 << left_shift)`` (and vector shifts): int32 wraps. MUL
    of scales 2 and 2 into 1e-4 (a multiplier of 40,000: shift 16) wraps products from
    2^15 up (a CI draw found a saturating model 127 where LiteRT gave -128); a fully connected
    layer with such a multiplier stays on the reference operator (the kernels' output
    stage saturates), which wraps as LiteRT."""
    model = build([qt([2, 20], 2.0, 127), qt([2, 20], 2.0, 127), qt([2, 20], 1e-4, 0)],
                  [("MUL", [0, 1], [2], ("MulOptions", dict()))], [0, 1], [2])
    a = np.full([2, 20], -128, np.int8)          # products of -255 and -255 ... -216: from 2^15 up
    compare(model, inputs=[a, np.arange(-128, -88).astype(np.int8).reshape(2, 20)])
    rng = np.random.default_rng(0)
    wq = rng.integers(-127, 128, (5, 64)).astype(np.int8)
    model = build([qt((3, 64), 2.0, 3), qt((5, 64), 0.5, 0, data=wq), qt((3, 5), 1e-3, -2)],
                  [("FULLY_CONNECTED", [0, 1, -1], [2], ("FullyConnectedOptions", dict()))], [0], [2])
    sessions = compare(model, runs=3)
    assert sessions[0].placement(sessions[0].graph.nodes[0]) != "native"


@pytest.mark.parametrize("isa", list(qkernels._dispatch.tested_isas()))
@pytest.mark.parametrize("op", ["ADD", "SUB", "MUL"])
@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_add_sub_mul_native_loop_on_every_isa_path(isa, op, dtype):
    """kernels/tfl_binary.c's loops (portable, AVX2) on 8-bit operands whose length leaves
    a tail, with scales that hit exact ties and ones that do not, int8 and uint8."""
    options = {"ADD": "AddOptions", "SUB": "SubOptions", "MUL": "MulOptions"}[op]
    shape = (3, 7, 43)
    for s1, z1, s2, z2, sy, zy in ((0.05, 131, 0.05, 121, 0.1, 129), (0.0437, 228, 0.0291, 37, 0.0713, 250)):
        if dtype == np.int8:
            z1, z2, zy = z1 - 128, z2 - 128, zy - 128
        if op == "MUL":
            sy = s1 * s2 * 40
        model = build([qt(shape, s1, z1, dtype), qt(shape, s2, z2, dtype), qt(shape, sy, zy, dtype)],
                      [(op, [0, 1], [2], (options, dict(FusedActivationFunction=1)))], [0, 1], [2])
        with qkernels.use_isa(isa):
            sessions = compare(model, backends=(None,), runs=2)
        assert sessions[0].placement(sessions[0].graph.nodes[0]) == "native"


@given(op=st.sampled_from(["Add", "Sub"]), n=st.integers(1, 300), s1=st.floats(1e-3, 1.0), s2=st.floats(1e-3, 1.0),
       sy=st.floats(1e-3, 2.0), z1=st.integers(0, 255), z2=st.integers(0, 255), zy=st.integers(0, 255),
       act=st.sampled_from(["NONE", "RELU", "RELU6"]), signed=st.booleans(), extreme=st.booleans(),
       seed=st.integers(0, 2**16))
@settings(max_examples=60, deadline=None)
def test_add_sub_native_loop_matches_the_reference_on_every_isa_path(op, n, s1, s2, sy, z1, z2, zy, act, signed,
                                                                     extreme, seed):
    """kernels/tfl_binary.c's ADD/SUB loops (portable, AVX2 gathers, AVX-512 VBMI byte
    planes: 64 values a step and the tail) on any scales and zero points, lengths across
    the 64-value steps, operands at the type's ends, against the int64 reference operator."""
    from qkernels import _native
    from qkernels.graph.backends.cpu_tflite import binary_tables
    from qkernels.graph.backends.reference.tflite import binary
    from qkernels.graph.ir import Node
    from qkernels.graph.tflite import DOMAIN, QParams
    dtype = np.dtype(np.int8 if signed else np.uint8)
    shift = 128 if signed else 0

    def q(s, z):
        return QParams(np.array([s], np.float32), np.array([z - shift], np.int64))
    node = Node("n", op, DOMAIN, ["a", "b"], ["y"], {"in_q": (q(s1, z1), q(s2, z2)), "out_q": (q(sy, zy),),
                                                    "act": act})
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    a, b = (rng.choice([info.min, info.max], n) if extreme else rng.integers(info.min, info.max + 1, n)
            for _ in range(2))
    a, b = a.astype(dtype), b.astype(dtype)
    want = binary(node, a, b)
    kind, ta, tb, *rest = binary_tables(node, dtype)
    for isa in qkernels._dispatch.tested_isas():
        y = np.empty(n, dtype)
        with qkernels.use_isa(isa):
            _native.tfl_binary(qkernels._dispatch.isa_index(), kind, a, b, ta, tb, *rest, y)
        np.testing.assert_array_equal(y, want, err_msg=f"{isa} {op} n={n}")


@COMMON
@given(kind=st.sampled_from(["AVERAGE_POOL_2D", "MAX_POOL_2D"]), h=st.integers(1, 11), w=st.integers(1, 11),
       c=st.integers(1, 20), k=st.integers(1, 4), stride=st.integers(1, 3), same=st.booleans(), act=acts, s=scales,
       z=zps, dtype=dtypes, seed=st.integers(0, 2**16))
def test_pool_int8(kind, h, w, c, k, stride, same, act, s, z, dtype, seed):
    if not same and (h < k or w < k):
        return
    (z,) = shifted(dtype, z)
    oh = -(-h // stride) if same else (h - k) // stride + 1
    ow = -(-w // stride) if same else (w - k) // stride + 1
    model = build([qt((1, h, w, c), s, z, dtype), qt((1, oh, ow, c), s, z, dtype)],
                  [(kind, [0], [1], ("Pool2DOptions", dict(Padding=0 if same else 1, StrideW=stride, StrideH=stride,
                                                           FilterWidth=k, FilterHeight=k, FusedActivationFunction=act)))],
                  [0], [1])
    compare(model, seed=seed)


@COMMON
@given(shape=st.lists(st.integers(1, 9), min_size=4, max_size=4), axes=st.sampled_from([(1, 2), (2, 1), (3,), (1,)]),
       keep=st.booleans(), sx=scales, zx=zps, sy=scales, zy=zps, same=st.booleans(), ties=st.booleans(), dtype=dtypes,
       seed=st.integers(0, 2**16))
def test_mean_int8(shape, axes, keep, sx, zx, sy, zy, same, ties, dtype, seed):
    zx, zy = shifted(dtype, zx, zy)
    if ties:
        sx, sy = 2.0 ** -3, 2.0 ** -2
    if same:
        sy, zy = sx, zx
    out = [1 if i in axes else d for i, d in enumerate(shape)] if keep else \
        [d for i, d in enumerate(shape) if i not in axes]
    model = build([qt(shape, sx, zx, dtype), ft((len(axes),), np.int32, data=np.array(axes, np.int32)),
                   qt(out, sy, zy, dtype)],
                  [("MEAN", [0, 1], [2], ("ReducerOptions", dict(KeepDims=keep)))], [0], [2])
    compare(model, seed=seed)


@COMMON
@given(kind=st.sampled_from(["SOFTMAX", "LOGISTIC", "TANH", "HARD_SWISH", "RELU", "RELU6", "RELU_N1_TO_1"]),
       rows=st.integers(1, 5),
       n=st.integers(1, 300), sx=st.floats(1e-3, 0.5), zx=zps, so=scales, zo=zps, beta=st.sampled_from([1.0, 0.5]),
       dtype=dtypes, seed=st.integers(0, 2**16))
def test_activations_int8(kind, rows, n, sx, zx, so, zo, beta, dtype, seed):
    so = max(so, sx / 100)   # HARD_SWISH: LiteRT needs s_in / 128 < s_out
    zx, zo = shifted(dtype, zx, zo)
    out = {"SOFTMAX": (1 / 256, -128), "LOGISTIC": (1 / 256, -128), "TANH": (1 / 128, 0)}.get(kind, (so, zo))
    if kind in ("SOFTMAX", "LOGISTIC", "TANH") and dtype == np.uint8:
        out = (out[0], shifted(dtype, out[1])[0])
    options = ("SoftmaxOptions", dict(Beta=beta)) if kind == "SOFTMAX" else None
    model = build([qt((rows, n), sx, zx, dtype), qt((rows, n), *out, dtype)], [(kind, [0], [1], options)], [0], [1])
    compare(model, seed=seed)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
@pytest.mark.parametrize("shape,axes,keep", [((2, 150, 150, 3), (1, 2), 0), ((1, 7, 7, 1280), (1, 2), 0),
                                             ((3, 700, 37), (1,), 1), ((2, 5, 3, 9), (2, 3), 0), ((40, 3000), (1,), 0)])
def test_mean_rows_kernel_large_counts(shape, axes, keep, dtype):
    """kernels/tfl_rows.c's MEAN (the plan's step for consecutive axes) on counts up to 45,000
    values a sum, against LiteRT and the reference operator, bit for bit."""
    zx, zy = shifted(dtype, 3, -100)
    out = [1 if i in axes else d for i, d in enumerate(shape)] if keep else [d for i, d in enumerate(shape)
                                                                             if i not in axes]
    model = build([qt(shape, 0.0235, zx, dtype), ft((len(axes),), np.int32, data=np.array(axes, np.int32)),
                   qt(out, 0.0235 * 0.9, zy, dtype)], [("MEAN", [0, 1], [2], ("ReducerOptions", dict(KeepDims=keep)))],
                  [0], [2])
    sessions = compare(model, runs=2)     # the second run is on the plan
    assert sessions[0].placement(sessions[0].graph.nodes[0]) == "native" and sessions[0].last_run == "plan"


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
@pytest.mark.parametrize("rows,n,sx", [(1, 1000, 0.1), (3, 4099, 0.02), (2, 1, 0.5), (5, 257, 1e-3)])
def test_softmax_rows_kernel_long_rows(rows, n, sx, dtype):
    """kernels/tfl_rows.c's SOFTMAX (the plan's step) on long rows, against LiteRT and the
    reference operator, bit for bit."""
    zx, zy = shifted(dtype, 7, -128)
    model = build([qt((rows, n), sx, zx, dtype), qt((rows, n), 1 / 256, zy, dtype)],
                  [("SOFTMAX", [0], [1], ("SoftmaxOptions", dict(Beta=1.0)))], [0], [1])
    sessions = compare(model, runs=2)
    assert sessions[0].last_run == "plan"


@COMMON
@given(shape=st.lists(st.integers(1, 9), min_size=1, max_size=4), s=scales, z=zps, s2=scales, z2=zps,
       ties=st.booleans(), dtype=dtypes, seed=st.integers(0, 2**16))
def test_quantize_dequantize(shape, s, z, s2, z2, ties, dtype, seed):
    if ties:
        s, s2 = 2.0 ** -5, 2.0 ** -3
    z, z2 = shifted(dtype, z, z2)
    compare(build([ft(shape), qt(shape, s, z, dtype)], [("QUANTIZE", [0], [1], None)], [0], [1]), seed=seed)
    compare(build([qt(shape, s, z, dtype), qt(shape, s2, z2, dtype)], [("QUANTIZE", [0], [1], None)], [0], [1]),
            seed=seed)
    compare(build([qt(shape, s, z, dtype), ft(shape)], [("DEQUANTIZE", [0], [1], None)], [0], [1]), seed=seed)


@COMMON
@given(h=st.integers(1, 9), w=st.integers(1, 9), c=st.integers(1, 9), oh=st.integers(1, 17), ow=st.integers(1, 17),
       bilinear=st.booleans(), mode=st.sampled_from([(0, 0), (1, 0), (0, 1)]), s=scales, z=zps, dtype=dtypes,
       seed=st.integers(0, 2**16))
def test_resize_int8(h, w, c, oh, ow, bilinear, mode, s, z, dtype, seed):
    dtype = np.int8 if bilinear else dtype     # uint8 bilinear: refused (LiteRT's float path)
    (z,) = shifted(dtype, z)
    kind = "RESIZE_BILINEAR" if bilinear else "RESIZE_NEAREST_NEIGHBOR"
    options = ("ResizeBilinearOptions" if bilinear else "ResizeNearestNeighborOptions",
               dict(AlignCorners=mode[0], HalfPixelCenters=mode[1]))
    model = build([qt((1, h, w, c), s, z, dtype), ft((2,), np.int32, data=np.array([oh, ow], np.int32)),
                   qt((1, oh, ow, c), s, z, dtype)], [(kind, [0, 1], [2], options)], [0], [2])
    compare(model, seed=seed)


def test_pad_concat_reshape_int8():
    s, z = 0.05, 3
    pads = np.array([[0, 0], [1, 2], [2, 1], [0, 0]], np.int32)
    compare(build([qt((1, 6, 7, 5), s, z), ft((4, 2), np.int32, data=pads), qt((1, 9, 10, 5), s, z)],
                  [("PAD", [0, 1], [2], None)], [0], [2]))
    compare(build([qt((1, 6, 7, 5), s, z), qt((1, 6, 7, 3), s, z), qt((1, 6, 7, 8), s, z)],
                  [("CONCATENATION", [0, 1], [2], ("ConcatenationOptions", dict(Axis=-1)))], [0, 1], [2]))
    compare(build([qt((1, 6, 7, 5), s, z), ft((2,), np.int32, data=np.array([42, 5], np.int32)), qt((42, 5), s, z)],
                  [("RESHAPE", [0, 1], [2], None)], [0], [2]))


def _small_mobilenet(rng, float_model: bool = False):
    """conv 3x3 s2 + relu6 -> depthwise 3x3 + relu6 -> 1x1 conv -> residual add -> mean ->
    fully connected -> softmax: a MobileNetV2 block in miniature."""
    def q(shape, s, z, **kw):
        return ft(shape, **kw) if float_model else qt(shape, s, z, **kw)

    def weights(shape, axis, per):
        if float_model:
            return ft(shape, data=rng.normal(0, 0.3, shape).astype(np.float32))
        sw = rng.uniform(2e-3, 1e-2, per)
        return qt(shape, sw, np.zeros(per, int), axis=axis, data=rng.integers(-127, 128, shape).astype(np.int8))

    def bias(n, sx, w):
        if float_model:
            return ft((n,), data=rng.normal(0, 0.1, n).astype(np.float32))
        sw = np.asarray(w["scale"], np.float32)
        return qt((n,), np.float32(sx) * sw, np.zeros(sw.size, int), dtype=np.int32,
                  data=rng.integers(-2000, 2000, n).astype(np.int32))
    t = [q((1, 16, 16, 3), 0.02, -5)]
    w1 = weights((8, 3, 3, 3), 0, 8)
    t += [w1, bias(8, 0.02, w1), q((1, 8, 8, 8), 0.03, -128)]
    w2 = weights((1, 3, 3, 8), 3, 8)
    t += [w2, bias(8, 0.03, w2), q((1, 8, 8, 8), 0.025, -128)]
    w3 = weights((8, 1, 1, 8), 0, 8)
    t += [w3, bias(8, 0.025, w3), q((1, 8, 8, 8), 0.04, 3)]
    t += [q((1, 8, 8, 8), 0.05, -2)]                                         # 10: add
    t += [ft((2,), np.int32, data=np.array([1, 2], np.int32)), q((1, 8), 0.02, 1)]   # 11, 12: mean
    w4 = weights((10, 8), 0, 1)
    t += [w4, bias(10, 0.02, w4), q((1, 10), 0.1, 4)]                        # 13, 14, 15: fc
    t += [q((1, 10), 1 / 256, -128)]                                         # 16: softmax
    conv = dict(Padding=0, StrideW=1, StrideH=1, DilationWFactor=1, DilationHFactor=1)
    ops = [("CONV_2D", [0, 1, 2], [3], ("Conv2DOptions", dict(conv, StrideW=2, StrideH=2, FusedActivationFunction=3))),
           ("DEPTHWISE_CONV_2D", [3, 4, 5], [6], ("DepthwiseConv2DOptions", dict(conv, DepthMultiplier=1,
                                                                                 FusedActivationFunction=3))),
           ("CONV_2D", [6, 7, 8], [9], ("Conv2DOptions", dict(conv, FusedActivationFunction=0))),
           ("ADD", [9, 3], [10], ("AddOptions", dict(FusedActivationFunction=0))),
           ("MEAN", [10, 11], [12], ("ReducerOptions", dict(KeepDims=0))),
           ("FULLY_CONNECTED", [12, 13, 14], [15], ("FullyConnectedOptions", dict(FusedActivationFunction=0))),
           ("SOFTMAX", [15], [16], ("SoftmaxOptions", dict(Beta=1.0)))]
    return build(t, ops, [0], [16])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_small_mobilenet_int8_bit_exact(seed):
    compare(_small_mobilenet(np.random.default_rng(seed)), runs=3, seed=seed)


def test_one_session_from_several_threads():
    from concurrent.futures import ThreadPoolExecutor
    s = Session(_small_mobilenet(np.random.default_rng(7)))
    rng = np.random.default_rng(8)
    feeds = [{s.get_inputs()[0].name: random_feed(rng, (1, 16, 16, 3), np.int8)} for _ in range(6)]
    want = [s.run(None, f)[0] for f in feeds]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda k: s.run(None, feeds[k % 6])[0], range(48)))
    assert all(np.array_equal(g, want[k % 6]) for k, g in enumerate(got))


# ---------------------------------------------------------------- float models

def test_small_mobilenet_float32_close_to_litert():
    compare(_small_mobilenet(np.random.default_rng(5), float_model=True), runs=3, exact=False)


def test_float16_weights_model():
    """The converter's float16 quantization: FLOAT16 constants behind DEQUANTIZE."""
    rng = np.random.default_rng(3)
    w16 = rng.normal(0, 0.3, (6, 3, 3, 4)).astype(np.float16)
    b16 = rng.normal(0, 0.1, 6).astype(np.float16)
    model = build([ft((1, 7, 7, 4)), ft(w16.shape, np.float16, data=w16), ft(w16.shape),
                   ft((6,), np.float16, data=b16), ft((6,)), ft((1, 7, 7, 6))],
                  [("DEQUANTIZE", [1], [2], None), ("DEQUANTIZE", [3], [4], None),
                   ("CONV_2D", [0, 2, 4], [5], ("Conv2DOptions", dict(Padding=0, StrideW=1, StrideH=1,
                                                                      DilationWFactor=1, DilationHFactor=1)))],
                  [0], [5])
    sessions = compare(model, runs=2, exact=False)
    assert all(n.op_type != "Dequantize" for n in sessions[0].graph.nodes)   # decoded once, at import


# ---------------------------------------------------------------- errors

def test_unsupported_operators_listed_in_one_error():
    model = build([ft((4,)), ft((4,)), ft((4,))], [("FLOOR", [0], [1], None), ("CEIL", [1], [2], None)], [0], [2])
    with pytest.raises(ModelError) as err:
        Session(model)
    assert "FLOOR" in str(err.value) and "CEIL" in str(err.value) and "2 TFLite operator(s)" in str(err.value)


def test_unsupported_quantization_schemes_are_refused():
    """16x8 quantization and float inputs with int8 weights (dynamic range) have other
    arithmetic: refused with a clear error, never computed as if they were 8-bit."""
    w = np.ones((4, 8), np.int8)
    hybrid = build([ft((1, 8)), qt((4, 8), 0.1, 0, data=w), ft((1, 4))],
                   [("FULLY_CONNECTED", [0, 1, -1], [2], None)], [0], [2])
    with pytest.raises(ModelError, match="dynamic-range"):
        Session(hybrid)
    int16 = build([qt((1, 8), 0.1, 0, np.int16), qt((4, 8), 0.1, 0, data=w), qt((1, 4), 0.1, 0, np.int16)],
                  [("FULLY_CONNECTED", [0, 1, -1], [2], None)], [0], [2])
    with pytest.raises(ModelError, match="16x8"):
        Session(int16)
    unquantized_out = build([qt((1, 8), 0.1, 0), qt((4, 8), 0.1, 0, data=w), dict(shape=[1, 4], dtype=np.int8)],
                            [("FULLY_CONNECTED", [0, 1, -1], [2], None)], [0], [2])
    with pytest.raises(ModelError, match="quantization parameters"):
        Session(unquantized_out)


def test_truncated_and_corrupt_files_are_model_errors(tmp_path):
    data = (ROOT / "bench" / "tflite" / "dw56s2_int8.tflite").read_bytes()
    for cut in (8, 64, len(data) // 2, len(data) - 16):
        with pytest.raises(ModelError):
            Session(data[:cut])
    rng = np.random.default_rng(0)
    for _ in range(20):
        bad = np.frombuffer(data, np.uint8).copy()
        bad[rng.integers(8, bad.size, 8)] = rng.integers(0, 256, 8)
        try:
            s = Session(bytes(bad))
            s.run(None, {i.name: np.zeros(i.shape, i.dtype) for i in s.get_inputs()})
        except (ModelError, ValueError):
            pass            # a clear error; anything else (a crash, another exception) fails
    path = tmp_path / "empty.tflite"
    path.write_bytes(b"")
    with pytest.raises(ModelError):
        Session(str(path))


def test_cli_runs_tflite(tmp_path, capsys):
    from qkernels.__main__ import main
    path = ROOT / "bench" / "tflite" / "dw56s2_int8.tflite"
    x = np.zeros((1, 56, 56, 144), np.int8)
    s = Session(str(path))
    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(path), "--input", f"{s.get_inputs()[0].name}=" + str(tmp_path / "x.npy")]) == 0
    assert "run:" in capsys.readouterr().out


def test_quantize_multiplier_is_tflites():
    """QuantizeMultiplier: frexp, round half away, the 2^31 carry; the high multiply
    and both rounding shifts on hand-checked values."""
    from qkernels.graph.backends.reference.tflite import (multiply_by_quantized_multiplier, quantize_multiplier,
                                                         rounding_shift)
    m, s = quantize_multiplier([0.5, 0.75, 1.0 - 2.0 ** -40, 2.0 ** -10])
    assert m.tolist() == [1 << 30, 3 << 29, 1 << 30, 1 << 30] and s.tolist() == [0, 0, 1, -9]
    h = np.array([-6, -5, -3, 3, 5, 6], np.int64)
    assert rounding_shift(h, 1, "away").tolist() == [-3, -3, -2, 2, 3, 3]
    assert rounding_shift(h, 1, "up").tolist() == [-3, -2, -1, 2, 3, 3]
    assert multiply_by_quantized_multiplier(np.array([100, -100]), 1 << 30, -1).tolist() == [25, -25]


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_mul_multiplier_is_computed_in_float32(dtype):
    """LiteRT's MUL multiplier is s1 * s2 / s_out in float32 (mul.cc multiplies the tensors'
    float scales); these scales make a product of 25,152 come out 10 from the double
    quotient and 11 from the float32 one: qkernels must give LiteRT's 11."""
    from qkernels.graph.backends.reference.tflite import multiply_by_quantized_multiplier, quantize_multiplier
    s1, s2, sy = 0.030268646776676178, 0.03701496496796608, 2.6838836669921875
    z = 0 if dtype == np.uint8 else -128
    f32 = np.float32
    double = quantize_multiplier(np.float64(s1) * np.float64(s2) / np.float64(sy))
    single = quantize_multiplier(np.float64(f32(f32(s1) * f32(s2)) / f32(sy)))
    p = np.array([131 * 192])
    assert multiply_by_quantized_multiplier(p, *double)[0] == 10
    assert multiply_by_quantized_multiplier(p, *single)[0] == 11
    model = build([qt([1, 2], s1, z, dtype), qt([1, 2], s2, z, dtype), qt([1, 2], sy, z, dtype)],
                  [("MUL", [0, 1], [2], ("MulOptions", dict(FusedActivationFunction=0)))], [0, 1], [2])
    a = np.array([[131 + z, 1 + z]], np.int64).astype(dtype)
    b = np.array([[192 + z, 192 + z]], np.int64).astype(dtype)
    Interpreter, Resolver = litert()
    it = Interpreter(model_content=model, experimental_op_resolver_type=Resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                     num_threads=1)
    it.allocate_tensors()
    for d, v in zip(it.get_input_details(), (a, b)):
        it.set_tensor(d["index"], v)
    it.invoke()
    want = it.get_tensor(it.get_output_details()[0]["index"])
    assert int(want[0, 0]) - z == 11
    for backends in (None, ["reference"]):
        s = Session(model, backends=backends)
        names = [i.name for i in s.get_inputs()]
        for _ in range(2):      # node by node, then the plan
            np.testing.assert_array_equal(s.run(None, dict(zip(names, (a, b))))[0], want)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
@pytest.mark.parametrize("kind", ["RELU", "RELU6", "RELU_N1_TO_1"])
def test_relu_multiplier_is_computed_in_float32(kind, dtype):
    """LiteRT's standalone RELU rescales by s_in / s_out divided in float32 (ReluPrepare);
    with these scales an input 190 above its zero point gives 244 from the double quotient
    and LiteRT's 245 from the float32 one (RELU; RELU6 and RELU_N1_TO_1 clamp below it)."""
    sx, sy = 0.4349726438522339, 0.3380155563354492
    z = 0 if dtype == np.uint8 else -128
    model = build([qt([1, 3], sx, z, dtype), qt([1, 3], sy, z, dtype)], [(kind, [0], [1], None)], [0], [1])
    x = np.array([[190 + z, 1 + z, 7 + z]], np.int64).astype(dtype)
    Interpreter, Resolver = litert()
    it = Interpreter(model_content=model, experimental_op_resolver_type=Resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                     num_threads=1)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    want = it.get_tensor(it.get_output_details()[0]["index"])
    if kind == "RELU":
        assert int(want[0, 0]) - z == 245
    for backends in (None, ["reference"]):
        s = Session(model, backends=backends)
        for _ in range(2):
            np.testing.assert_array_equal(s.run(None, {s.get_inputs()[0].name: x})[0], want)

def test_bench_script_times_and_checks_a_model(capsys):
    litert()
    from qkernels.bench import tflite_models
    path = ROOT / "bench" / "tflite" / "dw56s2_int8.tflite"
    assert tflite_models.main(["--models", str(path), "--repeats", "1"]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("dw56s2_int8")]
    assert line and line[0].split()[-1] == "True" and "error" not in line[0]
