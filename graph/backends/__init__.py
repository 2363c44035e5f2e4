"""Built-in backends: ``reference`` (numpy, every supported operator) and ``cpu``
(qkernels' int8/fp16 kernels where they apply, the reference operators elsewhere)."""
from ..backend import register_backend
from .cpu import CpuBackend
# the cpu backend's native operator families register into cpu.KERNELS (imported here,
# after cpu, so that no module imports the other both ways)
from . import cpu_control, cpu_dynquant, cpu_eltwise, cpu_movement, cpu_ort_transformer, cpu_pool, cpu_recurrent, \
    cpu_tflite, cpu_transformer, cpu_upsample  # noqa: F401,E402
from .reference import ReferenceBackend

register_backend("reference", ReferenceBackend)
register_backend("cpu", CpuBackend)

__all__ = ["CpuBackend", "ReferenceBackend"]
