"""The measured ``vpdpbusd`` peak of bench/peak.py (the ``% peak`` of the VNNI paths): the
encodings against GNU as, the loop's machine code, the CPU-flag guard, the peak in the
reports (gemm and conv), and the XNNPACK column of the gemm suite."""
import struct

import pytest

from qkernels.bench import conv, gemm, harness, peers
from qkernels.bench import peak as bench_peak

#: ``objdump -d`` of GNU as 2.40 (``.intel_syntax``; ``{vex}`` for the ymm forms).
GNU_AS = [
    ((0, 24, 25, True), "62 92 3d 40 50 c1"),
    ((23, 24, 25, True), "62 82 3d 40 50 f9"),
    ((5, 30, 31, True), "62 92 0d 40 50 ef"),
    ((17, 3, 12, True), "62 c2 65 48 50 cc"),
    ((8, 16, 7, True), "62 72 7d 40 50 c7"),
    ((31, 15, 20, True), "62 22 05 48 50 fc"),
    ((0, 14, 15, False), "c4 c2 0d 50 c7"),
    ((13, 14, 15, False), "c4 42 0d 50 ef"),
    ((9, 2, 3, False), "c4 62 6d 50 cb"),
    ((8, 0, 1, False), "c4 62 7d 50 c1"),
    ((2, 9, 10, False), "c4 c2 35 50 d2"),
]


@pytest.mark.parametrize("args, hexbytes", GNU_AS)
def test_vpdpbusd_encoding_matches_gnu_as(args, hexbytes):
    *regs, zmm = args
    assert bench_peak.encode_vpdpbusd(*regs, zmm=zmm) == bytes.fromhex(hexbytes)


@pytest.mark.parametrize("regs, zmm", [((16, 0, 1), False), ((0, 32, 1), True), ((-1, 0, 1), True)])
def test_vpdpbusd_registers_out_of_range_are_refused(regs, zmm):
    with pytest.raises(ValueError, match="registers must be in"):
        bench_peak.encode_vpdpbusd(*regs, zmm=zmm)


def _dst(insn: bytes) -> int:
    """The destination register of one encoded ``vpdpbusd`` (EVEX: R and R' bits; VEX: R)."""
    reg = insn[-1] >> 3 & 7
    if insn[0] == 0x62:
        return reg | (0 if insn[1] & 0x80 else 8) | (0 if insn[1] & 0x10 else 16)
    return reg | (0 if insn[1] & 0x80 else 8)


@pytest.mark.parametrize("isa", sorted(bench_peak.DOT_LOOPS))
def test_dot_loop_code_is_a_counted_loop_of_independent_instructions(isa):
    loop = bench_peak.DOT_LOOPS[isa]
    width = 6 if loop.macs == 64 else 5
    code = bench_peak.dot_loop_code(loop)
    assert code[:3] == b"\x48\x89\xf8" and code[-4:] == b"\xc5\xf8\x77\xc3"   # mov rax, rdi ... vzeroupper; ret
    body = code[3:3 + width * loop.per_iteration]
    insns = [body[i:i + width] for i in range(0, len(body), width)]
    assert all(i[-2] == 0x50 and i[0] == (0x62 if width == 6 else 0xC4) for i in insns)
    dsts = [_dst(i) for i in insns]
    assert len(insns) >= 20 and len(set(dsts)) == loop.accumulators >= 14
    assert set(loop.sources).isdisjoint(dsts)                                  # the sources are never written
    first = dsts[:loop.accumulators]
    assert len(set(first)) == len(first)               # consecutive instructions independent of each other
    tail = code[3 + len(body):]
    assert tail[:3] == b"\x48\xff\xcf" and tail[3:5] == b"\x0f\x85"          # dec rdi; jnz rel32
    rel = struct.unpack("<i", tail[5:9])[0]
    assert 3 + len(body) + 9 + rel == 3                                       # back to the first vpdpbusd


def test_the_loop_runs_only_where_the_cpu_has_the_instruction(monkeypatch):
    monkeypatch.setattr(bench_peak.platform, "machine", lambda: "x86_64")
    avx512 = {"avx2", "avx512f", "avx512bw", "avx512vl", "avx512_vnni"}
    assert bench_peak.dot_loop_for("avx512vnni", avx512).macs == 64
    assert bench_peak.dot_loop_for("avxvnni", avx512) is None                # AVX-512 VNNI is not AVX-VNNI
    assert bench_peak.dot_loop_for("avxvnni", {"avx2", "avx_vnni"}).macs == 32
    assert bench_peak.dot_loop_for("avx512vnni", {"avx2", "avx_vnni"}) is None
    assert bench_peak.dot_loop_for("avx2", avx512 | {"avx_vnni"}) is None   # other paths: ops per cycle
    assert bench_peak.dot_loop_for(None, avx512) is None
    monkeypatch.setattr(bench_peak.platform, "machine", lambda: "aarch64")
    assert bench_peak.dot_loop_for("avx512vnni", avx512) is None


@pytest.mark.parametrize("isa", sorted(bench_peak.DOT_LOOPS))
def test_measured_peak_here_or_none(isa):
    got = bench_peak.measure_int8_peak(isa, repeats=3)
    if bench_peak.dot_loop_for(isa) is None:
        assert got is None
        return
    macs = bench_peak.DOT_LOOPS[isa].macs
    assert got["macs_per_instruction"] == macs and got["instruction"].startswith("vpdpbusd")
    assert got["gops_per_core"] == pytest.approx(got["instructions_per_s"] * 2 * macs / 1e9, rel=1e-3)
    assert 0.2 < got["instructions_per_s"] / 1e9 < 30         # at most a few per cycle at a few GHz


def test_measured_int8_peak_replaces_ops_per_cycle():
    assert bench_peak.peak_gops(2.5, "avx512vnni", "int8") is None                  # no table entry
    assert bench_peak.peak_gops(2.5, "avx512vnni", "int8", threads=4, cpus=2, int8_measured=680.0) == 1360.0
    assert bench_peak.peak_gops(None, "avxvnni", "int8", int8_measured=340.0) == 340.0   # no clock needed
    assert bench_peak.peak_gops(2.9, "avx2", "f16", int8_measured=680.0) == pytest.approx(92.8)  # int8 only
    rows = [{"shape": "square-1024", "threads": 1, "qkernels": 340.0},
            {"shape": "square-64", "threads": 2, "qkernels": 340.0}]
    machine = {"cpus": 2, "qkernels_cpu_info": {"isa": "avx512vnni"}, "clock": {"ghz": 2.5, "method": "given"},
               "int8_peak": {"gops_per_core": 680.0, "method": "measured: test"}}
    harness.add_peak(rows, machine, "int8", lambda r: r["qkernels"], gemm.SHAPES,
                     applies=lambda r: r["shape"] != "square-64")
    assert rows[0]["pct_peak"] == pytest.approx(50.0) and rows[1]["pct_peak"] is None
    assert machine["peak"]["ops_per_cycle_per_core"] == 272 and machine["peak"]["measured_gops_per_core"] == 680.0
    assert "measured int8 peak, 680 GOP/s per core (measured: test; = 272 ops/cycle" in harness.peak_line(machine)


def test_gemm_suite_names_xnnpack_models_found_in_the_checkout():
    named = {s.label: s.tflite for s in gemm.SHAPES if s.tflite}
    assert named == {"square-1024": "gemm1024_int8.tflite", "gemv-1024": "gemv1024_int8.tflite"}
    assert "xnnpack" in gemm.LIBS and gemm.COLUMNS["xnnpack"] == ("xnnpack", "tflite-s8")
    assert conv._xnnpack_plan is peers.xnnpack_plan                                  # one plan for both suites
    if not peers.have("ai_edge_litert"):
        folder, found, notes = peers.xnnpack_plan(gemm.SHAPES)
        assert found == [] and "not importable" in notes[0]
        return
    folder, found, notes = peers.xnnpack_plan(gemm.SHAPES)
    if folder is None:
        pytest.fail(f"no bench/tflite folder found: {notes}")
    assert [s.label for s in found] == ["square-1024", "gemv-1024"] and notes == []


def test_xnnpack_gemm_worker_times_a_matching_model_and_refuses_another():
    if not peers.have("ai_edge_litert"):
        pytest.skip("ai-edge-litert is not installed")
    folder, found, _ = peers.xnnpack_plan(gemm.SHAPES)
    gemv = next(s for s in found if s.label == "gemv-1024")
    wrong = gemm.Shape(2, 1024, 1024, "gemv-wrong-m", "test", tflite=gemv.tflite)
    out = harness.run_worker("xnnpack", 1, [gemv, wrong], {"min_time": 0.001, "repeats": 3, "warmup": 0.0},
                             module="gemm", tflite_dir=folder)
    ok, bad = out["results"]
    assert ok["lib"] == "xnnpack" and ok["shape"] == "gemv-1024" and ok["median_s"] > 0
    assert bad["shape"] == "gemv-wrong-m" and "expected" in bad["error"] and "median_s" not in bad
    assert out["info"]["ai_edge_litert"]


def test_peers_with_amx_denied_run_only_on_an_amx_cpu(monkeypatch):
    libs = ("qkernels", "ort", "ort-noamx", "xnnpack", "xnnpack-noamx")
    monkeypatch.setattr(bench_peak, "has_amx", lambda flags=None: False)
    _, _, got = harness.run_setup(True, libs)
    assert not any(lib.endswith(bench_peak.NOAMX) for lib in got)
    monkeypatch.setattr(bench_peak, "has_amx", lambda flags=None: True)
    _, _, got = harness.run_setup(True, libs)
    want = list(libs) if peers.have("onnxruntime") and peers.have("onnx") else \
        [lib for lib in libs if not lib.startswith("ort")]
    assert got == want


def test_amx_is_read_from_the_cpu_flags():
    assert bench_peak.has_amx({"amx_tile", "amx_int8"}) and not bench_peak.has_amx({"avx512_vnni"})


def test_a_noamx_worker_runs_its_peer_without_amx_tiles():
    if not (peers.have("onnxruntime") and peers.have("onnx")):
        pytest.skip("onnxruntime and onnx are not both installed")
    tiny = [gemm.Shape(5, 16, 12, "tiny", "test")]
    timing = {"min_time": 0.001, "repeats": 3, "warmup": 0.0}
    runs = {lib: harness.run_worker(lib, 1, tiny, timing, module="gemm", int32=False) for lib in ("ort", "ort-noamx")}
    assert [r["lib"] for r in runs["ort-noamx"]["results"]] == ["ort-noamx"]
    assert runs["ort-noamx"]["results"][0]["check"]["exact"] and runs["ort-noamx"]["results"][0]["median_s"] > 0
    amx = {lib: out["info"]["amx_tiles_permitted"] for lib, out in runs.items()}
    if bench_peak.amx_tiles_permitted() is None:          # not x86-64 Linux: nothing to ask
        assert amx == {"ort": None, "ort-noamx": None}
    elif bench_peak.has_amx():                            # ONNX Runtime asks for AMX; denied, it cannot have it
        assert amx == {"ort": True, "ort-noamx": False}
    else:
        assert amx["ort-noamx"] is False


def test_report_tables_show_the_new_columns_only_where_present():
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parent.parent / "bench" / "report.py"
    spec = importlib.util.spec_from_file_location("bench_report_for_test", path)
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    row = {"shape": "square-1024", "threads": 1, "qkernels": 300.0, "numpy": 60.0, "ort": 1200.0, "x_numpy": 5.0,
           "x_ort": 0.25, "qkernels_exact": True}
    old = report.results_tables({"rows": [row], "results": []})
    assert "XNNPACK" not in old and "% peak" not in old and "| 300.0 | 60.0 | 1200.0 | 5.00 | 0.25 | yes |" in old
    new = report.results_tables({"rows": [dict(row, pct_peak=44.0, ort_noamx=400.0, x_ort_noamx=0.75)],
                                 "results": []})
    assert "% peak | numpy fp32 | ORT int8 | ORT no AMX | × numpy | × ORT int8 | × ORT no AMX |" in new
    assert "| 300.0 | 44 | 60.0 | 1200.0 | 400.0 | 5.00 | 0.25 | 0.75 | yes |" in new
