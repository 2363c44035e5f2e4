"""Prints kernels/eltwise.c's erfc_tab (the AVX-512 build's exact GELU): on each of 16
intervals |z| in [j / 4, (j + 1) / 4), erfc(j / 4 + u / 4) for u in [0, 1) as a degree-5
polynomial in u, a float64 Chebyshev fit (interval 0 through c(0) = 1 exactly) rounded to
float32, and the largest absolute error of its float32 Horner evaluation."""
import numpy as np
from numpy.polynomial import chebyshev as C, polynomial as P
from scipy.special import erfc

DEG = 5


def monomial(cheb, shift=0):
    """cheb in s = 2u - 1 -> coefficients in u (times u**shift)"""
    out = np.zeros(DEG + 1)
    for k, m in enumerate(C.cheb2poly(cheb)):
        out[shift:shift + k + 1] += m * P.polypow([-1, 2], k)[:k + 1]
    return out


def table():
    u = (np.cos(np.pi * (np.arange(400) + 0.5) / 400) + 1) / 2
    rows = []
    for j in range(16):
        f = erfc(j / 4 + u / 4)
        if j == 0:
            coef = monomial(C.chebfit(2 * u - 1, (f - 1) / u, DEG - 1), 1)
            coef[0] = 1.0
        else:
            coef = monomial(C.chebfit(2 * u - 1, f, DEG))
        rows.append(coef.astype(np.float32))
    return np.array(rows).T       # [k][j]


if __name__ == "__main__":
    t = table()
    u = np.linspace(0, 1, 40001).astype(np.float32)
    worst = 0.0
    for j in range(16):
        acc = np.full_like(u, t[DEG, j])
        for k in range(DEG - 1, -1, -1):        # fused multiply-add: one rounding a step
            acc = (acc.astype(np.float64) * u + t[k, j]).astype(np.float32)
        worst = max(worst, float(np.abs(acc - erfc(j / 4 + u.astype(np.float64) / 4)).max()))
    for row in t:
        print("        {" + ", ".join(repr(float(c)) + "f" for c in row) + "},")
    print(f"/* max abs error {worst:.3g} = {worst / 2 ** -23:.2f} 2^-23 */")
