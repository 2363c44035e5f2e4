"""The peers' side of the workers: ONNX Runtime sessions of one-node models, numpy's BLAS
threads, XNNPACK's ``.tflite`` models (found, checked, timed; gemm and conv suites), and the
start of each library's worker (its threads set, its versions noted).

Imports neither qkernels nor numpy at module level: a numpy or ONNX Runtime worker must
never load qkernels (see :mod:`worker`); only :func:`qkernels_setup` imports it.
"""
from __future__ import annotations

from pathlib import Path

from .timing import measure, record


def have(module: str) -> bool:
    """Is ``module`` importable (without importing it)?"""
    import importlib.util
    return importlib.util.find_spec(module) is not None


# ---------------------------------------------------------------- ONNX Runtime

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


# ---------------------------------------------------------------- numpy's BLAS threads

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


# ---------------------------------------------------------------- the start of each library's worker

def qkernels_setup(spec: dict, out: dict):
    """A qkernels worker's start: its threads set, its versions and clock noted; returns the module."""
    import numpy as np

    import qkernels as qk

    from .peak import measure_clock, measure_int8_peak
    qk.set_num_threads(spec["threads"])
    out["info"] = {"cpu_info": qk.cpu_info(), "qkernels": qk.__version__, "numpy": np.__version__,
                   "clock": measure_clock(), "int8_peak": measure_int8_peak(qk.get_isa())}
    return qk


def numpy_setup(spec: dict, out: dict) -> None:
    """A numpy worker's start: its BLAS limited to the thread count, its BLAS noted."""
    import numpy as np
    controlled = blas_set_num_threads(spec["threads"])
    out["info"] = {"numpy": np.__version__, "blas": blas_info(), "blas_threads_set_at_runtime": controlled,
                   "env_unset": spec.get("env_unset", [])}


def ort_setup(out: dict) -> None:
    import numpy as np
    import onnx
    import onnxruntime as ort
    out["info"] = {"onnxruntime": ort.__version__, "onnx": onnx.__version__, "numpy": np.__version__}


def openvino_setup(out: dict) -> None:
    import openvino as ov
    out["info"] = {"openvino": ov.__version__}


def openvino_session(model: bytes, threads: int, precision: str | None = None):
    """OpenVINO's CPU plugin compiling ONNX ``model`` for latency on ``threads`` threads
    (one stream); ``precision``: ``"f32"``, or None for its default (bf16 on CPUs with
    AVX512_BF16 or AMX). Returns ``run(feeds) -> [outputs]``."""
    import openvino as ov
    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}
    if precision:
        config["INFERENCE_PRECISION_HINT"] = precision
    compiled = core.compile_model(core.read_model(model=model), "CPU", config)
    request = compiled.create_infer_request()
    return lambda feeds: list(request.infer(feeds).values())


def matmul_worker(spec: dict, out: dict, problems, operands, lib: str = "numpy", op: str = "matmul-f32",
                  timer=None) -> None:
    """Time ``np.matmul(a, b, out=c)`` of every ``(shape, problem)`` of ``problems``
    (``operands(problem)``: ``(a, b)``; ``c`` of their result type, preallocated);
    ``timer``: as :func:`timing.measure`'s."""
    import numpy as np
    for shape, p in problems:
        a, b = operands(p)
        c = np.empty((shape.m, shape.n), np.result_type(a, b))

        def call(a=a, b=b, c=c):
            return np.matmul(a, b, out=c)

        out["results"].append(measure(shape, lib, op, spec["threads"], spec["timing"], call, timer=timer))


# ---------------------------------------------------------------- XNNPACK (TFLite models through LiteRT)

def tflite_candidates(given=None) -> list[Path]:
    """Where the ``.tflite`` models are looked for: ``given``; else bench/tflite under
    the current directory, then beside this module (a source checkout's bench/)."""
    if given:
        return [Path(given)]
    return [Path.cwd() / "bench" / "tflite", Path(__file__).resolve().parent / "tflite"]


def xnnpack_plan(items, tflite_dir=None) -> tuple[str | None, list, list[str]]:
    """(folder, items XNNPACK runs, notes) for the ``items`` that name a ``.tflite``
    model: the column is skipped, with a note, when ai_edge_litert does not import or no
    folder of models is found."""
    with_model = [it for it in items if it.tflite]
    if not with_model:
        return None, [], []
    if not have("ai_edge_litert"):
        return None, [], ["XNNPACK column skipped: ai_edge_litert is not importable (pip install ai-edge-litert)"]
    candidates = tflite_candidates(tflite_dir)
    folder = next((c.resolve() for c in candidates if c.is_dir()), None)
    if folder is None:
        where = " or ".join(map(str, dict.fromkeys(candidates)))
        return None, [], [f"XNNPACK column skipped: no folder of .tflite models at {where} (see --tflite-dir)"]
    found = [it for it in with_model if (folder / it.tflite).is_file()]
    notes = [f"XNNPACK skipped at {it.label}: {it.tflite} is not in {folder}" for it in with_model if it not in found]
    return str(folder), found, notes


def xnnpack_setup(out: dict) -> None:
    """An XNNPACK worker's start: LiteRT's version noted."""
    import importlib.metadata

    import numpy as np
    try:
        version = importlib.metadata.version("ai-edge-litert")
    except importlib.metadata.PackageNotFoundError:
        version = None
    out["info"] = {"ai_edge_litert": version, "numpy": np.__version__}


def xnnpack_measure(item, spec: dict, x, out_shape) -> dict:
    """The timing record of ``invoke()`` of ``item.tflite`` (LiteRT's ``Interpreter``:
    XNNPACK, ``spec["threads"]`` threads) on the int8 input ``x`` (set once); an error
    record when the model's int8 input/output shapes are not ``x.shape`` / ``out_shape``."""
    import os

    import numpy as np
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=os.path.join(spec["tflite_dir"], item.tflite), num_threads=spec["threads"])
    it.allocate_tensors()
    inp, res = it.get_input_details()[0], it.get_output_details()[0]
    got = (list(inp["shape"]), np.dtype(inp["dtype"]), list(res["shape"]), np.dtype(res["dtype"]))
    want = (list(x.shape), np.dtype(np.int8), list(out_shape), np.dtype(np.int8))
    if got != want:
        return record(item, "xnnpack", "tflite-s8", spec["threads"],
                      error=f"{item.tflite}: input/output {got}, expected {want}")
    it.set_tensor(inp["index"], x)             # once: invoke() alone is timed
    return measure(item, "xnnpack", "tflite-s8", spec["threads"], spec["timing"], it.invoke)
