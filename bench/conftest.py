"""pytest setup of the benchmark suite: lets its modules import ``shapes`` (bench/shapes.py).

This folder is not in the project's ``testpaths``: a plain ``python -m pytest`` does not
collect it. Run it with ``python -m pytest bench/ --benchmark-only``.
"""
import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
