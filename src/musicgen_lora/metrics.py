"""Per-clip audio metrics replacing judgement by ear, plus flags and the `metrics` CLI.

Loudness follows ITU-R BS.1770 (pyloudnorm's K-weighting and meter); spectra come from
torchaudio.transforms.Spectrogram; everything else is numpy/scipy. Every function takes mono
float audio and an int sample rate and raises ValueError for empty, too short or non-finite
input, so no metric is ever NaN. Set-level metrics (Frechet distance, MFCC statistics, codec
token statistics) live in `metrics_style` and are re-exported here.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, replace

import numpy as np
import pyloudnorm
import soundfile as sf

from .metrics_style import (  # noqa: F401  (re-exported public API)
    _check, _power_spec, code_entropy, code_histogram, frechet_distance, js_divergence, mfcc_stats,
    silence_code_share,
)

LUFS_FLOOR = -70.0  # BS.1770 absolute gate; digital silence reports this instead of -inf
DBFS_FLOOR = -120.0  # floor for RMS dBFS values of digital silence
FLAG_NAMES = ("decaying", "silent_tail", "mostly_silent", "noisy")


def _k_weighted(x: np.ndarray, sr: int) -> np.ndarray:
    # pyloudnorm's own K-weighting stages (shelf + high-pass), same as its integrated meter.
    for stage in pyloudnorm.Meter(sr)._filters.values():
        x = stage.apply_filter(x)
    return x


def _curve(kw: np.ndarray, sr: int, block_s: float, hop_s: float) -> tuple[np.ndarray, np.ndarray]:
    block, hop = int(round(block_s * sr)), max(1, int(round(hop_s * sr)))
    if block < 1 or kw.size < block:
        raise ValueError(f"loudness_curve: audio is {kw.size / sr:.3f} s, shorter than one {block_s} s block")
    starts = np.arange(0, kw.size - block + 1, hop)
    cs = np.concatenate([[0.0], np.cumsum(kw * kw)])
    ms = np.maximum((cs[starts + block] - cs[starts]) / block, 0.0)
    with np.errstate(divide="ignore"):
        lufs = np.maximum(-0.691 + 10.0 * np.log10(ms), LUFS_FLOOR)
    return (starts + block / 2.0) / sr, lufs


def integrated_loudness(audio: np.ndarray, sr: int) -> float:
    """Integrated gated loudness in LUFS: ``pyloudnorm.Meter(sr).integrated_loudness`` (BS.1770-4).

    Digital silence (or anything gated away below -70 LUFS) returns ``LUFS_FLOOR`` (-70.0)
    instead of -inf. Detects clips that are far too quiet or too loud overall.
    """
    x = _check(audio, sr, 0.4, "integrated_loudness")
    value = float(pyloudnorm.Meter(sr).integrated_loudness(x))
    if np.isnan(value):
        raise ValueError("integrated_loudness: pyloudnorm returned NaN")
    return max(value, LUFS_FLOOR)  # -inf (everything gated) -> floor


def loudness_curve(audio: np.ndarray, sr: int, block_s: float = 0.4, hop_s: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Ungated short-term loudness over time: ``(block centre times s, LUFS per block)``.

    Each block is ``-0.691 + 10 log10(mean(k^2))`` of the K-weighted signal k (pyloudnorm's
    BS.1770 filters; the same per-block value pyloudnorm gates on), blocks of `block_s` every
    `hop_s`, floored at -70 LUFS. Basis of slope / thirds / tail metrics ("grows quieter").
    """
    x = _check(audio, sr, block_s, "loudness_curve")
    return _curve(_k_weighted(x, sr), sr, block_s, hop_s)


def loudness_slope(audio: np.ndarray, sr: int) -> float:
    """Least-squares slope (LU/s) of ``loudness_curve`` against time, over *all* blocks.

    Floored (-70) blocks are included on purpose: fading into silence is exactly the
    "grows quieter over the clip" failure; the floor bounds their weight. Steady tone ~0;
    a tone decaying 30 dB over D seconds gives ~ -30/D. numpy.polyfit.
    """
    t, lufs = loudness_curve(_check(audio, sr, 0.5, "loudness_slope"), sr)  # >= 2 blocks
    return float(np.polyfit(t, lufs, 1)[0])


def _thirds(t: np.ndarray, lufs: np.ndarray, dur: float) -> float:
    first, last = lufs[t < dur / 3.0], lufs[t >= 2.0 * dur / 3.0]
    if first.size == 0 or last.size == 0:
        raise ValueError(f"loudness_thirds_delta: audio ({dur:.2f} s) too short for loudness blocks in each third")
    return float(last.mean() - first.mean())


def loudness_thirds_delta(audio: np.ndarray, sr: int) -> float:
    """Mean block loudness (LUFS, dB-domain mean of ``loudness_curve``) of the last third minus the first third.

    Blocks are assigned by their centre time. Negative = the clip ends quieter than it starts;
    robust complement to the slope for the "grows quieter" judgement.
    """
    x = _check(audio, sr, 1.2, "loudness_thirds_delta")
    return _thirds(*loudness_curve(x, sr), x.size / sr)


def _tail(t: np.ndarray, lufs: np.ndarray, dur: float, tail_s: float, block_s: float = 0.4) -> float:
    start = t - block_s / 2.0
    cut = dur - tail_s
    tail, rest = lufs[start >= cut - 1e-9], lufs[start + block_s <= cut + 1e-9]
    if tail_s < block_s or tail.size == 0 or rest.size == 0:
        raise ValueError(f"tail_drop: need tail_s >= {block_s} s and audio > tail_s + {block_s} s "
                         f"(got tail_s={tail_s}, audio {dur:.2f} s)")
    return float(tail.mean() - rest.mean())


def tail_drop(audio: np.ndarray, sr: int, tail_s: float = 2.0) -> float:
    """Mean block loudness of the last `tail_s` seconds minus that of the rest (LU, dB-domain means).

    Uses ``loudness_curve`` blocks lying wholly inside each region (so the boundary does not
    leak). Negative = the ending gets quieter: detects "decaying ending" / fade to silence.
    """
    x = _check(audio, sr, tail_s + 0.4, "tail_drop")
    return _tail(*loudness_curve(x, sr), x.size / sr, tail_s)


def _frame_dbfs(x: np.ndarray, frame: int) -> np.ndarray:
    n = x.size // frame
    rms = np.sqrt(np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1))
    with np.errstate(divide="ignore"):
        return np.maximum(20.0 * np.log10(rms), DBFS_FLOOR)


def silence_ratio(audio: np.ndarray, sr: int, threshold_dbfs: float = -60.0, frame_s: float = 0.05) -> float:
    """Share of non-overlapping `frame_s` frames whose RMS ``20 log10(sqrt(mean(x^2)))`` dBFS < threshold.

    numpy only; a trailing partial frame is ignored. Detects "mostly silence" generations.
    """
    x = _check(audio, sr, frame_s, "silence_ratio")
    return float(np.mean(_frame_dbfs(x, max(1, int(round(frame_s * sr)))) < threshold_dbfs))


def rms_per_second(audio: np.ndarray, sr: int) -> list[float]:
    """RMS level in dBFS (full-scale sine = -3.01) per 1-second window, floored at -120 dBFS.

    numpy only. Needs >= 0.5 s; a trailing partial window is kept if it is >= 0.5 s.
    A readable loudness-over-time trace for reports ("grows quieter", dropouts).
    """
    x = _check(audio, sr, 0.5, "rms_per_second")
    values = list(_frame_dbfs(x, sr)) if x.size >= sr else []
    rem = x[(x.size // sr) * sr:]
    if rem.size >= sr / 2:
        values.extend(_frame_dbfs(rem, rem.size))
    return [float(v) for v in values]


def _flatness(spec: np.ndarray) -> float:
    power = spec.mean(axis=0)
    active = (power > 1e-20) & (power >= power.max() * 1e-6)  # frames within 60 dB of the loudest
    if not active.any():
        return 0.0
    p = spec[:, active]
    flat = np.exp(np.mean(np.log(p + 1e-30), axis=0)) / p.mean(axis=0)
    return float(np.clip(np.median(flat), 0.0, 1.0))


def spectral_flatness(audio: np.ndarray, sr: int) -> float:
    """Median over frames of ``geomean(P) / mean(P)`` of the power spectrum P (Wiener entropy).

    torchaudio Spectrogram, Hann window ~0.1 s (power-of-two n_fft), hop n_fft/4. Frames more
    than 60 dB below the loudest frame are skipped; digital silence gives 0.0. White noise
    ~0.56, a pure tone ~0, music typically < 0.2. Detects "mostly noise" generations.
    """
    x = _check(audio, sr, 0.2, "spectral_flatness")
    return _flatness(_power_spec(x, sr, 0.1)[0])


def _pulse(x: np.ndarray, sr: int, lag_min_s: float = 0.25, lag_max_s: float = 2.0) -> float:
    hop = max(1, int(round(0.01 * sr)))
    spec, _ = _power_spec(x, sr, 0.032, hop)
    if spec.max() <= 0:
        return 0.0
    db = np.maximum(10.0 * np.log10(spec + 1e-30), 10.0 * np.log10(spec.max()) - 80.0)
    flux = np.maximum(np.diff(db, axis=1), 0.0).mean(axis=0)  # spectral flux, dB per bin per frame
    if flux.std() < 0.05:  # no onsets at all (steady tone, smooth fade, silence)
        return 0.0
    env = flux - flux.mean()
    n, rate = env.size, sr / hop
    kmin, kmax = int(np.ceil(lag_min_s * rate)), min(int(lag_max_s * rate), n // 2)
    if kmax < kmin:
        raise ValueError(f"pulse_clarity: audio ({x.size / sr:.2f} s) too short for a {lag_min_s} s lag")
    f = np.fft.rfft(env, 2 * n)
    ac = np.fft.irfft(f * np.conj(f), 2 * n)[:n]
    return float(np.clip((ac[kmin : kmax + 1] / ac[0]).max(), 0.0, 1.0))


def pulse_clarity(audio: np.ndarray, sr: int) -> float:
    """Max of the normalised autocorrelation ``r(k) = sum e(t)e(t+k) / sum e(t)^2`` for lags 0.25-2 s.

    e = mean-removed spectral-flux onset envelope (positive dB differences of a ~32 ms/10 ms
    torchaudio spectrogram, 80 dB range). If the flux std is < 0.05 dB (no onsets at all:
    steady tone, smooth fade, silence) the result is 0 instead of an autocorrelation of
    numerical noise. Steady beat (clicks at 120 bpm) ~0.96, white noise ~0.08. Detects
    "no rhythm / unstable pulse".
    """
    return _pulse(_check(audio, sr, 1.0, "pulse_clarity"), sr)


def _chroma_entropy(spec: np.ndarray, n_fft: int, sr: int) -> float:
    freqs = np.arange(spec.shape[0]) * sr / n_fft
    keep = (freqs >= 55.0) & (freqs <= min(5000.0, sr / 2.0))
    pc = (np.round(12.0 * np.log2(freqs[keep] / 440.0)).astype(int) + 9) % 12  # C=0 ... A=9
    chroma = np.bincount(pc, weights=spec[keep].sum(axis=1), minlength=12)
    if chroma.sum() <= 0:
        return 0.0
    p = chroma[chroma > 0] / chroma.sum()
    return float(np.clip(-(p * np.log2(p)).sum() / np.log2(12.0), 0.0, 1.0))


def chroma_entropy(audio: np.ndarray, sr: int) -> float:
    """Entropy (bits / log2 12, in [0,1]) of the power-weighted mean chroma vector.

    STFT bins 55 Hz-5 kHz (torchaudio Spectrogram, ~0.1 s window) are mapped to the nearest
    pitch class ``round(12 log2(f/440)) + 9 mod 12``. Pure tone ~0, white noise ~1, music in
    between; silence 0. Detects tonally shapeless output (noise, mush) vs. a clear key.
    """
    x = _check(audio, sr, 0.2, "chroma_entropy")
    return _chroma_entropy(*_power_spec(x, sr, 0.1), sr)


def clip_metrics(audio: np.ndarray, sr: int, silence_threshold_dbfs: float = -60.0) -> dict:
    """All per-clip metrics above in one dict (filters and spectrogram computed once).

    Keys: integrated_loudness_lufs, loudness_slope_lu_per_s, loudness_thirds_delta_lu,
    tail_drop_lu (tail 2 s), silence_ratio, spectral_flatness, pulse_clarity, chroma_entropy,
    rms_dbfs_per_second (list), loudness_curve_lufs (list), duration_s. Needs >= 2.4 s audio.
    """
    x = _check(audio, sr, 2.4, "clip_metrics")
    dur = x.size / sr
    t, lufs = _curve(_k_weighted(x, sr), sr, 0.4, 0.1)
    spec, n_fft = _power_spec(x, sr, 0.1)
    return {
        "integrated_loudness_lufs": integrated_loudness(x, sr),
        "loudness_slope_lu_per_s": float(np.polyfit(t, lufs, 1)[0]),
        "loudness_thirds_delta_lu": _thirds(t, lufs, dur),
        "tail_drop_lu": _tail(t, lufs, dur, 2.0),
        "silence_ratio": silence_ratio(x, sr, silence_threshold_dbfs),
        "spectral_flatness": _flatness(spec),
        "pulse_clarity": _pulse(x, sr),
        "chroma_entropy": _chroma_entropy(spec, n_fft, sr),
        "rms_dbfs_per_second": rms_per_second(x, sr),
        "loudness_curve_lufs": [float(v) for v in lufs],
        "duration_s": float(dur),
    }


@dataclass(frozen=True)
class FlagThresholds:
    """Flag limits. decaying: slope < limit; silent_tail: tail_drop < limit;
    mostly_silent: silence_ratio > limit; noisy: flatness > limit. silence_threshold_dbfs
    is the frame level used when measuring silence_ratio."""

    decaying_slope_lu_per_s: float = -0.5
    silent_tail_drop_lu: float = -10.0
    mostly_silent_ratio: float = 0.5
    noisy_flatness: float = 0.3
    silence_threshold_dbfs: float = -60.0


_FLAG_KEYS = ("loudness_slope_lu_per_s", "tail_drop_lu", "silence_ratio", "spectral_flatness")


def _scalars(metrics: dict, what: str) -> list[float]:
    missing = [k for k in _FLAG_KEYS if k not in metrics]
    if missing:
        raise ValueError(f"{what}: metrics lack keys {missing}")
    vals = [float(metrics[k]) for k in _FLAG_KEYS]
    if not np.isfinite(vals).all():
        raise ValueError(f"{what}: non-finite metric values {dict(zip(_FLAG_KEYS, vals))}")
    return vals


def flags(metrics: dict, thresholds: FlagThresholds = FlagThresholds()) -> list[str]:
    """Subset of ["decaying", "silent_tail", "mostly_silent", "noisy"] whose threshold is crossed (strictly)."""
    slope, tail, silence, flat = _scalars(metrics, "flags")
    hit = (slope < thresholds.decaying_slope_lu_per_s, tail < thresholds.silent_tail_drop_lu,
           silence > thresholds.mostly_silent_ratio, flat > thresholds.noisy_flatness)
    return [name for name, h in zip(FLAG_NAMES, hit) if h]


def calibrate_thresholds(reference_metrics: list[dict], base: FlagThresholds = FlagThresholds(), *,
                         slope_margin: float = 0.25, tail_margin: float = 3.0, silence_margin: float = 0.1,
                         flatness_margin: float = 0.05, low_pct: float = 5.0, high_pct: float = 95.0) -> FlagThresholds:
    """Thresholds relative to real (training) clips, never stricter than `base`.

    decaying = min(base, P5(slopes) - slope_margin); silent_tail = min(base, P5(tail drops) -
    tail_margin); mostly_silent = min(1, max(base, P95(silence) + silence_margin)); noisy =
    min(1, max(base, P95(flatness) + flatness_margin)). So a flag fires only if a generated
    clip is worse than ~95% of real clips (plus a margin) *and* worse than the absolute base
    (real songs with fade-outs or hissy recordings do not raise false alarms). numpy.percentile.
    """
    if not reference_metrics:
        raise ValueError("calibrate_thresholds: no reference metrics given")
    slope, tail, silence, flat = np.array([_scalars(m, "calibrate_thresholds") for m in reference_metrics]).T
    return replace(
        base,
        decaying_slope_lu_per_s=float(min(base.decaying_slope_lu_per_s, np.percentile(slope, low_pct) - slope_margin)),
        silent_tail_drop_lu=float(min(base.silent_tail_drop_lu, np.percentile(tail, low_pct) - tail_margin)),
        mostly_silent_ratio=float(min(1.0, max(base.mostly_silent_ratio, np.percentile(silence, high_pct) + silence_margin))),
        noisy_flatness=float(min(1.0, max(base.noisy_flatness, np.percentile(flat, high_pct) + flatness_margin))),
    )


_TABLE = (("file", None, "{}"), ("LUFS", "integrated_loudness_lufs", "{:.1f}"),
          ("slope LU/s", "loudness_slope_lu_per_s", "{:+.2f}"), ("tail LU", "tail_drop_lu", "{:+.1f}"),
          ("silence", "silence_ratio", "{:.2f}"), ("flatness", "spectral_flatness", "{:.3f}"),
          ("pulse", "pulse_clarity", "{:.2f}"), ("chroma H", "chroma_entropy", "{:.2f}"), ("flags", None, "{}"))


def _cell(row: dict, head: str, key: str | None, fmt: str) -> str:
    if head == "flags":
        return ",".join(row["flags"]) or "-"
    return row["file"] if key is None else fmt.format(row[key])


def metrics_cli(argv: list[str], thresholds: FlagThresholds = FlagThresholds()) -> int:
    """`musicgen-lora metrics FILE... [--json]`; `argv` are the arguments after `metrics`.

    Reads each file with soundfile (channels averaged), prints an aligned table, or with
    --json one JSON object per file per line (scalar metrics, rms_dbfs_per_second, file, flags).
    Unreadable/invalid files print ``error: FILE: reason`` to stderr; returns 1 if any failed.
    """
    parser = argparse.ArgumentParser(prog="musicgen-lora metrics", description="Per-clip audio metrics and flags.")
    parser.add_argument("files", nargs="+", metavar="FILE")
    parser.add_argument("--json", action="store_true", help="one JSON object per file per line")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage errors / --help: return instead of exiting the caller
        return int(exc.code or 0)
    rows, rc = [], 0
    for path in args.files:
        try:
            data, sr = sf.read(path, dtype="float64", always_2d=True)
            m = clip_metrics(data.mean(axis=1), int(sr), thresholds.silence_threshold_dbfs)
            m.pop("loudness_curve_lufs")
            row = {"file": path, **m, "flags": flags(m, thresholds)}
        except Exception as exc:  # soundfile raises several types; metrics raise ValueError
            print(f"error: {path}: {exc}", file=sys.stderr)
            rc = 1
            continue
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            rows.append([_cell(row, head, key, fmt) for head, key, fmt in _TABLE])
    if rows:
        table = [[head for head, _, _ in _TABLE]] + rows
        widths = [max(len(r[i]) for r in table) for i in range(len(_TABLE))]
        for r in table:
            print("  ".join(c.ljust(w) if i in (0, len(r) - 1) else c.rjust(w)
                            for i, (c, w) in enumerate(zip(r, widths))).rstrip())
    return rc
