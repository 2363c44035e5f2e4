"""NCHW <-> NHWC conversion (qkernels._layout on kernels/layout.c): bit-identical to
numpy's transposing copy for every element size, shape and view, on every ISA path
(the portable blocked loop on "scalar", the SIMD tiles elsewhere) and thread count;
and what conv2d(layout="NCHW") and the graph runner do with it.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import as_strided

import qkernels as qk
from qkernels import QTensor, _layout, _native
from qkernels._layout import nchw_to_nhwc, nhwc_to_nchw

SMALL = os.environ.get("QKERNELS_TEST_SMALL", "").strip().lower() not in ("", "0", "false", "no")
TO_NHWC, TO_NCHW = (0, 2, 3, 1), (0, 3, 1, 2)
DTYPES = tuple(np.dtype(t) for t in (np.uint8, np.int8, np.bool_, np.float16, np.int16, np.uint16, np.float32,
                                     np.int32, np.uint32))
# 1, odd, prime, around the SIMD tiles (4, 8, 16 rows; 8, 16, 32 columns) and past them
SIZES = (1, 2, 3, 4, 5, 7, 8, 9, 13, 15, 16, 17, 31, 32, 33, 47, 64, 65)
LAYOUT = settings(max_examples=15 if SMALL else 120, deadline=None)


def _bits(a: np.ndarray) -> np.ndarray:
    """The array's bytes per element as unsigned ints: compares NaN payloads and -0.0."""
    return a.view(f"u{a.itemsize}") if a.dtype != np.bool_ else a.view(np.uint8)


def _random(rng, size: int, dtype: np.dtype) -> np.ndarray:
    """Random bit patterns: extreme values, NaN, inf and subnormals among them."""
    raw = rng.integers(0, 256, size * dtype.itemsize, dtype=np.uint8)
    return (raw & 1).view(np.bool_) if dtype == np.bool_ else raw.view(dtype)


@st.composite
def arrays4d(draw, big=False):
    """A 4-D array of any of DTYPES behind arbitrary strides: a natural memory order
    (any axis order) with steps, reversals and broadcast (zero) strides, or strides
    drawn freely (overlapping elements too: the source is only read)."""
    dtype = draw(st.sampled_from(DTYPES))
    shape = [draw(st.sampled_from((1, 2, 3))), draw(st.sampled_from(SIZES)), draw(st.sampled_from((1, 2, 3, 5))),
             draw(st.sampled_from(SIZES))]
    if big:                                   # past the walk's 256-row blocks
        shape[draw(st.sampled_from((1, 3)))] = draw(st.sampled_from((256, 257, 300)))
    item = dtype.itemsize
    if draw(st.booleans()):
        strides = [draw(st.integers(-70, 70)) * item for _ in shape]
    else:
        order = draw(st.permutations(range(4)))
        natural, step = [0] * 4, item
        for axis in reversed(order):
            natural[axis] = step
            step *= shape[axis] + draw(st.integers(0, 2))         # padding between rows
        strides = [0 if n > 1 and draw(st.integers(0, 6)) == 6 else s * draw(st.sampled_from((1, 1, 1, 2, -1, -3)))
                   for n, s in zip(shape, natural)]
    lo = sum(min(0, s * (n - 1)) for s, n in zip(strides, shape))
    hi = sum(max(0, s * (n - 1)) for s, n in zip(strides, shape))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    buf = _random(rng, (hi - lo) // item + 1, dtype)
    return as_strided(buf[-lo // item:], shape, strides, writeable=False)


def _check(x: np.ndarray) -> None:
    for convert, perm in ((nchw_to_nhwc, TO_NHWC), (nhwc_to_nchw, TO_NCHW)):
        want = np.ascontiguousarray(x.transpose(perm))
        got = convert(x)
        assert got.flags.c_contiguous and got.dtype == x.dtype and got.shape == want.shape
        np.testing.assert_array_equal(_bits(got), _bits(want))
        out = np.full(want.shape, 1, x.dtype)
        assert convert(x, out) is out
        np.testing.assert_array_equal(_bits(out), _bits(want))


@LAYOUT
@given(x=arrays4d())
def test_conversions_equal_numpys_transposing_copy_bit_for_bit(isa, x):
    _check(x)


@settings(max_examples=4 if SMALL else 20, deadline=None)
@given(x=arrays4d(big=True))
def test_conversions_of_blocks_past_256_rows(isa, x):
    _check(x)


@pytest.mark.parametrize("dtype", [np.int8, np.float16, np.float32])
def test_large_images(isa, dtype):
    """Whole images (one transpose each), and views converted one row of pixels at a time."""
    rng = np.random.default_rng(dtype().itemsize)
    base = _random(rng, 2 * 67 * 61 * 83, np.dtype(dtype)).reshape(2, 67, 61, 83)
    for x in (base, base[:1], base[:, ::-1, 1:, ::2], base[:, :, :, 5:], base.transpose(0, 2, 1, 3)):
        _check(x)
    # 2 and 3 channels (an RGB image: fewer rows than a SIMD tile, the few-rows loop)
    for x in (base[:, :3], base[:, :2], base[:, 4:1:-1], base[:, ::30], base[:, :3, 1:, 3:]):
        _check(x)


@pytest.mark.parametrize("hw", [(1, 1), (1, 15), (1, 16), (4, 4), (3, 17), (47, 65), (224, 224)])
def test_three_byte_channels_interleave_like_numpy(isa, hw):
    """An RGB image's NCHW planes to NHWC (the 3-row interleave; 16 columns at a time with
    SIMD, then the tail), contiguous and through views (padded rows, reversed, stepped)."""
    rng = np.random.default_rng(hw[0] * 1000 + hw[1])
    base = _random(rng, 2 * 3 * (hw[0] + 1) * (2 * hw[1] + 1), np.dtype(np.uint8)).reshape(2, 3, hw[0] + 1, -1)
    for x in (base[:, :, :hw[0], :hw[1]], base[:1, :, 1:, 1:hw[1] + 1], base[:, ::-1, :hw[0], ::2][..., :hw[1]],
              np.ascontiguousarray(base[:, :, :hw[0], :hw[1]]).view(np.int8)):
        _check(x)


def test_copy_false_returns_the_view_when_it_is_already_contiguous():
    nhwc = np.arange(2 * 3 * 4 * 5, dtype=np.int8).reshape(2, 3, 4, 5)
    nchw_view = nhwc.transpose(TO_NCHW)
    same = nchw_to_nhwc(nchw_view, copy=False)
    assert same.base is not None and np.shares_memory(same, nhwc) and same.flags.c_contiguous
    copied = nchw_to_nhwc(nchw_view)
    assert not np.shares_memory(copied, nhwc)
    np.testing.assert_array_equal(copied, nhwc)
    other = nchw_to_nhwc(nhwc, copy=False)            # not contiguous as NHWC: a copy
    assert not np.shares_memory(other, nhwc)
    np.testing.assert_array_equal(nhwc_to_nchw(nhwc.transpose(TO_NHWC), copy=False), nhwc)


def test_empty_arrays():
    for shape in ((0, 3, 4, 5), (2, 0, 4, 5), (2, 3, 0, 5), (2, 3, 4, 0)):
        x = np.zeros(shape, np.float32)
        assert nchw_to_nhwc(x).shape == x.transpose(TO_NHWC).shape
        assert nhwc_to_nchw(x).shape == x.transpose(TO_NCHW).shape


def test_bad_input_is_refused_with_a_clear_exception():
    x = np.zeros((1, 2, 3, 4), np.int8)
    for convert in (nchw_to_nhwc, nhwc_to_nchw):
        with pytest.raises(TypeError, match="numpy array"):
            convert([[[[1]]]])
        with pytest.raises(ValueError, match="4-D"):
            convert(np.zeros((2, 3, 4), np.int8))
        for dtype in (np.float64, np.int64, np.complex64, object, "U1", "V2"):
            with pytest.raises(TypeError, match="1-, 2- or 4-byte"):
                convert(np.zeros((1, 2, 3, 4), dtype))
    with pytest.raises(ValueError, match="shape"):
        nchw_to_nhwc(x, np.zeros((1, 2, 3, 4), np.int8))
    with pytest.raises(TypeError, match="dtype"):
        nchw_to_nhwc(x, np.zeros((1, 3, 4, 2), np.uint8))
    with pytest.raises(ValueError, match="C-contiguous"):
        nchw_to_nhwc(x, np.zeros((1, 4, 3, 2), np.int8).transpose(0, 2, 1, 3))
    with pytest.raises(ValueError, match="C-contiguous"):
        out = np.zeros((1, 3, 4, 2), np.int8)
        out.flags.writeable = False
        nchw_to_nhwc(x, out)
    square = np.zeros((1, 4, 4, 4), np.int8)
    with pytest.raises(ValueError, match="overlaps"):
        nchw_to_nhwc(square, square)
    # the native entry checks again before it writes
    with pytest.raises(ValueError):
        _native.transpose_layout(x, np.zeros((1, 2, 3, 4), np.int8), True, True)
    with pytest.raises(ValueError):
        _native.transpose_layout(x, np.zeros((1, 3, 4, 2), np.int16), True, True)
    with pytest.raises(ValueError):
        _native.transpose_layout(np.zeros((1, 2, 3, 4), np.int64), np.zeros((1, 3, 4, 2), np.int64), True, True)
    assert _layout.convertible(np.dtype(np.float16)) and not _layout.convertible(np.dtype(np.float64))


# ------------------------------------------------------------------ conv2d with NCHW

@settings(max_examples=10 if SMALL else 40, deadline=None)
@given(data=st.data(), depthwise=st.booleans(), f16=st.booleans(), c=st.sampled_from((1, 3, 16, 17, 33)),
       h=st.sampled_from((1, 5, 8)), w=st.sampled_from((1, 7, 16, 19)), step=st.sampled_from((1, -1, 2)))
def test_conv2d_nchw_on_views_equals_the_nhwc_call_on_a_contiguous_copy(isa, data, depthwise, f16, c, h, w, step):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    n, o = 2, c if depthwise else data.draw(st.sampled_from((1, 5, 16)))
    groups = c if depthwise else 1
    base = rng.integers(-128, 128, (n, c * abs(step), h + 2, w * abs(step))).astype(np.float16 if f16 else np.int8)
    x = base[:, ::step, 1:h + 1, ::step]                     # NCHW view: steps, reversal, offset
    wt = rng.integers(-127, 128, (o, 3, 3, 1 if depthwise else c)).astype(np.float16 if f16 else np.int8)
    x_nhwc = np.ascontiguousarray(x.transpose(TO_NHWC))
    kw = dict(stride=data.draw(st.sampled_from((1, 2))), padding=1)
    if f16:
        wt = wt / np.float16(64)
        pw = qk.pack_conv_weights(wt, groups=groups)
        want = qk.conv2d(x_nhwc / np.float16(16), pw, **kw)
        got = qk.conv2d(x / np.float16(16), pw, layout="NCHW", **kw)
        out = np.empty(got.shape, np.float16)
        assert qk.conv2d(x / np.float16(16), pw, layout="NCHW", out=out, **kw) is out
    else:
        pw = qk.pack_conv_weights(QTensor(wt, np.linspace(0.01, 0.02, o).astype(np.float32), 0, axis=0),
                                  groups=groups)
        kw.update(out_scale=0.5, out_zero_point=3)
        want = qk.conv2d(QTensor(x_nhwc, 0.05, -3), pw, **kw).data
        got = qk.conv2d(QTensor(x, 0.05, -3), pw, layout="NCHW", **kw).data
        out = np.empty(got.shape, np.int8)
        assert qk.conv2d(QTensor(x, 0.05, -3), pw, layout="NCHW", out=out, **kw).data is out
    assert got.flags.c_contiguous
    np.testing.assert_array_equal(_bits(got), _bits(np.ascontiguousarray(want.transpose(TO_NCHW))))
    np.testing.assert_array_equal(_bits(out), _bits(got))


def test_nchw_results_are_independent_arrays_in_every_thread():
    """Each NCHW result is its own array: a later call (any layer size, any thread) leaves
    earlier results as they were."""
    import threading
    rng = np.random.default_rng(5)
    w = QTensor(rng.integers(-127, 128, (8, 3, 3, 6)).astype(np.int8), 0.02, 0)
    f16w = (rng.integers(-64, 64, (8, 3, 3, 6)) / 64).astype(np.float16)

    def case(seed, h):
        x = np.random.default_rng(seed).integers(-128, 128, (1, 6, h, h + 1)).astype(np.int8)
        want = qk.conv2d(QTensor(np.ascontiguousarray(x.transpose(TO_NHWC)), 0.1, 1), w, padding=1,
                         out_scale=0.3).data.transpose(TO_NCHW)
        want16 = qk.conv2d(np.ascontiguousarray(x.transpose(TO_NHWC)) / np.float16(8), f16w, padding=1)
        return x, want, want16.transpose(TO_NCHW)

    def run(seed, sizes, errors):
        try:
            kept = []
            for h in sizes:
                x, want, want16 = case(seed + h, h)
                got = qk.conv2d(QTensor(x, 0.1, 1), w, padding=1, out_scale=0.3, layout="NCHW").data
                got16 = qk.conv2d(x / np.float16(8), f16w, padding=1, layout="NCHW")
                kept.append((got, want, got16, want16))
            for got, want, got16, want16 in kept:
                np.testing.assert_array_equal(got, want)
                np.testing.assert_array_equal(got16, want16)
            assert not any(np.shares_memory(a[0], b[0]) for a in kept for b in kept if a is not b)
        except Exception as e:   # noqa: BLE001 - reported by the main thread
            errors.append(e)

    errors: list = []
    threads = [threading.Thread(target=run, args=(i * 100, (9, 3, 17, 5, 9), errors)) for i in range(3)]
    for t in threads:
        t.start()
    run(1000, (4, 30, 2), errors)
    for t in threads:
        t.join()
    assert not errors, errors[0]


def test_the_graph_runner_converts_at_its_boundaries():
    """A session's NCHW outputs that are views of NHWC memory come back C-contiguous and
    equal to the copy numpy makes; other dtypes and ranks keep numpy's copy. (The emulated
    Arm lanes build the kernels only, without the graph package: skipped there.)"""
    _owned = pytest.importorskip("qkernels.graph.session", reason="qkernels.graph is not built here")._owned
    nhwc = np.arange(2 * 5 * 7 * 3, dtype=np.int8).reshape(2, 5, 7, 3)
    for v in (nhwc.transpose(TO_NCHW), nhwc.astype(np.float64).transpose(TO_NCHW), nhwc[0].transpose(2, 0, 1),
              nhwc.transpose(TO_NCHW)[:, ::-1, 1:]):
        got = _owned(v)
        assert got.flags.c_contiguous and got.flags.writeable and got.dtype == v.dtype
        np.testing.assert_array_equal(got, v)
    c = np.ascontiguousarray(nhwc)
    assert _owned(c) is c


@settings(max_examples=10 if SMALL else 40, deadline=None)
@given(n=st.integers(1, 2), c=st.integers(1, 5), extra=st.integers(1, 3), h=st.sampled_from(SIZES[:12]),
       w=st.sampled_from(SIZES), itemsize=st.sampled_from([1, 2, 4]), view=st.booleans(), seed=st.integers(0, 2**31))
@example(n=2, c=3, extra=1, h=13, w=65, itemsize=1, view=True, seed=0)   # the RGB stem's unpack loop and its tail
def test_nhwc_into_wider_pixels_keeps_their_other_channels(n, c, extra, h, w, itemsize, view, seed):
    """NCHW -> NHWC into the first channels of wider pixels (a channel slice of a C-contiguous
    array: the graph's RGB stem read as 4-byte pixels): those channels as numpy's transpose,
    the others' bytes untouched, on every path (3 channels of bytes into 4-byte pixels: the
    unpack loop of kernels/avx2/layout_avx2.c)."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(f"u{itemsize}")
    base = _random(rng, n * (c + 1) * h * w, dtype).reshape(n, c + 1, h, w)
    x = base[:, 1:] if view else np.ascontiguousarray(base[:, 1:])
    for isa in qk._dispatch.tested_isas():
        with qk.use_isa(isa):
            wide = _random(rng, n * h * w * (c + extra), dtype).reshape(n, h, w, c + extra)
            keep = wide[..., c:].copy()
            _layout.transpose_into(x, wide[..., :c], True)
            np.testing.assert_array_equal(wide[..., :c], x.transpose(TO_NHWC), err_msg=isa)
            np.testing.assert_array_equal(wide[..., c:], keep, err_msg=isa)
