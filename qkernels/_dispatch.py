"""Which ISA path runs, and how many threads: detected once, overridable.

``QKERNELS_ISA`` (scalar, avx2, avxvnni, avx512vnni, neon, neondot, i8mm) forces a path
at import;
``QKERNELS_NUM_THREADS`` sets the default thread count (at most ``MAX_THREADS``).
Asking for a path the CPU lacks, or that this build does not contain, is an error,
never a silent fallback. ``EMULATED_ISAS`` are test paths: the VNNI kernels built with
every AVX-512/VNNI instruction emulated exactly in AVX2 (kernels/include/qk_vnni.h), so
their logic is checked on any AVX2 CPU; they are used only when asked for.
"""
from __future__ import annotations

import contextlib
import os
import threading

from . import _native

ISA_NAMES = tuple(_native.isa_names())
# What each ISA path needs from the CPU, best first.
_REQUIRES = {
    "i8mm": ("asimd", "asimddp", "i8mm"),
    "neondot": ("asimd", "asimddp"),
    "neon": ("asimd",),
    "avx512vnni": ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512vnni"),
    "avxvnni": ("avx2", "fma", "f16c", "avxvnni"),
    "avx2": ("avx2", "fma", "f16c"),
    "scalar": (),
}
_ARCH_FEATURES = {
    "x86_64": ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512vnni", "avxvnni", "avx512vbmi"),
    "aarch64": ("asimd", "asimddp", "fphp", "asimdhp", "i8mm"),
}
class _ThreadState(threading.local):
    # class defaults: a missing attribute would cost an exception
    isa: str | None = None
    threads: int | None = None


_state = _ThreadState()
_lock = threading.Lock()


def _supported() -> list[str]:
    feats = _native.cpu_features()
    return [isa for isa, needs in _REQUIRES.items()
            if _native.select_kernel(ISA_NAMES.index(isa), 1 << 20) >= 0 and all(feats[f] for f in needs)]


SUPPORTED_ISAS: tuple[str, ...] = tuple(_supported())   # best first; "scalar" always last
# The emulations run where AVX2 does (and this build has them).
EMULATED_ISAS: tuple[str, ...] = tuple(
    e for e in ("avx512vnni_emu", "avxvnni_emu") if "avx2" in SUPPORTED_ISAS and _native.select_kernel(ISA_NAMES.index(e), 1 << 20) >= 0)


def _check_isa(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"ISA name must be a string, got {name!r}")
    name = name.strip().lower()
    if name not in ISA_NAMES:
        raise ValueError(f"unknown ISA {name!r}; expected one of {', '.join(ISA_NAMES)}")
    if name not in SUPPORTED_ISAS and name not in EMULATED_ISAS:
        raise ValueError(f"ISA {name!r} is not available here (CPU {_native.cpu_arch()} supports "
                         f"{', '.join(SUPPORTED_ISAS)})")
    return name


def _default_isa() -> str:
    forced = os.environ.get("QKERNELS_ISA")
    if forced:
        return _check_isa(forced)
    return SUPPORTED_ISAS[0]


_default = _default_isa()


def get_isa() -> str:
    """The ISA path the calls of this thread use."""
    return _state.isa or _default


def set_isa(name: str) -> None:
    """Use ISA path ``name`` in every thread from now on (ValueError if unavailable)."""
    global _default
    _default = _check_isa(name)


@contextlib.contextmanager
def use_isa(name: str):
    """Use ISA path ``name`` for the calls of this thread inside the ``with`` block."""
    name = _check_isa(name)
    prev = _state.isa
    _state.isa = name
    try:
        yield name
    finally:
        _state.isa = prev


_INDEX = {name: i for i, name in enumerate(ISA_NAMES)}


def isa_index() -> int:
    """Index (in ISA_NAMES) of the path this thread uses."""
    return _INDEX[_state.isa or _default]


def tested_isas() -> tuple[str, ...]:
    """The paths a test sweeps: every path available here, emulations included; or, with
    QKERNELS_TEST_ISAS=a,b, only those (each must be available). An emulated CI lane names
    the paths its CPU adds over the smaller lanes' CPUs, which test the rest
    (.ci/emulated.sh)."""
    every = SUPPORTED_ISAS + EMULATED_ISAS
    raw = os.environ.get("QKERNELS_TEST_ISAS", "").strip()
    if not raw:
        return every
    names = tuple(_check_isa(n) for n in raw.split(","))
    return tuple(isa for isa in every if isa in names)


def isa_indices() -> list[int]:
    """The indices (in ISA_NAMES) of the paths tested_isas() names, each once (a test's
    sweep over the native paths)."""
    got = set()
    for isa in tested_isas():
        with use_isa(isa):
            got.add(isa_index())
    return sorted(got)


@contextlib.contextmanager
def indirect_conv(on: bool):
    """Inside the ``with`` block, fp32 and uint8 convolutions bound read their input in place
    (``on``, the default) or through packed patch panels (for A/B measurements and tests;
    process-wide: not for use while other threads bind convolutions)."""
    prev = _native.set_indirect_conv(on)
    try:
        yield
    finally:
        _native.set_indirect_conv(prev)


#: fp32 3 x 3 convolutions of stride 1 by Winograd's F(2x2, 3x3) where it pays (_float.py)
_winograd = True


@contextlib.contextmanager
def winograd(on: bool):
    """Inside the ``with`` block, fp32 3 x 3 convolutions of stride 1 run (and bind) by
    Winograd's F(2x2, 3x3) where it pays (``on``, the default) or as the GEMM of their
    patches (for A/B measurements and tests; process-wide, as indirect_conv)."""
    global _winograd
    prev, _winograd = _winograd, bool(on)
    try:
        yield
    finally:
        _winograd = prev


def settings() -> tuple[int, int]:
    """(thread count, ISA index) the calls of this thread use, in one call: what a graph
    session's plan is keyed by, asked on every run."""
    st = _state
    return st.threads or _num_threads, _INDEX[st.isa or _default]


def gemm_kernels(isa: str | None = None) -> list[str]:
    """Names of the int8 GEMM micro-kernels an ISA path uses (small-M ones first)."""
    isa = isa or get_isa()
    infos = (_native.kernel_info(i) for i in range(_native.kernel_count()))
    return [info[0] for info in infos if info[1] == isa and info[9] == _native.DTYPE_QS8
            and info[10] == _native.KIND_GEMM]


def f16_kernel(isa: str | None = None, dtype: int | None = None) -> str:
    """Name of the fp16 (``dtype=_native.DTYPE_F32``: fp32) GEMM micro-kernel an ISA path uses."""
    kid = _native.select_kernel(ISA_NAMES.index(isa or get_isa()), 1 << 20, False,
                                _native.DTYPE_F16 if dtype is None else dtype)
    return _native.kernel_info(kid)[0]


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


# The most threads a call may use: far above any core count, and inside the C int the
# kernels take (a larger count would only fail later, in every call).
MAX_THREADS = 1024


def check_threads(n, name: str = "num_threads") -> int:
    """``n`` when it is a thread count from 1 to MAX_THREADS, else ValueError naming ``name``."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_THREADS:
        raise ValueError(f"{name} must be an int from 1 to {MAX_THREADS}, got {n!r}")
    return n


def _env_threads() -> int:
    raw = os.environ.get("QKERNELS_NUM_THREADS")
    if not raw:
        return min(_cpu_count(), MAX_THREADS)
    try:
        n = int(raw)
    except ValueError:
        n = raw
    return check_threads(n, "QKERNELS_NUM_THREADS")


_num_threads = _env_threads()


def set_num_threads(n: int) -> None:
    """Threads each kernel call may use, in every thread without a ``use_num_threads``
    block (1 to MAX_THREADS; results never depend on it)."""
    global _num_threads
    _num_threads = check_threads(n)


def get_num_threads() -> int:
    """Threads the calls of this thread use."""
    return _state.threads or _num_threads


class use_num_threads:
    """Use ``n`` threads for the calls of this thread inside the ``with`` block (the
    process-wide count, and other threads, are untouched). A class, not a generator:
    a graph session enters it on every run (a generator's context costs microseconds)."""

    __slots__ = ("n", "prev")

    def __init__(self, n: int):
        self.n = check_threads(n)

    def __enter__(self) -> int:
        self.prev = _state.threads
        _state.threads = self.n
        return self.n

    def __exit__(self, *exc) -> None:
        _state.threads = self.prev


def cpu_info() -> dict:
    """What the CPU offers, what this build contains and which path is used."""
    used, arch = get_isa(), _native.cpu_arch()
    return {
        "arch": arch,
        "features": {k: v for k, v in _native.cpu_features().items() if k in _ARCH_FEATURES.get(arch, k)},
        "isas_available": list(SUPPORTED_ISAS),
        "isas_emulated": list(EMULATED_ISAS),
        "isa": used,
        "forced_by_env": bool(os.environ.get("QKERNELS_ISA")),
        "gemm_kernels": gemm_kernels(used),
        "f16_kernel": f16_kernel(used),
        "f32_kernel": f16_kernel(used, _native.DTYPE_F32),
        "num_threads": get_num_threads(),
    }
