"""Native ConvTranspose and Resize (graph/backends/cpu_upsample.py, kernels/col2im.c,
kernels/resize.c): ConvTranspose against a float64 numpy reference written here (fp32 sums
in another order: within a stated bound) and onnxruntime; Resize bit for bit against the
reference operator (every mode, coordinate mode, nearest mode, dtype, memory order) and
against onnxruntime where the two agree; the plan and the node-by-node run give the same
bits; explain/profile say "native"; bad arguments raise, never crash."""
import itertools

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

onnx = pytest.importorskip("onnx")
from onnx import helper, numpy_helper  # noqa: E402

from qkernels import _native  # noqa: E402
from qkernels.graph import Session  # noqa: E402
from qkernels.graph.backends.cpu import KERNELS  # noqa: E402
from qkernels.graph.backends.reference.resize import _resize  # noqa: E402
from qkernels.graph.ir import Node  # noqa: E402

EPS32 = 2.0 ** -24      # float32 unit roundoff


def _ort():
    return pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: no ORT comparison")


def _model(nodes, x_dtype, inits, opset=19):
    et = helper.np_dtype_to_tensor_dtype(np.dtype(x_dtype))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", et, None)],
                              [helper.make_tensor_value_info("y", et, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _runs(model, x):
    """(planned result, node-by-node result) and the planned session; asserts the plan ran."""
    planned, nodes = Session(model), Session(model, plan=False)
    first = planned.run(None, {"x": x})[0]
    got = planned.run(None, {"x": x})[0]
    assert planned.last_run == "plan"
    np.testing.assert_array_equal(first, got)
    return got, nodes.run(None, {"x": x})[0], planned


def _nhwc(x):
    """x's values in NHWC memory, as an NCHW view (what the convolutions leave)."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


# --------------------------------------------------------------------------- ConvTranspose

def conv_transpose64(x, w, b, strides, pads, dil, group, out_pad, absolute=False):
    """Float64 ConvTranspose from its definition: input (n, c, i, j) adds x * w[c, o, ky, kx]
    to output (n, g*og + o, i*s + ky*d - pad); the output has s*(in-1) + out_pad +
    (k-1)*d + 1 - pads positions. ``absolute``: the sum of |terms| (for the error bound)."""
    x, w = x.astype(np.float64), w.astype(np.float64)
    if absolute:
        x, w = np.abs(x), np.abs(w)
    n, c, h, wd = x.shape
    og, kh, kw = w.shape[1:]
    cg = c // group
    full = [s * (i - 1) + e + (k - 1) * d + 1 for s, i, e, k, d in zip(strides, (h, wd), out_pad, (kh, kw), dil)]
    y = np.zeros((n, og * group, full[0], full[1]))
    for g, ky, kx in itertools.product(range(group), range(kh), range(kw)):
        contrib = np.einsum("nchw,co->nohw", x[:, g * cg:(g + 1) * cg], w[g * cg:(g + 1) * cg, :, ky, kx])
        oy, ox = ky * dil[0], kx * dil[1]
        y[:, g * og:(g + 1) * og, oy:oy + strides[0] * (h - 1) + 1:strides[0],
          ox:ox + strides[1] * (wd - 1) + 1:strides[1]] += contrib
    if b is not None:
        y += np.abs(b.astype(np.float64))[None, :, None, None] if absolute else b.astype(np.float64)[None, :, None,
                                                                                                       None]
    return y[:, :, pads[0]:full[0] - pads[2], pads[1]:full[1] - pads[3]]


def _conv_transpose_model(w, b, dtype=np.float32, **attrs):
    inits = [numpy_helper.from_array(w.astype(dtype), "W")]
    inputs = ["x", "W"]
    if b is not None:
        inits.append(numpy_helper.from_array(b.astype(dtype), "B"))
        inputs.append("B")
    return _model([helper.make_node("ConvTranspose", inputs, ["y"], **attrs)], dtype, inits, opset=17)


def _bound_ok(got, want64, bound64, terms):
    """|got - exact| within (terms + 2) float32 roundings of the sum of |terms|."""
    tol = (terms + 2) * EPS32 * bound64 + 1e-30
    err = np.abs(got.astype(np.float64) - want64)
    assert np.all(err <= tol), f"error {np.max(err - tol)} over the bound"


@st.composite
def conv_transpose_cases(draw):
    group_kind = draw(st.sampled_from(["one", "two", "depthwise"]))
    cg = 1 if group_kind == "depthwise" else draw(st.integers(1, 5))
    group = {"one": 1, "two": 2, "depthwise": draw(st.integers(1, 7))}[group_kind]
    og = 1 if group_kind == "depthwise" else draw(st.integers(1, 6))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    out_pad = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(strides, dil))
    pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
    n, h, w = draw(st.integers(1, 2)), draw(st.sampled_from([1, 2, 3, 5, 7])), draw(st.sampled_from([1, 2, 4, 5, 11]))
    bias = draw(st.booleans())
    seed = draw(st.integers(0, 2 ** 16))
    return dict(cg=cg, group=group, og=og, k=(kh, kw), strides=strides, dil=dil, out_pad=out_pad, pads=pads,
                shape=(n, cg * group, h, w), bias=bias, seed=seed, nhwc=draw(st.booleans()))


@settings(max_examples=50)
@given(conv_transpose_cases())
def test_conv_transpose_matches_float64_reference_plan_and_nodes_alike(case):
    rng = np.random.default_rng(case["seed"])
    c, group, og = case["shape"][1], case["group"], case["og"]
    strides, dil, pads, out_pad, (kh, kw) = case["strides"], case["dil"], case["pads"], case["out_pad"], case["k"]
    full = [s * (i - 1) + e + (k - 1) * d + 1 for s, i, e, k, d in zip(strides, case["shape"][2:], out_pad, (kh, kw),
                                                                         dil)]
    assume(full[0] - pads[0] - pads[2] >= 1 and full[1] - pads[1] - pads[3] >= 1)
    w = rng.standard_normal((c, og, kh, kw)).astype(np.float32)
    b = rng.standard_normal(og * group).astype(np.float32) if case["bias"] else None
    x = rng.standard_normal(case["shape"]).astype(np.float32)
    if case["nhwc"]:
        x = _nhwc(x)
    model = _conv_transpose_model(w, b, strides=list(strides), dilations=list(dil), pads=list(pads), group=group,
                                  output_padding=list(out_pad))
    got, nodes, session = _runs(model, x)
    np.testing.assert_array_equal(got, nodes)
    want = conv_transpose64(x, w, b, strides, pads, dil, group, out_pad)
    assert got.shape == want.shape and got.dtype == np.float32
    bound = conv_transpose64(x, w, b, strides, pads, dil, group, out_pad, absolute=True)
    _bound_ok(got, want, bound, case["cg"] * kh * kw)
    assert "native       1: ConvTranspose" in session.explain()


@pytest.mark.parametrize("act", ["Relu", "Clip", "shared"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("og, group", [(1, 1), (24, 1), (3, 2)])
def test_conv_transpose_then_relu_or_clip_is_one_fused_node(act, dtype, og, group):
    """ConvTranspose -> Relu or Clip(min, max) (a detection head: the Relu after its
    upsampling's BN) is one qkernels::FusedConvTranspose whose col2im clamps: the unfused
    graph's values (the reference's within the bound), NaN kept; a ConvTranspose whose
    output something else reads too stays apart."""
    rng = np.random.default_rng(og + group)
    c = 4 * group
    w = rng.standard_normal((c, og, 2, 2)).astype(np.float32)
    b = rng.standard_normal(og * group).astype(np.float32)
    model = _conv_transpose_model(w, b, dtype, strides=[2, 2], group=group)
    model.graph.node[0].output[0] = "t"
    et = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    inits = [numpy_helper.from_array(np.array(v, dtype), n) for v, n in ((-0.25, "lo"), (0.75, "hi"))]
    model.graph.initializer.extend(inits)
    model.graph.node.append(helper.make_node("Clip", ["t", "lo", "hi"], ["y"]) if act == "Clip"
                            else helper.make_node("Relu", ["t"], ["y"]))
    if act == "shared":
        model.graph.output.append(helper.make_tensor_value_info("t", et, None))
    x = rng.standard_normal((2, c, 5, 6)).astype(dtype)
    x[1, 0, 2, 3] = np.nan
    planned, nodes = Session(model), Session(model, plan=False)
    ops = [n.key for n in planned.graph.nodes]
    assert ops == (["ConvTranspose", "Relu"] if act == "shared" else ["qkernels::FusedConvTranspose"]), ops
    got, by_nodes = planned.run(None, {"x": x})[-1], nodes.run(None, {"x": x})[-1]
    np.testing.assert_array_equal(got, by_nodes)
    want = Session(model, backends=["reference"]).run(None, {"x": x})[-1]
    assert np.array_equal(np.isnan(got), np.isnan(want))
    tol = 1e-5 if dtype == np.float32 else 2e-3
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)

@pytest.mark.parametrize("attrs", [
    dict(strides=[2, 2], kernel_shape=[2, 2]),                                        # the detection heads' 2x2 s2
    dict(strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]),                  # 3x3 s2 p1 op1
    dict(strides=[3, 2], pads=[0, 2, 1, 0], dilations=[2, 1], group=2),
    dict(strides=[2, 2], auto_pad="SAME_UPPER"),
    dict(strides=[2, 3], auto_pad="SAME_LOWER"),
    dict(strides=[2, 2], auto_pad="VALID", output_padding=[1, 0]),
    dict(strides=[2, 2], output_shape=[13, 15]),
    dict(strides=[1, 1], group=6),                                                    # depthwise
])
def test_conv_transpose_geometries_match_onnxruntime(attrs):
    ort = _ort()
    rng = np.random.default_rng(1)
    groups = attrs.get("group", 1)
    k = attrs.get("kernel_shape", [3, 3])
    w = rng.standard_normal((6, 8 // groups if groups != 6 else 1, *k)).astype(np.float32)
    b = rng.standard_normal(w.shape[1] * groups).astype(np.float32)
    x = rng.standard_normal((2, 6, 6, 7)).astype(np.float32)
    model = _conv_transpose_model(w, b, **attrs)
    got, nodes, session = _runs(model, _nhwc(x))
    np.testing.assert_array_equal(got, nodes)
    want = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
    profile = session.run(None, {"x": x}, profile=True) and session.last_profile
    assert [r["placement"] for r in profile if r["op"] == "ConvTranspose"] == ["native"]


def test_conv_transpose_float16_rounds_the_float32_result_once():
    rng = np.random.default_rng(2)
    w = (rng.standard_normal((4, 3, 3, 3)) * 0.5).astype(np.float16)
    b = rng.standard_normal(3).astype(np.float16)
    x = rng.standard_normal((1, 4, 5, 6)).astype(np.float16)
    attrs = dict(strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1])
    model = _conv_transpose_model(w, b, np.float16, **attrs)
    got, nodes, session = _runs(model, x)
    np.testing.assert_array_equal(got, nodes)
    assert got.dtype == np.float16 and "native       1: ConvTranspose" in session.explain()
    want = conv_transpose64(x, w, b, [2, 2], [1, 1, 1, 1], [1, 1], 1, [1, 1])
    bound = conv_transpose64(x, w, b, [2, 2], [1, 1, 1, 1], [1, 1], 1, [1, 1], absolute=True)
    # one fp16 rounding (half an ulp: 2^-11 relative) after the fp32 sums
    err = np.abs(got.astype(np.float64) - want)
    assert np.all(err <= 2.0 ** -11 * np.abs(want) + 40 * EPS32 * bound + 2.0 ** -25)


def test_conv_transpose_reads_any_view_of_its_input():
    """The runner on views (steps, negative strides, transposes) gives the bits of the same
    call on a contiguous copy."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal((4, 5, 3, 2)).astype(np.float32)
    model = _conv_transpose_model(w, rng.standard_normal(5).astype(np.float32), strides=[2, 1], pads=[1, 0, 0, 1])
    graph = Session(model).graph
    (node,) = graph.nodes
    run = KERNELS["ConvTranspose"](node, graph)
    base = rng.standard_normal((3, 9, 8, 12)).astype(np.float32)
    views = [base[:2, 1:9:2, 1:6, ::3], base[::-1, 1:5, ::-1, ::-2], base.transpose(0, 3, 1, 2)[:, 2:6, ::2],
             _nhwc(base[:, :4])]
    for v in views:   # (no "B" in the values: a fall back to the reference operator would fail)
        got = run({"x": v, "W": w})["y"]
        want = run({"x": np.ascontiguousarray(v), "W": w})["y"]
        np.testing.assert_array_equal(got, want)


def test_conv_transpose_refusals_and_bad_arguments():
    rng = np.random.default_rng(4)
    w = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    model = _conv_transpose_model(w, None, strides=[2, 2])
    with pytest.raises(Exception, match="channels"):
        Session(model).run(None, {"x": np.zeros((1, 3, 4, 4), np.float32)})
    cols = np.zeros((16, 18), np.float32)
    y = np.zeros((1, 9, 9, 2), np.float32)
    _native.col2im(cols, y, 4, 4, 1, 3, 3, 2, 2, 1, 1, 0, 0)      # fits
    with pytest.raises(ValueError):
        _native.col2im(cols[:, :10], y, 4, 4, 1, 3, 3, 2, 2, 1, 1, 0, 0)     # too few columns
    with pytest.raises(ValueError):
        _native.col2im(cols, y, 5, 4, 1, 3, 3, 2, 2, 1, 1, 0, 0)             # rows do not match
    with pytest.raises(ValueError):
        _native.col2im(cols, y, 4, 4, 1, 3, 3, 0, 2, 1, 1, 0, 0)             # stride 0
    with pytest.raises(ValueError):
        _native.col2im(cols.astype(np.float64), y, 4, 4, 1, 3, 3, 2, 2, 1, 1, 0, 0)
    with pytest.raises(ValueError):
        _native.col2im(cols, y, 4, 4, 1, 3, 3, 2, 2, 1, 1, 0, 0, bias=np.zeros(3, np.float32))
    ro = y.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError):
        _native.col2im(cols, ro, 4, 4, 1, 3, 3, 2, 2, 1, 1, 0, 0)


# --------------------------------------------------------------------------------- Resize

COORDS = ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "half_pixel_symmetric"]
NEAREST = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]
DTYPES = [np.float32, np.float16, np.uint8, np.int8, np.float64]


def _resize_model(dtype, scales=None, sizes=None, opset=19, **attrs):
    inits = [numpy_helper.from_array(np.array([], np.float32), "roi")]
    inputs = ["x", "roi"]
    if scales is not None:
        inits.append(numpy_helper.from_array(np.array(scales, np.float32), "scales"))
        inputs.append("scales")
    else:
        inits.append(numpy_helper.from_array(np.array([], np.float32), "scales"))
        inits.append(numpy_helper.from_array(np.array(sizes, np.int64), "sizes"))
        inputs += ["scales", "sizes"]
    return _model([helper.make_node("Resize", inputs, ["y"], **attrs)], dtype, inits, opset=opset)


def _reference(x, scales=None, sizes=None, **attrs):
    node = Node("r", "Resize", "", ["x", "roi", "scales", "sizes"], ["y"], attrs)
    return _resize(node, x, None, None if scales is None else np.array(scales, np.float32),
                   None if sizes is None else np.array(sizes, np.int64))


def _values(rng, shape, dtype):
    v = rng.standard_normal(shape) * (60 if np.dtype(dtype).kind in "iu" else 3)
    if np.dtype(dtype).kind == "u":
        v = v + 128
    return np.clip(v, -128 if dtype == np.int8 else 0 if dtype == np.uint8 else -1e9, 255).astype(dtype)


@st.composite
def resize_cases(draw):
    mode = draw(st.sampled_from(["nearest", "linear"]))
    factor = st.sampled_from([1.0, 2.0, 3.0, 0.5, 0.25, 0.6, 1.7, 2.5, 0.34, 1.25])
    use_sizes = draw(st.booleans())
    shape = (draw(st.integers(1, 2)), draw(st.sampled_from([1, 2, 3, 5])), draw(st.sampled_from([1, 2, 5, 7])),
             draw(st.sampled_from([1, 3, 4, 11])))
    scales = (1.0, 1.0, draw(factor), draw(factor))
    sizes = None
    if use_sizes:
        sizes = (shape[0], shape[1], draw(st.integers(1, 12)), draw(st.integers(1, 12)))
    return dict(mode=mode, coords=draw(st.sampled_from(COORDS)), nearest=draw(st.sampled_from(NEAREST)),
                dtype=draw(st.sampled_from(DTYPES)), shape=shape, scales=None if use_sizes else scales, sizes=sizes,
                layout=draw(st.sampled_from(["nchw", "nhwc", "view"])), seed=draw(st.integers(0, 2 ** 16)),
                policy=draw(st.sampled_from(["stretch", "stretch", "not_larger", "not_smaller"])) if use_sizes
                else "stretch")


@settings(max_examples=60)
@given(resize_cases())
def test_resize_equals_the_reference_operator_bit_for_bit(case):
    rng = np.random.default_rng(case["seed"])
    x = _values(rng, case["shape"], case["dtype"])
    if case["layout"] == "nhwc":
        x = _nhwc(x)
    elif case["layout"] == "view":
        big = _values(rng, (case["shape"][0] + 1, case["shape"][1], case["shape"][2] * 2, case["shape"][3] + 3),
                      case["dtype"])
        x = big[1:, :, ::-2, 2:case["shape"][3] + 2][:, :, :case["shape"][2]]
    attrs = dict(mode=case["mode"], coordinate_transformation_mode=case["coords"], nearest_mode=case["nearest"])
    if case["policy"] != "stretch":
        attrs["keep_aspect_ratio_policy"] = case["policy"]
        attrs["axes"] = [2, 3]
        sizes = case["sizes"][2:]
    else:
        sizes = case["sizes"]
    want = _reference(x, case["scales"], sizes, **attrs)
    model = _resize_model(case["dtype"], case["scales"], sizes, **attrs)
    got, nodes, session = _runs(model, x)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(nodes, want)
    assert got.dtype == want.dtype
    assert "native       1: Resize" in session.explain()


@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("dtype", [np.float32, np.uint8, np.float16])
def test_resize_bound_call_reads_and_writes_any_views(mode, dtype):
    """_native.resize on views of x and y (steps, negative strides, transposes) gives the
    bits of the same call on contiguous arrays."""
    rng = np.random.default_rng(5)
    base = _values(rng, (3, 6, 9, 10), dtype)
    x = base[::-1, 1:5, ::2, 1:8]                       # (3, 4, 5, 7), strided and reversed
    n, c, h, w = x.shape
    oh, ow = 7, 4
    iy0, ix0 = np.array([0, 0, 1, 2, 2, 3, 4]), np.array([0, 2, 4, 6])
    kw = dict(iy0=iy0, ix0=ix0)
    if mode == "linear":
        kw.update(iy1=np.minimum(iy0 + 1, h - 1), ix1=np.minimum(ix0 + 1, w - 1), wy0=rng.random(oh),
                  wy1=rng.random(oh), wx0=rng.random(ow), wx1=rng.random(ow), linear=True)
    want = np.empty((n, c, oh, ow), dtype)
    _native.resize(np.ascontiguousarray(x), want, **kw)
    for xv in (x, _nhwc(np.ascontiguousarray(x))):
        ybase = np.zeros((n, ow * 2, oh, c), dtype)
        y = ybase[:, ::-2].transpose(0, 3, 2, 1)           # (n, c, oh, ow), channels last, W reversed
        _native.resize(xv, y, num_threads=2, **kw)
        np.testing.assert_array_equal(y, want)


def test_resize_opsets_and_what_stays_on_the_reference():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((1, 3, 5, 6)).astype(np.float32)
    # opset 11 (converted at load) with tf_half_pixel_for_nn: native, the reference's bits
    m11 = _resize_model(np.float32, (1, 1, 2, 1.5), opset=11, mode="nearest",
                        coordinate_transformation_mode="tf_half_pixel_for_nn")
    got, nodes, session = _runs(m11, x)
    np.testing.assert_array_equal(got, nodes)
    assert "native       1: Resize" in session.explain()
    ort = _ort()
    np.testing.assert_array_equal(got, ort.InferenceSession(m11.SerializeToString()).run(None, {"x": x})[0])
    for attrs in (dict(mode="cubic"), dict(mode="linear", antialias=1)):
        model = _resize_model(np.float32, (1, 1, 0.5, 0.5), **attrs)
        got, nodes, session = _runs(model, x)
        np.testing.assert_array_equal(got, nodes)
        np.testing.assert_array_equal(got, _reference(x, (1, 1, 0.5, 0.5), **attrs))
        assert "native" not in session.explain()
    # resizing the channels: the reference runs it (a 4-D resize of H and W only is native)
    model = _resize_model(np.float32, (1, 2, 1, 1), mode="nearest")
    got, nodes, _ = _runs(model, x)
    np.testing.assert_array_equal(got, _reference(x, (1, 2, 1, 1), mode="nearest"))


ORT_CASES = [(m, c, n, s) for m in ("nearest", "linear") for c in COORDS if c != "align_corners"
             for n in (NEAREST if m == "nearest" else NEAREST[:1])
             for s in ((1, 1, 2, 2), (1, 1, 3, 1), (1, 1, 0.5, 0.5))]


@pytest.mark.parametrize("mode,coords,nearest,scales", ORT_CASES)
def test_resize_matches_onnxruntime(mode, coords, nearest, scales):
    """Whole and halving factors (where ORT's coordinates equal the reference's):
    nearest exactly; linear float32 within 2 ulp of the blend (ORT weighs in another
    order). int8/uint8 linear differ from ORT by 1 in places: ORT rounds its own way, the
    reference (and so qkernels) rounds the float64 blend half to even."""
    ort = _ort()
    rng = np.random.default_rng(7)
    # even sizes: halving gives whole output lengths (with a fractional one, 7 * 0.5, the
    # reference's half_pixel_symmetric centres on 3.5 pixels, ORT on 3: they differ)
    x = rng.standard_normal((2, 3, 6, 8)).astype(np.float32)
    model = _resize_model(np.float32, scales, mode=mode, coordinate_transformation_mode=coords, nearest_mode=nearest)
    got, _, _ = _runs(model, _nhwc(x))
    want = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    if mode == "nearest":
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=0, atol=4 * 2.0 ** -23 * np.max(np.abs(x)))


def test_resize_align_corners_by_sizes_matches_onnxruntime():
    ort = _ort()
    rng = np.random.default_rng(8)
    x = rng.standard_normal((1, 2, 5, 4)).astype(np.float32)
    for mode in ("nearest", "linear"):
        model = _resize_model(np.float32, sizes=(1, 2, 9, 7), mode=mode, coordinate_transformation_mode="align_corners")
        got, _, _ = _runs(model, x)
        want = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_resize_linear_rounds_and_saturates_integers_and_keeps_nan():
    x = np.array([[[[0, 255], [255, 0]]]], np.uint8)
    model = _resize_model(np.uint8, (1, 1, 2, 2), mode="linear", coordinate_transformation_mode="asymmetric")
    got, _, _ = _runs(model, x)
    np.testing.assert_array_equal(got, _reference(x, (1, 1, 2, 2), mode="linear",
                                                  coordinate_transformation_mode="asymmetric"))
    assert got[0, 0, 0, 1] == 128     # 127.5 rounds half to even
    xs = np.array([[[[-128, 127, -128]]]], np.int8)
    model = _resize_model(np.int8, (1, 1, 1, 1.5), mode="linear")
    got, _, _ = _runs(model, xs)
    np.testing.assert_array_equal(got, _reference(xs, (1, 1, 1, 1.5), mode="linear"))
    xf = np.array([[[[1.0, np.nan, np.inf, -np.inf, 2.0]]]], np.float32)
    model = _resize_model(np.float32, (1, 1, 2, 2), mode="linear")
    with np.errstate(invalid="ignore"):
        want = _reference(xf, (1, 1, 2, 2), mode="linear")
    got, _, _ = _runs(model, xf)
    np.testing.assert_array_equal(got, want)


def test_resize_bad_arguments_raise():
    x = np.zeros((1, 2, 3, 4), np.float32)
    y = np.zeros((1, 2, 5, 6), np.float32)
    iy, ix = np.zeros(5, np.int32), np.zeros(6, np.int32)
    _native.resize(x, y, iy, ix)
    with pytest.raises(ValueError):
        _native.resize(x, y, iy, np.full(6, 4))                 # an index past W
    with pytest.raises(ValueError):
        _native.resize(x, y, iy[:4], ix)                        # too short
    with pytest.raises(ValueError):
        _native.resize(x, y.astype(np.float64), iy, ix)         # dtypes differ
    with pytest.raises(ValueError):
        _native.resize(x, np.zeros((1, 3, 5, 6), np.float32), iy, ix)   # channels differ
    with pytest.raises(TypeError):
        _native.resize(x.astype(np.int32), y.astype(np.int32), iy, ix, iy, ix, iy, iy, ix, ix, linear=True)
    with pytest.raises(ValueError):
        _native.resize(x, y, iy, ix, iy, ix, np.zeros(5), np.zeros(5), np.zeros(6), np.zeros(6), linear=True,
                       pass_h=False)                            # an unblended axis must keep its length
    ro = y.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError):
        _native.resize(x, ro, iy, ix)


# ------------------------------------------------------------------------- a real detector

def test_paddleocr_detector_upsampling_is_native_and_matches_onnxruntime():
    """PP-OCRv4's text detector (cached by qkernels.bench.real_models; never downloaded
    here): its ConvTranspose and Resize nodes run native; the plan equals the
    node-by-node run; the probability map is ORT's within float32 rounding."""
    real_models = pytest.importorskip("qkernels.bench.real_models")
    if not real_models.cached("detector"):
        pytest.skip("the PaddleOCR detector is not in the model cache")
    path = real_models.CACHE / real_models.MODELS["detector"]
    rng = np.random.default_rng(9)
    x = rng.uniform(-1, 1, (1, 3, 160, 192)).astype(np.float32)
    planned, nodes = Session(str(path)), Session(str(path), plan=False)
    name = planned.get_inputs()[0].name if hasattr(planned, "get_inputs") else "x"
    planned.run(None, {name: x})
    (got,) = planned.run(None, {name: x})
    (by_nodes,) = nodes.run(None, {name: x})
    np.testing.assert_array_equal(got, by_nodes)
    profile = planned.run(None, {name: x}, profile=True) and planned.last_profile
    rows = [r for r in profile if r["op"] in ("ConvTranspose", "qkernels::FusedConvTranspose", "Resize")]
    assert len(rows) == 8 and {r["placement"] for r in rows} == {"native"}
    # (its head's BatchNormalization folded into the ConvTranspose, the Relu after it fused)
    assert not {r["placement"] for r in profile} & {"reference", "numpy"}
    ort = _ort()
    want = ort.InferenceSession(str(path)).run(None, {name: x})[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


# ------------------------------------------------------------------------- ISA builds

@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64, np.uint8, np.int8])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_each_isa_build_gives_the_portable_bits(isa, dtype, layout):
    """kernels/avx2/{resize,col2im}_avx2.c (the portable C with AVX2 flags, no contraction)
    against the baseline build: the same bits, extremes and NaN included."""
    from qkernels import _dispatch
    rng = np.random.default_rng(10)
    x = _values(rng, (2, 19, 7, 9), dtype)
    if np.dtype(dtype).kind == "f":
        x.reshape(-1)[:4] = [np.inf, -np.inf, np.nan, np.finfo(dtype).max]
    if layout == "nhwc":
        x = _nhwc(x)
    oh, ow = 13, 5
    iy0, ix0 = rng.integers(0, 7, oh), rng.integers(0, 9, ow)
    for kw in (dict(iy0=iy0, ix0=ix0),
               dict(iy0=iy0, ix0=ix0, iy1=rng.integers(0, 7, oh), ix1=rng.integers(0, 9, ow), wy0=rng.random(oh),
                    wy1=rng.random(oh) * 3, wx0=rng.random(ow) - 0.5, wx1=rng.random(ow), linear=True)):
        with np.errstate(invalid="ignore", over="ignore"):
            want = _native.resize(x, np.empty((2, 19, oh, ow), dtype), isa=0, **kw)
            got = _native.resize(x, np.empty((2, 19, oh, ow), dtype), isa=_dispatch.isa_index(), num_threads=2, **kw)
        np.testing.assert_array_equal(got, want)
    if dtype in (np.float32, np.float16):
        cols = rng.standard_normal((2 * 7 * 9, 3 * 3 * 2 * 19)).astype(np.float32)
        cols[:3, :3] = [np.inf, -np.inf, np.nan]
        bias = rng.standard_normal(2 * 19).astype(np.float32)
        for k in (3, 2):
            y0, y1 = (np.empty((2, 15, 19, 38), dtype) for _ in range(2))
            args = (7, 9, 2, k, k, 2, 2, 1, 1, 1, 0)
            with np.errstate(invalid="ignore"):
                _native.col2im(cols[:, :k * k * 38], y0, *args, bias=bias, lo=-1.5, isa=0)
                _native.col2im(cols[:, :k * k * 38], y1, *args, bias=bias, lo=-1.5, isa=_dispatch.isa_index(),
                               num_threads=2)
            np.testing.assert_array_equal(y1, y0)


def test_col2im_writes_any_view_of_its_output():
    rng = np.random.default_rng(11)
    cols = rng.standard_normal((5 * 6, 3 * 3 * 7)).astype(np.float32)
    bias = rng.standard_normal(7).astype(np.float32)
    want = _native.col2im(cols, np.empty((1, 11, 13, 7), np.float32), 5, 6, 1, 3, 3, 2, 2, 1, 1, 0, 0, bias=bias)
    for dtype in (np.float32, np.float16):
        base = np.zeros((2, 13, 26, 9), dtype)
        y = base[1:, ::-1, ::-2][:, :11, :13, 1:8][:, :, :, ::-1]     # reversed rows and channels, stepped columns
        _native.col2im(cols, y, 5, 6, 1, 3, 3, 2, 2, 1, 1, 0, 0, bias=bias)
        np.testing.assert_array_equal(y, want.astype(dtype))


def test_resize_with_scales_computed_at_run_time_runs_native_unbound():
    """Scales that are not constants: the native runner (tables per call), not bound."""
    rng = np.random.default_rng(12)
    node = helper.make_node("Resize", ["x", "", "s"], ["y"], mode="linear")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", 1, None),
                                            helper.make_tensor_value_info("s", 1, [4])],
                              [helper.make_tensor_value_info("y", 1, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 8
    s = Session(model)
    x = rng.standard_normal((1, 4, 5, 6)).astype(np.float32)
    for scales in ((1, 1, 2, 2), (1, 1, 0.5, 1.5), (1, 1, 2, 2)):
        sc = np.array(scales, np.float32)
        got = s.run(None, {"x": x, "s": sc})[0]
        np.testing.assert_array_equal(got, _reference(x, scales, mode="linear"))
    assert "native       1: Resize" in s.explain()
