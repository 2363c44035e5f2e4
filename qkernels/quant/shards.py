"""Passes over calibration data shard by shard, in this process or on a Dask cluster.

A **shard** is a piece of the data loaded and run by one task: a ``.npz``/``.npy`` file
(or a folder of them), a function that returns an iterable of feed dicts, a mapping
name -> arrays, a list of feed dicts, a partition of a ``dask.bag`` of feed dicts, or a
block (along the leading axis) of ``dask.array`` inputs. :class:`~qkernels.quant.data.Shards`
holds them and how many samples a batch takes.

A pass is a :class:`ShardJob`: ``setup`` builds what every shard needs (sessions of the
models; once per process and cached), ``run`` gives one shard's partial result
(observers, sums) and ``merge`` folds partials. :func:`run_shards` runs a job on every
shard and folds the partials **in shard order**, whatever order they finish in, so the
result depends only on the shards: run in one process (``client=None``) or over any
number of Dask workers, it is the same bit for bit -- and for the calibration observers,
whose merges are exact, the same as one pass over all the data.

Data that is not a :class:`Shards` (a folder, a mapping, an iterable of feed dicts) is
one shard, run in this process. A client for a local or a running cluster:
:mod:`qkernels.quant.cluster`.
"""
from __future__ import annotations

import contextlib
import hashlib
import threading
from collections import OrderedDict
from typing import Callable, Iterable

from .data import CalibrationError, Shards, _describe, _materialize, _shard_batches, calibration_batches, shards_of

__all__ = ["Shards", "ShardJob", "run_shards", "shards_of", "map_items"]


# ----------------------------------------------------------------------------- jobs

class ShardJob:
    """One pass over the data. Subclasses are small picklable objects (they travel to
    the workers with every shard) and define:

    - ``setup(models) -> state``: what every shard needs (sessions of the models, given
      as serialized ONNX bytes); built once per process and job and cached;
    - ``inputs(state) -> list[str]``: the model inputs a shard's arrays feed;
    - ``run(state, batches, index) -> partial``: one shard (``index`` 0 is the first);
    - ``merge(total, partial) -> total``: fold the next shard's partial in.
    """

    def key(self) -> str:
        """What, beside the models, makes two jobs' states interchangeable (the jobs here
        build sessions of their models only: the kind of job)."""
        return type(self).__name__

    def setup(self, models: tuple[bytes, ...]):
        raise NotImplementedError

    def inputs(self, state) -> list[str]:
        return [i.name for i in state.get_inputs()]

    def run(self, state, batches: Iterable[dict], index: int):
        raise NotImplementedError

    def merge(self, total, partial):
        raise NotImplementedError


#: per process: (model digests, job key) -> state; a worker keeps the last few
_CACHE: OrderedDict = OrderedDict()
_CACHE_SIZE = 4
_LOCK = threading.Lock()


def _state(job: ShardJob, models: tuple, digests: tuple, cache: dict | None):
    key = (digests, job.key())
    store = _CACHE if cache is None else cache
    with _LOCK:
        if key in store:
            if cache is None:
                _CACHE.move_to_end(key)
            return store[key]
    state = job.setup(models)
    with _LOCK:
        store[key] = state
        if cache is None:
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
    return state


def _run_shard(job: ShardJob, models: tuple, digests: tuple, source, index: int, batch_size: int,
               cache: dict | None = None, threads: int | None = None):
    """One shard of ``job`` (a Dask task, or called in this process); errors name the
    shard. ``threads``: the kernels' threads in this task (a Dask worker runs a task per
    thread: 1, or its kernels' threads would fight over the cores at OpenMP barriers)."""
    from .. import _dispatch
    from ..graph import RunError
    what = _describe(source, index)
    try:
        with _dispatch.use_num_threads(threads) if threads else contextlib.nullcontext():
            state = _state(job, models, digests, cache)
            return job.run(state, _shard_batches(source, job.inputs(state), batch_size), index)
    except (CalibrationError, RunError, ValueError, TypeError, OSError) as exc:
        raise CalibrationError(f"{what}: {exc}") from None


def run_shards(job: ShardJob, models, data, *, client=None, progress: bool = False, desc: str = ""):
    """``job`` on every shard of ``data``, the partials folded in shard order.

    ``models``: ONNX ModelProtos or their serialized bytes (shipped to each worker once).
    ``client``: a ``distributed.Client``; None runs in this process (data that is not a
    :class:`Shards` is then one shard). A worker lost mid-way has its shards run again
    elsewhere by Dask; an error in a shard is raised as CalibrationError naming it.
    """
    if client is not None and not all(hasattr(client, a) for a in ("compute", "scatter", "submit")):
        raise TypeError(f"client must be a distributed.Client (or None), got {type(client).__name__}")
    models = tuple(m if isinstance(m, bytes) else m.SerializeToString() for m in models)
    digests = tuple(hashlib.sha256(m).hexdigest() for m in models)
    if not isinstance(data, Shards):
        if client is not None:
            data = shards_of(data)
        else:   # one shard, read as one process reads it (with its progress over samples)
            cache: dict = {}
            state = _state(job, models, digests, cache)
            batches = calibration_batches(data, job.inputs(state), progress, desc)
            return job.run(state, batches, 0)
    bar = _bar(progress, len(data), desc)
    try:
        if client is None:
            cache = {}
            total = None
            for i, source in enumerate(data.sources):
                part = _run_shard(job, models, digests, _materialize(source), i, data.batch_size, cache)
                total = part if total is None else job.merge(total, part)
                bar.update(1)
            return total
        return _run_on_cluster(job, models, digests, data, client, bar)
    finally:
        bar.close()


def _run_on_cluster(job, models, digests, data: Shards, client, bar):
    import dask
    from distributed import as_completed
    shipped = tuple(client.scatter(m, broadcast=True, hash=False) for m in models)   # (a hashed key may be released by the last call as this one needs it)
    task = dask.delayed(_run_shard, pure=False)
    futures = client.compute([task(job, shipped, digests, src, i, data.batch_size, None, 1)
                              for i, src in enumerate(data.sources)])
    index = {f.key: i for i, f in enumerate(futures)}
    ready, total, want = {}, None, 0
    try:
        for future in as_completed(futures):
            ready[index[future.key]] = future.result()      # raises the shard's error
            future.release()
            bar.update(1)
            while want in ready:                             # fold in shard order
                part = ready.pop(want)
                total = part if total is None else job.merge(total, part)
                want += 1
    except BaseException:
        client.cancel(futures)
        raise
    return total


class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass


def _bar(progress: bool, total: int, desc: str):
    if not progress:
        return _NoBar()
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="shard")


def map_items(fn: Callable, items: list, *shared, client=None, chunks: int | None = None) -> list:
    """``fn(items, *shared)`` (a list of results, one per item); with a ``client`` the
    items go out in ``chunks`` pieces (default: 2 per worker thread), ``shared`` sent to
    every worker once, and the results come back in the items' order."""
    if client is None or not items:
        return list(fn(items, *shared))
    if chunks is None:
        chunks = 2 * max(1, sum(client.nthreads().values()))
    size = -(-len(items) // chunks)
    sent = [client.scatter([v], broadcast=True, hash=False)[0] for v in shared]   # (a dict is one value)
    futures = [client.submit(_one_thread, fn, items[i:i + size], *sent, pure=False)
               for i in range(0, len(items), size)]
    return [r for part in client.gather(futures) for r in part]


def _one_thread(fn: Callable, *args):
    """``fn(*args)`` with the kernels on one thread (a worker runs a task per thread)."""
    from .. import _dispatch
    with _dispatch.use_num_threads(1):
        return fn(*args)
