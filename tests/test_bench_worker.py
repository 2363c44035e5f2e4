"""The timed worker processes of ``qkernels bench`` (bench/worker.py) load the harness on
their own: the numpy and ONNX Runtime workers never import qkernels (its native extension
and OpenMP runtime stay out of the process being timed); the qkernels worker does."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

import qkernels.bench
from qkernels.bench import gemm, harness, peers, timing

TINY_TIMING = {"min_time": 0.001, "repeats": 3, "warmup": 0.0}


@pytest.mark.parametrize("lib, loads_qkernels", [("numpy", False), ("ort", False), ("qkernels", True)])
def test_only_the_qkernels_worker_imports_qkernels(lib, loads_qkernels):
    if lib == "ort" and not (peers.have("onnxruntime") and peers.have("onnx")):
        pytest.skip("onnxruntime and onnx are not both installed")
    worker = Path(qkernels.bench.__file__).resolve().parent / "worker.py"
    spec = {"lib": lib, "threads": 1, "shapes": [gemm.Shape(4, 8, 16, "tiny", "test")._asdict()],
            "timing": TINY_TIMING, "seed": 0, "env_unset": [], "int32": False}
    proc = subprocess.run([sys.executable, "-X", "importtime", str(worker), "gemm"], input=json.dumps(spec),
                          capture_output=True, text=True, cwd=harness._qkernels_root(), timeout=120)
    assert proc.returncode == 0 and timing.MARKER in proc.stdout, proc.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "qkernels_bench.harness" in imported and "numpy" in imported
    assert any(m == "qkernels" or m.startswith("qkernels.") for m in imported) == loads_qkernels
    [rec] = json.loads(proc.stdout.rsplit(timing.MARKER, 1)[1])["results"][:1]
    assert rec["lib"] == lib and rec["median_s"] > 0
