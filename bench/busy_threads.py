"""A whole model's latency at 1 and 2 threads, on a quiet machine and with another
process spinning on one core (docs/performance.md, "Threads on a busy machine");
checkout-only script. Each measurement runs in its own process, so that an
``OMP_WAIT_POLICY`` given in the environment applies to it.

    python bench/busy_threads.py [--model mobilenet_v2|resnet18] [--runs 30]
    OMP_WAIT_POLICY=passive python bench/busy_threads.py
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time


def child(model: str, threads: int, runs: int) -> float:
    import numpy as np

    from qkernels.bench import zoo
    from qkernels.graph import Session
    s = Session(getattr(zoo, model)().SerializeToString(), num_threads=threads)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    for _ in range(3):
        s.run(None, {"input": x})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        s.run(None, {"input": x})
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2] * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="mobilenet_v2", choices=("mobilenet_v2", "resnet18"))
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(child(args.model, args.child, args.runs))
        return

    def measure(threads: int) -> float:
        out = subprocess.run([sys.executable, __file__, "--model", args.model, "--runs", str(args.runs),
                              "--child", str(threads)], capture_output=True, text=True, check=True).stdout
        return float(out.strip().splitlines()[-1])

    for busy in (False, True):
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
        try:
            one, two = measure(1), measure(2)
        finally:
            if spinner:
                spinner.kill()
        print(f"{args.model} {'one core taken' if busy else 'quiet':<15} 1 thread {one:7.2f} ms   "
              f"2 threads {two:7.2f} ms   ({two / one:.2f}x)")


if __name__ == "__main__":
    main()
