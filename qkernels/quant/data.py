"""Calibration and evaluation data in the forms users have it: feed dicts, arrays and
files, fed batch by batch (:func:`iter_calibration`), and :class:`Shards`, data in pieces
that one task each loads and runs (a file, a function, a mapping of arrays, a ``dask.bag``
partition, a block of a ``dask.array``): :mod:`qkernels.quant.shards` runs the passes over
them, in this process or on a Dask cluster."""
from __future__ import annotations

import glob
import os
import zipfile
import zlib
from typing import Iterable, Mapping

import numpy as np


__all__ = ["CalibrationError", "BATCH_SIZE", "Batched", "Shards", "shards_of", "iter_calibration", "calibration_batches",
           "replayable", "split_feeds"]

#: Arrays (a mapping, a .npz/.npy file or folder) are fed in blocks of this many samples
#: along their leading axis, unless ``batch_size`` says otherwise.
BATCH_SIZE = 32


class CalibrationError(ValueError):
    """The calibration data cannot be used: empty, wrong names or shapes, NaN/Inf."""


class Batched:
    """Calibration arrays (a mapping, or a .npz/.npy file or folder) fed ``batch_size``
    samples at a time (``quantize_model(batch_size=)``, ``qkernels quantize --batch-size``)."""

    def __init__(self, data, batch_size: int):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        self.data, self.batch_size = data, batch_size


def data_files(folder: str) -> list[str]:
    """The .npz and .npy files of ``folder``, in name order (a folder of calibration data)."""
    return [os.path.join(folder, f) for f in sorted(os.listdir(folder)) if f.endswith((".npz", ".npy"))]


def iter_calibration(data, input_names: list[str], batch_size: int = BATCH_SIZE) -> Iterable[dict]:
    """Feed dicts from: an iterable of dicts, a .npz/.npy file or a folder of them, a
    mapping name -> array (one batch per leading index block of ``batch_size``; a
    :class:`Batched` sets it), or an object with ONNX Runtime's CalibrationDataReader
    interface (``get_next()``)."""
    if isinstance(data, Batched):
        yield from iter_calibration(data.data, input_names, data.batch_size)
        return
    if isinstance(data, Shards):
        yield from data.iter(input_names)
        return
    if hasattr(data, "get_next"):
        while True:
            item = data.get_next()
            if item is None:
                return
            yield dict(item)
        return
    if isinstance(data, (str, os.PathLike)):
        path = os.fspath(data)
        if os.path.isdir(path):
            files = data_files(path)
            if not files:
                raise CalibrationError(f"calibration folder {path!r} holds no .npz or .npy files")
            for f in files:
                yield from iter_calibration(f, input_names, batch_size)
            return
        yield from iter_calibration(_load_arrays(path, input_names), input_names, batch_size)
        return
    if isinstance(data, Mapping):
        arrays = {k: np.asarray(v) for k, v in data.items()}
        for k, v in arrays.items():
            if v.ndim == 0:
                raise CalibrationError(f"calibration array {k!r} is a scalar; it needs a leading batch axis")
        n = min(len(v) for v in arrays.values()) if arrays else 0
        for i in range(0, n, batch_size):
            yield {k: v[i:i + batch_size] for k, v in arrays.items()}
        return
    for item in data:
        if not isinstance(item, Mapping):
            raise CalibrationError(f"calibration batches must be dicts of input name -> array, got "
                                   f"{type(item).__name__}")
        yield dict(item)


#: what numpy raises on a damaged .npy/.npz: bad header or pickled data (ValueError), short
#: file (EOFError), bad zip or CRC (BadZipFile), corrupt deflate stream (zlib.error)
_UNREADABLE = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


def _load_arrays(path: str, input_names: list[str]) -> dict:
    """The arrays of a .npy or .npz file, every .npz member read here: members are read
    lazily, so a damaged one would otherwise fail later with a raw zipfile or zlib error."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except _UNREADABLE as exc:
        raise CalibrationError(f"cannot read calibration data {path!r}: {exc}") from None
    if isinstance(loaded, np.ndarray):
        if len(input_names) != 1:
            raise CalibrationError(f"{path!r} holds one array but the model has inputs {input_names}")
        return {input_names[0]: loaded}
    arrays = {}
    with loaded:
        for name in loaded.files:
            try:
                value = loaded[name]
            except _UNREADABLE as exc:
                raise CalibrationError(f"cannot read member {name!r} of calibration data {path!r}: {exc}") from None
            if not isinstance(value, np.ndarray):   # numpy hands back the raw bytes of a non-.npy member
                raise CalibrationError(f"member {name!r} of calibration data {path!r} is not a .npy array")
            arrays[name] = value
    return arrays


def _samples(data) -> int | None:
    """How many samples ``data`` holds, when that is known without reading its values
    (arrays in memory, batches in a list, the headers of .npy/.npz files); else None."""
    if isinstance(data, Batched):
        return _samples(data.data)
    if isinstance(data, Mapping):
        lens = [len(v) if np.ndim(v) else 0 for v in data.values()]
        return min(lens) if lens else 0
    if isinstance(data, (list, tuple)):
        counts = [_samples(b) for b in data]
        return None if any(c is None for c in counts) else sum(counts)
    if isinstance(data, (str, os.PathLike)):
        path = os.fspath(data)
        try:
            if os.path.isdir(path):
                counts = [_file_samples(f) for f in data_files(path)]
                return None if any(c is None for c in counts) else sum(counts)
            return _file_samples(path)
        except _UNREADABLE:
            return None   # the reading itself reports what is wrong
    return None


def _file_samples(path: str) -> int | None:
    """The leading dimension of a .npy file, or the smallest of a .npz file's members,
    from the array headers alone."""
    def leading(f) -> int | None:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape = read(f)[0]
        return shape[0] if shape else None
    if path.endswith(".npy"):
        with open(path, "rb") as f:
            return leading(f)
    with zipfile.ZipFile(path) as z:
        counts = []
        for name in z.namelist():
            with z.open(name) as f:
                counts.append(leading(f))
    return None if not counts or None in counts else min(counts)


def calibration_batches(data, input_names: list[str], progress: bool, desc: str) -> Iterable[dict]:
    """The feed dicts of ``data``, with a progress bar over the samples (its total when
    known: :func:`_samples`) when ``progress``."""
    batches = iter_calibration(data, input_names)
    if not progress:
        return batches
    from tqdm import tqdm
    bar = tqdm(total=_samples(data), desc=desc, unit="sample")

    def counted():
        with bar:
            for feeds in batches:
                yield feeds
                lens = [len(v) for v in feeds.values() if np.ndim(v)]
                bar.update(min(lens) if lens else 1)
    return counted()


def replayable(data):
    """Calibration data that can be read more than once: a reader or an iterator is read
    into a list of batches (the passes and the report read the data again)."""
    if isinstance(data, (str, os.PathLike, Mapping, list, tuple, Batched, Shards)):
        return data
    if hasattr(data, "get_next"):
        return list(iter_calibration(data, []))
    try:
        one_shot = iter(data) is data
    except TypeError:
        return data
    return list(iter_calibration(data, [])) if one_shot else data


def split_feeds(feeds: dict, n: int) -> list[dict]:
    """``feeds`` as [its first ``n`` samples, the rest] when every array shares one leading
    length above ``n``; else [feeds]."""
    lens = {len(v) if np.ndim(v) else None for v in feeds.values()}
    if len(lens) != 1 or None in lens or lens.pop() <= n:
        return [feeds]
    return [{k: v[:n] for k, v in feeds.items()}, {k: v[n:] for k, v in feeds.items()}]


# ----------------------------------------------------------------------------- shards

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
    """``data`` as :class:`Shards` (a Shards as it is, or with ``batch_size`` when given)."""
    if isinstance(data, Shards):
        return data if batch_size in (None, data.batch_size) else Shards(data.sources, batch_size)
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
            files = data_files(path)
            if not files:
                raise CalibrationError(f"calibration folder {path!r} holds no .npz or .npy files")
            return files
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
