"""bench/mca.py (Arm kernels by llvm-mca): its parsing, on fixed text. The simulation
itself needs aarch64-linux-gnu-gcc and llvm-mca and is not run here."""
import importlib.util
from pathlib import Path

import pytest

MCA = Path(__file__).resolve().parent.parent / "bench" / "mca.py"
pytestmark = pytest.mark.skipif(not MCA.exists(), reason="bench/mca.py runs from a checkout only")


@pytest.fixture(scope="module")
def mca():
    spec = importlib.util.spec_from_file_location("qk_bench_mca", MCA)
    mod = importlib.util.module_from_spec(spec)
    import sys
    sys.modules[spec.name] = mod   # dataclasses resolve their module
    spec.loader.exec_module(mod)
    return mod


# GCC's shape of a chunked kernel: an outer loop (.L2) around the K loop (.L5), a
# second, inline-assembly loop ("1:" ... "b.hs 1b") with fewer MACs, then another function.
ASM = """\
\t.text
\t.global\tkern
\t.type\tkern, %function
kern:
.LFB1:
\tmovi\tv0.4s, 0
.L2:
\tmovi\tv4.8h, 0
\tmov\tx5, 0
.L5:
\tldr\tq3, [x1, x4]
\tfmla\tv4.8h, v2.8h, v3.h[0]
\tfmla\tv5.8h, v2.8h, v3.h[1]
\tadd\tx5, x5, 1
\tcmp\tx6, x5
\tbne\t.L5
\tfcvtl\tv18.4s, v4.4h
\tfadd\tv2.4s, v2.4s, v18.4s
\tcmp\tx0, x7
\tbhi\t.L2
#APP
1:
\tfmla v7.8h, v2.8h, v3.h[2]
\tsubs x0, x0, #2
\tb.hs 1b
#NO_APP
\tret
\t.size\tkern, .-kern
other:
\tb\t.L2
"""


def test_function_body_and_the_k_loop(mca):
    body = mca.function_body(ASM, "kern")
    assert body[0] == ".LFB1:" and body[-1] == "ret" and "#APP" not in body
    inner, outer = mca.k_loop(body)
    insns = mca.instructions(body[inner.start:inner.end + 1])
    assert insns[0] == "ldr q3, [x1, x4]" and insns[-1] == "bne .L5"
    assert body[outer.start] == ".L2:" and body[outer.end] == "bhi .L2"
    assert len(mca.loops(body)) == 3   # .L5, .L2 and the numeric label of the inline assembly
    assert mca.macs_of(insns) == (16, {"fmla.8h": 2})
    with pytest.raises(ValueError, match="not found"):
        mca.function_body(ASM, "missing")


def test_mca_input_retargets_every_branch_to_one_label(mca):
    text = mca.mca_input(["cbz x0, .L9", "sdot v1.4s, v2.16b, v3.4b[0]", "b.ne .L5", "tbz w1, #3, 2f"])
    assert text.splitlines() == ["0:", "\tcbz x0, 0b", "\tsdot v1.4s, v2.16b, v3.4b[0]", "\tb.ne 0b",
                                 "\ttbz w1, #3, 0b"]


def test_peak_loop_is_independent_copies_of_the_same_form(mca):
    loop = mca.peak_loop("smlal2 v20.4s, v1.8h, v9.h[3]")
    assert len(loop) == 30 and loop[0] == "smlal2 v0.4s, v14.8h, v15.h[3]"
    dests = [s.split()[1] for s in loop]
    assert len(set(dests)) == 30 and "v14.4s," not in dests and "v15.4s," not in dests
    assert mca.mac_kind(loop[0]) == ("smlal", 4)
    assert mca.mac_kind("smmla v1.4s, v2.16b, v3.16b") == ("smmla", 32)
    assert mca.mac_kind("fmul v1.8h, v2.8h, v3.h[1]") == ("fmla.8h", 8)
    assert mca.mac_kind("fmla v1.4s, v2.4s, v3.s[1]") == ("fmla.4s", 4)
    assert mca.mac_kind("fadd v1.4s, v2.4s, v3.4s") is None


def test_flags_come_from_setup_py(mca):
    common, isa = mca.setup_flags()
    assert "-O3" in common
    assert set(mca.ISA_FOLDERS) <= set(isa)
    assert all(any(f.startswith("-march=") for f in isa[k]) for k in mca.ISA_FOLDERS)
    assert mca.mattr(["-march=armv8.2-a+dotprod"]) == "+v8.2a,+dotprod"
    assert mca.mattr(["-march=armv8.2-a+fp16", "-O3"]) == "+v8.2a,+fullfp16"
    assert mca.mattr(["-march=armv8-a"]) == ""
    assert mca.tile("qs8_gemm_4x16c4_neondot") == (4, 16, 4) and mca.tile("f16_gemm_8x8_neon") == (8, 8, 1)


def test_parse_mca_summary(mca):
    out = """Iterations:        300
Instructions:      7200
Total Cycles:      4811
Total uOps:        7200

Dispatch Width:    8

Resources:
[0]   - N1UnitB
[1.0] - N1UnitD
"""
    r = mca.parse_mca(out)
    assert r["iterations"] == 300 and r["cycles"] == 4811 and r["model"] == "Neoverse-N1"
    assert abs(r["cycles_per_iter"] - 4811 / 300) < 1e-12
    assert mca.parse_mca(out.replace("N1UnitB", "CortexA55UnitALU"))["model"] == "Cortex-A55"
    assert mca.parse_mca(out.replace("N1UnitB", "A57UnitB"))["model"] == "Cortex-A57"
