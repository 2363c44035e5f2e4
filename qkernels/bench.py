"""``qkernels bench``: int8 GEMM speed beside numpy float32 and ONNX Runtime int8.

The shape table here (:data:`SHAPES`) is the one table that the CLI, the
pytest-benchmark suite (``bench/``, which imports it through ``bench/shapes.py``)
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
  out_dtype=np.int32)`` beside ONNX Runtime ``MatMulInteger``.

Timing discipline: every (library, thread count) pair runs in its own Python
process, started with ``sys.executable`` and told its thread count through the
environment (``QKERNELS_NUM_THREADS``; ``OPENBLAS_NUM_THREADS``/``OMP_NUM_THREADS``/
``MKL_NUM_THREADS`` and, where possible, the BLAS's own ``set_num_threads``;
ONNX Runtime's ``intra_op_num_threads``): idle worker threads of one library
would otherwise steal a core from the next. The numpy process runs without
``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE``, which, when a machine sets them,
slow a current numpy's OpenBLAS. Each call is warmed up, then repeated in batches
of at least ``min_time`` seconds; the median batch time per call is reported
(the minimum is kept too). Before timing, one qkernels call per shape is checked
against an exact numpy reference (int32 sums and the requantized uint8 output);
a wrong result posts no number and makes the command exit with status 1.

This module must stay importable on its own, without importing the ``qkernels``
package at module level: the worker processes import it from its folder as a
submodule of a stand-in package (``_BOOT``), so that the numpy and ONNX Runtime
workers never load qkernels' OpenMP runtime. The convolution suite
(:mod:`qkernels.bench_conv`, ``--suite conv``), the fp16 GEMM suite
(:mod:`qkernels.bench_f16`, ``--suite f16``) and the whole-model suite
(:mod:`qkernels.bench_models`, ``--suite models``) run on the same machinery:
:func:`run_worker`, :func:`collect`, :func:`time_call`, :func:`make_report`, :func:`run_cli`.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import time
from typing import NamedTuple


class Shape(NamedTuple):
    """One GEMM ``(M, K) @ (K, N)``: where it comes from and how it is named."""
    m: int
    n: int
    k: int
    label: str
    source: str
    wbits: int = 8   # weights drawn from the symmetric range of this many bits

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
          "square GEMM; the project's target shape (int8 >= 2x numpy float32 on 1 thread)"),
    Shape(256, 256, 256, "square-256", "square GEMM whose operands fit in L2"),
    Shape(64, 64, 64, "square-64", "small square GEMM: per-call overhead dominates"),
    Shape(1, 1024, 1024, "gemv-1024",
          "GEMV: batch-1 fully connected / transformer projection, 1024 -> 1024"),
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

LIBS = ("qkernels", "numpy", "ort")
#: A worker during which other processes kept more than this many CPUs busy gets a warning.
FOREIGN_CPUS_WARN = 0.15
_SETTINGS = {  # seconds per timed batch, batches per measurement, warm-up seconds
    "quick": {"min_time": 0.02, "repeats": 7, "warmup": 0.05},
    "full": {"min_time": 0.05, "repeats": 15, "warmup": 0.15},
}
_NUMPY_UNSET_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def shapes(labels=None, quick: bool = False) -> list[Shape]:
    """The shapes named by ``labels`` (all, or the quick subset, when None)."""
    return select(SHAPES, QUICK, labels, quick)


def select(table, quick_labels, labels=None, quick: bool = False, what: str = "shape") -> list:
    """The items of ``table`` named by ``labels`` (all, or those in ``quick_labels``,
    when None); ValueError naming any unknown label."""
    if labels:
        by_label = {s.label: s for s in table}
        unknown = [lab for lab in labels if lab not in by_label]
        if unknown:
            raise ValueError(f"unknown {what} label(s) {', '.join(unknown)}; "
                             f"expected some of {', '.join(by_label)}")
        return [by_label[lab] for lab in labels]
    if quick:
        return [s for s in table if s.label in quick_labels]
    return list(table)


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


def _compare(got, want) -> dict:
    import numpy as np
    diff = np.abs(got.astype(np.int64) - want.astype(np.int64))
    bad = int(np.count_nonzero(diff))
    return {"exact": bad == 0, "mismatches": bad, "size": int(diff.size),
            "max_abs_diff": int(diff.max()) if diff.size else 0}


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
    return onnx_bytes(graph)


def onnx_bytes(graph) -> bytes:
    """The checked, serialized opset-13 model of one ONNX ``graph``."""
    import onnx
    from onnx import helper
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="qkernels.bench")
    model.ir_version = 7           # opset 13's IR: loadable by any ONNX Runtime >= 1.8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def ort_session(model: bytes, threads: int, spinning: bool = True, optimize: bool = True):
    """An ONNX Runtime CPU session of ``model`` on ``threads`` threads (``optimize``:
    its graph optimizations, on by default; off, a QDQ model runs its float operators
    between the quantize/dequantize steps)."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if not spinning:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def ort_bound_call(sess, a, out, in_name: str = "A", out_name: str = "Y"):
    """A no-argument callable running ``sess`` on ``a`` into the preallocated ``out``."""
    io = sess.io_binding()
    io.bind_cpu_input(in_name, a)
    io.bind_output(out_name, "cpu", 0, out.dtype, list(out.shape), out.ctypes.data)
    run = sess.run_with_iobinding
    return lambda _keep=(a, out): run(io)      # the bound buffers live as long as the call


# ---------------------------------------------------------------- BLAS threads

def _openblas_libs():
    """ctypes handles of the OpenBLAS libraries loaded in this process (Linux)."""
    import ctypes
    paths = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.rsplit(None, 1)[-1] if "/" in line else ""
                if "openblas" in path.lower() and path not in paths:
                    paths.append(path)
    except OSError:
        return []
    libs = []
    for path in paths:
        try:
            libs.append(ctypes.CDLL(path))
        except OSError:
            pass
    return libs


def _blas_sym(lib, stem: str):
    for name in (f"openblas_{stem}", f"openblas_{stem}64_", f"scipy_openblas_{stem}64_",
                 f"scipy_openblas_{stem}"):
        fn = getattr(lib, name, None)
        if fn is not None:
            return fn
    return None


def blas_set_num_threads(n: int) -> bool:
    """Limit numpy's BLAS to ``n`` threads now (threadpoolctl, else OpenBLAS via
    ctypes). Returns False when no way was found."""
    import numpy  # noqa: F401  (loads the BLAS)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(limits=n, user_api="blas")
        return True
    except ImportError:
        pass
    done = False
    for lib in _openblas_libs():
        fn = _blas_sym(lib, "set_num_threads")
        if fn is not None:
            fn(int(n))
            done = True
    return done


def blas_info() -> dict:
    """numpy's BLAS: name, version, core type and threads, as far as known."""
    import ctypes
    import numpy as np
    info = {}
    try:
        cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info.update(name=cfg.get("name"), version=cfg.get("version"))
    except Exception:  # noqa: BLE001 - older numpy: no dict mode
        pass
    for lib in _openblas_libs():
        for key, stem, restype in (("corename", "get_corename", ctypes.c_char_p),
                                   ("config", "get_config", ctypes.c_char_p),
                                   ("num_threads", "get_num_threads", ctypes.c_int)):
            fn = _blas_sym(lib, stem)
            if fn is not None:
                fn.restype = restype
                val = fn()
                info[key] = val.decode() if isinstance(val, bytes) else val
        break
    return info


# ---------------------------------------------------------------- timing (in the workers)

def time_call(fn, min_time: float, repeats: int, warmup: float) -> dict:
    """Median and minimum seconds per call of ``fn`` over ``repeats`` batches,
    each batch at least ``min_time`` seconds, after ``warmup`` seconds of calls."""
    clock = time.perf_counter
    end = clock() + warmup
    calls = 0
    while calls < 2 or clock() < end:
        fn()
        calls += 1
    number = 1
    while True:
        t0 = clock()
        for _ in range(number):
            fn()
        dt = clock() - t0
        if dt >= min_time:
            break
        number = max(number * 2, int(number * min_time / max(dt, 1e-9) * 1.2))
    per_call = [dt / number]
    for _ in range(repeats - 1):
        t0 = clock()
        for _ in range(number):
            fn()
        per_call.append((clock() - t0) / number)
    per_call.sort()
    mid = len(per_call) // 2
    median = per_call[mid] if len(per_call) % 2 else 0.5 * (per_call[mid - 1] + per_call[mid])
    return {"median_s": median, "min_s": per_call[0], "number": number, "repeats": repeats}


def _measure(shape, lib: str, op: str, threads: int, timing: dict, fn, check=None) -> dict:
    """The timing record of ``fn`` on ``shape`` (a :class:`Shape` or any item with
    ``label``, ``ops`` (None: no GOP/s) and ``record_fields()``); a blocking wrong
    ``check`` is not timed."""
    rec = record(shape, lib, op, threads, check)
    if check_failed(check) and check.get("blocking", False):
        rec["error"] = "wrong result: not timed"
        return rec
    rec.update(time_call(fn, **timing))
    _add_gops(rec, shape.ops)
    return rec


def check_failed(check) -> bool:
    """Did a result's ``check`` fail: not exact (int8), or outside its accuracy bound
    (``within_bound``, fp16)? None (no check) is no failure."""
    return bool(check) and (check.get("exact") is False or check.get("within_bound") is False)


def record(shape, lib: str, op: str, threads: int, check=None, **more) -> dict:
    """A result record without timing (``more``: e.g. ``error=...``)."""
    return {"lib": lib, "op": op, "threads": threads, "shape": shape.label, **shape.record_fields(),
            "check": check, **more}


def _add_gops(rec: dict, ops: int | None) -> None:
    """GOP/s of a timed record doing ``ops`` operations per call (None: not counted, none)."""
    if ops is None:
        return
    rec["gops_median"] = ops / rec["median_s"] / 1e9
    rec["gops_max"] = ops / rec["min_s"] / 1e9


def _qkernels_setup(spec: dict, out: dict):
    """A qkernels worker's start: its threads set, its versions noted; returns the module."""
    import numpy as np
    import qkernels as qk
    qk.set_num_threads(spec["threads"])
    from .bench_peak import measure_clock
    out["info"] = {"cpu_info": qk.cpu_info(), "qkernels": qk.__version__, "numpy": np.__version__,
                   "clock": measure_clock()}
    return qk


def _numpy_setup(spec: dict, out: dict) -> None:
    """A numpy worker's start: its BLAS limited to the thread count, its BLAS noted."""
    import numpy as np
    controlled = blas_set_num_threads(spec["threads"])
    out["info"] = {"numpy": np.__version__, "blas": blas_info(), "blas_threads_set_at_runtime": controlled,
                   "env_unset": spec.get("env_unset", [])}


def _ort_setup(out: dict) -> None:
    import numpy as np
    import onnx
    import onnxruntime as ort
    out["info"] = {"onnxruntime": ort.__version__, "onnx": onnx.__version__, "numpy": np.__version__}


def worker_problems(spec: dict, cls=Shape, make=make_problem):
    """``(item, problem)`` for every item of a worker's spec (``cls``: the item type,
    ``make(item, seed)``: its problem builder)."""
    for fields in spec["shapes"]:
        item = cls(**fields)
        yield item, make(item, spec["seed"])


def _worker_qkernels(spec: dict, out: dict) -> None:
    import numpy as np
    qk = _qkernels_setup(spec, out)
    threads = spec["threads"]
    for shape, p in worker_problems(spec):
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
        check_i32 = dict(_compare(acc, acc_ref), blocking=True)
        call_u8()
        check_u8 = dict(_compare(y, y_ref), blocking=True)
        check = dict(check_u8, int32_sums=check_i32)
        check["exact"] = check_u8["exact"] and check_i32["exact"]
        out["results"].append(_measure(shape, "qkernels", "matmul-u8", threads, spec["timing"],
                                       call_u8, check))
        if spec["int32"]:
            out["results"].append(_measure(shape, "qkernels", "matmul-i32", threads, spec["timing"],
                                           call_i32, check_i32))


def matmul_worker(spec: dict, out: dict, problems, operands, lib: str = "numpy", op: str = "matmul-f32",
                  measure=None) -> None:
    """Time ``np.matmul(a, b, out=c)`` of every ``(shape, problem)`` of ``problems``
    (``operands(problem)``: ``(a, b)``; ``c`` of their result type, preallocated) with
    ``measure`` (default :func:`_measure`)."""
    import numpy as np
    measure = measure or _measure
    for shape, p in problems:
        a, b = operands(p)
        c = np.empty((shape.m, shape.n), np.result_type(a, b))

        def call(a=a, b=b, c=c):
            return np.matmul(a, b, out=c)

        out["results"].append(measure(shape, lib, op, spec["threads"], spec["timing"], call))


def _dequantized_f32(p: Problem):
    import numpy as np
    return (p.a.astype(np.float32) - np.float32(p.za)) * np.float32(p.sa), p.b.astype(np.float32) * p.sb


def _worker_numpy(spec: dict, out: dict) -> None:
    _numpy_setup(spec, out)
    matmul_worker(spec, out, worker_problems(spec), _dequantized_f32)


def _worker_ort(spec: dict, out: dict) -> None:
    import numpy as np
    _ort_setup(out)
    threads = spec["threads"]
    ops = ["QLinearMatMul"] + (["MatMulInteger"] if spec["int32"] else [])
    for shape, p in worker_problems(spec):
        acc_ref, y_ref = reference(p)
        for op in ops:
            sess = ort_session(ort_model(p, op), threads)
            dtype, ref = (np.uint8, y_ref) if op == "QLinearMatMul" else (np.int32, acc_ref)
            y = np.empty((shape.m, shape.n), dtype)
            call = ort_bound_call(sess, p.a, y)
            call()
            check = _compare(y, ref)   # recorded, not blocking: a peer's exactness is information
            out["results"].append(_measure(shape, "ort", op, threads, spec["timing"], call, check))
            del sess


#: The workers of this suite, by library: ``worker(spec, out)`` fills ``out``.
WORKERS = {"qkernels": _worker_qkernels, "numpy": _worker_numpy, "ort": _worker_ort}


def _worker_main(workers=None) -> int:
    """Entry point of a worker process: a JSON spec on stdin, JSON results on stdout.
    ``workers``: the suite's table (default: this module's :data:`WORKERS`)."""
    spec = json.loads(sys.stdin.read())
    out = {"lib": spec["lib"], "threads": spec["threads"], "results": [], "info": {}}
    (workers or WORKERS)[spec["lib"]](spec, out)
    sys.stdout.write("\n@@QKBENCH@@" + json.dumps(out) + "\n")
    return 0


# ---------------------------------------------------------------- the parent process

# A worker imports the suite module (argv[2]: "bench", "bench_conv") from this folder
# (argv[1]) as a submodule of a stand-in package: its relative imports work, and the
# qkernels package (its __init__, its OpenMP runtime) is never loaded unless the
# worker itself imports it.
_BOOT = ("import importlib, sys, types\n"
         "pkg = types.ModuleType('_qkernels_bench_worker')\n"
         "pkg.__path__ = [sys.argv[1]]\n"
         "sys.modules[pkg.__name__] = pkg\n"
         "sys.exit(importlib.import_module(pkg.__name__ + '.' + sys.argv[2])._worker_main())\n")


def _worker_env(lib: str, threads: int, isa: str | None) -> tuple[dict, list[str]]:
    env = dict(os.environ)
    unset = []
    blas_threads = threads if lib == "numpy" else 1
    env["OPENBLAS_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(blas_threads)
    env["OMP_NUM_THREADS"] = str(threads if lib in ("numpy", "qkernels") else 1)
    env["QKERNELS_NUM_THREADS"] = str(threads)
    if lib == "numpy":
        for var in _NUMPY_UNSET_ENV:
            if env.pop(var, None) is not None:
                unset.append(var)
    if isa and lib == "qkernels":
        env["QKERNELS_ISA"] = isa
    return env, unset


def run_worker(lib: str, threads: int, shape_list, timing: dict, *, module: str = "bench", seed: int = 0,
               isa: str | None = None, timeout: float = 600, **extra) -> dict:
    """Time ``lib`` on ``shape_list`` at ``threads`` threads in a fresh process running
    the workers of ``module`` (a suite module beside this one); ``extra`` goes into the
    worker's spec (e.g. ``int32=True``)."""
    import resource
    env, unset = _worker_env(lib, threads, isa)
    busy0, wall0 = _cpu_busy_s(), time.perf_counter()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    spec = {"lib": lib, "threads": threads, "shapes": [s._asdict() for s in shape_list],
            "timing": timing, "seed": seed, "env_unset": unset, **extra}
    here = os.path.dirname(os.path.abspath(__file__))
    # cwd: beside this very package, so `python -c` (cwd first on sys.path) imports
    # the same qkernels as this process, never an unbuilt source tree.
    proc = subprocess.run([sys.executable, "-c", _BOOT, here, module],
                          input=json.dumps(spec), capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=os.path.dirname(here))
    marker = "@@QKBENCH@@"
    if proc.returncode != 0 or marker not in proc.stdout:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-8:]
        raise RuntimeError(f"{lib} worker ({threads} thread(s)) failed with status "
                           f"{proc.returncode}:\n  " + "\n  ".join(tail))
    out = json.loads(proc.stdout.rsplit(marker, 1)[1])
    busy1, wall1 = _cpu_busy_s(), time.perf_counter()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    self1 = resource.getrusage(resource.RUSAGE_SELF)
    if busy0 is not None and busy1 is not None and wall1 > wall0:
        ours = (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
                + self1.ru_utime + self1.ru_stime - self0.ru_utime - self0.ru_stime)
        foreign = max(0.0, (busy1 - busy0) - ours) / (wall1 - wall0)
        for r in out["results"]:
            r["foreign_cpus"] = round(foreign, 3)
    return out


def _have(module: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(module) is not None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _cpu_busy_s() -> float | None:
    """Seconds of non-idle CPU time of the whole machine since boot (Linux), all CPUs added."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)      # idle + iowait
    busy = sum(fields[:8]) - idle                                 # without guest (counted in user)
    return busy / os.sysconf("SC_CLK_TCK")


def wait_idle(max_wait: float, threshold: float = FOREIGN_CPUS_WARN, window: float = 1.0) -> float | None:
    """Wait (at most ``max_wait`` s) until the machine has been idle for one ``window``:
    fewer than ``threshold`` CPUs busy. Returns the last busy reading (None: unknown)."""
    end = time.perf_counter() + max_wait
    while True:
        b0, t0 = _cpu_busy_s(), time.perf_counter()
        if b0 is None:
            return None
        time.sleep(window)
        busy = (_cpu_busy_s() - b0) / (time.perf_counter() - t0)
        if busy < threshold or time.perf_counter() >= end:
            return round(busy, 3)


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):  # pragma: no cover - not Unix
        return None


def _median(xs):
    xs = sorted(xs)
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else 0.5 * (xs[mid - 1] + xs[mid])


def _merge_rounds(recs: list[dict], ops: int | None) -> dict:
    """One record from the same measurement in several rounds: median of medians
    (``ops``: the operations of one call, None when not counted)."""
    first = dict(recs[0])
    timed = [r for r in recs if "median_s" in r]
    if not timed:
        return first
    first["median_s"] = _median([r["median_s"] for r in timed])
    first["min_s"] = min(r["min_s"] for r in timed)
    _add_gops(first, ops)
    first["rounds"] = len(timed)
    foreign = [r["foreign_cpus"] for r in recs if r.get("foreign_cpus") is not None]
    if foreign:
        first["foreign_cpus"] = max(foreign)
    if len(timed) > 1:
        first["median_s_per_round"] = [r["median_s"] for r in timed]
        if ops is not None:
            first["gops_median_per_round"] = [r["gops_median"] for r in timed]
    failed = [r["check"] for r in recs if check_failed(r.get("check"))]
    if failed:
        first["check"] = failed[0]
    return first


def _rows(results: list[dict], shape_list, threads_list) -> list[dict]:
    """One row per (shape, threads): GOP/s of each library and the ratios."""
    index = {(r["lib"], r["op"], r["shape"], r["threads"]): r for r in results}

    def gops(lib, op, label, t):
        r = index.get((lib, op, label, t))
        return None if r is None or "gops_median" not in r else r["gops_median"]

    rows = []
    for t in threads_list:
        for s in shape_list:
            qk_rec = index.get(("qkernels", "matmul-u8", s.label, t), {})
            row = {"shape": s.label, "mnk": s.mnk, "threads": t,
                   "qkernels": gops("qkernels", "matmul-u8", s.label, t),
                   "numpy": gops("numpy", "matmul-f32", s.label, t),
                   "ort": gops("ort", "QLinearMatMul", s.label, t),
                   "qkernels_i32": gops("qkernels", "matmul-i32", s.label, t),
                   "ort_matmulinteger": gops("ort", "MatMulInteger", s.label, t),
                   "qkernels_exact": (qk_rec.get("check") or {}).get("exact"),
                   "ort_check": (index.get(("ort", "QLinearMatMul", s.label, t)) or {}).get("check")}
            row["foreign_cpus"] = foreign_cpus(index, s.label, t)
            q = row["qkernels"]
            row["x_numpy"] = q / row["numpy"] if q and row["numpy"] else None
            row["x_ort"] = q / row["ort"] if q and row["ort"] else None
            qi, oi = row["qkernels_i32"], row["ort_matmulinteger"]
            row["x_ort_matmulinteger"] = qi / oi if qi and oi else None
            rows.append(row)
    return rows


def add_peak(rows: list[dict], machine: dict, dtype: str, gops_of, shape_list) -> None:
    """Each row's ``peak_gops`` (this CPU's theoretical peak for ``dtype`` at the row's
    thread count, :mod:`qkernels.bench_peak`) and ``pct_peak`` (qkernels' GOP/s,
    ``gops_of(row)``, as a percentage of it); ``machine["peak"]`` says how."""
    from .bench_peak import ops_per_cycle, peak_gops, pct_peak
    qi = machine.get("qkernels_cpu_info") or {}
    isa, f16k = qi.get("isa"), qi.get("f16_kernel")
    ghz = (machine.get("clock") or {}).get("ghz")
    wbits = {s.label: getattr(s, "wbits", 8) for s in shape_list}
    for r in rows:
        w = wbits.get(r["shape"], 8)
        r["peak_gops"] = peak_gops(ghz, isa, dtype, r["threads"], machine.get("cpus"), w, f16k)
        r["pct_peak"] = pct_peak(gops_of(r), r["peak_gops"])
    machine["peak"] = {"dtype": dtype, "isa": isa, "clock_ghz": ghz,
                       "ops_per_cycle_per_core": ops_per_cycle(isa, dtype, 8, f16k),
                       "formula": "ops/cycle/core x clock GHz x min(threads, CPUs)"}


def foreign_cpus(index: dict, label: str, threads: int) -> float | None:
    """The most CPUs other processes kept busy during any measurement of ``label`` at
    ``threads`` (``index``: records by (lib, op, label, threads))."""
    foreign = [r.get("foreign_cpus") for (_, _, lab, th), r in index.items()
               if lab == label and th == threads and r.get("foreign_cpus") is not None]
    return max(foreign) if foreign else None


def _targets(rows: list[dict]) -> list[dict]:
    out = []
    for r in rows:
        if r["shape"] == "square-1024" and r["threads"] == 1 and r["x_numpy"] is not None:
            out.append({"target": f"int8 >= {TARGET_RATIO_NUMPY_1024:g}x numpy float32, 1024^3, 1 thread",
                        "shape": r["shape"], "threads": 1, "ratio": r["x_numpy"],
                        "met": r["x_numpy"] >= TARGET_RATIO_NUMPY_1024})
    for r in rows:
        if r["x_ort"] is not None:
            out.append({"target": "int8 >= ONNX Runtime int8 (QLinearMatMul)", "shape": r["shape"],
                        "threads": r["threads"], "ratio": r["x_ort"], "met": r["x_ort"] >= TARGET_RATIO_ORT})
    return out


def _fmt(x, spec="{:8.1f}", width=8) -> str:
    return spec.format(x) if x is not None else "-".rjust(width)


def format_table(report: dict) -> str:
    """The human-readable table of a report made by :func:`run_bench`."""
    m = report["machine"]
    qi = (m.get("qkernels_cpu_info") or {})
    lines = [
        isa_line(m, "int8 GEMM"),
        "peers: " + blas_label(m)
        + (f", ONNX Runtime {m['onnxruntime']} QLinearMatMul u8 x s8" if m.get("onnxruntime") else ""),
        "GOP/s = 2*M*N*K / median time per call; each library and thread count in its own process",
        peak_line(m),
        "",
    ]
    hdr = (f"{'ISA':<7}{'shape':<19}{'M x N x K':<16}{'thr':>3} {'qkernels':>9}{'% peak':>7}{'numpy':>8}{'ORT':>8}"
           f"{'x numpy':>9}{'x ORT':>7}  exact")
    lines += [hdr, "-" * len(hdr)]
    for r in report["rows"]:
        exact = {True: "yes", False: "WRONG", None: "-"}[r["qkernels_exact"]]
        lines.append(f"{qi.get('isa', '?'):<7}{r['shape']:<19}{r['mnk']:<16}{r['threads']:>3} "
                     f"{_fmt(r['qkernels'], '{:9.1f}', 9)}{_fmt(r.get('pct_peak'), '{:7.0f}', 7)}"
                     f"{_fmt(r['numpy'])}{_fmt(r['ort'])}"
                     f"{_fmt(r['x_numpy'], '{:9.2f}', 9)}{_fmt(r['x_ort'], '{:7.2f}', 7)}  {exact}"
                     + busy_mark(r))
    if any(r["qkernels_i32"] or r["ort_matmulinteger"] for r in report["rows"]):
        lines += ["", "int32 accumulators (qkernels out_dtype=int32 vs ONNX Runtime MatMulInteger), GOP/s:",
                  f"{'shape':<19}{'thr':>3} {'qkernels':>9}{'ORT MMI':>9}{'x ORT':>7}"]
        for r in report["rows"]:
            lines.append(f"{r['shape']:<19}{r['threads']:>3} {_fmt(r['qkernels_i32'], '{:9.1f}', 9)}"
                         f"{_fmt(r['ort_matmulinteger'], '{:9.1f}', 9)}"
                         f"{_fmt(r['x_ort_matmulinteger'], '{:7.2f}', 7)}")
    inexact = [r for r in report["results"]
               if r["lib"] == "ort" and r.get("check") and not r["check"]["exact"]]
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


def isa_line(m: dict, what: str, kernels_key: str = "gemm_kernels") -> str:
    """The first line of a table: qkernels' version, ISA path and kernels (``cpu_info()``'s
    ``kernels_key``), the machine."""
    qi = (m.get("qkernels_cpu_info") or {})
    kernels = qi.get(kernels_key) or qi.get("gemm_kernel") or "?"
    if isinstance(kernels, (list, tuple)):
        kernels = ", ".join(kernels)
    return (f"qkernels {m.get('qkernels')} {what} bench: ISA {qi.get('isa', '?')} "
            f"(kernels {kernels}), {m['cpu']}, {m['cpus']} CPU(s)")


def peak_line(m: dict) -> str:
    """How the ``% peak`` column was computed (ops/cycle, clock and how it was found)."""
    pk, clk = m.get("peak") or {}, m.get("clock") or {}
    if not pk.get("ops_per_cycle_per_core") or not clk.get("ghz"):
        return f"% peak: no peak for ISA {pk.get('isa')} (clock {clk.get('ghz')}, {clk.get('method', '?')})"
    opc, ghz = pk["ops_per_cycle_per_core"], clk["ghz"]
    return (f"% peak = qkernels GOP/s over {opc} {pk['dtype']} ops/cycle/core x {ghz:.2f} GHz "
            f"(= {opc * ghz:.0f} GOP/s per core) x cores used; clock {clk.get('method')}"
            + ("; 7-bit-weight rows: vpmaddubsw, 2x the ops/cycle" if pk["dtype"] == "int8" and pk.get("isa") == "avx2"
               else ""))


def blas_label(m: dict) -> str:
    """numpy's version and BLAS, e.g. ``numpy 2.4.6 float32 (scipy-openblas 0.3.31 Haswell)``."""
    blas = m.get("blas") or {}
    return (f"numpy {m.get('numpy')} float32 "
            f"({blas.get('name', 'BLAS')} {blas.get('version', '')} {blas.get('corename', '')}".rstrip() + ")")


def busy_mark(row: dict) -> str:
    return "  (busy machine)" if (row["foreign_cpus"] or 0) > FOREIGN_CPUS_WARN else ""


def format_footer(report: dict) -> list[str]:
    """The lines closing every suite's table: targets met or not, then the notes."""
    lines = []
    if report["targets"]:
        lines += ["", "targets:"]
        for t in report["targets"]:
            lines.append(f"  {'met    ' if t['met'] else 'NOT MET'}  {t['target']}: {t['shape']}, "
                         f"{t['threads']} thr, ratio {t['ratio']:.2f}")
    for note in report["notes"]:
        lines.append(f"note: {note}")
    return lines


def collect(module: str, libs, shape_list, threads_list, *, timing: dict, rounds: int = 1,
            isa: str | None = None, seed: int = 0, progress=None, wait_idle_s: float = 0.0,
            extra_by_lib=None, process_per_item: bool = False) -> dict:
    """Run every (library, thread count) worker of the suite ``module`` ``rounds`` times.

    ``extra_by_lib``: per library, its items (instead of ``shape_list``) and more spec
    entries: ``{lib: (items, {key: value})}``. ``process_per_item``: one process per
    (library, thread count, item) instead of one per (library, thread count), so that
    nothing of one item (its peak memory above all) is left in the next one's process.
    Returns the parts of a report every
    suite shares: ``results`` (rounds merged), ``infos`` (per library), ``notes``,
    ``failed`` (a worker crashed), ``wrong`` (qkernels records failing their check)
    and ``machine``."""
    extra_by_lib = extra_by_lib or {}
    load_before = _loadavg()
    notes: list[str] = []
    raw: dict[tuple, list[dict]] = {}
    all_items = {s.label: s for s in shape_list}
    infos: dict[str, dict] = {}
    failed = False
    for rnd in range(rounds):
        for t in threads_list:
            for lib in libs:
                items, extra = extra_by_lib.get(lib, (shape_list, {}))
                for group in ([[item] for item in items] if process_per_item else [items]):
                    if wait_idle_s > 0:
                        busy_now = wait_idle(wait_idle_s)
                        if progress and busy_now is not None and busy_now >= FOREIGN_CPUS_WARN:
                            progress(f"machine still busy ({busy_now} CPUs) after waiting {wait_idle_s:g} s")
                    tag = f", {group[0].label}" if process_per_item else ""
                    if progress:
                        progress(f"[round {rnd + 1}/{rounds}] {lib}, {t} thread(s){tag} ...")
                    try:
                        res = run_worker(lib, t, group, timing, module=module, seed=seed, isa=isa, **extra)
                    except (RuntimeError, subprocess.TimeoutExpired) as exc:
                        notes.append(f"{lib} at {t} thread(s){tag} failed: {exc}")
                        failed = True
                        continue
                    infos.setdefault(lib, {}).update(res["info"])
                    for r in res["results"]:
                        raw.setdefault((r["lib"], r["op"], r["shape"], r["threads"]), []).append(r)
                    all_items.update((item.label, item) for item in group)
    busy: dict[tuple, float] = {}
    for k, v in raw.items():
        for r in v:
            if (r.get("foreign_cpus") or 0) > FOREIGN_CPUS_WARN:
                busy[(k[0], k[3])] = max(busy.get((k[0], k[3]), 0.0), r["foreign_cpus"])
    if busy:
        notes.append("other processes kept CPUs busy during these measurements (most CPUs busy besides "
                     f"the bench): {', '.join(f'{lib} {t} thr {c:.2f}' for (lib, t), c in sorted(busy.items()))}"
                     "; such figures (2 threads above all) are unreliable: rerun on an idle machine")
    results = [_merge_rounds(v, getattr(all_items.get(k[2]), "ops", None)) for k, v in raw.items()]
    wrong = [r for r in results if r["lib"] == "qkernels" and check_failed(r.get("check"))]
    for r in wrong:
        how = "differ from the reference" if "exact" in r["check"] else "are outside the accuracy bound"
        notes.append(f"qkernels {r['op']} WRONG at {r['shape']} {r['threads']} thread(s): "
                     f"{r['check']['mismatches']} of {r['check']['size']} outputs {how}")
    np_info = infos.get("numpy", {})
    if np_info.get("env_unset"):
        notes.append(f"numpy ran without {', '.join(np_info['env_unset'])} (set here; they slow OpenBLAS)")
    if "numpy" in infos and not np_info.get("blas_threads_set_at_runtime"):
        notes.append("numpy BLAS threads set by environment only (no threadpoolctl, no OpenBLAS symbol)")
    qinfo = infos.get("qkernels", {})
    machine = {
        "cpu": _cpu_model(), "cpus": _cpu_count(), "platform": platform.platform(),
        "python": platform.python_version(), "qkernels": qinfo.get("qkernels"),
        "qkernels_cpu_info": qinfo.get("cpu_info"), "clock": qinfo.get("clock"), "numpy": np_info.get("numpy") or qinfo.get("numpy"),
        "blas": np_info.get("blas"), "onnxruntime": infos.get("ort", {}).get("onnxruntime"),
        "onnx": infos.get("ort", {}).get("onnx"), "loadavg_before": load_before,
    }
    return {"results": results, "infos": infos, "notes": notes, "failed": failed, "wrong": wrong,
            "machine": machine}


def created_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def make_report(got: dict, rows: list, targets: list, notes: list, *, settings: dict, suite: str | None = None,
                **more) -> dict:
    """A suite's report: ``settings``, its items and other entries (``more``), then the
    parts :func:`collect` (``got``) gives every suite, ``rows``, ``targets`` and ``notes``
    (before collect's); ``ok`` unless a worker failed or a qkernels result is wrong."""
    return {
        "schema": 1, **({"suite": suite} if suite else {}), "created": created_now(), "settings": settings,
        **more, "machine": got["machine"], "results": got["results"], "rows": rows, "targets": targets,
        "notes": notes + got["notes"], "ok": not got["wrong"] and not got["failed"],
        "wrong_results": bool(got["wrong"]),
    }


def run_setup(quick: bool, libs, timing: dict | None = None) -> tuple[dict, list[str], list]:
    """The start of a suite's run: its batch settings (``timing``, else the quick or full
    ones), its notes so far and its libraries, ONNX Runtime's (``ort``) dropped with a
    note when it does not import."""
    libs = list(libs)
    notes: list[str] = []
    ort_available(libs, notes)
    return dict(timing or _SETTINGS["quick" if quick else "full"]), notes, libs


def ort_available(libs: list, notes: list, lib: str = "ort") -> None:
    """Drop ``lib`` from ``libs`` with a note when onnxruntime or onnx is missing."""
    if lib in libs and not (_have("onnxruntime") and _have("onnx")):
        libs.remove(lib)
        notes.append("ONNX Runtime columns skipped: onnxruntime and onnx are not both importable "
                     "(pip install onnxruntime onnx)")


def run_bench(shape_list, threads_list, *, quick: bool = False, int32: bool | None = None, rounds: int = 1,
              isa: str | None = None, seed: int = 0, libs=LIBS, progress=None,
              wait_idle_s: float = 0.0) -> dict:
    """Run every (library, thread count) worker ``rounds`` times; return the report dict."""
    timing, notes, libs = run_setup(quick, libs)
    if int32 is None:
        int32 = not quick
    got = collect("bench", libs, shape_list, threads_list, timing=timing, rounds=rounds, isa=isa, seed=seed,
                  progress=progress, wait_idle_s=wait_idle_s,
                  extra_by_lib={lib: (shape_list, {"int32": int32}) for lib in libs})
    rows = _rows(got["results"], shape_list, threads_list)
    add_peak(rows, got["machine"], "int8", lambda r: r["qkernels"], shape_list)
    settings = {"quick": quick, "threads": list(threads_list), "shapes": [s.label for s in shape_list],
                "rounds": rounds, "wait_idle_s": wait_idle_s, "timing": timing, "int32": int32, "seed": seed, "isa": isa}
    return make_report(got, rows, _targets(rows), notes, settings=settings,
                       shapes=[dict(s._asdict(), ops=s.ops) for s in shape_list])


def run_cli(args, select=None, run=None, fmt=None) -> int:
    """``python -m qkernels bench``: print the table, optionally save JSON.

    ``select(labels, quick=)``, ``run(items, threads, quick=, rounds=, isa=, progress=,
    wait_idle_s=)`` and ``fmt(report)`` are the suite's (default: GEMM's :func:`shapes`,
    :func:`run_bench` and :func:`format_table`).
    Exit status (:func:`finish_cli`): 1 when a qkernels result is wrong or a worker failed,
    2 for a usage error, 3 when ``--compare`` found a regression beyond the noise, else 0
    (missing targets do not fail the command: they are reported)."""
    select, run, fmt = select or shapes, run or run_bench, fmt or format_table
    quick = bool(getattr(args, "quick", False))
    labels = getattr(args, "shapes", None)
    try:
        shape_list = select(labels, quick=quick)
    except ValueError as exc:
        print(f"qkernels bench: {exc}", file=sys.stderr)
        return 2
    threads_list = list(dict.fromkeys(getattr(args, "threads", None) or [1, _cpu_count()]))
    if any(t < 1 for t in threads_list):
        print("qkernels bench: --threads must be positive", file=sys.stderr)
        return 2
    rounds = getattr(args, "rounds", None) or 1
    baseline_path, plot_path = getattr(args, "compare", None), getattr(args, "plot", None)
    baseline = None
    if baseline_path:                         # read first: a bad baseline fails before minutes of timing
        try:
            with open(baseline_path) as f:
                baseline = json.load(f)
        except (OSError, ValueError) as exc:
            print(f"qkernels bench: cannot read the baseline {baseline_path!r}: {exc}", file=sys.stderr)
            return 2
    t0 = time.perf_counter()

    def progress(msg):
        print(msg, file=sys.stderr, flush=True)

    report = run(shape_list, threads_list, quick=quick, rounds=rounds,
                       isa=getattr(args, "isa", None), progress=progress,
                       wait_idle_s=getattr(args, "wait_idle", None) or 0.0)
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    return finish_cli(report, fmt, path=getattr(args, "json", None), baseline=baseline,
                      baseline_path=baseline_path, plot_path=plot_path)


def finish_cli(report: dict, fmt, *, path=None, baseline=None, baseline_path=None, plot_path=None) -> int:
    """The end of ``qkernels bench``: compare with ``baseline`` (a loaded report), save
    JSON to ``path``, print the table (and the comparison), draw ``plot_path``.

    Exit status: 1 when a qkernels result is wrong or a worker failed; else 2 when the
    baseline is of another suite; else :data:`qkernels.bench_compare.EXIT_REGRESSION`
    (3) when a qkernels measurement regressed beyond the noise threshold; else 0."""
    from . import bench_compare
    cmp, rc = None, 0
    if baseline is not None:
        try:
            cmp = bench_compare.compare_reports(baseline, report)
        except bench_compare.CompareError as exc:
            print(f"qkernels bench: --compare: {exc}", file=sys.stderr)
            rc = 2
        else:
            report["comparison"] = dict(cmp, baseline=baseline_path, regressed=len(cmp["regressed"]))
            rc = bench_compare.EXIT_REGRESSION if cmp["regressed"] else 0
    if path:                                  # saved first: a closed stdout must not lose it
        with open(path, "w") as f:
            json.dump(report, f, indent=1)
            f.write("\n")
    try:
        print(fmt(report))
        print(f"({report['wall_s']} s)" + (f"; saved {path}" if path else ""))
        if cmp is not None:
            print()
            print(bench_compare.format_text(cmp, baseline_path or "baseline"))
        sys.stdout.flush()
    except BrokenPipeError:                   # e.g. piped into head
        sys.stdout = open(os.devnull, "w")
    if plot_path:
        try:
            bench_compare.plot_speedups(report, plot_path)
        except ImportError:
            print("qkernels bench: --plot skipped: it needs matplotlib, which is not installed "
                  "(pip install 'qkernels[plot]')", file=sys.stderr)
        else:
            print(f"wrote the plot {plot_path}")
    return rc if report["ok"] else 1
