"""Flags: a clip whose loudness decays, ends in silence, is mostly silent or is noise.

The limits (`FlagThresholds`) are params: declared once in core/params.py, where
`EvaluateParams` takes its fields from them, so params.yaml's `evaluate` section carries the same
names.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..core.params import FlagThresholds

FLAG_NAMES = ("decaying", "silent_tail", "mostly_silent", "noisy")


_FLAG_KEYS = ("loudness_slope_lu_per_s", "tail_drop_lu", "silence_ratio", "spectral_flatness")


def _scalars(metrics: dict, what: str) -> list[float]:
    missing = [k for k in _FLAG_KEYS if k not in metrics]
    if missing:
        raise ValueError(f"{what}: metrics lack keys {missing}")
    vals = [float(metrics[k]) for k in _FLAG_KEYS]
    if not np.isfinite(vals).all():
        raise ValueError(f"{what}: non-finite metric values {dict(zip(_FLAG_KEYS, vals))}")
    return vals


def flags(metrics: dict, thresholds: FlagThresholds) -> list[str]:
    """Subset of ["decaying", "silent_tail", "mostly_silent", "noisy"] whose threshold is crossed (strictly)."""
    slope, tail, silence, flat = _scalars(metrics, "flags")
    hit = (
        slope < thresholds.decaying_slope_lu_per_s,
        tail < thresholds.silent_tail_drop_lu,
        silence > thresholds.mostly_silent_ratio,
        flat > thresholds.noisy_flatness,
    )
    return [name for name, h in zip(FLAG_NAMES, hit) if h]


def calibrate_thresholds(
    reference_metrics: list[dict],
    base: FlagThresholds,
    *,
    endings: list[dict] = (),
    slope_margin: float = 0.25,
    tail_margin: float = 3.0,
    silence_margin: float = 0.1,
    flatness_margin: float = 0.05,
    low_pct: float = 5.0,
    high_pct: float = 95.0,
) -> FlagThresholds:
    """Thresholds relative to real (training) clips, never stricter than `base`.

    decaying = min(base, P5(slopes) - slope_margin); silent_tail = min(base, P5(tail drops) -
    tail_margin); mostly_silent = min(1, max(base, P95(silence) + silence_margin)); noisy =
    min(1, max(base, P95(flatness) + flatness_margin)). So a flag fires only if a generated
    clip is worse than ~95% of real clips (plus a margin) *and* worse than the absolute base
    (real songs with fade-outs or hissy recordings do not raise false alarms). numpy.percentile.
    `endings`: the clips that end the recordings, where music fades out: silent_tail is also
    min(.., P5(their tail drops) - tail_margin), so music whose recordings fade out sets a limit
    its own fade-outs pass (a generated clip that ends as the user's songs end is no defect).
    """
    if not reference_metrics:
        raise ValueError("calibrate_thresholds: no reference metrics given")
    slope, tail, silence, flat = np.array([_scalars(m, "calibrate_thresholds") for m in reference_metrics]).T
    tail_limit = np.percentile(tail, low_pct) - tail_margin
    if endings:
        ending_tails = [_scalars(m, "calibrate_thresholds")[1] for m in endings]
        tail_limit = min(tail_limit, np.percentile(ending_tails, low_pct) - tail_margin)
    return replace(
        base,
        decaying_slope_lu_per_s=float(min(base.decaying_slope_lu_per_s, np.percentile(slope, low_pct) - slope_margin)),
        silent_tail_drop_lu=float(min(base.silent_tail_drop_lu, tail_limit)),
        mostly_silent_ratio=float(
            min(1.0, max(base.mostly_silent_ratio, np.percentile(silence, high_pct) + silence_margin))
        ),
        noisy_flatness=float(min(1.0, max(base.noisy_flatness, np.percentile(flat, high_pct) + flatness_margin))),
    )
