"""fp16 and fp32 matmul, conv2d and depthwise_conv2d on every ISA path against a float64
numpy reference, within the accuracy contract of docs/api.md ("fp16", "fp32"):

    |got - ref| <= ulp(ref) / 2 + e(K) * sum_k |a_k b_k| + tiny

where ulp(ref)/2 is the one final rounding (to fp16; to fp32) and e(K) the accumulation
error: K * 2^-23 for fp32 sums, 8 * 2^-11 for Arm's FP16-arithmetic kernel (fp16 sums
over chunks of 8 along K). Also: exact single fp16 products (the rounding itself, bit for
bit against numpy), NaN/Inf propagation and overflow like numpy's, clear errors.
"""
import os

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import qkernels
from qkernels import conv2d, depthwise_conv2d, matmul, pack_conv_weights, pack_weights

SMALL = os.environ.get("QKERNELS_TEST_SMALL", "").strip().lower() not in ("", "0", "false", "no")
F16, F32 = np.float16, np.float32
DTYPES = [F16, F32]
# Every path this CPU runs, and the emulated VNNI paths (their kernels' logic in AVX2)
PATHS = qkernels._dispatch.tested_isas()


def _fp16_arith(isa: str) -> bool:
    """Does this path's fp16 GEMM accumulate in fp16 (Arm FP16 arithmetic)?"""
    with qkernels.use_isa(isa):
        return "neonfp16" in qkernels.cpu_info().get("f16_kernel", "")


def _bound(ref, scale, k, isa, dtype=F16):
    """The contract's bound on |got - ref| (element-wise)."""
    if dtype == F32:
        return np.abs(ref) * 2.0**-24 + k * 2.0**-23 * scale + 2.0**-126
    e = 8 * 2.0**-11 if _fp16_arith(isa) else k * 2.0**-23
    ulp_half = np.abs(ref) * 2.0**-11
    return ulp_half + e * scale + 2.0**-25


def _check(got, ref, scale, k, isa, what="", dtype=None):
    dtype = got.dtype if dtype is None else dtype
    assert got.dtype == dtype
    ref = np.asarray(ref, np.float64)
    err = np.abs(got.astype(np.float64) - ref)
    bound = _bound(ref, scale, k, isa, dtype)
    bad = ~(err <= bound)
    assert not bad.any(), (f"{what} {isa}: {bad.sum()} of {bad.size} outside the bound; worst err "
                           f"{err[bad].max():.3g} vs bound {bound[bad].min():.3g}")


def _rand(rng, shape, spread=1.0, dtype=F16):
    return (rng.standard_normal(shape) * spread).astype(dtype)


@settings(max_examples=12 if SMALL else 40, deadline=None, database=None)
@given(m=st.sampled_from([1, 2, 5, 6, 7, 13, 64, 97]), k=st.sampled_from([1, 3, 8, 9, 17, 64, 255, 1031]),
       n=st.sampled_from([1, 7, 8, 15, 16, 17, 33, 100]), seed=st.integers(0, 2**31),
       act=st.sampled_from([None, "relu", "relu6", (-0.5, 0.25)]), bias=st.booleans(), dtype=st.sampled_from(DTYPES))
def test_matmul_within_the_contract_on_every_path(m, k, n, seed, act, bias, dtype):
    rng = np.random.default_rng(seed)
    a, b = _rand(rng, (m, k), dtype=dtype), _rand(rng, (k, n), 1 / np.sqrt(k), dtype)
    bv = _rand(rng, (n,), dtype=dtype) if bias else None
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    ref = a64 @ b64 + (0 if bv is None else bv.astype(np.float64))
    lo, hi = qkernels._common.activation_range(act)
    ref = np.clip(ref, lo, hi)
    scale = np.abs(a64) @ np.abs(b64)
    for isa in PATHS:
        with qkernels.use_isa(isa):
            for threads in (1, 2):
                qkernels.set_num_threads(threads)
                _check(matmul(a, b, bias=bv, activation=act), ref, scale, k, isa, f"{threads} thr", dtype)
                _check(matmul(a, pack_weights(b), bias=bv, activation=act), ref, scale, k, isa, "packed", dtype)


def test_single_products_round_exactly_like_numpy():
    """K = 1: one exact fp32 product, one rounding. Every path must give numpy's
    float16 rounding bit for bit, across the whole range: subnormals, the largest
    finite value, overflow to inf, ties."""
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 1 << 16, 4096, dtype=np.uint16)
    a = bits.view(F16)
    a = a[np.isfinite(a)][:, None]                                 # (M, 1)
    b = np.array([[1.0, -1.0, 0.5, 3.0, 1e-3, 2.0**-10, 300.0, 0.0, 1.0009765625]], F16)
    with np.errstate(over="ignore"):
        want = (a.astype(np.float32) * b.astype(np.float32)).astype(F16)
    for isa in PATHS:
        with qkernels.use_isa(isa):
            got = matmul(a, b)   # value equality: the sign of a zero sum is not part of the contract
            np.testing.assert_array_equal(got, want, err_msg=isa)
            assert (np.signbit(got) == np.signbit(want))[want != 0].all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_and_inf_propagate_like_numpy(dtype):
    a = np.ones((9, 20), dtype)
    b = np.full((20, 19), 0.5, dtype)
    a[1, 3] = np.nan
    a[2, 5] = np.inf
    a[3, 0], a[3, 1] = np.inf, -np.inf                             # inf - inf: NaN
    b[7, 4] = np.inf                                               # column 4: inf unless a NaN meets it
    a[4, 7] = 0.0                                                  # 0 * inf: NaN in (4, 4)
    a[5, :] = 200.0 if dtype == F16 else 3e37                      # 20 * 200 * 17... overflow: inf
    b[:, 10] = 17.0
    with np.errstate(over="ignore", invalid="ignore"):
        want = (a.astype(np.float32) @ b.astype(np.float32)).astype(dtype)
    for isa in PATHS:
        with qkernels.use_isa(isa):
            got = matmul(a, b)
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=isa)
            np.testing.assert_array_equal(np.isinf(got), np.isinf(want), err_msg=isa)
            np.testing.assert_array_equal(np.signbit(got[np.isinf(got)]), np.signbit(want[np.isinf(want)]))
            assert np.isnan(matmul(a, b, activation="relu")[1]).all()   # the clamp keeps NaN, as np.maximum


@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_broadcasting_vectors_out_and_bias_default(dtype):
    rng = np.random.default_rng(3)
    a, b = _rand(rng, (3, 1, 5, 16), dtype=dtype), _rand(rng, (2, 16, 7), dtype=dtype)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    got = matmul(a, b)
    assert got.shape == (3, 2, 5, 7)
    _check(got, ref, np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64)), 16, qkernels.get_isa())
    v, w = _rand(rng, (16,), dtype=dtype), _rand(rng, (16, 7), dtype=dtype)
    assert matmul(v, w).shape == (7,) and matmul(w.T.copy(), v).shape == (7,)
    out = np.empty((5, 7), dtype)
    bias = np.arange(7, dtype=np.float32)
    pw = pack_weights(w, bias=bias)
    assert matmul(a[0, 0], pw, out=out) is out
    np.testing.assert_array_equal(out, matmul(a[0, 0], w, bias=bias))
    assert ("PackedWeightsF16" if dtype == F16 else "PackedWeightsF32") in repr(pw)


def test_mixed_dtypes_and_bad_arguments_raise_clear_errors():
    a16, b16 = np.ones((4, 8), F16), np.ones((8, 3), F16)
    q = qkernels.quantize(np.ones((8, 3), np.float32), 0.1, 0, np.int8)
    with pytest.raises(TypeError, match="float16"):
        matmul(a16, b16.astype(np.float32))
    with pytest.raises(TypeError, match="float32"):
        matmul(a16.astype(np.float32), b16)
    with pytest.raises(TypeError, match="float16 or float32"):
        matmul(a16.astype(np.float64), b16.astype(np.float64))
    with pytest.raises(TypeError, match="packed weights are float32"):
        conv2d(np.ones((1, 4, 4, 2), F16), pack_conv_weights(np.ones((1, 3, 3, 2), np.float32)))
    with pytest.raises(TypeError, match="out_dtype"):
        matmul(a16.astype(np.float32), b16.astype(np.float32), out_dtype=np.float16)
    with pytest.raises(TypeError, match="quantized"):
        matmul(a16, q)
    with pytest.raises(TypeError, match="out_scale"):
        matmul(a16, b16, out_scale=0.1)
    with pytest.raises(ValueError, match="K"):
        matmul(a16, np.ones((7, 3), F16))
    with pytest.raises(ValueError, match="bias"):
        matmul(a16, b16, bias=np.ones(4, np.float32))
    with pytest.raises(TypeError, match="out"):
        matmul(a16, b16, out=np.empty((4, 3), np.float32))
    with pytest.raises(TypeError, match="float32"):
        conv2d(np.ones((1, 4, 4, 2), np.float32), np.ones((1, 3, 3, 2), F16))
    with pytest.raises(TypeError, match="quantized"):
        conv2d(np.ones((1, 4, 4, 2), F16), qkernels.QTensor(np.ones((1, 3, 3, 2), np.int8), 0.1, 0))


def conv_ref64(x, w, stride, pads, dilation, groups):
    """float64 convolution of NHWC x by OHWI w (and the same of |x|, |w|: the scale)."""
    n, h, wd, c = x.shape
    o, kh, kw, cg = w.shape
    t, l, b, r = pads
    outs = []
    for xx, ww in ((x.astype(np.float64), w.astype(np.float64)), (np.abs(x.astype(np.float64)),
                                                                     np.abs(w.astype(np.float64)))):
        xp = np.zeros((n, h + t + b, wd + l + r, c))
        xp[:, t:t + h, l:l + wd] = xx
        oh = (h + t + b - (kh - 1) * dilation[0] - 1) // stride[0] + 1
        ow = (wd + l + r - (kw - 1) * dilation[1] - 1) // stride[1] + 1
        og = o // groups
        out = np.zeros((n, oh, ow, o))
        for g in range(groups):
            for ky in range(kh):
                for kx in range(kw):
                    y0, x0 = ky * dilation[0], kx * dilation[1]
                    patch = xp[:, y0:y0 + (oh - 1) * stride[0] + 1:stride[0], x0:x0 + (ow - 1) * stride[1] + 1:stride[1],
                               g * cg:(g + 1) * cg]
                    out[..., g * og:(g + 1) * og] += np.einsum("nhwc,oc->nhwo", patch, ww[g * og:(g + 1) * og, ky, kx])
        outs.append(out)
    return outs


@st.composite
def conv_cases(draw):
    kh, kw = draw(st.sampled_from([(1, 1), (3, 3), (5, 5), (1, 3), (3, 1), (7, 7)]))
    kind = draw(st.sampled_from(["one", "two", "depthwise"]))
    cg = 1 if kind == "depthwise" else draw(st.sampled_from([1, 3, 8, 17]))
    groups = {"one": 1, "two": 2, "depthwise": draw(st.sampled_from([3, 8, 16, 19]))}[kind]
    mult = draw(st.sampled_from([1, 1, 2])) if kind == "depthwise" else draw(st.sampled_from([1, 5, 16]))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(st.one_of(st.sampled_from(["valid", "same", "same_lower"]), st.tuples(*[st.integers(0, 3)] * 4)))
    eff = ((kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1)
    h = draw(st.integers(eff[0], eff[0] + (5 if SMALL else 10)))
    w = draw(st.integers(eff[1], eff[1] + (5 if SMALL else 10)))
    return dict(n=draw(st.integers(1, 2)), h=h, w=w, cg=cg, groups=groups, o=groups * mult, kh=kh, kw=kw,
                stride=stride, dilation=dilation, padding=padding, nchw=draw(st.booleans()),
                act=draw(st.sampled_from([None, "relu6"])), seed=draw(st.integers(0, 2**31)),
                dtype=draw(st.sampled_from(DTYPES)))


@settings(max_examples=12 if SMALL else 40, deadline=None, database=None)
@given(case=conv_cases())
def test_conv2d_and_depthwise_within_the_contract_on_every_path(case):
    rng = np.random.default_rng(case["seed"])
    c = case["cg"] * case["groups"]
    dt = case["dtype"]
    x = _rand(rng, (case["n"], case["h"], case["w"], c), dtype=dt)
    k = case["kh"] * case["kw"] * case["cg"]
    w = _rand(rng, (case["o"], case["kh"], case["kw"], case["cg"]), 1 / np.sqrt(k), dt)
    bias = _rand(rng, (case["o"],), dtype=dt)
    pads = qkernels._conv_geometry.explicit_padding(case["padding"], (case["h"], case["w"]), (case["kh"], case["kw"]),
                                   case["stride"], case["dilation"])
    ref, scale = conv_ref64(x, w, case["stride"], pads, case["dilation"], case["groups"])
    ref = np.clip(ref + bias.astype(np.float64), *qkernels._common.activation_range(case["act"]))
    kw = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"], activation=case["act"])
    packed = pack_conv_weights(w, groups=case["groups"], bias=bias)
    xin = np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if case["nchw"] else x
    layout = "NCHW" if case["nchw"] else "NHWC"
    for isa in PATHS:
        with qkernels.use_isa(isa):
            for threads in (1, 2):
                qkernels.set_num_threads(threads)
                got = conv2d(xin, packed, layout=layout, **kw)
                got = got.transpose(0, 2, 3, 1) if case["nchw"] else got
                _check(got, ref, scale, k, isa, f"conv {threads} thr", dt)
            if case["cg"] == 1 and case["groups"] == c:
                got = depthwise_conv2d(x, w, bias, **kw)
                _check(got, ref, scale, k, isa, "depthwise_conv2d", dt)


def test_each_path_uses_its_float_kernels():
    feats = qkernels.cpu_info()["features"]
    want = {"scalar": "f16_gemm_4x8_scalar", "avx2": "f16_gemm_6x16_avx2", "neon": "f16_gemm_8x8_neon",
            "avxvnni": "f16_gemm_6x16_avx2", "avxvnni_emu": "f16_gemm_6x16_avx2",   # ymm: AVX2's
            "avx512vnni": "f16_gemm_12x32_avx512vnni", "avx512vnni_emu": "f16_gemm_12x32_avx512vnni_emu"}
    for isa in PATHS:
        got = qkernels._dispatch.f16_kernel(isa)
        if isa in want:
            assert got == want[isa]
        else:   # neondot, i8mm: fp16 arithmetic when the CPU has it, else the converting kernel
            assert got == ("f16_gemm_8x8_neonfp16" if feats.get("asimdhp") else "f16_gemm_8x8_neon"), isa
        f32 = want.get(isa, "f16_gemm_8x8_neon").replace("f16_", "f32_")
        assert qkernels._dispatch.f16_kernel(isa, qkernels._native.DTYPE_F32) == f32, isa


def test_packed_fp16_weights_keep_half_the_memory_and_serve_every_path():
    import pickle
    rng = np.random.default_rng(7)
    b = _rand(rng, (100, 37))
    pw = pack_weights(b)
    if qkernels.get_isa() != "scalar":   # fp16 panels are the only copy: N padded to the kernel's NR
        kid = qkernels._native.select_kernel(qkernels._dispatch.isa_index(), 1 << 20, False, qkernels._native.DTYPE_F16)
        nr = qkernels._native.ukernel_info(kid)["nr"]
        assert pw.nbytes <= 100 * (-(-37 // nr) * nr) * 2 < b.astype(np.float32).nbytes
    np.testing.assert_array_equal(pw.data, b)
    a = _rand(rng, (9, 100))
    want = matmul(a, b)
    for isa in PATHS:   # other paths' panels come from the fp16 ones
        with qkernels.use_isa(isa):
            _check(matmul(a, pw), a.astype(np.float64) @ b.astype(np.float64),
                   np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64)), 100, isa)
    np.testing.assert_array_equal(matmul(a, pickle.loads(pickle.dumps(pw))), want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_k0_product_is_zero_whatever_the_heap_held(dtype):
    qk = qkernels
    # The row-major fp16 A panel left its one padded K step unwritten when K = 0: rows
    # read freed heap memory (NaN here) as A. Found by the API fuzzer (seed 1, case 1210).
    import ctypes
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
    for isa in PATHS:
        with qk.use_isa(isa):
            for m in (1, 5, 6, 7, 8, 13):
                for _ in range(5):
                    for size in (24, 48, 64, 96, 128, 192, 256):   # freed chunks of 0xFF for the next malloc
                        p = libc.malloc(size + 64)
                        ctypes.memset(p, 0xFF, size + 64)
                        libc.free(p)
                    r = qk.matmul(np.zeros((m, 0), dtype), np.zeros((0, 7), dtype))
                    assert r.shape == (m, 7) and not np.any(r != 0), (isa, m)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", [i for i in ("avx512vnni", "avx512vnni_emu") if i in PATHS])
def test_avx512_float_kernels_give_the_avx2_floats(isa, dtype):
    """The zmm kernels (12x32, 6x32, 1x32) run each sum as the AVX2 kernels' FMA sequence
    (docs/design.md, "AVX-512 tier"): same floats, bit for bit, at every M regime and
    N edge; NaN and Inf included."""
    rng = np.random.default_rng(11)
    for m in (1, 2, 3, 6, 7, 12, 13, 25):
        for k, n in ((1, 1), (2, 33), (9, 31), (64, 64), (257, 100), (5, 16), (33, 48)):   # (16 of 32 columns)
            a, b = _rand(rng, (m, k), 4.0, dtype), _rand(rng, (k, n), 4.0, dtype)
            a.flat[rng.integers(0, a.size, 2)] = [np.inf, np.nan] if a.size > 3 else 1
            bias = _rand(rng, (n,))
            bits = np.uint16 if dtype == F16 else np.uint32
            with qkernels.use_isa("avx2"):
                want = matmul(a, b, bias=bias).view(bits)
            with qkernels.use_isa(isa):
                got = matmul(a, b, bias=bias).view(bits)
            np.testing.assert_array_equal(got, want, err_msg=f"{isa} M={m} K={k} N={n}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [13, 18, 23, 49, 61])
def test_a_last_partial_panel_gives_the_bits_of_a_full_one(dtype, m):
    """The rows of a last partial A panel run on a narrower kernel of the same family
    (kernels/gemm_block.c): each row's sums are those it gets when more rows follow."""
    rng = np.random.default_rng(m)
    a = rng.standard_normal((72, 300)).astype(dtype)
    pw = pack_weights(rng.standard_normal((300, 70)).astype(dtype))
    for isa in PATHS:
        with qkernels.use_isa(isa):
            full = matmul(a, pw)
            np.testing.assert_array_equal(matmul(a[:m], pw), full[:m], err_msg=isa)
            np.testing.assert_array_equal(matmul(np.ascontiguousarray(a[-m:]), pw), full[-m:], err_msg=isa)


@settings(max_examples=6 if SMALL else 15, deadline=None, database=None)
@given(cg=st.sampled_from([1, 3, 17, 64]), o=st.sampled_from([1, 16, 31, 33, 64]),
       hw=st.sampled_from([(1, 1), (7, 11), (13, 13), (29, 23)]), k=st.sampled_from([1, 3, 7]),
       stride=st.integers(1, 2), fused=st.booleans(), seed=st.integers(0, 2**31))
@example(cg=1, o=16, hw=(7, 11), k=1, stride=1, fused=True, seed=0)   # K = 1: the bound's rounding terms
def test_fp32_conv_row_blocks_give_the_bits_of_one_thread_and_a_copy(cg, o, hw, k, stride, fused, seed):
    """fp32 convolutions of one column block of weights gather their patches in row blocks
    sized for L1 (kernels/_native.pyx, BoundGemm): within the contract against float64,
    and the same bits at 1, 2 and 3 threads and from a strided view as from its contiguous
    copy (K on both sides of the 32 KiB panels that take them: 3 x 3 x 64, 7 x 7 x 64),
    residual and ReLU fused or not."""
    rng = np.random.default_rng(seed)
    h, w_ = hw
    pad = k // 2
    base = _rand(rng, (1, h + 3, 2 * w_, cg + 2), dtype=F32)
    x = base[:, 1:h + 1, ::2, 1:cg + 1]                       # a strided view
    wt = _rand(rng, (o, k, k, cg), 1 / np.sqrt(k * k * cg), F32)
    bias = _rand(rng, (o,), dtype=F32)
    pw = pack_conv_weights(wt, bias=bias)
    ref, scale = conv_ref64(np.ascontiguousarray(x), wt, (stride, stride), (pad,) * 4, (1, 1), 1)
    ref = ref + bias.astype(np.float64)
    oh, ow = ref.shape[1:3]
    res = _rand(rng, (1, oh, ow, o), dtype=F32) if fused else None
    if fused:
        ref = np.maximum(ref + res.astype(np.float64), 0)
        # two more roundings (+ bias, + residual), each within 2^-24 of |sum| + |bias| + |res|
        scale = scale + np.abs(bias.astype(np.float64)) + np.abs(res.astype(np.float64))
    xd = np.ascontiguousarray(x)
    for isa in PATHS:
        with qkernels.use_isa(isa), qkernels._dispatch.winograd(False):   # (Winograd: tests/test_winograd.py)
            got = []
            for threads, src in ((1, xd), (2, xd), (3, xd), (1, x)):
                qkernels.set_num_threads(threads)
                out = np.empty((1, oh, ow, o), F32)
                try:
                    calls = qkernels._float.bind_conv2d(src, pw, stride, pad, 1, "relu" if fused else None, out,
                                                       residual=res)
                except ValueError:   # a bound call reads channels in place: the view's are not adjacent
                    continue
                for call in calls:
                    call.run()
                got.append(out)
            assert len(got) == 4, isa
            if not fused:
                got.append(conv2d(x, pw, stride=stride, padding=pad))
            _check(got[0], ref, scale, k * k * cg, isa, "fp32 conv", F32)
            for other in got[1:]:
                np.testing.assert_array_equal(other.view(np.uint32), got[0].view(np.uint32), err_msg=isa)


@settings(max_examples=8 if SMALL else 30, deadline=None, database=None)
@given(cg=st.sampled_from([1, 3, 8, 16, 17, 300]), o=st.sampled_from([1, 13, 16, 32, 47, 64]),
       hw=st.tuples(st.integers(1, 14), st.integers(1, 14)), kh=st.sampled_from([1, 2, 3, 5, 7]),
       kw=st.sampled_from([1, 3, 4]), stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       dil=st.tuples(st.integers(1, 2), st.integers(1, 2)), pads=st.tuples(*[st.integers(0, 3)] * 4),
       n=st.integers(1, 3), groups=st.sampled_from([1, 2]), view=st.booleans(), seed=st.integers(0, 2**31))
@example(cg=3, o=64, hw=(14, 13), kh=7, kw=3, stride=(2, 2), dil=(1, 1), pads=(3, 1, 3, 1), n=1, groups=1, view=False,
         seed=0)   # a stem: kernel rows clipped by both sides, a last partial panel
@example(cg=300, o=47, hw=(4, 5), kh=3, kw=3, stride=(1, 1), dil=(1, 1), pads=(1, 1, 1, 1), n=1, groups=1, view=False,
         seed=0)   # K = 2700: two column blocks of B, every panel's table built once
@example(cg=300, o=64, hw=(8, 9), kh=3, kw=3, stride=(1, 1), dil=(1, 1), pads=(1, 1, 1, 1), n=1, groups=1, view=False,
         seed=1)   # 6 row tiles a panel: the first 4 ask L2 for the next panel (p->b_next), the others not
def test_fp32_indirect_conv_gives_the_bits_of_the_packed_patches(cg, o, hw, kh, kw, stride, dil, pads, n, groups,
                                                                 view, seed):
    """fp32 convolutions read in place through pointer tables (the GEMM kernels' indirect
    entries, qk_iconv_block) sum in the order of the packed patch rows: the same bits as
    the packed path on every ISA path, 1 and 2 threads, from a strided view (segments of one
    tap) and from contiguous pixels (segments of a kernel row), and within the contract
    against float64: padding on every side, strides, dilations, groups, tiles past every edge,
    weights of several column blocks (K * N * 4 over 512 KiB)."""
    prev_direct = qkernels._float.DIRECT_MAX_CHANNELS
    qkernels._float.DIRECT_MAX_CHANNELS = 0    # the GEMM paths (the direct kernel: tests/test_dconv.py)
    try:
        rng = np.random.default_rng(seed)
        h, w_ = hw
        eff = ((kh - 1) * dil[0] + 1, (kw - 1) * dil[1] + 1)
        h, w_ = max(h, eff[0] - pads[0] - pads[2]), max(w_, eff[1] - pads[1] - pads[3])
        c = cg * groups
        base = _rand(rng, (n, h, 2 * w_, c + 1), dtype=F32)
        x = base[:, :, ::2, 1:] if view else np.ascontiguousarray(base[:, :, :w_, :c])
        wt = _rand(rng, (o * groups, kh, kw, cg), 1 / np.sqrt(kh * kw * cg), F32)
        bias = _rand(rng, (o * groups,), dtype=F32)
        pw = pack_conv_weights(wt, groups=groups, bias=bias)
        ref, scale = conv_ref64(np.ascontiguousarray(x), wt, stride, pads, dil, groups)
        ref = np.maximum(ref + bias.astype(np.float64), 0)
        kw_ = dict(stride=stride, padding=pads, dilation=dil, activation="relu")
        for isa in PATHS:   # (Winograd's convolutions: tests/test_winograd.py)
            with qkernels.use_isa(isa), qkernels._dispatch.winograd(False):
                for threads in (1, 2):
                    qkernels.set_num_threads(threads)
                    got = []
                    for indirect in (True, False):
                        with qkernels._dispatch.indirect_conv(indirect):
                            got.append(conv2d(x, pw, **kw_))
                    _check(got[0], ref, scale, kh * kw * cg, isa, f"indirect {threads} thr", F32)
                    np.testing.assert_array_equal(got[0].view(np.uint32), got[1].view(np.uint32), err_msg=isa)
                if pw.depthwise:   # (one input channel per group and one filter: the depthwise kernel)
                    continue
                # the path taken: a 12x32 kernel's (M > 8) on the AVX-512 paths, whole kernel rows
                # where pixels and channels are adjacent
                out = np.empty(got[0].shape, F32)
                segs = [call.indirect_segment for call in qkernels._float.bind_conv2d(x, pw, stride, pads, dil, None, out)]
                pointwise = kh == kw == 1 and stride == (1, 1) and pads == (0, 0, 0, 0)
                if isa.startswith("avx512vnni") and out.size // out.shape[-1] > 8 and not pointwise:
                    # (a width of 1 keeps the slice's pixel stride: numpy calls it contiguous)
                    seg = kw * cg if x.strides[2] == 4 * cg and dil[1] == 1 else cg
                    assert segs == [seg if seg >= 8 else 0] * groups, (isa, segs)   # short segments: packed
                elif not isa.startswith("avx512vnni"):
                    assert segs == [0] * groups, (isa, segs)
    finally:
        qkernels._float.DIRECT_MAX_CHANNELS = prev_direct


@pytest.mark.parametrize("isa", [i for i in ("avx512vnni", "avx512vnni_emu") if i in PATHS])
def test_fused_output_stage_of_a_narrow_last_panel_gives_the_avx2_floats(isa):
    """A tile's last panel of other than 16 or 32 columns (N = 4: a 2x2 ConvTranspose to one
    channel, under 16 on the 16-column kernel; 24: MobileNetV2's projections) runs the fused
    entry with its bias, residual and hard swish read and its rows stored masked to those
    columns: the AVX2 path's floats, bit for bit, and nothing written past them (a guard
    column around the output stays as it was)."""
    from qkernels._float import HardSwishDiv, PackedWeightsF32, gemm2d
    rng = np.random.default_rng(17)
    for m, k, n in ((12, 24, 4), (25, 7, 1), (36, 40, 15), (13, 33, 16), (24, 9, 33), (12, 64, 36), (12, 32, 24),
                    (25, 16, 56)):
        a = _rand(rng, (m, k), 2.0, F32)
        pw = PackedWeightsF32(_rand(rng, (k, n), 1.0, F32))
        bias, res = _rand(rng, (n,), 1.0, F32), _rand(rng, (m, n), 1.0, F32)
        act = HardSwishDiv(3.0, 0.0, 6.0, 6.0)
        outs = {}
        for path in ("avx2", isa):
            with qkernels.use_isa(path):
                for fused in (False, True):
                    out = np.full((m, n + 2), 7.0, F32)
                    gemm2d(a, pw, bias, -np.inf, np.inf, out[:, 1:n + 1], residual=res if fused else None,
                           act=act if fused else None)
                    outs[path, fused] = out
        for fused in (False, True):
            np.testing.assert_array_equal(outs[isa, fused].view(np.uint32), outs["avx2", fused].view(np.uint32),
                                          err_msg=f"{isa} M={m} K={k} N={n} fused={fused}")
            assert (outs[isa, fused][:, [0, -1]] == 7.0).all()
