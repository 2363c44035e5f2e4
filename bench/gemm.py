"""``qkernels bench`` (``--suite gemm``): int8 GEMM speed beside numpy float32 and ONNX Runtime int8.

The shape table here (:data:`SHAPES`) is the one table that the CLI, the
pytest-benchmark suite (``bench/test_bench_gemm.py``, through ``bench/shapes.py``)
and ``docs/performance.md`` all read.

What is timed, per shape and per thread count:

* qkernels: ``qkernels.matmul`` of uint8 A (per tensor) by int8 B (per column,
  :class:`~qkernels.PackedWeights` packed once outside the timing), fp32
  requantization to a uint8 output written into a preallocated ``out=``;
* numpy: float32 ``np.matmul(a, b, out=c)`` on the same shapes (its BLAS);
* ONNX Runtime (when ``onnxruntime`` and ``onnx`` import): a one-node
  ``QLinearMatMul`` model (uint8 A, int8 B per column as an initializer, uint8
  output) run through an I/O binding with a preallocated output;
* outside ``--quick`` also the raw int32 accumulators: ``qkernels.matmul(...,
  out_dtype=np.int32)`` beside ONNX Runtime ``MatMulInteger``;
* ``xnnpack``: TFLite's XNNPACK (``ai_edge_litert``'s ``Interpreter``) invoking a
  one-layer int8 ``FULLY_CONNECTED`` model (Keras ``Dense``, per-channel int8 weights,
  int8 activations) of the same M, N, K, for the shapes that name one
  (:attr:`Shape.tflite`: square-1024 and gemv-1024), read from ``--tflite-dir`` (default
  ``bench/tflite``); other weights: times only. Skipped with a note when
  ``ai_edge_litert`` or the model is missing.

Each library and thread count runs in its own process (:mod:`harness`). Before
timing, one qkernels call per shape is checked against an exact numpy reference (int32
sums and the requantized uint8 output); a wrong result posts no number and makes the
command exit with status 1.

Imports neither qkernels nor numpy at module level (:mod:`worker` says why).
"""
from __future__ import annotations

from typing import NamedTuple

from . import peers
from .harness import Suite, Target, add_peak, blas_label, busy_mark, cell, collect, format_footer, isa_line, \
    peak_line, ratio, run_only, run_setup, selector, settings_of
from .timing import compare_exact, measure, worker_problems


class Shape(NamedTuple):
    """One GEMM ``(M, K) @ (K, N)``: where it comes from and how it is named."""
    m: int
    n: int
    k: int
    label: str
    source: str
    wbits: int = 8   # weights drawn from the symmetric range of this many bits
    tflite: str = ""     # the .tflite model of this GEMM for XNNPACK ("" when none)

    @property
    def ops(self) -> int:
        """Operations of one call, counting a multiply-add as two."""
        return 2 * self.m * self.n * self.k

    @property
    def mnk(self) -> str:
        return f"{self.m}x{self.n}x{self.k}"

    def record_fields(self) -> dict:
        """What a timing record says of its shape (besides the label)."""
        return {"m": self.m, "n": self.n, "k": self.k}


#: The GEMM shapes of the benchmarks: (M, N, K, label, source).
SHAPES: tuple[Shape, ...] = (
    Shape(1024, 1024, 1024, "square-1024",
          "square GEMM; the project's target shape (int8 >= 2x numpy float32 on 1 thread)",
          tflite="gemm1024_int8.tflite"),
    Shape(256, 256, 256, "square-256", "square GEMM whose operands fit in L2"),
    Shape(64, 64, 64, "square-64", "small square GEMM: per-call overhead dominates"),
    Shape(1, 1024, 1024, "gemv-1024",
          "GEMV: batch-1 fully connected / transformer projection, 1024 -> 1024", tflite="gemv1024_int8.tflite"),
    Shape(3136, 64, 64, "conv1x1-56",
          "MobileNetV2-style 1x1 convolution, 64 -> 64 channels on a 56x56 map "
          "(M = 56*56; ResNet-50 layer1 conv1 is this GEMM)"),
    Shape(784, 128, 576, "conv3x3-28-im2col",
          "ResNet 3x3 convolution 64 -> 128 channels with a 28x28 output, as im2col "
          "(M = 28*28, K = 3*3*64; ResNet-18 layer2 conv1)"),
    Shape(1024, 1024, 1024, "square-1024-w7",
          "square-1024 with 7-bit weights in [-64, 63] (ONNX Runtime's advice for AVX2): "
          "qkernels' provably exact vpmaddubsw kernel, and ONNX Runtime exact too", 7),
    Shape(3136, 64, 64, "conv1x1-56-w7", "conv1x1-56 with 7-bit weights in [-64, 63]", 7),
    Shape(128, 384, 384, "proj-128x384",
          "transformer attention projection (Q, K, V or output), 128 tokens, d_model 384 "
          "(MiniLM / DeiT-S class)"),
    Shape(128, 1536, 384, "ffn-128x1536x384",
          "transformer feed-forward up-projection 384 -> 1536 (4 x d_model), 128 tokens"),
)

#: Labels of the shapes ``qkernels bench --quick`` runs.
QUICK: tuple[str, ...] = ("square-1024", "square-64", "gemv-1024", "conv1x1-56", "square-1024-w7", "proj-128x384")

#: The project's targets, checked at the end of every run.
TARGET_RATIO_NUMPY_1024 = 2.0   # int8 GEMM >= 2x numpy float32 GOP/s at 1024^3, 1 thread
TARGET_RATIO_ORT = 1.0          # int8 GEMM >= ONNX Runtime int8 at every shape

LIBS = ("qkernels", "numpy", "ort", "ort-noamx", "xnnpack", "xnnpack-noamx")
#: Report columns: name -> (worker library, op) of its records.
COLUMNS = {"qkernels": ("qkernels", "matmul-u8"), "numpy": ("numpy", "matmul-f32"), "ort": ("ort", "QLinearMatMul"),
           "qkernels_i32": ("qkernels", "matmul-i32"), "ort_matmulinteger": ("ort", "MatMulInteger"),
           "xnnpack": ("xnnpack", "tflite-s8"), "ort_noamx": ("ort-noamx", "QLinearMatMul"),
           "xnnpack_noamx": ("xnnpack-noamx", "tflite-s8")}
#: What the columns of the peers with AMX denied are.
NOAMX_NOTE = ("noAMX columns: ONNX Runtime / XNNPACK in a process where Linux refuses them AMX tiles (a small "
              "sigaltstack), so they run their AVX-512 VNNI (vpdpbusd) kernels: the VNNI-only peer")
#: The shapes named by ``labels`` (all, or the quick subset, when None).
shapes = selector(SHAPES, QUICK)


# ---------------------------------------------------------------- problems and references

class Problem(NamedTuple):
    """Deterministic data of one shape: the same in every worker process."""
    shape: Shape
    a: object          # uint8 (M, K)
    za: int
    sa: float
    b: object          # int8 (K, N), symmetric per column (zero point 0)
    sb: object         # float32 (N,)
    sy: float
    zy: int


def make_problem(shape: Shape, seed: int = 0) -> Problem:
    """Full-range uint8 activations and int8 weights (full range, or ``shape.wbits``
    bits), an output scale that keeps most outputs inside uint8 (about 3 standard
    deviations)."""
    import numpy as np
    rng = np.random.default_rng([seed, shape.m, shape.n, shape.k])
    a = rng.integers(0, 256, (shape.m, shape.k), dtype=np.uint8)
    half = 127 if shape.wbits >= 8 else 2 ** (shape.wbits - 1)
    b = rng.integers(-half, half if shape.wbits < 8 else half + 1, (shape.k, shape.n), dtype=np.int8)
    za = int(rng.integers(100, 156))
    sa = float(np.float32(0.02))
    sb = rng.uniform(0.005, 0.015, shape.n).astype(np.float32)
    sigma_acc = np.sqrt(shape.k) * 74.0 * (73.6 * half / 127)   # std of a sum of K products
    sy = float(np.float32(3.0 * sa * float(sb.mean()) * sigma_acc / 127.0))
    return Problem(shape, a, za, sa, b, sb, sy, 128)


def reference(p: Problem):
    """Exact int64 sums ``(a - za) @ b`` and the fp32-requantized uint8 output
    (ONNX QLinearMatMul: ``clamp(rint(float32(acc) * (sa*sb/sy)) + zy)``).

    The sums go through float64 BLAS: every partial sum is an integer below
    2^53 for these shapes (|term| <= 255*127, K <= 2^14), so they are exact."""
    import numpy as np
    if p.shape.k > 1 << 14:
        raise ValueError("float64 reference is exact only for K <= 16384")
    acc = (p.a.astype(np.float64) - p.za) @ p.b.astype(np.float64)
    acc = np.rint(acc).astype(np.int64)
    return acc, requantize(acc, p.sa, p.sb, p.sy, p.zy, np.uint8)


def requantize(acc, sa, sb, sy, zy, dtype):
    """ONNX QLinear* output of the int32 sums ``acc`` (..., N), per-column ``sb``:
    ``saturate(rint(float32(acc) * (sa*sb/sy)) + zy)`` in float32, ONNX Runtime's order."""
    import numpy as np
    info = np.iinfo(dtype)
    scale = (np.float32(sa) * sb) / np.float32(sy)
    y = np.rint(acc.astype(np.int32).astype(np.float32) * scale) + np.float32(zy)
    return np.clip(y, info.min, info.max).astype(dtype)


def ort_model(p: Problem, op: str = "QLinearMatMul") -> bytes:
    """A one-node ONNX model of ``p``: ``QLinearMatMul`` (uint8 output) or
    ``MatMulInteger`` (int32 output); B and the parameters are initializers."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
    m, n, k = p.shape.m, p.shape.n, p.shape.k
    t = numpy_helper.from_array
    inits = [t(p.b, "B"), t(np.array(p.za, np.uint8), "a_zero_point")]
    if op == "QLinearMatMul":
        inits += [t(np.array(p.sa, np.float32), "a_scale"), t(p.sb.astype(np.float32), "b_scale"),
                  t(np.zeros(n, np.int8), "b_zero_point"), t(np.array(p.sy, np.float32), "y_scale"),
                  t(np.array(p.zy, np.uint8), "y_zero_point")]
        node = helper.make_node(op, ["A", "a_scale", "a_zero_point", "B", "b_scale", "b_zero_point",
                                     "y_scale", "y_zero_point"], ["Y"])
        out_type = TensorProto.UINT8
    elif op == "MatMulInteger":
        node = helper.make_node(op, ["A", "B", "a_zero_point"], ["Y"])
        out_type = TensorProto.INT32
    else:
        raise ValueError(f"op must be QLinearMatMul or MatMulInteger, got {op!r}")
    graph = helper.make_graph([node], f"{op}_{p.shape.label}",
                              [helper.make_tensor_value_info("A", TensorProto.UINT8, [m, k])],
                              [helper.make_tensor_value_info("Y", out_type, [m, n])], inits)
    return peers.onnx_bytes(graph)


# ---------------------------------------------------------------- workers (in their own processes)

def _problems(spec: dict):
    return worker_problems(spec, Shape, make_problem)


def _worker_qkernels(spec: dict, out: dict) -> None:
    import numpy as np
    qk = peers.qkernels_setup(spec, out)
    threads = spec["threads"]
    for shape, p in _problems(spec):
        acc_ref, y_ref = reference(p)
        aq = qk.QTensor(p.a, p.sa, p.za)
        pw = qk.pack_weights(qk.QTensor(p.b, p.sb, 0, axis=1))
        y = np.empty((shape.m, shape.n), np.uint8)
        acc = np.empty((shape.m, shape.n), np.int32)

        def call_u8(aq=aq, pw=pw, p=p, y=y):
            return qk.matmul(aq, pw, out_scale=p.sy, out_zero_point=p.zy, out=y)

        def call_i32(aq=aq, pw=pw, acc=acc):
            return qk.matmul(aq, pw, out_dtype=np.int32, out=acc)

        call_i32()                     # packs B once, outside the timing
        check_i32 = dict(compare_exact(acc, acc_ref), blocking=True)
        call_u8()
        check_u8 = dict(compare_exact(y, y_ref), blocking=True)
        check = dict(check_u8, int32_sums=check_i32)
        check["exact"] = check_u8["exact"] and check_i32["exact"]
        out["results"].append(measure(shape, "qkernels", "matmul-u8", threads, spec["timing"], call_u8, check))
        if spec["int32"]:
            out["results"].append(measure(shape, "qkernels", "matmul-i32", threads, spec["timing"], call_i32,
                                          check_i32))


def _dequantized_f32(p: Problem):
    import numpy as np
    return (p.a.astype(np.float32) - np.float32(p.za)) * np.float32(p.sa), p.b.astype(np.float32) * p.sb


def _worker_numpy(spec: dict, out: dict) -> None:
    peers.numpy_setup(spec, out)
    peers.matmul_worker(spec, out, _problems(spec), _dequantized_f32)


def _worker_ort(spec: dict, out: dict) -> None:
    import numpy as np
    peers.ort_setup(out)
    threads = spec["threads"]
    ops = ["QLinearMatMul"] + (["MatMulInteger"] if spec["int32"] else [])
    for shape, p in _problems(spec):
        acc_ref, y_ref = reference(p)
        for op in ops:
            sess = peers.ort_session(ort_model(p, op), threads)
            dtype, ref = (np.uint8, y_ref) if op == "QLinearMatMul" else (np.int32, acc_ref)
            y = np.empty((shape.m, shape.n), dtype)
            call = peers.ort_bound_call(sess, p.a, y)
            call()
            check = compare_exact(y, ref)   # recorded, not blocking: a peer's exactness is information
            out["results"].append(measure(shape, "ort", op, threads, spec["timing"], call, check))
            del sess


def _worker_xnnpack(spec: dict, out: dict) -> None:
    import numpy as np
    peers.xnnpack_setup(out)
    for shape, p in _problems(spec):
        x = (p.a ^ np.uint8(0x80)).view(np.int8)      # the same activations as int8 (its models take int8)
        out["results"].append(peers.xnnpack_measure(shape, spec, x, (shape.m, shape.n)))


#: The workers of this suite, by library: ``worker(spec, out)`` fills ``out``.
WORKERS = {"qkernels": _worker_qkernels, "numpy": _worker_numpy, "ort": _worker_ort, "xnnpack": _worker_xnnpack}


# ---------------------------------------------------------------- the parent process

def _row(s: Shape, recs: dict, find) -> dict:
    """GOP/s of each library and the ratios."""
    g = {col: r.get("gops_median") for col, r in recs.items()}
    return {"mnk": s.mnk, **g, "qkernels_exact": (recs["qkernels"].get("check") or {}).get("exact"),
            "ort_check": recs["ort"].get("check"), "x_numpy": ratio(g["qkernels"], g["numpy"]),
            "x_ort": ratio(g["qkernels"], g["ort"]), "x_xnnpack": ratio(g["qkernels"], g["xnnpack"]),
            "x_ort_noamx": ratio(g["qkernels"], g["ort_noamx"]), "x_xnnpack_noamx": ratio(g["qkernels"], g["xnnpack_noamx"]),
            "x_ort_matmulinteger": ratio(g["qkernels_i32"], g["ort_matmulinteger"])}


def format_table(report: dict) -> str:
    """The human-readable table of a report made by :func:`run_bench`."""
    m = report["machine"]
    qi = (m.get("qkernels_cpu_info") or {})
    lines = [
        isa_line(m, "int8 GEMM"),
        "peers: " + blas_label(m)
        + (f", ONNX Runtime {m['onnxruntime']} QLinearMatMul u8 x s8" if m.get("onnxruntime") else "")
        + (f", XNNPACK (ai-edge-litert {m['ai_edge_litert']}) FULLY_CONNECTED s8 x s8, other weights: times only"
           if m.get("ai_edge_litert") else ""),
        "GOP/s = 2*M*N*K / median time per call; each library and thread count in its own process",
        peak_line(m),
        "",
    ]
    hdr = (f"{'ISA':<11}{'shape':<19}{'M x N x K':<16}{'thr':>3} {'qkernels':>9}{'% peak':>7}{'numpy':>8}{'ORT':>8}"
           f"{'XNNPACK':>8}{'ORTnoAMX':>9}{'XNNnoAMX':>9}{'x numpy':>9}{'x ORT':>7}{'x XNN':>7}{'x ORTn':>7}"
           f"{'x XNNn':>7}  exact")
    lines += [hdr, "-" * len(hdr)]
    for r in report["rows"]:
        exact = {True: "yes", False: "WRONG", None: "-"}[r["qkernels_exact"]]
        lines.append(f"{qi.get('isa', '?'):<11}{r['shape']:<19}{r['mnk']:<16}{r['threads']:>3} "
                     f"{cell(r['qkernels'], '{:.1f}', 9)}{cell(r.get('pct_peak'), '{:.0f}', 7)}"
                     f"{cell(r['numpy'])}{cell(r['ort'])}{cell(r.get('xnnpack'))}"
                     f"{cell(r.get('ort_noamx'), '{:.1f}', 9)}{cell(r.get('xnnpack_noamx'), '{:.1f}', 9)}"
                     f"{cell(r['x_numpy'], '{:.2f}', 9)}{cell(r['x_ort'], '{:.2f}', 7)}"
                     f"{cell(r.get('x_xnnpack'), '{:.2f}', 7)}{cell(r.get('x_ort_noamx'), '{:.2f}', 7)}"
                     f"{cell(r.get('x_xnnpack_noamx'), '{:.2f}', 7)}  {exact}"
                     + busy_mark(r))
    if any(r["qkernels_i32"] or r["ort_matmulinteger"] for r in report["rows"]):
        lines += ["", "int32 accumulators (qkernels out_dtype=int32 vs ONNX Runtime MatMulInteger), GOP/s:",
                  f"{'shape':<19}{'thr':>3} {'qkernels':>9}{'ORT MMI':>9}{'x ORT':>7}"]
        for r in report["rows"]:
            lines.append(f"{r['shape']:<19}{r['threads']:>3} {cell(r['qkernels_i32'], '{:.1f}', 9)}"
                         f"{cell(r['ort_matmulinteger'], '{:.1f}', 9)}"
                         f"{cell(r['x_ort_matmulinteger'], '{:.2f}', 7)}")
    inexact = [r for r in report["results"]
               if r["lib"].startswith("ort") and r.get("check") and not r["check"]["exact"]]
    if inexact:
        lines += ["", "ONNX Runtime outputs differing from the exact reference "
                      "(u8 x s8 AVX2 saturation; qkernels is exact):"]
        seen = {}
        for r in sorted(inexact, key=lambda r: (r["op"], r["threads"])):
            c = r["check"]
            key = (r["op"], r["shape"], c["mismatches"], c["size"], c["max_abs_diff"])
            seen.setdefault(key, []).append(r["threads"])
        for (op, label, bad, size, diff), thr in seen.items():
            lines.append(f"  {op:<14}{label:<19}{bad}/{size} outputs ({100.0 * bad / size:.1f} %), "
                         f"max diff {diff} (threads {', '.join(map(str, thr))})")
    return "\n".join(lines + format_footer(report))


def run_bench(shape_list, threads_list, *, quick: bool = False, int32: bool | None = None, rounds: int = 1,
              isa: str | None = None, seed: int = 0, libs=LIBS, progress=None,
              wait_idle_s: float = 0.0, tflite_dir=None, timing: dict | None = None) -> dict:
    """Run every (library, thread count) worker ``rounds`` times; return the report dict
    (``timing``: overrides the quick/full batch settings)."""
    timing, notes, libs = run_setup(quick, libs, timing)
    if int32 is None:
        int32 = not quick
    extra = {lib: (shape_list, {"int32": int32}) for lib in libs}
    folder = None
    if "xnnpack" in libs:
        folder, x_shapes, x_notes = peers.xnnpack_plan(shape_list, tflite_dir)
        notes += x_notes
        for lib in [lib for lib in libs if lib.startswith("xnnpack")]:
            run_only(libs, extra, lib, x_shapes, {"tflite_dir": folder})
    got = collect(SUITE.name, libs, shape_list, threads_list, timing=timing, rounds=rounds, isa=isa, seed=seed,
                  progress=progress, wait_idle_s=wait_idle_s, extra_by_lib=extra)
    notes += [f"XNNPACK not timed at {r['shape']}: {r['error']}" for r in got["results"]
              if r["lib"] == "xnnpack" and r.get("error")]
    notes += [NOAMX_NOTE] if any(lib.endswith("-noamx") for lib in libs) else []
    got = dict(got, machine=dict(got["machine"], ai_edge_litert=got["infos"].get("xnnpack", {}).get("ai_edge_litert")))
    settings = settings_of("shapes", shape_list, threads_list, quick=quick, rounds=rounds, wait_idle_s=wait_idle_s,
                           timing=timing, int32=int32, seed=seed, isa=isa, tflite_dir=folder)
    report = SUITE.report(got, shape_list, threads_list, notes, settings,
                          shapes=[dict(s._asdict(), ops=s.ops) for s in shape_list])
    add_peak(report["rows"], report["machine"], "int8", lambda r: r["qkernels"], shape_list)
    return report


SUITE = Suite("gemm", COLUMNS, _row, (
    Target("x_numpy", TARGET_RATIO_NUMPY_1024, f"int8 >= {TARGET_RATIO_NUMPY_1024:g}x numpy float32, 1024^3, 1 thread",
           when=lambda r: r["shape"] == "square-1024" and r["threads"] == 1),
    Target("x_ort", TARGET_RATIO_ORT, "int8 >= ONNX Runtime int8 (QLinearMatMul)"),
    Target("x_ort_noamx", TARGET_RATIO_ORT, "int8 >= ONNX Runtime int8 without AMX (its VNNI path)"),
), shapes, run_bench, format_table, options=("tflite_dir",))
