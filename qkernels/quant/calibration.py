"""Calibration: the float model run over the calibration data, one observer per tensor
(:func:`calibrate`), shard by shard in this process or on a Dask cluster
(:mod:`qkernels.quant.shards`). The data forms themselves are :mod:`qkernels.quant.data`."""
from __future__ import annotations

import numpy as np

from .data import (BATCH_SIZE, Batched, CalibrationError, calibration_batches, iter_calibration,  # noqa: F401
                   replayable, split_feeds)
from .graphutil import with_outputs
from .observers import MovingAverageMinMaxObserver, make_observer
from .shards import ShardJob, run_shards

__all__ = ["CalibrationError", "BATCH_SIZE", "Batched", "iter_calibration", "calibration_batches", "replayable",
           "split_feeds", "calibrate"]


def calibrate(model, calibration_data, tensors: list[str], method: str = "minmax", progress: bool = True,
              capture=(), capture_samples: int = 8, client=None, **observer_options):
    """name -> observer fed with every calibration batch (the float model run on
    qkernels' graph runner).

    With ``capture`` (tensor names), returns ``(observers, values)``: ``values`` holds the
    feeds and every tensor of ``tensors`` and ``capture`` for the first
    ``capture_samples`` samples of the first batch (the first batch is run in two parts
    for that; every sample is still observed once).

    ``calibration_data`` as :class:`~qkernels.quant.data.Shards` is observed shard by
    shard and the observers merged in shard order -- on the workers of ``client`` (a
    ``distributed.Client``) when given: the observers are the same, bit for bit, as one
    pass over the same data in one process (every merge is exact; a moving average
    replays the next shard's batch ranges).
    """
    make_observer(method, **observer_options)       # a bad method or option fails here, not on a worker
    fetch = list(dict.fromkeys([*tensors, *capture]))
    job = _Observe(list(tensors), method, observer_options, list(capture), capture_samples)
    observers, captured, seen = run_shards(job, [with_outputs(model, fetch)], calibration_data, client=client,
                                           progress=progress, desc="calibrating")
    if not seen:
        raise CalibrationError("the calibration data is empty")
    return (observers, captured) if capture else observers


class _Observe(ShardJob):
    """Calibration as a shard job: a shard gives (observers, captured values or None, batches)."""

    def __init__(self, tensors, method, options, capture, capture_samples):
        self.tensors, self.method, self.options = tensors, method, options
        self.capture, self.capture_samples = capture, capture_samples

    def run(self, sessions, batches, index):
        from ..graph import RunError
        fetch = list(dict.fromkeys([*self.tensors, *self.capture]))
        observers = {t: make_observer(self.method, **self.options) for t in self.tensors}
        capture = self.capture if index == 0 else ()
        seen, captured = 0, None
        for feeds in batches:
            for part in split_feeds(feeds, self.capture_samples) if capture and captured is None else [feeds]:
                try:
                    values = sessions[0].run(fetch, part)
                except RunError as exc:
                    raise CalibrationError(f"calibration batch {seen}: {exc}") from None
                for t, v in zip(fetch, values):
                    if t not in observers:
                        continue
                    if not np.all(np.isfinite(v)):
                        raise CalibrationError(f"calibration batch {seen}: tensor {t!r} holds NaN or Inf")
                    observers[t].update(v)
                if capture and captured is None:
                    captured = {**part, **dict(zip(fetch, values))}
            seen += 1
        return observers, captured, seen

    def merge(self, total, partial):
        observers, captured, seen = total
        for t, obs in partial[0].items():
            if isinstance(obs, MovingAverageMinMaxObserver):
                observers[t].extend(obs)
            else:
                observers[t].merge(obs)
        return observers, captured if captured is not None else partial[1], seen + partial[2]
