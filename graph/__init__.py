"""qkernels.graph: the ONNX graph runner (loads models, plans them, runs them on
qkernels' kernels with pluggable backends). Not built yet: see the project issues."""
