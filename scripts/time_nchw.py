"""conv2d called with NCHW against the same call with NHWC, on the conv suite's layers
(bench/conv.py), with the former NCHW path (numpy's transposing copies around the NHWC
call) timed in the same run: docs/performance.md, "Layout conversion".

    OPENBLAS_NUM_THREADS=1 QKERNELS_NUM_THREADS=1 python scripts/time_nchw.py [layer ...]

The three calls are interleaved (7 rounds of 9 x 20 calls each), so they share the
machine's noise; medians and minimums per call are printed.
"""
import sys
import time
from pathlib import Path

import numpy as np

import qkernels as qk

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # the checkout's bench/
from bench.conv import LAYERS, make_problem  # noqa: E402

DEFAULT = ("resnet-3x3-56", "mnv2-pw-56", "mnv2-dw-112", "mnv2-dw-56s2")


def per_call(call, rounds=9, inner=20) -> list[float]:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(inner):
            call()
        times.append((time.perf_counter() - t) / inner)
    return times


def main(labels) -> None:
    print(f"ISA {qk.get_isa()}, {qk.get_num_threads()} thread(s); per call, us: median | min")
    for label in labels:
        layer = next(x for x in LAYERS if x.label == label)
        p = make_problem(layer)
        packed = qk.pack_conv_weights(qk.QTensor(p.w, p.sw, 0, axis=0), groups=layer.c if layer.depthwise else 1,
                                      bias=p.b)
        kw = dict(stride=layer.stride, padding=layer.pads, out_scale=p.sy, out_zero_point=p.zy, out_dtype=np.int8)
        oh = layer.out_hw
        x_nchw = np.ascontiguousarray(p.x.transpose(0, 3, 1, 2))
        xh, xc = qk.QTensor(p.x, p.sa, p.za), qk.QTensor(x_nchw, p.sa, p.za)
        yh, yc = np.empty((1, oh, oh, layer.o), np.int8), np.empty((1, layer.o, oh, oh), np.int8)
        tmp, y_old = np.empty_like(yh), np.empty_like(yc)

        def old():   # the NCHW call before the native transposes
            xt = qk.QTensor(np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1)), p.sa, p.za)
            qk.conv2d(xt, packed, out=tmp, **kw)
            y_old[...] = tmp.transpose(0, 3, 1, 2)

        calls = {"NHWC": lambda: qk.conv2d(xh, packed, out=yh, **kw),
                 "NCHW": lambda: qk.conv2d(xc, packed, layout="NCHW", out=yc, **kw), "old NCHW": old}
        for call in calls.values():
            call()
        if not (np.array_equal(yh.transpose(0, 3, 1, 2), yc) and np.array_equal(y_old, yc)):
            raise SystemExit(f"{label}: NCHW and NHWC results differ")
        times = {name: [] for name in calls}
        for _ in range(7):
            for name, call in calls.items():
                times[name] += per_call(call)
        med = {k: float(np.median(v)) * 1e6 for k, v in times.items()}
        low = {k: float(np.min(v)) * 1e6 for k, v in times.items()}
        print(f"{label:14s} " + "  ".join(f"{k} {med[k]:7.1f} | {low[k]:7.1f} ({med[k] / med['NHWC']:4.2f}x)"
                                         for k in calls), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or DEFAULT)
