"""Calibration observers: the range of a tensor, batch by batch, in bounded memory.

An observer is fed the values one tensor takes over a calibration set, one batch at a
time (:meth:`Observer.update`), and answers the real range ``(lo, hi)`` to map onto
the integer grid (:meth:`Observer.range`; :func:`qkernels.quant.quant_params` turns it
into a scale and zero point). Its state is a few numbers (min-max, moving average) or
one fixed histogram (2048 counts by default), whatever the data size.

Observers are **mergeable**: ``a.merge(b)`` folds ``b``'s state into ``a`` (and
returns ``a``), so calibration can be split over processes or machines, and the
partial observers pickled, shipped and merged. For :class:`MinMaxObserver` and the
histogram observers (:class:`PercentileObserver`, :class:`EntropyObserver`,
:class:`MSEObserver`) merging is *exact*: the merged state -- min, max, count and every
histogram count -- is bit-identical to one pass over all the data, for any split and
any order of batches and merges. :class:`MovingAverageMinMaxObserver` cannot be (an
exponential moving average depends on the order of the batches); see its docstring
for what its merge does.

Every observer also keeps the exact running ``min``, ``max`` and ``count`` (number of
values seen).

Example::

    from qkernels.quant import make_observer, quant_params
    obs = make_observer("entropy", name="conv1.out")
    for batch in calibration_batches:
        obs.update(run_to(batch, "conv1.out"))
    scale, zero_point = quant_params(*obs.range(), dtype=np.int8)
"""
from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "Observer", "MinMaxObserver", "MovingAverageMinMaxObserver", "HistogramObserver", "PercentileObserver",
    "EntropyObserver", "MSEObserver", "AutoObserver", "make_observer", "OBSERVERS",
]


class Observer:
    """Base class: running exact ``min``, ``max``, ``count``; ``update``, ``merge``, ``range``.

    Parameters
    ----------
    name : str, optional
        The tensor observed; error messages name it, and merging observers of two
        different names is refused.

    Subclasses implement ``_observe(x, lo, hi)`` (one finite, non-empty float32 or float64 batch
    with its min and max), ``_merge_state(other)`` (called before the counts are
    combined) and ``_range(symmetric)``; ``_settings()`` returns what must match for a
    merge.
    """

    def __init__(self, name: str | None = None):
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, got {type(name).__name__}")
        self.name = name
        self.count = 0          # values seen
        self.min = math.inf     # exact (float64 holds every float16/float32 value exactly)
        self.max = -math.inf

    # ------------------------------------------------------------------ public API
    def update(self, x: ArrayLike) -> Observer:
        """Observe one batch ``x`` (any shape, any real dtype; computed in float64).

        An empty batch changes nothing. NaN or infinity in ``x`` raises ValueError
        (naming the tensor when the observer has a ``name``). Returns ``self``.
        """
        a = np.asarray(x)
        if a.dtype.kind not in "fiu":
            raise TypeError(f"{self._what()}: expected a real (float or integer) array, got dtype {a.dtype}")
        if a.size == 0:
            return self
        # float32 stays float32 (half the memory traffic; every step below is exact in it
        # too), anything else is computed in float64; raveled in memory order (no copy for
        # the runner's NCHW views of NHWC memory: nothing here depends on the order)
        a = (a if a.dtype == np.float32 else a.astype(np.float64)).ravel(order="K")
        finite = np.isfinite(a)
        if not finite.all():
            bad = int(a.size - np.count_nonzero(finite))
            raise ValueError(f"{self._what()}: the batch has {bad} NaN/Inf value(s) among {a.size}; "
                             "calibration data must be finite")
        lo, hi = float(a.min()), float(a.max())
        self._observe(a, lo, hi)
        self.count += int(a.size)
        self.min = min(self.min, lo)
        self.max = max(self.max, hi)
        return self

    def merge(self, other: Observer) -> Observer:
        """Fold ``other``'s state into ``self`` and return ``self`` (``other`` is unchanged).

        ``other`` must be the same class with the same settings (TypeError / ValueError
        otherwise) and, when both have names, the same name (ValueError).
        """
        self.merge_check(other)
        if other.count == 0:
            return self
        self._merge_state(other)
        self.count += other.count
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        if self.name is None:
            self.name = other.name
        return self

    def merge_check(self, other: Observer) -> None:
        """Refuse to merge an observer of another kind, settings or tensor."""
        if type(other) is not type(self):
            raise TypeError(f"cannot merge {type(other).__name__} into {type(self).__name__}: "
                            "observers must be of the same kind")
        if self._settings() != other._settings():
            raise ValueError(f"cannot merge {type(self).__name__}s with different settings: "
                             f"{self._settings_str()} vs {other._settings_str()}")
        if self.name is not None and other.name is not None and self.name != other.name:
            raise ValueError(f"cannot merge the observer of tensor {other.name!r} into that of {self.name!r}")

    def range(self, symmetric: bool = False) -> tuple[float, float]:
        """The real range ``(lo, hi)`` to map onto the integer grid.

        ``symmetric=True`` gives ``(-t, t)``. A constant tensor (``min == max``) gives
        exactly ``(min, max)`` (symmetric: ``(-|min|, |min|)``) whatever the method.
        ValueError if nothing was observed.
        """
        if self.count == 0:
            raise ValueError(f"{self._what()} has observed no values: feed it data with update() "
                             "before asking for a range")
        if self.min == self.max:
            lo, hi = (self.min, self.max) if not symmetric else _symmetric(self.min, self.max)
        else:
            with np.errstate(over="ignore"):   # bin edges of R = 2**1024 (data beyond 2**1023) are +-inf
                lo, hi = self._range(bool(symmetric))
        return float(lo), float(hi)

    # ------------------------------------------------------------------ subclass hooks
    def _observe(self, x: np.ndarray, lo: float, hi: float) -> None:
        pass

    def _merge_state(self, other: Observer) -> None:
        pass

    def _range(self, symmetric: bool) -> tuple[float, float]:
        raise NotImplementedError

    def _settings(self) -> tuple:
        return ()

    # ------------------------------------------------------------------ helpers
    def _settings_str(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self._settings()) or "(none)"

    def _what(self) -> str:
        return type(self).__name__ + (f" of tensor {self.name!r}" if self.name is not None else "")

    def __repr__(self) -> str:
        parts = [f"name={self.name!r}"] if self.name is not None else []
        parts += [f"{k}={v!r}" for k, v in self._settings()]
        parts.append(f"count={self.count}")
        if self.count:
            parts.append(f"min={self.min!r}, max={self.max!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


def _symmetric(lo: float, hi: float) -> tuple[float, float]:
    t = max(abs(lo), abs(hi))
    return -t, t


class MinMaxObserver(Observer):
    """The exact minimum and maximum seen; symmetric: ``(-t, t)``, ``t = max(|min|, |max|)``.

    Merging is exact (min of mins, max of maxes).
    """

    def _range(self, symmetric):
        return _symmetric(self.min, self.max) if symmetric else (self.min, self.max)


class MovingAverageMinMaxObserver(Observer):
    """Exponential moving average of the per-batch min and max (TensorFlow / PyTorch QAT).

    After the first batch (which sets the averages), each non-empty batch does
    ``avg = momentum * avg + (1 - momentum) * batch_value`` for its min and its max.
    PyTorch's ``averaging_constant=c`` is ``momentum = 1 - c``; TensorFlow's ``decay``
    is ``momentum``. ``range()`` returns the two averages (symmetric: ``(-t, t)`` with
    ``t`` the larger magnitude). The exact ``min``/``max`` are kept beside them.

    Merge (``a.merge(b)``): the averages become the **count-weighted mean** of the two
    observers' averages, ``(n_a * avg_a + n_b * avg_b) / (n_a + n_b)`` with ``n`` the
    values each saw. This is *not* what one pass over the concatenated data would give
    (an EMA weights recent batches most, so it depends on the batch order; no merge of
    two summaries can reproduce that). What it does guarantee, and what the tests
    check: it is commutative (``a.merge(b)`` and ``b.merge(a)`` give bit-identical
    averages), the merged averages lie between the two inputs' averages, merging an
    empty observer changes nothing, and for halves drawn from the same distribution
    the result agrees with one pass to within the EMA's own batch-to-batch noise.
    It is not associative bit-for-bit (float rounding), only to rounding error.
    """

    def __init__(self, momentum: float = 0.9, name: str | None = None):
        super().__init__(name)
        momentum = float(momentum)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        self.momentum = momentum
        self.avg_min = math.nan
        self.avg_max = math.nan
        self.batches: list[tuple[float, float, int]] = []   # (min, max, size) of each batch, for extend()

    def _settings(self):
        return (("momentum", self.momentum),)

    def _observe(self, x, lo, hi):
        self._step(lo, hi)
        self.batches.append((lo, hi, int(x.size)))

    def _step(self, lo, hi):
        if self.count == 0:
            self.avg_min, self.avg_max = lo, hi
        else:
            m = self.momentum
            self.avg_min = m * self.avg_min + (1.0 - m) * lo
            self.avg_max = m * self.avg_max + (1.0 - m) * hi

    def extend(self, other: "MovingAverageMinMaxObserver") -> "MovingAverageMinMaxObserver":
        """Continue with ``other``'s batches as if they came after ours: its per-batch
        ranges are replayed, so the result is **exactly** one pass over our data then
        its (sharded calibration folds shards this way, in order). ``other`` is unchanged."""
        self.merge_check(other)
        for lo, hi, n in other.batches:
            self._step(lo, hi)
            self.batches.append((lo, hi, n))
            self.count += n
            self.min, self.max = min(self.min, lo), max(self.max, hi)
        if self.name is None:
            self.name = other.name
        return self

    def _merge_state(self, other):
        self.batches += other.batches
        if self.count == 0:
            self.avg_min, self.avg_max = other.avg_min, other.avg_max
            return
        na, nb = float(self.count), float(other.count)
        n = na + nb
        self.avg_min = (na * self.avg_min + nb * other.avg_min) / n
        self.avg_max = (na * self.avg_max + nb * other.avg_max) / n

    def _range(self, symmetric):
        return _symmetric(self.avg_min, self.avg_max) if symmetric else (self.avg_min, self.avg_max)


class HistogramObserver(Observer):
    """A histogram of ``B = bins`` (default 2048) equal bins over ``[-R, R]``, exactly mergeable.

    ``R = 2**k`` is the smallest power of two strictly above every ``|x|`` seen (at
    least ``2**K_MIN``), kept as the integer exponent ``k``. A value ``x`` falls in bin

        i(x) = floor(x * B / (2R)) + B/2,

    so bin ``i`` covers ``[(i - B/2) w, (i - B/2 + 1) w)``, ``w = 2R/B`` (``2**(k-10)`` for ``B = 2048``)
    (:attr:`edges`). ``|x| < R`` keeps ``i`` in ``[0, B)``.

    **Growing R re-bins exactly.** When a value at or above ``R`` arrives, ``R`` doubles
    (as often as needed) and old bin ``i`` moves to bin ``B/4 + i // 2``. Proof: write
    ``c = B/(2R)``; bin of ``x`` under ``2R`` is ``floor(x c / 2) + B/2``. For any real
    ``y`` and integer ``n > 0``, ``floor(y / n) = floor(floor(y) / n)``; with ``y = x c``,
    ``n = 2`` and ``floor(x c) = i - B/2``, the new bin is
    ``floor((i - B/2) / 2) + B/2 = i // 2 - B/4 + B/2 = B/4 + i // 2`` (``B/2`` is even,
    so the shift by ``B/4`` leaves the floor division exact). This holds in floating
    point too, because the computed bin *is* the exact ``floor(x c)``: ``c`` is a power
    of two, so ``x * c`` only moves the exponent -- exact, as ``|x c| < B/2`` cannot
    overflow; the one inexact case, a product so small it underflows, only happens
    strictly inside ``(-1, 1)`` where the floor is 0 (x >= 0) or -1 (x < 0), and the
    code takes the floor from the sign there. (Computing ``floor(x c + B/2)`` instead
    would not be exact: ``-1e-30 + 1024`` rounds to 1024.) In terms of ``d = i - B/2``
    a doubling is ``d -> floor(d / 2)``, so after ``log2(B/2)`` doublings every count
    sits at ``d = -1`` or ``d = 0``, fixed points of the map: a jump of any number of
    doublings costs at most ``log2(B/2)`` passes over the counts.

    **Merging is exact.** ``a.merge(b)`` brings both histograms to the larger ``R`` and
    adds the counts. Every count then equals the count one pass over all the data
    would give at the final ``R`` -- which is the same ``R`` (the power of two above
    the overall max ``|x|``) however the data was split or ordered -- so the merged
    histogram is bit-identical to one pass, in any order. ``min``/``max``/``count`` are
    exact too, so every range computed from the state is identical as well.

    Subclasses choose the range from the histogram. ``abs_counts()`` folds it into the
    ``|x|`` histogram of ``B/2`` bins over ``[0, R]``, bin ``m`` covering ``|x|`` in
    ``[m w, (m+1) w)`` (up to which side of a bin edge is closed for negatives).

    Resolution: since ``max |x|`` lies in ``[R/2, R)``, the data spans between ``B/4``
    and ``B/2`` of the ``|x|`` bins (512 to 1024 by default). A larger ``bins`` (a power
    of two) refines the histogram at the cost of memory and range-search time;
    observers merge only with equal ``bins``.

    Parameters
    ----------
    bins : power of two in [8, 2**20], default 2048.
    name : the tensor observed (for messages and merge checks).
    """

    BINS = 2048     # the default B
    K_MIN = -1000   # R >= 2**-1000 keeps B/(2R) <= 2**(19+1000) finite in float64

    def __init__(self, bins: int = BINS, name: str | None = None):
        super().__init__(name)
        b = int(bins)
        if b != bins or b < 8 or b > 2 ** 20 or b & (b - 1):
            raise ValueError(f"bins must be a power of two in [8, 2**20], got {bins!r}")
        self.bins = b
        self._log2_half = b.bit_length() - 2      # log2(B / 2)
        self.exponent: int | None = None    # k, with R = 2**k
        self.counts: np.ndarray | None = None

    # ------------------------------------------------------------------ histogram state
    @property
    def R(self) -> float:
        """Half-width of the histogram range (a power of two); ValueError if empty."""
        self._need_data()
        return math.ldexp(1.0, self.exponent) if self.exponent < 1024 else math.inf   # 2**1024 overflows

    @property
    def bin_width(self) -> float:
        self._need_data()
        return math.ldexp(1.0, self.exponent - self._log2_half)

    @property
    def edges(self) -> np.ndarray:
        """The ``bins + 1`` bin edges ``-R .. R`` (exact: multiples of a power of two;
        ``+-inf`` for ``R = 2**1024``, which only data beyond ``2**1023`` needs)."""
        with np.errstate(over="ignore"):
            return (np.arange(self.bins + 1, dtype=np.float64) - self.bins // 2) * self.bin_width

    def histogram(self) -> tuple[np.ndarray, np.ndarray]:
        """``(counts, edges)``: a copy of the int64 counts and the float64 edges."""
        self._need_data()
        return self.counts.copy(), self.edges

    def abs_counts(self) -> np.ndarray:
        """Counts of ``|x|`` in ``bins/2`` bins of width :attr:`bin_width` over ``[0, R]``."""
        self._need_data()
        h = self.bins // 2
        return self.counts[h:] + self.counts[h - 1::-1]

    def _need_data(self):
        if self.counts is None:
            raise ValueError(f"{self._what()} has observed no values")

    @classmethod
    def _exponent_for(cls, amax: float) -> int:
        """Smallest k >= K_MIN with amax < 2**k."""
        if amax == 0.0:
            return cls.K_MIN
        _, e = math.frexp(amax)     # amax = m * 2**e, 0.5 <= m < 1, so 2**(e-1) <= amax < 2**e
        return max(e, cls.K_MIN)

    def _bin_index(self, x: np.ndarray) -> np.ndarray:
        c = math.ldexp(1.0, self._log2_half - self.exponent)   # B / (2R), a power of two
        if x.dtype == np.float32 and not 2.0 ** -120 < c < 2.0 ** 120:
            x = x.astype(np.float64)                           # c itself is no float32
        f = np.floor(x * c)                                    # exact (see the class docstring)
        f[(x < 0) & (f >= 0)] = -1.0                           # a negative product that underflowed to -0
        idx = f.astype(np.int64) + self.bins // 2
        return idx

    def _regrid(self, counts: np.ndarray, k_from: int, k_to: int) -> np.ndarray:
        """The counts re-binned from ``R = 2**k_from`` to ``2**k_to`` (``k_to >= k_from``), exactly."""
        B = self.bins
        for _ in range(min(k_to - k_from, self._log2_half)):
            new = np.zeros_like(counts)
            new[B // 4: 3 * B // 4] = counts.reshape(B // 2, 2).sum(axis=1)   # bin i -> B/4 + i//2
            counts = new
        return counts

    def _observe(self, x, lo, hi):
        k = self._exponent_for(max(-lo, hi))
        if self.counts is None:
            self.counts = np.zeros(self.bins, dtype=np.int64)
            self.exponent = k
        elif k > self.exponent:
            self.counts, self.exponent = self._regrid(self.counts, self.exponent, k), k
        self.counts += np.bincount(self._bin_index(x), minlength=self.bins)

    def _merge_state(self, other):
        if self.counts is None:
            self.counts, self.exponent = other.counts.copy(), other.exponent
            return
        k = max(self.exponent, other.exponent)
        self.counts = self._regrid(self.counts, self.exponent, k) + self._regrid(other.counts, other.exponent, k)
        self.exponent = k

    def _abs_max(self) -> float:
        return max(-self.min, self.max)

    def _clip(self, lo: float, hi: float) -> tuple[float, float]:
        """Both bounds clipped into the observed ``[min, max]`` (so ``lo <= hi`` always)."""
        return min(max(lo, self.min), self.max), min(max(hi, self.min), self.max)


def _hist_quantile(counts: np.ndarray, edges: np.ndarray, width: float, q: float) -> float:
    """The value below which a fraction ``q`` of the histogram's mass lies.

    Counts are taken as spread uniformly within each bin: the rank ``q * N`` is found
    in the cumulative counts and interpolated linearly inside its bin.
    """
    cum = np.cumsum(counts)
    n = int(cum[-1])
    target = q * n
    if target <= 0:
        i = int(np.flatnonzero(counts)[0])
        return float(edges[i])
    i = int(np.searchsorted(cum, target, side="left"))
    i = min(i, counts.size - 1)
    before = float(cum[i] - counts[i])
    frac = (target - before) / float(counts[i])
    return float(edges[i] + frac * width)


class PercentileObserver(HistogramObserver):
    """Range from percentiles of the histogram.

    Asymmetric: ``(P_{100-p}, P_p)``, the lower and upper ``p``-th percentiles (so
    ``100 - p`` percent is cut from *each* tail; note that onnxruntime's percentile
    calibrator instead keeps ``p`` percent in total, cutting ``(100 - p)/2`` from each
    tail). Symmetric: ``(-t, t)`` with ``t`` the ``p``-th percentile of ``|x|`` (as
    TensorRT's and onnxruntime's symmetric percentile calibration).

    Percentiles are read from the histogram by linear interpolation inside a bin, so
    they are within one :attr:`bin_width` (``R/1024``) of the exact sample percentile;
    they are clipped to the exact ``[min, max]``.

    Parameters
    ----------
    percentile : float in [50, 100]. 100 gives the min-max range.
    bins, name : as :class:`HistogramObserver`.
    """

    def __init__(self, percentile: float = 99.99, bins: int = HistogramObserver.BINS, name: str | None = None):
        super().__init__(bins, name)
        percentile = float(percentile)
        if not 50.0 <= percentile <= 100.0:
            raise ValueError(f"percentile must be in [50, 100], got {percentile!r}")
        self.percentile = percentile

    def _settings(self):
        return (("percentile", self.percentile), ("bins", self.bins))

    def _range(self, symmetric):
        p = self.percentile / 100.0
        if symmetric:
            amax = self._abs_max()
            abs_edges = np.arange(self.bins // 2 + 1, dtype=np.float64) * self.bin_width
            t = min(_hist_quantile(self.abs_counts(), abs_edges, self.bin_width, p), amax)
            if self.min == self.max:                       # a constant tensor: exactly its |value|
                t = amax
            return -t, t
        lo = _hist_quantile(self.counts, self.edges, self.bin_width, 1.0 - p)
        hi = _hist_quantile(self.counts, self.edges, self.bin_width, p)
        return self._clip(lo, hi)


def _smooth(p: np.ndarray, eps: float = 1e-4) -> np.ndarray | None:
    """MXNet's / onnxruntime's smoothing: zeros become ``eps``, taken evenly from the rest."""
    zeros = p == 0
    n_zeros = int(zeros.sum())
    n_nonzeros = p.size - n_zeros
    if n_nonzeros == 0:
        return None
    eps1 = eps * n_zeros / n_nonzeros
    out = np.where(zeros, eps, p - eps1)
    return out if (out > 0).all() else None


class EntropyObserver(HistogramObserver):
    """The KL-divergence (entropy) threshold of TensorRT (Migacz 2017) and onnxruntime.

    On the ``|x|`` histogram (``bins/2``, by default 1024, bins of width ``w`` over ``[0, R]``),
    for each candidate number of kept bins ``i`` from ``num_quantized_bins`` to the last
    non-empty bin, threshold ``t_i = i * w`` (the upper edge of the kept bins):

    - reference ``P`` = the first ``i`` bins, with all clipped counts (bins ``>= i``)
      added to its edge bin ``i - 1``;
    - candidate ``Q`` = the first ``i`` bins *without* the clipped counts, merged into
      ``num_quantized_bins`` groups of ``i // num_quantized_bins`` bins (the last group
      takes the remainder), each group's total then spread evenly over the bins of the
      group where ``P`` is non-zero (zero where ``P`` is zero) -- TensorRT's pseudo-code,
      as MXNet and onnxruntime implement it. Leaving the clipped mass out of ``Q`` is
      what makes clipping cost divergence;
    - both smoothed as MXNet/onnxruntime do (zeros -> 1e-4, taken from the non-zeros),
      normalised, and ``KL(P || Q) = sum P log(P / Q)``.

    Three corrections make it hold on real activations (measured on PaddleOCR's
    classifier and recogniser, where the plain search clipped 15 % of a ReLU output and
    all but one value of a one-sided tensor, and the model collapsed to 1-8 dB):

    - the spike at 0 (ReLU zeros, zero-padded inputs) counts as its neighbour bin, as in
      TensorRT's pytorch-quantization -- else P is that spike and clipping the tail costs
      nothing;
    - thresholds clip at most ``max_clip`` of the values (default ``1e-4``, the tail the
      default percentile cuts). KL measures the shape of the distribution, not distances
      on the value axis: on a tensor that is mostly one value with an informative 10 %
      tail (an Add of the recogniser: 90 % of its values within 0.001 of -0.044, the
      rest up to 0.41) the finest grid for the spike wins and 1.7 % of the tail is
      clipped (own SQNR 6 dB, the model's output 1 dB); and with most of the mass cut
      into the edge bin, P and the normalised Q are both that bin, KL ~ 0. The search
      thus trims long, sparse tails -- what it is good at -- and never cuts the signal;
      ``max_clip=1`` gives the unbounded search;
    - asymmetric ranges search with the levels the asymmetric grid gives the longer
      side: ``2 * num_quantized_bins * max(-lo, hi) / (hi - lo)`` (``lo``, ``hi`` the data's
      range extended to 0), all 256 for one-sided data (a ReLU output), 128 for
      balanced data.

    The ``t_i`` of least divergence wins (the smallest on ties), clipped to the
    observed ``max |x|``; beyond 64 candidates the search takes every step-th one and then
    every one around the best (KL varies smoothly with ``i``). ``range(symmetric=True)`` is ``(-t, t)``; asymmetric is
    ``(max(min, -t), min(max, t))`` -- the same threshold on both sides, each side
    clipped to the data (a one-sided ReLU output keeps ``lo = min >= 0``); both bounds
    are kept inside ``[min, max]``, so all-negative data with ``t < |max|`` gives
    ``lo = hi = max``.

    Differences from onnxruntime's ``CalibrationMethod.Entropy``: it searches a signed
    histogram (``num_bins`` default 128) with windows symmetric about zero, so its
    ``num_quantized_bins`` levels span both signs; here the levels span ``[0, t]``, as
    in TensorRT. Results agree loosely, not exactly.

    Resolution: the search starts at ``num_quantized_bins`` bins, so ``t >= nq * w``,
    which is ``R/8`` (between ``max|x|/8`` and ``max|x|/4``) with the defaults --
    TensorRT's 2048 ``|x|`` bins over ``[0, max|x|]`` give ``t >= max|x|/16``. A few
    outliers far beyond the bulk thus hold ``t`` up; a larger ``bins`` lowers the floor
    (``bins=8192``: ``R/32``) at about ``(bins/2048)**2`` times the search time.

    Parameters
    ----------
    num_quantized_bins : int in [2, bins/2], default 128 (the positive levels of int8).
    bins, name : as :class:`HistogramObserver`.
    max_clip : float in [0, 1], default 1e-4: the largest share of values a threshold may clip.
    """

    def __init__(self, num_quantized_bins: int = 128, bins: int = HistogramObserver.BINS,
                 name: str | None = None, max_clip: float = 1e-4):
        super().__init__(bins, name)
        nq = int(num_quantized_bins)
        if nq != num_quantized_bins or not 2 <= nq <= self.bins // 2:
            raise ValueError(f"num_quantized_bins must be an int in [2, bins/2 = {self.bins // 2}], "
                             f"got {num_quantized_bins!r}")
        max_clip = float(max_clip)
        if not 0.0 <= max_clip <= 1.0:
            raise ValueError(f"max_clip must be in [0, 1], got {max_clip!r}")
        self.num_quantized_bins, self.max_clip = nq, max_clip

    def _settings(self):
        return (("num_quantized_bins", self.num_quantized_bins), ("bins", self.bins), ("max_clip", self.max_clip))

    def threshold(self, levels: int | None = None) -> float:
        """The chosen threshold ``t`` on ``|x|`` (ValueError if nothing was observed):
        ``levels`` quantized bins (default ``num_quantized_bins``)."""
        self._need_data()
        amax = self._abs_max()
        if amax == 0.0:
            return 0.0
        h = self.abs_counts().astype(np.float64)
        # the floor: the first threshold that clips at most max_clip of the values
        kept = np.cumsum(h)
        floor = int(np.searchsorted(kept, (1.0 - self.max_clip) * kept[-1] * (1 - 1e-12))) + 1
        if h.size > 1 and h[0] > h[1] > 0:
            # the spike at 0 (ReLU zeros, zero padding) would dominate P, and KL would
            # charge almost nothing for clipping the tail where the signal is: bin 0 counts
            # as its neighbour (as TensorRT's pytorch-quantization does)
            h[0] = h[1]
        nq = levels or self.num_quantized_bins
        last = int(np.flatnonzero(h)[-1]) + 1          # bins needed to cover max |x|
        if last <= nq:
            return amax
        total = float(h.sum())
        cum = np.cumsum(h)
        start = max(nq, floor)
        if start >= last:
            return min(last * self.bin_width, amax)

        def divergence(i: int) -> float:
            sliced = h[:i]
            p = sliced.copy()
            p[-1] += total - cum[i - 1]
            nonzero = p != 0
            g = i // nq
            starts = np.arange(nq) * g
            sizes = np.full(nq, g)
            sizes[-1] = i - starts[-1]
            qsum = np.add.reduceat(sliced, starts)
            qnz = np.add.reduceat(nonzero.astype(np.float64), starts)
            per_bin = np.divide(qsum, qnz, out=np.zeros(nq), where=qnz > 0)
            q = np.where(nonzero, np.repeat(per_bin, sizes), 0.0)
            ps, qs = _smooth(p), _smooth(q)
            if ps is None or qs is None:
                return math.inf
            ps /= ps.sum()
            qs /= qs.sum()
            return float(np.sum(ps * np.log(ps / qs)))

        # coarse to fine: every step-th threshold, then every one around the best
        step = max(1, (last - start) // 64)
        coarse = list(range(start, last + 1, step))
        if coarse[-1] != last:
            coarse.append(last)
        kl = {i: divergence(i) for i in coarse}
        best = min(coarse, key=lambda i: (kl[i], i))
        for i in range(max(start, best - step + 1), min(last, best + step - 1) + 1):
            if i not in kl:
                kl[i] = divergence(i)
        best_i = min(kl, key=lambda i: (kl[i], i))
        if kl[best_i] == math.inf:
            best_i = last
        return min(best_i * self.bin_width, amax)

    def _range(self, symmetric):
        if symmetric:
            t = self.threshold()
            return -t, t
        # asymmetric: the grid spans [min(lo, 0), max(hi, 0)] (quant_params), so the side
        # the threshold cuts gets its share of all 2 * num_quantized_bins levels
        lo, hi = min(self.min, 0.0), max(self.max, 0.0)
        share = max(-lo, hi) / (hi - lo)
        t = self.threshold(max(self.num_quantized_bins, round(2 * self.num_quantized_bins * share)))
        return self._clip(-t, t)


class MSEObserver(HistogramObserver):
    """The range of least expected squared quantization error over the histogram.

    For a candidate range ``[a, b]`` on a grid of ``L - 1`` steps,
    ``s = (b - a) / (L - 1)``, the expected squared error is

    - rounding: ``s**2 / 12`` for each value inside ``[a, b]`` (uniform rounding noise);
    - clipping: ``(x - b)**2`` above ``b`` (``(a - x)**2`` below ``a``), with each bin's
      values taken as uniform over the bin: ``(c - b)**2 + w**2 / 12`` per value of a
      bin centred at ``c``.

    Candidates are bin edges. Symmetric (``range(symmetric=True)``): ``[-t, t]`` on the
    ``|x|`` histogram with ``L - 1 = 2**num_bits - 2`` steps (int8's ``-127..127``);
    every edge ``t`` up to the one covering ``max |x|`` is tried. Asymmetric:
    ``L - 1 = 2**num_bits - 1`` steps (``0..255``); every pair ``a <= 0 <= b`` of edges
    between the data's first and last bins is tried (about a million pairs at most, one
    vectorised pass), since :func:`~qkernels.quant.quant_params` extends any range to
    include 0 anyway. The result is clipped to the observed ``[min, max]``.

    The uniform-within-a-bin model may clip up to half a bin off the extreme values
    when that is cheaper than the larger step (e.g. on a few point masses).

    Parameters
    ----------
    num_bits : int in [2, 16], default 8.
    bins, name : as :class:`HistogramObserver`.
    """

    def __init__(self, num_bits: int = 8, bins: int = HistogramObserver.BINS, name: str | None = None):
        super().__init__(bins, name)
        nb = int(num_bits)
        if nb != num_bits or not 2 <= nb <= 16:
            raise ValueError(f"num_bits must be an int in [2, 16], got {num_bits!r}")
        self.num_bits = nb

    def _settings(self):
        return (("num_bits", self.num_bits), ("bins", self.bins))

    @staticmethod
    def _clip_error(counts: np.ndarray, centers: np.ndarray, cuts: np.ndarray, above: bool) -> np.ndarray:
        """For each cut, the sum over the bins beyond it of n * ((c - cut)**2 + 1/12).

        In units of the bin width (``centers`` ascending and ``cuts`` in bins, the error
        in ``w**2``): the search is scale-free and cannot overflow whatever ``R``. From
        running sums of n, n c and n c^2 over the bins beyond each cut: O(bins + cuts).
        """
        n, nc, ncc = (np.concatenate([[0.0], np.cumsum(v)]) for v in (counts, counts * centers,
                                                                       counts * centers * centers))
        k = np.searchsorted(centers, cuts, side="right" if above else "left")
        if above:        # bins k.. (centres > cut)
            s0, s1, s2 = n[-1] - n[k], nc[-1] - nc[k], ncc[-1] - ncc[k]
        else:            # bins ..k-1 (centres < cut)
            s0, s1, s2 = n[k], nc[k], ncc[k]
        return np.maximum(s2 - 2.0 * cuts * s1 + cuts * cuts * s0, 0.0) + s0 / 12.0

    def _range(self, symmetric):
        self._need_data()
        w = self.bin_width
        half = self.bins // 2
        if symmetric:
            amax = self._abs_max()
            h = self.abs_counts().astype(np.float64)
            last = int(np.flatnonzero(h)[-1]) + 1
            h = h[:last]
            centers = np.arange(last) + 0.5
            t = np.arange(1, last + 1, dtype=np.float64)            # candidate thresholds, in bins
            steps = 2 ** self.num_bits - 2
            n_in = np.cumsum(h)
            err = n_in * (2.0 * t / steps) ** 2 / 12.0 + self._clip_error(h, centers, t, above=True)
            t_best = min(float(t[int(np.argmin(err))]) * w, amax)
            return -t_best, t_best
        # asymmetric: a = edge i <= B/2, b = edge j >= B/2; in bins from the centre, a = i - B/2, b = j - B/2
        h = self.counts.astype(np.float64)
        nz = np.flatnonzero(h)
        first, last = int(nz[0]), int(nz[-1]) + 1
        centers = np.arange(self.bins) - half + 0.5
        i = np.arange(min(first, half), half + 1)
        j = np.arange(half, max(last, half) + 1)
        a, b = (i - half).astype(np.float64), (j - half).astype(np.float64)
        cum = np.concatenate([[0.0], np.cumsum(h)])
        left = self._clip_error(h[:half], centers[:half], a, above=False)     # a <= 0: only negatives clip
        right = self._clip_error(h[half:], centers[half:], b, above=True)     # b >= 0: only positives clip
        n_in = cum[j][None, :] - cum[i][:, None]
        steps = 2 ** self.num_bits - 1
        s = (b[None, :] - a[:, None]) / steps
        err = n_in * s * s / 12.0 + left[:, None] + right[None, :]
        ii, jj = np.unravel_index(int(np.argmin(err)), err.shape)
        return self._clip(float(a[ii]) * w, float(b[jj]) * w)


class AutoObserver(HistogramObserver):
    """One histogram, every method's range: :meth:`candidates` gives the ranges that
    min-max, percentile, entropy and MSE (each with its default settings) choose from
    the same state, so ``quantize_model(method="auto")`` can pick per tensor by the
    error each causes (:mod:`qkernels.quant.auto`). Alone, :meth:`range` is the MSE
    range. Merging is exact, as for every histogram observer.
    """

    METHODS = ("minmax", "percentile", "entropy", "mse")

    def _as(self, method: str) -> Observer:
        """A ``method`` observer (default settings) sharing this one's state."""
        obs = OBSERVERS[method]() if method == "minmax" else OBSERVERS[method](bins=self.bins)
        obs.name, obs.count, obs.min, obs.max = self.name, self.count, self.min, self.max
        if isinstance(obs, HistogramObserver):
            obs.counts, obs.exponent = self.counts, self.exponent
        return obs

    def candidates(self, symmetric: bool = False) -> dict[str, tuple[float, float]]:
        """method -> range, for each of :attr:`METHODS`."""
        return {m: self._as(m).range(symmetric) for m in self.METHODS}

    def _range(self, symmetric):
        return self._as("mse").range(symmetric)


OBSERVERS = {
    "minmax": MinMaxObserver,
    "moving_average": MovingAverageMinMaxObserver,
    "percentile": PercentileObserver,
    "entropy": EntropyObserver,
    "mse": MSEObserver,
    "auto": AutoObserver,
}


def make_observer(method: str, **options) -> Observer:
    """A new observer by method name: ``minmax``, ``moving_average``, ``percentile``,
    ``entropy``, ``mse`` or ``auto``; ``options`` go to its constructor (``name=`` and the
    method's settings, e.g. ``percentile=99.9``)."""
    cls = OBSERVERS.get(method)
    if cls is None:
        raise ValueError(f"unknown calibration method {method!r}; expected one of {', '.join(OBSERVERS)}")
    try:
        return cls(**options)
    except TypeError as e:
        raise TypeError(f"make_observer({method!r}): {e}") from None
