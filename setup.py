"""Build of qkernels' native extension.

Every ISA's micro-kernels live in kernels/<isa>/ and are compiled with that ISA's
flags only; the rest (driver, packing, detection, scalar reference) assumes no
extension, so one binary runs on any CPU of its architecture and picks its path at
run time.
"""
import os
import platform
import sysconfig
from concurrent.futures import ThreadPoolExecutor
from glob import glob

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

# Per-architecture: kernel folder -> compiler flags for the files in it.
_AVX2 = ["-mavx2", "-mfma", "-mf16c"]
ISA_FLAGS = {
    "x86_64": {
        "avx2": _AVX2,
        "avx512vnni": _AVX2 + ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512vnni"],
        "avxvnni": _AVX2 + ["-mavxvnni"],
    },
    "aarch64": {
        "neon": ["-march=armv8-a"],
        "neondot": ["-march=armv8.2-a+dotprod"],
        "neonfp16": ["-march=armv8.2-a+fp16"],
        "i8mm": ["-march=armv8.2-a+i8mm"],
    },
}
# Folders built a second time with these flags and QK_VNNI_EMULATED: every AVX-512/VNNI
# operation exact in AVX2 (kernels/include/qk_vnni.h), so any AVX2 CPU tests their logic.
EMULATED_FLAGS = {"avx512vnni": _AVX2, "avxvnni": _AVX2}
COMMON_FLAGS = ["-O3", "-std=c11", "-fno-strict-aliasing", "-fopenmp"]


def target_arch():
    machine = (sysconfig.get_platform().split("-")[-1] or platform.machine()).lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


class BuildISAExt(build_ext):
    """Compiles each kernels/<isa>/*.c with its own flags (and the emulated builds) and
    links the objects in."""

    def build_extension(self, ext):
        self._compile_in_parallel()
        objects = []
        for isa, flags in ISA_FLAGS.get(target_arch(), {}).items():
            sources = sorted(glob(os.path.join("kernels", isa, "*.c")))
            if sources:
                objects += self.compiler.compile(
                    sources, output_dir=self.build_temp, include_dirs=ext.include_dirs,
                    extra_postargs=COMMON_FLAGS + flags)
            if sources and isa in EMULATED_FLAGS:
                objects += self.compiler.compile(
                    sources, output_dir=os.path.join(self.build_temp, "emulated"), include_dirs=ext.include_dirs,
                    macros=[("QK_VNNI_EMULATED", "1")], extra_postargs=COMMON_FLAGS + EMULATED_FLAGS[isa])
        ext.extra_objects = objects + list(ext.extra_objects or [])
        super().build_extension(ext)

    def _compile_in_parallel(self):
        """The compiler's compile() taking its sources a file at a time on every core (each
        file is one gcc process; the ~50 files took two minutes one after another)."""
        compile_one = self.compiler.compile
        workers = os.cpu_count() or 1
        if getattr(compile_one, "parallel", False) or workers < 2:
            return

        def compile_all(sources, *args, **kwargs):
            if len(sources) < 2:
                return compile_one(sources, *args, **kwargs)
            with ThreadPoolExecutor(workers) as pool:
                parts = list(pool.map(lambda src: compile_one([src], *args, **kwargs), sources))
            return [obj for part in parts for obj in part]
        compile_all.parallel = True
        self.compiler.compile = compile_all


class BuildPyWithoutCheckoutOnly(build_py):
    """Installs bench/ as qkernels.bench without the modules that run from a checkout only:
    its pytest-benchmark suites and scripts (`pytest bench`, `python bench/report.py`)."""
    CHECKOUT_ONLY = ("conftest", "suite", "shapes", "report", "f16_accumulation", "mca", "quant_quality",
                     "distributed_calibration", "busy_threads")

    def find_package_modules(self, package, package_dir):
        modules = super().find_package_modules(package, package_dir)
        if package != "qkernels.bench":
            return modules
        return [m for m in modules if m[1] not in self.CHECKOUT_ONLY and not m[1].startswith("test_")]


native = Extension(
    "qkernels._native",
    sources=["kernels/_native.pyx", "kernels/pack.c", "kernels/gemm_block.c", "kernels/im2col.c", "kernels/dwconv.c", "kernels/quantize.c", "kernels/qbinary.c", "kernels/dynquant.c", "kernels/tfl_binary.c", "kernels/tfl_rows.c", "kernels/eltwise.c", "kernels/recurrent.c", "kernels/pool.c", "kernels/pool_avg.c", "kernels/reduce.c", "kernels/transformer.c", "kernels/resize.c", "kernels/col2im.c", "kernels/cpu.c", "kernels/registry.c", "kernels/layout.c", "kernels/copy.c", "kernels/wconv.c",
             *sorted(glob("kernels/scalar/*.c"))],
    include_dirs=["kernels/include", np.get_include()],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    extra_compile_args=COMMON_FLAGS,
    extra_link_args=["-fopenmp"],
    libraries=["m"],
)

setup(
    packages=["qkernels", "qkernels.quant", "qkernels.graph", "qkernels.graph.backends",
              "qkernels.graph.backends.reference", "qkernels.bench"],
    package_dir={"qkernels": "qkernels", "qkernels.graph": "graph", "qkernels.graph.backends": "graph/backends",
                 "qkernels.bench": "bench"},
    package_data={"qkernels": ["py.typed", "data/*.onnx", "data/*.npz", "data/README.md"]},
    ext_modules=cythonize([native], compiler_directives={"language_level": "3"}),
    cmdclass={"build_ext": BuildISAExt, "build_py": BuildPyWithoutCheckoutOnly},
)
