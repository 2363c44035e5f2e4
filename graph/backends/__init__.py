"""Built-in backends: ``reference`` (numpy, every supported operator) and ``cpu``
(qkernels' int8/fp16 kernels where they apply, the reference operators elsewhere)."""
from ..backend import register_backend
from .cpu import CpuBackend
from . import cpu_upsample  # noqa: F401,E402  (registers native ConvTranspose and Resize into cpu.KERNELS)
from .reference import ReferenceBackend

register_backend("reference", ReferenceBackend)
register_backend("cpu", CpuBackend)

__all__ = ["CpuBackend", "ReferenceBackend"]
