"""Each micro-kernel on its own, tile by tile (XNNPACK's pattern).

Every kernel of the registry that this CPU can run is called directly on one packed
A panel and one packed B panel (qkernels._native's test entry points), not through
``matmul``: every M <= MR, N edges below NR, K = 1, odd, prime and past the K-group,
extreme values and zero points at the ends of their type. int8 tiles must equal an
int64 numpy reference bit for bit (and the output stages the scalar stage); fp16 tiles
must lie within the accuracy contract of docs/api.md ("fp16").

Also run in the emulated lanes (.ci/emulated.sh), so that each NEON kernel is checked
on its own; QKERNELS_TEST_SMALL=1 thins the grids.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import qkernels
from qkernels import _native

SMALL = os.environ.get("QKERNELS_TEST_SMALL", "").strip().lower() not in ("", "0", "false", "no")
U8, S8 = np.dtype(np.uint8), np.dtype(np.int8)
DTYPE_PAIRS = [(U8, S8), (S8, S8), (U8, U8), (S8, U8)]
DTYPE_IDS = ["u8xs8", "s8xs8", "u8xu8", "s8xu8"]
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def _runnable(info) -> bool:
    """Can this CPU run the kernel? Its ISA path is supported, and FP16 arithmetic if it needs it."""
    return info["isa"] in qkernels.SUPPORTED_ISAS + qkernels.EMULATED_ISAS and (
        not info["needs_fp16_arith"] or _native.cpu_features()["asimdhp"])


def _tested(info) -> bool:
    """Runnable here and a path this run sweeps (QKERNELS_TEST_ISAS: an emulated lane's own)."""
    return _runnable(info) and info["isa"] in qkernels._dispatch.tested_isas()


REGISTERED = [(i, _native.ukernel_info(i)) for i in range(_native.kernel_count())]
KERNELS = [(kid, info) for kid, info in REGISTERED if _tested(info)]
GEMM = [(kid, info) for kid, info in KERNELS if info["kind"] == _native.KIND_GEMM]
QS8 = [(kid, info) for kid, info in GEMM if info["dtype"] == _native.DTYPE_QS8]
F16 = [(kid, info) for kid, info in GEMM if info["dtype"] == _native.DTYPE_F16]
FLOAT = [(kid, info) for kid, info in GEMM if info["dtype"] in (_native.DTYPE_F16, _native.DTYPE_F32)]
#: per float kernel dtype: (numpy dtype of its inputs and output, output-stage mode, its bits)
FLOAT_TYPES = {_native.DTYPE_F16: (np.float16, _native.OUT_F16, np.uint16),
               _native.DTYPE_F32: (np.float32, _native.OUT_F32, np.uint32)}
FUSED = [(kid, info) for kid, info in QS8 if info["fused"]]


def _scalar_kid(dtype) -> int:
    """The portable kernel of a dtype: the reference of every output stage."""
    return next(kid for kid, info in REGISTERED if info["isa"] == "scalar" and info["dtype"] == dtype
                and info["kind"] == _native.KIND_GEMM)


def _ids(kernels):
    return [info["name"] for _, info in kernels]


def _params(kernels):
    """The kernels of one group, as test parameters, followed by the registered kernels of
    the same kind and dtype that this CPU cannot run (native VNNI kernels on a CPU without
    VNNI; their logic is checked through the *_emu paths), skipped with the reason."""
    (_, first), = kernels[:1] or [(None, None)]
    params = [pytest.param(kid, info, id=info["name"]) for kid, info in kernels]
    if first is None:
        return params
    feats = _native.cpu_features()
    for kid, info in REGISTERED:
        if (info["kind"], info["dtype"]) == (first["kind"], first["dtype"]) and not _tested(info) and \
                (not first["fused"] or info["fused"]):
            lacks = ", ".join(f for f in qkernels._dispatch._REQUIRES.get(info["isa"], ()) if not feats[f])
            reason = (f"this CPU cannot run the {info['isa']} path (lacks {lacks or 'FP16 arithmetic'})"
                      if not _runnable(info) else f"the {info['isa']} path is left to another lane (QKERNELS_TEST_ISAS)")
            params.append(pytest.param(kid, info, id=info["name"], marks=pytest.mark.skip(reason=reason)))
    return params


def _m_edges(mr):
    return list(range(1, mr + 1))


def _n_edges(nr):
    """Column counts of one B panel: 1, a few inside, NR - 1 and the full NR."""
    return sorted({1, 3, nr // 2 + 1, nr - 1, nr} & set(range(1, nr + 1)))


def _k_edges(kr):
    """K = 1, odd and prime, around one and two K-groups."""
    ks = {1, kr + 1, 13, 31} if SMALL else {1, 2, 3, kr - 1, kr, kr + 1, 2 * kr + 1, 7, 13, 31, 67}
    return sorted(k for k in ks if k >= 1)


def _stored(x, pack, signed, zp):
    """The values a panel of this pack kind stores for x (int64), as the kernels multiply them."""
    x = x.astype(np.int64)
    if pack == _native.PACK_I16:
        return x - zp                      # zero point folded in
    if pack == _native.PACK_S8:
        return x if signed else x - 128    # uint8 flipped to int8
    assert pack == _native.PACK_U8
    return x + 128 if signed else x        # int8 flipped to uint8


def _b_range(info, b_dtype):
    """B values the kernel is exact for: 7-bit stored weights for the vpmaddubsw kernel
    (every pair along K within 128), the whole type otherwise."""
    if not info["needs_pairs_128"]:
        return None, None
    return (-64, 64) if b_dtype == S8 else (64, 192)


def _run_tile(kid, info, a, za, b, zb):
    """Pack one panel of each operand, run the kernel: (acc tile, row sums, column sums)."""
    a_panel, row_sum = _native.ukernel_pack_a(kid, a, a.dtype == S8, za)
    b_panel, col_sum = _native.pack_b(kid, b, b.dtype == S8, zb)
    return _native.ukernel_gemm(kid, a_panel, b_panel, a.shape[1]), row_sum, col_sum


def _check_int8_tile(kid, info, a, za, b, zb):
    mr, nr = info["mr"], info["nr"]
    m, k = a.shape
    n = b.shape[1]
    acc, row_sum, col_sum = _run_tile(kid, info, a, za, b, zb)
    sa = _stored(a, info["a_pack"], a.dtype == S8, za)
    sb = _stored(b, info["b_pack"], b.dtype == S8, zb.astype(np.int64))
    want = np.zeros((mr, nr), np.int64)
    want[:m, :n] = sa @ sb                 # padded rows and columns: zeros
    want = (want + 2**31) % 2**32 - 2**31
    where = f"{info['name']} M={m} N={n} K={k} {a.dtype}x{b.dtype} za={za}"
    assert acc.dtype == np.int32 and acc.shape == (mr, nr)
    bad = np.argwhere(acc != want)
    assert not len(bad), f"{where}: {len(bad)} of {acc.size} sums differ; first {tuple(bad[0])}: " \
                         f"got {acc[tuple(bad[0])]}, expected {want[tuple(bad[0])]}"
    np.testing.assert_array_equal(row_sum[:m], sa.sum(axis=1), err_msg=f"{where}: row sums")
    if info["b_pack"] == _native.PACK_S8:
        np.testing.assert_array_equal(col_sum, sb.sum(axis=0), err_msg=f"{where}: column sums")


# ------------------------------------------------------------------------------ registry

def test_every_isa_path_of_this_cpu_has_its_int8_kernels_in_the_registry():
    qs8 = [(kid, info) for kid, info in REGISTERED if _runnable(info) and info["kind"] == _native.KIND_GEMM
           and info["dtype"] == _native.DTYPE_QS8]
    assert set(qkernels.SUPPORTED_ISAS) <= {info["isa"] for _, info in qs8}, (qkernels.SUPPORTED_ISAS, _ids(qs8))


# --------------------------------------------------------------------------- int8 GEMM

@pytest.mark.parametrize("a_dtype,b_dtype", DTYPE_PAIRS, ids=DTYPE_IDS)
@pytest.mark.parametrize("kid,info", _params(QS8))
def test_int8_ukernel_sums_equal_int64_on_every_edge_tile(kid, info, a_dtype, b_dtype, ref):
    rng = np.random.default_rng(kid * 7 + len(a_dtype.str + b_dtype.str))
    lo, hi = _b_range(info, b_dtype)
    for m in _m_edges(info["mr"]):
        for n in _n_edges(info["nr"]):
            for k in _k_edges(info["kr"]):
                a = ref.random_q(rng, (m, k), a_dtype, "random")
                b = ref.random_q(rng, (k, n), b_dtype, "random", lo, hi)
                za = int(ref.random_q(rng, (), a_dtype, "random"))
                zb = ref.random_q(rng, (n,), b_dtype, "random").astype(np.int32)
                _check_int8_tile(kid, info, a, za, b, zb)


@pytest.mark.parametrize("a_dtype,b_dtype", DTYPE_PAIRS, ids=DTYPE_IDS)
@pytest.mark.parametrize("kid,info", _params(QS8))
def test_int8_ukernel_sums_are_exact_at_extreme_values_and_zero_points(kid, info, a_dtype, b_dtype, ref):
    """-128/127/0/255 everywhere, zero points at the ends of their type: the largest
    products (255 * 255 after zero-point folding) and longest runs of one sign."""
    rng = np.random.default_rng(kid)
    mr, nr, kr = info["mr"], info["nr"], info["kr"]
    lo, hi = _b_range(info, b_dtype)
    a_info, b_info = np.iinfo(a_dtype), np.iinfo(b_dtype)
    for k in sorted({1, kr + 1, 31} if SMALL else {1, kr + 1, 31, 257}):
        for a_mode in ("min", "max", "ends"):
            for b_mode in ("min", "max", "ends"):
                for za in (a_info.min, a_info.max):
                    for zb_end in (b_info.min, b_info.max):
                        a = ref.random_q(rng, (mr, k), a_dtype, a_mode)
                        b = ref.random_q(rng, (k, nr), b_dtype, b_mode, lo, hi)
                        zb = np.full(nr, zb_end, np.int32)
                        _check_int8_tile(kid, info, a, int(za), b, zb)


# ------------------------------------------------------------------------ output stages

def _out_array(mode, out_signed, shape):
    if mode == _native.OUT_INT32:
        return np.zeros(shape, np.int32)
    return np.zeros(shape, np.int8 if out_signed else np.uint8)


def _int8_stage_params(rng, mode, out_signed, nr, mr, row_sums):
    """Random but valid output-stage parameters (lo <= hi inside the output type; positive
    Q31 multipliers, right and left shifts)."""
    qlo, qhi = (-128, 127) if out_signed else (0, 255)
    lo, hi = sorted(int(v) for v in rng.integers(qlo, qhi, 2, endpoint=True))
    if rng.random() < 0.5:
        lo, hi = qlo, qhi
    p = dict(out_signed=out_signed, zy=int(rng.integers(qlo, qhi, endpoint=True)), lo=lo, hi=hi,
             col_add=rng.integers(-2**20, 2**20, nr).astype(np.int32))
    if row_sums:
        p.update(col_zb=rng.integers(-255, 255, nr, endpoint=True).astype(np.int32),
                 row_sum=rng.integers(-2**16, 2**16, mr).astype(np.int32))
    if mode == _native.OUT_FP32:
        p["scale"] = (2.0 ** rng.uniform(-24, -4, nr)).astype(np.float32)
    elif mode == _native.OUT_FIXEDPOINT:
        p["mult"] = rng.integers(2**30, 2**31 - 1, nr, endpoint=True).astype(np.int32)
        p["shift"] = rng.integers(-24, 2, nr, endpoint=True).astype(np.int32)   # > 0: left shifts
    return p


MODES = {"int32": _native.OUT_INT32, "fp32": _native.OUT_FP32, "fixedpoint": _native.OUT_FIXEDPOINT}


@pytest.mark.parametrize("row_sums", [False, True], ids=["no_row_sums", "row_sums"])
@pytest.mark.parametrize("mode", list(MODES), ids=list(MODES))
@pytest.mark.parametrize("kid,info", _params(QS8))
def test_int8_output_stage_equals_the_scalar_stage_on_every_edge_tile(kid, info, mode, row_sums):
    rng = np.random.default_rng(kid * 31 + MODES[mode] * 2 + row_sums)
    mr, nr, ref_kid = info["mr"], info["nr"], _scalar_kid(_native.DTYPE_QS8)
    m_edges = _m_edges(mr)
    n_edges = _n_edges(nr) if SMALL else list(range(1, nr + 1))
    for out_signed in (False, True):
        for mc in m_edges:
            for nc in n_edges:
                acc = rng.integers(-2**24, 2**24, (mr, nr)).astype(np.int32)
                acc.flat[rng.integers(0, acc.size, 4)] = rng.choice([INT32_MIN, INT32_MAX, 0, -1], 4)
                p = _int8_stage_params(rng, MODES[mode], out_signed, nr, mr, row_sums)
                got = _native.ukernel_output(kid, acc, _out_array(MODES[mode], out_signed, (mc, nc)), MODES[mode],
                                             **p)
                want = _native.ukernel_output(ref_kid, acc, _out_array(MODES[mode], out_signed, (mc, nc)),
                                              MODES[mode], **p)
                np.testing.assert_array_equal(got, want, err_msg=f"{info['name']} {mode} {mc}x{nc} {p}")


@pytest.mark.parametrize("mode", ["int32", "fp32"])
@pytest.mark.parametrize("kid,info", _params(FUSED))
def test_fused_ukernel_equals_its_gemm_and_the_scalar_stage(kid, info, mode, ref):
    rng = np.random.default_rng(kid + MODES[mode])
    mr, nr, ref_kid = info["mr"], info["nr"], _scalar_kid(_native.DTYPE_QS8)
    for a_dtype, b_dtype in DTYPE_PAIRS:
        lo, hi = _b_range(info, b_dtype)
        for k in _k_edges(info["kr"]):
            for out_signed in (False, True):
                a = ref.random_q(rng, (mr, k), a_dtype, "random")
                b = ref.random_q(rng, (k, nr), b_dtype, "random", lo, hi)
                za = int(ref.random_q(rng, (), a_dtype, "random"))
                zb = ref.random_q(rng, (nr,), b_dtype, "random").astype(np.int32)
                a_panel, _ = _native.ukernel_pack_a(kid, a, a_dtype == S8, za)
                b_panel, _ = _native.pack_b(kid, b, b_dtype == S8, zb)
                p = _int8_stage_params(rng, MODES[mode], out_signed, nr, mr, False)
                p.pop("mult", None), p.pop("shift", None)
                got = _native.ukernel_fused(kid, a_panel, b_panel, k, _out_array(MODES[mode], out_signed, (mr, nr)),
                                            MODES[mode], **p)
                acc = _native.ukernel_gemm(kid, a_panel, b_panel, k)
                want = _native.ukernel_output(ref_kid, acc, _out_array(MODES[mode], out_signed, (mr, nr)),
                                              MODES[mode], **p)
                np.testing.assert_array_equal(got, want, err_msg=f"{info['name']} {mode} K={k}")


# ------------------------------------------------------------------------ fp16 and fp32

def _float_bound(ref, scale, k, info):
    """docs/api.md, fp16: |out - ref| <= |ref| 2^-11 + e S + 2^-25, e = K 2^-23 (fp32 sums)
    or 8 2^-11 (fp16 sums over chunks of 8, FP16 arithmetic); the raw fp32 sums of an fp32
    kernel: K 2^-23 S (+ the smallest normal)."""
    if info["dtype"] == _native.DTYPE_F32:
        return k * 2.0**-23 * scale + 2.0**-126
    e = 8 * 2.0**-11 if info["needs_fp16_arith"] else k * 2.0**-23
    return np.abs(ref) * 2.0**-11 + e * scale + 2.0**-25


@pytest.mark.parametrize("kid,info", _params(FLOAT))
def test_float_ukernel_sums_lie_within_the_documented_bound_on_every_edge_tile(kid, info):
    rng = np.random.default_rng(kid)
    mr, nr = info["mr"], info["nr"]
    dtype = FLOAT_TYPES[info["dtype"]][0]
    for m in _m_edges(mr):
        for n in _n_edges(nr):
            for k in _k_edges(8):
                a = rng.uniform(-4, 4, (m, k)).astype(dtype)
                b = rng.uniform(-4, 4, (k, n)).astype(dtype)
                if rng.random() < 0.25:   # exact ends: +-4 everywhere
                    a, b = np.sign(a) * dtype(4), np.sign(b) * dtype(4)
                a_panel, _ = _native.ukernel_pack_a(kid, a, False, 0)
                b_panel, _ = _native.pack_b(kid, b, False, np.zeros(n, np.int32))
                acc = _native.ukernel_gemm(kid, a_panel, b_panel, k)
                assert acc.dtype == np.float32 and acc.shape == (mr, nr)
                a64, b64 = a.astype(np.float64), b.astype(np.float64)
                ref = a64 @ b64
                err = np.abs(acc[:m, :n].astype(np.float64) - ref)
                bound = _float_bound(ref, np.abs(a64) @ np.abs(b64), k, info)
                assert (err <= bound).all(), f"{info['name']} M={m} N={n} K={k}: worst {err.max():.3g}"
                pad = acc.copy()
                pad[:m, :n] = 0
                assert not pad.any(), f"{info['name']} M={m} N={n} K={k}: padding is not zero"


def _hswish_div(v: np.ndarray, act) -> np.ndarray:
    """PaddlePaddle's hard swish as its exports spell it, numpy's float32 operations:
    (v * min(max(v + add, lo), hi)) / div."""
    add, lo, hi, div = (np.float32(a) for a in act)
    t = np.minimum(np.maximum(v + add, lo), hi)
    return (v * t) / div


@pytest.mark.parametrize("kid,info", _params([(k, i) for k, i in FLOAT if i["fused"]]))
def test_fp32_fused_entry_equals_its_gemm_and_output_stage(kid, info):
    """An fp32 kernel's fused entry (bias, residual, clamp on the sums in registers): bit
    for bit its own sums through its output stage, on full tiles and on 16 columns."""
    rng = np.random.default_rng(kid)
    mr, nr = info["mr"], info["nr"]
    for k in _k_edges(8):
        for nc in (16, nr):
            a = rng.uniform(-4, 4, (mr, k)).astype(np.float32)
            b = rng.uniform(-4, 4, (k, nr)).astype(np.float32)
            a_panel, _ = _native.ukernel_pack_a(kid, a, False, 0)
            b_panel, _ = _native.pack_b(kid, b, False, np.zeros(nr, np.int32))
            bias = rng.standard_normal(nr).astype(np.float32)
            flo, fhi = (-np.inf, np.inf) if rng.random() < 0.5 else sorted(rng.uniform(-20, 20, 2))
            r = rng.standard_normal((mr, nr + 5)).astype(np.float32)[:, :nc] if rng.random() < 0.7 else None
            act = (3.0, 0.0, 6.0, 6.0) if rng.random() < 0.5 else None
            acc = _native.ukernel_gemm(kid, a_panel, b_panel, k)
            want = _native.ukernel_output(kid, acc, np.zeros((mr, nc), np.float32), _native.OUT_F32, bias=bias,
                                          flo=flo, fhi=fhi, residual=r, act=act)
            got = _native.ukernel_fused(kid, a_panel, b_panel, k, np.zeros((mr, nc), np.float32), _native.OUT_F32,
                                        bias=bias, flo=flo, fhi=fhi, residual=r, act=act)
            assert _same_bits(got, want, np.uint32), f"{info['name']} K={k} nc={nc} residual={r is not None}"


def _same_bits(got, want, bits):
    """Bit for bit, any NaN equal to any NaN (the payload is not part of the contract)."""
    nan = np.isnan(got) & np.isnan(want)
    return np.array_equal(got.view(bits)[~nan], want.view(bits)[~nan]) and \
        np.array_equal(np.isnan(got), np.isnan(want))


@pytest.mark.parametrize("kid,info", _params(FLOAT))
def test_float_output_stage_equals_the_scalar_stage_on_every_edge_tile(kid, info):
    rng = np.random.default_rng(kid)
    mr, nr, ref_kid = info["mr"], info["nr"], _scalar_kid(info["dtype"])
    dtype, mode, bits = FLOAT_TYPES[info["dtype"]]
    specials = np.array([np.nan, np.inf, -np.inf, 65520.0, -65519.0, 2.0**-25, 0.0, -0.0, 1e-8], np.float32)
    for mc in _m_edges(mr):
        for nc in range(1, nr + 1):
            acc = rng.standard_normal((mr, nr)).astype(np.float32) * np.float32(100)
            acc.flat[rng.integers(0, acc.size, 4)] = rng.choice(specials, 4)
            bias = rng.standard_normal(nr).astype(np.float32)
            flo, fhi = (-np.inf, np.inf) if rng.random() < 0.5 else sorted(rng.uniform(-50, 50, 2))
            p = dict(bias=bias, flo=flo, fhi=fhi)
            got = _native.ukernel_output(kid, acc, np.zeros((mc, nc), dtype), mode, **p)
            want = _native.ukernel_output(ref_kid, acc, np.zeros((mc, nc), dtype), mode, **p)
            assert _same_bits(got, want, bits), f"{info['name']} {mc}x{nc}: {got} != {want}"
            if mode == _native.OUT_F32:   # the hard swish after the clamp: numpy's operations, in order
                act = (3.0, 0.0, 6.0, 6.0) if rng.random() < 0.5 else (0.5, -1.0, 2.5, 3.0)
                got = _native.ukernel_output(kid, acc, np.zeros((mc, nc), dtype), mode, act=act, **p)
                with np.errstate(invalid="ignore", over="ignore"):
                    want = _hswish_div(_native.ukernel_output(ref_kid, acc, np.zeros((mc, nc), dtype), mode, **p), act)
                assert _same_bits(got, want, bits), f"{info['name']} {mc}x{nc} activation"
            if mode == _native.OUT_F32:   # a fused residual Add: (acc + bias) + r, then the clamp
                r = rng.standard_normal((mc, nr + 3)).astype(np.float32)[:, :nc]   # rows at a stride of their own
                r.flat[rng.integers(0, r.size, 2)] = rng.choice(specials, 2)
                got = _native.ukernel_output(kid, acc, np.zeros((mc, nc), dtype), mode, residual=r, **p)
                with np.errstate(invalid="ignore"):
                    v = (acc[:mc, :nc] + bias[:nc]) + r
                    want = np.where(np.isnan(v), v, np.minimum(np.float32(fhi), np.maximum(np.float32(flo), v)))
                assert _same_bits(got, want.astype(np.float32), bits), f"{info['name']} {mc}x{nc} residual"


# ------------------------------------------------------------------- depthwise sum kernels

DW = [(kid, info) for kid, info in KERNELS if info["kind"] == _native.KIND_DW_SUM]
DW_TAPS = [1, 9, 25] if SMALL else [1, 2, 3, 9, 10, 25, 64]      # 3x3 and 5x5 are unrolled copies
DW_CHANNELS = [1, 15, 16, 17, 33] if SMALL else [1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 40]


def _dw_end(info, ch, c0):
    """Where a sum kernel stops: whole blocks of its width (the last one shifted to end at C),
    nothing when fewer than a block remain; the portable kernel does every channel."""
    return ch if ch - c0 >= info["width"] else c0


@pytest.mark.parametrize("run", [False, True], ids=["pointer_rows", "interior_run"])
@pytest.mark.parametrize("kid,info", _params(DW))
def test_depthwise_sum_ukernel_covers_its_blocks_exactly(kid, info, run, ref):
    rng = np.random.default_rng(kid + run)
    f16 = info["dtype"] != _native.DTYPE_QS8             # a float kernel (fp16 or fp32 inputs)
    xtype = FLOAT_TYPES.get(info["dtype"], (None,))[0]
    for taps in DW_TAPS:
        for ch in DW_CHANNELS:
            for c0 in sorted({0, 3, ch // 2} & set(range(ch))):
                for signed in (False, True) if not f16 else (False,):
                    count = int(rng.integers(1, 9))
                    where = f"{info['name']} taps={taps} C={ch} c0={c0} signed={signed} count={count}"
                    if f16:
                        x = rng.uniform(-4, 4, (count, taps, ch)).astype(xtype)
                        w = rng.uniform(-1, 1, (taps, ch)).astype(np.float32)
                        init = rng.uniform(-8, 8, ch).astype(np.float32)
                        acc, end = _native.ukernel_dw_sum(kid, x.view(np.uint8), w, init, False, c0, run)
                        x64 = x.astype(np.float64)
                        want = init + np.einsum("itc,tc->ic", x64, w.astype(np.float64))
                        scale = np.abs(init) + np.einsum("itc,tc->ic", np.abs(x64), np.abs(w.astype(np.float64)))
                        err = np.abs(acc.astype(np.float64) - want)[:, c0:end]
                        assert (err <= (taps + 1) * 2.0**-23 * scale[:, c0:end] + 2.0**-25).all(), where
                    else:
                        dt = S8 if signed else U8
                        mode = rng.choice(["random", "ends"])
                        x = ref.random_q(rng, (count, taps, ch), dt, mode)
                        w = ref.random_q(rng, (taps, ch), np.dtype(np.int16), mode, -255, 255)
                        init = rng.integers(-2**24, 2**24, ch).astype(np.int32)
                        acc, end = _native.ukernel_dw_sum(kid, x.view(np.uint8), w, init, signed, c0, run)
                        want = init + np.einsum("itc,tc->ic", x.astype(np.int64), w.astype(np.int64))
                        want = (want + 2**31) % 2**32 - 2**31
                        np.testing.assert_array_equal(acc[:, c0:end], want[:, c0:end], err_msg=where)
                    assert end == _dw_end(info, ch, c0), where
                    assert not acc[:, :c0].any() and not acc[:, end:].any(), f"{where}: wrote outside [c0, end)"


@pytest.mark.parametrize("run", [False, True], ids=["pointer_rows", "interior_run"])
@pytest.mark.parametrize("kid,info", _params([(k, i) for k, i in DW if i["dtype"] == _native.DTYPE_F32]))
def test_fp32_depthwise_kernel_with_its_output_stage_fused_gives_the_same_floats(kid, info, run):
    """An fp32 sum kernel given the output may store it itself (bias, clamp keeping NaN):
    bit for bit the sums of the kernel it extends (AVX-512: the AVX2 kernel, whose FMAs it
    repeats in order; others: its own sums-only call) through the fp32 output stage
    (numpy's float32 add and the clamp), for the channels it says it stored."""
    rng = np.random.default_rng(kid + run)
    names = {i["name"]: k for k, i in DW}
    base = names["f32_dwconv_avx2"] if "avx512" in info["name"] else kid
    for taps in DW_TAPS:
        for ch in DW_CHANNELS:
            for c0 in sorted({0, 3, ch // 2} & set(range(ch))):
                count = int(rng.integers(1, 9))
                where = f"{info['name']} taps={taps} C={ch} c0={c0} count={count}"
                x = rng.uniform(-4, 4, (count, taps, ch)).astype(np.float32)
                x.flat[rng.integers(0, x.size)] = np.nan if rng.random() < 0.3 else x.flat[0]
                w = rng.uniform(-1, 1, (taps, ch)).astype(np.float32)
                init = np.zeros(ch, np.float32)
                bias = rng.uniform(-2, 2, ch).astype(np.float32)
                lo, hi = (-np.inf, np.inf) if rng.random() < 0.3 else (0.0, float(rng.uniform(1, 6)))
                out = np.full((count, ch), -7.0, np.float32)
                acc, end, stored = _native.ukernel_dw_sum(kid, x.view(np.uint8), w, init, False, c0, run, out, bias,
                                                          lo, hi)
                assert stored in (c0, end), where
                sums, _ = _native.ukernel_dw_sum(base, x.view(np.uint8), w, init, False, c0, run)
                want = np.minimum(np.float32(hi), np.maximum(np.float32(lo), sums + bias))
                want = np.where(np.isnan(sums + bias), sums + bias, want)
                np.testing.assert_array_equal(out[:, c0:stored], want[:, c0:stored], err_msg=where)
                assert (out[:, :c0] == -7).all() and (out[:, stored:] == -7).all(), f"{where}: stored outside"
                if stored == c0:      # sums only: as the other test checks them
                    np.testing.assert_array_equal(acc[:, c0:end], sums[:, c0:end], err_msg=where)


# ------------------------------------------------------------------ quantize row kernels

QUANTIZE = [(kid, info) for kid, info in KERNELS if info["kind"] == _native.KIND_QUANTIZE]
DEQUANTIZE = [(kid, info) for kid, info in KERNELS if info["kind"] == _native.KIND_DEQUANTIZE]
QUANT_N = [1, 7, 8, 15, 16, 17, 31, 32, 33, 64, 100] if not SMALL else [1, 16, 33, 100]
SPECIAL_F32 = np.array([np.inf, -np.inf, 0.0, -0.0, 1e30, -1e30, 2.5, -2.5, 3.5, 127.5, -128.5, 255.5, 1.4e-45,
                        3.4e38, -0.5, 0.5], np.float32)


def _scalar_row_kid(kind):
    return next(kid for kid, info in REGISTERED if info["kind"] == kind and info["isa"] == "scalar")


def _quant_params(rng, n, per_elem, signed):
    lo, hi = (-128, 127) if signed else (0, 255)
    m = n if per_elem else 1
    scale = (2.0 ** rng.uniform(-8, 2, m)).astype(np.float32)
    zp = rng.integers(lo, hi, m, endpoint=True).astype(np.int32)
    zp[rng.random(m) < 0.3] = lo if rng.random() < 0.5 else hi     # zero points at the ends
    return scale, zp


def _row_cases(seed, per_elem):
    """(rng, n, signed, variant, scale, zp): every row length, both types, two variants each."""
    rng = np.random.default_rng(seed)
    for n in QUANT_N:
        for signed in (False, True):
            for variant in (0, 1):
                yield (rng, n, signed, variant, *_quant_params(rng, n, per_elem, signed))


def _check_done(done, ref_done, n, where):
    """The portable row does all n values; a vector row whole steps only (at most 32 values each)."""
    assert ref_done == n and done <= n and (done > 0 or n < 32), f"{where}: did {done} of {n}"


@pytest.mark.parametrize("per_elem", [False, True], ids=["per_tensor", "per_value"])
@pytest.mark.parametrize("kid,info", _params(QUANTIZE))
def test_quantize_row_ukernel_equals_the_scalar_row(kid, info, per_elem):
    ref_kid = _scalar_row_kid(_native.KIND_QUANTIZE)
    for rng, n, signed, with_nan, scale, zp in _row_cases(kid + per_elem, per_elem):
        x = (rng.standard_normal(n) * 300).astype(np.float32)
        pick = rng.random(n) < 0.3
        x[pick] = rng.choice(SPECIAL_F32, pick.sum())
        if with_nan:
            x[rng.integers(0, n)] = np.nan
        q, done, nan = _native.ukernel_quantize(kid, x, scale, zp, per_elem, signed)
        want, ref_done, _ = _native.ukernel_quantize(ref_kid, x, scale, zp, per_elem, signed)
        where = f"{info['name']} n={n} signed={signed}"
        _check_done(done, ref_done, n, where)
        ok = ~np.isnan(x[:done])                   # a NaN's q is unspecified
        np.testing.assert_array_equal(q[:done][ok], want[:done][ok], err_msg=where)
        assert nan == bool(np.isnan(x[:done]).any()), where


@pytest.mark.parametrize("per_elem", [False, True], ids=["per_tensor", "per_value"])
@pytest.mark.parametrize("kid,info", _params(DEQUANTIZE))
def test_dequantize_row_ukernel_equals_the_scalar_row(kid, info, per_elem, ref):
    ref_kid = _scalar_row_kid(_native.KIND_DEQUANTIZE)
    for rng, n, signed, at_ends, scale, zp in _row_cases(kid + per_elem, per_elem):
        q = ref.random_q(rng, (n,), S8 if signed else U8, "ends" if at_ends else "random")
        y, done = _native.ukernel_dequantize(kid, q, scale, zp, per_elem)
        want, ref_done = _native.ukernel_dequantize(ref_kid, q, scale, zp, per_elem)
        where = f"{info['name']} n={n} signed={signed} ends={at_ends}"
        _check_done(done, ref_done, n, where)
        np.testing.assert_array_equal(y[:done].view(np.uint32), want[:done].view(np.uint32), err_msg=where)
