"""The GEMM shapes of every benchmark: re-exported from :mod:`qkernels.bench`.

One table serves the pytest-benchmark suite here, ``python -m qkernels bench`` and
docs/performance.md. It lives in the package (which must never import ``bench/``)
so that the CLI can read it; add or change shapes there.
"""
from qkernels.bench import QUICK, SHAPES, Shape, shapes

__all__ = ["SHAPES", "QUICK", "Shape", "shapes"]

if __name__ == "__main__":
    for s in SHAPES:
        print(f"{s.label:<19}{s.mnk:<16}{'quick' if s.label in QUICK else '':<6}{s.source}")
