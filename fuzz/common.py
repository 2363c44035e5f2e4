"""What the lanes share: running one case and classifying what happened.

Classification (the rule fuzz/README.md states):
  ok     the case ran (a model loaded and ran; a call returned and matched its copies)
  clean  qkernels.graph's ModelError / RunError (and subclasses), or exactly ValueError /
         TypeError raised by a ``raise`` statement of qkernels itself (or its Cython
         drivers) with a message
  raw    anything else: other types (KeyError, IndexError, MemoryError, numpy's AxisError,
         ...), and ValueError / TypeError raised inside numpy, onnx or by a line of qkernels
         that is not a ``raise`` (an unchecked ``int(x)``, ``np.asarray(x)``, ...)
  wrong  a call that succeeded gave a different result from the same call on contiguous
         copies of its inputs (or on the scalar ISA at 1 thread)
  crash / hang are decided by the parent process (the worker died / went silent).
"""
from __future__ import annotations

import functools
import importlib
import linecache
import os
import signal
import traceback

import numpy as np

LANES = ("models", "api")


class WrongResult(Exception):
    """Raised by a lane when a successful call disagrees with its reference."""

    def __init__(self, where: str, message: str):
        super().__init__(message)
        self.where = where


class CaseTimeout(BaseException):
    """--case mode: the alarm fired (a BaseException, so library handlers cannot eat it)."""


def lane_module(lane: str):
    return importlib.import_module(lane)


@functools.lru_cache(maxsize=None)
def _roots() -> list[tuple[str, str]]:
    """(folder, display prefix) of the code whose frames locate an exception, most specific first."""
    import qkernels
    import qkernels.graph
    out = [(os.path.dirname(qkernels.graph.__file__), "graph"), (os.path.dirname(qkernels.__file__), "qkernels"),
           (os.path.dirname(np.__file__), "numpy")]
    try:
        import onnx
        out.append((os.path.dirname(onnx.__file__), "onnx"))
    except ImportError:   # pragma: no cover
        pass
    return out


def place(filename: str) -> str | None:
    """'graph/rewrite.py' style name of a library file, None for other code."""
    path = os.path.abspath(filename)
    for root, prefix in _roots():
        if path.startswith(root + os.sep):
            return prefix + "/" + os.path.relpath(path, root)
    if filename.endswith(".pyx"):   # Cython frames carry the source path relative to the build
        return "qkernels/" + os.path.basename(filename)
    return None


def classify(exc: BaseException) -> dict:
    from qkernels.graph.errors import ModelError, RunError
    frames = traceback.extract_tb(exc.__traceback__)
    placed = [(f, place(f.filename)) for f in frames]
    lib = [(f, p) for f, p in placed if p and not p.startswith(("numpy", "onnx"))]
    ours = [(f, p) for f, p in placed if p]
    f, where = (ours or placed or [(None, None)])[-1]
    where = f"{where or (f and os.path.basename(f.filename))}:{f.lineno}" if f else "?"
    if isinstance(exc, WrongResult):
        return {"status": "wrong", "type": "WrongResult", "where": exc.where}
    if isinstance(exc, (ModelError, RunError)):
        status = "clean"
    elif type(exc) in (ValueError, TypeError) and str(exc) and frames and lib and lib[-1][0] is frames[-1]:
        inner = frames[-1]
        line = (linecache.getline(inner.filename, inner.lineno) or inner.line or "").strip()
        status = "clean" if line.startswith("raise") or inner.filename.endswith(".pyx") else "raw"
    else:
        status = "raw"
    return {"status": status, "type": type(exc).__name__, "where": where}


def _alarm(signum, frame):
    raise CaseTimeout()


def run_case(lane: str, seed: int, case: int, verbose: bool = False, alarm: int = 0) -> dict:
    """Build and run case ``case`` of ``seed``; the result as a JSON-able dict."""
    mod = lane_module(lane)
    import qkernels
    threads, isa = qkernels.get_num_threads(), qkernels.get_isa()
    rec = {"lane": lane, "case": case, "status": "ok", "type": "", "where": "", "message": "", "desc": ""}
    desc: list[str] = []
    if alarm:
        signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(alarm)
    try:
        mod.run(seed, case, desc, verbose)
    except CaseTimeout:
        rec.update(status="hang", type=f"timeout after {alarm}s")
    except BaseException as exc:  # noqa: BLE001 - classifying every exception is the point
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        rec.update(classify(exc), message=f"{type(exc).__name__}: {exc}"[:400])
        if verbose:
            traceback.print_exc()
    finally:
        if alarm:
            signal.alarm(0)
        # a case may change process-wide settings: the next case starts from the defaults
        qkernels.set_num_threads(threads)
        qkernels.set_isa(isa)
    rec["desc"] = "; ".join(desc)[:300]
    if verbose:
        print("case:", "\n  ".join(desc))
    return rec
