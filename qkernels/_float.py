"""Float matrix multiplication and convolution on the same native driver as int8: fp16
(IEEE binary16) arrays in, float16 out, and fp32 arrays in, float32 out.

Accuracy contract (docs/api.md, "fp16" and "fp32"): fp16: products of fp16 values are
exact in fp32 and summed in fp32 (on Arm CPUs with FP16 arithmetic: in fp16 over chunks
of 8 along K, the chunks in fp32); the bias is added in fp32; the clamp keeps NaN; one
rounding to fp16 (nearest, ties to even; overflow to +-inf like numpy's float16). fp32:
products summed in fp32 in increasing K (a fused multiply-add per step on the SIMD
paths), the bias added, the clamp keeping NaN: within K * 2^-23 * sum |a b| of the exact
result, as a float32 BLAS.
"""
from __future__ import annotations

import threading
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from . import _dispatch, _native
from ._common import Activation, activation_range, check_choice, check_out, check_size, output_rows, rows_view
from ._conv_geometry import LAYOUTS, geometry, ohwi_weights, output_buffer, to_layout
from ._layout import nchw_to_nhwc

F16, F32 = np.dtype(np.float16), np.dtype(np.float32)
FLOATS = (F16, F32)
_NO_BIAS: dict[int, np.ndarray] = {}


def _as_float(x, name: str, dtype: np.dtype) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype != dtype:
        raise TypeError(f"{name} must be {dtype} (a {dtype} call takes {dtype} operands only), got {arr.dtype}")
    return arr


def _bias(bias, n: int) -> np.ndarray:
    """float32 (N,) bias; zeros (shared, read-only) for None."""
    if bias is None:
        if n not in _NO_BIAS:
            z = np.zeros(max(n, 1), np.float32)
            z.flags.writeable = False
            _NO_BIAS[n] = z
        return _NO_BIAS[n]
    b = np.asarray(bias)
    if b.dtype.kind != "f":
        raise TypeError(f"bias must be a float array, got {b.dtype}")
    if b.shape != (n,):
        raise ValueError(f"bias must have shape ({n},), got {b.shape}")
    return np.ascontiguousarray(b, np.float32)


class HardSwishDiv(NamedTuple):
    """PaddlePaddle's hard swish as its exports spell it (Add, Clip, Mul, Div), applied
    after the clamp by the fp32 output stages: ``(v * min(max(v + add, lo), hi)) / div``,
    each step one float32 operation in that order (the graph runner's fusion; not one
    of conv2d's public activations)."""
    add: float
    lo: float
    hi: float
    div: float


def _clamp(activation: Activation) -> tuple[float, float]:
    if isinstance(activation, HardSwishDiv):
        return -np.inf, np.inf
    lo, hi = activation_range(activation)
    return float(np.float32(lo)), float(np.float32(hi))


def _native_dtype(dtype: np.dtype) -> int:
    return _native.DTYPE_F16 if dtype == F16 else _native.DTYPE_F32


def _kernel(m: int, dtype: np.dtype = F16) -> int:
    return _native.select_kernel(_dispatch.isa_index(), m, False, _native_dtype(dtype))


class PackedWeightsF16:
    """fp16 B (K, N), packed once and reused; made by :func:`qkernels.pack_weights` from a
    float16 array. Where the kernel keeps B as fp16 panels (x86, Arm) the panels are the
    only copy kept: half the memory of float32 weights. Other paths' panels are made
    from them on first use. (:class:`PackedWeightsF32`: the same for float32.)"""

    dtype = F16

    def __init__(self, b: ArrayLike, bias: ArrayLike | None = None, *, copy: bool = True):
        """``copy=False``: ``b`` is not written while it is packed (the graph runner's
        read-only constants), so it is packed from where it is, not from a copy."""
        b = _as_float(b, "weights", self.dtype)
        if b.ndim != 2:
            raise ValueError(f"weights must be 2-D (K, N), got shape {b.shape}")
        self.k, self.n = (int(d) for d in b.shape)
        check_size(max(self.k, 1), max(self.n, 1), itemsize=4, what="weights")
        self.bias = None if bias is None else _bias(bias, self.n)
        self._panels: dict[tuple, np.ndarray] = {}    # (pack kind, NR) -> packed bytes
        self._by_kid: dict[int, np.ndarray] = {}      # kernel id -> its panels (the call's lookup)
        self._lock = threading.Lock()
        self._source: np.ndarray | None = np.array(b, copy=copy)
        self.packed_for(_kernel(1 << 20, self.dtype))
        if self._own_panel() is not None:
            self._source = None

    shape = property(lambda self: (self.k, self.n))

    def __repr__(self):
        return f"{type(self).__name__}(K={self.k}, N={self.n})"

    @property
    def nbytes(self) -> int:
        """Bytes held: the packed panels (and the source, where no fp16 panel exists)."""
        return sum(p.nbytes for p in self._panels.values()) + (0 if self._source is None else self._source.nbytes)

    #: the panels that hold the weights' own values (fp16 bits; float32 values)
    _OWN = {F16: _native.PACK_F16, F32: _native.PACK_F32 | _native.PACK_SRC_F32}

    def _own_panel(self):
        own = self._OWN[self.dtype]
        return next(((nr, p) for (kind, nr), p in self._panels.items() if kind == own), None)

    @property
    def data(self) -> np.ndarray:
        """The weights (K, N), read-only (rebuilt from the panels if needed)."""
        if self._source is not None:
            return self._source
        nr, packed = self._own_panel()
        bits = np.uint16 if self.dtype == F16 else np.uint32
        panels = packed.view(bits).reshape(-1, max(self.k, 1), nr)[:, :self.k]
        out = np.ascontiguousarray(panels.transpose(1, 0, 2).reshape(self.k, -1)[:, :self.n]).view(self.dtype)
        out.flags.writeable = False
        return out

    def packed_for(self, kid: int) -> np.ndarray:
        packed = self._by_kid.get(kid)
        if packed is None:
            packed = self._by_kid[kid] = self._pack(kid)
        return packed

    def _pack(self, kid: int) -> np.ndarray:
        info = _native.kernel_info(kid)
        key = (info[6], info[3])                   # B pack kind, NR: kernels that agree share panels
        packed = self._panels.get(key)
        if packed is None:
            with self._lock:
                packed = self._panels.get(key)
                if packed is None:
                    packed = _native.pack_b(kid, self.data, False, np.zeros(max(self.n, 1), np.int32))[0]
                    self._panels[key] = packed
        return packed

    def __reduce__(self):
        return type(self), (self.data, self.bias)


class PackedWeightsF32(PackedWeightsF16):
    """fp32 B (K, N), packed once and reused; made by :func:`qkernels.pack_weights` from a
    float32 array. The panels are the only copy kept."""

    dtype = F32


PACKED = {F16: PackedWeightsF16, F32: PackedWeightsF32}


def gemm2d(a, pw: PackedWeightsF16, bias: np.ndarray, lo: float, hi: float, out: np.ndarray, bind: bool = False,
           residual: np.ndarray | None = None, act: HardSwishDiv | tuple[int, int] | None = None):
    """out (M, N) = act(clamp(a . B + bias (+ residual, fp32))) of pw's dtype; a: a matrix of
    it or a ConvSource; act: HardSwishDiv (fp32) or (isa index, ELTWISE_UNARY code), that
    elementwise op over each output row (fp32, fp16). ``bind``: the call bound to these
    arrays (``_native.BoundGemm``), not run."""
    m = a.m if isinstance(a, _native.ConvSource) else a.shape[0]
    kid = _kernel(m, pw.dtype)
    return _native.gemm_float(kid, a, pw.packed_for(kid), pw.n, bias, lo, hi, out, _dispatch.get_num_threads(),
                              bind, residual, act)


def matmul(a, b, bias=None, activation: Activation = None, out=None) -> np.ndarray:
    """Float ``numpy.matmul(a, b)`` (+ bias, activation): :func:`qkernels.matmul` on
    float16 or float32 operands (documented there)."""
    dtype = b.dtype if isinstance(b, PackedWeightsF16) else np.asarray(a).dtype
    packed_type = PACKED.get(dtype)
    if packed_type is None:
        raise TypeError(f"float matmul takes float16 or float32 operands, got {dtype}")
    if type(b) is packed_type and type(a) is np.ndarray and a.dtype == dtype and a.ndim == 2 \
            and a.shape[1] == b.k and bias is None and activation is None:
        # the repeated layer call: nothing to broadcast; only `out` to check
        shape = (a.shape[0], b.n)
        if out is None:
            res = np.empty(shape, dtype)
        elif type(out) is np.ndarray and out.shape == shape and out.dtype == dtype and out.flags.c_contiguous \
                and out.flags.writeable and not np.may_share_memory(out, a):
            res = out
        else:
            res = None
        if res is not None:
            if res.size:
                gemm2d(a, b, b.bias if b.bias is not None else _bias(None, b.n), -np.inf, np.inf, res)
            return res
    a = _as_float(a, "a", dtype)
    if not isinstance(b, PackedWeightsF16):
        b = _as_float(b, "b", dtype)
    b_ndim = 2 if isinstance(b, PackedWeightsF16) else b.ndim
    if a.ndim == 0 or b_ndim == 0:
        raise ValueError("matmul: operands must have at least one dimension")
    lo, hi = _clamp(activation)
    a2d = a[None, :] if a.ndim == 1 else a
    if isinstance(b, PackedWeightsF16):
        k, n, b_batch = b.k, b.n, ()
    else:
        b2d = b[:, None] if b.ndim == 1 else b
        k, n, b_batch = b2d.shape[-2], b2d.shape[-1], b2d.shape[:-2]
    if a2d.shape[-1] != k:
        raise ValueError(f"matmul: a has K = {a2d.shape[-1]} but b has K = {k}")
    m = a2d.shape[-2]
    try:
        batch = np.broadcast_shapes(a2d.shape[:-2], b_batch)
    except ValueError:
        raise ValueError(f"matmul: batch dimensions {a2d.shape[:-2]} and {b_batch} do not broadcast") from None
    shape = (*batch, m, n)
    result_shape = shape[:-2] + (() if a.ndim == 1 else (m,)) + (() if b_ndim == 1 else (n,))
    check_size(*shape, itemsize=dtype.itemsize)
    bias_default = b.bias if isinstance(b, PackedWeightsF16) else None
    bias_arr = _bias(bias if bias is not None else bias_default, n)
    if out is not None:
        check_out(out, result_shape, dtype, a=a, b=b, bias=bias)
    res = np.empty(shape, dtype) if out is None else out.reshape(shape)
    if res.size and not b_batch:
        pw = b if isinstance(b, PackedWeightsF16) else packed_type(b2d)
        a_rows = np.broadcast_to(a2d, (*batch, m, k)).reshape(-1, k) if batch else a2d
        gemm2d(a_rows, pw, bias_arr, lo, hi, res.reshape(-1, n))
    elif res.size:
        a_b, b_b = np.broadcast_to(a2d, (*batch, m, k)), np.broadcast_to(b2d, (*batch, k, n))
        for idx in np.ndindex(*batch):
            gemm2d(a_b[idx], packed_type(b_b[idx]), bias_arr, lo, hi, res[idx])
    return out if out is not None else res.reshape(result_shape)


def _batch_offsets(x: np.ndarray, batch: tuple) -> np.ndarray:
    """Byte offsets of x's matrices (its last two axes) for each index of ``batch`` (C
    order), x broadcast against it (a broadcast axis: offset 0)."""
    strides = np.broadcast_to(x, (*batch, *x.shape[-2:])).strides[:len(batch)]
    if not batch:
        return np.zeros(1, np.int64)
    idx = np.indices(batch, dtype=np.int64).reshape(len(batch), -1)
    return np.ascontiguousarray((idx * np.array(strides, np.int64)[:, None]).sum(0))


def batched_matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None, bind: bool = False):
    """``numpy.matmul(a, b)`` of two float16 or float32 arrays of at least 2 dimensions
    (the batch dimensions broadcast), every product on the float GEMM kernels in one
    native loop (``_native.BoundBatchedGemm``; ``bind``: that call, not run). Operands of
    any strides (transposed views are read in place); ``out``: of the result's shape and
    dtype, its last axis contiguous, any other strides (a transposed view of the caller's
    array: the product written in that layout). The accuracy of :func:`gemm2d`, zero bias."""
    if a.dtype not in FLOATS or b.dtype != a.dtype:
        raise TypeError(f"batched_matmul takes two float16 or two float32 arrays, got {a.dtype} and {b.dtype}")
    if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
        raise ValueError(f"batched_matmul: shapes {a.shape} and {b.shape} do not multiply")
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    shape = (*batch, m, n)
    if out is None:
        out = np.empty(shape, a.dtype)
    elif out.shape != shape or out.dtype != a.dtype or not out.flags.writeable \
            or (n > 1 and out.strides[-1] != out.itemsize) \
            or not _dense(out) or np.may_share_memory(out, a) or np.may_share_memory(out, b):
        raise ValueError(f"out must be a writeable {a.dtype} array of shape {shape}, its last axis contiguous, "
                         "apart from a and b")
    if out.size == 0 or k == 0:
        if bind:
            return None
        out[...] = 0
        return out
    return _native.gemm_float_batched(
        _kernel(m, a.dtype), a, b, out, _batch_offsets(a, batch), _batch_offsets(b, batch),
        _batch_offsets(out, batch), m, k, n, a.strides[-2], a.strides[-1], b.strides[-2], b.strides[-1],
        out.strides[-2], _bias(None, n), _dispatch.get_num_threads(), bind)


def _dense(x: np.ndarray) -> bool:
    """Whether x's elements fill one run of memory in some order of its axes (a transposed
    view of a C-contiguous array: no two elements in one place)."""
    expected = x.itemsize
    for ax in sorted(range(x.ndim), key=lambda i: x.strides[i]):
        if x.shape[ax] != 1 and x.strides[ax] != expected:
            return False
        expected *= x.shape[ax]
    return True


class PackedConvWeightsF16:
    """fp16 convolution weights (O, KH, KW, C/groups), packed once per group; made by
    :func:`qkernels.pack_conv_weights` from a float16 array (OHWI or OIHW).
    (:class:`PackedConvWeightsF32`: the same for float32.)"""

    dtype = F16

    def __init__(self, w: ArrayLike, groups: int = 1, weight_layout: str = "OHWI", bias=None):
        data = ohwi_weights(_as_float(w, "weights", self.dtype), groups, weight_layout)
        o, kh, kw, cg = data.shape
        self.out_channels, self.kh, self.kw, self.cg, self.groups = o, kh, kw, cg, groups
        self.bias = None if bias is None else _bias(bias, o)
        og = o // groups
        # the direct depthwise kernel: multiplier 1 and an indirection row of at most 64 taps
        self.depthwise = cg == 1 and groups > 1 and og == 1 and kh * kw <= 64
        if self.depthwise:
            self.dw_weights = np.ascontiguousarray(data[:, :, :, 0].transpose(1, 2, 0).reshape(kh * kw, o),
                                                   np.float32)
        packed = PACKED[self.dtype]
        self.packed = [packed(np.ascontiguousarray(data[g * og:(g + 1) * og]).reshape(og, -1).T)
                       for g in range(0 if self.depthwise else groups)]   # depthwise: its direct kernel

    def oihw(self) -> np.ndarray:
        """The weights (O, C/groups, KH, KW), rebuilt from what is kept."""
        if self.depthwise:
            ohwi = self.dw_weights.reshape(self.kh, self.kw, self.out_channels).transpose(2, 0, 1)[..., None]
        else:
            og = self.out_channels // self.groups
            ohwi = np.concatenate([p.data.T.reshape(og, self.kh, self.kw, self.cg) for p in self.packed])
        return np.ascontiguousarray(ohwi.transpose(0, 3, 1, 2), self.dtype)

    def __repr__(self):
        return (f"{type(self).__name__}(O={self.out_channels}, KH={self.kh}, KW={self.kw}, "
                f"C/groups={self.cg}, groups={self.groups})")


class PackedConvWeightsF32(PackedConvWeightsF16):
    """fp32 convolution weights, packed once per group (float32 OHWI or OIHW)."""

    dtype = F32


PACKED_CONV = {F16: PackedConvWeightsF16, F32: PackedConvWeightsF32}


def conv2d(x, w, bias=None, stride=1, padding=0, dilation=1, groups: int = 1, layout: str = "NHWC",
           weight_layout: str = "OHWI", activation: Activation = None, out=None) -> np.ndarray:
    """Float convolution: :func:`qkernels.conv2d` on a float16 or float32 ``x`` (documented there)."""
    dtype = np.asarray(x).dtype
    if dtype not in PACKED_CONV:
        raise TypeError(f"float conv2d takes float16 or float32 operands, got {dtype}")
    x = _as_float(x, "x", dtype)
    check_choice(layout, LAYOUTS, "layout")
    if x.ndim != 4:
        raise ValueError(f"x must be 4-D ({layout}), got shape {x.shape}")
    if isinstance(w, PackedConvWeightsF16):
        if w.dtype != dtype:
            raise TypeError(f"x is {dtype} but the packed weights are {w.dtype}")
        pw = w
    else:
        pw = PACKED_CONV[dtype](w, groups, weight_layout)
    nchw = layout == "NCHW"
    xd = x.transpose(0, 2, 3, 1) if nchw else x
    geom = geometry(xd.shape, pw.kh, pw.kw, pw.cg, pw.groups, stride, padding, dilation)
    shape = (xd.shape[0], geom[0], geom[1], pw.out_channels)
    check_size(*shape, itemsize=dtype.itemsize)
    check_size(shape[0] * shape[1] * shape[2], pw.kh * pw.kw * pw.cg, itemsize=4, what="patch matrix")
    res = output_buffer(shape, nchw, out, dtype, x=x, w=w, bias=bias)
    if nchw and res.size and not reads_nchw(xd, pw, stride, padding, dilation, activation, False):
        xd = nchw_to_nhwc(x, copy=False)   # the gathers read NHWC pixels: one native transposing copy
    return to_layout(_conv_nhwc(xd, pw, bias, geom, activation, res), nchw, out)


def _conv_nhwc(xd: np.ndarray, pw: PackedConvWeightsF16, bias, geometry, activation: Activation,
               res: np.ndarray, bind: bool = False, residual: np.ndarray | None = None):
    """Float convolution of NHWC ``xd`` into ``res`` (N, OH, OW, O) of its dtype, C-contiguous.
    ``geometry``: (oh, ow, stride_y, stride_x, dil_y, dil_x, top, left, bottom, right).
    ``bind``: the native calls bound to these arrays (a list; run() each in order), not
    run (``xd``'s channels must then be adjacent, unless :func:`reads_nchw`). ``residual``
    (fp32): an NHWC array of the result's shape added after the bias, before the activation
    (a fused Add)."""
    oh, ow, sy, sx, dy, dx, top, left, bottom, right = geometry
    o = pw.out_channels
    bias_arr = _bias(bias if bias is not None else pw.bias, o)
    lo, hi = _clamp(activation)
    act = tuple(float(v) for v in activation) if isinstance(activation, HardSwishDiv) else None
    if not res.size:
        return [] if bind else res
    elem = xd.dtype.itemsize
    if xd.shape[3] == 1 and xd.strides[3] != elem:   # one channel: its stride is arbitrary (numpy's choice)
        xd = np.lib.stride_tricks.as_strided(xd, strides=xd.strides[:3] + (elem,), writeable=False)
    og = o // pw.groups
    pointwise = _pointwise(pw, geometry)
    direct = _direct_weights(pw) if residual is None and act is None and not pointwise else None
    if xd.strides[3] != elem and (direct is None or xd.strides[3] % elem):   # the gathers copy whole pixels
        if bind:
            raise ValueError("a bound convolution reads its input in place: channels must be adjacent")
        xd = np.ascontiguousarray(xd)
    res2d = output_rows(res)
    res_rows = None
    if residual is not None:
        res_rows = rows_view(residual) if residual.shape == res.shape and residual.dtype == res.dtype else None
        if res_rows is None or (o > 1 and res_rows.strides[1] != res.itemsize):
            raise ValueError("the residual must be the result's shape and dtype, channels adjacent")

    def source(x):
        if x.strides[3] == elem:
            b = x.view(np.uint8)
        else:   # channels apart (the direct kernel's NCHW input): bytes of the same strides
            one = np.lib.stride_tricks.as_strided(x[..., :1], strides=x.strides[:3] + (elem,))
            b = np.lib.stride_tricks.as_strided(one.view(np.uint8), x.shape[:3] + (x.shape[3] * elem,),
                                                x.strides[:3] + (x.strides[3] // elem,), writeable=False)
        return _native.ConvSource(b, oh, ow, pw.kh, pw.kw, sy, sx, dy, dx, top, left, 0, elem)

    if pw.depthwise:
        calls = [_native.dwconv_float(_dispatch.isa_index(), _native_dtype(pw.dtype), source(xd), pw.dw_weights,
                                      bias_arr, lo, hi, res2d, _dispatch.get_num_threads(), bind, res_rows, act)]
        return calls if bind else res
    wino = _winograd_weights(pw, geometry, xd.shape[0]) if act is None and not pointwise else None
    if wino is not None:
        calls = [_native.wconv_float(_dispatch.isa_index(), source(xd), wino, bias_arr, lo, hi, res2d,
                                     _dispatch.get_num_threads(), bind, res_rows)]
        return calls if bind else res
    if direct is not None:
        calls = [_native.dconv_float(_dispatch.isa_index(), source(xd), direct, bias_arr, lo, hi, res2d,
                                     _dispatch.get_num_threads(), bind)]
        return calls if bind else res
    calls = []
    for g, pwg in enumerate(pw.packed):
        xg = xd[..., g * pw.cg:(g + 1) * pw.cg]
        a = rows_view(xg) if pointwise else None   # (N*H*W, C) when pixels lie at one stride
        if a is None:
            a = source(xg)
        calls.append(gemm2d(a, pwg, bias_arr[g * og:(g + 1) * og], lo, hi, res2d[:, g * og:(g + 1) * og], bind,
                            None if res_rows is None else res_rows[:, g * og:(g + 1) * og], act))
    return calls if bind else res


#: the most input channels a convolution has for the direct kernel (qk_dconv.h): an image
#: of 1 to 3 channels, whose patch rows (kernel rows of a few floats) are too short for the
#: GEMM's gathers (the digits CNN's 3 x 3 at batch 400: 152 against 415 us; ResNet-18's
#: RGB 7 x 7 x 3 stem read in place from NCHW: 0.88x the transposing copy and the indirect
#: GEMM, Xeon 6/207, AVX-512, 1 thread)
DIRECT_MAX_CHANNELS = 3


def reads_nchw(xd: np.ndarray, pw, stride, padding, dilation, activation: Activation, residual: bool) -> bool:
    """Whether the bound convolution of NHWC ``xd`` by ``pw`` reads it in place when its
    channels are not adjacent (the NHWC view of an NCHW array: the direct kernel gathers
    any strides), so that the caller passes that view, no transposing copy."""
    if residual or isinstance(activation, HardSwishDiv) or _direct_weights(pw) is None:
        return False
    return not _pointwise(pw, geometry(xd.shape, pw.kh, pw.kw, pw.cg, pw.groups, stride, padding, dilation))


def _pointwise(pw, geom) -> bool:
    """A 1 x 1 convolution of stride 1, no padding: a GEMM on the pixels' rows."""
    _, _, sy, sx, _, _, top, left, bottom, right = geom
    return pw.kh == pw.kw == 1 and sy == sx == 1 and top == left == bottom == right == 0


def _direct_weights(pw) -> np.ndarray | None:
    """The (K, N) float32 weights of the direct kernel where this thread's ISA path runs
    it for ``pw`` (one group of few input channels, fp32), else None."""
    k = pw.kh * pw.kw * pw.cg
    if pw.dtype != F32 or pw.groups != 1 or pw.depthwise or pw.cg > DIRECT_MAX_CHANNELS \
            or not _native.dconv_available(_dispatch.isa_index(), k, pw.out_channels):
        return None
    w = getattr(pw, "_direct", None)
    if w is None:
        w = pw._direct = np.ascontiguousarray(pw.packed[0].data, np.float32)
    return w if w.shape == (k, pw.out_channels) else None


#: Winograd's G (F(2x2, 3x3)): U = G g G^T of each 3 x 3 kernel
_WINOGRAD_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
#: where Winograd pays (_winograd_weights): its GEMMs' share of the direct products, U's bytes
WINOGRAD_MAX_WORK = 0.6
WINOGRAD_MAX_U_BYTES = 4 << 20


def _winograd_weights(pw, geom, batch: int) -> np.ndarray | None:
    """The transformed weights U (16 packed matrices, qk_wconv.h) where this thread's ISA
    path runs ``pw`` over ``geom`` by Winograd's F(2x2, 3x3) and it pays, else None.

    It pays where the 16 GEMMs of the tiles' 12-row blocks do at most 0.6 of the direct
    products (few tiles: 7 x 7 outputs are 16 tiles in 24 rows, 0.87) and U (64 bytes per
    channel pair) stays in the caches (at most 4 MiB): ResNet-18's 3 x 3 convolutions of
    56 x 56 x 64, 28 x 28 x 128 and 14 x 14 x 256 took 0.59-0.73x the time of the GEMM of
    their patches on the AVX-512 path, 0.49-0.55x on the AVX2 path (its 6 x 16 kernel; the
    AVX-512 transforms' emulated build), 7 x 7 x 512 1.16x and 0.87x (Xeon 6/207, 1 thread)."""
    oh, ow, sy, sx, dy, dx = geom[:6]
    if not _dispatch._winograd or pw.dtype != F32 or pw.groups != 1 or pw.depthwise or (pw.kh, pw.kw) != (3, 3) \
            or (sy, sx, dy, dx) != (1, 1, 1, 1) or pw.cg % 16 or pw.out_channels % 16 \
            or 64 * pw.cg * pw.out_channels > WINOGRAD_MAX_U_BYTES:
        return None
    tiles = batch * ((oh + 1) // 2) * ((ow + 1) // 2)
    if 16 * -(-tiles // 12) * 12 > WINOGRAD_MAX_WORK * 9 * batch * oh * ow:
        return None
    kid = _native.wconv_kernel(_dispatch.isa_index())
    if kid < 0:
        return None
    cache = pw.__dict__.setdefault("_winograd", {})
    u = cache.get(kid)
    if u is None:
        w = np.asarray(pw.packed[0].data, np.float64).reshape(3, 3, pw.cg, pw.out_channels)
        t = np.einsum("ak,klco,bl->abco", _WINOGRAD_G, w, _WINOGRAD_G).reshape(16, pw.cg, pw.out_channels)
        zeros = np.zeros(pw.out_channels, np.int32)
        u = np.stack([_native.pack_b(kid, np.ascontiguousarray(t[i], np.float32), False, zeros)[0]
                      for i in range(16)])
        u = cache.setdefault(kid, u)   # (another thread may have made it first: the same values)
    return u


def bind_conv2d(xd: np.ndarray, pw: PackedConvWeightsF16, stride, padding, dilation, activation: Activation,
                res: np.ndarray, residual: np.ndarray | None = None) -> list:
    """The native calls of ``conv2d(xd, pw, ...)`` (NHWC, channels adjacent) into ``res``
    (NHWC, the result's shape and dtype, channels adjacent, pixels at one stride: a
    channel slice of a wider NHWC array is written in place), bound: ``run()`` each, in order,
    recomputes ``res`` from what ``xd`` then holds (the graph plan's steps). ``residual``
    (fp32): NHWC, added after the bias, before the activation. ValueError for arrays the
    bound kernels cannot use in place."""
    if xd.dtype != pw.dtype or res.dtype != pw.dtype or xd.ndim != 4 or res.ndim != 4 or not res.flags.writeable \
            or output_rows(res) is None:
        raise ValueError("bind_conv2d: arrays of the weights' dtype, a result with adjacent channels, "
                         "pixels at one stride")
    geom = geometry(xd.shape, pw.kh, pw.kw, pw.cg, pw.groups, stride, padding, dilation)
    if res.shape != (xd.shape[0], geom[0], geom[1], pw.out_channels):
        raise ValueError(f"bind_conv2d: the result has shape {res.shape}")
    return _conv_nhwc(xd, pw, None, geom, activation, res, bind=True, residual=residual)
