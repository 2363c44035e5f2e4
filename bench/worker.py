"""A timed worker process: ``python <this file> <suite>``, a JSON spec on stdin, JSON
results on stdout (:func:`timing.worker_main` with the suite's ``WORKERS``).

Run by path, not as ``python -m qkernels.bench.worker``: importing anything under
``qkernels`` runs ``qkernels/__init__`` first, which loads the native extension and its
OpenMP runtime (a thread of its own from the import on) into the numpy and ONNX Runtime
workers too, beside the library being timed. So this script loads its own folder as the
standalone package ``qkernels_bench`` (the harness modules import one another relatively
and import neither qkernels nor numpy at module level); only the qkernels worker imports
``qkernels``, the one found first from the current directory, as ``python -c`` would
(the parent starts it in the folder its own qkernels comes from).
"""
import importlib
import importlib.util
import os
import sys


def load_harness(name: str = "qkernels_bench"):
    """This folder as the package ``name``, without importing ``qkernels``."""
    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location(name, os.path.join(here, "__init__.py"),
                                                  submodule_search_locations=[here])
    pkg = importlib.util.module_from_spec(spec)
    sys.modules[name] = pkg
    spec.loader.exec_module(pkg)
    return pkg


if __name__ == "__main__":
    sys.path[0] = os.getcwd()      # not this folder: its module names would shadow others
    harness = load_harness()
    suite = importlib.import_module(f"{harness.__name__}.{sys.argv[1]}")
    timing = importlib.import_module(f"{harness.__name__}.timing")
    sys.exit(timing.worker_main(suite.WORKERS))
