"""How much error fp16 accumulation adds: the measurement behind the chunk length of
the FP16-arithmetic GEMM kernel (kernels/neonfp16/f16_gemm_8x8_neonfp16.c).

An ARMv8.2 fp16 FMA rounds once per step to fp16; this script reproduces that exactly
in numpy (the product of two fp16 values and an fp16 partial sum are exact in float64,
so one rounding to float16 per step is the FMA), sums chunks of `kc` steps in fp16 and
the chunks in fp32, and reports the largest error of the fp16 result relative to
sum_k |a_k b_k|, beside fp32 accumulation (the x86 and plain-NEON kernels). Inputs:
standard normal A, B scaled by 1/sqrt(K). Run: python bench/f16_accumulation.py
"""
import numpy as np


def fp16_fma_chunks(a: np.ndarray, b: np.ndarray, kc: int) -> np.ndarray:
    m, k = a.shape
    acc32 = np.zeros((m, b.shape[1]), np.float32)
    for k0 in range(0, k, kc):
        c = np.zeros(acc32.shape, np.float16)
        for kk in range(k0, min(k, k0 + kc)):
            c = (c.astype(np.float64) + np.outer(a[:, kk].astype(np.float64), b[kk].astype(np.float64))).astype(np.float16)
        acc32 += c.astype(np.float32)
    return acc32.astype(np.float16)


def main() -> None:
    rng = np.random.default_rng(0)
    chunks = (1, 4, 8, 16, 32, None)
    print("max |error| / sum|a b|; columns: fp32 accumulation, then fp16 chunks of kc steps (None: all of K)")
    print(f"{'K':>6} {'fp32':>9}" + "".join(f"{'kc=' + str(c):>10}" for c in chunks))
    for k in (64, 256, 1024):
        a = rng.standard_normal((32, k)).astype(np.float16)
        b = (rng.standard_normal((k, 32)) / np.sqrt(k)).astype(np.float16)
        ref = a.astype(np.float64) @ b.astype(np.float64)
        scale = np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64))
        f32 = (a.astype(np.float32) @ b.astype(np.float32)).astype(np.float16)
        cells = [np.max(np.abs(f32 - ref) / scale)]
        cells += [np.max(np.abs(fp16_fma_chunks(a, b, c or k) - ref) / scale) for c in chunks]
        print(f"{k:>6} " + "".join(f"{x:>10.2e}" for x in cells))


if __name__ == "__main__":
    main()
