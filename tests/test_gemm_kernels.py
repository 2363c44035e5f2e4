"""int8 GEMM kernel suite: every ISA path against the int64 / ONNX / gemmlowp references.

Mirrors the micro-kernels (XNNPACK's pattern): each test runs once per ISA path this
CPU supports (the ``isa`` fixture forces it) over the tile edges — M, N and K around
every MR, NR and KR in use (scalar 2x4c2, AVX2 6x16c2, 6x16c4 and 1x16c2, NEON 4x8,
NEON dot 4x16c4, i8mm 4x8c8 and 8x8c8) — and demands exact equality: int32 sums, fp32 requantization (ONNX
QLinearMatMul) and fixed-point requantization (gemmlowp) alike.

Also run under ARM emulation (.ci/emulated.sh): imports only numpy, pytest,
hypothesis and qkernels; the references come from tests/conftest.py through the
``ref`` fixture. QKERNELS_TEST_SMALL=1 shrinks shapes and example counts.
"""
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qkernels
from qkernels import QTensor, matmul, matmul_integer, pack_weights

SMALL = os.environ.get("QKERNELS_TEST_SMALL", "").strip().lower() not in ("", "0", "false", "no")

U8, S8 = np.dtype(np.uint8), np.dtype(np.int8)
DTYPE_PAIRS = [(U8, S8), (S8, S8), (U8, U8), (S8, U8)]
DTYPE_IDS = ["u8xs8", "s8xs8", "u8xu8", "s8xu8"]

if SMALL:
    M_EDGES = [1, 2, 3, 5, 8, 9]
    N_EDGES = [1, 8, 9, 17]
    K_EDGES = [1, 3, 4, 8, 9, 33]
else:
    M_EDGES = [1, 2, 3, 4, 5, 6, 7, 8, 9, 13]
    N_EDGES = [1, 7, 8, 9, 15, 16, 17, 31, 33]
    K_EDGES = [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 33, 64]
# The requantization tests cover the edges with a thinner grid (the int32 tests have the full one).
M_REQ = [1, 3, 5, 9, 13] if SMALL else [1, 2, 3, 4, 5, 7, 8, 9, 13]
N_REQ = [1, 8, 9, 17, 33] if SMALL else [1, 7, 8, 9, 15, 16, 17, 33]
K_REQ = [1, 3, 9, 33] if SMALL else [1, 2, 3, 5, 8, 9, 17, 64]


def _examples(n: int) -> int:
    return max(5, n // 10) if SMALL else n


def _qrange(dt):
    info = np.iinfo(dt)
    return int(info.min), int(info.max)


def _b_qtensor(b, zb, sb=1.0):
    """B as a QTensor: per column (axis=1) when zb or sb is an array, else per tensor."""
    n = b.shape[-1]
    if np.ndim(zb) or np.ndim(sb):
        return QTensor(b, np.broadcast_to(np.asarray(sb, np.float32), (n,)),
                       np.broadcast_to(np.asarray(zb), (n,)), axis=b.ndim - 1)
    return QTensor(b, sb, zb)


def _check_equal(got, want, what):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    if not np.array_equal(got.astype(np.int64), want.astype(np.int64)):
        bad = np.argwhere(got.astype(np.int64) != want.astype(np.int64))
        i = tuple(bad[0])
        raise AssertionError(f"{what}: {len(bad)} of {got.size} elements differ; first at {i}: "
                             f"got {got[i]}, expected {want[i]}")


# ---------------------------------------------------------------------------- detection

def test_expected_isas_are_detected_when_QKERNELS_EXPECT_ISAS_is_set():
    want = os.environ.get("QKERNELS_EXPECT_ISAS")
    if not want:
        pytest.skip("QKERNELS_EXPECT_ISAS not set")
    expected = {s.strip().lower() for s in want.split(",") if s.strip()}
    assert set(qkernels.SUPPORTED_ISAS) == expected, qkernels.cpu_info()


def test_scalar_path_is_always_supported_and_last():
    assert qkernels.SUPPORTED_ISAS[-1] == "scalar"
    assert len(set(qkernels.SUPPORTED_ISAS)) == len(qkernels.SUPPORTED_ISAS)


def test_forced_isa_selects_that_paths_own_kernels(isa):
    info = qkernels.cpu_info()
    assert info["isa"] == isa
    assert info["gemm_kernels"], info
    for name in info["gemm_kernels"]:          # named op_dtype_tile_isa, XNNPACK style
        # op_dtype_tile_isa[_variant] (qs8_gemm_4x8_neon_mlal); emulations end in _<isa>_emu
        assert isa in name.split("_") or name.endswith("_" + isa), (isa, name)


# --------------------------------------------------------------------- int32 accumulators

@pytest.mark.parametrize("zb_kind", ["per_column_zb"] if SMALL else ["per_tensor_zb", "per_column_zb"])
@pytest.mark.parametrize("a_dtype,b_dtype", DTYPE_PAIRS, ids=DTYPE_IDS)
@pytest.mark.parametrize("m", M_EDGES)
def test_int32_sums_exact_on_tile_edge_shapes(isa, m, a_dtype, b_dtype, zb_kind, ref):
    rng = np.random.default_rng([m, a_dtype.num, b_dtype.num, len(zb_kind)])
    for n in N_EDGES:
        for k in K_EDGES:
            a = ref.random_q(rng, (m, k), a_dtype)
            b = ref.random_q(rng, (k, n), b_dtype)
            za = ref.random_zero_point(rng, a_dtype)
            zb = ref.random_zero_point(rng, b_dtype, n if zb_kind == "per_column_zb" else None)
            got = matmul_integer(a, b, za, zb)
            assert got.dtype == np.int32
            _check_equal(got, ref.gemm_int32(a, b, za, zb), f"{isa} M={m} N={n} K={k} za={za} zb={zb}")


@given(m=st.integers(1, 30), k=st.sampled_from([1, 4, 5, 63, 64, 65, 127, 128, 129, 131, 200]),
       n=st.sampled_from([1, 16, 33]), signed=st.booleans(), row_step=st.integers(1, 3),
       col_step=st.sampled_from([1, 1, 2, -1]), seed=st.integers(0, 2**16))
@settings(max_examples=_examples(60), deadline=None)
def test_int8_rows_across_64_byte_packing_steps_on_views(isa, m, k, n, signed, row_step, col_step, seed, ref):
    """A's rows packed in 64-byte steps (the AVX-512 packer: masked loads, zeros to K's
    quad, rows past M zeros): K across each step, every M up past a 12-row panel, rows
    of a strided view and columns stepped or reversed (the C loop), each against the
    same call on a contiguous copy and the int64 reference; per-tensor zero-point-free B
    (no row sums: the packer's case) and a per-column zero point (row sums)."""
    rng = np.random.default_rng(seed)
    dt = S8 if signed else U8
    big = ref.random_q(rng, (m * row_step, abs(col_step) * k + 1), dt)
    a = big[::row_step, :abs(col_step) * k:abs(col_step)]
    a = a[:, ::-1] if col_step < 0 else a
    b = ref.random_q(rng, (k, n), S8)
    za = ref.random_zero_point(rng, dt)
    for zb in (0, ref.random_zero_point(rng, S8, n)):
        want = ref.gemm_int32(np.ascontiguousarray(a), b, za, zb)
        _check_equal(matmul_integer(a, b, za, zb), want, f"{isa} view M={m} K={k} N={n} za={za}")
        _check_equal(matmul_integer(np.ascontiguousarray(a), b, za, zb), want, f"{isa} copy M={m} K={k} N={n}")


@pytest.mark.parametrize("a_dtype,b_dtype", DTYPE_PAIRS, ids=DTYPE_IDS)
def test_extreme_values_and_zero_points_do_not_saturate_int16_pairs(isa, a_dtype, b_dtype, ref):
    """The vpmaddubsw trap: u8 255 x s8 -128 pairs (and every other corner) must stay exact."""
    alo, ahi = _qrange(a_dtype)
    blo, bhi = _qrange(b_dtype)
    rng = np.random.default_rng(7)
    ks = [1, 3, 9, 33] if SMALL else [1, 2, 3, 4, 8, 9, 16, 17, 33, 64, 257, 1000]
    for k in ks:
        for a_mode in ("min", "max", "ends"):
            for b_mode in ("min", "max", "ends"):
                a = ref.random_q(rng, (5, k), a_dtype, a_mode)
                b = ref.random_q(rng, (k, 17), b_dtype, b_mode)
                for za in sorted({alo, ahi, 0 if alo < 0 else alo}):
                    for zb in (blo, bhi, np.array([blo, bhi] * 8 + [blo])):
                        got = matmul_integer(a, b, za, zb)
                        _check_equal(got, ref.gemm_int32(a, b, za, zb),
                                     f"{isa} K={k} A={a_mode} B={b_mode} za={za} zb={zb}")


def test_u8_255_times_s8_minus128_sum_is_exact(isa):
    """Spelled out: 255 * -128 * K, the pair sum -65280 that int16 cannot hold."""
    for k in (1, 2, 3, 4, 16, 33, 100):
        a = np.full((4, k), 255, np.uint8)
        b = np.full((k, 16), -128, np.int8)
        np.testing.assert_array_equal(matmul_integer(a, b), np.full((4, 16), -32640 * k, np.int32))
        b = np.full((k, 16), 127, np.int8)
        np.testing.assert_array_equal(matmul_integer(a, b, 0, -128), np.full((4, 16), 65025 * k, np.int32))


def test_int32_sums_wrap_modulo_2_32_like_int32_arithmetic(isa, ref):
    k = 33100                                  # 33100 * 65025 > 2^31
    for m in (1, 2, 3, 7):                     # small-M kernels (row-sum zero-point terms) too
        a = np.full((m, k), 255, np.uint8)
        b = np.full((k, 9), -128, np.int8)
        want = ref.gemm_int32(a, b, 0, 127)
        assert int(want[0, 0]) != 33100 * 255 * -255   # it really wraps
        _check_equal(matmul_integer(a, b, 0, 127), want, f"{isa} M={m} wrap, s8 B")
        bu = np.full((k, 9), 0, np.uint8)
        _check_equal(matmul_integer(a, bu, 0, 255), ref.gemm_int32(a, bu, 0, 255), f"{isa} M={m} wrap, u8 B")


@pytest.mark.parametrize("a_dtype,b_dtype", DTYPE_PAIRS, ids=DTYPE_IDS)
def test_bias_is_added_to_int32_output_exactly(isa, a_dtype, b_dtype, ref):
    rng = np.random.default_rng(11)
    for m, n, k in [(1, 1, 1), (3, 9, 5), (7, 17, 33), (13, 33, 64), (4, 16, 0)]:
        a = ref.random_q(rng, (m, k), a_dtype)
        b = ref.random_q(rng, (k, n), b_dtype)
        za = ref.random_zero_point(rng, a_dtype)
        zb = ref.random_zero_point(rng, b_dtype, n)
        bias = rng.integers(-(2**31), 2**31, size=n, dtype=np.int64).astype(np.int32)
        bias[0] = 2**31 - 1                      # near the ends: the sum wraps like int32
        bq = _b_qtensor(b, zb, 0.5)
        aq = QTensor(a, 0.25, za)
        want = ref.gemm_int32(a, b, za, zb, bias)
        # bias given to the call, to pack_weights, and overriding the packed one
        _check_equal(matmul(aq, bq, bias=bias, out_dtype=np.int32), want, f"{isa} bias, QTensor B")
        _check_equal(matmul(aq, pack_weights(bq, bias=bias), out_dtype=np.int32), want, f"{isa} packed bias")
        other = pack_weights(bq, bias=np.zeros(n, np.int32))
        _check_equal(matmul(aq, other, bias=bias, out_dtype=np.int32), want, f"{isa} bias overrides packed")
        # int32 output without bias is MatMulInteger
        _check_equal(matmul(aq, bq, out_dtype=np.int32), matmul_integer(a, b, za, zb), f"{isa} no bias")


# ----------------------------------------------------------------------- requantization

@given(m=st.sampled_from([1, 2]), n=st.sampled_from([32, 33, 64, 96, 127, 128, 129, 144, 160, 256, 288, 300, 520]),
       k=st.sampled_from([1, 3, 4, 5, 64, 65, 131, 200]), a_signed=st.booleans(),
       mode=st.sampled_from(["int32", "fp32", "fixedpoint", "tflite"]), fill=st.sampled_from(["random", "ends"]),
       step=st.sampled_from([1, 2, -1]), seed=st.integers(0, 2**16))
@settings(max_examples=_examples(80), deadline=None)
def test_gemv_over_many_panels_at_once_equals_the_reference(isa, m, n, k, a_signed, mode, fill, step, seed, ref):
    """M <= 2 rows across whole 32-column panels, four streamed at once, then the panels
    left and a partial one (the AVX-512 VNNI GEMV's ``fused_panels`` entry, one call per
    row block): every N around the groups of four, symmetric weights (zero point 0: the
    fused case), extreme values, int32 and 8-bit outputs of each requantization, A a
    stepped or reversed view too, against the int64 reference and the contiguous copy."""
    rng = np.random.default_rng(seed)
    dt = S8 if a_signed else U8
    big = ref.random_q(rng, (m, abs(step) * k), dt, fill)
    a = big[:, ::step] if step < 0 else big[:, ::step][:, :k]
    b = ref.random_q(rng, (k, n), S8, fill)
    za = ref.random_zero_point(rng, dt)
    bias = rng.integers(-5000, 5000, size=n).astype(np.int32)
    acc = ref.gemm_int32(np.ascontiguousarray(a), b, za, 0, bias)
    for x in (a, np.ascontiguousarray(a)):
        where = f"{isa} {mode} M={m} N={n} K={k} za={za} step={step} {fill}"
        if mode == "int32":
            _check_equal(matmul_integer(x, b, za, 0), acc - bias, where)
            continue
        sb, sy = _scales_for(acc, 0.02, n, rng)
        zy = ref.random_zero_point(rng, S8)
        y = matmul(QTensor(x, 0.02, za), _b_qtensor(b, 0, sb), bias=bias, out_scale=sy, out_zero_point=zy,
                   out_dtype=S8, requant=mode)
        _check_equal(y.data, ref.requant(acc, mode, 0.02, sb, sy, zy, S8), where)


def _scales_for(acc, sa, n, rng, spread=200.0):
    """Per-column B scales and an output scale putting outputs across (and past) the range."""
    sb = (rng.uniform(0.5, 2.0, size=n) * 0.01).astype(np.float32)
    peak = max(1.0, float(np.max(np.abs(acc.astype(np.float64)))))
    sy = float(np.float32(sa * 0.01 * peak / spread))
    return sb, sy


@pytest.mark.parametrize("out_dtype", [U8, S8], ids=["u8out", "s8out"])
@pytest.mark.parametrize("mode", ["fp32", "fixedpoint", "tflite"])
@pytest.mark.parametrize("a_dtype,b_dtype", DTYPE_PAIRS, ids=DTYPE_IDS)
def test_requantized_output_matches_reference_on_tile_edge_shapes(isa, a_dtype, b_dtype, mode, out_dtype, ref):
    rng = np.random.default_rng([a_dtype.num, b_dtype.num, out_dtype.num, len(mode)])
    sa = 0.02
    for m in M_REQ:
        for n in N_REQ:
            for k in K_REQ:
                a = ref.random_q(rng, (m, k), a_dtype)
                b = ref.random_q(rng, (k, n), b_dtype)
                za = ref.random_zero_point(rng, a_dtype)
                zb = ref.random_zero_point(rng, b_dtype, n)
                bias = rng.integers(-5000, 5000, size=n).astype(np.int32)
                acc = ref.gemm_int32(a, b, za, zb, bias)
                sb, sy = _scales_for(acc, sa, n, rng)
                zy = ref.random_zero_point(rng, out_dtype)
                y = matmul(QTensor(a, sa, za), _b_qtensor(b, zb, sb), bias=bias, out_scale=sy,
                           out_zero_point=zy, out_dtype=out_dtype, requant=mode)
                assert isinstance(y, QTensor) and y.dtype == out_dtype
                assert float(y.scale) == np.float32(sy) and int(y.zero_point) == zy
                want = ref.requant(acc, mode, sa, sb, sy, zy, out_dtype)
                _check_equal(y.data, want, f"{isa} {mode} M={m} N={n} K={k} za={za} zy={zy} sy={sy}")


@pytest.mark.parametrize("out_dtype", [U8, S8], ids=["u8out", "s8out"])
@pytest.mark.parametrize("mode", ["fixedpoint", "tflite"])
def test_fixedpoint_requant_rounds_ties_away_or_upward(isa, out_dtype, mode, ref):
    """scale 1/4 (multiplier 2^30, shift -1) on even sums t: the high multiply halves t
    exactly, the rounding shift lands on .5 when t = 2 mod 4: "fixedpoint" rounds ties away
    from zero (gemmlowp), "tflite" upward (-2.5 -> -2, LiteRT's rounding), in the tile
    stage, the fused epilogue (N = 64, full tiles) and the scalar tail (N = 9) alike."""
    t = np.arange(-60, 61, 2)
    a = (t + 128).astype(np.uint8)[:, None]          # a - 128 = t
    lo, hi = _qrange(out_dtype)
    halves = t / 4.0
    expected = np.floor(halves + 0.5) if mode == "tflite" else np.sign(halves) * np.floor(np.abs(halves) + 0.5)
    for n in (9, 64):
        b = np.ones((1, n), np.int8)
        y = matmul(QTensor(a, 1.0, 128), QTensor(b, 1.0, 0), out_scale=4.0, out_zero_point=0, out_dtype=out_dtype,
                   requant=mode)
        want = np.repeat(np.clip(expected, lo, hi).astype(np.int64)[:, None], n, axis=1)
        _check_equal(y.data, want, f"{isa} {mode} ties N={n}")
        _check_equal(y.data, ref.requant(t[:, None] * np.ones((1, n), np.int64), mode, 1.0, 1.0, 4.0, 0, out_dtype),
                     f"{isa} {mode} ties vs reference")


@pytest.mark.parametrize("mode", ["fixedpoint", "tflite"])
@pytest.mark.parametrize("out_scale", [1.5, 3.0, 0.75, 64.0, 1 / 3])
def test_fixedpoint_requant_every_shift_kind(isa, mode, out_scale, ref):
    """Real scales 1/out_scale of every shift kind: 2/3 (shift 0: no rounding shift after
    the high multiply), 1/3 (shift -1), 4/3 and 3 (left shifts, the scalar route), 1/64;
    the tile stage, the fused epilogue (N = 64) and the tail (N = 9) against the reference."""
    rng = np.random.default_rng(int(out_scale * 1000))
    a = rng.integers(125, 132, (40, 33)).astype(np.uint8)      # a - 128 in [-3, 3]: small sums
    for n in (9, 64):
        b = rng.integers(-3, 4, (33, n)).astype(np.int8)
        acc = ref.gemm_int32(a, b, 128, np.zeros(n, np.int64), np.zeros(n, np.int32))
        sy = float(out_scale)
        y = matmul(QTensor(a, 1.0, 128), QTensor(b, 1.0, 0), out_scale=sy, out_zero_point=3, out_dtype=S8,
                   requant=mode)
        _check_equal(y.data, ref.requant(acc, mode, 1.0, 1.0, sy, 3, S8), f"{isa} {mode} scale {out_scale} N={n}")


@given(log_scale=st.floats(min_value=-24.0, max_value=-1.0), spread=st.floats(min_value=1.0, max_value=1.99),
       zy=st.integers(-128, 127), relu=st.booleans(), seed=st.integers(0, 2**16))
@settings(max_examples=_examples(16), deadline=None)
def test_tflite_requant_is_exact_on_every_sum_of_a_dense_range(isa, log_scale, spread, zy, relu, seed, ref):
    """"tflite" (ties upward) requantization of every int32 sum in a dense range, per
    column scales 2^log_scale * [1, spread): each step of the output is met by the sums
    beside it, exact ties included (the AVX-512 stage's float32 route must hand every
    sum within 2^-11 of a step to the 64-bit one). The tile stage on 32-column tiles (the
    VBMI pair route), a last 16-column strip (N = 48) and a last tile of 18 columns (N =
    50); against int64 arithmetic, itself checked against the reference on a sample."""
    rng = np.random.default_rng(seed)
    d = np.arange(-128, 128)
    a = np.stack(np.meshgrid(d, d, indexing="ij"), -1).reshape(-1, 2) + 128     # every (d1, d2)
    n = 48 + 2 * (seed % 2)
    b = np.array([[1] * n, [127] * n], np.int8)
    bias = rng.integers(-3000, 3000, n).astype(np.int32)
    sb = (2.0 ** log_scale * rng.uniform(1.0, spread, n)).astype(np.float32)
    y = matmul(QTensor(a.astype(np.uint8), 1.0, 128), _b_qtensor(b, np.zeros(n, np.int64), sb), bias=bias,
               out_scale=1.0, out_zero_point=zy, out_dtype=S8, requant="tflite",
               activation="relu" if relu else None)
    acc = (a[:, :1] - 128) + 127 * (a[:, 1:] - 128) + bias.astype(np.int64)
    params = [ref.fixedpoint_params(float(sb[j])) for j in range(n)]
    m = np.array([p[0] for p in params], np.int64)
    right = -np.array([p[1] for p in params], np.int64)
    assert np.all(right >= 0)
    off = (np.int64(1) << 30) + np.where(right > 0, np.int64(1) << (30 + np.maximum(right, 0)), 0)
    lo = max(-128, zy) if relu else -128
    want = np.clip(((acc * m + off) >> (31 + right)) + zy, lo, 127)
    pick = rng.integers(0, acc.shape[0], 40)
    np.testing.assert_array_equal(want[pick], ref.requant_fixedpoint(acc[pick].astype(np.int32), 1.0, sb, 1.0, zy,
                                                                     lo, 127, ties_up=True))
    _check_equal(y.data, want, f"{isa} tflite dense sums 2^{log_scale:.2f} zy={zy} relu={relu}")


@pytest.mark.parametrize("out_dtype", [U8, S8], ids=["u8out", "s8out"])
def test_fp32_requant_rounds_ties_half_to_even(isa, out_dtype, ref):
    """scale 1/2 on odd sums lands exactly on .5: ONNX rounds to even (0.5 -> 0, 1.5 -> 2, -2.5 -> -2)."""
    t = np.arange(-60, 61)
    a = (t + 128).astype(np.uint8)[:, None]          # a - 128 = t
    b = np.ones((1, 9), np.int8)
    y = matmul(QTensor(a, 1.0, 128), QTensor(b, 1.0, 0), out_scale=2.0, out_zero_point=0,
               out_dtype=out_dtype)
    lo, hi = _qrange(out_dtype)
    expected = np.clip(np.rint(t / 2.0), lo, hi).astype(np.int64)
    assert list(np.rint([0.5, 1.5, 2.5, -0.5, -2.5])) == [0, 2, 2, 0, -2]
    _check_equal(y.data, np.repeat(expected[:, None], 9, axis=1), f"{isa} ties")
    _check_equal(y.data, ref.requant(t[:, None] * np.ones((1, 9), np.int64), "fp32", 1.0, 1.0, 2.0, 0, out_dtype),
                 f"{isa} ties vs reference")


def test_reference_fixedpoint_agrees_with_gemmlowp_known_values(ref):
    """The reference itself against values worked by hand from gemmlowp/TFLite:
    SRDHM rounds ties toward +inf, RoundingDivideByPOT ties away from zero."""
    assert ref.fixedpoint_params(0.5) == (2**30, 0)
    assert ref.fixedpoint_params(0.25) == (2**30, -1)
    assert ref.fixedpoint_params(1.0) == (2**30, 1)
    assert ref.fixedpoint_params(1 - 2.0**-40) == (2**30, 1)          # mult rounds to 2^31: carry
    assert ref.fixedpoint_params(2.0**-32) == (2**30, -31)
    assert ref.fixedpoint_params(2.0**-33) == (0, 0)
    assert ref.srdhm(-(2**31), -(2**31)) == 2**31 - 1
    assert [ref.fixedpoint_scale(x, 2**30, 0) for x in (-3, -1, 1, 3)] == [-1, 0, 1, 2]
    assert [ref.fixedpoint_scale(x, 2**30, -1) for x in (-6, -2, -1, 2, 6)] == [-2, -1, 0, 1, 2]
    assert [ref.rounding_divide_by_pot(x, 2) for x in (-6, -5, -2, 2, 5, 6)] == [-2, -1, -1, 1, 1, 2]
    assert ref.fixedpoint_scale(2**30, 2**30, 5) == 2**30               # saturating left shift
    assert ref.fixedpoint_scale(-(2**30), 2**30, 5) == -(2**30)


@given(real=st.floats(min_value=2.0**-45, max_value=2.0**30, exclude_max=True, allow_subnormal=False))
@settings(max_examples=_examples(300))
def test_fixedpoint_multiplier_and_shift_match_reference(real, ref):
    from qkernels._requant import fixedpoint_params
    try:
        want = ref.fixedpoint_params(real)
    except ValueError:
        with pytest.raises(ValueError):
            fixedpoint_params(np.array([real]))
        return
    mult, shift = fixedpoint_params(np.array([real]))
    assert (int(mult[0]), int(shift[0])) == want


def test_fixedpoint_multiplier_edge_scales_match_reference(ref):
    from qkernels._requant import fixedpoint_params
    reals = [2.0**-32, 2.0**-31, 2.0**-33, 1e-12, 0.5, 1.0, 1 - 2.0**-40, 0.5 * (1 - 2.0**-33),
             2.0**29, 2.0**30 - 1, 3.0, 1 / 3]
    mult, shift = fixedpoint_params(np.array(reals))
    for r, mu, sh in zip(reals, mult, shift):
        assert (int(mu), int(sh)) == ref.fixedpoint_params(r), r


# (name, per-column real scales); sa = sy = 1, so the real scale is sb itself
FIXEDPOINT_SCALES = {
    "typical": lambda n, rng: rng.uniform(1e-4, 0.1, n),
    "ties": lambda n, rng: np.resize([0.5, 0.25, 0.125, 0.75, 1.5, 2.5], n),
    "ge_one_left_shift": lambda n, rng: rng.uniform(1.0, 300.0, n),
    "mixed_left_and_right_shift": lambda n, rng: np.resize([3.0, 0.3, 0.03, 1.0, 17.5, 0.9, 2.0, 0.6, 1e-3], n),
    "carry_to_2_30": lambda n, rng: np.full(n, 1 - 2.0**-40),
    "tiny": lambda n, rng: np.resize([2.0**-32, 2.0**-31, 2.0**-33, 1e-12, 2.0**-30], n),
}


@pytest.mark.parametrize("out_dtype", [U8, S8], ids=["u8out", "s8out"])
@pytest.mark.parametrize("regime", list(FIXEDPOINT_SCALES))
def test_fixedpoint_requant_matches_gemmlowp_reference(isa, regime, out_dtype, ref):
    rng = np.random.default_rng(len(regime))
    for m, n, k in [(1, 1, 1), (3, 8, 2), (5, 9, 5), (9, 17, 9), (13, 33, 33), (4, 16, 64)]:
        sb = np.asarray(FIXEDPOINT_SCALES[regime](n, rng), np.float64).astype(np.float32)
        for data in ("small", "random"):
            za = ref.random_zero_point(rng, U8)
            if data == "small":     # sums of a few units, so large scales do not just saturate
                a = np.clip(za + rng.integers(-3, 4, (m, k)), 0, 255).astype(np.uint8)
                b = rng.integers(-2, 3, (k, n)).astype(np.int8)
            else:
                a = ref.random_q(rng, (m, k), U8)
                b = ref.random_q(rng, (k, n), S8)
            acc = ref.gemm_int32(a, b, za, 0)
            zy = ref.random_zero_point(rng, out_dtype)
            y = matmul(QTensor(a, 1.0, za), QTensor(b, sb, np.zeros(n, np.int32), axis=1), out_scale=1.0,
                       out_zero_point=zy, out_dtype=out_dtype, requant="fixedpoint")
            _check_equal(y.data, ref.requant(acc, "fixedpoint", 1.0, sb, 1.0, zy, out_dtype),
                         f"{isa} {regime} {data} M={m} N={n} K={k} zy={zy}")


def test_fixedpoint_scale_of_2_30_or_more_is_refused(isa):
    a = QTensor(np.ones((2, 3), np.uint8), 1.0, 0)
    b = QTensor(np.ones((3, 4), np.int8), 2.0**15, 0)
    with pytest.raises(ValueError, match="fixed-point"):
        matmul(a, b, out_scale=2.0**-15, requant="fixedpoint")


ACTIVATIONS = ["relu", "relu6", (-0.3, 2.5), (0.0, 6.0), (1.0, 1.0), (-1e9, 1e9)]


@pytest.mark.parametrize("m", [9, 37])
@pytest.mark.parametrize("mode", ["fp32", "fixedpoint"])
@pytest.mark.parametrize("activation", ACTIVATIONS, ids=str)
@pytest.mark.parametrize("out_dtype", [U8, S8], ids=["u8out", "s8out"])
def test_fused_activation_clamps_like_onnx_relu_and_clip(isa, activation, out_dtype, mode, m, ref):
    """m = 37: three full panels of the 12-row kernels, whose 32-column tiles requantize
    in their fused stages (fp32: the lower clamp on the packed bytes), then one row."""
    rng = np.random.default_rng(3)
    n, k = 33, 17
    a = ref.random_q(rng, (m, k), U8)
    b = ref.random_q(rng, (k, n), S8)
    za = 128
    acc = ref.gemm_int32(a, b, za, 0)
    sa, sb = 0.05, np.float32(0.01)
    peak = float(np.max(np.abs(acc))) * sa * float(sb)        # largest |real output|
    for sy in (peak / 60, 6.0 / 100) if SMALL else (peak / 60, peak / 200, 6.0 / 100):
        for zy in sorted({ref.qrange(out_dtype)[0], 20} if SMALL else {ref.qrange(out_dtype)[0], 0, 20, 100}):
            y = matmul(QTensor(a, sa, za), QTensor(b, sb, 0), out_scale=sy, out_zero_point=zy,
                       out_dtype=out_dtype, activation=activation, requant=mode)
            want = ref.requant(acc, mode, sa, sb, sy, zy, out_dtype, activation)
            _check_equal(y.data, want, f"{isa} {activation} {mode} sy={sy} zy={zy}")
            lo, hi = ref.clamp_range(activation, out_dtype, sy, zy)
            assert y.data.min() >= lo and y.data.max() <= hi


@pytest.mark.parametrize("m,n", [(2, 17), (24, 64)])
def test_requant_of_extreme_sums_saturates_exactly(isa, m, n, ref):
    """Sums near +-2^31 (float32 rounds them) and tiny/huge fp32 scales; 24 x 64: whole
    12 x 32 tiles through the fused stages (fp32: products past 2^31 clamp in float)."""
    k = 8000 if SMALL else 33000               # sums past 2^24, where float32 rounds them
    a = np.full((m, k), 255, np.uint8)
    b = np.concatenate([np.full((k, n // 2), -128, np.int8), np.full((k, n - n // 2), 127, np.int8)], axis=1)
    acc = ref.gemm_int32(a, b, 0, 0)
    for sb, sy in [(1e-9, 1.0), (1e-4, 1.0), (1.0, 1e-3), (2.0**-20, 2.0**20)]:
        for mode in ("fp32", "fixedpoint"):
            if mode == "fixedpoint" and sb / sy >= 2.0**30:
                continue
            for out_dtype, zy in ((U8, 7), (S8, -3)):
                y = matmul(QTensor(a, 1.0, 0), QTensor(b, sb, 0), out_scale=sy, out_zero_point=zy,
                           out_dtype=out_dtype, requant=mode)
                _check_equal(y.data, ref.requant(acc, mode, 1.0, sb, sy, zy, out_dtype),
                             f"{isa} {mode} sb={sb} sy={sy}")


# ----------------------------------------------------------------------------- hypothesis

MAX_MN = 20 if SMALL else 70
MAX_K = 64 if SMALL else 300


@st.composite
def gemm_cases(draw):
    return dict(
        m=draw(st.integers(1, MAX_MN)), n=draw(st.integers(1, MAX_MN)), k=draw(st.integers(1, MAX_K)),
        a_dtype=draw(st.sampled_from([U8, S8])), b_dtype=draw(st.sampled_from([U8, S8])),
        a_mode=draw(st.sampled_from(["random", "random", "ends", "min", "max"])),
        b_mode=draw(st.sampled_from(["random", "random", "ends", "min", "max"])),
        zp_mode=draw(st.sampled_from(["random", "zero", "ends"])),
        per_column=draw(st.booleans()),
        bias=draw(st.booleans()),
        out=draw(st.sampled_from(["int32", "fp32", "fixedpoint"])),
        out_dtype=draw(st.sampled_from([U8, S8])),
        activation=draw(st.sampled_from([None, None, "relu", "relu6", (-1.0, 3.0)])),
        spread=draw(st.floats(1.0, 1000.0)),
        packed=draw(st.booleans()),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def _zero_point(rng, dtype, n, mode, ref):
    lo, hi = _qrange(dtype)
    if mode == "zero":
        z = np.zeros(n or 1, np.int64)
    elif mode == "ends":
        z = rng.choice([lo, hi], size=n or 1)
    else:
        z = np.atleast_1d(ref.random_zero_point(rng, dtype, n or 1))
    return z if n else int(z[0])


def _run_case(c, ref):
    """Run one drawn case through the package; return (got, expected)."""
    rng = np.random.default_rng(c["seed"])
    m, n, k = c["m"], c["n"], c["k"]
    a = ref.random_q(rng, (m, k), c["a_dtype"], c["a_mode"])
    b = ref.random_q(rng, (k, n), c["b_dtype"], c["b_mode"])
    za = _zero_point(rng, c["a_dtype"], None, c["zp_mode"], ref)
    zb = _zero_point(rng, c["b_dtype"], n if c["per_column"] else None, c["zp_mode"], ref)
    bias = rng.integers(-(2**20), 2**20, size=n).astype(np.int32) if c["bias"] else None
    acc = ref.gemm_int32(a, b, za, zb, bias)
    if c["out"] == "int32":
        if bias is None and not c["packed"]:
            return matmul_integer(a, b, za, zb), acc
        bq = _b_qtensor(b, zb, 1.0)
        return matmul(QTensor(a, 1.0, za), pack_weights(bq) if c["packed"] else bq, bias=bias,
                      out_dtype=np.int32), acc
    sa = 0.03
    sb = rng.uniform(0.5, 2.0, size=n).astype(np.float32) if c["per_column"] else np.float32(0.7)
    peak = max(1.0, float(np.max(np.abs(acc.astype(np.float64)))))
    sy = float(np.float32(sa * 2.0 * peak / c["spread"]))
    zy = _zero_point(rng, c["out_dtype"], None, c["zp_mode"], ref)
    bq = _b_qtensor(b, zb, sb)
    y = matmul(QTensor(a, sa, za), pack_weights(bq) if c["packed"] else bq, bias=bias, out_scale=sy,
               out_zero_point=zy, out_dtype=c["out_dtype"], activation=c["activation"], requant=c["out"])
    return y.data, ref.requant(acc, c["out"], sa, sb, sy, zy, c["out_dtype"], c["activation"])


@given(case=gemm_cases())
@settings(max_examples=_examples(300))
def test_random_products_equal_reference(isa, case, ref):
    got, want = _run_case(case, ref)
    _check_equal(got, want, f"{isa} {case}")


# ------------------------------------------------------------------ threads and ISA paths

THREAD_SHAPES = [(1, 1, 1), (1, 500, 64), (2, 333, 100), (5, 33, 17), (64, 64, 64), (37, 70, 129)] + (
    [] if SMALL else [(130, 200, 300), (300, 17, 5)])


@pytest.mark.parametrize("out", ["int32", "fp32", "fixedpoint"])
def test_one_and_two_threads_give_identical_results(isa, out, ref):
    rng = np.random.default_rng(5)
    for m, n, k in THREAD_SHAPES:
        case = dict(m=m, n=n, k=k, a_dtype=U8, b_dtype=S8, a_mode="random", b_mode="random",
                    zp_mode="random", per_column=True, bias=True, out=out, out_dtype=U8,
                    activation=None, spread=300.0, packed=True, seed=int(rng.integers(2**32)))
        results = []
        for threads in (1, 2, 3):
            qkernels.set_num_threads(threads)
            got, want = _run_case(case, ref)
            _check_equal(got, want, f"{isa} {out} threads={threads} M={m} N={n} K={k}")
            results.append(got)
        assert all(np.array_equal(results[0], r) for r in results[1:])


@pytest.mark.parametrize("out", ["int32", "fp32", "fixedpoint"])
def test_every_isa_path_gives_identical_results(out, ref):
    rng = np.random.default_rng(9)
    shapes = [(1, 1, 1), (3, 7, 5), (13, 33, 64), (8, 16, 9)] + ([] if SMALL else [(41, 67, 250)])
    for m, n, k in shapes:
        for a_dtype, b_dtype in DTYPE_PAIRS:
            case = dict(m=m, n=n, k=k, a_dtype=a_dtype, b_dtype=b_dtype, a_mode="random", b_mode="ends",
                        zp_mode="random", per_column=True, bias=True, out=out, out_dtype=S8,
                        activation="relu", spread=100.0, packed=True, seed=int(rng.integers(2**32)))
            outs = {}
            for isa in qkernels._dispatch.tested_isas():
                with qkernels.use_isa(isa):
                    outs[isa], want = _run_case(case, ref)
            for isa, got in outs.items():
                _check_equal(got, want, f"{isa} vs reference M={m} N={n} K={k}")
    # one PackedWeights object serves every path (packed lazily per path)
    a = ref.random_q(rng, (9, 40), U8)
    pw = pack_weights(QTensor(ref.random_q(rng, (40, 20), S8), 0.1, 3))
    res = []
    for isa in qkernels._dispatch.tested_isas():
        with qkernels.use_isa(isa):
            res.append(matmul(QTensor(a, 0.1, 100), pw, out_dtype=np.int32))
    assert all(np.array_equal(res[0], r) for r in res)


def test_repeated_calls_on_one_packed_weights_stay_exact(isa, ref):
    """The second call with the same weights and parameters takes the cached-plan fast
    path: it must give what the first call gave, for every M (small-M kernels too)."""
    rng = np.random.default_rng(21)
    k, n = 37, 41
    zb = rng.integers(-128, 128, n)
    bq = _b_qtensor(ref.random_q(rng, (k, n), S8), zb, rng.uniform(0.5, 2, n).astype(np.float32) * 0.01)
    pw = pack_weights(bq)
    calls = [dict(out_scale=0.2, out_zero_point=10),
             dict(out_scale=0.2, out_zero_point=10, out_dtype=np.uint8),
             dict(out_scale=0.05, out_zero_point=-3, out_dtype=np.int8, activation="relu"),
             dict(out_scale=0.05, out_zero_point=-3, out_dtype=np.int8, activation="relu6", requant="fixedpoint"),
             dict(out_scale=0.3, out_zero_point=0, out_dtype=np.int8, activation=(-1.0, 2.0)),
             dict(out_dtype=np.int32)]
    for rep in range(3):
        for m in (1, 2, 3, 4, 7, 13):
            for za in (0, 77):
                for kw in calls:
                    a = ref.random_q(rng, (m, k), U8)
                    acc = ref.gemm_int32(a, bq.data, za, zb)
                    got = matmul(QTensor(a, 0.1, za), pw, **kw)
                    if kw.get("out_dtype") == np.int32:
                        _check_equal(got, acc, f"{isa} rep={rep} M={m} int32")
                        continue
                    out_dtype = np.dtype(kw.get("out_dtype", np.uint8))
                    want = ref.requant(acc, kw.get("requant", "fp32"), 0.1, bq.scale, kw["out_scale"],
                                       kw["out_zero_point"], out_dtype, kw.get("activation"))
                    assert got.dtype == out_dtype and float(got.scale) == np.float32(kw["out_scale"])
                    assert int(got.zero_point) == kw["out_zero_point"]
                    _check_equal(got.data, want, f"{isa} rep={rep} M={m} za={za} {kw}")


LARGE_SHAPES = [(100, 140, 2000), (1, 300, 2000)] + ([] if SMALL else [(300, 300, 700), (2, 520, 700)])


@pytest.mark.parametrize("m,n,k", LARGE_SHAPES, ids=lambda v: str(v))
def test_large_product_past_every_block_edge_is_exact(isa, m, n, k, ref):
    rng = np.random.default_rng(m + n + k)
    a = ref.random_q(rng, (m, k), U8)
    b = ref.random_q(rng, (k, n), S8)
    za, zb = 131, rng.integers(-128, 128, n)
    bias = rng.integers(-(2**24), 2**24, n).astype(np.int32)
    acc = ref.gemm_int32(a, b, za, zb, bias)
    bq = _b_qtensor(b, zb, rng.uniform(0.5, 2.0, n).astype(np.float32) * 1e-3)
    pw = pack_weights(bq, bias=bias)
    aq = QTensor(a, 0.02, za)
    for threads in (1, 2):
        qkernels.set_num_threads(threads)
        _check_equal(matmul(aq, pw, out_dtype=np.int32), acc, f"{isa} int32 threads={threads}")
    sy = float(np.float32(0.02 * 1e-3 * float(np.max(np.abs(acc))) / 150))
    y = matmul(aq, pw, out_scale=sy, out_zero_point=128, out_dtype=U8)
    _check_equal(y.data, ref.requant(acc, "fp32", 0.02, bq.scale, sy, 128, U8), f"{isa} fp32")
    if not SMALL:
        y = matmul(aq, pw, out_scale=sy, out_zero_point=-5, out_dtype=S8, requant="fixedpoint")
        _check_equal(y.data, ref.requant(acc, "fixedpoint", 0.02, bq.scale, sy, -5, S8), f"{isa} fixedpoint")


def test_fp32_requant_scale_overflowing_float32_is_rejected_or_identical_on_every_path():
    """a_scale * b_scale / out_scale = 1e60 is inf in float32, and 0 * inf is NaN: every
    path (vector body and scalar tail alike) must give the same bytes, or the call must
    refuse the scale with a ValueError, as fixed point refuses scales >= 2^30."""
    t = np.array([0, 1, -1, 127, -128], np.int64)
    a = QTensor((t + 128).astype(np.uint8)[:, None], 1e30, 128)     # a - za = t, so acc = t
    b = QTensor(np.ones((1, 17), np.int8), 1e30, 0)                   # 17 columns: 16 vector + 1 tail
    outcomes = {}
    for isa in qkernels._dispatch.tested_isas():
        with qkernels.use_isa(isa):
            try:
                with np.errstate(over="ignore", invalid="ignore"):
                    outcomes[isa] = matmul(a, b, out_scale=1.0, out_zero_point=10).data.tolist()
            except ValueError as e:
                outcomes[isa] = "ValueError"
                assert "scale" in str(e)
    values = list(outcomes.values())
    assert all(v == values[0] for v in values), outcomes
    if values[0] != "ValueError":
        rows = values[0]
        assert all(len(set(row)) == 1 for row in rows), f"columns of one row differ: {rows}"


# ------------------------------------------- weights whose pairs fit 128: the vpmaddubsw kernel

def _kernels_used(pw):
    return {qkernels._native.kernel_info(kid)[0] for kid in pw._packed}


def _pair_limited_b(rng, k, n, bdt, limit):
    """B whose stored pairs (uint8 minus 128) reach |b0| + |b1| == limit exactly."""
    off = 0 if bdt == S8 else 128
    half = min(limit // 2, 64)
    v = rng.integers(-half, half + 1, (k, n))
    if k >= 2:                                   # the extreme pairs: (-128, 0), (64, 64), (-64, -64)
        v[0, :], v[1, :] = -min(limit, 128), limit - min(limit, 128)
    if k >= 4:
        v[2, :], v[3, :] = limit // 2, limit - limit // 2
    return (v + off).astype(bdt)


@pytest.mark.parametrize("adt,bdt", DTYPE_PAIRS, ids=DTYPE_IDS)
@pytest.mark.parametrize("m,n,k", [(3, 17, 5), (6, 16, 4), (7, 33, 9), (13, 31, 64), (50, 40, 131), (97, 16, 2)])
def test_pair_limited_weights_are_exact_on_every_path(isa, ref, adt, bdt, m, n, k):
    """|b0| + |b1| <= 128 for every pair along K lets AVX2 use vpmaddubsw exactly (255 * 128 <
    32768); extremes of A (0 and 255 after the int8 flip) meet the extreme pairs."""
    rng = np.random.default_rng([m, n, k])
    a = ref.random_q(rng, (m, k), adt, "ends")
    a[0, :] = _qrange(adt)[1]                    # 255 after the flip, against every extreme pair
    b = _pair_limited_b(rng, k, n, bdt, 128)
    za = int(rng.integers(*_qrange(adt)))
    for zb in (0 if bdt == S8 else 128, ref.random_zero_point(rng, bdt, n)):
        pw = pack_weights(_b_qtensor(b, zb))
        assert pw.pairs_128
        acc = matmul(QTensor(a, 1.0, za), pw, out_dtype=np.int32)
        _check_equal(acc, ref.gemm_int32(a, b, za, zb), f"{isa} int32")
        y = matmul(QTensor(a, 0.5, za), pw, out_scale=64.0, out_zero_point=3, out_dtype=U8)
        want = ref.requant(ref.gemm_int32(a, b, za, zb), "fp32", 0.5, 1.0, 64.0, 3, U8)
        _check_equal(y.data, want, f"{isa} fp32")
        if isa == "avx2" and m > 2:
            assert _kernels_used(pw) == {"qs8_gemm_6x16c4_u8s7_avx2"}


def test_a_pair_past_128_takes_the_exact_general_kernel(ref):
    """One pair of 129 anywhere (here (-128, 1)) rules the vpmaddubsw kernel out."""
    rng = np.random.default_rng(7)
    a = np.full((9, 6), 255, np.uint8)
    b = _pair_limited_b(rng, 6, 17, S8, 128)
    b[4, 5], b[5, 5] = -128, 1
    pw = pack_weights(QTensor(b, 1.0, 0))
    assert not pw.pairs_128
    for isa in qkernels._dispatch.tested_isas():
        with qkernels.use_isa(isa):
            _check_equal(matmul(QTensor(a, 1.0, 0), pw, out_dtype=np.int32), ref.gemm_int32(a, b), isa)
    assert "qs8_gemm_6x16c4_u8s7_avx2" not in _kernels_used(pw)


def _int8_gemm_kernels():
    from qkernels import _native
    return [kid for kid in range(_native.kernel_count())
            if (info := _native.kernel_info(kid))[10] == _native.KIND_GEMM and info[9] == _native.DTYPE_QS8]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 70), st.integers(1, 70), st.sampled_from([np.int8, np.uint8]), st.booleans(),
       st.integers(0, 2**32 - 1), st.booleans())
def test_packed_weights_keep_only_panels_and_rebuild_the_weights_exactly(k, n, dtype, per_column, seed, view):
    """PackedWeights holds the panels of one kernel, not the weights: ``data`` unpacks
    them bit for bit (int8 panels, or int16 ones minus the zero points), and every other
    kernel's panels packed from that equal those packed from the caller's array."""
    from qkernels import _native
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    src = rng.integers(info.min, info.max, (n, k) if view else (k, n), endpoint=True).astype(dtype)
    b = src.T[::-1] if view else src          # a transposed, reversed view: any strides
    zp = rng.integers(info.min, info.max, n if per_column else (), endpoint=True).astype(dtype)
    scale = np.full(n if per_column else (), 0.02, np.float32)
    pw = pack_weights(QTensor(b, scale, zp, axis=1 if per_column else None))
    assert pw._source is None and pw.nbytes == sum(p.nbytes + s.nbytes for p, s in pw._panels.values())
    got = pw.data
    assert got.dtype == b.dtype and got.shape == b.shape and not got.flags.writeable
    np.testing.assert_array_equal(got, b)
    np.testing.assert_array_equal(pw.qtensor.data, b)
    for kid in _int8_gemm_kernels():
        want_panels, want_sums = _native.pack_b(kid, np.ascontiguousarray(b), dtype == np.int8, pw.zero_point)
        panels, sums = pw.packed_for(kid)
        np.testing.assert_array_equal(panels, want_panels)
        np.testing.assert_array_equal(sums, want_sums)
    b_copy = b.copy()
    src[...] = 0                                # the caller's array may change: nothing refers to it
    np.testing.assert_array_equal(pw.data, b_copy)


def test_pairs_fit_128_checks_every_pair_along_k():
    from qkernels._gemm import _pairs_fit_128
    for dtype, base in ((np.int8, 0), (np.uint8, 128)):
        b = np.full((300, 700), base, dtype)
        assert _pairs_fit_128(b, dtype == np.int8)
        b[201, 650], b[200, 650] = base + 64, base + 65    # one pair (k 200, 201) over 128
        assert not _pairs_fit_128(b, dtype == np.int8)
        b[200, 650] = base + 64                            # exactly 128
        assert _pairs_fit_128(b, dtype == np.int8)
        b[299, 3] = base + 127 if dtype == np.int8 else 0  # an odd last row pairs with zero
        assert _pairs_fit_128(b[:299 + 1], dtype == np.int8)
