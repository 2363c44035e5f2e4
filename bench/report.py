"""Markdown tables from a saved ``python -m qkernels bench --json`` report (any
suite: ``--suite gemm``, ``--suite conv`` or ``--suite f16``).

    python bench/report.py bench.json            # figures, targets, ORT exactness
    python bench/report.py --shapes              # just the GEMM shape table (no report needed)
    python bench/report.py --layers              # just the convolution layer table
    python bench/report.py --compare OLD.json NEW.json   # qkernels GOP/s, old vs new (same suite)

docs/performance.md is made from this output, so the docs read the same shape table
and the same numbers as the CLI. Reports of the documented runs are kept in
bench/results/ as baselines to compare with.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shapes import LAYERS, QUICK, QUICK_LAYERS, SHAPES  # noqa: E402


def _f(x, spec="{:.1f}"):
    return "–" if x is None else spec.format(x)


def shapes_table() -> str:
    out = ["| label | M × N × K | GOP per call | in `--quick` | where it comes from |",
           "| --- | --- | ---: | :---: | --- |"]
    for s in SHAPES:
        out.append(f"| `{s.label}` | {s.m} × {s.n} × {s.k} | {s.ops / 1e9:.4g} | "
                   f"{'yes' if s.label in QUICK else ''} | {s.source} |")
    return "\n".join(out)


def layers_table() -> str:
    out = ["| label | layer | GOP per call | in `--quick` | XNNPACK model | where it comes from |",
           "| --- | --- | ---: | :---: | --- | --- |"]
    for la in LAYERS:
        out.append(f"| `{la.label}` | {la.geometry} | {la.ops / 1e9:.4g} | "
                   f"{'yes' if la.label in QUICK_LAYERS else ''} | {la.tflite} | {la.source} |")
    return "\n".join(out)


def targets_table(rep: dict) -> list[str]:
    if not rep.get("targets"):
        return []
    out = ["", "| target | shape | threads | ratio | met |", "| --- | --- | ---: | ---: | :---: |"]
    for t in rep["targets"]:
        out.append(f"| {t['target']} | `{t['shape']}` | {t['threads']} | {t['ratio']:.2f} | "
                   f"{'yes' if t['met'] else '**no**'} |")
    return out


CONV_COLUMNS = ("qkernels", "ort-int8", "ort-u8", "ort-fp32", "numpy-fp32", "xnnpack")


def conv_tables(rep: dict) -> str:
    """ms per call and GOP/s per layer and library; ratios, checks, targets."""
    titles = "| qkernels int8 | ORT int8 (s8) | ORT int8 (u8) | ORT fp32 | numpy fp32 | XNNPACK int8 |"
    legend = ("Milliseconds per call (median); × = qkernels over ONNX Runtime int8 (the faster of its s8 and "
              "u8 activation paths) and over the fastest int8 peer; \"exact\" = qkernels equal to the int64 "
              "reference; \"ORT = ref\": ONNX Runtime's s8 / u8 outputs equal to it too.")
    out = [legend, "",
           "| layer | geometry | threads " + titles + " × ORT int8 | × fastest int8 peer | exact | ORT = ref |",
           "| --- | --- | ---: |" + " ---: |" * 8 + " :---: | :---: |"]
    yes_no = {True: "yes", False: "**no**", None: "–"}
    for r in rep["rows"]:
        cells = " | ".join(_f(r["ms"][c], "{:.3f}") for c in CONV_COLUMNS)
        peer = f"{_f(r['x_fastest_peer'], '{:.2f}')}" + (f" ({r['fastest_peer']})" if r["fastest_peer"] else "")
        out.append(f"| `{r['shape']}` | {r['geometry']} | {r['threads']} | {cells} | "
                   f"{_f(r['x_ort_int8'], '{:.2f}')} | {peer} | {yes_no[r['qkernels_exact']]} | "
                   f"{yes_no[r['ort_int8_exact']]} / {yes_no[r.get('ort_u8_exact')]} |")
    out += ["", "GOP/s (2 × multiply-adds / median time):", "", "| layer | threads " + titles,
            "| --- | ---: |" + " ---: |" * 6]
    for r in rep["rows"]:
        out.append(f"| `{r['shape']}` | {r['threads']} | "
                   + " | ".join(_f(r["gops"][c]) for c in CONV_COLUMNS) + " |")
    return "\n".join(out + targets_table(rep))


F16_COLUMNS = ("qkernels", "numpy-f32", "numpy-f16")


def f16_tables(rep: dict) -> str:
    """GOP/s per shape of qkernels fp16, numpy float32 and float16; ratios, weights, checks, targets."""
    b = rep["settings"]["numpy_f16"]
    mnk = b["max_mnk"]
    mnk = f"2^{mnk.bit_length() - 1}" if mnk > 0 and mnk & (mnk - 1) == 0 else mnk
    legend = ("GOP/s, median; × = qkernels fp16 over numpy float32 and float16; numpy float16 (`np.matmul`, no "
              f"BLAS, one thread) timed within about {b['budget_s']:g} s per shape (at most {b['max_repeats']} "
              f"calls after a warm-up call; \\* = the warm-up call alone), not above M·N·K = {mnk}; "
              "weights = KiB of the packed fp16 weights / of float32 B; \"within bound\" = every qkernels output "
              "within |ref|·2⁻¹¹ + e·(|a|@|b|) + 2⁻²⁵ of the float64 reference, with the largest error over "
              "|a|@|b| and over the bound.")
    out = [legend, "",
           ("| shape | threads | qkernels fp16 | numpy fp32 | numpy fp16 | × numpy fp32 | × numpy fp16 | weights KiB "
            "| within bound | max err / (\\|a\\|@\\|b\\|) | max err / bound |"),
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: | ---: | ---: |"]
    yes_no = {True: "yes", False: "**no**", None: "–"}
    for r in rep["rows"]:
        wb = r["weights_bytes"]
        f16 = _f(r["gops"]["numpy-f16"], "{:.2f}") + ("\\*" if r.get("numpy_f16_timed_once") else "")
        out.append(f"| `{r['shape']}` | {r['threads']} | {_f(r['gops']['qkernels'])} | {_f(r['gops']['numpy-f32'])} "
                   f"| {f16} | {_f(r['x_numpy_f32'], '{:.2f}')} | {_f(r['x_numpy_f16'], '{:.0f}')} | "
                   f"{_f(wb.get('f16_packed') and wb['f16_packed'] / 1024, '{:.0f}')} / {wb['f32'] / 1024:.0f} | "
                   f"{yes_no[r['qkernels_within_bound']]} | {_f(r.get('max_err_rel'), '{:.1e}')} | "
                   f"{_f(r.get('max_err_over_bound'), '{:.2f}')} |")
    return "\n".join(out + targets_table(rep))


def results_tables(rep: dict) -> str:
    out = ["| shape | threads | qkernels int8 | numpy fp32 | ORT int8 | × numpy | × ORT | exact |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | :---: |"]
    for r in rep["rows"]:
        exact = {True: "yes", False: "**WRONG**", None: "–"}[r["qkernels_exact"]]
        out.append(f"| `{r['shape']}` | {r['threads']} | {_f(r['qkernels'])} | {_f(r['numpy'])} | "
                   f"{_f(r['ort'])} | {_f(r['x_numpy'], '{:.2f}')} | {_f(r['x_ort'], '{:.2f}')} | {exact} |")
    if any(r.get("qkernels_i32") for r in rep["rows"]):
        out += ["", "int32 accumulators (`out_dtype=np.int32`) beside ONNX Runtime `MatMulInteger`, GOP/s:", "",
                "| shape | threads | qkernels int32 | ORT MatMulInteger | × ORT |",
                "| --- | ---: | ---: | ---: | ---: |"]
        for r in rep["rows"]:
            out.append(f"| `{r['shape']}` | {r['threads']} | {_f(r['qkernels_i32'])} | "
                       f"{_f(r['ort_matmulinteger'])} | {_f(r['x_ort_matmulinteger'], '{:.2f}')} |")
    out += targets_table(rep)
    ort = {}
    for r in rep["results"]:
        if r["lib"] == "ort" and r.get("check"):
            c = r["check"]
            ort.setdefault((r["op"], r["shape"]), (c["mismatches"], c["size"], c["max_abs_diff"]))
    if ort:
        out += ["", "| ONNX Runtime op | shape | outputs ≠ exact | max abs diff |", "| --- | --- | ---: | ---: |"]
        for (op, label), (bad, size, diff) in sorted(ort.items()):
            out.append(f"| {op} | `{label}` | {bad} / {size} ({100.0 * bad / size:.1f} %) | {diff} |")
    return "\n".join(out)


def compare(old: dict, new: dict) -> str:
    """qkernels GOP/s of two reports of one suite side by side (same shape and thread count)."""
    if old.get("suite", "gemm") != new.get("suite", "gemm"):
        raise SystemExit("compare: the two reports are of different suites")
    suite = new.get("suite", "gemm")
    ratios = {"conv": (("x_ort_int8", "× ORT int8"), ("x_fastest_peer", "× fastest int8 peer")),
              "f16": (("x_numpy_f32", "× numpy fp32"), ("x_numpy_f16", "× numpy fp16"))}.get(
        suite, (("x_numpy", "× numpy"), ("x_ort", "× ORT")))

    def qk(row):
        return row["qkernels"] if suite == "gemm" else row["gops"]["qkernels"]

    before = {(r["shape"], r["threads"]): r for r in old["rows"]}
    out = ["| shape | threads | old GOP/s | new GOP/s | new / old | "
           + " | ".join(f"{title} old → new" for _, title in ratios) + " |",
           "| --- | ---: | ---: | ---: | ---: | --- | --- |"]
    for r in new["rows"]:
        o = before.get((r["shape"], r["threads"]))
        if o is None:
            continue
        change = qk(r) / qk(o) if qk(r) and qk(o) else None
        out.append(f"| `{r['shape']}` | {r['threads']} | {_f(qk(o))} | {_f(qk(r))} | {_f(change, '{:.2f}')} | "
                   + " | ".join(f"{_f(o[key], '{:.2f}')} → {_f(r[key], '{:.2f}')}" for key, _ in ratios) + " |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("report", nargs="?", help="JSON saved by `python -m qkernels bench --json`")
    ap.add_argument("--shapes", action="store_true", help="print only the GEMM shape table")
    ap.add_argument("--layers", action="store_true", help="print only the convolution layer table")
    ap.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"), help="compare two reports")
    args = ap.parse_args(argv)
    if args.compare:
        old, new = (json.loads(Path(p).read_text()) for p in args.compare)
        print(compare(old, new))
        return 0
    if args.layers:
        print(layers_table())
        return 0
    if args.shapes or not args.report:
        print(shapes_table())
        return 0
    rep = json.loads(Path(args.report).read_text())
    m = rep["machine"]
    suite = rep.get("suite", "gemm")
    qi = m.get("qkernels_cpu_info") or {}
    peers = {"conv": f", ONNX Runtime {m.get('onnxruntime')}, XNNPACK (ai-edge-litert {m.get('ai_edge_litert')})",
             "f16": ""}.get(suite, f", ONNX Runtime {m.get('onnxruntime')}")
    print(f"Measured {rep['created']} on {m['cpu']} ({m['cpus']} CPUs), qkernels {m['qkernels']} "
          f"ISA {qi.get('isa')}" + (f" (fp16 kernel {qi.get('f16_kernel')})" if suite == "f16" else "")
          + f", numpy {m['numpy']} "
          f"({(m.get('blas') or {}).get('name')} {(m.get('blas') or {}).get('version')} "
          f"{(m.get('blas') or {}).get('corename', '')}){peers}; "
          f"settings {json.dumps(rep['settings']['timing'])}, rounds {rep['settings']['rounds']}.\n")
    print({"conv": conv_tables, "f16": f16_tables}.get(suite, results_tables)(rep))
    for note in rep.get("notes", []):
        print(f"\nNote: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
