"""Quantization tools: post-training quantization of float ONNX models, calibration
observers and quantization parameters.

- :func:`quantize_model` (:mod:`qkernels.quant.quantize`) -- a float ONNX model and
  calibration data in, a QDQ ONNX model out (targets ``cpu``, ``dsp``, ``fp16``).

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
from .quantize import TARGETS, CalibrationError, calibrate, fold_batch_norm, quantize_model

__all__ = [
    "Observer", "MinMaxObserver", "MovingAverageMinMaxObserver", "HistogramObserver", "PercentileObserver",
    "EntropyObserver", "MSEObserver", "make_observer", "OBSERVERS", "qrange", "quant_params", "weight_params",
    "quantize_model", "calibrate", "fold_batch_norm", "CalibrationError", "TARGETS",
]
