"""Paired bootstrap confidence intervals: is a difference between two models more than sampling noise?

A model's generations are a sample: other seeds give other clips, so a mean over 8 prompts moves
from run to run even when nothing was learned. Base and fine-tuned clips come in pairs (the same
prompt and seed), so the question "is best better than base" is asked of the per-pair
differences: resample the pairs with replacement (`resamples` times, numpy's PCG64 seeded from
`evaluate.seed`, so the interval is reproducible), take the statistic of each resample, and read the
2.5th and 97.5th percentiles (the percentile bootstrap; at the 8-16 pairs of an evaluation it
covers the true difference slightly less often than 95%, ~93% in the tests). A difference counts
("better" / "worse") only when its interval excludes zero, over at least MIN_PAIRS pairs;
otherwise it is reported as "no measurable difference". numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

RESAMPLES = 2000
LEVEL = 0.95
# Below 6 pairs no interval is trusted: resampling 1 pair gives a zero-width interval, and all of
# 5 differences pointing one way happens by chance 2 x 2^-5 = 6% of the time (a sign test first
# reaches 5% at 6 pairs), while their percentile interval would exclude zero.
MIN_PAIRS = 6
BETTER, WORSE, UNCLEAR = "better", "worse", "no measurable difference"


@dataclass(frozen=True)
class Interval:
    """A statistic's difference (second minus first) with its bootstrap interval over n pairs."""

    delta: float
    low: float
    high: float
    n: int

    def excludes_zero(self) -> bool:
        return self.n >= MIN_PAIRS and (self.low > 0 or self.high < 0)

    @classmethod
    def from_dict(cls, d: dict) -> Interval:
        """The inverse of `as_dict`: an interval as summary.json and set_metrics.json store it."""
        return cls(d["delta"], *d["ci95"], d["n"])

    def as_dict(self, digits: int = 5) -> dict:
        return {"delta": round(self.delta, digits), "ci95": [round(self.low, digits), round(self.high, digits)], "n": self.n}


def resample_indices(n: int, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """(resamples, n) indices drawn with replacement; the same seed gives the same draws, so every
    metric of one comparison is resampled over the same pairs."""
    if n < 1:
        raise ValueError("bootstrap: need at least one pair")
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def percentile_interval(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(np.asarray(samples, dtype=np.float64), [tail, 100 - tail])
    return float(lo), float(hi)


def paired_mean_diff(first, second, resamples: int = RESAMPLES, seed: int = 0, level: float = LEVEL) -> Interval:
    """Mean of `second - first` over pairs (i-th of each is one pair), with its percentile interval."""
    a, b = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired bootstrap: expected two 1-D arrays of one length, got {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("paired bootstrap: values must be finite")
    d = b - a
    means = d[resample_indices(d.size, resamples, seed)].mean(axis=1)
    return Interval(float(d.mean()), *percentile_interval(means, level), d.size)


def paired_stat_diff(
    stat: Callable[[np.ndarray], float],
    first: np.ndarray,
    second: np.ndarray,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> Interval:
    """`stat(second) - stat(first)` for a set statistic (a Fréchet distance of feature rows, say),
    rows paired by index, with the interval from resampling the pairs: both sets are drawn with the
    same indices, so what the two models share (prompt, seed) cancels as it does in the point value."""
    a, b = np.asarray(first), np.asarray(second)
    if len(a) != len(b):
        raise ValueError(f"paired bootstrap: {len(a)} vs {len(b)} rows; rows must be paired")
    idx = resample_indices(len(a), resamples, seed)
    diffs = np.array([stat(b[i]) - stat(a[i]) for i in idx])
    return Interval(float(stat(b) - stat(a)), *percentile_interval(diffs, level), len(a))


def verdict(interval: Interval, lower_is_better: bool) -> str:
    """ "better" / "worse" only where the interval excludes zero (over at least MIN_PAIRS pairs),
    else "no measurable difference"."""
    if not interval.excludes_zero():
        return UNCLEAR
    return BETTER if (interval.high < 0) == lower_is_better else WORSE
