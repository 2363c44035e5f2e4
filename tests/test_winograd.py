"""fp32 3 x 3 convolutions of stride 1 by Winograd's F(2x2, 3x3) (kernels/include/qk_wconv.h)
against a float64 reference, within its bound (docs/api.md, "fp32"):

    |got - ref| <= (cg + 16) * 2^-23 * Y'

Y' the same transforms on absolute values (|A|^T [(|G| |g| |G|^T) . (|B|^T |d| |B|)] |A|,
plus |bias| and |residual|): the first-order bound of the float steps, twice over. Also: the
same bits at 1, 2 and 3 threads, from views as from contiguous copies, NCHW as NHWC; the
sizes where it pays take it, the others (and the switch) the GEMM of the patches.
"""
import os

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import qkernels
from qkernels import _native, conv2d, pack_conv_weights

SMALL = os.environ.get("QKERNELS_TEST_SMALL", "").strip().lower() not in ("", "0", "false", "no")
F32 = np.float32
WINO_ISAS = [i for i in qkernels._dispatch.tested_isas() if _native.wconv_kernel(_native.isa_names().index(i)) >= 0]
pytestmark = pytest.mark.skipif(not WINO_ISAS, reason="no ISA path here has the Winograd transforms")

B_T = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
A_T = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)


def winograd_bound(x, w, pads, oh, ow):
    """Y' (N, OH, OW, O): the Winograd computation of NHWC x by OHWI w on absolute values."""
    n, h, wd, c = x.shape
    th, tw = -(-oh // 2), -(-ow // 2)
    t, l = pads[0], pads[1]
    xp = np.zeros((n, 2 * th + 2, 2 * tw + 2, c))
    hh, ww = min(h, 2 * th + 2 - t), min(wd, 2 * tw + 2 - l)
    xp[:, t:t + hh, l:l + ww] = np.abs(x[:, :hh, :ww].astype(np.float64))
    d = np.stack([np.stack([xp[:, i:i + 2 * th:2, j:j + 2 * tw:2] for j in range(4)], -1) for i in range(4)], -2)
    v = np.einsum("ai,nyxcij,bj->nyxcab", np.abs(B_T), d, np.abs(B_T))            # (n, th, tw, c, 4, 4)
    u = np.einsum("ak,oklc,bl->ocab", np.abs(G), np.abs(w.astype(np.float64)), np.abs(G))   # (o, c, 4, 4)
    m = np.einsum("nyxcab,ocab->nyxoab", v, u)
    y = np.einsum("ia,nyxoab,jb->nyixjo", np.abs(A_T), m, np.abs(A_T)).reshape(n, 2 * th, 2 * tw, -1)
    return y[:, :oh, :ow]


def conv64(x, w, pads):
    """float64 convolution of NHWC x by OHWI 3 x 3 w, stride 1."""
    n, h, wd, c = x.shape
    t, l, b, r = pads
    xp = np.zeros((n, h + t + b, wd + l + r, c))
    xp[:, t:t + h, l:l + wd] = x
    oh, ow = h + t + b - 2, wd + l + r - 2
    out = np.zeros((n, oh, ow, w.shape[0]))
    for ky in range(3):
        for kx in range(3):
            out += np.einsum("nhwc,oc->nhwo", xp[:, ky:ky + oh, kx:kx + ow], w[:, ky, kx].astype(np.float64))
    return out


@pytest.fixture
def always_winograd(monkeypatch):
    """Every size takes Winograd where the path has it (tiles past every edge, few tiles)."""
    monkeypatch.setattr(qkernels._float, "WINOGRAD_MAX_WORK", np.inf)


@settings(max_examples=6 if SMALL else 30, deadline=None, database=None)
@given(n=st.integers(1, 2), hw=st.tuples(st.integers(1, 13), st.integers(1, 13)), cg=st.sampled_from([16, 32, 48]),
       o=st.sampled_from([16, 48, 80]), pads=st.tuples(*[st.integers(0, 2)] * 4),
       fused=st.sampled_from(["none", "relu", "residual"]), view=st.sampled_from(["copy", "strided", "flipped"]),
       spread=st.sampled_from([1.0, 1e-20, 1e20]), seed=st.integers(0, 2**31))
@example(n=1, hw=(1, 1), cg=16, o=16, pads=(1, 1, 1, 1), fused="none", view="copy", spread=1.0, seed=0)
@example(n=2, hw=(13, 12), cg=48, o=80, pads=(0, 2, 1, 0), fused="residual", view="strided", spread=1.0, seed=1)
def test_winograd_within_its_bound_and_the_same_bits_from_views_and_threads(always_winograd, n, hw, cg, o, pads,
                                                                            fused, view, spread, seed):
    h, wd = hw
    h, wd = max(h, 3 - pads[0] - pads[2]), max(wd, 3 - pads[1] - pads[3])
    rng = np.random.default_rng(seed)
    base = (rng.standard_normal((n, h, 2 * wd, cg + 3)) * spread).astype(F32)
    x = {"copy": np.ascontiguousarray(base[:, :, :wd, :cg]), "strided": base[:, :, ::2, 1:cg + 1],
         "flipped": base[:, ::-1, wd - 1::-1, 2:cg + 2]}[view]
    w = (rng.standard_normal((o, 3, 3, cg)) / np.sqrt(9 * cg)).astype(F32)
    bias = rng.standard_normal(o).astype(F32)
    pw = pack_conv_weights(w, bias=bias)
    ref = conv64(x.astype(np.float64), w, pads) + bias
    oh, ow = ref.shape[1:3]
    bound_y = winograd_bound(x, w, pads, oh, ow) + np.abs(bias)
    res = rng.standard_normal((n, oh, ow, o)).astype(F32) if fused == "residual" else None
    if res is not None:
        ref, bound_y = ref + res, bound_y + np.abs(res)
    act = "relu" if fused == "relu" else None
    if act:
        ref = np.maximum(ref, 0)
    bound = (cg + 16) * 2.0**-23 * bound_y + 2.0**-126
    for isa in WINO_ISAS:
        with qkernels.use_isa(isa):
            got = []
            for threads, src in ((1, x), (2, x), (3, np.ascontiguousarray(x))):
                qkernels.set_num_threads(threads)
                out = np.empty((n, oh, ow, o), F32)
                calls = qkernels._float.bind_conv2d(np.ascontiguousarray(src), pw, 1, pads, 1, act, out, residual=res)
                assert [type(c).__name__ for c in calls] == ["BoundWconv"], isa
                for c in calls:
                    c.run()
                got.append(out)
            if res is None:   # the public call, from the view itself
                got.append(conv2d(x, pw, padding=pads, activation=act))
            err = np.abs(got[0].astype(np.float64) - ref)
            bad = ~(err <= bound)
            assert not bad.any(), f"{isa}: {bad.sum()} of {bad.size} outside; worst {err[bad].max():.3g}"
            for other in got[1:]:
                np.testing.assert_array_equal(other.view(np.uint32), got[0].view(np.uint32), err_msg=isa)


def test_nchw_gives_the_bits_of_nhwc_and_nan_inf_propagate(always_winograd):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 9, 7, 32)).astype(F32)
    x[0, 4, 3, 5], x[1, 0, 0, 0] = np.nan, np.inf
    w = rng.standard_normal((16, 3, 3, 32)).astype(F32)
    pw = pack_conv_weights(w)
    for isa in WINO_ISAS:
        with qkernels.use_isa(isa):
            y = conv2d(x, pw, padding=1)
            y_nchw = conv2d(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), pw, padding=1, layout="NCHW")
            np.testing.assert_array_equal(y_nchw.transpose(0, 2, 3, 1).view(np.uint32), y.view(np.uint32))
            with qkernels._dispatch.winograd(False):
                plain = conv2d(x, pw, padding=1)
            # non-finite where the GEMM of the patches is: NaN where it has NaN; where it has
            # +-Inf, Inf or NaN (the transforms' Inf - Inf)
            np.testing.assert_array_equal(np.isfinite(y), np.isfinite(plain))
            assert np.isnan(y)[np.isnan(plain)].all() and np.isnan(plain).any()


def test_the_sizes_where_it_pays_take_it_and_the_others_do_not():
    """ResNet-18's 56 x 56 x 64 to 14 x 14 x 256 take it; 7 x 7 x 512 (16 tiles in 24 rows,
    U of 16 MiB), stride 2, channels not a multiple of 16 and the switch do not."""
    rng = np.random.default_rng(0)

    def kinds(h, c, o=None, stride=1, cg_pad=0):
        x = rng.standard_normal((1, h, h, c)).astype(F32)
        pw = pack_conv_weights((rng.standard_normal((o or c, 3, 3, c)) * 0.05).astype(F32))
        oh = (h - 1) // stride + 1
        return [type(call).__name__ for call in
                qkernels._float.bind_conv2d(x, pw, stride, 1, 1, None, np.empty((1, oh, oh, o or c), F32))]

    for isa in WINO_ISAS:
        with qkernels.use_isa(isa):
            assert kinds(56, 64) == kinds(28, 128) == kinds(14, 256) == ["BoundWconv"], isa
            assert kinds(7, 512) == kinds(28, 64, stride=2) == kinds(14, 24, o=32) == ["BoundGemm"], isa
            with qkernels._dispatch.winograd(False):
                assert kinds(56, 64) == ["BoundGemm"], isa
    for isa in set(qkernels._dispatch.tested_isas()) - set(WINO_ISAS):
        with qkernels.use_isa(isa):
            assert kinds(56, 64) != ["BoundWconv"], isa


def test_bad_arrays_raise_value_error():
    isa = _native.isa_names().index(WINO_ISAS[0]) if WINO_ISAS else 0
    x = np.zeros((1, 6, 6, 16), F32)
    src = _native.ConvSource(x.view(np.uint8), 6, 6, 3, 3, 1, 1, 1, 1, 1, 1, 0, 4)
    out = np.zeros((36, 16), F32)
    bias = np.zeros(16, F32)
    with pytest.raises(ValueError):   # U of the wrong size
        _native.wconv_float(isa, src, np.zeros((16, 10), np.uint8), bias, -np.inf, np.inf, out, 1)
    with pytest.raises(ValueError):   # stride 2
        _native.wconv_float(isa, _native.ConvSource(x.view(np.uint8), 3, 3, 3, 3, 2, 2, 1, 1, 1, 1, 0, 4),
                            np.zeros((16, 16 * 32 * 4), np.uint8), bias, -np.inf, np.inf, np.zeros((9, 16), F32), 1)
