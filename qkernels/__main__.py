"""Command line: ``python -m qkernels info`` and ``python -m qkernels bench``."""
from __future__ import annotations

import argparse
import json
import sys


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
    print(f"ISA path used     {info['isa']}{' (forced by QKERNELS_ISA)' if info['forced_by_env'] else ''}")
    print(f"int8 GEMM kernels {', '.join(info['gemm_kernels'])}")
    print(f"threads           {info['num_threads']}")
    return 0


def _bench(args) -> int:
    import importlib
    module = {"gemm": "bench", "conv": "bench_conv", "f16": "bench_f16"}[args.suite]
    return importlib.import_module(f".{module}", __package__).run_cli(args)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="qkernels", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="CPU features and the kernel path in use")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=_info)
    p = sub.add_parser("bench", help="int8 GEMM (or convolution, or fp16 GEMM) speed beside numpy float32, "
                                     "ONNX Runtime (and XNNPACK, numpy float16)")
    p.add_argument("--suite", choices=("gemm", "conv", "f16"), default="gemm",
                   help="gemm: int8 GEMM shapes (default); conv: convolution layers (qkernels.bench_conv.LAYERS); "
                        "f16: fp16 GEMM on the GEMM shapes beside numpy float32 and float16")
    p.add_argument("--quick", action="store_true", help="fewer shapes and repeats")
    p.add_argument("--threads", type=int, nargs="*", help="thread counts (default: 1 and all)")
    p.add_argument("--json", metavar="PATH", help="save the results as JSON")
    p.add_argument("--shapes", nargs="+", metavar="LABEL",
                   help="shape labels (qkernels.bench.SHAPES; --suite f16: qkernels.bench_f16.SHAPES), "
                        "or layer labels with --suite conv")
    p.add_argument("--rounds", type=int, default=1, help="repeat every process this many times (median)")
    p.add_argument("--isa", help="force the qkernels ISA path (QKERNELS_ISA) in the timed process")
    p.add_argument("--wait-idle", type=float, metavar="S", help="before each process wait up to S s for an idle CPU")
    p.add_argument("--tflite-dir", metavar="DIR",
                   help="--suite conv: folder of the XNNPACK .tflite models (default: bench/tflite here, "
                        "else in the source checkout)")
    p.set_defaults(func=_bench)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
