"""The GEMM shapes and convolution layers of every benchmark: re-exported from
:mod:`qkernels.bench.gemm` (``SHAPES``) and :mod:`qkernels.bench.conv` (``LAYERS``).

One table of each serves the pytest-benchmark suites here (which read them from the
harness directly), ``python -m qkernels bench`` (``--suite gemm`` / ``--suite conv``) and
docs/performance.md; ``python bench/shapes.py`` lists them. Add or change shapes and
layers in gemm.py and conv.py.
"""
from qkernels.bench.conv import LAYERS, Layer, layers
from qkernels.bench.conv import QUICK as QUICK_LAYERS
from qkernels.bench.gemm import QUICK, SHAPES, Shape, shapes

__all__ = ["LAYERS", "QUICK", "QUICK_LAYERS", "SHAPES", "Layer", "Shape", "layers", "shapes"]

if __name__ == "__main__":
    for s in SHAPES:
        print(f"{s.label:<19}{s.mnk:<16}{'quick' if s.label in QUICK else '':<6}{s.source}")
    print()
    for la in LAYERS:
        print(f"{la.label:<19}{la.geometry:<26}{'quick' if la.label in QUICK_LAYERS else '':<6}{la.source}")
