"""Quantization tools: post-training quantization of float ONNX models, calibration
observers and quantization parameters.

- :func:`quantize_model` (:mod:`qkernels.quant.quantize`) -- a float ONNX model and
  calibration data in, a QDQ ONNX model out (targets ``cpu``, ``dsp``, ``fp16``).

- :mod:`qkernels.quant.passes` -- cross-layer equalisation, bias correction and the
  accuracy-budget search (``quantize_model(equalize=, bias_correction=, evaluate=)``).
- :mod:`qkernels.quant.report` -- the per-tensor report (SQNR, cosine, clipping) as a
  table, JSON and a plot.
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
from .passes import correct_biases, equalize, input_means, search_accuracy_budget
from .quantize import TARGETS, CalibrationError, calibrate, fold_batch_norm, quantize_model
from .report import format_report, load_report, plot_report, save_report

__all__ = [
    "Observer", "MinMaxObserver", "MovingAverageMinMaxObserver", "HistogramObserver", "PercentileObserver",
    "EntropyObserver", "MSEObserver", "make_observer", "OBSERVERS", "qrange", "quant_params", "weight_params",
    "quantize_model", "calibrate", "fold_batch_norm", "CalibrationError", "TARGETS",
    "equalize", "input_means", "correct_biases", "search_accuracy_budget",
    "format_report", "save_report", "load_report", "plot_report",
]
