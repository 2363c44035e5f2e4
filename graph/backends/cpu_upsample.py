"""Native ConvTranspose and Resize for the cpu backend (registered into
:data:`.cpu.KERNELS`), the ops detection and segmentation heads upsample with.

- ``ConvTranspose`` (2-D, float32 and float16, constant weights): per group one fp32 GEMM
  ``cols (pixels, kh*kw*O/g) = X (pixels, C/g) . W`` on qkernels' packed weights (packed
  once, when the node is made), then the native col2im (kernels/col2im.c) where each
  output pixel sums the taps that land on it in the reference operator's order, adds the
  bias and, for float16, rounds once. NHWC inside: an NCHW view of NHWC memory in (free),
  an NCHW view of an NHWC result out, like the convolutions. The GEMM sums over C in
  another order than the reference's BLAS: not bit-exact, within fp32 rounding.
- ``Resize`` (4-D, H and W; nearest with every coordinate and nearest mode, linear;
  scales or sizes): the reference operator's own coordinate and weight functions make the
  tables (once per input shape); the native loop (kernels/resize.c) gathers (nearest:
  any dtype, exact) or blends along H then W in the reference's float32 (float16 values)
  or float64 (float64, int8, uint8 values) arithmetic, product by product: the
  reference's bits. The output keeps the input's memory order (NHWC memory stays NHWC).
  cubic, antialias and tf_crop_and_resize stay on the reference.

The node-by-node runner and the plan's bound call run the same native code: the same bits.
"""
from __future__ import annotations

from functools import partial

import numpy as np

from ... import _dispatch, _float, _native
from ..._common import rows_view
from ..ir import Graph, Node
from . import cpu
from .cpu import _F16, _F32, _CONV_ATTRS, Runner, _NotServed, _const, _fallback, _inputs, kernel
from .reference import resize as ref_resize
from .reference.conv import _transpose_geometry

_INF = float("inf")


def _nhwc_memory(x: np.ndarray) -> bool:
    """Whether 4-D ``x`` is an NCHW view of C-contiguous NHWC memory (several channels)."""
    return x.shape[1] > 1 and x.transpose(0, 2, 3, 1).flags.c_contiguous and not x.flags.c_contiguous


# ------------------------------------------------------------------------- ConvTranspose

@kernel("ConvTranspose", "qkernels::FusedConvTranspose",
        attrs=_CONV_ATTRS + ("output_padding", "output_shape", "activation", "activation_params"))
def _make_conv_transpose(node: Node, graph: Graph) -> Runner | None:
    x, w, b = _inputs(node, 3)
    W = _const(graph, w)
    B = _const(graph, b) if b else None
    group = int(node.attrs.get("group", 1))
    act = cpu._activation(node)    # (FusedConvTranspose: Relu or Clip, the col2im's clamp)
    if act is False or W is None or W.dtype not in (_F16, _F32) or W.ndim != 4 or min(W.shape) == 0 or group < 1 \
            or W.shape[0] % group or (b and (B is None or B.dtype != W.dtype or B.size != W.shape[1] * group)) \
            or list(node.attrs.get("kernel_shape") or W.shape[2:]) != list(W.shape[2:]):
        return cpu._fused_reference(node, graph)
    lo, hi = (0.0, _INF) if act == "relu" else act if isinstance(act, tuple) else (-_INF, _INF)
    c, og, kh, kw = (int(d) for d in W.shape)
    cg, taps, dtype = c // group, kh * kw, W.dtype
    # per group (C/g, kh*kw*O/g), columns ordered (ky, kx, o): one tap's channels adjacent
    packed = [_float.PackedWeightsF32(np.ascontiguousarray(
        W[g * cg:(g + 1) * cg].astype(np.float32).transpose(0, 2, 3, 1).reshape(cg, taps * og)))
        for g in range(group)]
    bias = None if B is None else np.ascontiguousarray(B.reshape(-1), np.float32)
    no_bias = _float._bias(None, taps * og)
    result = node.outputs[0]

    def geometry(shape):
        if len(shape) != 4 or shape[1] != c or min(shape) == 0:
            raise _NotServed
        strides, dil, begin, out = _transpose_geometry(node, shape[2:], [kh, kw])
        return strides, dil, begin, (shape[0], out[0], out[1], og * group)

    def calls(xd: np.ndarray, yd: np.ndarray, geom) -> list:
        """The bound GEMMs and col2im of NHWC float32 ``xd`` (channels adjacent) into NHWC ``yd``."""
        (sy, sx), (dy, dx), begin, _ = geom
        n, h, wd = xd.shape[:3]
        cols = np.empty((n * h * wd, group * taps * og), np.float32)
        steps = []
        for g, pw in enumerate(packed):
            a = rows_view(xd[..., g * cg:(g + 1) * cg])
            if a is None:
                raise ValueError("the input's pixels must lie at one stride")
            steps.append(_float.gemm2d(a, pw, no_bias, -_INF, _INF, cols[:, g * taps * og:(g + 1) * taps * og],
                                       bind=True))
        steps.append(_native.col2im(cols, yd, h, wd, group, kh, kw, sy, sx, dy, dx, begin[0], begin[1], bias,
                                    lo, hi, num_threads=_dispatch.get_num_threads(), bind=True,
                                    isa=_dispatch.isa_index()))
        return steps

    def nhwc_f32(data: np.ndarray) -> tuple[np.ndarray, list]:
        """The float32 NHWC input the GEMMs read, and the steps that fill it (none when
        ``data`` is an NCHW view of NHWC float32 memory)."""
        xd = data.transpose(0, 2, 3, 1)
        if data.dtype == _F32:
            return cpu._nhwc_input(data)      # itself, or the native transposing copy
        scratch = np.empty(xd.shape, np.float32)
        return scratch, [partial(np.copyto, scratch, xd)]

    def run(values):
        data = values[x]
        if data.dtype != dtype or data.ndim != 4:
            raise _NotServed
        geom = geometry(data.shape)
        y = np.empty(geom[3], dtype)
        xd, pre = nhwc_f32(data)
        for step in pre + calls(xd, y, geom):
            step()
        return {result: y.transpose(0, 3, 1, 2)}

    def bind(ins, outs):
        data, y = ins[0], outs[0]
        if data is None or data.dtype != dtype or data.ndim != 4 or y.dtype != dtype:
            return None
        geom = geometry(data.shape)
        yd = y.transpose(0, 2, 3, 1)
        if yd.shape != geom[3]:
            return None
        xd, pre = nhwc_f32(data)
        return pre + calls(xd, yd, geom)
    run.bind = bind
    return cpu._fallback_fused(node, graph, run, act)


# --------------------------------------------------------------------------------- Resize

_RESIZE_ATTRS = ("antialias", "axes", "coordinate_transformation_mode", "cubic_coeff_a", "exclude_outside",
                 "extrapolation_value", "keep_aspect_ratio_policy", "mode", "nearest_mode")
_LINEAR_TYPES = tuple(np.dtype(t) for t in (np.float32, np.float16, np.float64, np.uint8, np.int8))


@kernel("Resize", attrs=_RESIZE_ATTRS)
def _make_resize(node: Node, graph: Graph) -> Runner | None:
    a = node.attrs
    mode = a.get("mode", "nearest")
    coords = a.get("coordinate_transformation_mode", "half_pixel")
    if mode not in ("nearest", "linear") or a.get("antialias", 0) or coords == "tf_crop_and_resize":
        return None
    linear = mode == "linear"
    names = _inputs(node, 4)[1:]
    constant = cpu._constant_params(node, graph)
    tables: dict = {}

    def tables_for(shape, params) -> tuple:
        """The native call's keywords for input ``shape`` (the reference's coordinates)."""
        key = (shape,) + tuple(None if p is None else (p.dtype.str, p.shape, p.tobytes()) for p in params)
        got = tables.get(key)
        if got is None:
            got = tables[key] = _resize_tables(node, shape, params, linear, coords)
        return got

    def prepare(x, params):
        if x.ndim != 4 or min(x.shape) == 0 or (linear and x.dtype not in _LINEAR_TYPES) \
                or x.itemsize not in (1, 2, 4, 8) or x.dtype.hasobject:
            raise _NotServed
        shape, kw = tables_for(x.shape, params)
        if shape is None:
            raise _NotServed
        return shape, kw

    def run(values):
        data = values[node.inputs[0]]
        shape, kw = prepare(data, [values[n] if n else None for n in names])
        if _nhwc_memory(data):   # the result in the input's memory order: NHWC stays NHWC
            y = np.empty((shape[0], shape[2], shape[3], shape[1]), data.dtype).transpose(0, 3, 1, 2)
        else:
            y = np.empty(shape, data.dtype)
        _native.resize(data, y, num_threads=_dispatch.get_num_threads(), isa=_dispatch.isa_index(), **kw)
        return {node.outputs[0]: y}

    def bind(ins, outs):
        data, y = ins[0], outs[0]
        if data is None or y.dtype != data.dtype:
            return None
        shape, kw = prepare(data, [ins[i] if i < len(ins) else None for i in (1, 2, 3)])
        if y.shape != shape:
            return None
        return _native.resize(data, y, num_threads=_dispatch.get_num_threads(), bind=True, isa=_dispatch.isa_index(),
                              **kw)
    if constant:
        run.bind = bind
    return _fallback(node, graph, run)


def _resize_tables(node: Node, shape: tuple, params: list, linear: bool, coords: str):
    """(output shape, keywords of _native.resize) for X of ``shape``, from the reference
    operator's own geometry, coordinates, nearest rounding and linear taps; (None, None)
    when N or C would change (the reference runs those)."""
    roi, scales, sizes = (None if p is None else np.asarray(p) for p in params)
    geometry = ref_resize._geometry(node, shape, roi, scales, sizes)
    out = tuple(g[0] for g in geometry)
    if any(g[0] != shape[i] or g[1] != 1 for i, g in enumerate(geometry[:2])):
        return None, None
    kw: dict = {"linear": linear}
    for axis, (name, pas) in zip((2, 3), (("y", "pass_h"), ("x", "pass_w"))):
        n_out, scale, width, start, end = geometry[axis]
        n_in = shape[axis]
        identity = n_out == n_in and scale == 1
        if linear and identity:     # the reference skips an axis that maps onto itself
            kw[pas] = False
            continue
        if identity:
            kw[f"i{name}0"] = np.arange(n_in, dtype=np.int32)
            continue
        src = ref_resize._source(coords, n_in, n_out, scale, width, start, end)
        if not linear:
            idx = np.clip(ref_resize._nearest_index(src, node.attrs.get("nearest_mode", "round_prefer_floor")),
                          0, n_in - 1)
            kw[f"i{name}0"] = idx.astype(np.int32)
            continue
        idx, w = ref_resize._taps(node, src, n_in, scale)
        if idx.shape[1] != 2:
            return None, None
        kw[pas] = True
        kw[f"i{name}0"], kw[f"i{name}1"] = idx[:, 0].astype(np.int32), idx[:, 1].astype(np.int32)
        kw[f"w{name}0"], kw[f"w{name}1"] = w[:, 0], w[:, 1]    # float64: _native.resize casts them
    return out, kw
