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

Imports neither qkernels nor numpy: the qkernels worker measures the clock, and
``bench/suite.py`` (pytest-benchmark) reads the peak.
"""
from __future__ import annotations

import platform
import struct
import time

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
              wbits: int = 8, f16_kernel: str | None = None) -> float | None:
    """Theoretical peak GOP/s on ``min(threads, cpus)`` cores (None: unknown clock or no peak)."""
    opc = ops_per_cycle(isa, dtype, wbits, f16_kernel)
    if not opc or not clock_ghz:
        return None
    cores = max(1, min(threads, cpus or threads))
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
    n = 1000
    if fn(n) != n + n * _ADDS_PER_ITERATION:                # the code ran as written
        raise RuntimeError("dependent-add loop returned a wrong sum")
    while True:                                             # size a batch (and warm the clock up)
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
    return n * _ADDS_PER_ITERATION / best / 1e9


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
