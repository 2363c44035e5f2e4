"""The ONNX backend API (``onnx.backend.base.Backend``) over :class:`qkernels.graph.Session`.

It lets the ONNX package's backend test suite (``onnx.backend.test.BackendTest``) and
other tools written against that API run models on qkernels::

    from qkernels.graph.onnx_backend import ReferenceBackend   # or CpuBackend
    outputs = ReferenceBackend.run_model(model, [x])

``ReferenceBackend`` runs every node on the ``reference`` backend (numpy, the oracle);
``CpuBackend`` puts ``cpu`` (qkernels' kernels) first. A model of an older opset is
converted to 13 by the runner itself when it loads (``graph.model.upgrade_opset``).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

try:
    import onnx
    from onnx.backend.base import Backend, BackendRep, Device, DeviceType, namedtupledict
except ImportError as exc:   # pragma: no cover - onnx is a dependency of the graph runner
    raise ImportError("qkernels.graph.onnx_backend needs the onnx package (pip install onnx)") from exc

from .session import Session


class QkernelsRep(BackendRep):
    """A prepared model: ``run(inputs)`` with a list (in the model's input order), a
    dict by name, or a single array."""

    def __init__(self, session: Session, input_names: Sequence[str]):
        self.session = session
        self._declared = [i.name for i in session.get_inputs()]
        known = set(self._declared)
        # the model's own input order, less the inputs that initializers provide
        self._order = [n for n in input_names if n in known] or self._declared
        self._outputs = [o.name for o in session.get_outputs()]

    def run(self, inputs: Any, **kwargs) -> tuple[Any, ...]:
        if isinstance(inputs, dict):
            feeds = dict(inputs)
        elif isinstance(inputs, np.ndarray):
            feeds = {self._order[0]: inputs} if self._order else {}
        else:
            inputs = list(inputs)
            if len(inputs) != len(self._order):
                raise ValueError(f"the model takes {len(self._order)} input(s) {self._order}, got {len(inputs)}")
            feeds = dict(zip(self._order, inputs))
        outputs = self.session.run(None, feeds)
        return namedtupledict("Outputs", self._outputs)(*outputs)


class ReferenceBackend(Backend):
    """ONNX backend API running every node on qkernels' ``reference`` backend."""

    #: the Session's backends, most preferred first
    backends: tuple[str, ...] = ("reference",)

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs) -> QkernelsRep:
        super().prepare(model, device, **kwargs)        # onnx.checker.check_model
        session = Session(model, backends=list(cls.backends))
        return QkernelsRep(session, [i.name for i in model.graph.input])

    @classmethod
    def run_model(cls, model: onnx.ModelProto, inputs: Any, device: str = "CPU", **kwargs) -> tuple[Any, ...]:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node: onnx.NodeProto, inputs: Any, device: str = "CPU",
                 outputs_info: Sequence[tuple[np.dtype, tuple[int, ...]]] | None = None,
                 **kwargs) -> tuple[Any, ...]:
        """Run one node: ``inputs`` are arrays for the node's non-empty inputs, in order
        (or a dict by name). ``opset_version`` (kwarg) picks the default-domain opset."""
        from onnx import helper
        names = [n for n in node.input if n]
        if isinstance(inputs, dict):
            arrays = [np.asarray(inputs[n]) for n in names]
        else:
            arrays = [np.asarray(a) for a in inputs]
        if len(arrays) != len(names):
            raise ValueError(f"node {node.op_type} takes {len(names)} input(s), got {len(arrays)}")
        graph_inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
                        for n, a in zip(names, arrays)]
        graph_outputs = []
        for k, name in enumerate(o for o in node.output if o):
            elem = 0
            if outputs_info is not None and k < len(outputs_info):
                elem = helper.np_dtype_to_tensor_dtype(np.dtype(outputs_info[k][0]))
            graph_outputs.append(helper.make_tensor_value_info(name, elem, None))
        opsets = [helper.make_opsetid("", kwargs.pop("opset_version", onnx.defs.onnx_opset_version()))]
        if node.domain not in ("", "ai.onnx"):
            opsets.append(helper.make_opsetid(node.domain, 1))
        model = helper.make_model(helper.make_graph([node], "run_node", graph_inputs, graph_outputs),
                                  opset_imports=opsets)
        session = Session(model, backends=list(cls.backends))
        return namedtupledict("Outputs", [o.name for o in session.get_outputs()])(
            *session.run(None, dict(zip(names, arrays))))

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return Device(device).type == DeviceType.CPU


class CpuBackend(ReferenceBackend):
    """ONNX backend API running nodes on qkernels' ``cpu`` backend (kernels where they
    apply, the reference operators elsewhere)."""

    backends = ("cpu",)


prepare = ReferenceBackend.prepare
run_model = ReferenceBackend.run_model
run_node = ReferenceBackend.run_node
supports_device = ReferenceBackend.supports_device
