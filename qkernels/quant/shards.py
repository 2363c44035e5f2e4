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

    - ``run(sessions, batches, index) -> partial``: one shard (``index`` 0 is the first),
      ``sessions`` one :class:`qkernels.graph.Session` per model, made once per process
      (a worker keeps the last few, by the models' digests); a shard's arrays feed the
      first model's inputs;
    - ``merge(total, partial) -> total``: fold the next shard's partial in.
    """

    @staticmethod
    def setup(models: tuple[bytes, ...]) -> list:
        from ..graph import Session
        return [Session(m) for m in models]

    def run(self, sessions: list, batches: Iterable[dict], index: int):
        raise NotImplementedError

    def merge(self, total, partial):
        raise NotImplementedError


#: a worker's sessions: model digests -> sessions, the last few
_SESSIONS: OrderedDict = OrderedDict()
_SESSIONS_KEPT = 4
_LOCK = threading.Lock()


def _worker_sessions(models: tuple, digests: tuple) -> list:
    with _LOCK:
        if digests in _SESSIONS:
            _SESSIONS.move_to_end(digests)
            return _SESSIONS[digests]
    sessions = ShardJob.setup(models)
    with _LOCK:
        _SESSIONS[digests] = sessions
        while len(_SESSIONS) > _SESSIONS_KEPT:
            _SESSIONS.popitem(last=False)
    return sessions


def _inputs(sessions: list) -> list[str]:
    return [i.name for i in sessions[0].get_inputs()]


def _run_shard(job: ShardJob, models: tuple, digests: tuple, source, index: int, batch_size: int,
               sessions: list | None = None):
    """One shard of ``job``: in this process with its ``sessions``, or as a Dask task
    (sessions from the worker's cache, the kernels on one thread: a worker runs a task
    per thread, and more threads would fight over the cores at OpenMP barriers). Errors
    name the shard."""
    from .. import _dispatch
    from ..graph import RunError
    try:
        with _dispatch.use_num_threads(1) if sessions is None else contextlib.nullcontext():
            if sessions is None:
                sessions = _worker_sessions(models, digests)
            return job.run(sessions, _shard_batches(source, _inputs(sessions), batch_size), index)
    except (CalibrationError, RunError, ValueError, TypeError, OSError) as exc:
        raise CalibrationError(f"{_describe(source, index)}: {exc}") from None


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
    if client is not None:
        data = shards_of(data)
    elif not isinstance(data, Shards):   # one shard, read as one process reads it (progress over samples)
        sessions = ShardJob.setup(models)
        return job.run(sessions, calibration_batches(data, _inputs(sessions), progress, desc), 0)
    from tqdm import tqdm
    with tqdm(total=len(data), desc=desc, unit="shard", disable=not progress) as bar:
        if client is not None:
            return _run_on_cluster(job, models, digests, data, client, bar)
        sessions, total = ShardJob.setup(models), None
        for i, source in enumerate(data.sources):
            part = _run_shard(job, models, digests, _materialize(source), i, data.batch_size, sessions)
            total = part if total is None else job.merge(total, part)
            bar.update(1)
        return total


def _run_on_cluster(job, models, digests, data: Shards, client, bar):
    import dask
    from distributed import as_completed
    # not hashed: a hashed key may be released by the last call just as this one needs it
    shipped = tuple(client.scatter(m, broadcast=True, hash=False) for m in models)
    task = dask.delayed(_run_shard, pure=False)
    futures = client.compute([task(job, shipped, digests, src, i, data.batch_size)
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
