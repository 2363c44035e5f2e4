"""A Dask client for the sharded passes (:mod:`qkernels.quant.shards`): connected to a
running scheduler, or to a local cluster of one-thread worker processes set up for
qkernels (``qkernels quantize --scheduler`` / ``--workers``)."""
from __future__ import annotations

import contextlib
import logging

__all__ = ["dask_client", "warm_up"]


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None):
    """A ``distributed.Client`` for the ``with`` block: connected to the scheduler at
    ``scheduler`` (``tcp://host:8786``), or to a local cluster of ``workers`` processes
    of one thread each, closed on exit. ImportError (naming the extra) without Dask."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ImportError("distributed calibration needs Dask: pip install 'qkernels[distributed]'") from None
    if scheduler is not None:
        with Client(scheduler) as client:
            warm_up(client)
            yield client
        return
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    import dask
    # Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, which turns glibc's
    # adaptive mmap threshold off: every activation-sized array is then mapped and
    # unmapped again, and calibration ran 2x slower per shard; unset here (docs/distributed.md)
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}), \
            LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                         silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        warm_up(client)
        yield client


def warm_up(client) -> None:
    """Import onnx, the runner and the quantizer on every worker now (about a second
    per process), so the first shards do not wait for it; worker -> seconds it took."""
    return client.run(_import_quant)


def _import_quant():
    import importlib
    import time
    t0 = time.perf_counter()
    for name in ("onnx", "qkernels.quant", "qkernels.graph.backends"):   # onnx: a second at the first model
        importlib.import_module(name)
    return time.perf_counter() - t0
