"""Control flow on a compiled plan: an ``If`` step that runs its chosen branch's own plan
directly (the branch read from the condition's place at each run, or a constant of the
plan when shape arithmetic decides it), its results copied into their places.

The reference operator (:mod:`.reference.control`) does the same through the generic
runner; bound here, a step skips the per-node wrapping (error scopes, the values dict),
which is most of an If's cost when its branches are small: silero-vad's 25 nested Ifs."""
from __future__ import annotations

import numpy as np

from ..plan import Replan
from ..validate import node_errors
from .cpu import BINDERS


def _bind_if(node, ins, outs):
    cond = ins[0]
    if cond is None or cond.size != 1 or len(ins) - 1 != len(node.implicit):
        return None
    then_branch, else_branch = node.attrs["then_branch"], node.attrs["else_branch"]
    if not (hasattr(then_branch, "run") and hasattr(else_branch, "run")):
        return None
    flag = cond.reshape(-1)             # a view: the condition's place, read at each run
    outer = dict(zip(node.implicit, ins[1:]))
    slots = [(slot, slot.shape, slot.dtype) for slot in outs]

    def step():
        with node_errors(node):
            got = (then_branch if flag[0] else else_branch).run([], outer)
        for (slot, shape, dtype), v in zip(slots, got):
            if v.shape != shape or v.dtype != dtype:
                raise Replan(f"node {node.name!r} made {v.dtype}{list(v.shape)}, traced as {dtype}{list(shape)}")
            np.copyto(slot, v)
    return step


BINDERS["If"] = _bind_if
