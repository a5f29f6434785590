"""Reading and writing audio: soundfile for files, torchaudio for resampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from .errors import UserError
from .files import atomic_path


class AudioError(UserError):
    """An audio file that cannot be used; the message names the file and why."""


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """(float32 samples (N, channels), sample rate) of any file soundfile reads."""
    if not Path(path).exists():
        raise AudioError(f"{path}: missing (listed but not on disk); regenerate it with `dvc repro`")
    try:
        return sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types for unreadable files
        raise AudioError(f"{path}: unreadable audio ({exc})") from exc


def load_mono(path: Path, sample_rate: int) -> np.ndarray:
    """Mono float32 audio at `sample_rate`: channels averaged, resampled with torchaudio."""
    data, sr = read_audio(path)
    if data.size == 0:
        raise AudioError(f"{path}: no samples")
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: contains NaN or infinite samples")
    mono = data.mean(axis=1)
    if sr != sample_rate:
        mono = AF.resample(torch.from_numpy(mono), sr, sample_rate).numpy()
    return np.ascontiguousarray(mono, dtype=np.float32)


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """16-bit PCM WAV, written to a temp name then renamed."""
    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
