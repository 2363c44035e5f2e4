"""The numpy-like API: ONNX quantize/dequantize semantics, QTensor, numpy.matmul-style
broadcasting, ``out=``, strides and alignment, argument validation, ISA and thread
control (environment variables included), the CLI, and calls from many threads."""
import concurrent.futures
import json
import os
import pickle
import subprocess
import tempfile
import sys
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import qkernels
from qkernels import (PackedWeights, QTensor, dequantize, matmul, matmul_integer, pack_weights,
                      quantize)

SMALL = os.environ.get("QKERNELS_TEST_SMALL", "").strip().lower() not in ("", "0", "false", "no")
U8, S8 = np.dtype(np.uint8), np.dtype(np.int8)


def _examples(n):
    return max(5, n // 10) if SMALL else n


def _rand(rng, shape, dtype):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)


# Subprocesses start outside the source tree, whose qkernels/ (no compiled module in a
# non-editable install) would shadow the installed package.
NEUTRAL_DIR = tempfile.gettempdir()


def _python(code: str, timeout=120, **env):
    """Run ``python -c code`` with a clean qkernels environment plus ``env``."""
    e = {k: v for k, v in os.environ.items() if k not in ("QKERNELS_ISA", "QKERNELS_NUM_THREADS")}
    e.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e, timeout=timeout,
                          cwd=NEUTRAL_DIR)


# ------------------------------------------------------------------------ quantize (ONNX)

@pytest.mark.parametrize("dtype,zp", [(U8, 10), (U8, 0), (S8, 0), (S8, -7)])
def test_quantize_rounds_half_to_even_like_onnx(dtype, zp):
    x = np.array([0.5, 1.5, 2.5, 3.5, -0.5, -1.5, -2.5, 0.49999997, 0.50000006], np.float32)
    q = quantize(x, 1.0, zp, dtype=dtype)
    expected = np.array([0, 2, 2, 4, 0, -2, -2, 0, 1]) + zp
    lo, hi = np.iinfo(dtype).min, np.iinfo(dtype).max
    np.testing.assert_array_equal(q.data, np.clip(expected, lo, hi).astype(dtype))
    assert q.dtype == dtype and q.axis is None


def test_quantize_divides_in_float32_like_onnx():
    # 2.50000001 is 2.5 in float32, so it rounds to even (2), not up as float64 would
    q = quantize(np.array([2.50000001, 7.5 * 0.1]), 1.0, 0, dtype=np.uint8)
    assert q.data[0] == 2
    assert q.data[1] == np.rint(np.float32(0.75) / np.float32(1.0))
    # x / scale in float32: 0.3 / 0.1 is 2.9999998 in float32 (-> 3), exactly what ONNX gives
    assert quantize(np.float32(0.3), 0.1, 0).data == np.rint(np.float32(0.3) / np.float32(0.1))


@pytest.mark.parametrize("dtype", [U8, S8])
def test_quantize_saturates_at_the_type_range(dtype):
    lo, hi = int(np.iinfo(dtype).min), int(np.iinfo(dtype).max)
    x = np.array([1e9, -1e9, np.inf, -np.inf, 1e30, hi + 0.6, lo - 0.6], np.float32)
    q = quantize(x, 1.0, 0, dtype=dtype)
    np.testing.assert_array_equal(q.data, np.array([hi, lo, hi, lo, hi, hi, lo], dtype))
    q = quantize(np.array([200.0, -200.0]), 1.0, hi, dtype=dtype)   # the zero point pushes past the top
    np.testing.assert_array_equal(q.data, np.clip([hi + 200, hi - 200], lo, hi).astype(dtype))


def test_quantize_nan_is_an_error():
    with pytest.raises(ValueError, match="NaN"):
        quantize(np.array([1.0, np.nan]), 0.1, 0)


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("dtype", [U8, S8])
def test_quantize_and_dequantize_per_axis_match_onnx(axis, dtype, ref):
    rng = np.random.default_rng(4)
    x = rng.normal(0, 3, (5, 7)).astype(np.float32)
    n = x.shape[axis]
    scale = rng.uniform(0.01, 0.2, n).astype(np.float32)
    zp = ref.random_zero_point(rng, dtype, n)
    q = quantize(x, scale, zp, dtype=dtype, axis=axis)
    assert q.axis == axis % 2 and q.per_channel
    np.testing.assert_array_equal(q.data, ref.quantize_ref(x, scale, zp, dtype, axis % 2))
    f = dequantize(q)
    assert f.dtype == np.float32
    np.testing.assert_array_equal(f, ref.dequantize_ref(q.data, scale, zp, axis % 2))
    np.testing.assert_array_equal(q.dequantize(), f)
    np.testing.assert_array_equal(np.asarray(q), f)
    np.testing.assert_array_equal(dequantize(q.data, scale, zp, axis=axis), f)


finite_f32 = st.floats(-1e4, 1e4, allow_nan=False, width=32)


@given(x=hnp.arrays(np.float32, hnp.array_shapes(max_dims=3, max_side=6), elements=finite_f32),
       scale=st.floats(2.0**-10, 100.0, width=32), zp=st.integers(-128, 255), dtype=st.sampled_from([U8, S8]))
@settings(max_examples=_examples(200))
def test_quantize_and_dequantize_match_onnx_reference(x, scale, zp, dtype, ref):
    lo, hi = ref.qrange(dtype)
    zp = min(max(zp, lo), hi)
    q = quantize(x, scale, zp, dtype=dtype)
    np.testing.assert_array_equal(q.data, ref.quantize_ref(x, scale, zp, dtype))
    np.testing.assert_array_equal(q.dequantize(), ref.dequantize_ref(q.data, scale, zp))
    # inside the range, the round trip is off by at most half a step (plus float32 rounding)
    s = np.float64(np.float32(scale))
    t = x.astype(np.float64) / s + zp
    inside = (t > lo + 1) & (t < hi - 1)
    err = np.abs(q.dequantize().astype(np.float64) - x)[inside]
    assert np.all(err <= 0.5 * s * (1 + 1e-5) + 1e-6 * np.abs(x[inside]))


def test_quantize_and_dequantize_write_into_out(ref):
    x = np.random.default_rng(5).normal(0, 4, (3, 33)).astype(np.float32)
    buf = np.empty((3, 33), np.int8)
    q = quantize(x, 0.1, -2, dtype=S8, out=buf)
    assert q.data is buf
    np.testing.assert_array_equal(buf, ref.quantize_ref(x, 0.1, -2, S8))
    y = np.empty((3, 33), np.float32)
    assert dequantize(q, out=y) is y
    np.testing.assert_array_equal(y, ref.dequantize_ref(buf, 0.1, -2))
    assert dequantize(buf, 0.1, -2, out=y) is y


@pytest.mark.parametrize("bad, error, match", [
    (np.empty((3, 33), np.uint8), TypeError, "dtype"),
    (np.empty((3, 32), np.int8), ValueError, "shape"),
    (np.empty((33, 3), np.int8).T, ValueError, "C-contiguous"),
    ([0] * 99, TypeError, "numpy array"),
])
def test_quantize_out_is_checked(bad, error, match):
    with pytest.raises(error, match=match):
        quantize(np.zeros((3, 33), np.float32), 0.1, 0, dtype=S8, out=bad)


def test_quantize_and_dequantize_refuse_overlapping_readonly_or_misaligned_out():
    raw = np.zeros(4 * 40 + 1, np.uint8)
    x = raw[:160].view(np.float32)
    with pytest.raises(ValueError, match="overlaps"):
        quantize(x, 0.1, 0, dtype=U8, out=raw[:40])
    misaligned = np.frombuffer(raw.data, np.float32, 40, offset=1)
    with pytest.raises(ValueError, match="aligned|writeable"):
        dequantize(np.zeros(40, np.uint8), 0.1, out=misaligned)
    ro = np.zeros(40, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        dequantize(np.zeros(40, np.uint8), 0.1, out=ro)


# ------------------------------------------------------------------------------ QTensor

def test_qtensor_matmul_returns_float32_of_the_exact_integer_product(ref):
    rng = np.random.default_rng(2)
    a = QTensor(_rand(rng, (5, 19), U8), 0.03, 120)
    b = QTensor(_rand(rng, (19, 7), S8), np.linspace(0.01, 0.02, 7).astype(np.float32),
                rng.integers(-5, 5, 7), axis=1)
    y = a @ b
    assert isinstance(y, np.ndarray) and y.dtype == np.float32 and y.shape == (5, 7)
    acc = ref.gemm_int32(a.data, b.data, 120, b.zero_point).astype(np.float64)
    exact = acc * np.float64(np.float32(0.03)) * b.scale.astype(np.float64)
    np.testing.assert_allclose(y, exact, rtol=1e-6, atol=0)
    # ...which is the product of the dequantized operands, up to float32 rounding
    np.testing.assert_allclose(y, np.asarray(a).astype(np.float64) @ np.asarray(b).astype(np.float64),
                               rtol=1e-5, atol=1e-6)
    # packed weights on the right give the same
    np.testing.assert_array_equal(a @ pack_weights(b), y)


def test_qtensor_array_protocol_and_properties():
    q = QTensor(np.array([[1, 2], [3, 4]], np.uint8), 0.5, 2)
    f = np.asarray(q)
    assert f.dtype == np.float32
    np.testing.assert_array_equal(f, np.array([[-0.5, 0.0], [0.5, 1.0]], np.float32))
    assert np.asarray(q, dtype=np.float64).dtype == np.float64
    assert q.shape == (2, 2) and q.ndim == 2 and len(q) == 2 and q.dtype == U8 and not q.per_channel
    np.testing.assert_array_equal(q.dequantize(), f)
    np.testing.assert_array_equal(dequantize(q), f)


def test_qtensor_and_packed_weights_pickle_round_trip():
    rng = np.random.default_rng(8)
    q = QTensor(_rand(rng, (6, 5), S8), np.arange(1, 6, dtype=np.float32) / 10, np.arange(-2, 3), axis=1)
    q2 = pickle.loads(pickle.dumps(q))
    assert isinstance(q2, QTensor) and q2.axis == 1
    np.testing.assert_array_equal(q2.data, q.data)
    np.testing.assert_array_equal(q2.scale, q.scale)
    np.testing.assert_array_equal(q2.zero_point, q.zero_point)
    bias = np.arange(5, dtype=np.int32) * 1000
    pw = pack_weights(q, bias=bias)
    a = QTensor(_rand(rng, (3, 6), U8), 0.2, 9)
    before = matmul(a, pw, out_dtype=np.int32)     # packs it for this ISA first
    pw2 = pickle.loads(pickle.dumps(pw))
    assert isinstance(pw2, PackedWeights) and pw2.shape == (6, 5) and pw2.dtype == S8
    np.testing.assert_array_equal(pw2.bias, bias)
    np.testing.assert_array_equal(matmul(a, pw2, out_dtype=np.int32), before)
    y1 = matmul(a, pw, out_scale=0.7, out_zero_point=3)
    y2 = matmul(a, pw2, out_scale=0.7, out_zero_point=3)
    np.testing.assert_array_equal(y1.data, y2.data)


def test_qtensor_and_packed_weights_repr_say_what_they_hold():
    q = QTensor(np.zeros((3, 4), np.int8), 0.25, 0)
    r = repr(q)
    assert "QTensor" in r and "(3, 4)" in r and "int8" in r and "0.25" in r
    rp = repr(QTensor(np.zeros((3, 4), np.int8), np.ones(4, np.float32), 0, axis=1))
    assert "axis=1" in rp
    pr = repr(pack_weights(q))
    assert "PackedWeights" in pr and "K=3" in pr and "N=4" in pr


# ------------------------------------------------------------------ numpy.matmul semantics

def test_batched_activations_times_packed_weights_fold_batch_into_m(ref):
    rng = np.random.default_rng(12)
    a = _rand(rng, (2, 3, 5, 11), U8)
    b = QTensor(_rand(rng, (11, 9), S8), 0.1, 0)
    y = matmul(QTensor(a, 0.5, 100), pack_weights(b), out_dtype=np.int32)
    assert y.shape == (2, 3, 5, 9)
    np.testing.assert_array_equal(y, ref.gemm_int32(a, b.data, 100, 0))
    yq = matmul(QTensor(a, 0.5, 100), pack_weights(b), out_scale=1.0, out_zero_point=128)
    assert yq.shape == (2, 3, 5, 9)
    np.testing.assert_array_equal(yq.data, ref.requant(ref.gemm_int32(a, b.data, 100, 0), "fp32", 0.5,
                                                       np.float32(0.1), 1.0, 128, U8))


@pytest.mark.parametrize("a_shape,b_shape", [
    ((4, 5, 6), (4, 6, 3)),        # (B,M,K) @ (B,K,N)
    ((2, 1, 5, 6), (3, 6, 7)),     # batch dims broadcast
    ((5, 6), (3, 6, 7)),           # 2-D @ batched
    ((3, 5, 6), (6, 7)),           # batched @ 2-D QTensor
    ((6,), (6, 7)),                # 1-D left operand
    ((5, 6), (6,)),                # 1-D right operand
    ((6,), (6,)),                  # vector dot
    ((6,), (2, 6, 7)),             # 1-D @ batched
    ((2, 5, 6), (6,)),             # batched @ 1-D
    ((1, 0, 6), (2, 6, 3)),        # empty M
    ((4, 0), (0, 3)),              # K = 0: sums are zero
], ids=str)
def test_broadcasting_and_1d_operands_follow_numpy_matmul(a_shape, b_shape, ref):
    rng = np.random.default_rng(len(a_shape) * 10 + len(b_shape))
    a = _rand(rng, a_shape, S8)
    b = _rand(rng, b_shape, U8)
    want = np.matmul(a.astype(np.int64) - 3, b.astype(np.int64) - 130)
    got = matmul_integer(a, b, 3, 130)
    assert got.shape == want.shape and got.dtype == np.int32
    np.testing.assert_array_equal(got, want)
    y = matmul(QTensor(a, 0.1, 3), QTensor(b, 0.2, 130), out_dtype=np.int32)
    np.testing.assert_array_equal(y, want)
    if b.ndim == 2:                              # packed weights on the right
        np.testing.assert_array_equal(matmul(QTensor(a, 0.1, 3), pack_weights(QTensor(b, 0.2, 130)),
                                             out_dtype=np.int32), want)
    f = QTensor(a, 0.1, 3) @ QTensor(b, 0.2, 130)
    assert f.shape == want.shape and f.dtype == np.float32
    np.testing.assert_allclose(f, want * np.float64(np.float32(0.1)) * np.float64(np.float32(0.2)), rtol=1e-6)


def test_empty_products_return_empty_or_bias():
    a = np.zeros((0, 5), np.uint8)
    b = np.zeros((5, 4), np.int8)
    assert matmul_integer(a, b).shape == (0, 4)
    assert matmul_integer(np.zeros((3, 5), np.uint8), np.zeros((5, 0), np.int8)).shape == (3, 0)
    bias = np.array([1, -2, 3], np.int32)
    y = matmul(QTensor(np.zeros((2, 0), np.uint8), 1.0, 0), QTensor(np.zeros((0, 3), np.int8), 1.0, 0),
               bias=bias, out_dtype=np.int32)
    np.testing.assert_array_equal(y, np.broadcast_to(bias, (2, 3)))


# --------------------------------------------------------------------------------- out=

def test_out_is_written_in_place_and_returned(ref):
    rng = np.random.default_rng(13)
    a, b = _rand(rng, (7, 20), U8), _rand(rng, (20, 9), S8)
    out = np.full((7, 9), -1, np.int32)
    r = matmul_integer(a, b, 5, 0, out=out)
    assert r is out
    np.testing.assert_array_equal(out, ref.gemm_int32(a, b, 5, 0))
    out8 = np.zeros((7, 9), np.uint8)
    y = matmul(QTensor(a, 0.1, 5), QTensor(b, 0.1, 0), out_scale=0.5, out_zero_point=100, out=out8)
    assert isinstance(y, QTensor) and np.shares_memory(y.data, out8) and y.data.shape == (7, 9)
    np.testing.assert_array_equal(out8, ref.requant(ref.gemm_int32(a, b, 5, 0), "fp32", 0.1, np.float32(0.1),
                                                    0.5, 100, U8))
    out32 = np.zeros((7, 9), np.int32)              # an int32 out means int32 output
    assert matmul(QTensor(a, 0.1, 5), QTensor(b, 0.1, 0), out=out32) is out32
    np.testing.assert_array_equal(out32, ref.gemm_int32(a, b, 5, 0))
    out_s8 = np.zeros((7, 9), np.int8)              # out's dtype is the output dtype
    y = matmul(QTensor(a, 0.1, 5), QTensor(b, 0.1, 0), out_scale=0.5, out=out_s8)
    assert y.dtype == S8 and np.shares_memory(y.data, out_s8)
    outb = np.zeros((2, 3, 7, 9), np.int32)         # batched
    ab = _rand(rng, (2, 3, 7, 20), U8)
    assert matmul(QTensor(ab, 1.0, 0), pack_weights(QTensor(b, 1.0, 0)), out_dtype=np.int32, out=outb) is outb
    np.testing.assert_array_equal(outb, ref.gemm_int32(ab, b))
    out1 = np.zeros(9, np.int32)                    # 1-D result
    assert matmul_integer(a[0], b, out=out1) is out1
    np.testing.assert_array_equal(out1, ref.gemm_int32(a[0], b))


def test_bad_out_is_rejected():
    a, b = np.ones((4, 6), np.uint8), np.ones((6, 5), np.int8)
    with pytest.raises(ValueError, match="shape"):
        matmul_integer(a, b, out=np.zeros((4, 6), np.int32))
    with pytest.raises(ValueError, match="shape"):
        matmul_integer(a, b, out=np.zeros((5, 4), np.int32))
    with pytest.raises(TypeError, match="dtype"):
        matmul_integer(a, b, out=np.zeros((4, 5), np.int64))
    with pytest.raises(ValueError, match="contiguous"):
        matmul_integer(a, b, out=np.zeros((5, 4), np.int32).T)
    with pytest.raises(ValueError, match="contiguous"):
        matmul_integer(a, b, out=np.zeros((4, 10), np.int32)[:, ::2])
    ro = np.zeros((4, 5), np.int32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        matmul_integer(a, b, out=ro)
    with pytest.raises(TypeError, match="numpy array"):
        matmul_integer(a, b, out=[[0] * 5] * 4)
    aq, bq = QTensor(a, 1.0, 0), QTensor(b, 1.0, 0)
    with pytest.raises(TypeError):
        matmul(aq, bq, out_scale=1.0, out=np.zeros((4, 5), np.int16))
    with pytest.raises(TypeError, match="dtype"):
        matmul(aq, bq, out_scale=1.0, out_dtype=np.uint8, out=np.zeros((4, 5), np.int8))
    with pytest.raises(ValueError, match="shape"):
        matmul(aq, pack_weights(bq), out_scale=1.0, out=np.zeros((4, 6), np.uint8))


# ------------------------------------------------------------------- strides and alignment

def _misaligned(arr):
    """A copy of ``arr`` whose data starts one byte past an aligned address."""
    buf = np.zeros(arr.nbytes + 64, np.uint8)
    off = (-buf.ctypes.data) % 64 + 1
    view = buf[off:off + arr.nbytes].view(arr.dtype).reshape(arr.shape)
    view[...] = arr
    assert view.ctypes.data % 2 == 1
    return view


def test_non_contiguous_inputs_give_exact_results(isa, ref):
    rng = np.random.default_rng(14)
    big_a = _rand(rng, (40, 90), U8)
    big_b = _rand(rng, (70, 60), S8)
    cases = [
        (big_a[::2, 1::3][:17, :25], big_b[:25, ::2][:, :19]),        # slices with steps
        (big_a[:25, :17].T, big_b[:25, :19].T.copy().T),                # transposed views
        (big_a[::-1, ::-1][:9, :33], big_b[::-1][:33, 5:21]),           # negative strides
        (np.asfortranarray(big_a[:13, :30]), np.asfortranarray(big_b[:30, :17])),
        (np.broadcast_to(big_a[0, :30], (6, 30)), np.broadcast_to(big_b[:30, :1], (30, 8))),  # zero strides
    ]
    for a, b in cases:
        zb = rng.integers(-128, 128, b.shape[1])
        want = ref.gemm_int32(a, b, 7, zb)
        np.testing.assert_array_equal(matmul_integer(a, b, 7, zb), want)
        bq = QTensor(b, np.full(b.shape[1], 0.01, np.float32), zb, axis=1)
        np.testing.assert_array_equal(matmul(QTensor(a, 1.0, 7), bq, out_dtype=np.int32), want)
        np.testing.assert_array_equal(matmul(QTensor(a, 1.0, 7), pack_weights(bq), out_dtype=np.int32), want)
        y = matmul(QTensor(a, 0.1, 7), pack_weights(bq), out_scale=2.0, out_zero_point=0, out_dtype=np.int8)
        np.testing.assert_array_equal(y.data, ref.requant(want, "fp32", 0.1, bq.scale, 2.0, 0, S8))


def test_misaligned_inputs_outputs_and_bias_give_exact_results(isa, ref):
    rng = np.random.default_rng(15)
    for m, n, k in [(1, 16, 32), (7, 33, 65), (13, 17, 9)]:
        a = _misaligned(_rand(rng, (m, k), S8))
        b = _misaligned(_rand(rng, (k, n), U8))
        bias = _misaligned(rng.integers(-1000, 1000, n).astype(np.int32))
        out = _misaligned(np.zeros((m, n), np.int32))
        want = ref.gemm_int32(a, b, -4, 131, bias)
        r = matmul(QTensor(a, 1.0, -4), QTensor(b, 1.0, 131), bias=bias, out_dtype=np.int32, out=out)
        assert r is out
        np.testing.assert_array_equal(out, want)
        out = _misaligned(np.zeros((m, n), np.int32))
        assert matmul_integer(a, b, -4, 131, out=out) is out
        np.testing.assert_array_equal(out, ref.gemm_int32(a, b, -4, 131))


# ------------------------------------------------------------------------ bad arguments

def _aq(shape=(3, 4), dtype=np.uint8):
    return QTensor(np.ones(shape, dtype), 0.1, 0)


def _bq(shape=(4, 5), dtype=np.int8):
    return QTensor(np.ones(shape, dtype), 0.1, 0)


@pytest.mark.parametrize("a,b", [
    (np.ones((3, 4), np.float32), np.ones((4, 5), np.int8)),
    (np.ones((3, 4), np.uint8), np.ones((4, 5), np.int16)),
    (np.ones((3, 4), np.int32), np.ones((4, 5), np.int8)),
    (np.ones((3, 4), bool), np.ones((4, 5), np.int8)),
    (np.ones((3, 4), np.uint8), np.ones((4, 5), np.float64)),
], ids=["float_a", "int16_b", "int32_a", "bool_a", "float64_b"])
def test_wrong_data_dtypes_raise_type_error(a, b):
    with pytest.raises(TypeError, match="uint8 or int8"):
        matmul_integer(a, b)


def test_wrong_qtensor_data_dtypes_raise_type_error():
    for dt in (np.float32, np.int16, np.int32, np.uint16):
        with pytest.raises(TypeError, match="uint8 or int8"):
            QTensor(np.ones((2, 2), dt), 1.0, 0)
    with pytest.raises(TypeError):
        quantize(np.ones(3), 1.0, 0, dtype=np.int16)
    with pytest.raises(TypeError):
        quantize(np.array(["a"]), 1.0, 0)


def test_mismatched_inner_dimension_raises_value_error():
    with pytest.raises(ValueError, match="not aligned"):
        matmul_integer(np.ones((3, 4), np.uint8), np.ones((5, 6), np.int8))
    with pytest.raises(ValueError, match="not aligned"):
        matmul(_aq((3, 4)), _bq((5, 6)), out_dtype=np.int32)
    with pytest.raises(ValueError, match="not aligned"):
        matmul(_aq((3, 4)), pack_weights(_bq((5, 6))), out_scale=1.0)
    pw = pack_weights(_bq((4, 6)))
    matmul(_aq((3, 4)), pw, out_scale=1.0)                        # fills the plan cache
    with pytest.raises(ValueError, match="not aligned"):
        matmul(_aq((3, 5)), pw, out_scale=1.0)                    # a cached call, wrong K
    with pytest.raises(ValueError, match="not aligned"):
        _aq((3, 4)) @ _bq((3, 4))


@pytest.mark.parametrize("scale", [0.0, -1.0, np.nan, np.inf, -np.inf, 1e-50, 1e39,
                                   np.array([0.1, 0.0, 0.2]), np.array([0.1, np.nan, 0.2])], ids=repr)
@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_bad_scales_raise_value_error(scale):
    n = 3
    with pytest.raises(ValueError, match="scale"):
        QTensor(np.ones((2, n), np.int8), scale, 0, axis=1 if np.ndim(scale) else None)
    with pytest.raises(ValueError, match="scale"):
        quantize(np.ones((2, n)), scale, 0, axis=1 if np.ndim(scale) else None)
    if np.ndim(scale) == 0:
        with pytest.raises(ValueError, match="out_scale"):
            matmul(_aq(), _bq(), out_scale=scale)


@pytest.mark.parametrize("dtype,zp", [(U8, 256), (U8, -1), (S8, 128), (S8, -129), (U8, 1e9), (S8, 2**40)])
def test_zero_point_outside_the_dtype_range_raises_value_error(dtype, zp):
    with pytest.raises(ValueError, match="zero_point"):
        QTensor(np.ones(3, dtype), 1.0, zp)
    with pytest.raises(ValueError, match="zero_point"):
        quantize(np.ones(3), 1.0, zp, dtype=dtype)
    with pytest.raises(ValueError, match="a_zero_point"):
        matmul_integer(np.ones((2, 3), dtype), np.ones((3, 2), np.int8), a_zero_point=zp)
    with pytest.raises(ValueError, match="b_zero_point"):
        matmul_integer(np.ones((2, 3), np.uint8), np.ones((3, 2), dtype), b_zero_point=zp)
    with pytest.raises(ValueError, match="out_zero_point"):
        matmul(_aq(), _bq(), out_scale=1.0, out_zero_point=zp, out_dtype=dtype)


def test_non_integer_zero_points_raise_type_error():
    with pytest.raises(TypeError, match="zero_point"):
        QTensor(np.ones(3, np.uint8), 1.0, 2.5)
    with pytest.raises(TypeError, match="zero_point"):
        QTensor(np.ones(3, np.uint8), 1.0, "3")


def test_per_channel_parameters_of_wrong_length_raise_value_error():
    data = np.ones((4, 5), np.int8)
    with pytest.raises(ValueError, match="expected 5"):
        QTensor(data, np.ones(6, np.float32), 0, axis=1)
    with pytest.raises(ValueError, match="expected 5"):
        QTensor(data, 1.0, np.zeros(4, np.int32), axis=1)
    with pytest.raises(ValueError, match="axis"):
        QTensor(data, np.ones(5, np.float32), 0)                      # per-channel without axis
    with pytest.raises(ValueError, match="axis"):
        QTensor(data, 1.0, 0, axis=2)
    with pytest.raises(ValueError, match="expected 5"):
        matmul_integer(np.ones((3, 4), np.uint8), data, b_zero_point=np.zeros(4, np.int64))
    with pytest.raises(ValueError, match="expected 7"):
        quantize(np.ones((7, 2)), np.ones(3), 0, axis=0)


def test_per_channel_a_and_per_row_weights_raise_value_error():
    a_pc = QTensor(np.ones((3, 4), np.uint8), np.ones(3, np.float32), 0, axis=0)
    with pytest.raises(ValueError, match="per tensor"):
        matmul(a_pc, _bq(), out_scale=1.0)
    with pytest.raises(ValueError, match="per tensor"):
        a_pc @ _bq()
    with pytest.raises(ValueError, match="scalar"):
        matmul_integer(np.ones((3, 4), np.uint8), np.ones((4, 5), np.int8), a_zero_point=np.zeros(3, np.int64))
    b_rows = QTensor(np.ones((4, 5), np.int8), np.ones(4, np.float32), 0, axis=0)
    with pytest.raises(ValueError, match="per column"):
        pack_weights(b_rows)
    with pytest.raises(ValueError, match="per column"):
        matmul(_aq(), b_rows, out_scale=1.0)
    with pytest.raises(ValueError, match="2-D"):
        pack_weights(QTensor(np.ones((2, 4, 5), np.int8), 1.0, 0))


@pytest.mark.parametrize("activation", ["gelu", "", (3.0, 1.0), (np.nan, 1.0), (0.0, np.nan), 5, (1.0,),
                                        (1, 2, 3), ("a", "b")], ids=repr)
def test_bad_activation_raises_value_error(activation):
    with pytest.raises(ValueError, match="activation"):
        matmul(_aq(), _bq(), out_scale=1.0, activation=activation)


def test_activation_with_int32_output_raises_value_error():
    with pytest.raises(ValueError):
        matmul(_aq(), _bq(), out_dtype=np.int32, activation="relu")
    with pytest.raises(ValueError):
        matmul(_aq(), _bq(), out_dtype=np.int32, out_scale=1.0)


@pytest.mark.parametrize("requant", ["float", "FP32 ", None, "fixed"], ids=repr)
def test_bad_requant_raises_value_error(requant):
    with pytest.raises(ValueError, match="requant"):
        matmul(_aq(), _bq(), out_scale=1.0, requant=requant)


def test_missing_out_scale_raises_type_error():
    with pytest.raises(TypeError, match="out_scale"):
        matmul(_aq(), _bq())
    with pytest.raises(TypeError, match="out_scale"):
        matmul(_aq(), pack_weights(_bq()), out_dtype=np.int8)


def test_bad_out_dtype_and_out_scale_shape_raise():
    with pytest.raises(TypeError, match="out_dtype"):
        matmul(_aq(), _bq(), out_scale=1.0, out_dtype=np.float32)
    with pytest.raises(ValueError, match="out_scale"):
        matmul(_aq(), _bq(), out_scale=np.array([1.0, 2.0]))


@pytest.mark.parametrize("bias,exc", [
    (np.zeros(4, np.int32), ValueError),
    (np.zeros((1, 5), np.int32), ValueError),
    (np.zeros((5, 5), np.int32), ValueError),
    (np.zeros(5, np.float32), TypeError),
    (np.zeros(5, np.float64), TypeError),
    (np.full(5, 2**31, np.int64), ValueError),
    (np.full(5, -(2**31) - 1, np.int64), ValueError),
], ids=["short", "2d", "square", "float32", "float64", "too_big", "too_small"])
def test_bad_bias_raises(bias, exc):
    with pytest.raises(exc, match="bias"):
        matmul(_aq(), _bq(), bias=bias, out_scale=1.0)
    with pytest.raises(exc, match="bias"):
        pack_weights(_bq(), bias=bias)


def test_wrong_operand_types_raise_type_error():
    with pytest.raises(TypeError, match="QTensor"):
        matmul(np.ones((3, 4), np.uint8), _bq(), out_scale=1.0)
    with pytest.raises(TypeError, match="QTensor or PackedWeights"):
        matmul(_aq(), np.ones((4, 5), np.int8), out_scale=1.0)
    with pytest.raises(TypeError, match="QTensor"):
        matmul_integer(_aq(), np.ones((4, 5), np.int8))
    with pytest.raises(TypeError, match="QTensor"):
        pack_weights(np.ones((4, 5), np.int8))
    with pytest.raises(TypeError, match="scale"):
        dequantize(np.ones(3, np.uint8))


def test_zero_dimensional_operands_raise_value_error():
    with pytest.raises(ValueError):
        matmul_integer(np.uint8(3), np.ones((1, 2), np.int8))
    with pytest.raises(ValueError):
        matmul_integer(np.ones((2, 1), np.uint8), np.int8(3))


@pytest.mark.parametrize("a_shape,b_shape", [
    ((2**40, 0), (0, 2**40)),
    ((2**62, 0), (0, 2**62)),
    ((2**33, 0), (0, 2**33)),
    ((2**20, 2**20, 0), (0, 2**40)),
], ids=str)
def test_products_whose_size_overflows_raise_value_error_not_crash(a_shape, b_shape):
    a = np.empty(a_shape, np.uint8)
    b = np.empty(b_shape, np.int8)
    with pytest.raises(ValueError):
        matmul_integer(a, b)
    with pytest.raises(ValueError):
        matmul(QTensor(a, 1.0, 0), QTensor(b, 1.0, 0), out_scale=1.0)
    with pytest.raises(ValueError):
        QTensor(a, 1.0, 0) @ QTensor(b, 1.0, 0)


def test_empty_products_of_huge_but_zero_sized_operands_are_fine():
    y = matmul_integer(np.empty((0, 2**40), np.uint8), np.empty((2**40, 0), np.int8))
    assert y.shape == (0, 0) and y.dtype == np.int32


def test_batch_dimensions_that_do_not_broadcast_raise_value_error():
    with pytest.raises(ValueError):
        matmul_integer(np.ones((2, 3, 4), np.uint8), np.ones((3, 4, 5), np.int8))
    with pytest.raises(ValueError):
        matmul(QTensor(np.ones((2, 3, 4), np.uint8), 1.0, 0), QTensor(np.ones((3, 4, 5), np.int8), 1.0, 0),
               out_scale=1.0)


@pytest.mark.parametrize("a_shape,b_shape", [((2**40, 0, 3), (3, 4)), ((3, 4), (2**40, 4, 0))], ids=str)
def test_empty_product_with_huge_batch_returns_at_once(a_shape, b_shape):
    """An empty result must come back at once (or be refused with a ValueError), not
    after a loop over 2^40 empty batch elements. (numpy.matmul itself loops here for
    integer dtypes, so the expected shape is computed, not asked of numpy.)"""
    code = ("import numpy as np, qkernels as q\n"
            f"a = np.empty({a_shape}, np.uint8); b = np.empty({b_shape}, np.int8)\n"
            "want = (*np.broadcast_shapes(a.shape[:-2], b.shape[:-2]), a.shape[-2], b.shape[-1])\n"
            "try:\n"
            "    print(q.matmul_integer(a, b).shape == want)\n"
            "except ValueError:\n"
            "    print('ValueError')\n")
    try:
        r = _python(code, timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"matmul_integer(np.empty({a_shape}), np.empty({b_shape})) still running after 10 s")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() in ("True", "ValueError")


# ------------------------------------------------------------------- ISA and thread control

def test_use_isa_forces_a_path_in_this_thread_only_and_restores_it():
    before = qkernels.get_isa()
    for isa in qkernels.SUPPORTED_ISAS + qkernels.EMULATED_ISAS:
        with qkernels.use_isa(isa) as name:
            assert name == isa and qkernels.get_isa() == isa and qkernels.cpu_info()["isa"] == isa
            seen = []
            t = threading.Thread(target=lambda: seen.append(qkernels.get_isa()))
            t.start()
            t.join()
            assert seen == [before]                     # other threads keep the default
        assert qkernels.get_isa() == before
    with pytest.raises(RuntimeError):
        with qkernels.use_isa("scalar"):
            raise RuntimeError("boom")
    assert qkernels.get_isa() == before


def _unavailable_isa():
    names = qkernels._dispatch.ISA_NAMES
    missing = [n for n in names if n not in qkernels.SUPPORTED_ISAS]
    assert missing, "every ISA supported? x86 lacks NEON and Arm lacks AVX2"
    return missing[0]


def test_unavailable_isa_gives_a_clear_error():
    isa = _unavailable_isa()
    with pytest.raises(ValueError, match=f"'{isa}' is not available"):
        with qkernels.use_isa(isa):
            pass
    with pytest.raises(ValueError, match="not available"):
        qkernels.set_isa(isa)
    with pytest.raises(ValueError, match="unknown ISA"):
        qkernels.set_isa("avx9000")
    with pytest.raises(ValueError, match="unknown ISA"):
        with qkernels.use_isa("sse"):
            pass


def test_set_isa_changes_the_default_path():
    for isa in qkernels.SUPPORTED_ISAS + qkernels.EMULATED_ISAS:
        qkernels.set_isa(isa)
        assert qkernels.get_isa() == isa
        seen = []
        t = threading.Thread(target=lambda: seen.append(qkernels.get_isa()))
        t.start()
        t.join()
        assert seen == [isa]


@pytest.mark.parametrize("isa", list(qkernels.SUPPORTED_ISAS + qkernels.EMULATED_ISAS))
def test_QKERNELS_ISA_env_var_forces_the_path(isa):
    r = _python("import qkernels as q; i = q.cpu_info(); print(q.get_isa(), i['isa'], i['forced_by_env'])",
                QKERNELS_ISA=isa.upper())
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [isa, isa, "True"]


def test_QKERNELS_ISA_env_var_naming_an_unavailable_path_fails_clearly():
    isa = _unavailable_isa()
    r = _python("import qkernels", QKERNELS_ISA=isa)
    assert r.returncode != 0
    assert "ValueError" in r.stderr and f"'{isa}' is not available" in r.stderr
    r = _python("import qkernels", QKERNELS_ISA="nosuchisa")
    assert r.returncode != 0 and "unknown ISA" in r.stderr


def test_without_env_the_best_path_is_chosen():
    r = _python("import qkernels as q; print(q.get_isa(), q.cpu_info()['forced_by_env'])")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [qkernels.SUPPORTED_ISAS[0], "False"]


def test_QKERNELS_NUM_THREADS_env_var_sets_the_thread_count():
    r = _python("import qkernels as q; print(q.get_num_threads(), q.cpu_info()['num_threads'])",
                QKERNELS_NUM_THREADS="3")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["3", "3"]
    for bad in ("0", "-2", "two"):
        r = _python("import qkernels", QKERNELS_NUM_THREADS=bad)
        assert r.returncode != 0 and "QKERNELS_NUM_THREADS" in r.stderr, (bad, r.stderr)


def test_set_num_threads_validates_and_round_trips():
    qkernels.set_num_threads(3)
    assert qkernels.get_num_threads() == 3
    for bad in (0, -1, 1.5, "2", True, None):
        with pytest.raises(ValueError):
            qkernels.set_num_threads(bad)
    assert qkernels.get_num_threads() == 3


def test_cpu_info_reports_detection_and_choice():
    info = qkernels.cpu_info()
    for key in ("arch", "features", "isas_available", "isa", "forced_by_env", "gemm_kernels", "num_threads"):
        assert key in info, key
    assert info["isas_available"] == list(qkernels.SUPPORTED_ISAS)
    assert info["isa"] == qkernels.get_isa()
    assert info["num_threads"] == qkernels.get_num_threads()
    assert isinstance(info["features"], dict) and all(isinstance(v, bool) for v in info["features"].values())
    assert info["arch"] in ("x86_64", "aarch64") or info["arch"]
    json.dumps(info)


def test_cli_info_runs():
    r = subprocess.run([sys.executable, "-m", "qkernels", "info"], capture_output=True, text=True, timeout=120,
                       cwd=NEUTRAL_DIR)
    assert r.returncode == 0, r.stderr
    assert "ISA path used" in r.stdout and qkernels.get_isa() in r.stdout
    r = subprocess.run([sys.executable, "-m", "qkernels", "info", "--json"], capture_output=True, text=True,
                       cwd=NEUTRAL_DIR,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["isas_available"] == list(qkernels.SUPPORTED_ISAS)


# ---------------------------------------------------------------------------- concurrency

def test_concurrent_calls_from_8_threads_give_correct_results(ref):
    """8 Python threads, each its own shapes, dtypes, ISA path and output kind, some
    sharing one PackedWeights (its lazy packing and plan cache) — all exact."""
    rng = np.random.default_rng(16)
    shared_b = QTensor(_rand(rng, (48, 40), S8), np.linspace(0.01, 0.03, 40).astype(np.float32),
                       rng.integers(-10, 10, 40), axis=1)
    shared = pack_weights(shared_b)
    qkernels.set_num_threads(2)
    isas = list(qkernels.SUPPORTED_ISAS + qkernels.EMULATED_ISAS)
    barrier = threading.Barrier(8)

    def worker(i):
        r = np.random.default_rng(100 + i)
        isa = isas[i % len(isas)]
        barrier.wait()
        errors = []
        with qkernels.use_isa(isa):
            for rep in range(40 if not SMALL else 4):
                m = int(r.integers(1, 64))
                if i % 2:                                    # the shared packed weights
                    a = _rand(r, (m, 48), U8)
                    za, sy, zy = int(r.integers(0, 256)), float(r.uniform(0.05, 0.5)), int(r.integers(0, 256))
                    mode = ("fp32", "fixedpoint")[rep % 2]
                    got = matmul(QTensor(a, 0.1, za), shared, out_scale=sy, out_zero_point=zy, requant=mode).data
                    want = ref.requant(ref.gemm_int32(a, shared_b.data, za, shared_b.zero_point), mode,
                                       0.1, shared_b.scale, sy, zy, U8)
                else:                                        # private operands
                    k, n = int(r.integers(1, 300)), int(r.integers(1, 80))
                    a, b = _rand(r, (m, k), S8), _rand(r, (k, n), U8)
                    za, zb = int(r.integers(-128, 128)), int(r.integers(0, 256))
                    got = matmul_integer(a, b, za, zb)
                    want = ref.gemm_int32(a, b, za, zb)
                if not np.array_equal(got, want):
                    errors.append((i, isa, rep, m))
                if qkernels.get_isa() != isa:
                    errors.append((i, "isa changed", qkernels.get_isa()))
        return errors

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(worker, range(8)))
    assert results == [[]] * 8


# ---------------------------------------------------------------- odd inputs, clear errors

def _mm(**kw):
    return matmul(QTensor(np.ones((2, 3), np.uint8), 1.0, 0), QTensor(np.ones((3, 2), np.int8), 1.0, 0), **kw)


ODD_INPUTS = {
    "0-d b QTensor": lambda: matmul(QTensor(np.ones((2, 1), np.uint8), 1.0, 0), QTensor(np.int8(3), 1.0, 0),
                                    out_dtype=np.int32),
    "0-d x with per-axis scale": lambda: quantize(np.float32(1.0), np.array([1.0, 2.0]), 0, axis=0),
    "0-d QTensor with per-axis scale": lambda: QTensor(np.uint8(3), np.array([1.0, 2.0]), 0, axis=0),
    "set_isa(None)": lambda: qkernels.set_isa(None),
    "use_isa(3)": lambda: qkernels.use_isa(3).__enter__(),
    "out_zero_point of two values": lambda: _mm(out_scale=1.0, out_zero_point=np.array([1, 2])),
}


@pytest.mark.parametrize("name", list(ODD_INPUTS))
def test_odd_inputs_raise_a_clear_value_or_type_error(name):
    """Not IndexError/AttributeError from deep inside, and the message names the culprit."""
    with pytest.raises((ValueError, TypeError)) as info:
        ODD_INPUTS[name]()
    msg = str(info.value)
    culprit = {"out_zero_point of two values": "out_zero_point", "set_isa(None)": "ISA",
               "use_isa(3)": "ISA"}.get(name)
    if culprit:
        assert culprit.lower() in msg.lower(), msg


# ------------------------------------------------------------- bit-exact with ONNX Runtime

def _ort_run(node_type, inputs, initializers, out_type, order=None):
    """Run one ONNX node in ONNX Runtime; ``order`` lists the node's input names."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper
    types = {np.dtype(np.uint8): TensorProto.UINT8, np.dtype(np.int8): TensorProto.INT8,
             np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int32): TensorProto.INT32}
    names = order or [n for n, _ in inputs] + [n for n, _ in initializers]
    inits = [helper.make_tensor(n, types[np.asarray(v).dtype], list(np.shape(v)), np.asarray(v).ravel().tolist())
             for n, v in initializers]
    graph = helper.make_graph(
        [helper.make_node(node_type, names, ["y"])], "g",
        [helper.make_tensor_value_info(n, types[v.dtype], list(v.shape)) for n, v in inputs],
        [helper.make_tensor_value_info("y", types[np.dtype(out_type)], None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, dict(inputs))[0]


# ORT's QLinearMatMul kernels: output type = A's type; no int8 x uint8.
ORT_PAIRS = [(U8, U8), (U8, S8), (S8, S8)]


@pytest.mark.parametrize("per_column", [False, True], ids=["per_tensor", "per_column"])
@pytest.mark.parametrize("a_dtype,b_dtype", ORT_PAIRS, ids=["u8xu8", "u8xs8", "s8xs8"])
def test_matmul_is_bit_exact_with_onnxruntime_qlinearmatmul(isa, a_dtype, b_dtype, per_column):
    """Weights kept to 7 bits, where ORT's own u8 x s8 AVX2 path is exact too."""
    rng = np.random.default_rng([a_dtype.num, b_dtype.num, per_column])
    for _ in range(4 if SMALL else 12):
        m, k, n = (int(v) for v in rng.integers(1, 40, 3))
        a = _rand(rng, (m, k), a_dtype)
        b = (rng.integers(-64, 64, (k, n)) + (0 if b_dtype == S8 else 128)).astype(b_dtype)
        za = int(rng.integers(np.iinfo(a_dtype).min, np.iinfo(a_dtype).max + 1))
        zb0 = int(rng.integers(-8, 8)) + (0 if b_dtype == S8 else 128)
        zb = np.full(n, zb0, b_dtype) if per_column else np.array(zb0, b_dtype)
        sa = np.float32(rng.uniform(0.005, 0.1))
        sb = rng.uniform(0.005, 0.1, n).astype(np.float32) if per_column else np.float32(rng.uniform(0.005, 0.1))
        sy = np.float32(rng.uniform(0.02, 1.0))
        zy = int(rng.integers(np.iinfo(a_dtype).min, np.iinfo(a_dtype).max + 1))
        want = _ort_run("QLinearMatMul", [("a", a), ("b", b)],
                        [("sa", sa), ("za", np.array(za, a_dtype)), ("sb", sb), ("zb", zb), ("sy", sy),
                         ("zy", np.array(zy, a_dtype))], a_dtype,
                        order=["a", "sa", "za", "b", "sb", "zb", "sy", "zy"])
        bq = QTensor(b, sb, zb.astype(np.int32), axis=1 if per_column else None)
        got = matmul(QTensor(a, sa, za), pack_weights(bq), out_scale=float(sy), out_zero_point=zy)
        np.testing.assert_array_equal(got.data, want, err_msg=f"{isa} M={m} K={k} N={n}")


def test_matmul_integer_is_bit_exact_with_onnxruntime(isa):
    rng = np.random.default_rng(31)
    for a_dtype, b_dtype in ORT_PAIRS:
        m, k, n = 7, 45, 19
        a = _rand(rng, (m, k), a_dtype)
        b = (rng.integers(-64, 64, (k, n)) + (0 if b_dtype == S8 else 128)).astype(b_dtype)
        za = np.array(int(rng.integers(np.iinfo(a_dtype).min, np.iinfo(a_dtype).max + 1)), a_dtype)
        zb = np.array(3 + (0 if b_dtype == S8 else 128), b_dtype)
        want = _ort_run("MatMulInteger", [("a", a), ("b", b)], [("za", za), ("zb", zb)], np.int32,
                        order=["a", "b", "za", "zb"])
        np.testing.assert_array_equal(matmul_integer(a, b, int(za), int(zb)), want)


def test_quantize_and_dequantize_are_bit_exact_with_onnxruntime():
    rng = np.random.default_rng(32)
    x = np.concatenate([rng.normal(0, 4, 500), np.arange(-20, 20) * 0.5, [1e9, -1e9]]).astype(np.float32)
    for dtype, zp in ((U8, 128), (U8, 3), (S8, 0), (S8, -100)):
        for scale in (np.float32(0.1), np.float32(0.5), np.float32(0.0371)):
            want = _ort_run("QuantizeLinear", [("x", x)], [("s", scale), ("z", np.array(zp, dtype))], dtype)
            q = quantize(x, float(scale), zp, dtype=dtype)
            np.testing.assert_array_equal(q.data, want)
            f = _ort_run("DequantizeLinear", [("q", q.data)], [("s", scale), ("z", np.array(zp, dtype))],
                         np.float32)
            np.testing.assert_array_equal(dequantize(q), f)


def test_qtensor_parameters_are_read_only():
    q = QTensor(np.zeros((2, 3), np.uint8), np.array([0.5, 1.0, 2.0]), np.array([1, 2, 3]), axis=1)
    with pytest.raises(AttributeError):
        q.scale = 2.0
    with pytest.raises(ValueError):
        q.zero_point[0] = 7


def test_weights_changed_after_packing_do_not_change_the_packed_product():
    """PackedWeights owns a copy: the kernel choice made at pack time (pairs_128) and the
    panels packed later always describe the same values."""
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (8, 6), dtype=np.uint8)
    b = rng.integers(-64, 64, (6, 5), dtype=np.int8)
    want = (a.astype(np.int64) @ b.astype(np.int64)).astype(np.int32)
    pw = pack_weights(QTensor(b, 1.0, 0))
    b[:] = -128                                   # would break the vpmaddubsw condition
    np.testing.assert_array_equal(matmul(QTensor(a, 1.0, 0), pw, out_dtype=np.int32), want)



# ------------------------------------------------- out= never overlaps an input (issue 12)

def _overlapping_calls():
    """name -> (a call whose ``out`` overlaps one of its inputs, that input's name)."""
    rng = np.random.default_rng(12)
    x = _rand(rng, (1, 8, 8, 8), U8)
    w_1x1, w_dw = QTensor(_rand(rng, (8, 1, 1, 8), S8), 0.02, 0), QTensor(_rand(rng, (8, 3, 3, 1), S8), 0.02, 0)
    buf = np.zeros(128, np.uint8)                 # int8 weights in the first half of an int32 output
    w_in_out = QTensor(buf[:64].view(S8).reshape(8, 1, 1, 8), 0.02, 0)
    a, b = _rand(rng, (8, 8), U8), QTensor(_rand(rng, (8, 8), S8), 0.02, 0)
    packed = pack_weights(b)
    both = np.zeros(64, np.uint8)                 # a and out overlapping by half
    h = (x / 64).astype(np.float16)
    h_1x1, h_dw = (w_1x1.data / 4).astype(np.float16), (w_dw.data / 4).astype(np.float16)
    h_b, h_bias = (_rand(rng, (8, 8), S8) / 8).astype(np.float16), np.zeros(8, np.float32)
    f = np.linspace(-1, 1, 64, dtype=np.float32).reshape(8, 8)
    f_bytes = f.view(U8).reshape(-1)[:64].reshape(8, 8)
    q = dict(out_scale=0.5, out_zero_point=3)
    return {
        "depthwise_conv2d out=x.data (the issue's case)": (
            lambda: qkernels.depthwise_conv2d(QTensor(x, 0.1, 0), w_dw, padding=1, out=x, **q), "x"),
        "depthwise_conv2d NCHW": (
            lambda: qkernels.depthwise_conv2d(QTensor(x, 0.1, 0), w_dw, padding=1, layout="NCHW", out=x, **q), "x"),
        "conv2d int8": (lambda: qkernels.conv2d(QTensor(x, 0.1, 0), w_1x1, out=x, **q), "x"),
        "conv2d int8, packed (the repeated-call path)": (
            lambda: [qkernels.conv2d(QTensor(x, 0.1, 0), pw := qkernels.pack_conv_weights(w_1x1), **q),
                     qkernels.conv2d(QTensor(x, 0.1, 0), pw, out=x, **q)], "x"),
        "conv2d int32 out over the weights": (
            lambda: qkernels.conv2d(QTensor(x[:, :2, :2], 0.1, 0), w_in_out, out_dtype=np.int32,
                                    out=buf.view(np.int32).reshape(1, 2, 2, 8)), "w"),
        "conv2d fp16": (lambda: qkernels.conv2d(h, h_1x1, out=h), "x"),
        "depthwise_conv2d fp16": (lambda: qkernels.depthwise_conv2d(h, h_dw, padding=1, out=h), "x"),
        "matmul int8": (lambda: matmul(QTensor(a, 0.1, 0), b, out=a, **q), "a"),
        "matmul int8, packed (the repeated-call path)": (
            lambda: [matmul(QTensor(a, 0.1, 0), packed, **q), matmul(QTensor(a, 0.1, 0), packed, out=a, **q)], "a"),
        "matmul int8, out over b": (
            lambda: matmul(QTensor(a, 0.1, 0), b, out=b.data, out_scale=0.5, out_zero_point=-3, out_dtype=S8), "b"),
        "matmul int8, half-overlapping buffers": (
            lambda: matmul(QTensor(both[:32].reshape(4, 8), 0.1, 0), b, out=both[16:48].reshape(4, 8), **q), "a"),
        "matmul_integer": (lambda: matmul_integer(np.ones((2, 8), U8), a, out=a.view(np.int32).reshape(2, 8)), "b"),
        "matmul fp16": (lambda: matmul(h_b, h_b, out=h_b), "a"),
        "matmul fp16, packed (the repeated-call path)": (lambda: matmul(h_b, pack_weights(h_b.copy()), out=h_b), "a"),
        "matmul fp16, out over the bias": (
            lambda: matmul(h_b[:2], h_b, bias=h_bias, out=h_bias.view(np.float16).reshape(2, 8)), "bias"),
        "quantize": (lambda: quantize(f, 0.1, 0, dtype=U8, out=f_bytes), "x"),
        "dequantize": (lambda: dequantize(f_bytes, 0.1, out=f), "q"),
    }


@pytest.mark.parametrize("name", list(_overlapping_calls()))
def test_every_call_refuses_an_out_overlapping_one_of_its_inputs(name):
    """Kernels would read values they already overwrote (190 of 512 values wrong for the
    depthwise case): every call taking out= refuses an overlap, naming the input."""
    call, input_name = _overlapping_calls()[name]
    with pytest.raises(ValueError, match=f"out overlaps the input {input_name}\\b"):
        call()


# ------------------------------------------------------- thread counts (issue 12, points 4, 8)

def test_thread_counts_above_the_maximum_are_refused_at_the_door():
    """set_num_threads(2**31) was accepted, then every kernel call raised OverflowError."""
    saved = qkernels.get_num_threads()
    for bad in (2**31, qkernels.MAX_THREADS + 1, 2**64):
        with pytest.raises(ValueError, match=f"num_threads must be an int from 1 to {qkernels.MAX_THREADS}"):
            qkernels.set_num_threads(bad)
        with pytest.raises(ValueError, match="num_threads"):
            qkernels.use_num_threads(bad).__enter__()
    assert qkernels.get_num_threads() == saved
    qkernels.set_num_threads(qkernels.MAX_THREADS)
    try:   # the largest count runs (the kernels cap threads by the work anyway)
        assert matmul_integer(np.ones((2, 3), U8), np.ones((3, 2), U8)).tolist() == [[3, 3], [3, 3]]
    finally:
        qkernels.set_num_threads(saved)
    r = _python("import qkernels", QKERNELS_NUM_THREADS="3000000000")
    assert r.returncode != 0 and "QKERNELS_NUM_THREADS must be an int from 1 to" in r.stderr, r.stderr


def test_use_num_threads_sets_this_threads_count_only_and_restores_it():
    saved = qkernels.get_num_threads()
    seen = {}

    def other():
        seen["other"] = qkernels.get_num_threads()

    with qkernels.use_num_threads(3) as n:
        assert n == 3 and qkernels.get_num_threads() == 3 and qkernels.cpu_info()["num_threads"] == 3
        t = threading.Thread(target=other)
        t.start()
        t.join()
        with qkernels.use_num_threads(1):
            assert qkernels.get_num_threads() == 1
        assert qkernels.get_num_threads() == 3
        assert matmul_integer(np.ones((2, 3), U8), np.ones((3, 2), U8)).tolist() == [[3, 3], [3, 3]]
    assert seen["other"] == saved and qkernels.get_num_threads() == saved
    for bad in (0, True, 1.5, "2", None):
        with pytest.raises(ValueError):
            qkernels.use_num_threads(bad).__enter__()


@pytest.mark.parametrize("call", [
    lambda x, w: qkernels.matmul(x, w, out_scale=0.1, requant=np.zeros((2, 2))),
    lambda x, w: qkernels.matmul(x, w, out_scale=0.1, out_dtype=-2**63),
    lambda x, w: qkernels.matmul(x, w, out_scale=0.1, out_dtype="x"),
    lambda x, w: qkernels.matmul(x.data.astype(np.float16), w.data.astype(np.float16), out_zero_point=np.zeros(3)),
    lambda x, w: qkernels.matmul(x.data.astype(np.float16), w.data.astype(np.float16), requant=[1]),
    lambda x, w: qkernels.conv2d(qkernels.QTensor(x.data.reshape(1, 2, 2, 4), 0.1), qkernels.QTensor(np.ones((2, 1, 1, 4), np.int8), 0.1),
                           out_dtype=np.int32, layout=np.zeros((2, 2))),
    lambda x, w: qkernels.conv2d(qkernels.QTensor(x.data.reshape(1, 2, 2, 4), 0.1), qkernels.QTensor(np.ones((2, 1, 1, 4), np.int8), 0.1),
                           out_dtype=np.int32, weight_layout=["OHWI"]),
    lambda x, w: qkernels.matmul_integer(x.data.reshape(2, 2, 4)[:, :, :3], np.ones((13, 3, 2), np.int8)),
    lambda x, w: qkernels.depthwise_conv2d(qkernels.QTensor(x.data.reshape(1, 2, 2, 4), 0.1),
                                           qkernels.QTensor(np.ones((4, 1, 1, 1), np.int8), 0.1),
                                           out_dtype=np.int32, weight_layout=np.array([])),
], ids=["requant-array", "out_dtype-int", "out_dtype-str", "f16-zero-point-array", "f16-requant-list",
        "layout-array", "weight_layout-list", "batch-mismatch", "depthwise-weight_layout-array"])
def test_hostile_arguments_get_a_clear_error_naming_them(call):
    # found by the API fuzzer: each raised from inside numpy (ambiguous truth value,
    # unhashable array, "Cannot interpret ... as a data type", broadcast_shapes)
    x = qkernels.QTensor(np.arange(16, dtype=np.uint8).reshape(4, 4), 0.1, 0)
    w = qkernels.QTensor(np.ones((4, 3), np.int8), 0.1, 0)
    with pytest.raises((ValueError, TypeError)) as info:
        call(x, w)
    assert any(word in str(info.value) for word in ("requant", "out_dtype", "out_zero_point", "layout", "do not broadcast")), \
        str(info.value)


def test_matmul_integer_with_k0_and_batch_dims_is_zero():
    # reshape(-1, 0) of an empty batch failed (API fuzzer seed 0, case 17)
    a, b = np.zeros((2, 33, 0), np.uint8), np.zeros((0, 5), np.uint8)
    r = qkernels.matmul_integer(a, b)
    assert r.shape == (2, 33, 5) and r.dtype == np.int32 and not r.any()
