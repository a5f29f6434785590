"""The paired bootstrap: intervals that cover the truth at about the nominal rate, and verdicts
that say "better" only when the interval excludes zero."""

import numpy as np
import pytest

from musicgen_lora.metrics import bootstrap as B
from musicgen_lora.metrics.style import FrechetToTarget, frechet_distance


def test_interval_covers_the_true_mean_difference_at_about_95_percent():
    rng = np.random.default_rng(0)
    hits, trials, n, true = 0, 300, 16, 0.3
    for t in range(trials):
        shared = rng.normal(0, 1, n)  # what a pair shares (the prompt): cancels in the difference
        base, model = shared + rng.normal(0, 0.5, n), shared + true + rng.normal(0, 0.5, n)
        iv = B.paired_mean_diff(base, model, resamples=1000, seed=t)
        hits += iv.low <= true <= iv.high
    # the percentile bootstrap at n = 16 undercovers a little (~93%); 300 trials: +-2.5% sd
    assert 0.87 <= hits / trials <= 0.985


def test_zero_difference_gives_an_interval_around_zero_and_no_verdict():
    rng = np.random.default_rng(1)
    x = rng.normal(size=12)
    same = B.paired_mean_diff(x, x.copy())
    assert same.delta == 0 and same.low == 0 == same.high and B.verdict(same, True) == B.UNCLEAR
    noise = B.paired_mean_diff(rng.normal(size=16), rng.normal(size=16), seed=3)
    assert noise.low < 0 < noise.high and B.verdict(noise, lower_is_better=True) == "no measurable difference"


def test_too_few_pairs_give_no_verdict_however_one_sided():
    """One pair resamples to a zero-width interval, and five same-sign pairs happen by chance 6% of
    the time: below MIN_PAIRS (6) nothing is called better or worse."""
    for n in (1, 2, 5):
        iv = B.paired_mean_diff(np.zeros(n), -np.arange(1.0, n + 1))
        assert iv.high < 0 and B.verdict(iv, lower_is_better=True) == B.UNCLEAR, n
    six = B.paired_mean_diff(np.zeros(6), -np.arange(1.0, 7))
    assert B.verdict(six, lower_is_better=True) == B.BETTER


def test_verdicts_follow_the_direction_and_the_seed_reproduces():
    base = np.linspace(0, 1, 10)
    lower = B.paired_mean_diff(base, base - 0.5, seed=7)
    assert lower.high < 0 and B.verdict(lower, lower_is_better=True) == "better"
    assert B.verdict(lower, lower_is_better=False) == "worse"
    assert B.paired_mean_diff(base, base - 0.5 + np.sin(base), seed=7) == B.paired_mean_diff(
        base, base - 0.5 + np.sin(base), seed=7
    )
    assert lower.as_dict()["ci95"] == [round(lower.low, 5), round(lower.high, 5)] and lower.as_dict()["n"] == 10
    with pytest.raises(ValueError):
        B.paired_mean_diff([1.0, 2.0], [1.0])


def test_paired_stat_diff_of_a_frechet_distance():
    rng = np.random.default_rng(2)
    target = rng.normal(0.5, 1, (20, 8))
    base = rng.normal(0, 1, (12, 8))
    closer = base * 0.5 + 0.5 * target.mean(0) + rng.normal(0, 0.1, (12, 8))
    fd = FrechetToTarget(target, np.vstack([base, closer]))
    iv = B.paired_stat_diff(fd, base, closer, resamples=300, seed=0)
    assert iv.delta == pytest.approx(frechet_distance(closer, target) - frechet_distance(base, target), rel=1e-8)
    assert iv.high < 0 and B.verdict(iv, lower_is_better=True) == "better"
    same = B.paired_stat_diff(fd, base, base.copy(), resamples=100)
    assert same.delta == 0 and same.low == 0 == same.high


def test_frechet_to_target_equals_frechet_distance_when_n_is_below_d():
    rng = np.random.default_rng(3)
    target, rows = rng.normal(0.3, 1, (24, 200)), rng.normal(0, 1.3, (16, 200))
    fd = FrechetToTarget(target, rows)
    assert fd(rows) == pytest.approx(frechet_distance(rows, target), rel=1e-8)
    pick = rows[rng.integers(0, 16, 16)]
    assert fd(pick) == pytest.approx(frechet_distance(pick, target), rel=1e-8)
    with pytest.raises(ValueError, match="span"):
        fd(rng.normal(size=(5, 200)))
