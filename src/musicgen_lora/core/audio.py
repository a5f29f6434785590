"""Reading and writing audio: soundfile for files, torchaudio for resampling."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from .errors import UserError
from .files import atomic_path


class AudioError(UserError):
    """An audio file that cannot be used; the message names the file and why."""


# Read by libsndfile (soundfile); the rest of AUDIO_SUFFIXES go through ffmpeg, where installed.
SOUNDFILE_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff"}
FFMPEG_SUFFIXES = {".m4a", ".mp4", ".aac", ".wma", ".webm"}
AUDIO_SUFFIXES = SOUNDFILE_SUFFIXES | FFMPEG_SUFFIXES


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """(float32 samples (N, channels), sample rate) of an audio file: soundfile for what libsndfile
    reads, ffmpeg (decoding to 32-bit float WAV in memory) for AAC and the like."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if not path.is_file():  # a FIFO would block the reader forever
        raise AudioError(f"{path}: not a regular file (a folder, pipe or device)")
    if path.suffix.lower() in FFMPEG_SUFFIXES:
        return _read_with_ffmpeg(path)
    try:
        return sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types for unreadable files
        raise AudioError(f"{path}: unreadable audio ({exc})") from exc


def _read_with_ffmpeg(path: Path) -> tuple[np.ndarray, int]:
    if shutil.which("ffmpeg") is None:
        raise AudioError(f"{path}: format not supported without ffmpeg ({path.suffix}); install ffmpeg "
                         f"(apt-get install ffmpeg) or convert the file to flac/wav")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "decoded.wav"
        proc = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-acodec", "pcm_f32le", str(wav)],
                              capture_output=True, text=True)
        if proc.returncode or not wav.exists():
            raise AudioError(f"{path}: unreadable audio (ffmpeg: {proc.stderr.strip()[:200]})")
        return sf.read(str(wav), dtype="float32", always_2d=True)


def as_channels(data: np.ndarray, channels: int) -> np.ndarray:
    """Audio (channels, N) from samples (N, C): one channel is the mean of all; two keep a
    2-channel file as it is and duplicate anything else (a mono source, or the mean of more
    channels)."""
    if channels == 1:
        return data.mean(axis=1)[None]
    if data.shape[1] == channels:
        return np.ascontiguousarray(data.T)
    return np.repeat(data.mean(axis=1)[None], channels, axis=0)


def load_audio(path: Path, sample_rate: int, channels: int = 1) -> np.ndarray:
    """Float32 audio at `sample_rate` (resampled with torchaudio): mono (N,) with channels
    averaged, or (N, channels) (see `as_channels`)."""
    data, sr = read_audio(path)
    if data.size == 0:
        raise AudioError(f"{path}: no samples")
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: contains NaN or infinite samples")
    audio = as_channels(data, channels)
    if sr != sample_rate:
        audio = AF.resample(torch.from_numpy(np.ascontiguousarray(audio)), sr, sample_rate).numpy()
    return np.ascontiguousarray(audio[0] if channels == 1 else audio.T, dtype=np.float32)


def load_mono(path: Path, sample_rate: int) -> np.ndarray:
    """Mono float32 audio at `sample_rate`: channels averaged, resampled with torchaudio."""
    return load_audio(path, sample_rate, 1)


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """16-bit PCM WAV, written to a temp name then renamed."""
    with atomic_path(path) as tmp:
        try:
            sf.write(str(tmp), np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
        except sf.LibsndfileError as exc:  # libsndfile says "System error." for a full disk
            code = errno.ENOSPC if shutil.disk_usage(tmp.parent).free < audio.nbytes else errno.EIO
            raise OSError(code, f"{os.strerror(code)} (libsndfile: {exc.error_string})", str(path)) from None
