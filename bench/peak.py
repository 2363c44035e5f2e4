"""This CPU's theoretical peak: the ``% peak`` column of ``qkernels bench`` (gemm and f16).

peak GOP/s = ops per cycle per core (from the ISA path in use, :func:`ops_per_cycle`)
x clock (GHz, :func:`measure_clock`) x cores used (``min(threads, CPUs)``).

Ops per cycle per core count a multiply-add as two operations and assume two vector
multiply (or FMA) pipes per core, as on Zen 2/3/4, Skylake-to-Golden-Cove client cores
and Arm's Cortex-A76 / Neoverse N1-class cores:

========  ==================================================  ========  ========
ISA       instruction of the inner product                    int8      fp16/fp32
========  ==================================================  ========  ========
avx2      exact int8: ``vpmaddwd`` 2 pipes x 16 MACs x 2       64        32 (FMA
          (7-bit weights: ``vpmaddubsw``, 32 MACs: 128)                  2 x 8 x 2)
neon      ``smlal`` 2 x 8 x 2 / fp32 ``fmla`` 2 x 4 x 2        32        16 (32 with
                                                                         FP16 arith.)
neondot   ``sdot`` 2 x 16 x 2                                  64        as neon
i8mm      ``smmla`` 2 x 32 x 2                                 128       as neon
scalar    none: no peak is given                               -         -
========  ==================================================  ========  ========

The clock is *measured* in the process that runs the kernels (the qkernels worker of
the bench), not read: on x86-64 a chain of dependent instructions
(``add rax, rcx``: one cycle of latency each on every x86 core of the last decade) is written into an
executable page and called through ctypes; cycles / seconds of the fastest of 25
~2 ms runs (short, so that some run escapes preemption on a busy machine) is the effective clock under load (turbo included). Where that is not
possible (another architecture, or a system that refuses writable-executable memory) the
clock is read: ``cpufreq/cpuinfo_max_freq`` in sysfs, else ``cpu MHz`` of
``/proc/cpuinfo`` (in a VM often the nominal TSC rate, below the real turbo clock). The
report says which (``machine.clock.method``).

The VNNI paths (``avx512vnni``, ``avxvnni``) get a *measured* int8 peak instead
(:func:`measure_int8_peak`): a loop of independent ``vpdpbusd`` instructions (EVEX zmm:
64 MACs each; VEX ymm for AVX-VNNI: 32 MACs) written into an executable page like the
clock loop; peak GOP/s per core = instructions/s x 2 x MACs per instruction, fastest of
several ~2 ms runs. It needs no pipe count and no clock (AVX-512 frequency licences
included), and is only run where ``/proc/cpuinfo`` lists the instruction's flags
(elsewhere it would die of SIGILL): no peak is given otherwise.

Imports neither qkernels nor numpy: the qkernels worker measures the clock, and
``bench/suite.py`` (pytest-benchmark) reads the peak.
"""
from __future__ import annotations

import platform
import struct
import time
from typing import NamedTuple

#: int8 ops (2 per multiply-add) per cycle per core, by qkernels ISA path; full-range weights.
INT8_OPS_PER_CYCLE = {"avx2": 64, "neon": 32, "neondot": 64, "i8mm": 128}
#: ... with 7-bit weights (the provably exact ``vpmaddubsw`` kernel on AVX2).
INT8_W7_OPS_PER_CYCLE = {"avx2": 128}
#: fp16 GEMM (fp32 FMA; Arm FP16 arithmetic: 8 halves per vector) flops per cycle per core.
F16_OPS_PER_CYCLE = {"avx2": 32, "neon": 16, "neondot": 16, "i8mm": 16}
F16_ARITH_OPS_PER_CYCLE = 32

_ADDS_PER_ITERATION = 32


def ops_per_cycle(isa: str | None, dtype: str, wbits: int = 8, f16_kernel: str | None = None) -> int | None:
    """Operations per cycle per core of the ``isa`` path for ``dtype`` (``"int8"`` or
    ``"f16"``); None when no peak is defined (``scalar``, unknown ISA)."""
    if dtype == "int8":
        if wbits < 8 and isa in INT8_W7_OPS_PER_CYCLE:
            return INT8_W7_OPS_PER_CYCLE[isa]
        return INT8_OPS_PER_CYCLE.get(isa)
    if dtype == "f16":
        if f16_kernel and "neonfp16" in f16_kernel:
            return F16_ARITH_OPS_PER_CYCLE
        return F16_OPS_PER_CYCLE.get(isa)
    raise ValueError(f"dtype must be 'int8' or 'f16', got {dtype!r}")


def peak_gops(clock_ghz: float | None, isa: str | None, dtype: str, threads: int = 1, cpus: int | None = None,
              wbits: int = 8, f16_kernel: str | None = None, int8_measured: float | None = None) -> float | None:
    """Theoretical peak GOP/s on ``min(threads, cpus)`` cores (None: unknown clock or no peak);
    ``int8_measured``: the measured int8 GOP/s of one core (:func:`measure_int8_peak`),
    used instead of ops per cycle x clock for int8."""
    cores = max(1, min(threads, cpus or threads))
    if dtype == "int8" and int8_measured:
        return int8_measured * cores
    opc = ops_per_cycle(isa, dtype, wbits, f16_kernel)
    if not opc or not clock_ghz:
        return None
    return opc * clock_ghz * cores


def pct_peak(gops: float | None, peak: float | None) -> float | None:
    """``gops`` as a percentage of ``peak`` (None when either is unknown)."""
    return 100.0 * gops / peak if gops and peak else None


def _dependent_add_loop():
    """A ctypes function ``f(n)`` running ``n`` x 32 dependent ``add rax, rcx`` (rcx = 1;
    x86-64 SysV), and the mmap holding its code (keep it alive). Register, not immediate,
    operands: Golden Cove-class Intel cores (Sapphire Rapids and later) fold chains of
    ``add reg, imm`` at rename, and ``add rax, 1`` measured 21 GHz there."""
    import ctypes
    import mmap
    code = b"\x48\x89\xf8"                                   # mov rax, rdi
    code += b"\xb9\x01\x00\x00\x00"                           # mov ecx, 1
    top = len(code)
    code += b"\x48\x01\xc8" * _ADDS_PER_ITERATION            # add rax, rcx (the dependency chain)
    code += b"\x48\xff\xcf"                                  # dec rdi      (a separate chain)
    code += b"\x0f\x85" + struct.pack("<i", top - (len(code) + 6))   # jnz top
    code += b"\xc3"                                          # ret
    buf = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    buf.write(code)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    return ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_uint64)(addr), buf


def _measured_ghz(batch_s: float = 0.002, repeats: int = 25) -> float:
    fn, _buf = _dependent_add_loop()
    rate = _best_rate(fn, batch_s, repeats, expect=lambda n: n + n * _ADDS_PER_ITERATION)
    return rate * _ADDS_PER_ITERATION / 1e9


def _read_ghz() -> tuple[float, str] | None:
    try:
        with open("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq") as f:
            return int(f.read()) / 1e6, "read: sysfs cpufreq cpuinfo_max_freq"
    except (OSError, ValueError):
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("cpu mhz"):
                    return float(line.split(":", 1)[1]) / 1e3, "read: /proc/cpuinfo cpu MHz"
    except (OSError, ValueError):
        pass
    return None


def measure_clock() -> dict:
    """This core's clock: ``{"ghz": ..., "method": ...}`` (``ghz`` None when neither
    measurable nor readable). Takes about 0.1 s."""
    if platform.machine().lower() in ("x86_64", "amd64"):
        try:
            return {"ghz": round(_measured_ghz(), 3), "method": "measured: dependent-add loop (1 cycle per add)"}
        except (OSError, ValueError, RuntimeError, AttributeError) as exc:
            failed = f"; the dependent-add loop failed: {exc}"
    else:
        failed = ""
    got = _read_ghz()
    if got is None:
        return {"ghz": None, "method": "unknown" + failed}
    return {"ghz": round(got[0], 3), "method": got[1] + failed}


# ---------------------------------------------------------------- the measured vpdpbusd peak

class DotLoop(NamedTuple):
    """A ``vpdpbusd`` throughput loop: its encoding, registers and the CPU flags it needs."""
    instruction: str
    flags: tuple            # /proc/cpuinfo flags the instruction needs
    macs: int               # u8 x s8 multiply-adds per instruction
    accumulators: int       # independent destination registers, 0..accumulators-1
    sources: tuple          # the two (unchanging) multiplicand registers
    per_iteration: int      # instructions per loop iteration


#: The loop of each VNNI ISA path. zmm: 24 accumulators, each written once per iteration
#: (24 independent instructions, 5 cycles of latency x 2 per cycle at most: enough in
#: flight). VEX has 16 ymm registers only: 14 accumulators, each written twice (28
#: instructions; 7 cycles between dependent ones at 2 per cycle, above the latency).
DOT_LOOPS = {
    "avx512vnni": DotLoop("vpdpbusd zmm (EVEX)", ("avx512f", "avx512_vnni"), 64, 24, (24, 25), 24),
    "avxvnni": DotLoop("vpdpbusd ymm (VEX, AVX-VNNI)", ("avx_vnni",), 32, 14, (14, 15), 28),
}


def encode_vpdpbusd(dst: int, src1: int, src2: int, zmm: bool) -> bytes:
    """``vpdpbusd dst, src1, src2`` (register operands): EVEX.512.66.0F38.W0 50 /r for
    zmm0-31, else VEX.256.66.0F38.W0 50 /r (the AVX-VNNI form, ``{vex}``) for ymm0-15."""
    top = 31 if zmm else 15
    if not all(0 <= r <= top for r in (dst, src1, src2)):
        raise ValueError(f"registers must be in 0..{top} for the {'EVEX zmm' if zmm else 'VEX ymm'} form")
    modrm = bytes([0xC0 | (dst & 7) << 3 | (src2 & 7)])
    inv = lambda r, bit: 0 if (r >> bit) & 1 else 1   # noqa: E731 - VEX/EVEX store register bits inverted
    if zmm:
        p0 = inv(dst, 3) << 7 | inv(src2, 4) << 6 | inv(src2, 3) << 5 | inv(dst, 4) << 4 | 0b10   # map 0F38
        p1 = (~src1 & 15) << 3 | 1 << 2 | 0b01                                # W0, vvvv, 1, pp = 66
        p2 = 0b10 << 5 | inv(src1, 4) << 3                                    # L'L = 512, V', no mask
        return bytes([0x62, p0, p1, p2, 0x50]) + modrm
    b1 = inv(dst, 3) << 7 | 1 << 6 | inv(src2, 3) << 5 | 0b00010              # R X B, map 0F38
    b2 = (~src1 & 15) << 3 | 1 << 2 | 0b01                                    # W0, vvvv, L = 256, pp = 66
    return bytes([0xC4, b1, b2, 0x50]) + modrm


def dot_loop_code(loop: DotLoop) -> bytes:
    """Machine code of ``f(n)``: ``n`` iterations of ``loop``; returns ``n`` (x86-64 SysV;
    every vector register is caller-saved there). ``vzeroupper`` before returning: no
    AVX-to-SSE transition penalty for the caller."""
    zmm = loop.macs == 64
    code = b"\x48\x89\xf8"                                   # mov rax, rdi
    top = len(code)
    for i in range(loop.per_iteration):
        code += encode_vpdpbusd(i % loop.accumulators, *loop.sources, zmm=zmm)
    code += b"\x48\xff\xcf"                                  # dec rdi
    code += b"\x0f\x85" + struct.pack("<i", top - (len(code) + 6))   # jnz top
    code += b"\xc5\xf8\x77\xc3"                              # vzeroupper; ret
    return code


def cpu_flags() -> set[str]:
    """The flags of the first CPU in ``/proc/cpuinfo`` (empty when unreadable)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def dot_loop_for(isa: str | None, flags=None) -> DotLoop | None:
    """The ``vpdpbusd`` loop measuring the peak of ``isa``, or None: no such loop for that
    path, not x86-64, or the CPU lacks the instruction (``flags``: its cpuinfo flags)."""
    loop = DOT_LOOPS.get(isa or "")
    if loop is None or platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    flags = cpu_flags() if flags is None else flags
    return loop if all(f in flags for f in loop.flags) else None


def _exec_function(code: bytes):
    """A ctypes ``uint64 f(uint64)`` running ``code``, and the mmap holding it (keep it alive)."""
    import ctypes
    import mmap
    buf = mmap.mmap(-1, max(mmap.PAGESIZE, len(code)), prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    buf.write(code)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    return ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_uint64)(addr), buf


def _best_rate(fn, batch_s: float, repeats: int, expect=lambda n: n) -> float:
    """Iterations per second of ``fn(n)``: the fastest of ``repeats`` runs of ~``batch_s``
    (``fn(n)`` returns ``expect(n)`` when the code ran as written)."""
    n = 1000
    if fn(n) != expect(n):
        raise RuntimeError("loop returned a wrong value")
    while True:                                            # size a batch (and warm the unit up)
        t0 = time.perf_counter()
        fn(n)
        dt = time.perf_counter() - t0
        if dt >= batch_s:
            break
        n = max(2 * n, int(n * batch_s / max(dt, 1e-9)))
    best = dt
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(n)
        best = min(best, time.perf_counter() - t0)
    return n / best


def measure_int8_peak(isa: str | None, batch_s: float = 0.002, repeats: int = 25) -> dict | None:
    """The measured int8 peak of one core for the ISA path ``isa`` (:data:`DOT_LOOPS`):
    ``{"gops_per_core", "instruction", "macs_per_instruction", "instructions_per_s",
    "method"}``; None where no loop applies (other paths, CPU without the instruction,
    executable memory refused). Takes about 0.1 s."""
    loop = dot_loop_for(isa)
    if loop is None:
        return None
    try:
        fn, _buf = _exec_function(dot_loop_code(loop))
        per_s = _best_rate(fn, batch_s, repeats) * loop.per_iteration
    except (OSError, ValueError, RuntimeError, AttributeError):
        return None
    return {"gops_per_core": round(per_s * 2 * loop.macs / 1e9, 1), "instruction": loop.instruction,
            "macs_per_instruction": loop.macs, "instructions_per_s": round(per_s),
            "method": f"measured: {loop.per_iteration} x {loop.instruction} per iteration, "
                      f"{loop.accumulators} accumulators, fastest of {repeats} runs of ~{batch_s * 1e3:g} ms"}


# ---------------------------------------------------------------- AMX: did a library ask for it?

_SYS_ARCH_PRCTL = 158            # x86-64 Linux
_ARCH_GET_XCOMP_PERM = 0x1022
_XFEATURE_XTILEDATA = 18


def amx_tiles_permitted() -> bool | None:
    """Whether this process holds Linux's permission to use AMX tile data (bit 18 of
    ``arch_prctl(ARCH_GET_XCOMP_PERM)``). A process gets it only by asking
    (``ARCH_REQ_XCOMP_PERM``), as a library with AMX kernels does before its first tile
    instruction (ONNX Runtime's MLAS at start-up on an AMX CPU): True after such a library
    ran here means it was ready to use AMX. None: not x86-64 Linux, or the call failed."""
    if platform.machine().lower() not in ("x86_64", "amd64") or platform.system() != "Linux":
        return None
    import ctypes
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        mask = ctypes.c_uint64(0)
        if libc.syscall(ctypes.c_long(_SYS_ARCH_PRCTL), ctypes.c_long(_ARCH_GET_XCOMP_PERM), ctypes.byref(mask)) != 0:
            return None
    except (OSError, AttributeError):
        return None
    return bool(mask.value >> _XFEATURE_XTILEDATA & 1)


#: A worker library named ``<peer>-noamx`` runs ``<peer>``'s worker with AMX denied.
NOAMX = "-noamx"
_SMALL_ALTSTACK = []             # keeps the alternate signal stack alive


def deny_amx_tiles() -> bool:
    """Make this process's later requests for AMX permission fail, so that a library
    initialised afterwards (ONNX Runtime's MLAS, XNNPACK) takes its non-AMX path (AVX-512
    VNNI here). Linux refuses ``ARCH_REQ_XCOMP_PERM`` for tile data when a thread's
    alternate signal stack is too small for the AMX signal frame (~11 KiB): this sets a
    4 KiB one on the calling thread (the only one before the library starts; 1-thread
    peers start no others). Call it before importing the library. Returns whether the
    stack was set; :func:`amx_tiles_permitted` after the run confirms the effect."""
    if platform.machine().lower() not in ("x86_64", "amd64") or platform.system() != "Linux":
        return False
    import ctypes

    class StackT(ctypes.Structure):
        _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]

    buf = ctypes.create_string_buffer(4096)
    _SMALL_ALTSTACK.append(buf)
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.sigaltstack(ctypes.byref(StackT(ctypes.cast(buf, ctypes.c_void_p), 0, 4096)), None) == 0


def has_amx(flags=None) -> bool:
    """Does this CPU have AMX (``amx_tile`` in /proc/cpuinfo)?"""
    return "amx_tile" in (cpu_flags() if flags is None else flags)
