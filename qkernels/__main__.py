"""Command line: ``python -m qkernels info``, ``bench``, ``run`` (an ONNX or TFLite model on the graph runner),
``demo``, ``quantize`` (a float ONNX model to int8 QDQ) and ``report`` (a saved quantization report's tables)."""
from __future__ import annotations

import argparse
import contextlib
import glob
import json
import math
import os
import re
import sys
import zipfile


class _Parser(argparse.ArgumentParser):
    def error(self, message):   # one line, like the commands' own errors: --help has the usage
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _cosine_budget(text: str):
    """--min-cosine: 'auto', 'none' or a number (range checked by quantize_model)."""
    if text.lower() in ("auto", "none"):
        return None if text.lower() == "none" else "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a cosine, 'auto' or 'none', got {text!r}") from None


def _number(kind, lo, hi=math.inf):
    """An argparse type: a finite ``kind(text)`` from ``lo`` to ``hi``."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and lo <= value <= hi):
            what = "an integer" if kind is int else "a number"
            bounds = f">= {lo}" if hi == math.inf else f"from {lo} to {hi}"
            raise argparse.ArgumentTypeError(f"expected {what} {bounds}, got {text!r}")
        return value
    return parse


def _threads(text):
    from . import MAX_THREADS   # the library's own limit, checked here before any work
    return _number(int, 1, MAX_THREADS)(text)


def _cannot_write(path: str, folder: bool = False) -> str | None:
    """Why ``path`` cannot be written (None when it can), found by trying (permission bits
    say nothing to root or on a read-only mount): every output is checked before the work,
    so a typo fails at once, not after minutes of calibration or timing."""
    try:
        if folder:
            if os.path.lexists(path) and not os.path.isdir(path):
                return "it exists and is not a folder"
            os.makedirs(path, exist_ok=True)
            import tempfile
            tempfile.TemporaryFile(dir=path).close()
            return None
        existed = os.path.lexists(path)
        # append, never truncate: a file that exists keeps its content until the real write
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NONBLOCK, 0o666))
        if not existed:
            os.unlink(path)
    except (OSError, ValueError) as exc:   # ValueError: a NUL in the path
        return getattr(exc, "strerror", None) or str(exc)
    return None


def _npy_name(name: str) -> str:
    """The file name of output ``name`` under --output-dir. ONNX names may hold "/" (as
    TensorFlow's "scope/op:0" do): such characters become "_" rather than refusing the model
    or writing outside the folder; with ".npy" added no name can be "." or ".."."""
    return re.sub(r"[/\\\x00-\x1f]", "_", name) + ".npy"


def _info(args) -> int:
    from . import cpu_info
    info = cpu_info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    feats = ", ".join(k for k, v in info["features"].items() if v) or "none"
    print(f"architecture      {info['arch']}")
    print(f"CPU features      {feats}")
    print(f"ISA paths here    {', '.join(info['isas_available'])}")
    if info["isas_emulated"]:
        print(f"test paths        {', '.join(info['isas_emulated'])} (VNNI kernels, AVX-512/VNNI emulated in AVX2)")
    print(f"ISA path used     {info['isa']}{' (forced by QKERNELS_ISA)' if info['forced_by_env'] else ''}")
    print(f"int8 GEMM kernels {', '.join(info['gemm_kernels'])}")
    print(f"threads           {info['num_threads']}")
    return 0


def _bench(args) -> int:
    import importlib
    return importlib.import_module(f".bench.{args.suite}", __package__).SUITE.cli(args)


def _run(args) -> int:
    import time

    import numpy as np

    from .graph import ModelError, RunError, Session
    feeds = {}
    for item in args.input or []:
        name, sep, path = item.partition("=")
        if not sep:
            print(f"qkernels run: --input takes NAME=FILE.npy, got {item!r}", file=sys.stderr)
            return 2
        if name in feeds:
            print(f"qkernels run: --input {name!r} is given twice", file=sys.stderr)
            return 2
        try:
            feeds[name] = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            print(f"qkernels run: cannot load {path!r}: {exc}", file=sys.stderr)
            return 2
        if not isinstance(feeds[name], np.ndarray):
            feeds[name].close()
            print(f"qkernels run: {path!r} is a .npz archive; --input takes one .npy array", file=sys.stderr)
            return 2
    try:
        session = Session(args.model, backends=args.backend or None, num_threads=args.threads)
        if args.explain:
            print(session.explain())
        if not feeds and session.get_inputs():
            if not args.explain:
                print("inputs: " + ", ".join(f"{i.name} {i.dtype} {i.shape}" for i in session.get_inputs()))
            return 0
        names = [info.name for info in session.get_outputs()]
        owner = {}   # file name -> the output saved there
        for name in names if args.output_dir else ():
            clash = owner.setdefault(_npy_name(name), name)
            if clash != name:
                print(f"qkernels run: outputs {clash!r} and {name!r} would both be saved as "
                      f"{_npy_name(name)!r} in --output-dir", file=sys.stderr)
                return 2
        t0 = time.perf_counter()
        outputs = session.run(None, feeds)
        dt = time.perf_counter() - t0
        if args.profile:   # a second run, timed per node: the first one packed and warmed up
            session.run(None, feeds, profile=True)
    except (ModelError, RunError, ValueError, TypeError) as exc:
        print(f"qkernels run: {exc}", file=sys.stderr)
        return 1
    for name, value in zip(names, outputs) if args.output_dir else ():   # saved first: stdout may close
        try:
            np.save(os.path.join(args.output_dir, _npy_name(name)), value)
        except OSError as exc:   # checked before the run, yet a disk can fill up
            print(f"qkernels run: cannot write: {exc}", file=sys.stderr)
            return 1
    for name, value in zip(names, outputs):
        renamed = args.output_dir and _npy_name(name) != f"{name}.npy"
        print(f"{name}: {value.dtype} {value.shape}" + (f" (saved as {_npy_name(name)})" if renamed else ""))
    print(f"run: {dt * 1e3:.2f} ms, peak intermediate memory {session.peak_bytes / 2**20:.2f} MiB")
    if args.profile:
        print(session.format_profile())
    return 0


def _demo(args) -> int:
    from .demo import run_demo
    try:
        run_demo(out=args.out, method=args.method, threads=args.threads, with_ort=not args.no_ort,
                 progress=not args.quiet)
    except (OSError, ValueError) as exc:   # an unwritable --out, an unknown --method
        print(f"qkernels demo: {exc}", file=sys.stderr)
        return 1
    return 0


def _quantize(args) -> int:
    import onnx

    from .graph import ModelError
    from .quant import CalibrationError, quantize_model
    from .quant.data import BATCH_SIZE
    from .quant.report import format_report, format_summary, plot_report, save_report
    from .quant.cluster import dask_client
    from .quant.data import Shards
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("qkernels quantize: --plot needs matplotlib, which is not installed: "
                  "pip install 'qkernels[plot]'", file=sys.stderr)
            return 2
    distributed = args.scheduler is not None or args.workers is not None
    if args.scheduler is not None and args.workers is not None:
        print("qkernels quantize: give --scheduler (a running cluster) or --workers (a local one), not both",
              file=sys.stderr)
        return 2
    try:
        calib = args.calib
        if calib is not None and (distributed or glob.has_magic(calib)):   # a shard per file
            calib = Shards(calib, args.batch_size or BATCH_SIZE)   # a pattern's or a folder's files, or the file
        with dask_client(args.scheduler, args.workers) if distributed else contextlib.nullcontext() as client:
            model, report = quantize_model(args.model, calib, target=args.target, method=args.method,
                                           per_channel=not args.per_tensor, reduce_range=args.reduce_range,
                                           exclude_nodes=args.exclude or (), progress=not args.quiet,
                                           bias_correction=args.bias_correction, equalize=args.equalize,
                                           batch_size=args.batch_size,
                                           return_report=True, measure=bool(args.report or args.plot),
                                           keep_float=args.keep_float, min_sqnr_db=args.min_sqnr_db, client=client,
                                           mode=args.mode, min_cosine=args.min_cosine,
                                           outlier_layers=args.outlier_layers, smooth_quant=args.smooth_quant)
    except ImportError as exc:
        print(f"qkernels quantize: {exc}", file=sys.stderr)
        return 2
    except (ModelError, CalibrationError, ValueError, OSError) as exc:
        print(f"qkernels quantize: {exc}", file=sys.stderr)
        return 1
    try:   # the files first: a closed stdout must not lose them
        onnx.save(model, args.output)
        if args.report:
            save_report(report, args.report)
        if args.plot:
            plot_report(report, args.plot)
    except OSError as exc:   # checked before the work, yet a disk can fill up
        print(f"qkernels quantize: cannot write: {exc}", file=sys.stderr)
        return 1
    if args.report:
        print(format_summary(report))
        print(f"every table: qkernels report {args.report}")
    elif args.plot:
        print(format_report(report))
    else:
        print(f"quantized {sum(la.get('quantized', True) for la in report.get('layers', []))} layers ({report.get('target')}, {report.get('method')} "
              f"calibration); kept in float: {', '.join(report.get('float_nodes', [])) or 'none'}. "
              "--report FILE measures SQNR per tensor and layer against float")
    if args.report:
        print(f"wrote the report {args.report}")
    if args.plot:
        print(f"wrote the plot {args.plot}")
    print(f"wrote {args.output}")
    return 0


def _report(args) -> int:
    from .quant.report import format_report, load_report
    try:
        report = load_report(args.report)
        text = format_report(report)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        print(f"qkernels report: cannot read {args.report!r} as a quantization report: {exc}", file=sys.stderr)
        return 1
    print(text)
    return 0


def main(argv=None) -> int:
    from . import SUPPORTED_ISAS
    from .bench import SUITES
    parser = _Parser(prog="qkernels", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="CPU features and the kernel path in use")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=_info)
    p = sub.add_parser("bench", help="int8 GEMM (or convolution, fp16 GEMM, quantize/dequantize, whole models) "
                                     "speed beside numpy float32, ONNX Runtime (and XNNPACK, numpy float16)")
    p.add_argument("--suite", choices=SUITES, default="gemm",
                   help="gemm: int8 GEMM shapes (default); conv: convolution layers (qkernels.bench.conv.LAYERS); "
                        "f16: fp16 (and fp32) GEMM on the GEMM shapes beside numpy float32 and float16; quant: quantize and "
                        "dequantize of activations and weights (qkernels.bench.quant.CASES) in Gelem/s; models: "
                        "MobileNetV2 and ResNet-18, float32 and int8, and the trained PaddleOCR models once "
                        "downloaded (python -m qkernels.bench.real_models), on the graph runner beside ONNX Runtime "
                        "and OpenVINO (latency and memory); tflite_models: the .tflite models of --tflite-dir "
                        "(default bench/tflite) beside LiteRT with XNNPACK and its built-in kernels")
    p.add_argument("--quick", action="store_true", help="fewer shapes and repeats (--suite models: small models)")
    p.add_argument("--threads", type=_threads, nargs="*", help="thread counts (default: 1 and all)")
    p.add_argument("--json", metavar="PATH", help="save the results as JSON")
    p.add_argument("--compare", metavar="BASELINE",
                   help="compare with a saved --json report of the same suite; exit status 3 when a qkernels "
                        "measurement regressed beyond the threshold its run-to-run noise justifies")
    p.add_argument("--plot", metavar="IMAGE", help="bar chart of qkernels' speed-ups over its peers "
                                                   "(.png, .svg, .pdf; needs matplotlib: qkernels[plot])")
    p.add_argument("--shapes", nargs="+", metavar="LABEL",
                   help="shape labels (qkernels.bench.gemm.SHAPES; --suite f16: qkernels.bench.f16.SHAPES), "
                        "layer labels with --suite conv, case labels with --suite quant, model labels with "
                        "--suite models "
                        "(qkernels.bench.models.MODELS and REAL_MODELS, e.g. mobilenet_v2-int8, ppocr_rec-fp32)")
    p.add_argument("--rounds", type=_number(int, 1), default=1, help="repeat every process this many times (median)")
    p.add_argument("--isa", choices=SUPPORTED_ISAS,
                   help="force the qkernels ISA path (QKERNELS_ISA) in the timed process")
    p.add_argument("--wait-idle", type=_number(float, 0), metavar="S",
                   help="before each process wait up to S s for an idle CPU")
    p.add_argument("--tflite-dir", metavar="DIR",
                   help="--suite conv, gemm and tflite_models: folder of the .tflite models (default: bench/tflite "
                        "here, else in the source checkout)")
    p.set_defaults(func=_bench, outputs=("json", "plot"))
    p = sub.add_parser("run", help="run an ONNX or TFLite model on the graph runner")
    p.add_argument("model", help="the .onnx or .tflite file")
    p.add_argument("--input", action="append", metavar="NAME=FILE.npy", help="an input (repeat for each)")
    p.add_argument("--explain", action="store_true",
                   help="print the plan: partitions, their backends, and which nodes run on qkernels' native "
                        "kernels, numpy code or the numpy reference")
    p.add_argument("--profile", action="store_true",
                   help="run once more timing every node: time per operator and placement, the slowest nodes")
    p.add_argument("--backend", action="append", metavar="NAME",
                   help="preferred backend (repeatable; cpu and reference are the fallbacks)")
    p.add_argument("--threads", type=_threads, help="kernel threads")
    p.add_argument("--output-dir", metavar="DIR", help="save each output as DIR/<name>.npy (characters that "
                                                       "break a path, such as /, become _)")
    p.set_defaults(func=_run, folders=("output_dir",))
    p = sub.add_parser("demo", help="the main job: quantize the shipped digits CNN, compare float and int8")
    p.add_argument("--out", default="digits_cnn_int8.onnx", help="where to write the quantized model")
    p.add_argument("--method", default="auto", help="calibration: auto (default: per tensor the best of minmax, "
                                                   "percentile, entropy, mse), minmax, moving_average, percentile, "
                                                   "entropy, mse")
    p.add_argument("--threads", type=_threads, help="kernel threads")
    p.add_argument("--no-ort", action="store_true", help="leave out ONNX Runtime's columns")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_demo, outputs=("out",))
    p = sub.add_parser("quantize", help="post-training quantization of a float ONNX model (QDQ output)")
    p.add_argument("model", help="the float .onnx file")
    p.add_argument("output", help="the quantized .onnx file to write")
    p.add_argument("--calib", help="calibration data: a .npz (input name -> array) or .npy file, a folder of "
                                    "them or a glob pattern ('data/*.npz', quoted); fed --batch-size samples at a "
                                    "time along the leading axis")
    p.add_argument("--batch-size", type=_number(int, 1), metavar="N",
                   help="samples per calibration batch (default 32)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run every pass over the calibration data on a Dask cluster (tcp://host:8786), a shard per "
                        "--calib file (a glob pattern such as 'data/*.npz', or a folder): the same model as in one "
                        "process (needs pip install 'qkernels[distributed]')")
    p.add_argument("--workers", type=_number(int, 1), metavar="N",
                   help="the same on a local Dask cluster of N worker processes (one thread each)")
    p.add_argument("--target", default="cpu", choices=("cpu", "dsp", "fp16"),
                   help="cpu: int8 activations and per-channel int8 weights (default); dsp: symmetric int8 with "
                        "power-of-two scales (fixed-point requantization); fp16: float16, no calibration")
    p.add_argument("--method", default="auto",
                   help="calibration: auto (default: per tensor, the range of minmax, percentile, entropy or mse "
                        "that least disturbs the nodes reading it), minmax, moving_average, percentile, entropy, mse")
    p.add_argument("--per-tensor", action="store_true", help="one weight scale per tensor, not per channel")
    p.add_argument("--reduce-range", action="store_true", help="7-bit grids (ONNX Runtime's reduce_range)")
    p.add_argument("--exclude", action="append", metavar="NODE",
                   help="a node to keep in float, by the name the report shows (repeat for more; an unknown name "
                        "is an error that lists the nearest ones)")
    p.add_argument("--keep-float", type=_number(int, 0), default=0, metavar="N",
                   help="keep in float the N layers whose quantization alone costs the outputs most (measured "
                        "on the first calibration samples)")
    p.add_argument("--min-sqnr-db", type=_number(float, -math.inf), metavar="X",
                   help="keep layers in float, costliest first, until the outputs' SQNR against float is at "
                        "least X dB")
    p.add_argument("--mode", default="static", choices=("static", "dynamic"),
                   help="static: calibrated QDQ (default); dynamic: int8 weights, activations quantized at run "
                        "time (ONNX Runtime's quantize_dynamic form; no --calib needed)")
    p.add_argument("--min-cosine", type=_cosine_budget, default="auto", metavar="C",
                   help="static: layers leave static int8 (dynamic first, then float), costliest first, until the "
                        "outputs' cosine to float is at least C; 'auto' (default): 0.99 on transformers, none "
                        "elsewhere; 'none': plain static")
    p.add_argument("--outlier-layers", default="dynamic", choices=("dynamic", "float"),
                   help="what the --min-cosine budget turns layers into (default dynamic)")
    p.add_argument("--smooth-quant", type=_number(float, 0.0), metavar="ALPHA",
                   help="SmoothQuant: migrate activation scale into the next MatMul's weights (alpha in 0..1)")
    p.add_argument("--bias-correction", action="store_true",
                   help="correct each layer's bias for the mean error of its weight quantization")
    p.add_argument("--equalize", action="store_true",
                   help="cross-layer equalisation of Conv -> [Relu] -> Conv pairs before calibration")
    p.add_argument("--report", metavar="JSON", help="measure and save the report (per tensor, weight, layer, "
                                                    "output) as JSON and print its summary (qkernels report FILE "
                                                    "prints every table; the measuring pass runs only with "
                                                    "--report or --plot)")
    p.add_argument("--plot", metavar="IMAGE", help="plot SQNR per tensor (.png, .svg, .pdf; needs matplotlib)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_quantize, outputs=("output", "report", "plot"))
    p = sub.add_parser("report", help="print every table of a quantization report saved by quantize --report")
    p.add_argument("report", help="the report's .json file")
    p.set_defaults(func=_report)
    args = parser.parse_args(argv)
    outputs = [(getattr(args, dest), False) for dest in getattr(args, "outputs", ())] + \
        [(getattr(args, dest), True) for dest in getattr(args, "folders", ())]
    for path, folder in outputs:
        problem = path and _cannot_write(path, folder)
        if problem:
            print(f"qkernels {args.command}: cannot write {path!r}: {problem}", file=sys.stderr)
            return 2
    try:
        return args.func(args)
    except KeyboardInterrupt:   # Ctrl-C: a line, not a traceback
        print(f"qkernels {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:     # stdout closed early (| head): end quietly, as Python's docs advise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
