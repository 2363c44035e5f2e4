"""Shared test machinery: independent numpy/Python references and the ``isa`` parameter.

The references here are written from the specifications (ONNX MatMulInteger /
QLinearMatMul, gemmlowp fixed point), not from the package's code, so a test that
compares the package against them checks the package, not itself.

Environment:
  QKERNELS_TEST_SMALL=1    fewer hypothesis examples and smaller shapes (for runs
                           under qemu emulation, ~20x slower).
  QKERNELS_EXPECT_ISAS=a,b the ISA paths this CPU must offer (an emulated CPU lane
                           proves which paths were really detected).
  QKERNELS_TEST_ISAS=a,b   sweep only these paths (qkernels._dispatch.tested_isas();
                           an emulated lane tests the paths its CPU adds).

Test files get the references through the session fixture ``ref`` (fixtures need no
import, so the test files import only numpy, pytest, hypothesis and qkernels), and
any test taking an ``isa`` argument runs once per path in ``qkernels.SUPPORTED_ISAS`` and
``qkernels.EMULATED_ISAS``
with that path forced by ``qkernels.use_isa``.
"""
from __future__ import annotations

import math
import os
import types
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import qkernels

SMALL = os.environ.get("QKERNELS_TEST_SMALL", "").strip().lower() not in ("", "0", "false", "no")

settings.register_profile(
    "qkernels",
    deadline=None,
    max_examples=10 if SMALL else 60,
    database=None,
    # the `isa` fixture forces one path for all examples of a test, on purpose
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.function_scoped_fixture],
    print_blob=True,
)
settings.load_profile("qkernels")

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


# --------------------------------------------------------------------------- integers

def qrange(dtype) -> tuple[int, int]:
    info = np.iinfo(np.dtype(dtype))
    return int(info.min), int(info.max)


def wrap_int32(x) -> np.ndarray:
    """Reduce int64 (or Python int) values modulo 2^32 into int32, like int32 adds."""
    x = np.asarray(x, dtype=np.int64)
    return ((x + 2**31) % 2**32 - 2**31).astype(np.int32)


def gemm_int32(a, b, za=0, zb=0, bias=None) -> np.ndarray:
    """``sum_k (a - za)(b - zb) + bias`` in int64, wrapped to int32 (ONNX MatMulInteger).

    ``a`` (..., M, K), ``b`` (..., K, N) with numpy.matmul broadcasting (1-D operands
    too); ``za`` scalar; ``zb`` scalar or one per column (N,); ``bias`` (N,) or None.
    """
    a64 = np.asarray(a).astype(np.int64) - int(za)
    b64 = np.asarray(b).astype(np.int64) - np.asarray(zb, np.int64)
    acc = np.matmul(a64, b64)
    if bias is not None:
        acc = acc + np.asarray(bias, np.int64)
    return wrap_int32(acc)


# ------------------------------------------------------------------ fp32 requantization

def fp32_scale(sa, sb, sy) -> np.ndarray:
    """ONNX Runtime's requantization scale, in float32: (sa * sb[n]) / sy."""
    return (np.float32(sa) * np.asarray(sb, np.float32)) / np.float32(sy)


def requant_fp32(acc, sa, sb, sy, zy, lo, hi) -> np.ndarray:
    """QLinearMatMul output: saturate(rint(float32(acc) * scale) + zy) to [lo, hi].

    float32 product (one rounding), round half to even, then the zero point and the
    clamp. The kernels clamp in float before rounding (qk_out_requant); since lo-zy
    and hi-zy are integers and rint is monotone, the two orders agree — this
    reference uses ONNX's order so that agreement is what the tests check.
    """
    f = np.asarray(acc, np.int32).astype(np.float32) * fp32_scale(sa, sb, sy)
    assert f.dtype == np.float32
    y = np.rint(f.astype(np.float64)) + int(zy)
    return np.clip(y, lo, hi).astype(np.int64)


# -------------------------------------------------------------- fixed-point requantization

def fixedpoint_params(real: float) -> tuple[int, int]:
    """(Q31 multiplier, shift) with real ~= mult * 2^(shift - 31), gemmlowp/TFLite style.

    From frexp of the float64 scale: mult = round-half-away(mant * 2^31) computed
    exactly with fractions; a multiplier that rounds up to 2^31 carries (2^30, shift+1);
    a scale below 2^-32 (shift < -31) has multiplier 0. Shifts above 30 are refused.
    """
    real = float(real)
    assert real > 0 and math.isfinite(real)
    mant, exp = math.frexp(real)
    m = Fraction(mant) * 2**31
    mult = math.floor(m + Fraction(1, 2))        # m > 0: half away from zero == half up
    if mult == 2**31:
        mult, exp = 2**30, exp + 1
    if exp > 30:
        raise ValueError("scale too large for fixed point")
    if exp < -31:
        return 0, 0
    return int(mult), int(exp)


def srdhm(a: int, b: int) -> int:
    """gemmlowp SaturatingRoundingDoublingHighMul on Python ints (int32 in and out)."""
    if a == INT32_MIN and b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    num = ab + nudge
    q = abs(num) // (1 << 31)                   # C division truncates toward zero
    return q if num >= 0 else -q


def rounding_divide_by_pot(x: int, exponent: int) -> int:
    """x / 2^exponent rounded to nearest, ties away from zero (gemmlowp RoundingDivideByPOT)."""
    if exponent <= 0:
        return x
    q, r = divmod(abs(x), 1 << exponent)
    if 2 * r >= (1 << exponent):
        q += 1
    return q if x >= 0 else -q


def rounding_divide_by_pot_up(x: int, exponent: int) -> int:
    """x / 2^exponent rounded to nearest, ties upward (ruy's and NEON SRSHL's rounding shift,
    LiteRT's int8 convolutions on x86)."""
    if exponent <= 0:
        return x
    return (x + (1 << (exponent - 1))) >> exponent      # Python's >> floors


def fixedpoint_scale(acc: int, mult: int, shift: int, ties_up: bool = False) -> int:
    """acc * mult * 2^(shift-31): saturating left shift, SRDHM, rounding right shift
    (ties away from zero, or upward)."""
    x = int(acc) << max(shift, 0)
    x = min(max(x, INT32_MIN), INT32_MAX)
    shift_fn = rounding_divide_by_pot_up if ties_up else rounding_divide_by_pot
    return shift_fn(srdhm(x, int(mult)), max(-shift, 0))


def requant_fixedpoint(acc, sa, sb, sy, zy, lo, hi, ties_up: bool = False) -> np.ndarray:
    """Fixed-point requantization of int32 ``acc`` (..., N), per-column ``sb`` (N,) or scalar.

    The real scale is float64(sa) * float64(sb[n]) / float64(sy) of the float32
    parameters; each element goes through Python ints.
    """
    acc = np.asarray(acc, np.int32)
    n = acc.shape[-1] if acc.ndim else 1
    sb = np.broadcast_to(np.asarray(sb, np.float32), (n,))
    params = [fixedpoint_params(float(np.float32(sa)) * float(sb[j]) / float(np.float32(sy)))
              for j in range(n)]
    out = np.empty(acc.shape, np.int64)
    flat_acc = acc.reshape(-1, n)
    flat_out = out.reshape(-1, n)
    for j, (mult, shift) in enumerate(params):
        col = flat_acc[:, j].tolist()
        flat_out[:, j] = [min(max(fixedpoint_scale(v, mult, shift, ties_up) + int(zy), lo), hi) for v in col]
    return out


# --------------------------------------------------------------------------- activation

def quantize_value(v: float, sy, zy, dtype) -> int:
    """ONNX QuantizeLinear of one float: saturate(rint(float32(v) / float32(sy)) + zy)."""
    lo, hi = qrange(dtype)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        r = np.rint(np.float32(v) / np.float32(sy))
    return int(min(max(float(r) + int(zy), lo), hi))


def clamp_range(activation, dtype, sy, zy) -> tuple[int, int]:
    """Quantized output bounds of a fused activation, as a separate ONNX Relu/Clip
    node after QLinearMatMul would give: relu -> [q(0), max], relu6 -> [q(0), q(6)],
    (lo, hi) -> [q(lo), q(hi)]."""
    qmin, qmax = qrange(dtype)
    if activation is None:
        return qmin, qmax
    if activation == "relu":
        return quantize_value(0.0, sy, zy, dtype), qmax
    if activation == "relu6":
        return quantize_value(0.0, sy, zy, dtype), quantize_value(6.0, sy, zy, dtype)
    amin, amax = activation
    return quantize_value(amin, sy, zy, dtype), quantize_value(amax, sy, zy, dtype)


def requant(acc, mode, sa, sb, sy, zy, out_dtype, activation=None) -> np.ndarray:
    lo, hi = clamp_range(activation, out_dtype, sy, zy)
    if mode == "fp32":
        return requant_fp32(acc, sa, sb, sy, zy, lo, hi).astype(out_dtype)
    return requant_fixedpoint(acc, sa, sb, sy, zy, lo, hi, ties_up=mode == "tflite").astype(out_dtype)


# ---------------------------------------------------------------------------- quantize

def quantize_ref(x, scale, zero_point, dtype, axis=None) -> np.ndarray:
    """ONNX QuantizeLinear: saturate(rint(float32(x) / scale) + zero_point), per axis."""
    x = np.asarray(x).astype(np.float32)
    s = np.asarray(scale, np.float32)
    z = np.asarray(zero_point, np.int64)
    if axis is not None and s.ndim:
        shape = [1] * x.ndim
        shape[axis] = -1
        s, z = s.reshape(shape), z.reshape(shape)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        q = np.rint(x / s).astype(np.float64) + z
    lo, hi = qrange(dtype)
    return np.clip(q, lo, hi).astype(dtype)


def dequantize_ref(q, scale, zero_point, axis=None) -> np.ndarray:
    """ONNX DequantizeLinear: (q - zero_point) * scale in float32, per axis."""
    q = np.asarray(q)
    s = np.asarray(scale, np.float32)
    z = np.asarray(zero_point, np.int64)
    if axis is not None and s.ndim:
        shape = [1] * q.ndim
        shape[axis] = -1
        s, z = s.reshape(shape), z.reshape(shape)
    return ((q.astype(np.int64) - z).astype(np.float32) * s).astype(np.float32)


# --------------------------------------------------------------------------- random data

def random_q(rng, shape, dtype, mode="random", lo=None, hi=None) -> np.ndarray:
    """Integer array: uniform over the type (or [lo, hi]), or one of the extremes everywhere."""
    lo = qrange(dtype)[0] if lo is None else lo
    hi = qrange(dtype)[1] if hi is None else hi
    if mode == "min":
        return np.full(shape, lo, dtype)
    if mode == "max":
        return np.full(shape, hi, dtype)
    if mode == "ends":
        return rng.choice(np.array([lo, hi], dtype), size=shape)
    return rng.integers(lo, hi, size=shape, endpoint=True, dtype=np.int64).astype(dtype)


def random_zero_point(rng, dtype, n=None):
    lo, hi = qrange(dtype)
    if n is None:
        return int(rng.integers(lo, hi, endpoint=True))
    return rng.integers(lo, hi, size=n, endpoint=True).astype(np.int64)


# ------------------------------------------------------------------------------ fixtures

REF = types.SimpleNamespace(
    SMALL=SMALL, INT32_MIN=INT32_MIN, INT32_MAX=INT32_MAX,
    qrange=qrange, wrap_int32=wrap_int32, gemm_int32=gemm_int32,
    fp32_scale=fp32_scale, requant_fp32=requant_fp32,
    fixedpoint_params=fixedpoint_params, srdhm=srdhm, rounding_divide_by_pot=rounding_divide_by_pot,
    fixedpoint_scale=fixedpoint_scale, requant_fixedpoint=requant_fixedpoint,
    rounding_divide_by_pot_up=rounding_divide_by_pot_up,
    quantize_value=quantize_value, clamp_range=clamp_range, requant=requant,
    quantize_ref=quantize_ref, dequantize_ref=dequantize_ref,
    random_q=random_q, random_zero_point=random_zero_point,
)


@pytest.fixture(scope="session")
def ref():
    """The reference implementations above, as one namespace."""
    return REF


# Every path this CPU runs, and the emulated VNNI paths (their kernels' logic on any AVX2 CPU),
# or the QKERNELS_TEST_ISAS subset.
TESTED_ISAS = list(qkernels._dispatch.tested_isas())


def pytest_generate_tests(metafunc):
    # `isa_name` is the raw parameter; the `isa` fixture forces the path around the test.
    if "isa_name" in metafunc.fixturenames:
        metafunc.parametrize("isa_name", TESTED_ISAS, scope="function")


@pytest.fixture
def isa(isa_name):
    """Each ISA path this CPU supports, forced for the test's thread with use_isa."""
    with qkernels.use_isa(isa_name) as name:
        assert qkernels.get_isa() == name
        yield name


@pytest.fixture(autouse=True)
def _restore_global_state():
    """Tests may change the thread count or the default ISA: put both back."""
    threads = qkernels.get_num_threads()
    default_isa = qkernels._dispatch._default
    yield
    qkernels.set_num_threads(threads)
    qkernels._dispatch._default = default_isa
