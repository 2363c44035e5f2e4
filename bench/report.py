"""Markdown tables from a saved ``python -m qkernels bench --json`` report (any
suite: ``--suite gemm``, ``--suite conv``, ``--suite f16``, ``--suite quant`` or
``--suite models``).

    python bench/report.py bench.json            # figures, targets, ORT exactness
    python bench/report.py --shapes              # just the GEMM shape table (no report needed)
    python bench/report.py --layers              # just the convolution layer table
    python bench/report.py --compare OLD.json NEW.json   # qkernels speed old vs new (same suite), noise
                                                         # threshold, verdict; exit 3 on a regression
    python bench/report.py pytest-bench.json     # the side-by-side summary of a
                                                 # `pytest bench/ --benchmark-json=...` run

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

from qkernels.bench.compare import CompareError, EXIT_REGRESSION, compare_reports, format_markdown  # noqa: E402


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
#: The peers with AMX denied, shown where a report has them.
CONV_NOAMX = (("ort-u8-noamx", "ORT u8 no AMX"), ("xnnpack-noamx", "XNNPACK no AMX"))


def conv_tables(rep: dict) -> str:
    """ms per call and GOP/s per layer and library; ratios, checks, targets."""
    extra = [(c, t) for c, t in CONV_NOAMX if any(r["gops"].get(c) for r in rep["rows"])]
    peak = any(r.get("pct_peak") for r in rep["rows"])
    titles = ("| qkernels int8 | ORT int8 (s8) | ORT int8 (u8) | ORT fp32 | numpy fp32 | XNNPACK int8 |"
              + "".join(f" {t} |" for _, t in extra))
    legend = ("Milliseconds per call (median); × = qkernels over ONNX Runtime int8 (the faster of its s8 and "
              "u8 activation paths) and over the fastest int8 peer; \"exact\" = qkernels equal to the int64 "
              "reference; \"ORT = ref\": ONNX Runtime's s8 / u8 outputs equal to it too.")
    out = [legend, "",
           "| layer | geometry | threads " + titles + " × ORT int8 | × fastest int8 peer | exact | ORT = ref |",
           "| --- | --- | ---: |" + " ---: |" * (8 + len(extra)) + " :---: | :---: |"]
    yes_no = {True: "yes", False: "**no**", None: "–"}
    for r in rep["rows"]:
        cells = " | ".join(_f(r["ms"].get(c), "{:.3f}") for c in CONV_COLUMNS + tuple(c for c, _ in extra))
        peer = f"{_f(r['x_fastest_peer'], '{:.2f}')}" + (f" ({r['fastest_peer']})" if r["fastest_peer"] else "")
        out.append(f"| `{r['shape']}` | {r['geometry']} | {r['threads']} | {cells} | "
                   f"{_f(r['x_ort_int8'], '{:.2f}')} | {peer} | {yes_no[r['qkernels_exact']]} | "
                   f"{yes_no[r['ort_int8_exact']]} / {yes_no[r.get('ort_u8_exact')]} |")
    out += ["", "GOP/s (2 × multiply-adds / median time)" + ("; % peak: qkernels over the int8 peak (not for "
            "depthwise layers)" if peak else "") + ":", "",
            "| layer | threads " + titles + (" % peak |" if peak else ""),
            "| --- | ---: |" + " ---: |" * (6 + len(extra) + peak)]
    for r in rep["rows"]:
        out.append(f"| `{r['shape']}` | {r['threads']} | "
                   + " | ".join(_f(r["gops"].get(c)) for c in CONV_COLUMNS + tuple(c for c, _ in extra)) + " |"
                   + (f" {_f(r.get('pct_peak'), '{:.0f}')} |" if peak else ""))
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


def quant_tables(rep: dict) -> str:
    """Gelem/s per case of qkernels' quantize and dequantize beside numpy float32 and
    ONNX Runtime; ratios, checks."""
    legend = ("Gelem/s (elements / median time per call; memory-bound, no % of peak); × = qkernels over numpy "
              "float32 and ONNX Runtime; \"exact\" = qkernels equal to ONNX's definition in float32 (round half "
              "to even, saturate); \"ORT = ref\": ONNX Runtime's outputs equal to it too.")
    yes_no = {True: "yes", False: "**no**", None: "–"}
    out = [legend]
    for op, pre in (("quantize", "q"), ("dequantize", "dq")):
        out += ["", f"{op}:", "", "| case | shape | kind | threads | qkernels | numpy fp32 | ORT | × numpy | × ORT "
                "| exact | ORT = ref |", "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | :---: | :---: |"]
        for r in rep["rows"]:
            g = r["gelem_s"]
            out.append(f"| `{r['shape']}` | {r['dims']} | {r['kind']} | {r['threads']} "
                       f"| {_f(g[pre + '-qkernels'], '{:.2f}')} "
                       f"| {_f(g[pre + '-numpy'], '{:.2f}')} | {_f(g[pre + '-ort'], '{:.2f}')} "
                       f"| {_f(r['x_numpy_' + pre], '{:.2f}')} | {_f(r['x_ort_' + pre], '{:.2f}')} "
                       f"| {yes_no[r[op + '_exact']]} | {yes_no[r['ort_exact'][0 if pre == 'q' else 1]]} |")
    return "\n".join(out + targets_table(rep))


def _mib(b, spec="{:.1f}"):
    return _f(None if b is None else b / 2 ** 20, spec)


def _model_check(c) -> str:
    """fp32: within the tolerance or not (largest difference over max |logit|); int8:
    largest difference in output LSB and whether the argmax agrees."""
    if not c:
        return "–"
    if "within_bound" in c:
        return ("ok" if c["within_bound"] else "**WRONG**") + f" ({_f(c.get('rel_diff'), '{:.1e}')})"
    if c.get("error"):
        return c["error"]
    if "cosine_to_fp32" in c:   # an encoder variant: its sentence embedding against float32's
        return f"cosine {_f(c['cosine_to_fp32'], '{:.5f}')} to fp32"
    return f"{_f(c.get('max_diff_lsb'), '{:.0f}')} LSB, argmax {'same' if c.get('argmax_agrees') else '**differs**'}"


def models_tables(rep: dict) -> str:
    """ms per run of qkernels' graph runner and ONNX Runtime per model, ratios, memory,
    checks, targets, and what the runner made of each int8 model."""
    st = rep["settings"]
    legend = ("Milliseconds per `run` (median); qk / ORT = qkernels' time over ONNX Runtime's on the same model "
              "bytes, qk / ORT fp32 = over ONNX Runtime's float32 model (int8 rows); RSS growth = growth of the "
              "process's peak resident memory (`ru_maxrss`) from before reading the model to after the timed runs, "
              "an upper bound including the serialized model and the loaded weights; live = qkernels "
              "`Session.peak_bytes` (input and intermediate tensors alive at once); check: fp32 logits within "
              f"{st.get('fp32_rtol', 1e-4):g} × max \\|logit\\| of ONNX Runtime's (largest difference over "
              "max \\|logit\\|), int8 (information): the largest difference in output LSB and the argmax; an "
              "encoder's int8dyn or fp16 (information): the cosine of its mean-pooled sentence embedding to the "
              "float32 model's.")
    header = ("| model | variant | input | threads | qkernels ms | ORT ms | qk / ORT | ORT fp32 ms | qk / ORT fp32 "
              "| model MiB | RSS growth qkernels MiB | RSS growth ORT MiB | live qkernels MiB "
              "| load qkernels / ORT s | check |")
    out = [legend, "", header, "| --- | --- | --- | ---: |" + " ---: |" * 10 + " --- |"]
    for r in rep["rows"]:
        ms, rss, load = r["ms"], r["rss_growth"], r["load_s"]
        out.append(f"| {r['model']} | {r['variant']} | {r['geometry']} | {r['threads']} | "
                   f"{_f(ms['qkernels'], '{:.2f}')} | {_f(ms['ort'], '{:.2f}')} | {_f(r['qk_over_ort'], '{:.2f}')} | "
                   f"{_f(ms['ort-fp32'], '{:.2f}')} | {_f(r['qk_over_ort_fp32'], '{:.2f}')} | "
                   f"{_mib(r.get('model_bytes'))} | {_mib(rss['qkernels'])} | {_mib(rss['ort'])} | "
                   f"{_mib(r['peak_bytes'], '{:.2f}')} | {_f(load['qkernels'], '{:.2f}')} / "
                   f"{_f(load['ort'], '{:.2f}')} | {_model_check(r['check'])} |")
    return "\n".join(out + targets_table(rep))


def results_tables(rep: dict) -> str:
    # XNNPACK and the peers with AMX denied (*_noamx) where the report has them
    peers = [(c, t) for c, t in (("ort", "ORT int8"), ("ort_noamx", "ORT no AMX"), ("xnnpack", "XNNPACK"),
                                 ("xnnpack_noamx", "XNNPACK no AMX")) if any(r.get(c) for r in rep["rows"])]
    peak = any(r.get("pct_peak") for r in rep["rows"])
    out = ["| shape | threads | qkernels int8 |" + (" % peak |" if peak else "") + " numpy fp32 | "
           + " | ".join(t for _, t in peers) + " | × numpy | " + " | ".join(f"× {t}" for _, t in peers) + " | exact |",
           "| --- | ---: | ---: |" + (" ---: |" if peak else "") + " ---: |" * (2 + 2 * len(peers)) + " :---: |"]
    for r in rep["rows"]:
        exact = {True: "yes", False: "**WRONG**", None: "–"}[r["qkernels_exact"]]
        out.append(f"| `{r['shape']}` | {r['threads']} | {_f(r['qkernels'])} | "
                   + (f"{_f(r.get('pct_peak'), '{:.0f}')} | " if peak else "") + f"{_f(r['numpy'])} | "
                   + " | ".join(_f(r.get(c)) for c, _ in peers) + f" | {_f(r['x_numpy'], '{:.2f}')} | "
                   + " | ".join(_f(r.get(f"x_{c}"), '{:.2f}') for c, _ in peers) + f" | {exact} |")
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


def pytest_summary_tables(rep: dict) -> str:
    """The side-by-side summary of a pytest-benchmark JSON of bench/ (key
    ``qkernels_summary``, written by bench/conftest.py): one table per suite."""
    summ = rep["qkernels_summary"]
    mi = rep.get("machine_info", {})
    out = [f"pytest-benchmark {rep.get('version')} on {mi.get('cpu', {}).get('brand_raw', mi.get('machine'))} "
           f"({summ['cpus']} CPUs), {rep.get('datetime')}; clock {summ['clock']['ghz']} GHz "
           f"({summ['clock']['method']}); "
           + ", ".join(f"{k} {v}" for k, v in summ.get("versions", {}).items()) + ". Rates in GOP/s (quantize/dequantize: Gelem/s; models: ms per run); "
           "× = qkernels' speed-up over the peer (its median time over qkernels')."]
    suites: dict[str, list[dict]] = {}
    for r in summ["rows"]:
        suites.setdefault(r["group"].split("-")[0], []).append(r)
    for name, rows in suites.items():
        peers = sorted({p for r in rows for p in r["peers"]})
        out += ["", f"**{name}**", "",
                "| group | qkernels | rate | % peak | " + " | ".join(f"{p} | ×" for p in peers) + " |",
                "| --- | --- | ---: | ---: | " + " | ".join("---: | ---:" for _ in peers) + " |"]
        for r in rows:
            mine = r["qkernels"] or {}
            cells = []
            for p in peers:
                x = r["peers"].get(p)
                cells += ["–", "–"] if x is None else [_rate(x), _f(x["speedup"], "{:.2f}")]
            out.append(f"| `{r['group'][len(name) + 1:]}` | {r['lib']} | {_rate(mine)} | "
                       f"{_f(mine.get('pct_peak'), '{:.0f}')} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def _rate(x: dict) -> str:
    if not x:
        return "–"
    return f"{x['rate']:.3g}" if x.get("rate") else f"{x['median_s'] * 1e3:.3g} ms"


def compare(old: dict, new: dict) -> str:
    """qkernels speed of two reports of one suite side by side, with the noise threshold
    and verdict of :mod:`qkernels.bench.compare` (the logic ``qkernels bench --compare`` uses)."""
    try:
        return format_markdown(compare_reports(old, new))
    except CompareError as exc:
        raise SystemExit(f"compare: {exc}") from None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("report", nargs="?", help="JSON saved by `python -m qkernels bench --json`")
    ap.add_argument("--shapes", action="store_true", help="print only the GEMM shape table")
    ap.add_argument("--layers", action="store_true", help="print only the convolution layer table")
    ap.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"), help="compare two reports")
    args = ap.parse_args(argv)
    if args.compare:
        old, new = (json.loads(Path(p).read_text()) for p in args.compare)
        try:
            cmp = compare_reports(old, new)
        except CompareError as exc:
            print(f"compare: {exc}", file=sys.stderr)
            return 2
        print(format_markdown(cmp))
        return EXIT_REGRESSION if cmp["regressed"] else 0
    if args.layers:
        print(layers_table())
        return 0
    if args.shapes or not args.report:
        print(shapes_table())
        return 0
    rep = json.loads(Path(args.report).read_text())
    if "qkernels_summary" in rep:            # a pytest-benchmark JSON of bench/
        print(pytest_summary_tables(rep))
        return 0
    m = rep["machine"]
    suite = rep.get("suite", "gemm")
    qi = m.get("qkernels_cpu_info") or {}
    peers = {"conv": f", ONNX Runtime {m.get('onnxruntime')}, XNNPACK (ai-edge-litert {m.get('ai_edge_litert')})",
             "f16": ""}.get(suite, f", ONNX Runtime {m.get('onnxruntime')}"
                            + (f", XNNPACK (ai-edge-litert {m['ai_edge_litert']})" if m.get("ai_edge_litert") else ""))
    blas = m.get("blas") or {}
    print(f"Measured {rep['created']} on {m['cpu']} ({m['cpus']} CPUs), qkernels {m['qkernels']} "
          f"ISA {qi.get('isa')}" + (f" (fp16 kernel {qi.get('f16_kernel')})" if suite == "f16" else "")
          + f", numpy {m['numpy']}"
          + (f" ({blas.get('name')} {blas.get('version')} {blas.get('corename', '')})" if blas else "")
          + f"{peers}; settings {json.dumps(rep['settings']['timing'])}, rounds {rep['settings']['rounds']}.\n")
    pk = m.get("peak") or {}
    if pk.get("measured_gops_per_core"):
        print(f"% peak: of the measured {pk['dtype']} peak, {pk['measured_gops_per_core']:.0f} GOP/s per core "
              f"({pk['measured_by']}).\n")
    print({"conv": conv_tables, "f16": f16_tables, "quant": quant_tables,
           "models": models_tables}.get(suite, results_tables)(rep))
    for note in rep.get("notes", []):
        print(f"\nNote: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
