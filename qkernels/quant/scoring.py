"""Scoring a model over a data set, shard by shard, in this process or on a Dask cluster:
``evaluate(model, data, metric, client=...)``.

Metrics: ``"accuracy"`` (top-1 of the first output, or ``output=``, against the labels
each batch carries under ``labels=``), ``"sqnr"`` (dB) and ``"cosine"`` of the model's
outputs against a ``reference`` model's (the float model) on the same data, or a
function ``fn(outputs, batch) -> (total, count)`` (outputs: name -> array; the score is
the sum of the totals over the sum of the counts). Sums are kept per shard and added in
shard order, so a score is the same in one process and on any number of workers.
"""
from __future__ import annotations

import numpy as np

from .data import Batched, CalibrationError
from .report import cosine, sqnr_db
from .shards import Shards, ShardJob, run_shards, shards_of

__all__ = ["evaluate", "METRICS"]

METRICS = ("accuracy", "sqnr", "cosine")


def evaluate(model, data, metric="accuracy", *, reference=None, labels: str = "label", output: str | None = None,
             client=None, progress: bool = False, batch_size: int | None = None) -> float:
    """The ``metric`` of ``model`` (path, bytes or ModelProto) over ``data`` (any
    calibration data form, or :class:`~qkernels.quant.data.Shards`; with a ``client``
    the data is run as shards on its workers). Arrays of a batch that are not model
    inputs (the labels) are not fed to the model."""
    from ..graph.model import load_model
    if not callable(metric) and metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)} or a function (outputs, batch) -> "
                         f"(total, count), got {metric!r}")
    models = [load_model(model)]
    if metric in ("sqnr", "cosine"):
        if reference is None:
            raise ValueError(f"metric {metric!r} compares with a reference model: give reference= (the float model)")
        models.append(load_model(reference))
    if client is not None:
        data = shards_of(data, batch_size)
    elif batch_size is not None and not isinstance(data, Shards):
        data = Batched(data, batch_size)
    sums = run_shards(_Score(metric, labels, output), models, data, client=client, progress=progress, desc="evaluating")
    if sums["count"] == 0:
        raise CalibrationError("the evaluation data is empty")
    if callable(metric) or metric == "accuracy":
        return sums["total"] / sums["count"]
    if metric == "sqnr":
        return sqnr_db(sums["xx"], sums["ee"])
    return cosine(sums["xy"], sums["xx"], sums["yy"])


class _Score(ShardJob):
    """evaluate() as a shard job: a shard gives its sums (a dict of floats and counts)."""

    def __init__(self, metric, labels: str, output: str | None):
        self.metric, self.labels, self.output = metric, labels, output

    def run(self, sessions, batches, index):
        session = sessions[0]
        inputs = {i.name for i in session.get_inputs()}
        names = [o.name for o in session.get_outputs()]
        if self.output is not None and self.output not in names:
            raise CalibrationError(f"output={self.output!r} is not an output of the model ({names})")
        sums = {"total": 0.0, "count": 0, "xx": 0.0, "ee": 0.0, "xy": 0.0, "yy": 0.0}
        for b, batch in enumerate(batches):
            feeds = {k: v for k, v in batch.items() if k in inputs}
            got = dict(zip(names, session.run(names, feeds)))
            if callable(self.metric):
                total, count = self.metric(got, batch)
                sums["total"] += float(total)
                sums["count"] += int(count)
            elif self.metric == "accuracy":
                if self.labels not in batch:
                    raise CalibrationError(f"batch {b} has no labels {self.labels!r} (its arrays: {sorted(batch)})")
                y = got[self.output or names[0]]
                truth = np.asarray(batch[self.labels]).reshape(-1)
                pred = y.reshape(len(y), -1).argmax(axis=1) if y.ndim > 1 else y
                if pred.shape != truth.shape:
                    raise CalibrationError(f"batch {b}: {len(truth)} labels for {len(pred)} predictions")
                sums["total"] += float(np.count_nonzero(pred == truth))
                sums["count"] += len(truth)
            else:
                ref = dict(zip(names, sessions[1].run(names, feeds)))
                for name in ([self.output] if self.output else names):
                    x = np.asarray(ref[name], np.float64).reshape(-1)
                    q = np.asarray(got[name], np.float64).reshape(-1)
                    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(q))):
                        raise CalibrationError(f"batch {b}: output {name!r} holds NaN or Inf")
                    e = q - x
                    sums["xx"] += float(x @ x)
                    sums["yy"] += float(q @ q)
                    sums["xy"] += float(x @ q)
                    sums["ee"] += float(e @ e)
                    sums["count"] += x.size
        return sums

    def merge(self, total, partial):
        return {k: total[k] + partial[k] for k in total}
