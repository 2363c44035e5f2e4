"""The direct fp32 convolution of small patches (kernels/include/qk_dconv.h, the AVX-512
kernel natively and emulated; qkernels._float picks it for convolutions of at most
DIRECT_MAX_CHANNELS input channels, tested here up to 4) against float64 numpy: padding, strides, dilations,
column blocks past 64, array views of the input (channel slices, negative strides) and
output rows at a stride; the public conv2d on every ISA path alike within the rounding
bound. Kernel-only: no graph runner needed."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

import qkernels
from qkernels import _dispatch, _float, _native


def _direct_isas():
    got = {}
    for isa in qkernels._dispatch.tested_isas():
        with qkernels.use_isa(isa):
            i = _dispatch.isa_index()
        if _native.dconv_available(i, 9, 16):
            got.setdefault(i, isa)
    return sorted(got)


DIRECT = _direct_isas()
needs_direct = pytest.mark.skipif(not DIRECT, reason="no ISA path of this CPU has the direct kernel")


def _reference(x, w_khwco, bias, s, d, pad, oh, ow):
    """float64 sums over the taps inside (N, OH, OW, O), and the sums of |terms| (the bound)."""
    n, h, wd, c = x.shape
    kh, kw, _, o = w_khwco.shape
    xp = np.zeros((n, h + pad[0] + pad[2] + kh * d[0] + oh * s[0], wd + pad[1] + pad[3] + kw * d[1] + ow * s[1], c))
    xp[:, pad[0]:pad[0] + h, pad[1]:pad[1] + wd] = x
    y = np.zeros((n, oh, ow, o)) + bias.astype(np.float64)
    mag = np.zeros((n, oh, ow, o)) + np.abs(bias.astype(np.float64))
    w64 = w_khwco.astype(np.float64)
    for ky in range(kh):
        for kx in range(kw):
            tap = xp[:, ky * d[0]:ky * d[0] + oh * s[0]:s[0], kx * d[1]:kx * d[1] + ow * s[1]:s[1]]
            y += tap @ w64[ky, kx]
            mag += np.abs(tap) @ np.abs(w64[ky, kx])
    return y, mag


def _x_view(a, kind):
    """0 C-contiguous NHWC, 1 a channel slice of a wider array, 2 reversed along W."""
    if kind == 1:
        wide = np.zeros(a.shape[:3] + (a.shape[3] + 3,), a.dtype)
        wide[..., 2:2 + a.shape[3]] = a
        return wide[..., 2:2 + a.shape[3]]
    if kind == 2:
        return np.ascontiguousarray(a[:, :, ::-1])[:, :, ::-1]
    return np.ascontiguousarray(a)


geometry = dict(n=st.integers(1, 3), h=st.integers(1, 12), w=st.integers(1, 12), c=st.integers(1, 4),
                k=st.tuples(st.integers(1, 7), st.integers(1, 7)), s=st.tuples(st.integers(1, 3), st.integers(1, 3)),
                d=st.tuples(st.integers(1, 2), st.integers(1, 2)),
                pad=st.tuples(*[st.integers(0, 3)] * 4), o=st.sampled_from([16, 32, 48, 64, 80, 112, 128]),
                relu=st.booleans(), view=st.integers(0, 2), seed=st.integers(0, 2**31))


def _case(n, h, w, c, k, s, d, pad, o, seed):
    oh = (h + pad[0] + pad[2] - (k[0] - 1) * d[0] - 1) // s[0] + 1
    ow = (w + pad[1] + pad[3] - (k[1] - 1) * d[1] - 1) // s[1] + 1
    assume(oh > 0 and ow > 0)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    wt = rng.standard_normal((k[0], k[1], c, o)).astype(np.float32)
    bias = rng.standard_normal(o).astype(np.float32)
    return x, wt, bias, oh, ow


@needs_direct
@settings(max_examples=120, deadline=None)
@given(**geometry, wide_out=st.booleans(), pad_copy=st.booleans())
def test_direct_kernel_equals_float64_reference(n, h, w, c, k, s, d, pad, o, relu, view, seed, wide_out, pad_copy):
    """Each ISA path's direct kernel: the float64 sums within one float32 rounding per
    term (K + 2 units of 2**-24 of the sum of |terms|), clamped; rows at a stride; the
    padding read from a zero-bordered copy or gathered window by window."""
    x, wt, bias, oh, ow = _case(n, h, w, c, k, s, d, pad, o, seed)
    want, mag = _reference(x, wt, bias, s, d, pad, oh, ow)
    lo, hi = (0.0, np.inf) if relu else (-np.inf, np.inf)
    want = np.clip(want, lo, hi)
    xv = _x_view(x, view)
    for isa in DIRECT:
        src = _native.ConvSource(xv.view(np.uint8), oh, ow, k[0], k[1], s[0], s[1],
                                 d[0], d[1], pad[0], pad[1], 0, 4)
        out = np.full((n * oh * ow, o + 16 * wide_out), np.nan, np.float32)
        got = out[:, :o]
        _native.dconv_float(isa, src, wt.reshape(-1, o), bias, lo, hi, got, 1, pad_copy=pad_copy)
        bound = (k[0] * k[1] * c + 2) * 2.0**-24 * mag.reshape(-1, o) + 1e-38
        assert (np.abs(got - want.reshape(-1, o)) <= bound).all(), f"isa {isa}"
        if wide_out:
            assert np.isnan(out[:, o:]).all()      # nothing written past the N columns
        bound_call = _native.dconv_float(isa, src, wt.reshape(-1, o), bias, lo, hi, got, 2, bind=True,
                                         pad_copy=not pad_copy)
        before = got.copy()
        got[...] = 0
        bound_call.run()
        np.testing.assert_array_equal(got, before)   # 2 threads, bound, the other padding: the same bits


@settings(max_examples=60, deadline=None)
@given(**geometry)
def test_conv2d_of_few_channels_on_every_isa(n, h, w, c, k, s, d, pad, o, relu, view, seed):
    """qkernels.conv2d of float32 with at most DIRECT_MAX_CHANNELS input channels (the
    direct kernel where the ISA path has it, the GEMM elsewhere): every path within the
    rounding bound of float64."""
    x, wt, bias, oh, ow = _case(n, h, w, c, k, s, d, pad, o, seed)
    want, mag = _reference(x, wt, bias, s, d, pad, oh, ow)
    want = np.maximum(want, 0) if relu else want
    ohwi = np.ascontiguousarray(wt.transpose(3, 0, 1, 2))
    bound = (k[0] * k[1] * c + 2) * 2.0**-24 * mag + 1e-38
    prev = _float.DIRECT_MAX_CHANNELS
    try:
        for most in (prev, 4, 0):      # as shipped; the direct kernel for all of these; for none
            _float.DIRECT_MAX_CHANNELS = most
            for isa in qkernels._dispatch.tested_isas():
                with qkernels.use_isa(isa):
                    got = qkernels.conv2d(_x_view(x, view), ohwi, bias, stride=s, padding=pad, dilation=d,
                                          activation="relu" if relu else None)
                assert (np.abs(got - want) <= bound).all(), (isa, most)
    finally:
        _float.DIRECT_MAX_CHANNELS = prev


def test_direct_kernel_refuses_what_it_cannot_run():
    x = np.zeros((1, 4, 4, 1), np.float32)
    src = _native.ConvSource(x.view(np.uint8), 2, 2, 3, 3, 1, 1, 1, 1, 0, 0, 0, 4)
    isa = DIRECT[0] if DIRECT else 0
    with pytest.raises(ValueError):     # N not a multiple of 16
        _native.dconv_float(isa, src, np.zeros((9, 8), np.float32), np.zeros(8, np.float32), 0, 1,
                            np.zeros((4, 8), np.float32), 1)
    with pytest.raises(ValueError):     # the weights' K is not the patch's
        _native.dconv_float(isa, src, np.zeros((8, 16), np.float32), np.zeros(16, np.float32), 0, 1,
                            np.zeros((4, 16), np.float32), 1)
    with pytest.raises(ValueError):     # the scalar path has no direct kernel
        _native.dconv_float(0, src, np.zeros((9, 16), np.float32), np.zeros(16, np.float32), 0, 1,
                            np.zeros((4, 16), np.float32), 1)


@settings(max_examples=60, deadline=None)
@given(**geometry)
def test_nchw_input_is_read_in_place_with_the_same_bits(n, h, w, c, k, s, d, pad, o, relu, view, seed):
    """An NCHW input of at most DIRECT_MAX_CHANNELS channels (an RGB image): conv2d with
    layout="NCHW" and the bound call on its NHWC view (channels apart, read in place: no
    transposing copy) give the bits of the call on a C-contiguous NHWC copy, on every ISA
    path; the bound call follows what the NCHW array holds when it runs again."""
    assume(c <= _float.DIRECT_MAX_CHANNELS)
    x, wt, bias, oh, ow = _case(n, h, w, c, k, s, d, pad, o, seed)
    nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    if view == 2:    # steps and a reversal on top
        wider = np.zeros((n, c, 2 * h, w), np.float32)
        wider[:, :, ::2] = nchw[:, :, :, ::-1]
        nchw = wider[:, :, ::2, ::-1]
    ohwi = np.ascontiguousarray(wt.transpose(3, 0, 1, 2))
    act = "relu" if relu else None
    for isa in qkernels._dispatch.tested_isas():
        with qkernels.use_isa(isa):
            want = qkernels.conv2d(x, ohwi, bias, stride=s, padding=pad, dilation=d, activation=act)
            got = qkernels.conv2d(nchw, ohwi, bias, stride=s, padding=pad, dilation=d, activation=act,
                                  layout="NCHW")
            np.testing.assert_array_equal(got, want.transpose(0, 3, 1, 2))
            pw = qkernels.pack_conv_weights(ohwi, bias=bias)
            xd = nchw.transpose(0, 2, 3, 1)
            res = np.empty_like(want)
            if _float.reads_nchw(xd, pw, s, pad, d, act, False):
                calls = _float.bind_conv2d(xd, pw, s, pad, d, act, res)
                for call in calls:
                    call.run()
                np.testing.assert_array_equal(res, want)
                nchw[...] = -nchw       # the same input, negated: read again where it lies
                for call in calls:
                    call.run()
                again = qkernels.conv2d(np.ascontiguousarray(xd), ohwi, bias, stride=s, padding=pad,
                                        dilation=d, activation=act)
                np.testing.assert_array_equal(res, again)
                nchw[...] = -nchw
            else:
                assert _native.dconv_available(_dispatch.isa_index(), k[0] * k[1] * c, o) is False or \
                    k == (1, 1)
