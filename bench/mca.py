"""Arm kernel speed by simulation: llvm-mca on the K loop of each NEON GEMM micro-kernel.

No Arm machine is at hand, so each micro-kernel of kernels/{neon,neondot,neonfp16,i8mm}
is cross-compiled the way setup.py builds it (its COMMON_FLAGS and its ISA folder's
ISA_FLAGS["aarch64"], read from setup.py, plus -S), its K loop is cut out of the
assembly (the innermost loop: a backward branch in the kernel function and the block
it closes; of several, the one with the most multiply-accumulate instructions) and
llvm-mca simulates it on in-order (Cortex-A55, A510) and out-of-order (Neoverse N1,
N2, V1, ...) scheduling models. Reported: multiply-accumulates per cycle and their
share of the peak of the loop's multiply-accumulate instruction (sdot, smmla, smlal,
fmla .8h, fmla .4s), the peak being llvm-mca's rate for a loop of independent
instructions of that exact form under the same model.

Where the K loop sits in an outer loop whose length the source fixes (the fp16
kernel's ``#define QK_F16_CHUNK 8``: fp16 partial sums flushed into fp32 every 8 k),
a second row simulates one outer step: the K loop body as many times as one chunk
needs, then the rest of the outer loop (the flush).

    python bench/mca.py                      # markdown table, default CPU models
    python bench/mca.py --json               # the same as JSON
    python bench/mca.py --cpus cortex-a55,neoverse-n1 --llvm-mca llvm-mca-19
    python bench/mca.py --extra xnn_dot=path/to/kernel.c:neondot:-Ipath/to/include

Runs from a checkout (it reads setup.py and kernels/); needs aarch64-linux-gnu-gcc and
llvm-mca (Debian: gcc-aarch64-linux-gnu, llvm-19). Which CPU names have a model of
their own depends on the LLVM version (LLVM 19 still maps cortex-a76/a78/x1 to the
Cortex-A57 model); the table names the model llvm-mca used for every column.
"""
from __future__ import annotations

import argparse
import ast
import glob
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ISA_FOLDERS = ("neon", "neondot", "neonfp16", "i8mm")
IN_ORDER = ("cortex-a55", "cortex-a510")
OUT_OF_ORDER = ("neoverse-n1", "neoverse-n2", "neoverse-v1", "cortex-a76")
GCC = "aarch64-linux-gnu-gcc"
ITERATIONS = 300

# Multiply-accumulate instructions: (kind, regex on "mnemonic operands", MACs per instruction).
MAC_KINDS = (
    ("sdot", re.compile(r"^sdot\s+v\d+\.4s,"), 16),        # 4 lanes x 4 int8 products
    ("smmla", re.compile(r"^smmla\s+v\d+\.4s,"), 32),      # 2x8 by 8x2 int8 block
    ("smlal", re.compile(r"^smlal2?\s+v\d+\.4s,"), 4),     # 4 int16 products into int32
    ("fmla.8h", re.compile(r"^fm(la|ul)\s+v\d+\.8h,"), 8),   # FMUL: the first step of a chunk
    ("fmla.4s", re.compile(r"^fmla\s+v\d+\.4s,"), 4),
)
# The name of the model llvm-mca used, from the names of its resources.
MODEL_PREFIXES = (("CortexA55", "Cortex-A55"), ("CortexA510", "Cortex-A510"), ("A53", "Cortex-A53"),
                  ("A57", "Cortex-A57"), ("N1", "Neoverse-N1"), ("N2", "Neoverse-N2"),
                  ("V1", "Neoverse-V1"), ("V2", "Neoverse-V2"), ("A64FX", "A64FX"), ("M3", "Exynos-M3"),
                  ("M4", "Exynos-M4"), ("M5", "Exynos-M5"), ("Cyclone", "Apple-Cyclone"))
# Extensions a CPU lacks among those of the kernel folders: its cells say n/a (the
# model still simulates the instruction, but no such core runs the kernel).
CPU_LACKS = {"cortex-a55": {"i8mm"}, "cortex-a76": {"i8mm"}, "cortex-a78": {"i8mm"}, "cortex-x1": {"i8mm"},
             "neoverse-n1": {"i8mm"}, "cortex-a57": {"i8mm", "neondot", "neonfp16"},
             "cortex-a53": {"i8mm", "neondot", "neonfp16"}, "cortex-a72": {"i8mm", "neondot", "neonfp16"}}
BRANCH = re.compile(r"^(b(\.?\w+)?|cbn?z|tbn?z)$")


# ---- setup.py's flags ------------------------------------------------------------------
def setup_flags(setup_py: str = os.path.join(REPO, "setup.py")) -> tuple[list[str], dict[str, list[str]]]:
    """COMMON_FLAGS and ISA_FLAGS["aarch64"] of setup.py, read without running it."""
    tree = ast.parse(open(setup_py).read())
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            found[node.targets[0].id] = node.value
    # only the aarch64 entry is read: the x86 one may be built from other names
    isa = found["ISA_FLAGS"]
    aarch64 = next(v for k, v in zip(isa.keys, isa.values) if ast.literal_eval(k) == "aarch64")
    return ast.literal_eval(found["COMMON_FLAGS"]), ast.literal_eval(aarch64)


def mattr(flags: list[str]) -> str:
    """llvm-mca's -mattr for gcc's -march=armv8.X-a+ext...: the assembler must accept the
    instructions (sdot, smmla, fp16 fmla) whatever the CPU model."""
    names = {"dotprod": "+dotprod", "fp16": "+fullfp16", "i8mm": "+i8mm"}
    out = []
    for f in flags:
        if f.startswith("-march="):
            base, *exts = f[len("-march="):].split("+")
            m = re.match(r"armv(\d+)\.(\d+)-a", base)
            if m and m.group(2) != "0":
                out.append(f"+v{m.group(1)}.{m.group(2)}a")
            out += [names.get(e, "+" + e) for e in exts]
    return ",".join(out)


# ---- assembly ----------------------------------------------------------------------------
def compile_asm(source: str, flags: list[str], include: list[str] = (), gcc: str = GCC) -> str:
    cmd = [gcc, *flags, "-S", "-o", "-", *(f"-I{d}" for d in include), source]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stderr}")
    return r.stdout


def function_body(asm: str, name: str) -> list[str]:
    """The lines of function `name`: labels ("L:") and instructions, directives dropped."""
    lines = asm.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == f"{name}:")
    except StopIteration:
        raise ValueError(f"function {name} not found in the assembly") from None
    body = []
    for line in lines[start + 1:]:
        s = " ".join(line.split("//")[0].split())
        if not s:
            continue
        if s.startswith(".size") or re.match(r"^[A-Za-z_]\w*:$", s):   # its end, or the next function
            break
        if (s.startswith(".") and not s.endswith(":")) or s.startswith("#"):
            continue   # directive, or GCC's #APP / #NO_APP around inline assembly
        body.append(s)
    return body


def _branch_target(insn: str) -> str | None:
    mnemonic, _, ops = insn.partition(" ")
    if not BRANCH.match(mnemonic) or mnemonic in ("bl", "blr", "br", "bic", "bif", "bit", "bsl"):
        return None
    return ops.split(",")[-1].strip()


@dataclass
class Loop:
    start: int   # index of the label in the body
    end: int     # index of the backward branch

    def contains(self, other: "Loop") -> bool:
        return self.start <= other.start and other.end <= self.end and self != other


def loops(body: list[str]) -> list[Loop]:
    labels = {s[:-1]: i for i, s in enumerate(body) if s.endswith(":")}
    out = []
    for i, s in enumerate(body):
        target = None if s.endswith(":") else _branch_target(s)
        if target and re.fullmatch(r"\d+b", target):   # numeric local label of inline asm: the nearest before
            start = max((j for j in range(i) if body[j] == target[:-1] + ":"), default=None)
            if start is not None:
                out.append(Loop(start, i))
        elif target in labels and labels[target] < i:
            out.append(Loop(labels[target], i))
    return out


def instructions(lines: list[str]) -> list[str]:
    return [s for s in lines if not s.endswith(":")]


def mac_kind(insn: str) -> tuple[str, int] | None:
    for kind, rx, macs in MAC_KINDS:
        if rx.match(insn):
            return kind, macs
    return None


def macs_of(insns: list[str]) -> tuple[int, dict[str, int]]:
    total, count = 0, {}
    for s in insns:
        k = mac_kind(s)
        if k:
            total += k[1]
            count[k[0]] = count.get(k[0], 0) + 1
    return total, count


def k_loop(body: list[str]) -> tuple[Loop, Loop | None]:
    """The K loop (innermost, most MACs) and the loop right around it (None if none)."""
    all_loops = loops(body)
    inner = [lp for lp in all_loops if not any(lp.contains(o) for o in all_loops)]
    if not inner:
        raise ValueError("no loop (backward branch) in the function")
    best = max(inner, key=lambda lp: macs_of(instructions(body[lp.start:lp.end + 1]))[0])
    around = [lp for lp in all_loops if lp.contains(best)]
    return best, (min(around, key=lambda lp: lp.end - lp.start) if around else None)


def mca_input(insns: list[str]) -> str:
    """Straight-line text for llvm-mca: every branch retargeted to one label (llvm-mca
    does not follow branches; it replays the block as one loop iteration)."""
    out = ["0:"]
    for s in insns:
        t = _branch_target(s)
        if t is not None:
            s = s[: s.rfind(t)] + "0b"
        out.append("\t" + s)
    return "\n".join(out) + "\n"


def peak_loop(insn: str, width: int = 30) -> list[str]:
    """`width` independent copies of a MAC instruction: each its own accumulator, the same
    two sources (v14, v15: by-element forms of 16-bit lanes need a source below v16)."""
    mnemonic, _, ops = insn.partition(" ")
    regs = re.findall(r"\bv(\d+)\.", ops)
    dests = [r for r in range(32) if r not in (14, 15)][:width]
    out = []
    for d in dests:
        n = iter((d, 14, 15))
        out.append(mnemonic + " " + re.sub(r"\bv\d+\.", lambda m: f"v{next(n)}.", ops, count=len(regs)))
    return out


# ---- llvm-mca ----------------------------------------------------------------------------
def parse_mca(text: str) -> dict:
    """Iterations, total cycles, cycles per iteration and the model's name from llvm-mca's
    summary and resource views."""
    it = int(re.search(r"^Iterations:\s+(\d+)", text, re.M).group(1))
    cycles = int(re.search(r"^Total Cycles:\s+(\d+)", text, re.M).group(1))
    res = re.search(r"^Resources:\n\[[\d.]+\]\s+-\s+(\w+)", text, re.M)
    model = "?"
    if res:
        unit = res.group(1)
        for prefix, name in MODEL_PREFIXES:
            if unit.startswith(prefix + "Unit") or unit.startswith(prefix):
                model = name
                break
    return {"iterations": it, "cycles": cycles, "cycles_per_iter": cycles / it, "model": model}


def run_mca(text: str, cpu: str, attrs: str, llvm_mca: str, iterations: int = ITERATIONS) -> dict:
    cmd = [llvm_mca, "-mtriple=aarch64", f"-mcpu={cpu}", f"-iterations={iterations}",
           "-instruction-info=false"]   # the resource view names the model
    if attrs:
        cmd.append(f"-mattr={attrs}")
    r = subprocess.run(cmd, input=text, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"llvm-mca -mcpu={cpu} failed: {r.stderr.strip()}")
    return parse_mca(r.stdout)


def llvm_version(llvm_mca: str) -> str:
    out = subprocess.run([llvm_mca, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"LLVM version (\S+)", out)
    return m.group(1) if m else "?"


def find_llvm_mca() -> str | None:
    """The newest llvm-mca on PATH (llvm-mca-NN or llvm-mca), or under /usr/lib/llvm-*/bin."""
    cands = set()
    for d in os.environ.get("PATH", "").split(os.pathsep) + glob.glob("/usr/lib/llvm-*/bin"):
        cands.update(glob.glob(os.path.join(d, "llvm-mca-[0-9]*")))
        if os.access(os.path.join(d, "llvm-mca"), os.X_OK):
            cands.add(os.path.join(d, "llvm-mca"))
    best, best_v = None, ()
    for c in sorted(cands):
        try:
            v = tuple(int(x) for x in llvm_version(c).split(".")[:3] if x.isdigit())
        except OSError:
            continue
        if v > best_v:
            best, best_v = c, v
    return best


# ---- kernels -------------------------------------------------------------------------
@dataclass
class Kernel:
    name: str          # function name
    source: str
    isa: str           # folder whose ISA_FLAGS compile it
    include: list[str] = field(default_factory=list)


def repo_kernels() -> list[Kernel]:
    out = []
    for isa in ISA_FOLDERS:
        for src in sorted(glob.glob(os.path.join(REPO, "kernels", isa, "*_gemm_*.c"))):
            out.append(Kernel(os.path.splitext(os.path.basename(src))[0], src, isa,
                              [os.path.join(REPO, "kernels", "include")]))
    return out


def tile(name: str) -> tuple[int, int, int] | None:
    """(mr, nr, kr) from a kernel name: 4x16c4 -> (4, 16, 4); 8x8 -> (8, 8, 1)."""
    m = re.search(r"(\d+)x(\d+)(?:c(\d+))?", name)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 1)) if m else None


def chunk_of(source: str) -> int | None:
    """K steps per outer iteration where the source fixes them (#define QK_*_CHUNK n)."""
    m = re.search(r"^#define\s+QK_\w*CHUNK\s+(\d+)", open(source).read(), re.M)
    return int(m.group(1)) if m else None


@dataclass
class Row:
    kernel: str
    isa: str
    what: str            # "K loop" or "K loop + flush every 8 k"
    kind: str            # MAC instruction kind
    insns: int           # instructions per simulated iteration
    macs: int            # MACs per simulated iteration
    k_per_iter: float
    results: dict        # cpu -> {cycles_per_iter, macs_per_cycle, peak_macs_per_cycle, pct, model}


def analyse(kernel: Kernel, cpus: list[str], llvm_mca: str, common: list[str], isa_flags: dict,
            cflags: list[str] = ()) -> list[Row]:
    flags = common + isa_flags[kernel.isa] + list(cflags)
    body = function_body(compile_asm(kernel.source, flags, kernel.include), kernel.name)
    inner, outer = k_loop(body)
    inner_insns = instructions(body[inner.start:inner.end + 1])
    macs, count = macs_of(inner_insns)
    if not macs:
        raise ValueError(f"{kernel.name}: its innermost loop has no multiply-accumulate")
    kind = max(count, key=count.get)
    sample = next(s for s in inner_insns if mac_kind(s) and mac_kind(s)[0] == kind)
    t = tile(kernel.name)
    k_per_iter = macs / (t[0] * t[1]) if t else float("nan")   # k (not k groups) per iteration
    chunk = chunk_of(kernel.source)
    # a K loop that is one whole chunk holds the flush itself
    whole = chunk is not None and outer is None and k_per_iter == chunk
    variants = [(f"K loop: chunk of {chunk} k, flush included" if whole else "K loop", inner_insns, macs, k_per_iter)]
    if outer is not None and chunk and t:
        reps = chunk / k_per_iter
        if reps == int(reps):
            rest = instructions(body[outer.start:inner.start] + body[inner.end + 1:outer.end + 1])
            seq = inner_insns * int(reps) + rest
            variants.append((f"K loop x {int(reps)} + flush (every {chunk} k)", seq, macs_of(seq)[0], float(chunk)))
    attrs = mattr(isa_flags[kernel.isa])
    peak_text = mca_input(peak_loop(sample))
    peak_macs = macs_of(peak_loop(sample))[0]
    rows = []
    for what, seq, m, kpi in variants:
        res = {}
        for cpu in cpus:
            r = run_mca(mca_input(seq), cpu, attrs, llvm_mca)
            p = run_mca(peak_text, cpu, attrs, llvm_mca)
            mpc, ppc = m / r["cycles_per_iter"], peak_macs / p["cycles_per_iter"]
            res[cpu] = {"model": r["model"], "cycles_per_iter": round(r["cycles_per_iter"], 3),
                        "macs_per_cycle": round(mpc, 3), "peak_macs_per_cycle": round(ppc, 3),
                        "pct": round(100 * mpc / ppc, 1), "cpu_has_isa": kernel.isa not in CPU_LACKS.get(cpu, ())}
        rows.append(Row(kernel.name, kernel.isa, what, kind, len(seq), m, kpi, res))
    return rows


def markdown(rows: list[Row], cpus: list[str], version: str) -> str:
    models = {cpu: next((r.results[cpu]["model"] for r in rows if cpu in r.results), "?") for cpu in cpus}
    head = ["kernel", "loop", "insn", "k/iter"] + [
        f"{cpu}{'' if models[cpu].lower() == cpu.lower() else f' ({models[cpu]} model)'}"
        + (" in-order" if cpu in IN_ORDER else "") for cpu in cpus]
    out = [f"llvm-mca {version}; each cell: % of the instruction's peak (MACs/cycle, peak MACs/cycle); "
           "n/a: that core lacks the kernel's extension", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * 4 + "---:|" * len(cpus)]
    for r in rows:
        cells = ["n/a" if r.isa in CPU_LACKS.get(c, ()) else
                 f"{x['pct']:.0f} % ({x['macs_per_cycle']:.1f} / {x['peak_macs_per_cycle']:.1f})"
                 for c, x in ((c, r.results[c]) for c in cpus)]
        out.append(f"| {r.kernel} | {r.what} | {r.kind} | {r.k_per_iter:g} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--llvm-mca", default=None, help="llvm-mca binary (default: the newest found)")
    ap.add_argument("--cpus", default=",".join(IN_ORDER + OUT_OF_ORDER), help="comma-separated -mcpu names")
    ap.add_argument("--kernels", default="", help="comma-separated substrings of kernel names to keep")
    ap.add_argument("--extra", action="append", default=[],
                    help="NAME=SOURCE:ISA[:-Iinclude,...]: another kernel (e.g. XNNPACK's) compiled the same way")
    ap.add_argument("--cflags", default="", help="flags added after setup.py's (to try one before adding it there)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    args = ap.parse_args(argv)
    llvm_mca = args.llvm_mca or find_llvm_mca()
    if not llvm_mca or not shutil.which(llvm_mca):
        print("llvm-mca not found (Debian: apt-get install llvm-19); or pass --llvm-mca", file=sys.stderr)
        return 2
    if not shutil.which(GCC):
        print(f"{GCC} not found (Debian: apt-get install gcc-aarch64-linux-gnu)", file=sys.stderr)
        return 2
    common, isa_flags = setup_flags()
    kernels = repo_kernels()
    if args.kernels:
        keep = args.kernels.split(",")
        kernels = [k for k in kernels if any(s in k.name for s in keep)]
    for spec in args.extra:
        name, _, rest = spec.partition("=")
        src, isa, *inc = rest.split(":")
        kernels.append(Kernel(name, src, isa, inc[0].replace("-I", "").split(",") if inc else []))
    cpus = [c for c in args.cpus.split(",") if c]
    version = llvm_version(llvm_mca)
    rows = [row for k in kernels for row in analyse(k, cpus, llvm_mca, common, isa_flags, args.cflags.split())]
    if args.json:
        gcc = subprocess.run([GCC, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
        print(json.dumps({"llvm_mca": llvm_mca, "llvm_version": version, "gcc": gcc,
                          "rows": [asdict(r) for r in rows]}, indent=1))
    else:
        print(markdown(rows, cpus, version))
    return 0


if __name__ == "__main__":
    sys.exit(main())
