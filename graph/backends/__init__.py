"""Built-in backends: ``reference`` (numpy, every supported operator) and ``cpu``
(qkernels' int8/fp16 kernels where they apply, the reference operators elsewhere)."""
from ..backend import register_backend
from .cpu import CpuBackend
from . import cpu_pool  # noqa: F401,E402  (registers into cpu.KERNELS; imported here: no cpu <-> cpu_pool cycle)
from .reference import ReferenceBackend
from . import cpu_movement  # noqa: E402,F401  (registers into cpu.KERNELS; after cpu: no import cycle)

register_backend("reference", ReferenceBackend)
register_backend("cpu", CpuBackend)

__all__ = ["CpuBackend", "ReferenceBackend"]
