"""2-D max pooling's native loops (kernels/pool.c; the SIMD loops of NHWC memory,
kernels/include/qk_pool_simd.h, on every ISA path this CPU runs, emulated ones included)
against float64/int64 numpy: exact, NaN propagating, on array views (NHWC memory,
channel slices, negative strides, NCHW), channel counts past every vector and block edge.
Every ISA path gives the portable loop's bits. Kernel-only: no graph runner needed."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

import qkernels
from qkernels import _dispatch, _native


ISAS = _dispatch.isa_indices()
#: channels at and past the vector widths (8, 16, 32, 64) and 4-vector blocks
EDGES = [1, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257]


def _reference(x, k, s, d, pad, oh, ow):
    """float64 (int64) maxima over each window's taps inside x, in window order (np.maximum
    keeps NaN); a window without a tap inside gives the dtype's lowest value."""
    lowest = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    n, c, h, w = x.shape
    big = np.full((n, c, h + 2 * (k[0] * d[0] + oh * s[0]), w + 2 * (k[1] * d[1] + ow * s[1])), lowest,
                  np.float64 if x.dtype.kind == "f" else np.int64)
    big[:, :, pad[0] + k[0] * d[0]:pad[0] + k[0] * d[0] + h, pad[1] + k[1] * d[1]:pad[1] + k[1] * d[1] + w] = x
    y = np.full((n, c, oh, ow), lowest, big.dtype)
    for ky in range(k[0]):
        for kx in range(k[1]):
            x0 = k[1] * d[1] + kx * d[1]
            y0 = k[0] * d[0] + ky * d[0]
            tap = big[:, :, y0:y0 + oh * s[0]:s[0], x0:x0 + ow * s[1]:s[1]]
            y = np.maximum(y, tap)
    return y


def _x_view(a: np.ndarray, kind: int) -> np.ndarray:
    """a's values in other memory: 0 NCHW, 1 NHWC, 2 NHWC channel slice of a wider array,
    3 NHWC reversed along W (negative strides), 4 NHWC every other channel."""
    if kind == 0:
        return np.ascontiguousarray(a)
    nhwc = np.ascontiguousarray(a.transpose(0, 2, 3, 1))
    if kind == 2:
        wide = np.zeros(nhwc.shape[:3] + (nhwc.shape[3] + 5,), a.dtype)
        wide[..., 3:3 + nhwc.shape[3]] = nhwc
        nhwc = wide[..., 3:3 + nhwc.shape[3]]
    elif kind == 3:
        nhwc = np.ascontiguousarray(nhwc[:, :, ::-1])[:, :, ::-1]
    elif kind == 4:
        wide = np.zeros(nhwc.shape[:3] + (2 * nhwc.shape[3],), a.dtype)
        wide[..., ::2] = nhwc
        nhwc = wide[..., ::2]
    return nhwc.transpose(0, 3, 1, 2)


def _y_like(shape, dtype, kind: int) -> np.ndarray:
    """0 NCHW, 1 NHWC memory, 2 an NHWC channel slice of a wider array."""
    n, c, oh, ow = shape
    if kind == 0:
        return np.empty(shape, dtype)
    wide = np.empty((n, oh, ow, c + 2 * (kind == 2)), dtype)
    return wide[..., kind == 2:(kind == 2) + c].transpose(0, 3, 1, 2)


@settings(max_examples=150, deadline=None)
@given(dtype=st.sampled_from([np.float32, np.int8, np.uint8]), n=st.integers(1, 2),
       c=st.one_of(st.sampled_from(EDGES), st.integers(1, 70)), h=st.integers(1, 9), w=st.integers(1, 9),
       k=st.tuples(st.integers(1, 3), st.integers(1, 3)), s=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       d=st.tuples(st.integers(1, 2), st.integers(1, 2)), pad=st.tuples(st.integers(0, 2), st.integers(0, 2)),
       xv=st.integers(0, 4), yv=st.integers(0, 2), seed=st.integers(0, 2**31))
def test_max_pool_every_isa_equals_float64_reference(dtype, n, c, h, w, k, s, d, pad, xv, yv, seed):
    """Every ISA path: the reference's values exactly (NaN where a tap is NaN), the
    portable loop's bits, on any view of x and y."""
    rng = np.random.default_rng(seed)
    pad = tuple(min(p, (kk - 1) * dd) for p, kk, dd in zip(pad, k, d))
    oh, ow = ((size + 2 * p - (kk - 1) * dd - 1) // ss + 1 for size, p, kk, dd, ss in zip((h, w), pad, k, d, s))
    assume(oh > 0 and ow > 0)
    if dtype == np.float32:
        a = rng.standard_normal((n, c, h, w)).astype(np.float32)
        a[rng.random(a.shape) < 0.05] = np.nan
        a[rng.random(a.shape) < 0.05] = -np.inf
        a[rng.random(a.shape) < 0.05] = -0.0
    else:
        info = np.iinfo(dtype)
        a = rng.integers(info.min, info.max + 1, (n, c, h, w)).astype(dtype)
    x = _x_view(a, xv)
    assert np.array_equal(x, a, equal_nan=True)
    want = _reference(a, k, s, d, pad, oh, ow)
    portable = None
    for isa in ISAS:
        y = _y_like((n, c, oh, ow), dtype, yv)
        try:
            _native.max_pool(x, y, *k, *s, *d, pad[0], pad[1], isa)
        except ValueError:           # a window that does not reach the input (refused alike)
            assume(False)
        np.testing.assert_array_equal(y.astype(want.dtype), want, err_msg=f"isa {isa}")
        bits = np.ascontiguousarray(y).view(np.uint8)
        if portable is None:
            portable = bits
        np.testing.assert_array_equal(bits, portable, err_msg=f"isa {isa}: other bits than the portable loop")


def test_max_pool_isa_argument_is_checked():
    x = np.zeros((1, 1, 2, 2), np.float32)
    with pytest.raises(ValueError, match="isa"):
        _native.max_pool(x, np.empty((1, 1, 1, 1), np.float32), 2, 2, 1, 1, 1, 1, 0, 0, 99)
