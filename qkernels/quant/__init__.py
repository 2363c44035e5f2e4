"""Quantization tools: post-training quantization of float ONNX models, calibration
observers and quantization parameters.

- :func:`quantize_model` (:mod:`qkernels.quant.quantize`) -- a float ONNX model and
  calibration data in, a QDQ ONNX model out (targets ``cpu``, ``dsp``, ``fp16``).

- :mod:`qkernels.quant.prepare` -- the float model brought to the form the quantizer
  plans on: opset conversion, node names, constant folding (``Constant``-node weights),
  batch-norm and conv-affine folding;
- :mod:`qkernels.quant.auto` -- ``method="auto"``: per tensor, the candidate range that
  least disturbs the nodes reading it;
- :mod:`qkernels.quant.sensitivity` -- what each tensor or layer costs the outputs when
  it alone is quantized (the report's culprit, ``keep_float=``, ``min_sqnr_db=``);
- :mod:`qkernels.quant.passes` -- batch-norm folding, cross-layer equalisation, bias
  correction and the accuracy-budget search (``quantize_model(equalize=,
  bias_correction=, evaluate=)``).
- :mod:`qkernels.quant.data` -- calibration data in its accepted forms, and
  :class:`Shards` (data in pieces, the unit of distribution);
  :mod:`qkernels.quant.calibration` -- :func:`calibrate` (the float model run over it,
  one observer per tensor);
- :mod:`qkernels.quant.shards` -- every pass over the data run shard by shard, in this
  process or on a Dask cluster (``client=``), folded in shard order;
  :mod:`qkernels.quant.cluster` -- a Dask client for it (local or running cluster);
  :mod:`qkernels.quant.scoring` -- :func:`evaluate`, a model's accuracy (or SQNR, cosine
  against float) over a data set, sharded the same way.
- :mod:`qkernels.quant.plan` -- which activations, weights and biases get quantized;
  :mod:`qkernels.quant.qdq` -- the QDQ (and fp16) model written from that plan;
  :mod:`qkernels.quant.weights` -- the int8 weight grid and per-channel ranges;
  :mod:`qkernels.quant.graphutil` -- ONNX graph helpers these modules share.
- :mod:`qkernels.quant.report` -- the per-tensor report (SQNR, cosine, clipping): measured,
  assembled, and shown as a table, JSON and a plot.
- :mod:`qkernels.quant.observers` -- mergeable, picklable observers that collect a
  tensor's range batch by batch (min-max, moving average, percentile, entropy, MSE).
- :mod:`qkernels.quant.params` -- scale and zero point from a range
  (:func:`quant_params`) or from a weight tensor, per tensor or per channel
  (:func:`weight_params`), in onnxruntime's conventions.
"""
from .observers import (
    OBSERVERS,
    EntropyObserver,
    HistogramObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MSEObserver,
    Observer,
    PercentileObserver,
    make_observer,
)
from .params import qrange, quant_params, weight_params
from .calibration import CalibrationError, calibrate
from .passes import correct_biases, equalize, fold_batch_norm, input_means, search_accuracy_budget
from .quantize import TARGETS, quantize_model
from .data import Shards
from .scoring import evaluate
from .report import format_report, load_report, plot_report, save_report

__all__ = [
    "Observer", "MinMaxObserver", "MovingAverageMinMaxObserver", "HistogramObserver", "PercentileObserver",
    "EntropyObserver", "MSEObserver", "make_observer", "OBSERVERS", "qrange", "quant_params", "weight_params",
    "quantize_model", "calibrate", "Shards", "evaluate", "fold_batch_norm", "CalibrationError", "TARGETS",
    "equalize", "input_means", "correct_biases", "search_accuracy_budget",
    "format_report", "save_report", "load_report", "plot_report",
]
