"""conv2d (QLinearConv / ConvInteger) on every ISA path against a plain int64
reference, and against ONNX Runtime's QLinearConv where ONNX Runtime is exact (int8
activations)."""
import os

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import qkernels
from qkernels import QTensor, conv2d, pack_conv_weights

SMALL = os.environ.get("QKERNELS_TEST_SMALL", "").strip().lower() not in ("", "0", "false", "no")
U8, S8 = np.dtype(np.uint8), np.dtype(np.int8)


def conv_ref(x, w, za, zw, stride, pads, dilation, groups):
    """int64 convolution of NHWC x by OHWI w, padding (top, left, bottom, right) with za."""
    n, h, wd, c = x.shape
    o, kh, kw, cg = w.shape
    t, l, b, r = pads
    xp = np.full((n, h + t + b, wd + l + r, c), za, np.int64)
    xp[:, t:t + h, l:l + wd, :] = x
    xp -= za
    oh = (h + t + b - (kh - 1) * dilation[0] - 1) // stride[0] + 1
    ow = (wd + l + r - (kw - 1) * dilation[1] - 1) // stride[1] + 1
    wz = w.astype(np.int64) - np.broadcast_to(np.asarray(zw, np.int64), (o,)).reshape(-1, 1, 1, 1)
    og = o // groups
    out = np.zeros((n, oh, ow, o), np.int64)
    for g in range(groups):
        for ky in range(kh):
            for kx in range(kw):
                y0, x0 = ky * dilation[0], kx * dilation[1]
                patch = xp[:, y0:y0 + (oh - 1) * stride[0] + 1:stride[0], x0:x0 + (ow - 1) * stride[1] + 1:stride[1],
                           g * cg:(g + 1) * cg]
                out[..., g * og:(g + 1) * og] += np.einsum("nhwc,oc->nhwo", patch, wz[g * og:(g + 1) * og, ky, kx])
    return out


def _pads(padding, hw, khw, stride, dilation):
    return qkernels._conv_geometry.explicit_padding(padding, hw, khw, stride, dilation)


def _random(rng, shape, dt):
    info = np.iinfo(dt)
    return rng.integers(info.min, info.max, shape, endpoint=True).astype(dt)


@st.composite
def conv_cases(draw):
    kh, kw = draw(st.sampled_from([(1, 1), (3, 3), (5, 5), (7, 7), (1, 3), (3, 1), (1, 5), (2, 2)]))
    groups_kind = draw(st.sampled_from(["one", "two", "depthwise"]))
    cg = draw(st.sampled_from([1, 3, 7, 17]))
    groups = {"one": 1, "two": 2, "depthwise": draw(st.sampled_from([3, 8]))}[groups_kind]
    if groups_kind == "depthwise":
        cg = 1
    c = cg * groups
    o = groups * draw(st.sampled_from([1, 2, 5, 16, 17]))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(st.one_of(st.sampled_from(["valid", "same", "same_lower"]),
                             st.tuples(*[st.integers(0, 3)] * 4)))
    eff = ((kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1)
    h = draw(st.integers(eff[0], eff[0] + (6 if SMALL else 12)))
    w = draw(st.integers(eff[1], eff[1] + (6 if SMALL else 12)))
    n = draw(st.integers(1, 2))
    xdt = draw(st.sampled_from([U8, S8]))
    return dict(n=n, h=h, w=w, c=c, o=o, kh=kh, kw=kw, stride=stride, dilation=dilation, padding=padding,
                groups=groups, xdt=xdt, seed=draw(st.integers(0, 2**31)))


@settings(max_examples=15 if SMALL else 60, deadline=None, database=None)
@given(case=conv_cases())
def test_conv2d_equals_the_int64_reference_on_every_path(case):
    rng = np.random.default_rng(case["seed"])
    x = _random(rng, (case["n"], case["h"], case["w"], case["c"]), case["xdt"])
    w = _random(rng, (case["o"], case["kh"], case["kw"], case["c"] // case["groups"]), S8)
    za = int(_random(rng, (), case["xdt"]))
    zw = rng.integers(-128, 128, case["o"])
    pads = _pads(case["padding"], (case["h"], case["w"]), (case["kh"], case["kw"]), case["stride"],
                 case["dilation"])
    try:
        want = conv_ref(x, w, za, zw, case["stride"], pads, case["dilation"], case["groups"])
    except ValueError:
        return
    if want.shape[1] < 1 or want.shape[2] < 1:
        return
    wq = QTensor(w, np.full(case["o"], 0.01, np.float32), zw, axis=0)
    packed = pack_conv_weights(wq, groups=case["groups"])
    for isa in qkernels._dispatch.tested_isas():
        with qkernels.use_isa(isa):
            for threads in (1, 2):
                qkernels.set_num_threads(threads)
                got = conv2d(QTensor(x, 0.02, za), packed, stride=case["stride"], padding=case["padding"],
                             dilation=case["dilation"], out_dtype=np.int32)
                np.testing.assert_array_equal(got, want.astype(np.int32), err_msg=f"{isa}, {threads} thread(s)")


@st.composite
def int8_weight_depthwise_cases(draw):
    """Depthwise shapes whose zero-folded weights fit int8 (weight zero points 0, as ORT's and
    TFLite's quantizers write them), which the AVX-512 VNNI kernel sums 4 taps at a time:
    channel counts on and around its 64-channel blocks and its 2- and 4-pixel vectors
    (last blocks of <= 32 and <= 16 channels), tap counts that fill 4-tap groups or not,
    pixel counts past every 2 and 4, strided input views."""
    kh, kw = draw(st.sampled_from([(3, 3), (3, 3), (5, 5), (1, 1), (2, 3), (1, 7), (7, 7)]))
    c = draw(st.sampled_from([1, 5, 16, 17, 31, 32, 33, 63, 64, 65, 80, 96, 97, 144, 150]))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(st.one_of(st.sampled_from(["valid", "same"]), st.tuples(*[st.integers(0, 3)] * 4)))
    eff = ((kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1)
    h = draw(st.integers(eff[0], eff[0] + (4 if SMALL else 9)))
    w = draw(st.integers(eff[1], eff[1] + (4 if SMALL else 9)))
    return dict(n=draw(st.integers(1, 2)), h=h, w=w, c=c, kh=kh, kw=kw, stride=stride, dilation=dilation,
                padding=padding, xdt=draw(st.sampled_from([U8, S8])), ydt=draw(st.sampled_from([U8, S8])),
                extreme=draw(st.booleans()), view=draw(st.sampled_from([None, "step", "reversed"])),
                act=draw(st.sampled_from([None, "relu", "relu6"])), seed=draw(st.integers(0, 2**31)))


@settings(max_examples=15 if SMALL else 60, deadline=None, database=None)
@given(case=int8_weight_depthwise_cases())
def test_int8_weight_depthwise_equals_the_reference_on_every_path(case):
    """fp32-requantized depthwise output with int8 weights and zero weight points equals the
    int64 reference on every path and thread count, for u8 and s8 inputs and outputs (the
    s8 inputs' +128 and its compensation), fused clamps, extreme inputs and weights against
    large biases (the float clamp before rounding), and input views (same as a copy)."""
    rng = np.random.default_rng(case["seed"])
    c, xdt, ydt = case["c"], case["xdt"], case["ydt"]
    shape = (case["n"], case["h"], case["w"], c)
    if case["extreme"]:
        x = np.full(shape, np.iinfo(xdt).max if xdt == U8 else np.iinfo(xdt).min, xdt)
        w = rng.choice(np.array([-128, 127], np.int8), (c, case["kh"], case["kw"], 1))
        za = int(np.iinfo(xdt).min)
        bias = rng.choice(np.array([-2**31, 2**31 - 1, 0], np.int64), c).astype(np.int32)
    else:
        x = _random(rng, shape, xdt)
        w = _random(rng, (c, case["kh"], case["kw"], 1), S8)
        za = int(_random(rng, (), xdt))
        bias = rng.integers(-20000, 20000, c).astype(np.int32)
    if case["view"]:
        big = _random(rng, (shape[0], shape[1], 2 * shape[2], c), xdt)
        big[:, :, ::2] = x if case["view"] == "step" else x[:, :, ::-1]
        xin = big[:, :, ::2] if case["view"] == "step" else big[:, :, ::2][:, :, ::-1]
        np.testing.assert_array_equal(xin, x)
    else:
        xin = x
    pads = _pads(case["padding"], (case["h"], case["w"]), (case["kh"], case["kw"]), case["stride"],
                 case["dilation"])
    acc = (conv_ref(x, w, za, 0, case["stride"], pads, case["dilation"], c) + bias).astype(np.int32)
    if acc.shape[1] < 1 or acc.shape[2] < 1:
        return
    sw = rng.uniform(0.001, 0.01, c).astype(np.float32)
    sa, sy = 0.02, 0.3
    zy = int(_random(rng, (), ydt))
    lo, hi = np.iinfo(ydt).min, np.iinfo(ydt).max
    if case["act"]:
        lo = max(lo, zy)
        if case["act"] == "relu6":
            hi = min(hi, zy + int(np.rint(np.float32(6.0) / np.float32(sy))))
    scale = (np.float32(sa) * sw) / np.float32(sy)
    want = np.clip(np.rint(acc.astype(np.float32) * scale) + zy, lo, hi).astype(ydt)
    packed = pack_conv_weights(QTensor(w, sw, np.zeros(c, np.int8), axis=0), groups=c, bias=bias)
    assert packed.depthwise or c == 1
    kw = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"], out_scale=sy,
              out_zero_point=zy, out_dtype=ydt, activation=case["act"])
    for isa in qkernels._dispatch.tested_isas():
        with qkernels.use_isa(isa):
            for threads in (1, 2):
                qkernels.set_num_threads(threads)
                y = conv2d(QTensor(xin, sa, za), packed, **kw)
                np.testing.assert_array_equal(y.data, want, err_msg=f"{isa}, {threads} thread(s)")
    qkernels.set_num_threads(1)


@pytest.mark.parametrize("isa", list(qkernels._dispatch.tested_isas()))
@pytest.mark.parametrize("requant", ["fp32", "fixedpoint", "tflite"])
def test_conv2d_requantized_output_equals_the_reference_and_nchw_matches_nhwc(isa, requant):
    rng = np.random.default_rng(1)
    x = _random(rng, (2, 9, 11, 6), U8)
    w = _random(rng, (10, 3, 3, 3), S8)
    bias = rng.integers(-5000, 5000, 10).astype(np.int32)
    sw = rng.uniform(0.005, 0.02, 10).astype(np.float32)
    za, sa, sy, zy = 131, 0.03, 0.4, 7
    acc = conv_ref(x, w, za, 0, (2, 1), (1, 2, 0, 1), (1, 1), 2) + bias
    scale = (np.float32(sa) * sw) / np.float32(sy)
    with qkernels.use_isa(isa):
        kw = dict(stride=(2, 1), padding=(1, 2, 0, 1), groups=2, out_scale=sy, out_zero_point=zy,
                  activation="relu", requant=requant)
        y = conv2d(QTensor(x, sa, za), QTensor(w, sw, np.zeros(10, np.int8), axis=0), bias, **kw)
        if requant == "fp32":
            want = np.clip(np.rint(acc.astype(np.int32).astype(np.float32) * scale) + zy, zy, 255)
            np.testing.assert_array_equal(y.data, want.astype(np.uint8))
        y2 = conv2d(QTensor(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), sa, za),
                    QTensor(np.ascontiguousarray(w.transpose(0, 3, 1, 2)), sw, np.zeros(10, np.int8), axis=0),
                    bias, layout="NCHW", weight_layout="OIHW", **kw)
        np.testing.assert_array_equal(y2.data, y.data.transpose(0, 3, 1, 2))
        with qkernels.use_isa("scalar"):
            y3 = conv2d(QTensor(x, sa, za), QTensor(w, sw, np.zeros(10, np.int8), axis=0), bias, **kw)
        np.testing.assert_array_equal(y.data, y3.data)


def test_conv2d_padding_reads_the_input_zero_point():
    """A constant input equal to its zero point is real zero everywhere, padding included:
    every output is just the bias."""
    x = np.full((1, 5, 5, 4), 77, np.uint8)
    w = np.random.default_rng(2).integers(-128, 128, (3, 3, 3, 4)).astype(np.int8)
    bias = np.array([5, -6, 7], np.int32)
    got = conv2d(QTensor(x, 1.0, 77), QTensor(w, 1.0, 0), bias, padding=2, out_dtype=np.int32)
    assert got.shape == (1, 7, 7, 3)
    assert (got == bias).all()


def test_conv2d_bad_inputs_raise_clear_errors():
    x = QTensor(np.zeros((1, 4, 4, 6), np.uint8), 1.0, 0)
    w = QTensor(np.zeros((4, 3, 3, 3), np.int8), 1.0, 0)
    with pytest.raises(ValueError, match="larger than the padded input"):
        conv2d(x, QTensor(np.zeros((4, 5, 5, 6), np.int8), 1.0, 0), out_dtype=np.int32)
    with pytest.raises(ValueError, match="channels"):
        conv2d(x, w, groups=1, out_dtype=np.int32)                  # 6 channels vs 3 per group x 1
    with pytest.raises(ValueError, match="divide"):
        conv2d(x, QTensor(np.zeros((5, 3, 3, 3), np.int8), 1.0, 0), groups=2, out_dtype=np.int32)
    with pytest.raises(TypeError):
        conv2d(np.zeros((1, 4, 4, 6), np.uint8), w, groups=2, out_dtype=np.int32)
    with pytest.raises(TypeError):
        conv2d(x, QTensor(np.zeros((4, 3, 3, 3), np.int16).astype(np.int8), 1.0, 0), groups=2, padding=1.5,
               out_dtype=np.int32)
    with pytest.raises(ValueError):
        conv2d(x, w, groups=2, padding="full", out_dtype=np.int32)
    with pytest.raises(ValueError):
        conv2d(x, w, groups=2, stride=0, out_dtype=np.int32)
    with pytest.raises(ValueError):
        conv2d(x, w, groups=2, layout="NWHC", out_dtype=np.int32)
    with pytest.raises(ValueError):
        conv2d(QTensor(np.zeros((4, 4, 6), np.uint8), 1.0, 0), w, groups=2, out_dtype=np.int32)
    with pytest.raises(TypeError):
        conv2d(x, w, groups=2)                                       # no out_scale


def _ort_qlinearconv(x_nchw, sa, za, w_oihw, sw, b, sy, zy, stride, pads, dilation, groups, ydt):
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    t = numpy_helper.from_array
    o = w_oihw.shape[0]
    inits = [t(np.array(sa, np.float32), "sa"), t(np.array(za, x_nchw.dtype), "za"), t(w_oihw, "w"),
             t(np.asarray(sw, np.float32), "sw"), t(np.zeros(o, w_oihw.dtype), "zw"),
             t(np.array(sy, np.float32), "sy"), t(np.array(zy, ydt), "zy"), t(b, "b")]
    node = helper.make_node("QLinearConv", ["x", "sa", "za", "w", "sw", "zw", "sy", "zy", "b"], ["y"],
                            strides=list(stride), pads=[pads[0], pads[1], pads[2], pads[3]],
                            dilations=list(dilation), group=groups)
    elem = {np.dtype(np.uint8): TensorProto.UINT8, np.dtype(np.int8): TensorProto.INT8}
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", elem[x_nchw.dtype], list(x_nchw.shape))],
                          [helper.make_tensor_value_info("y", elem[np.dtype(ydt)], None)], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x_nchw})[0]


@pytest.mark.parametrize("kh,stride,groups,pads", [(3, 1, 1, (1, 1, 1, 1)), (1, 1, 1, (0, 0, 0, 0)),
                                                    (3, 2, 2, (0, 1, 1, 0)), (5, 1, 1, (2, 2, 2, 2)),
                                                    (3, 1, 8, (1, 1, 1, 1))])
def test_conv2d_int8_activations_equal_onnxruntime_qlinearconv_exactly(kh, stride, groups, pads):
    rng = np.random.default_rng(kh * 10 + groups)
    c, o = 8, 16
    x = _random(rng, (1, 12, 10, c), S8)
    w = rng.integers(-127, 128, (o, kh, kh, c // groups)).astype(np.int8)
    b = rng.integers(-20000, 20000, o).astype(np.int32)
    sw = rng.uniform(0.002, 0.01, o).astype(np.float32)
    sa, za, sy, zy = 0.05, -3, 0.2, 4
    want = _ort_qlinearconv(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), sa, za,
                            np.ascontiguousarray(w.transpose(0, 3, 1, 2)), sw, b, sy, zy, (stride, stride),
                            (pads[0], pads[1], pads[2], pads[3]), (1, 1), groups, np.int8)
    for isa in qkernels._dispatch.tested_isas():
        with qkernels.use_isa(isa):
            y = conv2d(QTensor(x, sa, za), QTensor(w, sw, np.zeros(o, np.int8), axis=0), b, stride=stride,
                       padding=pads, groups=groups, out_scale=sy, out_zero_point=zy, out_dtype=np.int8,
                       layout="NHWC")
            np.testing.assert_array_equal(y.data.transpose(0, 3, 1, 2), want, err_msg=isa)


@st.composite
def depthwise_cases(draw):
    """Depthwise shapes for the sum kernels: channel counts around the 16-channel block
    (1, 15, 16, 17, 31, 33, 48+), the unrolled 3x3 and 5x5, other tap counts up to the
    indirection limit (7x7 = 49) and past it (9x9 = 81: the general path)."""
    kh, kw = draw(st.sampled_from([(3, 3), (5, 5), (3, 3), (1, 1), (2, 3), (7, 7), (1, 9), (9, 9)]))
    c = draw(st.sampled_from([1, 3, 15, 16, 17, 31, 33, 48, 67]))
    mult = draw(st.sampled_from([1, 1, 1, 2]))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(st.one_of(st.sampled_from(["valid", "same", "same_lower"]),
                             st.tuples(*[st.integers(0, 4)] * 4)))
    eff = ((kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1)
    h = draw(st.integers(eff[0], eff[0] + (5 if SMALL else 11)))
    w = draw(st.integers(eff[1], eff[1] + (5 if SMALL else 11)))
    return dict(n=draw(st.integers(1, 2)), h=h, w=w, c=c, mult=mult, kh=kh, kw=kw, stride=stride,
                dilation=dilation, padding=padding, xdt=draw(st.sampled_from([U8, S8])),
                extreme=draw(st.booleans()), seed=draw(st.integers(0, 2**31)))


@settings(max_examples=15 if SMALL else 80, deadline=None, database=None)
@given(case=depthwise_cases())
def test_depthwise_equals_the_int64_reference_on_every_path(case):
    """int32 sums and fp32-requantized output of the direct depthwise kernels equal the
    reference on every path and thread count; extreme cases put every input at the
    type's far end (u8 255 / s8 -128) against weights -128 or 127."""
    rng = np.random.default_rng(case["seed"])
    c, o, xdt = case["c"], case["c"] * case["mult"], case["xdt"]
    shape = (case["n"], case["h"], case["w"], c)
    if case["extreme"]:
        x = np.full(shape, np.iinfo(xdt).max if xdt == U8 else np.iinfo(xdt).min, xdt)
        w = rng.choice(np.array([-128, 127], np.int8), (o, case["kh"], case["kw"], 1))
        za = 0 if xdt == U8 else 127
        zw = rng.choice(np.array([-128, 127]), o)
    else:
        x = _random(rng, shape, xdt)
        w = _random(rng, (o, case["kh"], case["kw"], 1), S8)
        za = int(_random(rng, (), xdt))
        zw = rng.integers(-128, 128, o)
    pads = _pads(case["padding"], (case["h"], case["w"]), (case["kh"], case["kw"]), case["stride"],
                 case["dilation"])
    want = conv_ref(x, w, za, zw, case["stride"], pads, case["dilation"], c)
    if want.shape[1] < 1 or want.shape[2] < 1:
        return
    bias = rng.integers(-10000, 10000, o).astype(np.int32)
    sw = rng.uniform(0.001, 0.01, o).astype(np.float32)
    sa, sy, zy = 0.02, 0.3, 3
    scale = (np.float32(sa) * sw) / np.float32(sy)
    acc = (want + bias).astype(np.int32)
    y_want = np.clip(np.rint(acc.astype(np.float32) * scale) + zy, np.iinfo(xdt).min, np.iinfo(xdt).max).astype(xdt)
    packed = pack_conv_weights(QTensor(w, sw, zw, axis=0), groups=c, bias=bias)
    assert packed.depthwise or c == 1   # one channel is a plain convolution
    kw = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"])
    for isa in qkernels._dispatch.tested_isas():
        with qkernels.use_isa(isa):
            for threads in (1, 2):
                qkernels.set_num_threads(threads)
                got = conv2d(QTensor(x, sa, za), packed, out_dtype=np.int32, **kw)
                np.testing.assert_array_equal(got, acc, err_msg=f"{isa}, {threads} thread(s)")
                y = conv2d(QTensor(x, sa, za), packed, out_scale=sy, out_zero_point=zy, out_dtype=xdt, **kw)
                np.testing.assert_array_equal(y.data, y_want, err_msg=f"{isa}, {threads} thread(s)")


@pytest.mark.parametrize("isa", list(qkernels._dispatch.tested_isas()))
@pytest.mark.parametrize("requant", ["fp32", "fixedpoint", "tflite"])
@pytest.mark.parametrize("mult,xdt", [(1, U8), (1, S8), (3, U8)])
@pytest.mark.parametrize("c", [19, 75])
def test_depthwise_requantized_output_equals_the_reference(isa, requant, mult, xdt, c, ref):
    """groups == channels takes the direct depthwise kernel (channel multiplier 1 or 3);
    19 and 75 channels reach the 16-channel blocks and the portable tail."""
    rng = np.random.default_rng(mult + c)
    x = _random(rng, (2, 10, 9, c), xdt)
    w = _random(rng, (c * mult, 3, 3, 1), S8)
    zw = rng.integers(-3, 4, c * mult)
    bias = rng.integers(-3000, 3000, c * mult).astype(np.int32)
    sw = rng.uniform(0.005, 0.02, c * mult).astype(np.float32)
    za = int(_random(rng, (), xdt))
    sa, sy, zy = 0.03, 0.25, -5 if xdt == S8 else 9
    pads = (1, 0, 2, 1)
    acc = (conv_ref(x, w, za, zw, (2, 1), pads, (1, 2), c) + bias).astype(np.int32)
    packed = pack_conv_weights(QTensor(w, sw, zw, axis=0), groups=c, bias=bias)
    assert packed.depthwise
    with qkernels.use_isa(isa):
        y = conv2d(QTensor(x, sa, za), packed, stride=(2, 1), padding=pads, dilation=(1, 2), out_scale=sy,
                   out_zero_point=zy, out_dtype=xdt, activation="relu6", requant=requant)
        np.testing.assert_array_equal(conv2d(QTensor(x, sa, za), packed, stride=(2, 1), padding=pads,
                                             dilation=(1, 2), out_dtype=np.int32), acc)
    lo, hi = max(np.iinfo(xdt).min, zy), min(np.iinfo(xdt).max, zy + int(np.rint(np.float32(6.0) / np.float32(sy))))
    if requant == "fp32":
        scale = (np.float32(sa) * sw) / np.float32(sy)
        want = np.clip(np.rint(acc.astype(np.float32) * scale) + zy, lo, hi).astype(xdt)
        np.testing.assert_array_equal(y.data, want)
    else:
        want = ref.requant_fixedpoint(acc, sa, sw, sy, zy, lo, hi, ties_up=requant == "tflite")
        np.testing.assert_array_equal(y.data, want.astype(xdt))
        assert lo <= y.data.min() and y.data.max() <= hi


def test_uint8_activations_are_exact_where_onnxruntime_saturates(record_property):
    """With uint8 activations ONNX Runtime's AVX2 QLinearConv saturates in vpmaddubsw; qkernels
    must still equal the exact reference. ORT's deviation is recorded, not asserted."""
    rng = np.random.default_rng(11)
    c, o = 16, 16
    x = _random(rng, (1, 12, 12, c), U8)
    w = rng.integers(-127, 128, (o, 3, 3, c)).astype(np.int8)
    b = np.zeros(o, np.int32)
    sw = np.full(o, 0.004, np.float32)
    sa, za, sy, zy = 0.02, 128, 0.3, 128
    acc = conv_ref(x, w, za, 0, (1, 1), (1, 1, 1, 1), (1, 1), 1).astype(np.int32)
    scale = (np.float32(sa) * sw) / np.float32(sy)
    want = np.clip(np.rint(acc.astype(np.float32) * scale) + zy, 0, 255).astype(np.uint8)
    y = conv2d(QTensor(x, sa, za), QTensor(w, sw, np.zeros(o, np.int8), axis=0), b, padding=1, out_scale=sy,
               out_zero_point=zy)
    np.testing.assert_array_equal(y.data, want)
    ort_y = _ort_qlinearconv(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), sa, za,
                             np.ascontiguousarray(w.transpose(0, 3, 1, 2)), sw, b, sy, zy, (1, 1), (1, 1, 1, 1),
                             (1, 1), 1, np.uint8).transpose(0, 2, 3, 1)
    diff = np.abs(ort_y.astype(np.int32) - want.astype(np.int32))
    record_property("ort_u8_outputs_off", int((diff > 0).sum()))
    record_property("ort_u8_max_steps_off", int(diff.max()))
    print(f"ONNX Runtime u8 QLinearConv: {(diff > 0).mean():.1%} of outputs off, up to {diff.max()} steps")


def test_depthwise_conv2d_is_conv2d_with_groups_equal_to_channels():
    rng = np.random.default_rng(5)
    x = _random(rng, (1, 9, 8, 6), S8)
    w = _random(rng, (12, 3, 3, 1), S8)              # channel multiplier 2
    sw = rng.uniform(0.005, 0.02, 12).astype(np.float32)
    xq, wq = QTensor(x, 0.05, -4), QTensor(w, sw, 0, axis=0)
    kw = dict(stride=2, padding="same", out_scale=0.3, out_zero_point=1, activation="relu")
    want = conv2d(xq, wq, groups=6, **kw)
    np.testing.assert_array_equal(qkernels.depthwise_conv2d(xq, wq, **kw).data, want.data)
    np.testing.assert_array_equal(qkernels.depthwise_conv2d(xq, pack_conv_weights(wq, groups=6), **kw).data,
                                  want.data)
    w_oihw = QTensor(np.ascontiguousarray(w.transpose(0, 3, 1, 2)), sw, 0, axis=0)   # PyTorch layout
    x_nchw = QTensor(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), 0.05, -4)
    got = qkernels.depthwise_conv2d(x_nchw, w_oihw, layout="NCHW", weight_layout="OIHW", **kw)
    np.testing.assert_array_equal(got.data, want.data.transpose(0, 3, 1, 2))
    with pytest.raises(ValueError, match="not depthwise"):
        qkernels.depthwise_conv2d(xq, pack_conv_weights(QTensor(_random(rng, (4, 3, 3, 6), S8), 0.01, 0)), **kw)
    with pytest.raises(ValueError, match="depthwise weights must be"):
        qkernels.depthwise_conv2d(xq, QTensor(_random(rng, (6, 3, 3, 2), S8), 0.01, 0), **kw)
    with pytest.raises(ValueError, match="channels"):   # 12 filters of one channel cannot serve 5 channels
        qkernels.depthwise_conv2d(QTensor(x[..., :5], 0.05, -4), wq, **kw)


def _strided(a, **strides):
    """``a`` with the given strides (in elements) on some of its size-1 axes, by name."""
    axes = {"n": 0, "h": 1, "w": 2}
    s = list(a.strides)
    for name, v in strides.items():
        assert a.shape[axes[name]] == 1
        s[axes[name]] = v * a.itemsize
    return np.lib.stride_tricks.as_strided(a, a.shape, s, writeable=False)


def _pointwise_views():
    b = np.random.default_rng(0).integers(0, 256, (2, 1, 8, 4), np.uint8)
    one_px = np.random.default_rng(1).integers(0, 256, (3, 1, 1, 4), np.uint8)
    return {
        "W-sliced batch, H == 1 (issue 12)": b[:, :, :4],
        "W step 2, H == 1": b[:, :, ::2],
        "W reversed, H == 1": b[:, :, ::-1],
        "one pixel per image, odd W stride": _strided(one_px, w=5),
        "one pixel per image, H and W strides 0": _strided(one_px, h=0, w=0),
        "H == 1 of stride 3 over a contiguous batch": _strided(b, h=3),
        "batch broadcast": np.broadcast_to(b[:1], (2, 1, 8, 4)),
    }


@pytest.mark.parametrize("name", list(_pointwise_views()))
@pytest.mark.parametrize("dtype", [U8, np.dtype(np.float16)], ids=["u8", "f16"])
def test_pointwise_conv_reads_each_image_of_a_view_whose_pixels_do_not_lie_at_one_stride(name, dtype):
    """The 1x1 stride-1 fast path reads the pixels as (N*H*W, C) rows in place only when
    they lie at one stride; size-1 dimensions may have any stride (issue 12, point 1)."""
    x = _pointwise_views()[name]
    w = np.arange(12).reshape(3, 1, 1, 4) % 5 - 2
    if dtype == U8:
        def conv(x):
            return conv2d(QTensor(x, 0.1, 0), QTensor(w.astype(np.int8), 0.1, 0), out_dtype=np.int32)
    else:
        x = (x / 16).astype(np.float16)

        def conv(x):
            return conv2d(x, w.astype(np.float16))
    np.testing.assert_array_equal(conv(x), conv(np.ascontiguousarray(x)))
    np.testing.assert_array_equal(conv(x)[1], conv(np.ascontiguousarray(x[1:]))[0])   # image 1 from image 1


@pytest.mark.parametrize("arg,value", [("dilation", 2**64), ("dilation", 2**31), ("stride", 2**64),
                                       ("stride", (1, 2**63)), ("padding", 2**63), ("padding", (0, 0, 2**40, 0)),
                                       ("padding", 2**31)], ids=str)
@pytest.mark.parametrize("depthwise", [False, True], ids=["conv2d", "depthwise"])
@pytest.mark.parametrize("kernel", [1, 3])
def test_conv_geometry_beyond_the_limit_is_a_value_error_naming_the_argument(arg, value, depthwise, kernel):
    """Huge stride, dilation or padding: a ValueError naming the argument, before any
    native call (they were OverflowErrors, or ran with 1x1 kernels; issue 12, point 4)."""
    x = QTensor(np.ones((1, 4, 4, 2), np.uint8), 0.1, 0)
    w = QTensor(np.ones((2, kernel, kernel, 1 if depthwise else 2), np.int8), 0.1, 0)
    conv = qkernels.depthwise_conv2d if depthwise else conv2d
    with pytest.raises(ValueError, match=f"{arg}.*{qkernels._conv_geometry.MAX_GEOMETRY}"):
        conv(x, w, out_dtype=np.int32, **{arg: value})
    with pytest.raises(ValueError, match=arg):
        conv((x.data / 8).astype(np.float16), (w.data / 4).astype(np.float16), **{arg: value})
    conv(x, w, out_dtype=np.int32, **{arg: 1})   # an ordinary value still runs


@settings(max_examples=6 if SMALL else 25, deadline=None, database=None)
@given(o=st.integers(17, 100), c=st.integers(1, 70), k=st.sampled_from([1, 3]), groups=st.sampled_from([1, 2]),
       hw=st.tuples(st.integers(1, 9), st.integers(1, 13)), view=st.sampled_from(["none", "channels", "flipped"]),
       xdt=st.sampled_from([U8, S8]), ydt=st.sampled_from([U8, S8]), act=st.sampled_from([None, "relu", (-1.0, 2.5)]),
       sy=st.sampled_from([0.02, 0.3, 3.0]), seed=st.integers(0, 2**31))
def test_tflite_requantized_conv_tiles_of_32_columns_equal_the_scalar_path_on_every_isa(o, c, k, groups, hw, view, xdt,
                                                                                        ydt, act, sy, seed):
    """LiteRT's requantization ("tflite") of full 32-column tiles, which the AVX-512
    kernels store straight from their accumulators (and rows whose float check fails
    from the exact path), and the AVX2 copies of the patch gather (window rows and taps of
    32 bytes and more, input views whose channels are strided): the same bytes as the
    scalar path (itself LiteRT's, tests/test_tflite.py). Output scales that make right
    shifts under 2 (sy = 0.02) take the 64-bit stage."""
    o -= o % groups
    c = max(groups, c - c % groups)
    rng = np.random.default_rng(seed)
    h, wd = hw
    x = _random(rng, (1, h, wd, 2 * c if view == "channels" else c), xdt)
    x = {"none": x, "channels": x[..., ::2], "flipped": x[:, ::-1, ::-1]}[view]
    w = rng.integers(-127, 128, (o, k, k, c // groups)).astype(np.int8)
    sw = rng.uniform(0.002, 0.02, o).astype(np.float32)
    bias = rng.integers(-20000, 20000, o).astype(np.int32)
    za, zy = int(_random(rng, (), xdt)), int(_random(rng, (), ydt))
    kw = dict(padding="same", groups=groups, out_scale=sy, out_zero_point=zy, out_dtype=ydt, activation=act,
              requant="tflite")
    args = (QTensor(x, 0.05, za), QTensor(w, sw, np.zeros(o, np.int8), axis=0), bias)
    with qkernels.use_isa("scalar"):
        want = conv2d(*args, **kw).data
    for isa in qkernels._dispatch.tested_isas():
        with qkernels.use_isa(isa):
            np.testing.assert_array_equal(conv2d(*args, **kw).data, want, err_msg=isa)
            np.testing.assert_array_equal(conv2d(QTensor(np.ascontiguousarray(x), 0.05, za), *args[1:], **kw).data,
                                          want, err_msg=f"{isa}, contiguous copy")


@settings(max_examples=8 if SMALL else 30, deadline=None, database=None)
@given(cg=st.sampled_from([3, 4, 12, 16, 17, 64, 260]), o=st.sampled_from([1, 16, 32, 47, 64, 300]),
       hw=st.tuples(st.integers(1, 12), st.integers(1, 12)), k=st.sampled_from([(1, 1), (3, 3), (5, 5), (3, 1), (1, 4)]),
       stride=st.tuples(st.integers(1, 2), st.integers(1, 2)), dil=st.tuples(st.integers(1, 2), st.integers(1, 2)),
       pads=st.tuples(*[st.integers(0, 2)] * 4), n=st.integers(1, 2), groups=st.sampled_from([1, 2]),
       view=st.sampled_from(["none", "pixels", "flipped"]), requant=st.sampled_from(["int32", "fp32", "tflite"]),
       seed=st.integers(0, 2**31))
@example(cg=260, o=300, hw=(5, 6), k=(3, 3), stride=(1, 1), dil=(1, 1), pads=(1, 1, 1, 1), n=1, groups=1, view="none",
         requant="tflite", seed=0)   # K * N over 512 KiB: several column blocks, every panel's table built once
@example(cg=64, o=64, hw=(12, 12), k=(3, 3), stride=(1, 1), dil=(1, 1), pads=(1, 1, 1, 1), n=2, groups=1,
         view="none", requant="fp32", seed=1)   # a ResNet stage's layer: whole kernel rows, side-padded copies
def test_uint8_indirect_conv_gives_the_bytes_of_the_packed_patches(cg, o, hw, k, stride, dil, pads, n, groups, view,
                                                                  requant, seed):
    """uint8 convolutions with symmetric weights read their input in place through pointer
    tables (the VNNI kernel's indirect entries, qk_iconv_block): the int64 reference's sums
    (int32 output), and the packed path's bytes for every output stage, on every ISA path,
    1 and 2 threads, from views (pixels at a step: segments of one tap; flipped rows and
    columns: negative strides), padding on every side, strides, dilations, groups, tiles
    past every edge, weights of several column blocks. The path is asserted taken where it
    serves: the AVX-512 paths' 12-row kernel (M > 8), segments of 32 bytes or more in whole
    K quads."""
    rng = np.random.default_rng(seed)
    kh, kw = k
    h, w_ = hw
    h, w_ = max(h, (kh - 1) * dil[0] + 1 - pads[0] - pads[2]), max(w_, (kw - 1) * dil[1] + 1 - pads[1] - pads[3])
    c = cg * groups
    base = _random(rng, (n, h, 2 * w_, c), U8)
    x = {"none": np.ascontiguousarray(base[:, :, :w_]), "pixels": base[:, :, ::2],
         "flipped": base[:, ::-1, ::-1][:, :, :w_]}[view]
    w = rng.integers(-128, 128, (o * groups, kh, kw, cg)).astype(np.int8)
    za = int(rng.integers(0, 256))
    sw = rng.uniform(0.002, 0.02, o * groups).astype(np.float32)
    bias = rng.integers(-20000, 20000, o * groups).astype(np.int32)
    packed = pack_conv_weights(QTensor(w, sw, np.zeros(o * groups, np.int8), axis=0), groups=groups)
    kw_ = dict(stride=stride, padding=pads, dilation=dil, groups=groups)
    if requant == "int32":
        kw_["out_dtype"] = np.int32
    else:
        kw_.update(out_scale=0.3, out_zero_point=7, activation="relu", requant=requant)
    want = conv_ref(x, w, za, 0, stride, pads, dil, groups) + bias

    def run(indirect):
        with qkernels._dispatch.indirect_conv(indirect):
            y = conv2d(QTensor(x, 0.05, za), packed, bias, **kw_)
        return y if requant == "int32" else y.data
    for isa in qkernels._dispatch.tested_isas():
        with qkernels.use_isa(isa):
            for threads in (1, 2):
                qkernels.set_num_threads(threads)
                got = [run(True), run(False)]
                np.testing.assert_array_equal(got[0], got[1], err_msg=f"{isa}, {threads} thread(s)")
                if requant == "int32":
                    np.testing.assert_array_equal(got[0], want.astype(np.int32), err_msg=isa)
            call = qkernels._conv.ConvCall(QTensor(x, 0.05, za), packed, bias, stride, pads, dil, groups, "NHWC",
                                           "OHWI", kw_.get("out_scale"), kw_.get("out_zero_point", 0),
                                           kw_.get("out_dtype"), kw_.get("activation"), kw_.get("requant", "fp32"),
                                           None)
            if not call.gemms:
                continue
            res = np.empty((got[0].size // (o * groups), o * groups), got[0].dtype)
            segs = [b.indirect_segment for b in call.bind(x, res)]
            pointwise = kh == kw == 1 and stride == (1, 1) and pads == (0, 0, 0, 0)
            seg = kw * cg if x.strides[2] == cg and dil[1] == 1 else cg
            if isa.startswith("avx512vnni") and res.shape[0] > 8 and not pointwise and seg % 4 == 0 and seg >= 32:
                assert segs == [seg] * groups, (isa, segs)
            else:
                assert segs == [0] * groups, (isa, segs)


@settings(max_examples=8 if SMALL else 40, deadline=None, database=None)
@given(signed=st.booleans(), o=st.sampled_from([16, 32, 47, 64, 96]), cg=st.sampled_from([3, 16, 64]),
       hw=st.tuples(st.integers(1, 9), st.integers(1, 13)), k=st.sampled_from([1, 3]),
       e=st.tuples(st.floats(-9, 0), st.floats(-9, 0), st.floats(-9, 0)), seed=st.integers(0, 2**31))
# (a search: where the reciprocal's product alone gives another byte)
@example(signed=True, o=32, cg=64, hw=(5, 9), k=3, e=(-2.6812422734997776, -1.953428167162591, -3.1892704148382913),
         seed=750280509)
@example(signed=False, o=32, cg=64, hw=(6, 10), k=1, e=(-5.048164647269381, -4.555930037969649, -2.8599949041869426),
         seed=3059405)
def test_fused_qlinear_add_equals_the_convolution_then_the_add_loop(signed, o, cg, hw, k, e, seed):
    """A convolution with a fused QLinearAdd of another tensor (``post``: what
    qkernels::QLinearConvAdd binds), whose AVX-512 VNNI stage adds in registers with the
    division by Markstein's correction: the bytes of the convolution stored and then the
    QLinearAdd loop (kernels/qbinary.c) over them, on every ISA path, for scales over nine
    octaves (1 and 2 threads; tiles of 16 and 32 columns and partial ones; uint8 inputs read
    in place and int8 ones packed)."""
    rng = np.random.default_rng(seed)
    dt = S8 if signed else U8
    h, wd = hw
    x = _random(rng, (1, h, wd, cg), dt)
    w = rng.integers(-127, 128, (o, k, k, cg)).astype(np.int8)
    sw = rng.uniform(0.002, 0.02, o).astype(np.float32)
    bias = rng.integers(-20000, 20000, o).astype(np.int32)
    za, zy, z1, zb, zy2 = (int(_random(rng, (), dt)) for _ in range(5))
    s1, sb, sy = (float(np.float32(2.0 ** v * rng.uniform(1, 2))) for v in e)
    sy = max(sy, float(np.float32((s1 + sb) * 256 / 2 ** 21)))        # the loop's precondition
    other = _random(rng, (h * wd, o), dt)
    packed = pack_conv_weights(QTensor(w, sw, np.zeros(o, np.int8), axis=0))
    for isa in qkernels._dispatch.tested_isas():
        with qkernels.use_isa(isa):
            for threads in (1, 2):
                qkernels.set_num_threads(threads)
                call = qkernels._conv.ConvCall(QTensor(x, 0.05, za), packed, bias, 1, "same", 1, 1, "NHWC", "OHWI",
                                               0.3, zy, dt, None, "fp32", None)
                fused, plain = (np.empty((h * wd, o), dt) for _ in range(2))
                post = (qkernels._dispatch.isa_index(), other, s1, z1, sb, zb, sy, zy2)
                for c in call.bind(x, fused, post=post):
                    c.run()
                for c in call.bind(x, plain):
                    c.run()
                want = qkernels._native.qlinear_binary(qkernels._dispatch.isa_index(), False, plain.ravel(), s1, z1,
                                                       other.ravel(), sb, zb, sy, zy2, np.empty(plain.size, dt))
                np.testing.assert_array_equal(fused.ravel(), want, err_msg=f"{isa}, {threads} thread(s)")
