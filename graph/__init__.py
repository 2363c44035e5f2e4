"""qkernels.graph: the ONNX graph runner.

``Session(model, backends=None, num_threads=None)`` loads an ONNX model (path, bytes or
ModelProto), plans it (constant folding, backend rewrites, partitioning among
backends) and runs it like ONNX Runtime's InferenceSession. Backends plug in through
:class:`Backend` (see :mod:`qkernels.graph.backend`); ``cpu`` runs qkernels' kernels and
``reference`` plain numpy.
"""
from .backend import Backend, available_backends, register_backend
from .errors import ModelError, RunError, UnsupportedError
from .session import NodeArg, Session

__all__ = ["Session", "NodeArg", "Backend", "register_backend", "available_backends", "ModelError",
           "RunError", "UnsupportedError"]
