"""Calibration and evaluation in shards, in one process and on a Dask cluster
(qkernels.quant.shards): the same model and report bit for bit, shards of every form,
errors that name the shard, a worker killed mid-way, the CLI."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from qkernels.__main__ import main  # noqa: E402
from qkernels.demo import as_input, shipped_data  # noqa: E402
from qkernels.graph import Session  # noqa: E402
from qkernels.quant import CalibrationError, Shards, evaluate, quantize_model  # noqa: E402
from qkernels.quant.observers import OBSERVERS  # noqa: E402

METHODS = list(OBSERVERS)
#: every pass over the data: calibration, bias correction, the layer probe, the report
PASSES = dict(bias_correction=True, keep_float=1, return_report=True, progress=False)


def _blob(result) -> tuple[bytes, str]:
    model, report = result
    return model.SerializeToString(), json.dumps(report, sort_keys=True, default=str)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The demo's model and its 200 calibration images as 4 .npz shards of 50."""
    model, data = shipped_data()
    x = as_input(data["calib_images"])
    d = tmp_path_factory.mktemp("shards")
    paths = []
    for k in range(4):
        p = str(d / f"part-{k}.npz")
        np.savez(p, input=x[50 * k:50 * (k + 1)])
        paths.append(p)
    return model, paths, x, data


@pytest.fixture(scope="module")
def one_process(digits, tmp_path_factory):
    """Every method's model and report quantized in one process (client=None) on the
    shards -- in a child process with BLAS held to one thread, as Dask's workers run it
    (float products may round differently with another thread count)."""
    model, paths, _, _ = digits
    out = tmp_path_factory.mktemp("ref")
    script = textwrap.dedent(f"""
        import json
        from qkernels.quant import Shards, quantize_model
        for method in {METHODS!r}:
            m, r = quantize_model({model!r}, Shards({paths!r}, 16), method=method, **{PASSES!r})
            open({str(out)!r} + "/" + method + ".onnx", "wb").write(m.SerializeToString())
            open({str(out)!r} + "/" + method + ".json", "w").write(json.dumps(r, sort_keys=True, default=str))
    """)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    # (run in the output folder: "python -c" puts its working directory first on the path,
    # and a checkout's qkernels there has no compiled extension when the package is installed)
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=300, cwd=str(out))
    return {m: ((out / f"{m}.onnx").read_bytes(), (out / f"{m}.json").read_text()) for m in METHODS}


@pytest.fixture(scope="module")
def client():
    pytest.importorskip("distributed", reason="the 'distributed' extra (Dask) is not installed")
    import cloudpickle

    from qkernels.quant.cluster import dask_client
    cloudpickle.register_pickle_by_value(sys.modules[__name__])   # the workers cannot import this test file
    with dask_client(workers=2) as c:
        yield c


# ------------------------------------------------------------------ one process

@pytest.mark.parametrize("method", METHODS)
def test_shards_in_one_process_give_the_scales_of_one_pass(digits, method):
    """Observers merged shard by shard (a moving average replayed) are one pass over the
    same data: the model equals the one calibrated on the folder, for every method."""
    model, paths, _, _ = digits
    folder = os.path.dirname(paths[0])
    a = quantize_model(model, Shards(paths, 16), method=method, progress=False)
    b = quantize_model(model, folder, method=method, progress=False, batch_size=16)
    assert a.SerializeToString() == b.SerializeToString()


def test_moving_average_extend_is_one_pass():
    from qkernels.quant import MovingAverageMinMaxObserver
    rng = np.random.default_rng(0)
    batches = [rng.normal(size=50) * (k + 1) for k in range(7)]
    one = MovingAverageMinMaxObserver()
    for b in batches:
        one.update(b)
    first, second = MovingAverageMinMaxObserver(), MovingAverageMinMaxObserver()
    for b in batches[:3]:
        first.update(b)
    for b in batches[3:]:
        second.update(b)
    first.extend(second)
    assert (first.avg_min, first.avg_max, first.count, first.min, first.max) == \
        (one.avg_min, one.avg_max, one.count, one.min, one.max)
    with pytest.raises(ValueError, match="different settings"):
        first.extend(MovingAverageMinMaxObserver(momentum=0.5))


def test_shard_forms(digits):
    """Files, a pattern, callables, mappings, lists of feed dicts, a dask.bag and a
    dask.array are the same shards."""
    model, paths, x, _ = digits
    ref = quantize_model(model, Shards(paths, 16), progress=False).SerializeToString()
    pattern = os.path.join(os.path.dirname(paths[0]), "part-*.npz")
    blocks = [x[50 * k:50 * (k + 1)] for k in range(4)]
    forms = {
        "pattern": Shards(pattern, 16),
        "mappings": Shards([{"input": b} for b in blocks], 16),
        "callables": Shards([lambda b=b: [{"input": b[i:i + 16]} for i in range(0, 50, 16)] for b in blocks], 16),
        "lists": Shards([[{"input": b[i:i + 16]} for i in range(0, 50, 16)] for b in blocks], 16),
    }
    try:
        import dask.array as da
        import dask.bag as db
        forms["dask.array"] = Shards(da.from_array(x, chunks=(50, 1, 8, 8)), 16)
        forms["dask.array mapping"] = Shards({"input": da.from_array(x, chunks=(50, 1, 8, 8))}, 16)
        feeds = [{"input": b[i:i + 16]} for b in blocks for i in range(0, 50, 16)]
        forms["dask.bag"] = Shards(db.from_sequence(feeds, npartitions=4), 16)
    except ImportError:
        pass
    for name, shards in forms.items():
        assert quantize_model(model, shards, progress=False).SerializeToString() == ref, name


def test_bad_shards_are_named(digits, tmp_path):
    model, paths, x, _ = digits
    nan = tmp_path / "nan.npz"
    bad = x[:20].copy()
    bad[3, 0, 2, 2] = np.nan
    np.savez(nan, input=bad)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, pixels=x[:20])
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04 not a zip file")
    for path, what in [(nan, "NaN"), (wrong, "input"), (broken, "cannot read")]:
        with pytest.raises(CalibrationError, match=rf"shard 2 \('{path}'\).*{what}"):
            quantize_model(model, Shards([paths[0], paths[1], str(path)]), progress=False)
    with pytest.raises(CalibrationError, match="no file matches"):
        Shards(str(tmp_path / "none-*.npz"))
    with pytest.raises(TypeError, match="shards must be"):
        Shards(42)
    with pytest.raises(TypeError, match="client must be a distributed.Client"):
        quantize_model(model, Shards(paths), client="tcp://localhost:8786", progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        Shards(paths, 0)


def test_evaluate_in_one_process(digits):
    model, paths, x, data = digits
    test = {"input": as_input(data["test_images"]), "label": data["test_labels"].astype(np.int64)}
    logits = Session(model).run(None, {"input": test["input"]})[0]
    want = float(np.mean(logits.argmax(axis=1) == test["label"]))
    assert evaluate(model, test, "accuracy") == want
    assert evaluate(model, test, "accuracy", batch_size=64) == want
    q = quantize_model(model, Shards(paths), progress=False)
    sqnr = evaluate(q, test, "sqnr", reference=model)
    assert 15 < sqnr < 80
    assert 0.99 < evaluate(q, test, "cosine", reference=model) <= 1.0
    assert evaluate(model, test, "sqnr", reference=model) == float("inf")
    top1 = evaluate(model, test, lambda out, batch: (np.sum(out["logits"].argmax(1) == batch["label"]), len(batch["label"])))
    assert top1 == want
    with pytest.raises(ValueError, match="reference"):
        evaluate(q, test, "sqnr")
    with pytest.raises(ValueError, match="metric must be"):
        evaluate(q, test, "f1")
    with pytest.raises(CalibrationError, match="no labels 'y'"):
        evaluate(q, test, "accuracy", labels="y")


# ------------------------------------------------------------------ on a cluster

@pytest.mark.parametrize("method", METHODS)
def test_cluster_equals_one_process(digits, one_process, client, method):
    """Calibration, bias correction, the layer probe (keep_float) and the report on 2
    worker processes: the same model and report, bit for bit, as in one process."""
    model, paths, _, _ = digits
    got = _blob(quantize_model(model, Shards(paths, 16), method=method, client=client, **PASSES))
    assert got[0] == one_process[method][0]
    assert got[1] == one_process[method][1]


def test_cluster_evaluate_and_min_sqnr(digits, client):
    model, paths, x, data = digits
    test = Shards([{"input": as_input(data["test_images"][k:k + 100]), "label": data["test_labels"][k:k + 100]}
                   for k in range(0, 400, 100)], 32)
    for metric in ("accuracy", "sqnr", "cosine"):
        kw = {"reference": model} if metric != "accuracy" else {}
        assert evaluate(model, test, metric, client=client, **kw) == evaluate(model, test, metric, **kw)
    a = quantize_model(model, Shards(paths), min_sqnr_db=30.0, progress=False, client=client)
    b = quantize_model(model, Shards(paths), min_sqnr_db=30.0, progress=False)
    assert a.SerializeToString() == b.SerializeToString()


def test_accuracy_budget_scored_on_the_cluster(digits, client):
    """quantize_model(evaluate=...) with a metric that itself runs on the cluster: the
    search (one evaluation per layer, then per step) takes the same path as in one process."""
    model, paths, _, data = digits
    val = Shards([{"input": as_input(data["test_images"][k:k + 200]), "label": data["test_labels"][k:k + 200]}
                  for k in (0, 200)])
    kw = dict(method="minmax", max_drop=0.0, progress=False, return_report=True, measure=False)
    a = quantize_model(model, Shards(paths), client=client,
                       evaluate=lambda m: evaluate(m, val, "cosine", reference=model, client=client), **kw)
    b = quantize_model(model, Shards(paths), evaluate=lambda m: evaluate(m, val, "cosine", reference=model), **kw)
    assert a[0].SerializeToString() == b[0].SerializeToString()
    assert a[1]["accuracy_budget"] == b[1]["accuracy_budget"]
    assert a[1]["accuracy_budget"]["evaluations"] >= 5     # float (cosine 1) is out of reach: every layer is tried


def test_cluster_errors_name_the_shard(digits, client, tmp_path):
    model, paths, x, _ = digits
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, pixels=x[:20])
    with pytest.raises(CalibrationError, match=rf"shard 1 \('{wrong}'\)"):
        quantize_model(model, Shards([paths[0], str(wrong), paths[1]]), client=client, progress=False)


def _slow(block, seconds):
    def shard():
        time.sleep(seconds)
        return [{"input": block[i:i + 16]} for i in range(0, len(block), 16)]
    return shard


def test_a_worker_killed_midway(digits, client):
    """Kill a worker process while shards run: Dask runs its shards again on the other
    (and on the restarted) worker, and the observers are the same."""
    model, _, x, _ = digits
    blocks = [x[k:k + 25] for k in range(0, 200, 25)]
    ref = quantize_model(model, Shards([_slow(b, 0.0) for b in blocks]), client=client, progress=False)
    pids = client.run(os.getpid)
    victim = sorted(pids.values())[0]
    timer = threading.Timer(1.0, os.kill, (victim, signal.SIGKILL))
    timer.start()
    try:
        t0 = time.perf_counter()
        got = quantize_model(model, Shards([_slow(b, 0.6) for b in blocks]), client=client, progress=False)
    finally:
        timer.cancel()
    assert time.perf_counter() - t0 > 1.0          # the kill came while shards were running
    assert victim not in client.run(os.getpid).values()
    assert got.SerializeToString() == ref.SerializeToString()


def test_cli_workers_and_scheduler(digits, client, tmp_path, capsys):
    """--workers N (a local cluster) and --scheduler ADDRESS (a running one: the test
    cluster's scheduler), a shard per file of the pattern: the model of one process."""
    model, paths, _, _ = digits
    pattern = os.path.join(os.path.dirname(paths[0]), "part-*.npz")
    want = quantize_model(model, Shards(paths), method="minmax", progress=False)
    for how in (["--workers", "2"], ["--scheduler", client.scheduler.address]):
        out = tmp_path / "q.onnx"
        assert main(["quantize", model, str(out), "--calib", pattern, *how, "--method", "minmax"]) == 0
        assert onnx.load(str(out)).SerializeToString() == want.SerializeToString()
        assert "4/4" in capsys.readouterr().err          # the progress bar counts shards
    assert main(["quantize", model, str(out), "--calib", pattern, "--workers", "2", "--scheduler", "tcp://x:1"]) == 2
    assert "not both" in capsys.readouterr().err
