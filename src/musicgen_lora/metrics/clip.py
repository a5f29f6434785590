"""Per-clip audio metrics replacing judgement by ear.

Loudness follows ITU-R BS.1770 (pyloudnorm's K-weighting and meter); spectra come from
torchaudio.transforms.Spectrogram; everything else is numpy/scipy. Every function takes mono
float audio and an int sample rate and raises ValueError for empty, too short or non-finite
input, so no metric is ever NaN. Flags are in `flags.py`, set-level metrics in `style.py`.
"""

from __future__ import annotations

import numpy as np
import pyloudnorm

from .signal import checked_audio, power_spectrum

LUFS_FLOOR = -70.0  # BS.1770 absolute gate; digital silence reports this instead of -inf
DBFS_FLOOR = -120.0  # floor for RMS dBFS values of digital silence
MIN_CLIP_S = 2.4  # the shortest audio clip_metrics measures


def _k_weighted(x: np.ndarray, sr: int) -> np.ndarray:
    # BS.1770's K-weighting (shelf + high-pass) through pyloudnorm's public IIRfilter, with the
    # very stages and constants its Meter builds for filter_class "K-weighting".
    for stage in (
        pyloudnorm.IIRfilter(4.0, 1 / np.sqrt(2), 1500.0, sr, "high_shelf"),
        pyloudnorm.IIRfilter(0.0, 0.5, 38.0, sr, "high_pass"),
    ):
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
    x = checked_audio(audio, sr, 0.4, "integrated_loudness")
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
    x = checked_audio(audio, sr, block_s, "loudness_curve")
    return _curve(_k_weighted(x, sr), sr, block_s, hop_s)


def loudness_slope(audio: np.ndarray, sr: int) -> float:
    """Least-squares slope (LU/s) of ``loudness_curve`` against time, over *all* blocks.

    Floored (-70) blocks are included on purpose: fading into silence is exactly the
    "grows quieter over the clip" failure; the floor bounds their weight. Steady tone ~0;
    a tone decaying 30 dB over D seconds gives ~ -30/D. numpy.polyfit.
    """
    t, lufs = loudness_curve(checked_audio(audio, sr, 0.5, "loudness_slope"), sr)  # >= 2 blocks
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
    x = checked_audio(audio, sr, 1.2, "loudness_thirds_delta")
    return _thirds(*loudness_curve(x, sr), x.size / sr)


def _tail(t: np.ndarray, lufs: np.ndarray, dur: float, tail_s: float, block_s: float = 0.4) -> float:
    start = t - block_s / 2.0
    cut = dur - tail_s
    tail, rest = lufs[start >= cut - 1e-9], lufs[start + block_s <= cut + 1e-9]
    if tail_s < block_s or tail.size == 0 or rest.size == 0:
        raise ValueError(
            f"tail_drop: need tail_s >= {block_s} s and audio > tail_s + {block_s} s "
            f"(got tail_s={tail_s}, audio {dur:.2f} s)"
        )
    return float(tail.mean() - rest.mean())


def tail_drop(audio: np.ndarray, sr: int, tail_s: float = 2.0) -> float:
    """Mean block loudness of the last `tail_s` seconds minus that of the rest (LU, dB-domain means).

    Uses ``loudness_curve`` blocks lying wholly inside each region (so the boundary does not
    leak). Negative = the ending gets quieter: detects "decaying ending" / fade to silence.
    """
    x = checked_audio(audio, sr, tail_s + 0.4, "tail_drop")
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
    x = checked_audio(audio, sr, frame_s, "silence_ratio")
    return float(np.mean(_frame_dbfs(x, max(1, int(round(frame_s * sr)))) < threshold_dbfs))


def rms_per_second(audio: np.ndarray, sr: int) -> list[float]:
    """RMS level in dBFS (full-scale sine = -3.01) per 1-second window, floored at -120 dBFS.

    numpy only. Needs >= 0.5 s; a trailing partial window is kept if it is >= 0.5 s.
    A readable loudness-over-time trace for reports ("grows quieter", dropouts).
    """
    x = checked_audio(audio, sr, 0.5, "rms_per_second")
    values = list(_frame_dbfs(x, sr)) if x.size >= sr else []
    rem = x[(x.size // sr) * sr :]
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
    x = checked_audio(audio, sr, 0.2, "spectral_flatness")
    return _flatness(power_spectrum(x, sr, 0.1)[0])


def _pulse(x: np.ndarray, sr: int, lag_min_s: float = 0.25, lag_max_s: float = 2.0) -> float:
    hop = max(1, int(round(0.01 * sr)))
    spec, _ = power_spectrum(x, sr, 0.032, hop)
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
    return _pulse(checked_audio(audio, sr, 1.0, "pulse_clarity"), sr)


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
    x = checked_audio(audio, sr, 0.2, "chroma_entropy")
    return _chroma_entropy(*power_spectrum(x, sr, 0.1), sr)


def clip_metrics(audio: np.ndarray, sr: int, silence_threshold_dbfs: float = -60.0) -> dict:
    """All per-clip metrics above in one dict (filters and spectrogram computed once).

    Keys: integrated_loudness_lufs, loudness_slope_lu_per_s, loudness_thirds_delta_lu,
    tail_drop_lu (tail 2 s), silence_ratio, spectral_flatness, pulse_clarity, chroma_entropy,
    rms_dbfs_per_second (list), loudness_curve_lufs (list), duration_s. Needs >= 2.4 s audio.
    """
    x = checked_audio(audio, sr, MIN_CLIP_S, "clip_metrics")
    dur = x.size / sr
    t, lufs = _curve(_k_weighted(x, sr), sr, 0.4, 0.1)
    spec, n_fft = power_spectrum(x, sr, 0.1)
    return {
        "integrated_loudness_lufs": integrated_loudness(x, sr),
        "loudness_slope_lu_per_s": float(np.polyfit(t, lufs, 1)[0]),
        "loudness_thirds_delta_lu": _thirds(t, lufs, dur),
        "tail_drop_lu": _tail(t, lufs, dur, 2.0),
        "silence_ratio": silence_ratio(x, sr, silence_threshold_dbfs),
        "spectral_flatness": _flatness(spec),
        "pulse_clarity": _pulse(x, sr),
        "chroma_entropy": _chroma_entropy(spec, n_fft, sr),
        # curves to 0.01 dB: finer than any loudness difference a listener or a flag can tell
        "rms_dbfs_per_second": [round(v, 2) for v in rms_per_second(x, sr)],
        "loudness_curve_lufs": [round(float(v), 2) for v in lufs],
        "duration_s": float(dur),
    }
