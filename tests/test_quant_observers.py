"""Calibration observers (qkernels.quant.observers) and quantization parameters (qkernels.quant.params).

Ranges are checked against hand-computed values and numpy; the entropy observer against
onnxruntime's calibrator (loosely: the two histograms differ by design); the MSE
observer against a brute-force scan of the real quantization error; merging against
one pass over all the data, bit for bit; quant_params against onnxruntime's
compute_scale_zp, bit for bit.
"""
from __future__ import annotations

import contextlib
import io
import math
import pickle
import warnings
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import qkernels as qk
from qkernels.quant import (
    OBSERVERS,
    EntropyObserver,
    HistogramObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MSEObserver,
    PercentileObserver,
    make_observer,
    qrange,
    quant_params,
    weight_params,
)

HIST_METHODS = ["percentile", "entropy", "mse"]
EXACT_METHODS = ["minmax"] + HIST_METHODS


def observe(method, *batches, **options):
    obs = make_observer(method, **options)
    for b in batches:
        obs.update(b)
    return obs


def state(obs):
    """Everything an exact merge must reproduce."""
    s = (type(obs).__name__, obs.count, obs.min, obs.max)
    if isinstance(obs, HistogramObserver):
        s += (obs.exponent, obs.counts.tobytes())
    return s


def quant_error(x, lo, hi, symmetric, dtype=np.int8):
    s, z = quant_params(lo, hi, dtype, symmetric=symmetric)
    y = qk.dequantize(qk.quantize(x, s, z, dtype)).astype(np.float64)
    return float(np.mean((y - x) ** 2))


def normal_with_outliers(seed=0, n=200_000):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n).astype(np.float32)
    x[:10] = rng.choice([-1.0, 1.0], 10) * rng.uniform(20, 30, 10)
    return x


# ------------------------------------------------------------------------ hand-computed ranges

def test_minmax_range_is_exact_min_and_max_over_batches():
    obs = observe("minmax", np.array([1.0, -2.0, 3.0], np.float32), np.array([[0.5], [7.0]], np.float16))
    assert obs.range() == (-2.0, 7.0)
    assert obs.range(symmetric=True) == (-7.0, 7.0)
    assert (obs.count, obs.min, obs.max) == (5, -2.0, 7.0)
    obs.update(np.array([], np.float32))             # an empty batch changes nothing
    assert obs.count == 5


def test_percentile_matches_numpy_percentile_within_one_bin():
    x = np.arange(-5000, 5001) / 1000.0               # 10001 values in [-5, 5]; R = 8, bin width 1/128
    obs = observe("percentile", x, percentile=99.0)
    w = obs.bin_width
    assert w == 8 / 1024
    lo, hi = obs.range()
    assert lo == pytest.approx(np.percentile(x, 1.0), abs=w) and lo == pytest.approx(-4.9, abs=w)
    assert hi == pytest.approx(np.percentile(x, 99.0), abs=w) and hi == pytest.approx(4.9, abs=w)
    slo, shi = obs.range(symmetric=True)
    assert slo == -shi and shi == pytest.approx(np.percentile(np.abs(x), 99.0), abs=w)   # 4.95


def test_percentile_100_is_the_min_max_range():
    rng = np.random.default_rng(1)
    x = rng.normal(size=5000) * 3 + 1
    obs = observe("percentile", x, percentile=100)
    assert obs.range() == (x.min(), x.max())
    assert obs.range(symmetric=True) == (-np.abs(x).max(), np.abs(x).max())


@pytest.mark.parametrize("method", list(OBSERVERS))
def test_symmetric_range_is_minus_t_to_t_within_max_abs(method):
    rng = np.random.default_rng(2)
    obs = observe(method, rng.normal(size=20000) - 0.5, rng.normal(size=20000) - 0.5)
    lo, hi = obs.range(symmetric=True)
    assert lo == -hi and 0 < hi <= max(-obs.min, obs.max)
    alo, ahi = obs.range()
    assert obs.min <= alo <= 0 <= ahi <= obs.max


def test_all_zero_tensor_gives_zero_range_for_every_method():
    for method in OBSERVERS:
        obs = observe(method, np.zeros(100, np.float32))
        assert obs.range() == (0.0, 0.0) and obs.range(symmetric=True) == (-0.0, 0.0)


def test_constant_tensor_gives_its_value_for_every_method():
    for method in OBSERVERS:
        obs = observe(method, np.full(100, -1.5, np.float32))
        assert obs.range() == (-1.5, -1.5) and obs.range(symmetric=True) == (-1.5, 1.5)


def test_one_sided_data_keeps_its_side():
    x = np.abs(np.random.default_rng(3).normal(size=10000)) + 0.25     # ReLU-like, min 0.25
    for method in EXACT_METHODS:
        lo, hi = observe(method, x).range()
        if method == "percentile":                     # the 0.005th percentile, a little above the min
            assert x.min() <= lo < 0.26
        else:
            assert lo == x.min(), method
        assert 0.25 < hi <= x.max(), method


# ------------------------------------------------------------------------------ entropy (KL)

def test_entropy_threshold_clips_outliers_but_keeps_the_bulk():
    x = normal_with_outliers()
    t = observe("entropy", x).range(symmetric=True)[1]
    assert 3.0 < t < 10.0                              # a few sigma; outliers are at 20..30
    lo, hi = observe("entropy", x).range()
    assert (lo, hi) == (max(x.min(), -t), min(x.max(), t))


def test_entropy_agrees_loosely_with_onnxruntime_entropy_calibration():
    calibrate = pytest.importorskip("onnxruntime.quantization.calibrate",
                                    reason="onnxruntime is not installed: no reference to compare with")
    for x in (normal_with_outliers(4), np.random.default_rng(5).laplace(size=100_000).astype(np.float32)):
        collector = calibrate.HistogramCollector("entropy", True, 2048, 128, 99.99, "same")
        with contextlib.redirect_stdout(io.StringIO()):
            collector.collect({"x": x})
            ort_lo, ort_hi = collector.compute_collection_result()["x"][:2]
        ort_t = max(-float(ort_lo), float(ort_hi))
        t = observe("entropy", x).range(symmetric=True)[1]
        assert 0.6 < t / ort_t < 1.6, (t, ort_t)


# ------------------------------------------------------------------------------------ MSE

def test_mse_range_beats_min_max_on_data_with_outliers():
    x = normal_with_outliers(6)
    mm = observe("minmax", x)
    ms = observe("mse", x)
    for symmetric in (True, False):
        e_mm = quant_error(x, *mm.range(symmetric), symmetric)
        e_ms = quant_error(x, *ms.range(symmetric), symmetric)
        assert e_ms < 0.8 * e_mm, (symmetric, e_ms, e_mm)


def test_mse_threshold_is_near_the_brute_force_optimum():
    x = np.random.default_rng(7).laplace(size=100_000).astype(np.float32)
    t = observe("mse", x).range(symmetric=True)[1]
    # Laplace(b=1), 8 bits: the MSE-optimal clip is ~9.9 b (Banner et al., ACIQ)
    assert 9.0 < t < 11.0
    grid = np.linspace(4.0, float(np.abs(x).max()), 120)
    best = min(quant_error(x, -g, g, True) for g in grid)
    assert quant_error(x, -t, t, True) <= 1.02 * best


# -------------------------------------------------------------------------- exact merging

def _halves():
    rng = np.random.default_rng(8)
    small = rng.normal(size=30_000) * 0.01             # R = 2**-4 or so
    big = rng.laplace(size=30_000) * 3.0               # R = 2**5 or so: merging regrids `small`
    return small.astype(np.float32), big.astype(np.float32)


@pytest.mark.parametrize("method", EXACT_METHODS)
def test_merging_two_halves_in_either_order_equals_one_pass(method):
    a_data, b_data = _halves()
    one = observe(method, np.concatenate([a_data, b_data]))
    ab = observe(method, a_data).merge(observe(method, b_data))
    ba = observe(method, b_data).merge(observe(method, a_data))
    seq = observe(method, b_data, a_data)              # the same data in batches, reversed
    for other in (ab, ba, seq):
        assert state(other) == state(one)
        for symmetric in (False, True):
            assert other.range(symmetric) == one.range(symmetric)


def test_histogram_growth_rebins_exactly_and_tiny_negatives_stay_negative():
    # float64 extremes: -5e-324 * B/(2R) underflows to -0.0 for R = 2**1000; its bin is still B/2 - 1
    x = np.array([-5e-324, 5e-324, -1.0, 1e300, -3e-200, 0.0])
    one = PercentileObserver()
    one.update(x)
    B = one.bins
    assert one.exponent == 997                         # 2**996 <= 1e300 < 2**997
    assert one.counts[B // 2 - 1] == 3 and one.counts[B // 2] == 2       # without the fix: 2 and 3
    assert one.counts[B // 2 + math.floor(1e300 / one.bin_width)] == 1
    parts = PercentileObserver()
    for v in x:
        parts.update(np.array([v]))
    assert state(parts) == state(one)


@pytest.mark.parametrize("method", list(OBSERVERS))
def test_extreme_float64_magnitudes_give_finite_ranges_without_warnings(method):
    rng = np.random.default_rng(14)
    for data in (np.array([1.7e308, -1.7e308, 1.0, -5e-324]), rng.normal(size=1000) * 1e-310,
                 np.array([5e-324, -5e-324, 0.0]), np.array([-1e308, 0.5])):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            obs = observe(method, data)
            for symmetric in (False, True):
                lo, hi = obs.range(symmetric)
                assert math.isfinite(lo) and math.isfinite(hi) and lo <= hi
                assert data.min() <= lo or symmetric


@st.composite
def split_data(draw):
    elements = st.floats(width=32, allow_nan=False, allow_infinity=False, allow_subnormal=True)
    x = draw(hnp.arrays(np.float32, st.integers(1, 60), elements=elements))
    cuts = sorted(draw(st.lists(st.integers(0, x.size), max_size=4)))
    chunks = np.split(x, cuts)
    order = draw(st.permutations(range(len(chunks))))
    return x, chunks, order


def exact_bins(x, exponent, B):
    """floor(x * B / (2 * 2**exponent)) + B/2 in exact rational arithmetic."""
    scale = Fraction(B, 2) / Fraction(2) ** exponent
    return [math.floor(Fraction(float(v)) * scale) + B // 2 for v in x]


@given(split_data())
def test_merge_of_any_split_in_any_order_is_bit_identical_to_one_pass(data):
    x, chunks, order = data
    one = PercentileObserver()
    one.update(x)
    parts = [PercentileObserver() for _ in chunks]
    for p, c in zip(parts, chunks):
        p.update(c)                                    # empty chunks leave an empty observer
    merged = PercentileObserver()
    for i in order:
        merged.merge(parts[i])
    assert state(merged) == state(one)
    assert merged.range() == one.range() and merged.range(True) == one.range(True)
    # and the one-pass histogram is the exact mathematical binning
    expected = np.bincount(exact_bins(x, one.exponent, one.bins), minlength=one.bins)
    np.testing.assert_array_equal(one.counts, expected)
    assert float(np.abs(x.astype(np.float64)).max()) < one.R


# ------------------------------------------------------------------- moving-average min-max

def test_moving_average_follows_the_ema_of_batch_extremes():
    obs = MovingAverageMinMaxObserver(momentum=0.9)
    obs.update(np.array([-1.0, 1.0]))
    obs.update(np.array([-3.0, 0.0, 2.0]))
    assert obs.range() == pytest.approx((0.9 * -1 + 0.1 * -3, 0.9 * 1 + 0.1 * 2))
    assert obs.range(symmetric=True) == pytest.approx((-1.2, 1.2))
    assert (obs.min, obs.max, obs.count) == (-3.0, 2.0, 5)


def test_moving_average_merge_is_the_count_weighted_mean_commutative_and_bounded():
    rng = np.random.default_rng(9)
    a = observe("moving_average", *(rng.normal(size=100) for _ in range(5)))
    b = observe("moving_average", *(rng.normal(size=300) * 2 for _ in range(3)))
    ab = pickle.loads(pickle.dumps(a)).merge(b)
    ba = pickle.loads(pickle.dumps(b)).merge(a)
    assert ab.range() == ba.range()                    # bit-identical either way
    expected_lo = (500 * a.avg_min + 900 * b.avg_min) / 1400
    assert ab.avg_min == pytest.approx(expected_lo, rel=1e-15)
    assert min(a.avg_min, b.avg_min) <= ab.avg_min <= max(a.avg_min, b.avg_min)
    assert min(a.avg_max, b.avg_max) <= ab.avg_max <= max(a.avg_max, b.avg_max)
    assert (ab.min, ab.max, ab.count) == (min(a.min, b.min), max(a.max, b.max), 1400)
    empty = MovingAverageMinMaxObserver()
    assert pickle.loads(pickle.dumps(a)).merge(empty).range() == a.range()
    assert empty.merge(a).range() == a.range()


def test_moving_average_merge_approximates_one_pass_only_for_stationary_data():
    rng = np.random.default_rng(10)
    batches = [rng.normal(size=2000) for _ in range(40)]
    one = observe("moving_average", *batches)
    merged = observe("moving_average", *batches[:20]).merge(observe("moving_average", *batches[20:]))
    assert merged.range() == pytest.approx(one.range(), rel=0.1)
    # not order-independent: a drifting stream gives a different answer than one pass
    drift = [np.array([-float(i), float(i)]) for i in range(1, 11)]
    one = observe("moving_average", *drift)
    merged = observe("moving_average", *drift[:5]).merge(observe("moving_average", *drift[5:]))
    assert merged.range() != pytest.approx(one.range(), rel=0.01)


# ------------------------------------------------------------------------------ pickling

@pytest.mark.parametrize("method", list(OBSERVERS))
def test_pickle_round_trip_keeps_state_and_keeps_working(method):
    rng = np.random.default_rng(11)
    obs = observe(method, rng.normal(size=5000), name="layer1")
    back = pickle.loads(pickle.dumps(obs))
    assert back.name == "layer1" and state(back) == state(obs)
    assert back.range() == obs.range() and back.range(True) == obs.range(True)
    more = rng.normal(size=5000) * 4
    obs.update(more)
    back.merge(observe(method, more))
    if method != "moving_average":
        assert state(back) == state(obs)


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("method", list(OBSERVERS))
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused_naming_the_tensor(method, bad):
    obs = make_observer(method, name="conv3.out")
    with pytest.raises(ValueError, match=r"conv3\.out.*NaN/Inf"):
        obs.update(np.array([1.0, bad, 2.0], np.float32))
    assert obs.count == 0                              # the bad batch left no trace
    with pytest.raises(ValueError, match="NaN/Inf"):
        make_observer(method).update(np.array([bad]))


@pytest.mark.parametrize("method", list(OBSERVERS))
def test_range_of_an_empty_observer_is_an_error(method):
    with pytest.raises(ValueError, match="observed no values"):
        make_observer(method, name="x").range()


def test_merging_different_kinds_settings_or_tensors_is_refused():
    x = np.arange(10.0)
    with pytest.raises(TypeError, match="same kind"):
        observe("minmax", x).merge(observe("percentile", x))
    with pytest.raises(TypeError, match="same kind"):
        observe("entropy", x).merge(observe("mse", x))
    with pytest.raises(ValueError, match="different settings"):
        observe("percentile", x, percentile=99.9).merge(observe("percentile", x, percentile=99.0))
    with pytest.raises(ValueError, match="different settings"):
        observe("entropy", x, bins=4096).merge(observe("entropy", x))
    with pytest.raises(ValueError, match="different settings"):
        observe("moving_average", x, momentum=0.5).merge(observe("moving_average", x))
    with pytest.raises(ValueError, match="tensor 'b'"):
        observe("minmax", x, name="a").merge(observe("minmax", x, name="b"))


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="minmax, moving_average, percentile, entropy, mse"):
        make_observer("kl")
    with pytest.raises(TypeError, match="percentile"):
        make_observer("minmax", percentile=99.0)
    with pytest.raises(TypeError, match="complex"):
        MinMaxObserver().update(np.array([1j]))
    for bad in (lambda: PercentileObserver(percentile=101), lambda: PercentileObserver(percentile=10),
                lambda: MovingAverageMinMaxObserver(momentum=1.0), lambda: EntropyObserver(num_quantized_bins=1),
                lambda: MSEObserver(num_bits=1), lambda: PercentileObserver(bins=1000)):
        with pytest.raises(ValueError):
            bad()


# ------------------------------------------------------------------------------ quant_params

DTYPES = [np.int8, np.uint8]
finite_range = st.tuples(st.floats(-1e6, 1e6, width=32), st.floats(-1e6, 1e6, width=32)).map(sorted)


@given(finite_range, st.sampled_from(DTYPES), st.booleans(), st.booleans(), st.booleans())
def test_quant_params_represent_zero_exactly_and_cover_the_range(rng_, dtype, symmetric, reduce_range, pot):
    lo, hi = rng_
    scale, zp = quant_params(lo, hi, dtype, symmetric, reduce_range, pot)
    qmin, qmax = qrange(dtype, symmetric, reduce_range)
    assert isinstance(scale, np.float32) and isinstance(zp, int)
    assert scale > 0 and math.isfinite(scale)
    assert qmin <= zp <= qmax
    assert qk.quantize(np.float32(0), scale, zp, dtype).data == zp                 # 0 -> zp
    assert qk.dequantize(np.array(zp, dtype), scale, zp) == 0                      # zp -> 0
    s = float(scale)
    slack = s / 2 + 1e-6 * max(abs(lo), abs(hi))       # half a step, plus float32 rounding of the scale
    if s != 1.0 or max(abs(lo), abs(hi)) > 0:
        assert s * (qmin - zp) <= min(lo, 0) + slack and s * (qmax - zp) >= max(hi, 0) - slack
    if pot:
        assert math.frexp(s)[0] == 0.5                 # a power of two
        assert s >= quant_params(lo, hi, dtype, symmetric, reduce_range)[0]   # rounded up


def test_quant_params_zero_range_does_not_divide_by_zero():
    for dtype in DTYPES:
        for symmetric in (False, True):
            scale, zp = quant_params(0.0, 0.0, dtype, symmetric)
            assert scale == np.float32(1.0)
            assert zp == (128 if symmetric and dtype is np.uint8 else 0)
            assert quant_params(0.0, 1e-45, dtype, symmetric)[0] == 1.0     # a subnormal scale: same rule
    assert quant_params(3.0, 3.0, np.uint8) == (np.float32(3.0 / 255), 0)   # constant non-zero: range [0, 3]


def test_quant_params_symmetric_zero_points_and_divisors():
    s, z = quant_params(-2.0, 1.0, np.int8, symmetric=True)
    assert z == 0 and s == np.float32(2.0 / 127)       # int8: m / 127 (grid -127..127)
    s, z = quant_params(-2.0, 1.0, np.uint8, symmetric=True)
    assert z == 128 and s == np.float32(4.0 / 255)     # uint8: m / 127.5 (grid 0..255)
    s, z = quant_params(-1.0, 3.0, np.int8)
    assert s == np.float32(4.0 / 255) and z == round(-128 + 1.0 / (4.0 / 255))


def test_reduce_range_halves_the_grid():
    assert qrange(np.int8, reduce_range=True) == (-64, 64)
    assert qrange(np.uint8, reduce_range=True) == (0, 127)
    for dtype in DTYPES:
        for symmetric in (False, True):
            full = quant_params(-1.5, 2.5, dtype, symmetric)[0]
            reduced = quant_params(-1.5, 2.5, dtype, symmetric, reduce_range=True)[0]
            assert 1.9 < reduced / full < 2.1
    w = np.random.default_rng(12).normal(size=(16, 32))
    s, z = weight_params(w, axis=0, reduce_range=True)
    q = qk.quantize(w, s, z, np.int8, axis=0).data
    assert q.min() >= -64 and q.max() <= 64


def test_power_of_two_scales_are_powers_of_two():
    s, z = quant_params(-0.3, 0.7, np.int8, symmetric=True, power_of_two=True)
    assert s == np.float32(2.0 ** -7) and z == 0       # 0.7/127 = 0.0055 -> 2**-7 = 0.0078
    assert quant_params(-1.0, 1.0, np.int8, symmetric=True, power_of_two=True)[0] == 2.0 ** -6   # 1/127 -> 1/64
    assert quant_params(0.0, 255.0 * 2.0 ** -5, np.uint8, power_of_two=True)[0] == 2.0 ** -5     # kept: exact already


def test_quant_params_refuse_non_finite_or_reversed_bounds():
    for lo, hi in ((np.nan, 1.0), (0.0, np.inf), (-np.inf, 0.0)):
        with pytest.raises(ValueError, match="finite"):
            quant_params(lo, hi)
    with pytest.raises(ValueError, match="lo must be <= hi"):
        quant_params(1.0, -1.0)
    with pytest.raises(ValueError, match="dtype"):
        quant_params(0.0, 1.0, np.int32)


@given(finite_range, st.sampled_from(DTYPES), st.booleans(), st.booleans())
def test_quant_params_match_onnxruntime_compute_scale_zp(rng_, dtype, symmetric, reduce_range):
    qu = pytest.importorskip("onnxruntime.quantization.quant_utils",
                             reason="onnxruntime is not installed: no reference to compare with")
    onnx = pytest.importorskip("onnx")
    lo, hi = rng_
    qtype = onnx.TensorProto.INT8 if dtype is np.int8 else onnx.TensorProto.UINT8
    qmin, qmax = qu.get_qmin_qmax_for_qType(qtype, reduce_range, symmetric)
    assert (int(qmin), int(qmax)) == qrange(dtype, symmetric, reduce_range)
    ort_zp, ort_scale = qu.compute_scale_zp(np.array(lo, np.float32), np.array(hi, np.float32), qmin, qmax,
                                            symmetric)
    scale, zp = quant_params(lo, hi, dtype, symmetric, reduce_range)
    if ort_scale == 1.0 and symmetric and dtype is np.uint8:
        mid = round((qmin + qmax) / 2)                 # our one deviation: degenerate symmetric uint8
        assert (scale, zp) == (1.0, mid) and mid in (64, 128)
    else:
        assert scale == ort_scale and zp == int(ort_zp)


def test_weight_params_per_channel_equal_per_slice_quant_params():
    w = np.random.default_rng(13).normal(size=(8, 3, 3, 4)).astype(np.float32)
    w[2] = 0.0                                         # a dead channel: scale 1.0, no division by zero
    for axis in (0, -1):
        for symmetric, dtype in ((True, np.int8), (False, np.uint8), (True, np.uint8)):
            s, z = weight_params(w, axis=axis, symmetric=symmetric, dtype=dtype)
            n = w.shape[axis]
            assert s.shape == (n,) and s.dtype == np.float32 and z.shape == (n,) and z.dtype == dtype
            for c in range(n):
                ch = np.take(w, c, axis=axis)
                assert (s[c], z[c]) == quant_params(ch.min(), ch.max(), dtype, symmetric)
    s, z = weight_params(w)
    assert s.shape == () and z.shape == () and z == 0
    assert s == quant_params(w.min(), w.max(), np.int8, True)[0]


def test_weight_params_refuse_bad_input():
    with pytest.raises(ValueError, match="NaN or Inf"):
        weight_params(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="empty"):
        weight_params(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="axis 2"):
        weight_params(np.ones((2, 2)), axis=2)
