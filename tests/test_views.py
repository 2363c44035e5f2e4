"""Every public call on an arbitrary view of its operands gives bit-identically what it
gives on a C-contiguous copy: slices with steps, negative strides, broadcast (zero)
strides, size-1 dimensions of any stride, memory order transposed, batch slices — on
the best ISA path and the scalar one, at 1 and 2 threads (the "big" examples are large
enough for the kernels to really split the work over 2 threads)."""
import os

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import qkernels as qk
from qkernels import QTensor

SMALL = os.environ.get("QKERNELS_TEST_SMALL", "").strip().lower() not in ("", "0", "false", "no")
# The default path, AVX2 (what a VNNI path borrows), one emulated VNNI path, the reference.
ISAS = list(dict.fromkeys((qk.SUPPORTED_ISAS[0], "avx2" if "avx2" in qk.SUPPORTED_ISAS else "scalar",
                           *qk.EMULATED_ISAS[:1], "scalar")))
COMBOS = [(isa, threads) for isa in ISAS for threads in (1, 2)]
VIEWS = settings(max_examples=6 if SMALL else 50, deadline=None)
U8, S8, F16, F32 = (np.dtype(t) for t in (np.uint8, np.int8, np.float16, np.float32))
FLOATS = (F16, F32)


def _values(rng, shape, dtype):
    if dtype == F16:    # multiples of 1/16: exact products, sums far from fp16 rounding ties
        return (rng.integers(-64, 65, shape) / 16).astype(F16)
    if dtype == F32:
        return (rng.standard_normal(shape) * 4).astype(F32)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)


@st.composite
def views(draw, shape, dtype, broadcast=True):
    """A view of ``shape`` into a larger random array: per axis a start, a step (negative
    steps reverse it) or, for ``broadcast``, a zero stride; memory order permuted; size-1
    axes given an arbitrary stride (numpy may leave any value there)."""
    nd = len(shape)
    perm = draw(st.one_of(st.just(list(range(nd))), st.permutations(range(nd))))   # memory order: C or any
    bcast = [broadcast and n > 1 and draw(st.integers(0, 5)) == 5 for n in shape]
    steps = [draw(st.sampled_from((1, 1, 2, -1, -3))) for _ in shape]
    extras = [draw(st.integers(0, 2)) if n > 1 else 0 for n in shape]   # size 1: a natural stride, or below
    base_shape = [1 if b else abs(s) * (n - 1) + 1 + e for n, b, s, e in zip(shape, bcast, steps, extras)]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    base = _values(rng, [base_shape[p] for p in perm], dtype).transpose(np.argsort(perm))
    v = base
    for axis, (n, b, s, e) in enumerate(zip(shape, bcast, steps, extras)):
        if b:
            continue
        start = draw(st.integers(0, e))
        index = [slice(None)] * nd
        index[axis] = slice(start, start + abs(s) * (n - 1) + 1, abs(s))
        v = v[tuple(index)]
        if s < 0:
            index[axis] = slice(None, None, -1)
            v = v[tuple(index)]
    v = np.broadcast_to(v, shape) if any(bcast) else v
    ones = [axis for axis, n in enumerate(shape) if n == 1]
    if ones and draw(st.integers(0, 2)) == 2:
        strides = list(v.strides)
        for axis in ones:
            strides[axis] = draw(st.integers(-7, 7)) * v.itemsize
        v = np.lib.stride_tricks.as_strided(v, shape, strides, writeable=False)
    assert v.shape == tuple(shape)
    return v


def _same(got, want):
    if isinstance(want, tuple):
        assert len(got) == len(want)
        for g, w in zip(got, want):
            _same(g, w)
    elif isinstance(want, QTensor):
        _same(got.data, want.data)
        assert got.axis == want.axis
        np.testing.assert_array_equal(got.scale, want.scale)
        np.testing.assert_array_equal(got.zero_point, want.zero_point)
    else:
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.tobytes() == want.tobytes()   # bit-identical (fp16 -0.0 and NaN payloads included)


def check_views(call, *operands):
    """``call(*operands)`` equals ``call`` on C-contiguous copies on every path and
    thread count (each a fresh call: no state from a previous one)."""
    copies = [np.ascontiguousarray(op) if isinstance(op, np.ndarray) else op for op in operands]
    for isa, threads in COMBOS:
        with qk.use_isa(isa), qk.use_num_threads(threads):
            _same(call(*operands), call(*copies))


def _dim(draw, hi, big=0):
    return big if big else draw(st.integers(1, hi))


@VIEWS
@given(data=st.data(), big=st.integers(0, 4))
def test_int8_matmul_matmul_integer_and_qtensor_matmul_on_views(data, big):
    big = big == 4
    m, k, n = _dim(data.draw, 9, 130 * big), _dim(data.draw, 20, 70 * big), _dim(data.draw, 9, 70 * big)
    batch = () if big else data.draw(st.sampled_from(((), (2,), (1,), (2, 1))))
    a_dt, b_dt = data.draw(st.sampled_from((U8, S8))), data.draw(st.sampled_from((S8, U8)))
    a = data.draw(views((*batch, m, k), a_dt))
    b_batched = bool(batch) and data.draw(st.booleans())
    b = data.draw(views(((batch[0],) if b_batched else ()) + (k, n), b_dt))
    per_column = data.draw(st.booleans())
    za, zb = (0 if a_dt == S8 else 3), (np.arange(n) % 5 if per_column else 2) if b_dt == U8 else 0
    bscale = np.linspace(0.01, 0.02, n).astype(np.float32) if per_column else 0.015
    packed = not b_batched and data.draw(st.booleans())

    def call(a, b):
        aq, bq = QTensor(a, 0.05, za), QTensor(b, bscale, zb, axis=-1 if per_column else None)
        rhs = qk.pack_weights(bq) if packed else bq
        return (qk.matmul(aq, rhs, out_scale=0.7, out_zero_point=1, out_dtype=a_dt),
                qk.matmul(aq, rhs, out_dtype=np.int32),
                qk.matmul_integer(a, b, za, zb),
                aq @ bq)

    check_views(call, a, b)


@VIEWS
@given(data=st.data(), big=st.integers(0, 4), dtype=st.sampled_from(FLOATS))
def test_float_matmul_on_views(data, big, dtype):
    big = big == 4
    m, k, n = _dim(data.draw, 9, 130 * big), _dim(data.draw, 20, 70 * big), _dim(data.draw, 9, 70 * big)
    batch = () if big else data.draw(st.sampled_from(((), (2,), (1, 2))))
    a = data.draw(views((*batch, m, k), dtype))
    b = data.draw(views((k, n), dtype))
    packed, relu = data.draw(st.booleans()), data.draw(st.booleans())
    check_views(lambda a, b: qk.matmul(a, qk.pack_weights(b) if packed else b,
                                       activation="relu" if relu else None), a, b)


@st.composite
def conv_cases(draw, depthwise=False):
    """(x shape, w shape, keywords) of a small convolution, or a big one (split over threads)."""
    big = draw(st.integers(0, 4)) == 4
    dtype = draw(st.sampled_from((U8, S8, F16, F32)))
    layout, weight_layout = draw(st.sampled_from(("NHWC", "NCHW"))), draw(st.sampled_from(("OHWI", "OIHW")))
    kh, kw = draw(st.sampled_from((1, 3))), draw(st.sampled_from((1, 3)))
    stride, dilation = draw(st.sampled_from((1, 2, (1, 2)))), draw(st.sampled_from((1, 1, 2)))
    padding = draw(st.sampled_from((0, 1, "same", (0, 1, 2, 0))))
    if draw(st.booleans()):
        kh = kw = 1
        stride, dilation, padding = 1, 1, 0           # the 1x1 GEMM fast path
    # size-1 dimensions (H == 1 above all) have arbitrary strides: drawn often
    n, h, w = (2, 8, 16) if big else (draw(st.sampled_from((1, 2, 2, 3))), draw(st.sampled_from((1, 1, 2, 3, 5))),
                                       draw(st.sampled_from((1, 2, 3, 6))))
    pads = qk._conv_geometry.explicit_padding(padding, (h, w), (kh, kw), qk._conv_geometry.pair(stride, "s"), qk._conv_geometry.pair(dilation, "d"))
    if h + pads[0] + pads[2] < (kh - 1) * dilation + 1 or w + pads[1] + pads[3] < (kw - 1) * dilation + 1:
        padding = "same"                              # the kernel must fit the padded input
        stride = 1
    if depthwise:
        groups, cg = _dim(draw, 5, 24 * big), 1
        og = 1 if dtype in FLOATS else draw(st.sampled_from((1, 2)))
    else:
        groups = draw(st.sampled_from((1, 1, 2)))
        cg, og = _dim(draw, 4, 32 * big), _dim(draw, 3, 16 * big)
    c, o = cg * groups, og * groups
    x_shape = (n, h, w, c) if layout == "NHWC" else (n, c, h, w)
    w_shape = (o, kh, kw, cg) if weight_layout == "OHWI" else (o, cg, kh, kw)
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, layout=layout, weight_layout=weight_layout)
    if not depthwise:
        kwargs["groups"] = groups
    return dtype, x_shape, w_shape, kwargs


def _conv_check(data, depthwise):
    dtype, x_shape, w_shape, kw = data.draw(conv_cases(depthwise))
    x = data.draw(views(x_shape, dtype))
    w = data.draw(views(w_shape, dtype if dtype in FLOATS else S8))
    o = w_shape[0]
    packed = data.draw(st.booleans())
    conv = qk.depthwise_conv2d if depthwise else qk.conv2d
    wscale = np.linspace(0.01, 0.03, o).astype(np.float32)

    def call(x, w):
        if dtype in FLOATS:
            pw = qk.pack_conv_weights(w, groups=x_shape[3 if kw["layout"] == "NHWC" else 1] if depthwise
                                      else kw["groups"], weight_layout=kw["weight_layout"]) if packed else w
            return conv(x, pw, **kw)
        xq, wq = QTensor(x, 0.05, 4 if dtype == U8 else -3), QTensor(w, wscale, 0, axis=0)
        if packed:
            groups = x_shape[3 if kw["layout"] == "NHWC" else 1] if depthwise else kw["groups"]
            wq = qk.pack_conv_weights(wq, groups=groups, weight_layout=kw["weight_layout"])
        return conv(xq, wq, out_scale=0.9, out_zero_point=2, **kw), conv(xq, wq, out_dtype=np.int32, **kw)

    check_views(call, x, w)


@VIEWS
@given(data=st.data())
def test_conv2d_int8_fp16_fp32_nhwc_and_nchw_on_views(data):
    _conv_check(data, depthwise=False)


@VIEWS
@given(data=st.data(), dtype=st.sampled_from((U8, S8, F16, F32)), n=st.integers(1, 3), h=st.sampled_from((1, 1, 2)),
       w=st.sampled_from((1, 2, 3)), c=st.integers(1, 5), o=st.integers(1, 4))
def test_pointwise_conv2d_reads_pixels_of_views_as_rows_only_when_they_lie_at_one_stride(data, dtype, n, h, w, c, o):
    """The 1x1 stride-1 fast path reads the pixels as (N*H*W, C) rows in place: size-1
    dimensions of any stride, batch and width slices (issue 12, point 1)."""
    x = data.draw(views((n, h, w, c), dtype))
    wt = data.draw(views((o, 1, 1, c), dtype if dtype in FLOATS else S8))
    if dtype in FLOATS:
        check_views(lambda x, wt: qk.conv2d(x, wt), x, wt)
    else:
        check_views(lambda x, wt: qk.conv2d(QTensor(x, 0.1, 3), QTensor(wt, 0.1, 0), out_dtype=np.int32), x, wt)


@VIEWS
@given(data=st.data())
def test_depthwise_conv2d_int8_fp16_fp32_on_views(data):
    _conv_check(data, depthwise=True)


@VIEWS
@given(data=st.data())
def test_quantize_and_dequantize_on_views(data):
    big = data.draw(st.integers(0, 4)) == 4
    shape = (2, 300, 256) if big else tuple(data.draw(st.lists(st.integers(1, 5), min_size=1, max_size=4)))
    x = data.draw(views(shape, F32))
    q = data.draw(views(shape, data.draw(st.sampled_from((U8, S8)))))
    axis = data.draw(st.sampled_from([None] + list(range(len(shape)))))
    n = 1 if axis is None else shape[axis]
    scale = np.linspace(0.05, 0.2, n).astype(np.float32) if axis is not None else np.float32(0.1)
    zp = np.arange(n) % 7 if axis is not None else 3

    def call(x, q):
        return (qk.quantize(x, scale, zp, dtype=np.uint8, axis=axis), qk.dequantize(q, scale, zp, axis=axis),
                QTensor(q, scale, zp, axis=axis).dequantize())

    check_views(call, x, q)


def test_the_view_strategy_draws_every_kind_of_view():
    """The strategy above really yields negative and zero strides and transposed memory
    orders (a guard against it drawing only easy views)."""
    seen = set()

    @settings(max_examples=150, deadline=None, database=None)
    @given(v=views((3, 1, 4), S8))
    def collect(v):
        s = (v.strides[0], v.strides[2])
        seen.update({"negative" if min(s) < 0 else "", "zero" if 0 in s else "",
                     "transposed" if 0 < abs(s[0]) < abs(s[1]) else ""})

    collect()
    assert {"negative", "zero", "transposed"} <= seen
