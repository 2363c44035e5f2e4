"""``qkernels bench --suite models``: whole-model latency and memory of the graph runner
(:class:`qkernels.graph.Session`) beside ONNX Runtime, on the same model bytes.

The models (:data:`MODELS`) are :func:`zoo.mobilenet_v2` and
:func:`zoo.resnet18` (float32, NCHW input ``input`` (1, 3, 224, 224),
output ``logits``; seeded random weights), each in three variants:

* ``fp32``: the model as built;
* ``int8``: the model quantized by ONNX Runtime's own tools: ``quant_pre_process``
  (its documented pre-processing: shape inference and the graph optimizations that
  fold BatchNormalization into Conv) then ``quantize_static`` (QDQ format, int8
  activations and weights, weights per channel, calibrated on
  :data:`CALIBRATION_INPUTS` seeded random inputs);
* ``int8u8``: the same with uint8 activations (u8s8: what ORT's x86 kernels and VNNI take
  natively; OpenVINO's default precision compiles this form, not s8s8).

and a BERT-class encoder (:func:`encoder.bert_encoder`: the op-for-op graph of a Hugging
Face BERT opset-17 export; all-MiniLM-L6-v2's shape: 6 layers, hidden 384, 12 heads,
vocabulary 30522; seeded random weights, nothing downloaded) at 16 and 128 tokens, batch 1
(inputs ``input_ids``, ``attention_mask``, ``token_type_ids``; output
``last_hidden_state``), in three variants (:data:`ENCODER_VARIANTS`): ``fp32``;
``int8dyn``: ONNX Runtime's ``quantize_dynamic`` (s8 weights per channel, activations
quantized at run time); ``fp16``: ``qkernels.quant.quantize_model(target="fp16")`` (skipped
with the reason in a note when that conversion fails or gives an unusable model). An
encoder variant's check (information): the cosine of its mean-pooled, normalised sentence
embedding to ONNX Runtime's float32 model's, beside ONNX Runtime's own on the same bytes.

``--quick`` runs small versions of the same graphs (:data:`QUICK_MODELS`: width 0.5,
96x96 input; encoders of 2 layers, hidden 64), the models of a (library, thread count)
sharing one process (CI's smoke run stays short; no memory growth is reported then).

The models are made once per run, in a process of their own (``prepare``): each one
written to a temporary folder, with ONNX Runtime's logits (1 thread) on the seeded input
as the reference. Every timed process then reads the same file, so both libraries run
the very same bytes, and no process that measures memory has run the quantizer (its
calibration would raise the process's peak memory above what is measured).

What is timed, per model and thread count, each (library, thread count, model) in its own
process (:func:`harness.collect` with ``process_per_item``):

* ``qkernels``: ``Session(model_bytes, num_threads=t).run(None, {"input": x})`` (default
  backends: cpu, then reference);
* ``ort``: ``onnxruntime.InferenceSession`` (CPUExecutionProvider, ``intra_op_num_threads``
  = t, :func:`peers.ort_session`) ``.run(None, {"input": x})``; for an int8
  model ONNX Runtime also times its float32 twin (the float32 target's peer);
* ``openvino`` and ``openvino-f32`` (when ``openvino`` is installed; skipped with a note
  otherwise): its CPU plugin on the same ONNX bytes, one stream of t threads, latency
  hint, its default precision (bf16 on CPUs with AVX512_BF16 or AMX) and
  ``INFERENCE_PRECISION_HINT=f32`` (:func:`peers.openvino_session`); not checked.

Memory, per model and library: the growth of the process's peak resident memory
(``getrusage`` ``ru_maxrss``) from before the model is read to after the timed runs (after a
run of a tiny model of the same kind, a zoo model's narrow twin or a trained model's
:func:`tiny_conv`: the libraries' one-off costs stay out): an
upper bound, which includes the serialized model and the loaded weights; for qkernels
also ``Session.peak_bytes``: the arena of its compiled plan, which holds every input and
intermediate tensor of a run, places reused by liveness.

Before timing, qkernels' logits are compared with ONNX Runtime's: fp32 within
:data:`FP32_RTOL` of the largest ``|logit|`` (else no number is posted and the command
exits with status 1); int8 (information, not a gate): the largest difference in units of
the output's quantization scale (LSB) and whether the argmax agrees. Without
``onnxruntime`` the int8 variant and the ONNX Runtime columns are skipped with a note.
Processes, timing, rounds, idle waits and the JSON report are :mod:`harness`'s
machinery.

Imports neither qkernels nor numpy at module level (:mod:`worker` says why).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from typing import NamedTuple

from . import peers, real_models
from .harness import Suite, Target, busy_mark, cell, collect, format_footer, isa_line, ratio, run_setup, run_worker, \
    select, settings_of
from .timing import measure, worker_problems


class Model(NamedTuple):
    """One benchmark model: a :mod:`zoo` builder, its variant and size."""
    label: str           # e.g. "mobilenet_v2-int8"
    arch: str            # the zoo builder: "mobilenet_v2" or "resnet18"
    variant: str         # "fp32", "int8" / "int8u8" (QDQ_VARIANTS), or an encoder's
    width: float = 1.0
    size: int = 224
    classes: int = 1000
    source: str = ""
    real: str = ""       # a trained model of :mod:`real_models` ("classifier", ...); "": a zoo model
    tokens: int = 0      # an encoder (:func:`encoder.bert_encoder`): its sequence length; 0: an image model
    layers: int = 0      # the encoder's layers, hidden size, heads, vocabulary
    hidden: int = 0
    heads: int = 0
    vocab: int = 0

    @property
    def ops(self) -> None:
        """Operations are not counted: no GOP/s, milliseconds per run."""
        return None

    @property
    def geometry(self) -> str:
        """``224px``, ``w0.5 96px`` or, a trained model, ``48x192``."""
        if self.real:
            return "{}x{}".format(*real_models.SHAPES[self.real])
        if self.tokens:
            return f"{self.layers}x{self.hidden} {self.tokens}t"
        return (f"w{self.width:g} " if self.width != 1.0 else "") + f"{self.size}px"

    @property
    def feed(self) -> str:
        """The name of the model's input (an encoder's first one)."""
        return "input_ids" if self.tokens else "x" if self.real else "input"

    @property
    def twin(self) -> Model:
        """The float32 model this one is made from (itself when float32)."""
        return self._replace(label=f"{self.arch}-fp32", variant="fp32")

    @property
    def warmup(self) -> Model | None:
        """A tiny model of the same graph and variant, run once before the measured
        one: the libraries' one-off costs (imports, thread pools) stay out of its memory
        (None for a trained model: :func:`tiny_conv` at its opset stands in)."""
        if self.tokens:
            return self._replace(label=f"{self.label}-warmup", tokens=8, layers=1, hidden=32, heads=2, vocab=100)
        return None if self.real else self._replace(label=f"{self.label}-warmup", width=0.25, size=32, classes=10)

    def record_fields(self) -> dict:
        """What a timing record says of its model (besides the label)."""
        if self.tokens:
            return {"model": self.arch, "variant": self.variant, "tokens": self.tokens, "layers": self.layers,
                    "hidden": self.hidden, "heads": self.heads, "vocab": self.vocab}
        return {"model": self.arch, "variant": self.variant, "width": self.width, "size": self.size,
                "classes": self.classes}


#: ONNX Runtime's static QDQ models, by their activation type: s8s8 and u8s8 (weights int8
#: per channel in both; u8 activations are the x86 kernels' native operand, s8 ones the
#: form ORT's docs recommend first)
QDQ_VARIANTS = {"int8": "QInt8", "int8u8": "QUInt8"}
VARIANTS = ("fp32", *QDQ_VARIANTS)
#: An encoder's: as built; ONNX Runtime's ``quantize_dynamic`` (s8 weights per channel,
#: activations quantized at run time); float16 by ``qkernels.quant.quantize_model(target="fp16")``.
ENCODER_VARIANTS = ("fp32", "int8dyn", "fp16")
#: The encoders' sequence lengths (batch 1).
ENCODER_TOKENS = (16, 128)


def _variants(arch: str, source: str, width: float = 1.0, size: int = 224) -> tuple[Model, ...]:
    return tuple(Model(f"{arch}-{v}", arch, v, width, size, 1000, source) for v in VARIANTS)


def _encoders(layers: int, hidden: int, heads: int, vocab: int) -> tuple[Model, ...]:
    return tuple(Model(f"encoder_t{t}-{v}", f"encoder_t{t}", v, 1.0, 0, 0,
                       f"BERT-class encoder as a standard opset-17 export ({layers} layers, hidden {hidden}, {heads} "
                       f"heads, vocabulary {vocab}: all-MiniLM-L6-v2's shape; seeded random weights)",
                       tokens=t, layers=layers, hidden=hidden, heads=heads, vocab=vocab)
                 for t in ENCODER_TOKENS for v in ENCODER_VARIANTS)


#: The models of the benchmark, at full size.
MODELS: tuple[Model, ...] = (
    *_variants("mobilenet_v2", "MobileNetV2 1.0, 224x224 (Sandler et al. 2018; torchvision layout)"),
    *_variants("resnet18", "ResNet-18, 224x224 (He et al. 2016; torchvision layout)"),
    *_encoders(6, 384, 12, 30522),
)
#: Trained models as people have them (:mod:`real_models`: PaddleOCR's text-direction
#: classifier, text recogniser and text detector from the ``rapidocr-onnxruntime`` wheel),
#: float32 as shipped and int8 as ONNX Runtime's quantizer makes them (calibrated on
#: drawn text lines); in the suite when downloaded (``python -m qkernels.bench.real_models``),
#: never downloaded by it, never in --quick.
REAL_MODELS: tuple[Model, ...] = tuple(
    Model(f"ppocr_{short}-{v}", f"ppocr_{short}", v, 1.0, 0, 0, f"PaddleOCR {name} (rapidocr-onnxruntime 1.4.4)",
          name)
    for name, short in (("classifier", "cls"), ("recogniser", "rec"), ("detector", "det")) for v in ("fp32", "int8"))
#: ``--quick``: the same graphs, half the channels, 96x96 inputs; encoders of 2 layers, hidden 64.
QUICK_MODELS: tuple[Model, ...] = tuple(m._replace(layers=2, hidden=64, heads=4, vocab=1000) if m.tokens else
                                        m._replace(width=0.5, size=96) for m in MODELS)

#: fp32 check: every qkernels logit within this fraction of max |ONNX Runtime logit|.
FP32_RTOL = 1e-4
#: Calibration inputs of the int8 models (seeded standard normal, like the timed input).
CALIBRATION_INPUTS = 4

#: The targets, checked at the end of every run (reported, never a failure).
TARGET_INT8_OVER_ORT_INT8 = 0.8   # qkernels int8 latency <= 0.8x ONNX Runtime int8
TARGET_INT8_OVER_ORT_FP32 = 0.5   # qkernels int8 latency <= 0.5x ONNX Runtime float32

LIBS = ("qkernels", "ort", "openvino", "openvino-f32")
OP = "run"           # the op of every timing record: one Session.run


def models(labels=None, quick: bool = False) -> list[Model]:
    """The models named by ``labels`` (all when None), small ones with ``quick``; the
    trained ones (:data:`REAL_MODELS`) when their files are in the cache."""
    table = QUICK_MODELS if quick else MODELS + tuple(m for m in REAL_MODELS if real_models.cached(m.real))
    return select(table, [m.label for m in table], labels, quick, what="model")


# ---------------------------------------------------------------- models, inputs, checks

def model_input(model: Model, seed: int = 0, k: int = 0):
    """The seeded float32 input (1, 3, size, size): ``k`` = 0 the timed one, 1.. calibration;
    a trained model's: a drawn text line or page (:func:`real_models.samples`)."""
    import numpy as np
    if model.real:
        return real_models.samples(model.real, 1, seed=seed * 1000 + k)
    rng = np.random.default_rng([seed, k, model.size])
    return rng.standard_normal((1, 3, model.size, model.size)).astype(np.float32)


def feeds(model: Model, seed: int = 0, k: int = 0) -> dict:
    """The model's seeded input feeds (``k`` = 0 the timed ones, 1.. calibration): an
    encoder's token ids, mask and types (:func:`encoder.encoder_inputs`, batch 1, all
    attended), else ``{feed: model_input(...)}``."""
    if model.tokens:
        from .encoder import encoder_inputs
        return encoder_inputs(1, model.tokens, model.vocab, seed=seed * 1000 + k)
    return {model.feed: model_input(model, seed, k)}


def build(model: Model, seed: int = 0):
    """The float32 onnx.ModelProto of ``model`` (its zoo builder, weights seeded by ``seed``;
    a trained model's file as shipped)."""
    if model.real:
        import onnx
        return onnx.load(str(real_models.CACHE / real_models.MODELS[model.real]))
    if model.tokens:
        from .encoder import bert_encoder
        return bert_encoder(model.layers, model.hidden, model.heads, vocab=model.vocab, seed=seed)
    from . import zoo
    return getattr(zoo, model.arch)(width=model.width, size=model.size, classes=model.classes, seed=seed)


def quantize_int8(proto, model: Model, folder: str, seed: int = 0) -> str:
    """ONNX Runtime's int8 QDQ model of the float32 ``proto``, written to ``folder``:
    ``quant_pre_process``, then ``quantize_static`` (QDQ, s8 weights per channel, s8 or, the
    ``int8u8`` variant, u8 activations) calibrated on :data:`CALIBRATION_INPUTS` seeded inputs. Returns its path."""
    import onnx
    from onnxruntime import quantization as ortq
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(ortq.CalibrationDataReader):
        def __init__(self):
            self.feeds = iter([feeds(model, seed, k) for k in range(1, CALIBRATION_INPUTS + 1)])

        def get_next(self):
            return next(self.feeds, None)

    stem = os.path.join(folder, model.label)
    if any(o.domain in ("", "ai.onnx") and o.version < 13 for o in proto.opset_import):
        from onnx import version_converter   # ORT's quantizer writes invalid QDQ below opset 13: as users must
        proto = version_converter.convert_version(proto, 13)
    onnx.save(proto, stem + ".float.onnx")
    quant_pre_process(stem + ".float.onnx", stem + ".pre.onnx", skip_symbolic_shape=True)   # no sympy needed
    ortq.quantize_static(stem + ".pre.onnx", stem + ".onnx", Reader(), quant_format=ortq.QuantFormat.QDQ,
                         activation_type=getattr(ortq.QuantType, QDQ_VARIANTS.get(model.variant, "QInt8")),
                         weight_type=ortq.QuantType.QInt8, per_channel=True)
    for suffix in (".float.onnx", ".pre.onnx"):
        os.remove(stem + suffix)
    return stem + ".onnx"


def output_scale(proto, output: str = "logits") -> float | None:
    """The scale of the DequantizeLinear that makes ``output`` (None: not quantized)."""
    from onnx import numpy_helper
    inits = {t.name: t for t in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "DequantizeLinear" and output in node.output and node.input[1] in inits:
            return float(numpy_helper.to_array(inits[node.input[1]]).reshape(-1)[0])
    return None


def check_fp32(got, ref, rtol: float = FP32_RTOL) -> dict:
    """Every logit within ``rtol * max |ref|`` of ONNX Runtime's (blocking)."""
    import numpy as np
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if got.shape != ref.shape:
        return {"within_bound": False, "mismatches": int(ref.size), "size": int(ref.size), "blocking": True,
                "error": f"shape {got.shape}, expected {ref.shape}"}
    diff = np.abs(got - ref)
    top = float(np.abs(ref).max()) if ref.size else 0.0
    bad = int(np.count_nonzero(~(diff <= rtol * top)))
    worst = float(diff.max()) if diff.size else 0.0
    return {"within_bound": bad == 0, "mismatches": bad, "size": int(ref.size), "max_abs_diff": worst,
            "max_abs_ref": top, "rel_diff": worst / top if top else worst, "rtol": rtol, "blocking": True}


def max_diff_lsb(a, b, scale: float | None) -> float:
    """The largest ``|a - b|`` in units of ``scale`` (absolute when there is none)."""
    import numpy as np
    diff = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    return float(diff.max() / (scale or 1.0)) if diff.size else 0.0


def compare_int8(got, ref, scale: float | None, qdq=None) -> dict:
    """Dequantized logits against ONNX Runtime's (information, never blocking): the
    largest difference in output LSB (``scale``), the outputs that differ, the argmax;
    with ``qdq`` (ONNX Runtime's logits with its optimizations off: the QDQ model's
    float semantics) the largest difference from those too."""
    import numpy as np
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if got.shape != ref.shape:
        return {"size": int(ref.size), "error": f"shape {got.shape}, expected {ref.shape}", "blocking": False}
    diff = np.abs(got - ref)
    return {"max_abs_diff": float(diff.max()), "output_scale": scale,
            "max_diff_lsb": max_diff_lsb(got, ref, scale) if scale else None,
            "mismatches": int(np.count_nonzero(np.rint(diff / scale) if scale else diff)), "size": int(ref.size),
            "argmax_agrees": bool(got.reshape(got.shape[0], -1).argmax(1).tolist()
                                  == ref.reshape(ref.shape[0], -1).argmax(1).tolist()),
            "qdq_float_max_diff_lsb": max_diff_lsb(got, qdq, scale) if qdq is not None and scale else None,
            "blocking": False}


def compare_embedding(got, ref_fp32, mask, same=None) -> dict:
    """An encoder variant's ``last_hidden_state`` (information, never blocking): the cosine of
    its mean-pooled, normalised sentence embedding (:func:`encoder.sentence_embedding`) to
    the float32 model's (ONNX Runtime's), and with ``same`` (ONNX Runtime's output of the
    same variant) the largest difference from that."""
    import numpy as np

    from .encoder import cosine, sentence_embedding
    got = np.asarray(got, np.float64)
    if got.shape != np.shape(ref_fp32):
        return {"error": f"shape {got.shape}, expected {np.shape(ref_fp32)}", "blocking": False}
    cos = float(cosine(sentence_embedding(got, mask), sentence_embedding(ref_fp32, mask)).min())
    return {"cosine_to_fp32": cos, "finite": bool(np.isfinite(got).all()),
            "max_abs_diff_to_ort": float(np.abs(got - same).max()) if same is not None else None,
            "blocking": False}


def peak_rss_bytes() -> int | None:
    """The peak resident memory of this process so far (``ru_maxrss``), in bytes."""
    try:
        import resource
    except ImportError:   # pragma: no cover - not Unix
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) * (1 if sys.platform == "darwin" else 1024)


# ---------------------------------------------------------------- workers (in their own processes)

class Problem(NamedTuple):
    """A prepared model in a worker: its file, the timed input, ONNX Runtime's logits."""
    model: Model
    path: str
    x: dict                       # the feeds: {"input": float32 (1, 3, size, size)}, an encoder's tokens
    ref: object                   # ONNX Runtime's logits (1 thread), None without it
    output_scale: float | None    # int8: the logits' quantization scale
    ref_qdq: object               # int8: ONNX Runtime's logits, optimizations off (float QDQ)
    warmup: tuple | None          # (path, feeds) of the tiny model run first, None: none
    ref_fp32: object = None       # an encoder variant: ONNX Runtime's output of the float32 model


def _problems(spec: dict):
    import numpy as np

    def make(model: Model, seed: int) -> Problem:
        prep = spec["prepared"][model.label]
        ref, qdq, ref32 = (np.load(prep[k]) if prep.get(k) else None
                           for k in ("reference", "reference_qdq", "reference_fp32"))
        warmup = (prep["warmup"], {model.feed: np.full(TINY_SHAPE, 0.5, np.float32)} if model.real
                  else feeds(model.warmup, seed)) if prep.get("warmup") else None
        return Problem(model, prep["path"], feeds(model, seed), ref, prep.get("output_scale"), qdq, warmup, ref32)

    return worker_problems(spec, Model, make)


def quantize_dynamic(proto, model: Model, folder: str) -> str:
    """ONNX Runtime's ``quantize_dynamic`` of ``proto`` (s8 weights per channel; activations
    quantized at run time), written to ``folder``. Returns its path."""
    import onnx
    from onnxruntime import quantization as ortq
    stem = os.path.join(folder, model.label)
    onnx.save(proto, stem + ".float.onnx")
    ortq.quantize_dynamic(stem + ".float.onnx", stem + ".onnx", per_channel=True, weight_type=ortq.QuantType.QInt8)
    os.remove(stem + ".float.onnx")
    return stem + ".onnx"


def write_model(model: Model, folder: str, seed: int = 0):
    """``model`` written to ``folder`` (float32 as built; int8 quantized by ONNX Runtime,
    :func:`quantize_int8`; int8dyn by its :func:`quantize_dynamic`; fp16 by
    ``qkernels.quant.quantize_model(target="fp16")``): ``(path, proto)``."""
    import onnx
    proto = build(model, seed)
    if model.variant in QDQ_VARIANTS or model.variant == "int8dyn":
        path = (quantize_int8(proto, model, folder, seed) if model.variant in QDQ_VARIANTS
                else quantize_dynamic(proto, model, folder))
        return path, onnx.load(path)
    if model.variant == "fp16":
        from qkernels.quant import quantize_model
        proto = quantize_model(proto, target="fp16", progress=False)
    path = os.path.join(folder, model.label + ".onnx")
    onnx.save(proto, path)
    return path, proto


#: The input of :func:`tiny_conv`'s model.
TINY_SHAPE = (1, 3, 8, 8)


def tiny_conv(feed: str, opset: int, qdq: bool):
    """The warm-up of a trained model (no tiny one of its graph exists): a 3x3
    convolution and Relu of input ``feed`` at the model's ``opset``, its tensors
    quantized QDQ (int8, opset 13 at least) when ``qdq``: so that the one-off costs of
    reading such a model (an older opset's conversion, the int8 kernels' set-up) stay
    out of the trained model's memory, as the zoo models' tiny twins keep theirs."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
    w = np.linspace(-1, 1, 4 * 3 * 3 * 3, dtype=np.float32).reshape(4, 3, 3, 3)
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])
    if not qdq:
        nodes, inits = [helper.make_node("Conv", [feed, "w"], ["c"], pads=[1] * 4),
                        helper.make_node("Relu", ["c"], ["y"])], [numpy_helper.from_array(w, "w")]
    else:
        opset = max(opset, 13)
        inits = [numpy_helper.from_array(np.array(0.02, np.float32), "s"), numpy_helper.from_array(np.int8(0), "z"),
                 numpy_helper.from_array(np.round(w * 127).astype(np.int8), "wq"),
                 numpy_helper.from_array(np.full(4, 1 / 127, np.float32), "ws"),
                 numpy_helper.from_array(np.zeros(4, np.int8), "wz")]
        nodes = [helper.make_node("QuantizeLinear", [feed, "s", "z"], ["xq"]),
                 helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
                 helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=0),
                 helper.make_node("Conv", ["xd", "wd"], ["c"], pads=[1] * 4),
                 helper.make_node("Relu", ["c"], ["r"]),
                 helper.make_node("QuantizeLinear", ["r", "s", "z"], ["rq"]),
                 helper.make_node("DequantizeLinear", ["rq", "s", "z"], ["y"])]
    graph = helper.make_graph(nodes, "warmup", [helper.make_tensor_value_info(feed, TensorProto.FLOAT, TINY_SHAPE)],
                              [out], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def ort_references(data: bytes, model: Model, feeds: dict) -> tuple:
    """ONNX Runtime's logits of the model bytes on 1 thread, and for int8 also with its
    graph optimizations off (the QDQ model's float semantics; None for float32)."""
    ref = peers.ort_session(data, 1, spinning=False).run(None, feeds)[0]
    if model.variant not in QDQ_VARIANTS:
        return ref, None
    return ref, peers.ort_session(data, 1, spinning=False, optimize=False).run(None, feeds)[0]


def _worker_prepare(spec: dict, out: dict) -> None:
    """Build (and quantize) every model into ``spec["workdir"]``, with ONNX Runtime's
    reference logits when it imports; ``out["prepared"]``: per label, what was made."""
    import hashlib

    import numpy as np
    import onnx
    have_ort = peers.have("onnxruntime")
    out["info"] = {"onnx": onnx.__version__}
    out["prepared"] = {}

    for fields in spec["shapes"]:
        model = Model(**fields)
        t0 = time.perf_counter()
        try:
            path, proto = write_model(model, spec["workdir"], spec["seed"])
            if model.variant == "fp16":
                _usable_fp16(path, feeds(model, spec["seed"]), have_ort)
        except Exception as exc:   # noqa: BLE001 - qkernels' fp16 conversion failing is the finding: a note
            if model.variant != "fp16":
                raise
            out["prepared"][model.label] = {"skipped": f"{type(exc).__name__}: {str(exc).strip()[:300]}"}
            continue
        with open(path, "rb") as f:
            data = f.read()
        ops: dict[str, int] = {}
        for node in proto.graph.node:
            ops[node.op_type] = ops.get(node.op_type, 0) + 1
        prep = {"path": path, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "ops": ops,
                "output_scale": output_scale(proto), "reference": None,
                "warmup": write_model(model.warmup, spec["workdir"], spec["seed"])[0] if model.warmup else None}
        if model.real:
            tiny = tiny_conv(model.feed, max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
                             model.variant in QDQ_VARIANTS)
            prep["warmup"] = os.path.join(spec["workdir"], model.label + "-warmup.onnx")
            onnx.save(tiny, prep["warmup"])
        x = feeds(model, spec["seed"])
        ref, qdq = ort_references(data, model, x) if have_ort else (None, None)
        if ref is not None:
            prep["reference"] = path[:-len(".onnx")] + ".logits.npy"
            np.save(prep["reference"], ref)
        if qdq is not None:
            prep["reference_qdq"] = path[:-len(".onnx")] + ".logits_qdq.npy"
            np.save(prep["reference_qdq"], qdq)
            prep["ort_vs_qdq_float_lsb"] = max_diff_lsb(ref, qdq, prep["output_scale"])
        if model.tokens and model.variant != "fp32" and ref is not None:   # the float32 output, and ORT's cosine
            ref32, _ = ort_references(build(model.twin, spec["seed"]).SerializeToString(), model.twin, x)
            prep["reference_fp32"] = path[:-len(".onnx")] + ".fp32.npy"
            np.save(prep["reference_fp32"], ref32)
            prep["ort_cosine_to_fp32"] = compare_embedding(ref, ref32, x["attention_mask"])["cosine_to_fp32"]
        prep["prepare_s"] = round(time.perf_counter() - t0, 3)
        out["prepared"][model.label] = prep


def _usable_fp16(path: str, x: dict, have_ort: bool) -> None:
    """Raise ValueError when the fp16 model is not usable: ONNX Runtime refuses it, or
    qkernels' output of it is not finite."""
    import numpy as np
    with open(path, "rb") as f:
        data = f.read()
    if have_ort:
        try:
            peers.ort_session(data, 1, spinning=False)
        except Exception as exc:  # noqa: BLE001
            raise ValueError(f"ONNX Runtime refuses the model: {str(exc).strip()[:200]}") from None
    from qkernels.graph import Session
    y = Session(data, num_threads=1).run(None, x)[0]
    if not np.isfinite(y).all():
        raise ValueError(f"qkernels' output has {np.count_nonzero(~np.isfinite(y))} non-finite values of {y.size}")


def _timed(problem: Problem, lib: str, threads: int, timing: dict, load, check=None):
    """Read the model, ``load(model_bytes)`` -> ``(run, session)`` (``run(feeds)``: the
    outputs), check the first output with ``check(logits)``, time ``run``: ``(record,
    session)``, the record with the load time and the growth of the peak memory (from
    after a run of the tiny warm-up model, when there is one)."""
    if problem.warmup:
        with open(problem.warmup[0], "rb") as f:
            run, session = load(f.read())
        run(problem.warmup[1])
        del run, session
    before = peak_rss_bytes()
    t0 = time.perf_counter()
    with open(problem.path, "rb") as f:
        run, session = load(f.read())
    load_s = time.perf_counter() - t0
    x = problem.x
    logits = run(x)[0]
    rec = measure(problem.model, lib, OP, threads, timing, lambda: run(x),
                         check(logits) if check else None)
    after = peak_rss_bytes()
    rec.update(load_s=load_s, rss_peak_before=before, rss_peak_after=after,
               rss_growth=after - before if before is not None and after is not None else None)
    return rec, session


#: Operators whose outputs are integers whatever their inputs (a QDQ model's int8 path).
_TO_INTEGER = ("QuantizeLinear", "QLinear", "QGemm", "Integer")


def _plan(session) -> dict:
    """What the runner made of the model: node counts per operator after planning
    (``ops``), those computing on floats (``float_ops``: neither (de)quantization nor
    operators on integers, the type followed from the first input), partitions
    (backend, nodes) and the explanation."""
    graph = getattr(session, "graph", None)
    integer = {name for name, v in getattr(graph, "initializers", {}).items() if v.dtype.kind in "iu"}
    ops: dict[str, int] = {}
    floats: dict[str, int] = {}
    for node in getattr(graph, "nodes", []):
        ops[node.key] = ops.get(node.key, 0) + 1
        if node.op_type == "DequantizeLinear":
            continue
        if any(tag in node.op_type for tag in _TO_INTEGER) or (node.inputs and node.inputs[0] in integer):
            integer.update(node.outputs)
        else:
            floats[node.key] = floats.get(node.key, 0) + 1
    return {"ops": ops, "float_ops": floats if graph is not None else None,
            "partitions": [[backend, len(nodes)] for backend, nodes in session.partitions],
            "explain": session.explain()}


def _worker_qkernels(spec: dict, out: dict) -> None:
    peers.qkernels_setup(spec, out)
    from qkernels.graph import Session
    threads = spec["threads"]

    def load(data):
        s = Session(data, num_threads=threads)
        return (lambda feeds: s.run(None, feeds)), s

    for _, p in _problems(spec):
        def check(logits, p=p):
            if p.ref is None:
                return None
            if p.model.variant == "fp32":
                return check_fp32(logits, p.ref)
            if p.model.tokens:
                return compare_embedding(logits, p.ref_fp32, p.x["attention_mask"], p.ref)
            return compare_int8(logits, p.ref, p.output_scale, p.ref_qdq)

        rec, session = _timed(p, "qkernels", threads, spec["timing"], load, check)
        rec.update(peak_bytes=session.peak_bytes, plan=_plan(session))
        out["results"].append(rec)
        del session


def _worker_openvino(spec: dict, out: dict, lib: str = "openvino") -> None:
    peers.openvino_setup(out)
    threads = spec["threads"]

    def load(data):
        return peers.openvino_session(data, threads, "f32" if lib.endswith("-f32") else None), None

    for _, p in _problems(spec):
        try:
            rec, _ = _timed(p, lib, threads, spec["timing"], load)
        except RuntimeError as exc:   # the plugin refusing a model is the peer's limit, not a failed run
            out["info"][f"refused {p.model.label}"] = str(exc).strip().splitlines()[-1][:200]   # (infos merge by key)
            continue
        out["results"].append(rec)


def _worker_ort(spec: dict, out: dict) -> None:
    peers.ort_setup(out)
    threads = spec["threads"]

    def load(data):
        s = peers.ort_session(data, threads)
        return (lambda feeds: s.run(None, feeds)), s

    for _, p in _problems(spec):
        rec, session = _timed(p, "ort", threads, spec["timing"], load)
        out["results"].append(rec)
        del session


WORKERS = {"prepare": _worker_prepare, "qkernels": _worker_qkernels, "ort": _worker_ort,
           "openvino": _worker_openvino, "openvino-f32": lambda spec, out: _worker_openvino(spec, out, "openvino-f32")}


# ---------------------------------------------------------------- the parent process

def _counts(ops: dict) -> str:
    return ", ".join(f"{op} x{n}" if n > 1 else op for op, n in ops.items()) or "none"


def _mib(b) -> float | None:
    return None if b is None else b / 2 ** 20


def _row(m: Model, recs: dict, find) -> dict:
    """ms of each library (an int8 model's float32 twin on ONNX Runtime too), ratios, memory,
    the check (the model's bytes: :func:`run_bench` adds them)."""
    qk, ort = recs["qkernels"], recs["ort"]
    ort32 = find("ort", OP, m.twin.label) if m.variant != "fp32" else {}
    ms = {col: r["median_s"] * 1e3 if "median_s" in r else None
          for col, r in (("qkernels", qk), ("ort", ort), ("ort-fp32", ort32), ("openvino", recs.get("openvino", {})),
                         ("openvino-f32", recs.get("openvino-f32", {})))}
    plan = qk.get("plan") or {}
    return {"model": m.arch, "variant": m.variant, "geometry": m.geometry, "ms": ms,
            "load_s": {"qkernels": qk.get("load_s"), "ort": ort.get("load_s")},
            "qk_over_ort": ratio(ms["qkernels"], ms["ort"]), "qk_over_ort_fp32": ratio(ms["qkernels"], ms["ort-fp32"]),
            "qk_over_openvino": ratio(ms["qkernels"], ms["openvino"]),
            "qk_over_openvino_f32": ratio(ms["qkernels"], ms["openvino-f32"]),
            "rss_growth": {"qkernels": qk.get("rss_growth"), "ort": ort.get("rss_growth")},
            "peak_bytes": qk.get("peak_bytes"), "check": qk.get("check"),
            "plan_ops": plan.get("ops"), "float_ops": plan.get("float_ops")}


def check_cell(check) -> str:
    """fp32: ``ok 3.1e-06`` (largest difference over max |logit|) or ``WRONG``; int8:
    ``3 LSB =`` (largest difference in output LSB, ``=``/``!=``: argmax agrees or not)."""
    if not check:
        return "-"
    if "within_bound" in check:
        rel = check.get("rel_diff")
        return ("ok" if check["within_bound"] else "WRONG") + (f" {rel:.1e}" if rel is not None else "")
    if check.get("error"):
        return check["error"]
    if "cosine_to_fp32" in check:
        return f"cos {check['cosine_to_fp32']:.5f}"
    lsb = check.get("max_diff_lsb")
    size = f"{lsb:.0f} LSB" if lsb is not None else f"{check.get('max_abs_diff', 0):.2g}"
    return f"{size} {'=' if check.get('argmax_agrees') else '!='}"


def legend() -> str:
    return ("ms per Session.run (median); qk/ORT, qk/f32: qkernels' time over ONNX Runtime's on the same model "
            "bytes and over ORT's float32 model; OV, OV f32: OpenVINO's CPU plugin on the same bytes, its default "
            "precision (bf16 where the CPU has it) and f32, qk/OVf: qkernels over OV f32; each (library, thread count, model) in its own process. model: "
            "MiB of the .onnx file. RSS+ MiB: growth of the process's peak resident memory (ru_maxrss) from before "
            "reading the model to after the timed runs, an upper bound including the serialized model and the "
            "loaded weights; live: qkernels Session.peak_bytes (its compiled plan's arena: input and intermediates). check: "
            f"fp32 logits within "
            f"{FP32_RTOL:g} x max|logit| of ORT's (ok, largest difference over max|logit|); int8 (information): "
            "largest difference from ORT's logits in output LSB, argmax equal (=) or not (!=); encoders (output "
            "last_hidden_state): fp32 the same gate, int8dyn (ORT quantize_dynamic) and fp16 (qkernels.quant) "
            "the cosine of the mean-pooled sentence embedding to ORT's float32 model's (information)")


def format_table(report: dict) -> str:
    """The human-readable table of a report made by :func:`run_bench`."""
    m = report["machine"]
    peers = (f"ONNX Runtime {m['onnxruntime']} InferenceSession (CPUExecutionProvider); int8: ORT "
             "quant_pre_process + quantize_static, QDQ, s8 activations and weights per channel") \
        if m.get("onnxruntime") else "none (onnxruntime not importable)"
    if m.get("openvino"):
        peers += f"; OpenVINO {m['openvino']} (CPU plugin, ONNX read as it is)"
    lines = [isa_line(m, "whole-model"), f"peers: {peers}", legend(), ""]
    hdr = (f"{'model':<14}{'variant':<8}{'input':<11}{'thr':>3}{'qkernels':>10}{'ORT':>9}{'qk/ORT':>8}"
           f"{'ORT f32':>9}{'qk/f32':>8}{'OV':>8}{'OV f32':>8}{'qk/OVf':>8}"
           f"{'model':>7}{'RSS+ qk':>9}{'RSS+ ORT':>9}{'live qk':>9}  check")
    lines += [hdr, "-" * len(hdr)]
    for r in report["rows"]:
        ms, rss = r["ms"], r["rss_growth"]
        lines.append(f"{r['model']:<14}{r['variant']:<8}{r['geometry']:<11}{r['threads']:>3}"
                     + cell(ms["qkernels"], "{:.2f}", 10) + cell(ms["ort"], "{:.2f}", 9)
                     + cell(r["qk_over_ort"], "{:.2f}", 8) + cell(ms["ort-fp32"], "{:.2f}", 9)
                     + cell(r["qk_over_ort_fp32"], "{:.2f}", 8) + cell(ms.get("openvino"), "{:.2f}", 8)
                     + cell(ms.get("openvino-f32"), "{:.2f}", 8) + cell(r.get("qk_over_openvino_f32"), "{:.2f}", 8)
                     + cell(_mib(r["model_bytes"]), "{:.1f}", 7)
                     + cell(_mib(rss["qkernels"]), "{:.1f}", 9)
                     + cell(_mib(rss["ort"]), "{:.1f}", 9) + cell(_mib(r["peak_bytes"]), "{:.2f}", 9)
                     + f"  {check_cell(r['check'])}" + busy_mark(r))
    return "\n".join(lines + format_footer(report))


def _int8_notes(rows: list[dict], prepared: dict) -> list[str]:
    """Per int8 model (its first row): qkernels' plan, what stayed float, and its logits
    beside ONNX Runtime's int8 and beside the float QDQ semantics."""
    notes, seen = [], set()
    for r in rows:
        if r["variant"] == "fp32" or not r["plan_ops"] or r["shape"] in seen:
            continue
        seen.add(r["shape"])
        prep = prepared.get(r["shape"], {})
        made = prep.get("ops") or {}
        notes.append(f"qkernels plan of {r['shape']} ({sum(made.values())} nodes as quantized: "
                     f"{_counts(made)}): {_counts(r['plan_ops'])}; on floats: {_counts(r['float_ops'] or {})}")
        c = r["check"] or {}
        if c.get("cosine_to_fp32") is not None:
            ort_cos = prep.get("ort_cosine_to_fp32")
            notes.append(f"{r['shape']} ({r['threads']} thr): cosine of the sentence embedding to the float32 "
                         f"model's: qkernels {c['cosine_to_fp32']:.6f}, ORT on the same bytes "
                         f"{cell(ort_cos, '{:.6f}', 0)}; largest |qkernels - ORT| "
                         f"{cell(c.get('max_abs_diff_to_ort'), '{:.3g}', 0)}")
        if c.get("max_diff_lsb") is not None:
            qdq, ort_qdq = (cell(x, "{:.0f}", 0) for x in (c.get("qdq_float_max_diff_lsb"),
                                                            prep.get("ort_vs_qdq_float_lsb")))
            notes.append(f"int8 logits of {r['shape']} ({r['threads']} thr), largest differences in output LSB: "
                         f"qkernels vs ORT int8 {c['max_diff_lsb']:.0f} (argmax "
                         f"{'the same' if c.get('argmax_agrees') else 'differs'}), qkernels vs the float QDQ "
                         f"semantics (ORT with graph optimizations off) {qdq}, ORT int8 vs that {ort_qdq}")
    return notes


def run_bench(model_list, threads_list, *, quick: bool = False, rounds: int = 1, isa: str | None = None,
              seed: int = 0, libs=LIBS, progress=None, wait_idle_s: float = 0.0, timing: dict | None = None,
              process_per_model: bool | None = None) -> dict:
    """Prepare the models, then run every (library, thread count, model) worker ``rounds``
    times; return the report dict (``timing``: overrides the quick/full batch settings).
    ``process_per_model`` (default: not ``quick``): each model in a process of its own;
    else the models of a (library, thread count) share one, which keeps ``--quick`` (CI's
    smoke run) short, and their memory growth is not reported (a process's peak only grows)."""
    if process_per_model is None:
        process_per_model = not quick
    timing, notes, libs = run_setup(quick, libs, timing)
    if any(lib.startswith("openvino") for lib in libs) and not peers.have("openvino"):
        libs = [lib for lib in libs if not lib.startswith("openvino")]
        notes.append("OpenVINO columns skipped: openvino is not installed (pip install openvino)")
    if not peers.have("onnxruntime"):
        skipped = [m.label for m in model_list if m.variant != "fp32"]
        model_list = [m for m in model_list if m.variant == "fp32"]
        notes.append("fp32 logits not checked (no ONNX Runtime reference)")
        if skipped:
            notes.append(f"int8 models skipped ({', '.join(skipped)}): onnxruntime quantizes them "
                         "(pip install onnxruntime)")
    by_label = {m.label: m for m in model_list}
    ort_list = list(by_label.values()) + [m.twin for m in model_list if m.twin.label not in by_label]
    prepared: dict = {}
    failed = False
    with tempfile.TemporaryDirectory(prefix="qkernels-bench-models-") as workdir:
        if model_list:
            if progress:
                progress("preparing the models (int8: ONNX Runtime quantize_static) ...")
            try:
                prepared = run_worker("prepare", 1, ort_list if "ort" in libs else model_list, timing,
                                      module=SUITE.name, seed=seed, workdir=workdir)["prepared"]
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                notes.append(f"preparing the models failed: {exc}")
                failed = True
        for label in [k for k, p in prepared.items() if p.get("skipped")]:
            notes.append(f"{label} skipped: qkernels.quant.quantize_model(target=\"fp16\") did not give a usable "
                         f"model: {prepared.pop(label)['skipped']}")
            model_list = [m for m in model_list if m.label != label]
            ort_list = [m for m in ort_list if m.label != label]
        extra = {lib: (ort_list if lib == "ort" else model_list, {"prepared": prepared}) for lib in libs}
        got = collect(SUITE.name, libs if prepared else [], model_list, threads_list, timing=timing,
                      rounds=rounds, isa=isa, seed=seed, progress=progress, wait_idle_s=wait_idle_s,
                      extra_by_lib=extra, process_per_item=process_per_model)
        got["failed"] = got["failed"] or failed
    for lib in ("openvino", "openvino-f32"):
        info = got["infos"].get(lib, {})
        for key in [k for k in info if k.startswith("refused ")]:
            notes.append(f"{lib} did not compile {key.split(' ', 1)[1]}: {info.pop(key)}")
    settings = settings_of("models", model_list, threads_list, quick=quick, rounds=rounds, wait_idle_s=wait_idle_s,
                           timing=timing, seed=seed, isa=isa, fp32_rtol=FP32_RTOL,
                           calibration_inputs=CALIBRATION_INPUTS, process_per_model=process_per_model)
    report = SUITE.report(got, model_list, threads_list, notes, settings,
                          models=[dict(m._asdict(), geometry=m.geometry) for m in model_list],
                          prepared={k: {f: v for f, v in p.items() if f not in ("path", "reference", "reference_qdq",
                                                                               "warmup")}
                                    for k, p in prepared.items()})
    for r in report["rows"]:
        r["model_bytes"] = prepared.get(r["shape"], {}).get("bytes")
        if not process_per_model:
            r["rss_growth"] = {lib: None for lib in r["rss_growth"]}
    if not process_per_model and report["rows"]:
        report["notes"].append("the models of a library and thread count ran in one process: memory growth "
                               "(RSS+) not reported")
    report["notes"][len(notes):len(notes)] = _int8_notes(report["rows"], prepared)   # before collect's notes
    return report


SUITE = Suite("models", {"qkernels": ("qkernels", OP), "ort": ("ort", OP), "openvino": ("openvino", OP),
                         "openvino-f32": ("openvino-f32", OP)}, _row, tuple(
    Target(key, need, f"int8 latency <= {need:g}x {what}", when=lambda r: r["variant"] in QDQ_VARIANTS,
           at_most=True)
    for key, need, what in (("qk_over_ort", TARGET_INT8_OVER_ORT_INT8, "ONNX Runtime int8"),
                            ("qk_over_ort_fp32", TARGET_INT8_OVER_ORT_FP32, "ONNX Runtime float32"))),
    models, run_bench, format_table)
