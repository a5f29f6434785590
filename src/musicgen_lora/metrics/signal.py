"""Input checks and spectra shared by the per-clip and set-level metrics."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torchaudio.transforms as T


def checked_audio(audio: np.ndarray, sr: int, min_s: float, what: str) -> np.ndarray:
    """Validated mono float64 copy of `audio`; ValueError for bad shape/rate, NaN/inf or too short.
    Stereo audio (N, 2) (and (N, 1)) is measured on its mid channel, (L + R) / 2."""
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ValueError(f"{what}: sample_rate must be a positive int, got {sr!r}")
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim == 2 and x.shape[1] in (1, 2):
        x = x.mean(axis=1)
    if x.ndim != 1:
        raise ValueError(f"{what}: expected mono (N,) or stereo (N, 2) audio, got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"{what}: audio is empty")
    if not np.isfinite(x).all():
        raise ValueError(f"{what}: audio contains NaN or infinite samples")
    if x.size < int(np.ceil(min_s * sr)):
        raise ValueError(f"{what}: audio is {x.size / sr:.3f} s, needs at least {min_s:.3f} s")
    return x


@lru_cache(maxsize=16)
def _spectrogram(n_fft: int, hop: int) -> T.Spectrogram:
    return T.Spectrogram(n_fft=n_fft, hop_length=hop, power=2.0)


def power_spectrum(x: np.ndarray, sr: int, win_s: float, hop: int | None = None) -> tuple[np.ndarray, int]:
    """Power spectrogram (freq bins, frames) via torchaudio, Hann window of n_fft = next pow2 >= win_s*sr."""
    n_fft = 1 << int(np.ceil(np.log2(win_s * sr)))
    with torch.no_grad():
        s = _spectrogram(n_fft, hop or n_fft // 4)(torch.from_numpy(x.astype(np.float32)))
    return s.double().numpy(), n_fft
