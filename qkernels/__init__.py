"""qkernels: quantized (int8, fp16) neural-network kernels for edge CPUs.

Numpy-like calls over hand-tuned micro-kernels (scalar reference, AVX2, NEON, NEON
dot product, i8mm), with the best path for this CPU picked at run time::

    import numpy as np, qkernels as qk
    a = qk.quantize(np.random.rand(64, 256), scale=1/255, zero_point=0, dtype=np.uint8)
    w = qk.quantize(np.random.randn(256, 32), scale=0.02, zero_point=0, dtype=np.int8)
    y = qk.matmul(a, qk.pack_weights(w), out_scale=0.05, out_zero_point=0)
"""
from ._dispatch import (EMULATED_ISAS, MAX_THREADS, SUPPORTED_ISAS, cpu_info, get_isa, get_num_threads, set_isa, set_num_threads,
                        use_isa, use_num_threads)
from ._api import conv2d, depthwise_conv2d, matmul, pack_conv_weights, pack_weights
from ._conv import PackedConvWeights
from ._dynamic import DynamicQuantError, dynamic_matmul
from ._gemm import PackedWeights, matmul_integer
from ._qtensor import QTensor, dequantize, quantize

__version__ = "0.1.0"
__all__ = [
    "QTensor", "PackedWeights", "PackedConvWeights", "conv2d", "depthwise_conv2d", "pack_conv_weights", "quantize",
    "dequantize", "matmul", "matmul_integer", "pack_weights", "dynamic_matmul", "DynamicQuantError",
    "cpu_info", "get_isa", "set_isa", "use_isa", "SUPPORTED_ISAS", "EMULATED_ISAS", "set_num_threads", "get_num_threads",
    "use_num_threads", "MAX_THREADS",
]
