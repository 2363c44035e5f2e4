"""Markdown tables from a saved ``python -m qkernels bench --json`` report.

    python bench/report.py bench.json            # shapes, figures, targets, ORT exactness
    python bench/report.py --shapes              # just the shape table (no report needed)
    python bench/report.py --compare OLD.json NEW.json   # qkernels GOP/s, old vs new

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
from shapes import QUICK, SHAPES  # noqa: E402


def _f(x, spec="{:.1f}"):
    return "–" if x is None else spec.format(x)


def shapes_table() -> str:
    out = ["| label | M × N × K | GOP per call | in `--quick` | where it comes from |",
           "| --- | --- | ---: | :---: | --- |"]
    for s in SHAPES:
        out.append(f"| `{s.label}` | {s.m} × {s.n} × {s.k} | {s.ops / 1e9:.4g} | "
                   f"{'yes' if s.label in QUICK else ''} | {s.source} |")
    return "\n".join(out)


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
    if rep.get("targets"):
        out += ["", "| target | shape | threads | ratio | met |", "| --- | --- | ---: | ---: | :---: |"]
        for t in rep["targets"]:
            out.append(f"| {t['target']} | `{t['shape']}` | {t['threads']} | {t['ratio']:.2f} | "
                       f"{'yes' if t['met'] else '**no**'} |")
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
    """qkernels GOP/s of two reports side by side (same shape and thread count)."""
    before = {(r["shape"], r["threads"]): r for r in old["rows"]}
    out = ["| shape | threads | old GOP/s | new GOP/s | new / old | × numpy old → new | × ORT old → new |",
           "| --- | ---: | ---: | ---: | ---: | --- | --- |"]
    for r in new["rows"]:
        o = before.get((r["shape"], r["threads"]))
        if o is None:
            continue
        change = r["qkernels"] / o["qkernels"] if r["qkernels"] and o["qkernels"] else None
        out.append(f"| `{r['shape']}` | {r['threads']} | {_f(o['qkernels'])} | {_f(r['qkernels'])} | "
                   f"{_f(change, '{:.2f}')} | {_f(o['x_numpy'], '{:.2f}')} → {_f(r['x_numpy'], '{:.2f}')} | "
                   f"{_f(o['x_ort'], '{:.2f}')} → {_f(r['x_ort'], '{:.2f}')} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("report", nargs="?", help="JSON saved by `python -m qkernels bench --json`")
    ap.add_argument("--shapes", action="store_true", help="print only the shape table")
    ap.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"), help="compare two reports")
    args = ap.parse_args(argv)
    if args.compare:
        old, new = (json.loads(Path(p).read_text()) for p in args.compare)
        print(compare(old, new))
        return 0
    if args.shapes or not args.report:
        print(shapes_table())
        return 0
    rep = json.loads(Path(args.report).read_text())
    m = rep["machine"]
    print(f"Measured {rep['created']} on {m['cpu']} ({m['cpus']} CPUs), qkernels {m['qkernels']} "
          f"ISA {(m.get('qkernels_cpu_info') or {}).get('isa')}, numpy {m['numpy']} "
          f"({(m.get('blas') or {}).get('name')} {(m.get('blas') or {}).get('version')} "
          f"{(m.get('blas') or {}).get('corename', '')}), ONNX Runtime {m.get('onnxruntime')}; "
          f"settings {json.dumps(rep['settings']['timing'])}, rounds {rep['settings']['rounds']}.\n")
    print(results_tables(rep))
    for note in rep.get("notes", []):
        print(f"\nNote: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
