"""Exceptions of the graph runner: every problem with a model or a call is one of these
(never a crash)."""


class ModelError(ValueError):
    """The model cannot be loaded or run: malformed, unsupported, unsafe."""


class UnsupportedError(ModelError):
    """No backend can run some nodes; the message lists every one of them."""

    def __init__(self, nodes):
        self.nodes = list(nodes)
        lines = [f"  {n.name or '(unnamed)'}: {n.key}" + (f" ({why})" if why else "") for n, why in self.nodes]
        super().__init__(f"{len(self.nodes)} node(s) no backend can run:\n" + "\n".join(lines))


class RunError(ValueError):
    """A run call is wrong: missing or unknown inputs, wrong dtype or shape."""
