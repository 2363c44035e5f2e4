"""The native quantize / dequantize kernels (kernels/quantize.c, per-ISA rows) on every
path, against the ONNX QuantizeLinear / DequantizeLinear references of conftest.py.

Runs in the emulated NEON lanes too (.ci/emulated.sh). The API's own conventions
(rounding, float32 division, saturation, NaN, per-axis parameters) are in test_api.py.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import qkernels
from qkernels import dequantize, quantize

U8, S8 = np.uint8, np.int8
SMALL = os.environ.get("QKERNELS_TEST_SMALL", "").strip().lower() not in ("", "0", "false", "no")
finite_f32 = st.floats(-1e4, 1e4, allow_nan=False, width=32)


# the native kernels: 32 values per AVX2 step, 16 per NEON step, a scalar tail; runs split by
# channel (per-channel along any axis) and, from 2^16 values per thread, across threads
special_f32 = st.sampled_from([np.inf, -np.inf, 0.0, -0.0, 1e30, -1e30, 2.5, -2.5, 3.5, 127.5, -128.5, 255.5,
                               1.4e-45, 3.4e38])


@given(data=st.data(), dtype=st.sampled_from([U8, S8]), per_channel=st.booleans())
@settings(max_examples=15 if SMALL else 80)
def test_quantize_and_dequantize_kernels_match_onnx_reference_on_every_path(isa, data, dtype, per_channel, ref):
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=71), label="shape")
    x = data.draw(hnp.arrays(np.float32, shape, elements=st.one_of(finite_f32, special_f32)), label="x")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis") if per_channel else None
    n = shape[axis] if per_channel else None
    scale = rng.uniform(2.0**-8, 4.0, n).astype(np.float32) if per_channel else np.float32(rng.uniform(2.0**-8, 4.0))
    zp = ref.random_zero_point(rng, dtype, n) if per_channel else ref.random_zero_point(rng, dtype)
    ax = None if axis is None else axis % len(shape)
    q = quantize(x, scale, zp, dtype=dtype, axis=axis)
    np.testing.assert_array_equal(q.data, ref.quantize_ref(x, scale, zp, dtype, ax))
    np.testing.assert_array_equal(dequantize(q), ref.dequantize_ref(q.data, scale, zp, ax))


@pytest.mark.parametrize("threads", [1, 2])
def test_quantize_and_dequantize_kernels_split_across_threads_exactly(isa, threads, ref):
    rng = np.random.default_rng(11)
    x = rng.normal(0, 40, (3, 70001)).astype(np.float32)           # 2^16 < values per thread, odd split
    scale = rng.uniform(0.05, 0.5, 70001).astype(np.float32)
    zp = ref.random_zero_point(rng, S8, 70001)
    before = qkernels.get_num_threads()
    qkernels.set_num_threads(threads)
    try:
        for s, z, axis in ((np.float32(0.3), 5, None), (scale, zp, 1)):
            q = quantize(x, s, z, dtype=S8, axis=axis)
            np.testing.assert_array_equal(q.data, ref.quantize_ref(x, s, z, S8, axis))
            np.testing.assert_array_equal(dequantize(q), ref.dequantize_ref(q.data, s, z, axis))
    finally:
        qkernels.set_num_threads(before)


def test_quantize_and_dequantize_take_strided_and_misaligned_arrays(ref):
    x = np.random.default_rng(3).normal(0, 20, (40, 50)).astype(np.float32)
    raw = np.zeros(x.nbytes + 1, np.uint8)
    misaligned = np.frombuffer(raw.data, np.float32, x.size, offset=1).reshape(x.shape)
    misaligned[...] = x
    for view in (x[::2, 1::3], x.T, misaligned):
        q = quantize(view, 0.25, 3, dtype=U8)
        np.testing.assert_array_equal(q.data, ref.quantize_ref(view, 0.25, 3, U8))
        np.testing.assert_array_equal(dequantize(q.data.T, 0.25, 3), ref.dequantize_ref(q.data.T, 0.25, 3))
    assert quantize(np.float32(1.3), 0.5, 0, dtype=S8).data.shape == ()     # 0-d stays 0-d
    assert dequantize(np.int8(3), 0.5).shape == ()
