"""``qkernels bench --suite quant``: quantize and dequantize speed beside numpy float32
and ONNX Runtime, on tensors of real edge models.

The case table here (:data:`CASES`) is the one table that the CLI and the
pytest-benchmark suite (``bench/test_bench_quant.py``) read: activations (NHWC feature
maps, transformer token activations) quantized per tensor to int8 or uint8, and a conv
weight quantized per output channel (int8 symmetric, ``axis=0``).

What is timed, per case and per thread count:

* ``qkernels``: ``qkernels.quantize(x, scale, zero_point, dtype, axis, out=buf)`` and
  ``qkernels.dequantize(q, scale, zero_point, axis=axis, out=buf)`` into preallocated
  outputs (as ONNX Runtime's I/O binding);
* ``numpy``: the same formulas as a numpy user writes them, in float32
  (``np.clip(np.rint(x / scale) + zero_point, lo, hi).astype(dtype)`` and
  ``(q.astype(np.float32) - zero_point) * scale``; one thread whatever the thread count);
* ``ort``: ONNX Runtime one-node ``QuantizeLinear`` / ``DequantizeLinear`` (opset 13,
  scale and zero point as initializers, ``axis`` per channel) through an I/O binding,
  intra-op spinning off; skipped with a note without onnxruntime or onnx.

Before timing, every qkernels output is compared with the exact numpy float32 reference
of ONNX's definition (:func:`reference_quantize`: ``saturate(rint(x / scale) +
zero_point)``, float32 division, round half to even; :func:`reference_dequantize`:
``(q - zero_point) * scale`` in float32): a mismatch posts no number and makes the
command exit with status 1. The data (:func:`make_problem`) saturates at both ends and
holds exact half-step ties. The peers' outputs are compared with the same references and
the outcome recorded (information, not a gate).

Rates are Gelem/s (elements per call / median time: the harness's ``gops_*`` fields of
this suite's records count elements, :attr:`Case.ops`); these calls are memory-bound, so
there is no % of peak. Processes, timing, rounds, idle waits and the JSON report are
:mod:`harness`'s machinery.

Imports neither qkernels nor numpy at module level (:mod:`worker` says why).
"""
from __future__ import annotations

import math
from typing import NamedTuple

from . import peers
from .harness import Suite, busy_mark, cell, collect, format_footer, gops_ms, ratio, run_setup, selector, \
    settings_of
from .timing import compare_exact, measure, worker_problems


class Case(NamedTuple):
    """One tensor to quantize: its ``shape``, where it comes from, per tensor (``axis``
    None) or per channel along ``axis`` (int8 symmetric), and the quantized ``dtype``."""
    label: str
    shape: tuple
    source: str
    axis: int | None = None
    dtype: str = "int8"

    @property
    def elems(self) -> int:
        return math.prod(self.shape)

    @property
    def ops(self) -> int:
        """The work of one call as the harness counts it: elements (Gelem/s)."""
        return self.elems

    @property
    def dims(self) -> str:
        return "x".join(map(str, self.shape))

    @property
    def kind(self) -> str:
        """``u8 tensor``, ``s8 tensor`` or ``s8 ch ax0``."""
        short = {"int8": "s8", "uint8": "u8"}[self.dtype]
        return f"{short} tensor" if self.axis is None else f"{short} ch ax{self.axis}"

    def record_fields(self) -> dict:
        """What a timing record says of its case (besides the label)."""
        return {"dims": self.dims, "dtype": self.dtype, "axis": self.axis, "elems": self.elems}


#: The tensors of the benchmarks.
CASES: tuple[Case, ...] = (
    Case("mbv2-stem-112", (1, 112, 112, 32), "MobileNetV2 stem conv output, NHWC"),
    Case("r18-l1-56", (1, 56, 56, 64), "ResNet-18 layer1 activation, NHWC (asymmetric uint8)", dtype="uint8"),
    Case("mbv2-last-7", (1, 7, 7, 1280), "MobileNetV2 last feature map (1x1 conv to 1280), NHWC"),
    Case("tf-128x384", (128, 384), "transformer activation, 128 tokens x d_model 384 (MiniLM / DeiT-S class)"),
    Case("tf-128x1536", (128, 1536), "transformer feed-forward hidden activation, 128 tokens x 1536"),
    Case("wconv-256x3x3x64", (256, 3, 3, 64), "conv 3x3 weight 64 -> 256 (OHWI), int8 per output channel", 0),
)

#: Labels of the cases ``--quick`` (and ``QKERNELS_BENCH_QUICK=1``) runs.
QUICK: tuple[str, ...] = ("r18-l1-56", "tf-128x384")

LIBS = ("qkernels", "numpy", "ort")
#: Report columns: name -> (worker library, op) of its records.
COLUMNS = {"q-qkernels": ("qkernels", "quantize"), "q-numpy": ("numpy", "quantize-f32"),
           "q-ort": ("ort", "QuantizeLinear"), "dq-qkernels": ("qkernels", "dequantize"),
           "dq-numpy": ("numpy", "dequantize-f32"), "dq-ort": ("ort", "DequantizeLinear")}
TITLES = {"qkernels": "qkernels", "numpy": "numpy f32", "ort": "ORT"}

#: The cases named by ``labels`` (all, or the quick subset, when None).
cases = selector(CASES, QUICK, "case")


def _case(**fields) -> Case:
    """A case from its JSON fields (the shape comes back a list)."""
    return Case(**dict(fields, shape=tuple(fields["shape"])))


# ---------------------------------------------------------------- problems and references

class Problem(NamedTuple):
    """Deterministic data of one case: the same in every worker process."""
    x: object          # float32 input
    scale: object      # Python float (per tensor) or float32 (C,)
    zp: object         # Python int (per tensor) or int8 (C,)
    sb: object         # float32 scale, shaped to broadcast against x
    zb: object         # float32 zero point, likewise
    lo: int
    hi: int
    q: object          # exact reference quantization of x (case.dtype)
    y: object          # exact reference dequantization of q (float32)


def _bcast(p, axis, ndim):
    import numpy as np
    p = np.asarray(p, np.float32)
    return p if axis is None else p.reshape([-1 if i == axis else 1 for i in range(ndim)])


def reference_quantize(x, sb, zb, lo: int, hi: int, dtype):
    """ONNX QuantizeLinear, all in float32: divide, round half to even, add the zero
    point, saturate."""
    import numpy as np
    y = np.rint(np.divide(x, sb, dtype=np.float32)) + zb
    assert y.dtype == np.float32
    return np.minimum(np.maximum(y, np.float32(lo)), np.float32(hi)).astype(dtype)


def reference_dequantize(q, sb, zb):
    """ONNX DequantizeLinear in float32: ``(q - zero_point) * scale``."""
    import numpy as np
    return (q.astype(np.float32) - zb) * sb


def make_problem(case: Case, seed: int = 0) -> Problem:
    """Seeded data about 3 sigma wide in the quantized range, ~0.1% of it far outside
    (saturates at both ends) and some exact half-step ties (round half to even)."""
    import numpy as np
    rng = np.random.default_rng([7, seed, *case.shape])
    dt = np.dtype(case.dtype)
    lo, hi = int(np.iinfo(dt).min), int(np.iinfo(dt).max)
    if case.axis is None:
        sigma, mean = 1.5, 0.5 if dt == np.uint8 else 0.0
        x = rng.standard_normal(case.shape, np.float32) * np.float32(sigma) + np.float32(mean)
        scale = float(np.float32(6 * sigma / 255))
        zp = 128 if dt == np.uint8 else 3
    else:                                              # per-channel weights, symmetric
        c = case.shape[case.axis]
        sigma = rng.uniform(0.01, 0.1, c).astype(np.float32)
        x = rng.standard_normal(case.shape, np.float32) * _bcast(sigma, case.axis, len(case.shape))
        scale, zp = (3 * sigma / 127).astype(np.float32), np.zeros(c, np.int8)
    sb, zb = _bcast(scale, case.axis, x.ndim), _bcast(zp, case.axis, x.ndim)
    flat = x.reshape(-1)
    n = flat.size
    far = np.arange(0, n, 997)
    flat[far] = np.where(far % 2, 1e3, -1e3).astype(np.float32)          # saturate both ends
    ties = np.arange(500, n, 991)
    s_at = np.broadcast_to(sb, x.shape).reshape(-1)[ties]
    flat[ties] = (rng.integers(-40, 40, ties.size) + np.float32(0.5)).astype(np.float32) * s_at
    q = reference_quantize(x, sb, zb, lo, hi, dt)
    return Problem(x, scale, zp, sb, zb, lo, hi, q, reference_dequantize(q, sb, zb))


def compare_values(got, want) -> dict:
    """A float output against its exact reference: ``exact`` (every value equal), how
    many differ and by how much."""
    import numpy as np
    got = np.asarray(got)
    if got.dtype != want.dtype or got.shape != want.shape:
        return {"exact": False, "mismatches": int(want.size), "size": int(want.size),
                "error": f"got {got.dtype} {got.shape}, expected {want.dtype} {want.shape}"}
    bad = int(np.count_nonzero(got != want))
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    return {"exact": bad == 0, "mismatches": bad, "size": int(want.size),
            "max_abs_diff": float(diff.max()) if diff.size else 0.0}


def check_quantized(got, p: Problem) -> dict:
    """A quantized output against the exact reference (its dtype included)."""
    import numpy as np
    got = np.asarray(got)
    if got.dtype != p.q.dtype or got.shape != p.q.shape:
        return compare_values(got, p.q)
    return compare_exact(got, p.q)


def ort_model(case: Case, p: Problem, op: str) -> bytes:
    """A one-node ONNX model (opset 13) of ``op`` (``QuantizeLinear`` or
    ``DequantizeLinear``) of ``case``: scale and zero point as initializers, ``axis``
    per channel. Input "X", output "Y"."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
    qtype = {np.dtype(np.int8): TensorProto.INT8, np.dtype(np.uint8): TensorProto.UINT8}[p.q.dtype]
    src, dst = (TensorProto.FLOAT, qtype) if op == "QuantizeLinear" else (qtype, TensorProto.FLOAT)
    inits = [numpy_helper.from_array(np.asarray(p.scale, np.float32), "scale"),
             numpy_helper.from_array(np.asarray(p.zp, p.q.dtype), "zero_point")]
    attrs = {} if case.axis is None else {"axis": case.axis}
    node = helper.make_node(op, ["X", "scale", "zero_point"], ["Y"], **attrs)
    graph = helper.make_graph([node], f"{op}_{case.label}",
                              [helper.make_tensor_value_info("X", src, list(case.shape))],
                              [helper.make_tensor_value_info("Y", dst, list(case.shape))], inits)
    return peers.onnx_bytes(graph)


def ort_call(case: Case, p: Problem, op: str, threads: int):
    """``(call, out)``: a no-argument ONNX Runtime call of :func:`ort_model` writing into ``out``."""
    import numpy as np
    sess = peers.ort_session(ort_model(case, p, op), threads, spinning=False)
    quantize = op == "QuantizeLinear"
    out = np.empty(case.shape, p.q.dtype if quantize else np.float32)
    return peers.ort_bound_call(sess, p.x if quantize else p.q, out, "X", "Y"), out


# ---------------------------------------------------------------- workers (in their own processes)

def _problems(spec: dict):
    return worker_problems(spec, _case, make_problem)


def _worker_qkernels(spec: dict, out: dict) -> None:
    import numpy as np
    qk = peers.qkernels_setup(spec, out)
    t, timing = spec["threads"], spec["timing"]
    for case, p in _problems(spec):
        qbuf, ybuf = np.empty_like(p.q), np.empty(p.q.shape, np.float32)

        def quantize(p=p, qbuf=qbuf, axis=case.axis):
            return qk.quantize(p.x, p.scale, p.zp, p.q.dtype, axis, out=qbuf)

        def dequantize(p=p, ybuf=ybuf, axis=case.axis):
            return qk.dequantize(p.q, p.scale, p.zp, axis=axis, out=ybuf)

        check = dict(check_quantized(quantize().data, p), blocking=True)
        out["results"].append(measure(case, "qkernels", "quantize", t, timing, quantize, check))
        check = dict(compare_values(dequantize(), p.y), blocking=True)
        out["results"].append(measure(case, "qkernels", "dequantize", t, timing, dequantize, check))


def _worker_numpy(spec: dict, out: dict) -> None:
    import numpy as np
    peers.numpy_setup(spec, out)
    t, timing = spec["threads"], spec["timing"]
    for case, p in _problems(spec):
        def quantize(p=p):
            return np.clip(np.rint(p.x / p.sb) + p.zb, p.lo, p.hi).astype(p.q.dtype)

        def dequantize(p=p):
            return (p.q.astype(np.float32) - p.zb) * p.sb

        out["results"].append(measure(case, "numpy", "quantize-f32", t, timing, quantize,
                                      check_quantized(quantize(), p)))
        out["results"].append(measure(case, "numpy", "dequantize-f32", t, timing, dequantize,
                                      compare_values(dequantize(), p.y)))


def _worker_ort(spec: dict, out: dict) -> None:
    peers.ort_setup(out)
    t, timing = spec["threads"], spec["timing"]
    for case, p in _problems(spec):
        for op, ref, compare in (("QuantizeLinear", p.q, compare_exact), ("DequantizeLinear", p.y, compare_values)):
            call, y = ort_call(case, p, op, t)
            call()
            # recorded, not blocking (a peer's exactness is information)
            out["results"].append(measure(case, "ort", op, t, timing, call, compare(y, ref)))
            del call


WORKERS = {"qkernels": _worker_qkernels, "numpy": _worker_numpy, "ort": _worker_ort}


# ---------------------------------------------------------------- the parent process

def _exact(recs: dict, col: str):
    return (recs[col].get("check") or {}).get("exact")


def _row(case: Case, recs: dict, find) -> dict:
    """Gelem/s and ms of each column, the ratios, the checks."""
    gelem, ms = gops_ms(recs)
    return {"dims": case.dims, "kind": case.kind, "dtype": case.dtype, "axis": case.axis, "elems": case.elems,
            "gelem_s": gelem, "ms": ms,
            "x_numpy_q": ratio(gelem["q-qkernels"], gelem["q-numpy"]),
            "x_ort_q": ratio(gelem["q-qkernels"], gelem["q-ort"]),
            "x_numpy_dq": ratio(gelem["dq-qkernels"], gelem["dq-numpy"]),
            "x_ort_dq": ratio(gelem["dq-qkernels"], gelem["dq-ort"]),
            "quantize_exact": _exact(recs, "q-qkernels"), "dequantize_exact": _exact(recs, "dq-qkernels"),
            "ort_exact": (_exact(recs, "q-ort"), _exact(recs, "dq-ort"))}


def _yn(x, yes: str = "yes", no: str = "no") -> str:
    return {True: yes, False: no, None: "-"}[x]


def format_table(report: dict) -> str:
    """The human-readable table of a report made by :func:`run_bench`."""
    m = report["machine"]
    qi = m.get("qkernels_cpu_info") or {}
    names = [f"numpy {m.get('numpy')} float32 (the ONNX formulas, one thread)"]
    if m.get("onnxruntime"):
        names.append(f"ONNX Runtime {m['onnxruntime']} QuantizeLinear / DequantizeLinear (opset 13)")
    legend = ("Gelem/s = elements / median time per call (memory-bound: no % of peak); x np, x ORT: qkernels "
              "over numpy float32 and ONNX Runtime; each library and thread count in its own process; exact: "
              "qkernels equal to ONNX's definition in float32 (round half to even, saturate), quantize/dequantize; "
              "ORT=ref: ORT's outputs equal to it")
    lines = [f"qkernels {m.get('qkernels')} quantize/dequantize bench: ISA {qi.get('isa', '?')}, {m['cpu']}, "
             f"{m['cpus']} CPU(s)", "peers: " + ", ".join(names), legend, ""]
    head = f"{'case':<18}{'shape':<16}{'kind':<11}{'thr':>3}"
    for op, pre, key in (("quantize", "q", "q"), ("dequantize", "dq", "dq")):
        hdr = (head + "".join(f"{TITLES[lib]:>10}" for lib in LIBS) + f"{'x np':>7}{'x ORT':>7}"
               + f"{'us/call':>9}  exact  ORT=ref")
        lines += [f"{op}, Gelem/s:", hdr, "-" * len(hdr)]
        for r in report["rows"]:
            ort_ok = r["ort_exact"][0 if pre == "q" else 1]
            us = r["ms"][f"{pre}-qkernels"]
            lines.append(f"{r['shape']:<18}{r['dims']:<16}{r['kind']:<11}{r['threads']:>3}"
                         + "".join(cell(r["gelem_s"][f"{pre}-{lib}"], "{:.2f}", 10) for lib in LIBS)
                         + cell(r[f"x_numpy_{key}"], "{:.2f}", 7) + cell(r[f"x_ort_{key}"], "{:.2f}", 7)
                         + cell(us and us * 1e3, "{:.1f}", 9)
                         + f"  {_yn(r[f'{op}_exact'], 'yes', 'WRONG'):<7}{_yn(ort_ok)}" + busy_mark(r))
        lines.append("")
    return "\n".join(lines[:-1] + format_footer(report))


def run_bench(case_list, threads_list, *, quick: bool = False, rounds: int = 1, isa: str | None = None,
              seed: int = 0, libs=LIBS, progress=None, wait_idle_s: float = 0.0, timing: dict | None = None) -> dict:
    """Run every (library, thread count) worker ``rounds`` times; return the report dict
    (``timing``: overrides the quick/full batch settings)."""
    timing, notes, libs = run_setup(quick, libs, timing)
    got = collect(SUITE.name, libs, case_list, threads_list, timing=timing, rounds=rounds, isa=isa,
                  seed=seed, progress=progress, wait_idle_s=wait_idle_s)
    settings = settings_of("cases", case_list, threads_list, quick=quick, rounds=rounds, wait_idle_s=wait_idle_s,
                           timing=timing, seed=seed, isa=isa)
    return SUITE.report(got, case_list, threads_list, notes, settings,
                        cases=[dict(c._asdict(), elems=c.elems, kind=c.kind) for c in case_list])


SUITE = Suite("quant", COLUMNS, _row, (), cases, run_bench, format_table)
