"""The benchmark harness, installed as ``qkernels.bench``: ``qkernels bench`` times
qkernels beside its peers (numpy, ONNX Runtime, XNNPACK), each library and thread
count in a process of its own.

* :mod:`harness`: the parent process: a :class:`~harness.Suite` per kind of benchmark
  (its items, peers' columns, rows, targets, table), the worker processes, the report,
  the command line;
* :mod:`timing` (the timing loop and the records a worker posts), :mod:`peers`
  (ONNX Runtime, numpy's BLAS, each library's worker start), :mod:`worker` (the entry
  of a timed process);
* the suites: :mod:`gemm` (int8 GEMM, the default), :mod:`conv`, :mod:`f16`,
  :mod:`quant` (quantize/dequantize), :mod:`models` (whole models on the graph runner,
  built by :mod:`zoo`), :mod:`tflite_models` (the ``.tflite`` models beside LiteRT);
* :mod:`compare` (``--compare``: regressions beyond the noise, ``--plot``) and
  :mod:`peak` (this CPU's theoretical peak, its measured clock, the measured
  ``vpdpbusd`` peak of the VNNI paths, AMX permission probes).

Nothing here imports qkernels or numpy at module level (:mod:`worker` says why), and
the library never imports this package. The pytest-benchmark suites (``conftest.py``,
``suite.py``, ``test_bench_*.py``) and the scripts (``report.py``, ``shapes.py``,
``f16_accumulation.py``, ``mca.py``: Arm kernels by llvm-mca) live in the same folder of the source tree but run from a
checkout (``pytest bench``, ``python bench/report.py``): they are not installed.
"""

#: ``qkernels bench --suite NAME``: the module of each suite (its ``SUITE``).
SUITES = ("gemm", "conv", "f16", "quant", "models", "tflite_models")
