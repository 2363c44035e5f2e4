"""``qkernels bench --suite conv``: int8 convolution speed beside ONNX Runtime, numpy
float32 and TFLite's XNNPACK, at real edge-network layers.

The layer table here (:data:`LAYERS`) is the one table that the CLI and the
pytest-benchmark suite (``bench/test_bench_conv.py``) read.

What is timed, per layer and per thread count (batch 1, "same" padding):

* ``qkernels``: ``qkernels.conv2d`` of int8 NHWC activations (per tensor, zero point
  -3) by int8 OHWI weights (symmetric per output channel) packed once with their int32
  bias by ``qkernels.pack_conv_weights``, fp32 requantization to an int8 output
  written into a preallocated ``out=``;
* ``ort-int8``: ONNX Runtime ``QLinearConv`` of the same problem (int8 NCHW input, the
  weights and bias as initializers, int8 output) through an I/O binding;
* ``ort-fp32``: ONNX Runtime float32 ``Conv`` of the dequantized problem;
* ``numpy-fp32``: float32 numpy (:class:`NumpyConv`): the input copied into a padded
  NHWC buffer, ``sliding_window_view`` patches, then one ``np.matmul`` per convolution
  (im2col) or, depthwise, a sum over the KH*KW taps of channel-wise products;
* ``xnnpack``: TFLite's XNNPACK (``ai_edge_litert``'s ``Interpreter``, ``num_threads``)
  invoking a ``.tflite`` model of the same layer geometry (other weights: times only),
  for the layers that name one (:attr:`Layer.tflite`), read from ``--tflite-dir``
  (default ``bench/tflite``). Skipped with a note when ``ai_edge_litert`` or the folder
  is missing.

Before timing, the qkernels output of every layer is compared with an exact numpy int64
reference (:func:`reference`): a mismatch posts no number and makes the command exit
with status 1. ONNX Runtime's int8 output is compared with the same reference and the
outcome recorded (information, not a gate). Timing, processes, rounds, idle waits and
the JSON report are :mod:`harness`'s machinery.

Imports neither qkernels nor numpy at module level (:mod:`worker` says why).
"""
from __future__ import annotations

from typing import NamedTuple

from . import peers
from .gemm import NOAMX_NOTE, requantize
from .harness import Suite, Target, add_peak, blas_label, busy_mark, cell, collect, format_footer, gops_ms, \
    isa_line, peak_line, ratio, run_only, run_setup, selector, settings_of
from .timing import compare_exact, measure, worker_problems


class Layer(NamedTuple):
    """One convolution: square ``h`` x ``h`` x ``c`` input, ``o`` outputs, ``k`` x ``k``
    kernel, ``stride``, "same" padding; depthwise: one input channel per output."""
    label: str
    h: int
    c: int
    o: int
    k: int
    stride: int
    depthwise: bool
    source: str
    tflite: str = ""     # the .tflite file of this geometry for XNNPACK ("" when none)

    @property
    def out_hw(self) -> int:
        return -(-self.h // self.stride)

    @property
    def macs(self) -> int:
        return self.out_hw ** 2 * self.o * self.k * self.k * (1 if self.depthwise else self.c)

    @property
    def ops(self) -> int:
        """Operations of one call, counting a multiply-add as two."""
        return 2 * self.macs

    @property
    def pads(self) -> tuple[int, int, int, int]:
        """"same" padding (top, left, bottom, right), the extra cell at the end."""
        total = max(0, (self.out_hw - 1) * self.stride + self.k - self.h)
        return total // 2, total // 2, total - total // 2, total - total // 2

    @property
    def geometry(self) -> str:
        kind = f"dw{self.k}x{self.k}" if self.depthwise else f"{self.k}x{self.k}"
        return f"{self.h}x{self.h}x{self.c}->{self.o} {kind} s{self.stride}"

    def record_fields(self) -> dict:
        """What a timing record says of its layer (besides the label)."""
        return {"geometry": self.geometry, "depthwise": self.depthwise, "ops": self.ops}


#: The convolution layers of the benchmarks.
LAYERS: tuple[Layer, ...] = (
    Layer("mnv2-stem-3x3s2", 224, 3, 32, 3, 2, False, "MobileNetV2 stem, 224x224x3 -> 32"),
    Layer("mnv2-dw-112", 112, 32, 32, 3, 1, True, "MobileNetV2 depthwise 3x3 112x112x32 s1",
          "dw112s1_int8.tflite"),
    Layer("mnv2-dw-56s2", 56, 144, 144, 3, 2, True, "MobileNetV2 depthwise 3x3 56x56x144 s2",
          "dw56s2_int8.tflite"),
    Layer("mnv2-dw-14", 14, 384, 384, 3, 1, True, "MobileNetV2 depthwise 3x3 14x14x384 s1"),
    Layer("mnv2-dw-7", 7, 960, 960, 3, 1, True, "MobileNetV2 depthwise 3x3 7x7x960 s1"),
    Layer("mnv2-pw-56", 56, 24, 144, 1, 1, False, "MobileNetV2 1x1 56x56x24 -> 144"),
    Layer("mnv2-pw-14", 14, 64, 384, 1, 1, False, "MobileNetV2 1x1 14x14x64 -> 384"),
    Layer("pw-56x64-256", 56, 64, 256, 1, 1, False, "ResNet-50 layer1 1x1 expansion 56x56x64 -> 256",
          "conv1x1_int8.tflite"),
    Layer("resnet-3x3-56", 56, 64, 64, 3, 1, False, "ResNet-18 3x3 56x56x64 -> 64", "conv3x3_int8.tflite"),
    Layer("resnet-stem-7x7s2", 224, 3, 64, 7, 2, False, "ResNet-18 stem 7x7 s2, 224x224x3 -> 64"),
    Layer("effnet-dw5-28", 28, 240, 240, 5, 1, True, "EfficientNet-B0 depthwise 5x5 28x28x240 (stage 3 MBConv6)"),
    Layer("effnet-pw-28", 28, 240, 40, 1, 1, False, "EfficientNet-B0 1x1 projection 28x28x240 -> 40"),
    Layer("mnv3-dw5-56s2", 56, 72, 72, 5, 2, True, "MobileNetV3-Large depthwise 5x5 s2 56x56x72"),
)

#: Labels of the layers ``--quick`` runs (the CI smoke run: a few seconds).
QUICK: tuple[str, ...] = ("mnv2-dw-112", "mnv2-pw-56", "resnet-3x3-56")

#: The targets, checked at the end of every run (reported, never a failure).
TARGET_RATIO_ORT_INT8 = 1.2   # every non-depthwise layer: qkernels >= 1.2x ONNX Runtime int8
TARGET_RATIO_DW_PEER = 1.5    # every depthwise layer: >= 1.5x the fastest int8 peer

LIBS = ("qkernels", "ort", "numpy", "xnnpack", "ort-noamx", "xnnpack-noamx")
#: Report columns: name -> (worker library, op) of its records.
COLUMNS = {"qkernels": ("qkernels", "conv2d-s8"), "ort-int8": ("ort", "QLinearConv"),
           "ort-u8": ("ort", "QLinearConv-u8"), "ort-fp32": ("ort", "Conv"), "numpy-fp32": ("numpy", "conv-f32"),
           "xnnpack": ("xnnpack", "tflite-s8"), "ort-u8-noamx": ("ort-noamx", "QLinearConv-u8"),
           "xnnpack-noamx": ("xnnpack-noamx", "tflite-s8")}
TITLES = {"qkernels": "qkernels", "ort-int8": "ORT int8", "ort-u8": "ORT u8", "ort-fp32": "ORT fp32", "numpy-fp32": "numpy f32",
          "xnnpack": "XNNPACK", "ort-u8-noamx": "ORTu8nAMX", "xnnpack-noamx": "XNNnoAMX"}
#: The peers "x fastest peer" (and the depthwise target) measure against.
INT8_PEERS = ("xnnpack", "ort-int8", "ort-u8")
#: ONNX Runtime's two int8 configurations: int8 activations (exact) and uint8 activations
#: (its fast AVX2 path, inexact: vpmaddubsw saturates); targets take the faster one.
ORT_INT8 = ("ort-int8", "ort-u8")


#: The layers named by ``labels`` (all, or the quick subset, when None).
layers = selector(LAYERS, QUICK, "layer")


# ---------------------------------------------------------------- problems and references

class Problem(NamedTuple):
    """Deterministic data of one layer: the same in every worker process."""
    layer: Layer
    x: object          # int8 (1, H, W, C), NHWC
    sa: float
    za: int
    w: object          # int8 (O, KH, KW, C/groups), symmetric per output channel
    sw: object         # float32 (O,)
    b: object          # int32 (O,), at scale sa * sw
    sy: float
    zy: int

    def x_float(self):
        """The dequantized input, float32 NHWC."""
        import numpy as np
        return (self.x.astype(np.float32) - np.float32(self.za)) * np.float32(self.sa)

    def w_float(self):
        import numpy as np
        return self.w.astype(np.float32) * self.sw.reshape(-1, 1, 1, 1)

    def b_float(self):
        import numpy as np
        return (self.b.astype(np.float32) * np.float32(self.sa) * self.sw).astype(np.float32)


def make_problem(layer: Layer, seed: int = 0) -> Problem:
    """Full-range int8 activations (zero point -3) and weights in [-127, 127], a bias,
    and an output scale that keeps most outputs inside int8 (about 3 standard
    deviations of the sums)."""
    import numpy as np
    if layer.depthwise and layer.o != layer.c:
        raise ValueError(f"{layer.label}: depthwise layers here have one output per input channel")
    rng = np.random.default_rng([seed, layer.h, layer.c, layer.o, layer.k, layer.stride, int(layer.depthwise)])
    x = rng.integers(-128, 128, (1, layer.h, layer.h, layer.c), dtype=np.int8)
    cg = 1 if layer.depthwise else layer.c
    w = rng.integers(-127, 128, (layer.o, layer.k, layer.k, cg), dtype=np.int8)
    b = rng.integers(-5000, 5000, layer.o).astype(np.int32)
    sa, sw = 0.05, rng.uniform(0.002, 0.01, layer.o).astype(np.float32)
    sigma_acc = np.sqrt(layer.k * layer.k * cg) * 74.0 * 73.6
    sy = float(np.float32(3.0 * sa * float(sw.mean()) * sigma_acc / 127.0))
    return Problem(layer, x, sa, -3, w, sw, b, sy, 2)


class NumpyConv:
    """A convolution in numpy, as a numpy user would write it: NHWC, the input copied
    into a padded buffer, ``sliding_window_view`` patches, then one ``np.matmul`` of
    the patch matrix (im2col) by the (KH*KW*C, O) weights, or, depthwise, a sum over
    the KH*KW taps of channel-wise products. ``dtype``: float32 (the numpy peer) or
    int64 (the exact reference). Calling it on an input (1, H, W, C) returns the
    (1, OH, OW, O) output in a buffer reused by the next call."""

    def __init__(self, layer: Layer, w, bias, dtype):
        import numpy as np
        from numpy.lib.stride_tricks import sliding_window_view
        t, left, b, r = layer.pads
        h, k, s, oh = layer.h, layer.k, layer.stride, layer.out_hw
        self.xp = np.zeros((1, h + t + b, h + left + r, layer.c), dtype)
        self.interior = self.xp[:, t:t + h, left:left + h, :]
        win = sliding_window_view(self.xp, (k, k), axis=(1, 2))[:, ::s, ::s]   # (1, OH, OW, C, KH, KW)
        self.win = win[:, :oh, :oh]
        self.depthwise = layer.depthwise
        self.bias = np.asarray(bias, dtype)
        self.y = np.empty((1, oh, oh, layer.o), dtype)
        if self.depthwise:
            self.taps = [(i, j, np.ascontiguousarray(w[:, i, j, 0], dtype)) for i in range(k) for j in range(k)]
            self.tmp = np.empty_like(self.y)
        else:      # patches are ordered (C, KH, KW): the weights to match, as a (C*KH*KW, O) matrix
            self.wmat = np.ascontiguousarray(np.asarray(w, dtype).transpose(3, 1, 2, 0).reshape(-1, layer.o))
            self.y2d = self.y.reshape(oh * oh, layer.o)

    def __call__(self, x):
        import numpy as np
        self.interior[...] = x
        win, y = self.win, self.y
        if self.depthwise:
            i, j, wt = self.taps[0]
            np.multiply(win[..., i, j], wt, out=y)
            for i, j, wt in self.taps[1:]:
                np.multiply(win[..., i, j], wt, out=self.tmp)
                y += self.tmp
        else:
            np.matmul(win.reshape(self.y2d.shape[0], -1), self.wmat, out=self.y2d)
        y += self.bias
        return y


def reference(p: Problem):
    """Exact int64 sums ``conv(x - za, w) + b`` (NHWC) and the fp32-requantized int8
    output (ONNX QLinearConv: ``saturate(rint(float32(acc) * (sa*sw/sy)) + zy)``)."""
    import numpy as np
    acc = NumpyConv(p.layer, p.w, p.b, np.int64)(p.x.astype(np.int64) - p.za).copy()
    if np.abs(acc).max() >= 2 ** 31:
        raise ValueError(f"{p.layer.label}: sums overflow int32")
    return acc, requantize(acc, p.sa, p.sw, p.sy, p.zy, np.int8)


def qk_conv(qk, p: Problem):
    """``(call, y)``: a no-argument qkernels call of ``p`` (weights and bias packed
    here, once) writing its int8 NHWC output into ``y``."""
    import numpy as np
    layer = p.layer
    packed = qk.pack_conv_weights(qk.QTensor(p.w, p.sw, 0, axis=0), groups=layer.c if layer.depthwise else 1,
                                  bias=p.b)
    x = qk.QTensor(p.x, p.sa, p.za)
    y = np.empty((1, layer.out_hw, layer.out_hw, layer.o), np.int8)

    def call():
        return qk.conv2d(x, packed, stride=layer.stride, padding=layer.pads, out_scale=p.sy,
                         out_zero_point=p.zy, out_dtype=np.int8, out=y)

    return call, y


def ort_model(p: Problem, dtype: str = "int8") -> bytes:
    """A one-node ONNX model of ``p``, NCHW: ``QLinearConv`` (int8 in and out) for
    ``dtype="int8"``, float32 ``Conv`` of the dequantized problem for ``"fp32"``; the
    weights, bias and parameters are initializers. Input "x", output "y"."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
    layer, t = p.layer, numpy_helper.from_array
    w_oihw = np.ascontiguousarray(p.w.transpose(0, 3, 1, 2))
    pt, pl, pb, pr = layer.pads
    attrs = {"kernel_shape": [layer.k] * 2, "strides": [layer.stride] * 2, "pads": [pt, pl, pb, pr],
             "group": layer.c if layer.depthwise else 1}
    if dtype in ("int8", "uint8"):
        # uint8: the same real values shifted by 128 (activations and output)
        shift, adt = (0, np.int8) if dtype == "int8" else (128, np.uint8)
        inits = [t(np.array(p.sa, np.float32), "sa"), t(np.array(p.za + shift, adt), "za"), t(w_oihw, "w"),
                 t(p.sw, "sw"), t(np.zeros(layer.o, np.int8), "zw"), t(np.array(p.sy, np.float32), "sy"),
                 t(np.array(p.zy + shift, adt), "zy"), t(p.b, "b")]
        node = helper.make_node("QLinearConv", ["x", "sa", "za", "w", "sw", "zw", "sy", "zy", "b"], ["y"], **attrs)
        elem = TensorProto.INT8 if dtype == "int8" else TensorProto.UINT8
    elif dtype == "fp32":
        inits = [t(np.ascontiguousarray(p.w_float().transpose(0, 3, 1, 2)), "w"), t(p.b_float(), "b")]
        node = helper.make_node("Conv", ["x", "w", "b"], ["y"], **attrs)
        elem = TensorProto.FLOAT
    else:
        raise ValueError(f"dtype must be 'int8', 'uint8' or 'fp32', got {dtype!r}")
    graph = helper.make_graph([node], f"{node.op_type}_{layer.label}",
                              [helper.make_tensor_value_info("x", elem, [1, layer.c, layer.h, layer.h])],
                              [helper.make_tensor_value_info("y", elem, [1, layer.o, layer.out_hw, layer.out_hw])],
                              inits)
    return peers.onnx_bytes(graph)


def ort_feed(p: Problem, dtype: str = "int8"):
    """The NCHW input of :func:`ort_model`'s model."""
    import numpy as np
    x = {"int8": p.x, "uint8": (p.x.view(np.uint8) ^ 0x80) if dtype == "uint8" else None}.get(dtype)
    return np.ascontiguousarray((p.x_float() if x is None else x).transpose(0, 3, 1, 2))


# ---------------------------------------------------------------- workers (in their own processes)

def _problems(spec: dict):
    return worker_problems(spec, Layer, make_problem)


def _worker_qkernels(spec: dict, out: dict) -> None:
    qk = peers.qkernels_setup(spec, out)
    for layer, p in _problems(spec):
        _, y_ref = reference(p)
        call, y = qk_conv(qk, p)
        call()                                      # prepares the call once, outside the timing
        check = dict(compare_exact(y, y_ref), blocking=True)
        out["results"].append(measure(layer, "qkernels", "conv2d-s8", spec["threads"], spec["timing"],
                                             call, check))


def _worker_ort(spec: dict, out: dict) -> None:
    import numpy as np
    peers.ort_setup(out)
    for layer, p in _problems(spec):
        _, y_ref = reference(p)
        for dtype, op, out_dtype in (("int8", "QLinearConv", np.int8), ("uint8", "QLinearConv-u8", np.uint8),
                                     ("fp32", "Conv", np.float32)):
            if dtype not in spec.get("ort_dtypes", (dtype,)):
                continue
            sess = peers.ort_session(ort_model(p, dtype), spec["threads"])
            y = np.empty((1, layer.o, layer.out_hw, layer.out_hw), out_dtype)
            call = peers.ort_bound_call(sess, ort_feed(p, dtype), y, "x", "y")
            call()
            # int8: recorded, not blocking (a peer's exactness is information)
            check = None if dtype == "fp32" else \
                compare_exact((y.view(np.int8) ^ np.int8(-128) if dtype == "uint8" else y).transpose(0, 2, 3, 1), y_ref)
            out["results"].append(measure(layer, "ort", op, spec["threads"], spec["timing"], call, check))
            del sess


def _worker_numpy(spec: dict, out: dict) -> None:
    import numpy as np
    peers.numpy_setup(spec, out)
    for layer, p in _problems(spec):
        conv, x = NumpyConv(layer, p.w_float(), p.b_float(), np.float32), p.x_float()
        out["results"].append(measure(layer, "numpy", "conv-f32", spec["threads"], spec["timing"],
                                             lambda conv=conv, x=x: conv(x)))


def _worker_xnnpack(spec: dict, out: dict) -> None:
    peers.xnnpack_setup(out)
    for layer, p in _problems(spec):
        out["results"].append(peers.xnnpack_measure(layer, spec, p.x, (1, layer.out_hw, layer.out_hw, layer.o)))


WORKERS = {"qkernels": _worker_qkernels, "ort": _worker_ort, "numpy": _worker_numpy, "xnnpack": _worker_xnnpack}


# ---------------------------------------------------------------- the parent process

#: Where the models are looked for, and which layers XNNPACK runs (shared with the gemm suite).
tflite_candidates, _xnnpack_plan = peers.tflite_candidates, peers.xnnpack_plan


def _row(layer: Layer, recs: dict, find) -> dict:
    """ms and GOP/s of each column, the ratios, the checks."""
    gops, ms = gops_ms(recs)
    q, found = gops["qkernels"], {col: gops[col] for col in INT8_PEERS if gops[col]}
    fastest = max(found, key=found.get) if found else None
    return {"geometry": layer.geometry, "depthwise": layer.depthwise, "ops": layer.ops, "gops": gops, "ms": ms,
            "x_ort_int8": ratio(q, max((gops[c] for c in ORT_INT8 if gops[c]), default=None)),
            "x_ort_u8_noamx": ratio(q, gops["ort-u8-noamx"]), "x_xnnpack_noamx": ratio(q, gops["xnnpack-noamx"]),
            "fastest_peer": fastest, "x_fastest_peer": ratio(q, found.get(fastest)),
            "qkernels_exact": (recs["qkernels"].get("check") or {}).get("exact"),
            "ort_int8_exact": (recs["ort-int8"].get("check") or {}).get("exact"),
            "ort_u8_exact": (recs["ort-u8"].get("check") or {}).get("exact")}


def format_table(report: dict) -> str:
    """The human-readable tables of a report made by :func:`run_bench`."""
    m = report["machine"]
    names = [f"ONNX Runtime {m['onnxruntime']} QLinearConv s8 and u8 activations (NCHW) and Conv float32"] \
        if m.get("onnxruntime") else []
    names.append(blas_label(m) + " im2col")
    if m.get("ai_edge_litert"):
        names.append(f"XNNPACK (ai-edge-litert {m['ai_edge_litert']}, other weights: times only)")
    legend = ("ms per call (median); GOP/s = 2*MACs / that time; x ORT8 and x peer: qkernels over ORT int8 "
              "(the faster of s8 and u8) and over the fastest int8 peer; each library and thread count in its "
              "own process; ORT=ref: ORT's s8 / u8 outputs equal to the exact reference")
    lines = [isa_line(m, "int8 convolution"), "peers: " + ", ".join(names), legend, ""]
    head = f"{'layer':<18}{'geometry':<24}{'thr':>3}"
    hdr = (head + "".join(f"{TITLES[c]:>10}" for c in COLUMNS) + f"{'x ORT8':>8}{'x peer':>8}  exact  ORT=ref")
    lines += ["ms per call:", hdr, "-" * len(hdr)]
    for r in report["rows"]:
        exact = {True: "yes", False: "WRONG", None: "-"}[r["qkernels_exact"]]
        yn = {True: "yes", False: "no", None: "-"}
        ort_ok = f"{yn[r['ort_int8_exact']]}/{yn[r.get('ort_u8_exact')]}"
        lines.append(f"{r['shape']:<18}{r['geometry']:<24}{r['threads']:>3}"
                     + "".join(cell(r["ms"][c], "{:.3f}", 10) for c in COLUMNS)
                     + f"{cell(r['x_ort_int8'], '{:.2f}', 8)}{cell(r['x_fastest_peer'], '{:.2f}', 8)}"
                     f"  {exact:<7}{ort_ok}" + busy_mark(r))
    hdr = head + "".join(f"{TITLES[c]:>10}" for c in COLUMNS) + f"{'% peak':>8}"
    lines += ["", "GOP/s (% peak: qkernels, not for depthwise layers):", peak_line(m), hdr, "-" * len(hdr)]
    for r in report["rows"]:
        lines.append(f"{r['shape']:<18}{r['geometry']:<24}{r['threads']:>3}"
                     + "".join(cell(r["gops"][c], "{:.1f}", 10) for c in COLUMNS)
                     + cell(r.get("pct_peak"), "{:.0f}", 8))
    return "\n".join(lines + format_footer(report))


def run_bench(layer_list, threads_list, *, quick: bool = False, rounds: int = 1, isa: str | None = None,
              seed: int = 0, libs=LIBS, progress=None, wait_idle_s: float = 0.0, tflite_dir=None,
              timing: dict | None = None) -> dict:
    """Run every (library, thread count) worker ``rounds`` times; return the report dict
    (``timing``: overrides the quick/full batch settings)."""
    timing, notes, libs = run_setup(quick, libs, timing)
    extra = {lib: (layer_list, {}) for lib in libs}
    folder = None
    if "xnnpack" in libs:
        folder, x_layers, x_notes = _xnnpack_plan(layer_list, tflite_dir)
        notes += x_notes
        for lib in [lib for lib in libs if lib.startswith("xnnpack")]:
            run_only(libs, extra, lib, x_layers, {"tflite_dir": folder})
    if "ort-noamx" in libs:          # ONNX Runtime without AMX: its fast (u8) configuration only
        extra["ort-noamx"] = (layer_list, {"ort_dtypes": ["uint8"]})
    got = collect(SUITE.name, libs, layer_list, threads_list, timing=timing, rounds=rounds, isa=isa,
                  seed=seed, progress=progress, wait_idle_s=wait_idle_s, extra_by_lib=extra)
    notes += [f"XNNPACK not timed at {r['shape']}: {r['error']}" for r in got["results"]
              if r["lib"] == "xnnpack" and r.get("error")]
    notes += [NOAMX_NOTE] if any(lib.endswith("-noamx") for lib in libs) else []
    machine = dict(got["machine"], ai_edge_litert=got["infos"].get("xnnpack", {}).get("ai_edge_litert"))
    settings = settings_of("layers", layer_list, threads_list, quick=quick, rounds=rounds, wait_idle_s=wait_idle_s,
                           timing=timing, seed=seed, isa=isa, tflite_dir=folder)
    report = SUITE.report(dict(got, machine=machine), layer_list, threads_list, notes, settings,
                          layers=[dict(la._asdict(), ops=la.ops, geometry=la.geometry) for la in layer_list])
    # % peak of the int8 dot-product instruction: not for depthwise layers, which do not run on it
    add_peak(report["rows"], report["machine"], "int8", lambda r: r["gops"]["qkernels"], layer_list,
             applies=lambda r: not r["depthwise"])
    return report


SUITE = Suite("conv", COLUMNS, _row, (
    Target("x_ort_int8", TARGET_RATIO_ORT_INT8,
           f"conv >= {TARGET_RATIO_ORT_INT8:g}x ONNX Runtime int8 (QLinearConv, the faster of s8/u8)",
           when=lambda r: not r["depthwise"]),
    Target("x_fastest_peer", TARGET_RATIO_DW_PEER,
           lambda r: f"depthwise >= {TARGET_RATIO_DW_PEER:g}x the fastest int8 peer ({TITLES.get(r['fastest_peer'])})",
           when=lambda r: r["depthwise"]),
), layers, run_bench, format_table, options=("tflite_dir",))
