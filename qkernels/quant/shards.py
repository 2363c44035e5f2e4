"""Passes over calibration data shard by shard, in this process or on a Dask cluster.

A **shard** is a piece of the data loaded and run by one task: a ``.npz``/``.npy`` file
(or a folder of them), a function that returns an iterable of feed dicts, a mapping
name -> arrays, a list of feed dicts, a partition of a ``dask.bag`` of feed dicts, or a
block (along the leading axis) of ``dask.array`` inputs. :class:`Shards` holds them and
how many samples a batch takes.

A pass is a :class:`ShardJob`: ``setup`` builds what every shard needs (sessions of the
models; once per process and cached), ``run`` gives one shard's partial result
(observers, sums) and ``merge`` folds partials. :func:`run_shards` runs a job on every
shard and folds the partials **in shard order**, whatever order they finish in, so the
result depends only on the shards: run in one process (``client=None``) or over any
number of Dask workers, it is the same bit for bit -- and for the calibration observers,
whose merges are exact, the same as one pass over all the data.

Data that is not a :class:`Shards` (a folder, a mapping, an iterable of feed dicts) is
one shard, run in this process.
"""
from __future__ import annotations

import contextlib
import glob
import hashlib
import logging
import os
import threading
from collections import OrderedDict
from typing import Callable, Iterable, Mapping

from .calibration import BATCH_SIZE, Batched, CalibrationError, calibration_batches, iter_calibration

__all__ = ["Shards", "ShardJob", "run_shards", "shards_of", "map_items", "dask_client", "warm_up"]


class Shards:
    """Calibration (or evaluation) data in shards, the unit of distribution.

    ``sources``: a list of shards (see the module's docstring), a glob pattern of
    ``.npz``/``.npy`` files (``"data/*.npz"``) or a folder of them (a shard per file),
    a mapping of arrays (one shard), a ``dask.bag`` of feed dicts (a shard per
    partition), a ``dask.array`` (the model's one input) or a mapping input name ->
    ``dask.array`` (a shard per block along the leading axis). ``batch_size``: samples
    per batch when a shard holds arrays (default 32).
    """

    def __init__(self, sources, batch_size: int = BATCH_SIZE):
        Batched(None, batch_size)                       # the same check of batch_size
        self.batch_size = batch_size
        self.sources = _sources(sources)
        if not self.sources:
            raise CalibrationError(f"no shards in {sources!r}")

    def __len__(self) -> int:
        return len(self.sources)

    def batches(self, index: int, input_names: list[str]) -> Iterable[dict]:
        """The feed dicts of shard ``index`` (its dask pieces computed here)."""
        return _shard_batches(_materialize(self.sources[index]), input_names, self.batch_size)

    def iter(self, input_names: list[str]) -> Iterable[dict]:
        """Every shard's batches, in shard order (the data as one process reads it)."""
        for i in range(len(self)):
            yield from self.batches(i, input_names)

    def __repr__(self) -> str:
        return f"Shards({len(self)} shard(s), batch_size={self.batch_size})"


def shards_of(data, batch_size: int | None = None) -> Shards:
    """``data`` as :class:`Shards` (a Shards is returned as it is)."""
    if isinstance(data, Shards):
        return data
    return Shards(data, BATCH_SIZE if batch_size is None else batch_size)


def _is_dask(obj) -> bool:
    return hasattr(obj, "__dask_graph__")


def _sources(data) -> list:
    if isinstance(data, (str, os.PathLike)):
        path = os.fspath(data)
        if glob.has_magic(path):
            files = sorted(glob.glob(path))
            if not files:
                raise CalibrationError(f"no file matches {path!r}")
            return files
        if os.path.isdir(path):
            return [os.path.join(path, f) for f in sorted(os.listdir(path)) if f.endswith((".npz", ".npy"))]
        return [path]
    if _is_dask(data):
        if hasattr(data, "chunks"):                                             # dask.array
            return _array_blocks({"": data})
        if hasattr(data, "to_delayed") and hasattr(data, "npartitions"):        # dask.bag
            return list(data.to_delayed())
        return [data]                                                           # a Delayed
    if isinstance(data, Mapping) and data and all(_is_dask(v) for v in data.values()):
        return _array_blocks(dict(data))
    if isinstance(data, Mapping):                                               # arrays: one shard
        return [data]
    if isinstance(data, (list, tuple)):
        return list(data)
    raise TypeError(f"shards must be a list, a glob pattern, a dask.bag or dask.array(s), got {type(data).__name__}")


def _array_blocks(arrays: dict) -> list[dict]:
    """Mapping name -> dask.array as a shard per block along the leading axis (every
    array split alike; the other axes in one chunk)."""
    first = next(iter(arrays.values()))
    chunks0 = first.chunks[0]
    blocks = {}
    for name, arr in arrays.items():
        if arr.ndim == 0 or arr.chunks[0] != chunks0:
            raise CalibrationError(f"dask arrays must share their chunks along the leading axis; {name or 'the input'} "
                                   f"has {arr.chunks[0] if arr.ndim else 'no axis'}, the first {chunks0}")
        arr = arr.rechunk({k: -1 for k in range(1, arr.ndim)})
        blocks[name] = arr.to_delayed().reshape(-1)
    return [{name: blocks[name][i] for name in arrays} for i in range(len(chunks0))]


def _describe(source, index: int) -> str:
    if isinstance(source, (str, os.PathLike)):
        what = repr(os.fspath(source))
    elif callable(source) and not _is_dask(source):
        what = getattr(source, "__name__", type(source).__name__)
    else:
        what = type(source).__name__
    return f"shard {index} ({what})"


def _materialize(source):
    """A shard's dask pieces computed in this process (on a worker they arrive computed)."""
    if _is_dask(source) or (isinstance(source, Mapping) and any(_is_dask(v) for v in source.values())):
        import dask
        (source,) = dask.compute(source, scheduler="sync")
    return source


def _shard_batches(source, input_names: list[str], batch_size: int) -> Iterable[dict]:
    if isinstance(source, Mapping) and set(source) == {""}:        # a block of a single dask.array
        if len(input_names) != 1:
            raise CalibrationError(f"a dask.array feeds one input, but the model has inputs {input_names}")
        source = {input_names[0]: source[""]}
    if callable(source) and not isinstance(source, Mapping):
        source = source()
    return iter_calibration(Batched(source, batch_size) if isinstance(source, (str, os.PathLike, Mapping))
                            else source, input_names)


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
    futures = [client.submit(fn, items[i:i + size], *sent, pure=False) for i in range(0, len(items), size)]
    return [r for part in client.gather(futures) for r in part]


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
    import time
    t0 = time.perf_counter()
    import onnx   # noqa: F401  (a second: the runner imports it at its first model)

    from .. import quant   # noqa: F401  (the runner and the kernels with it)
    from ..graph import backends   # noqa: F401
    return time.perf_counter() - t0
