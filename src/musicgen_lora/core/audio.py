"""Reading and writing audio: soundfile for files, torchaudio for resampling."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from typing import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

from .errors import UserError
from .files import atomic_path

log = logging.getLogger(__name__)


class AudioError(UserError):
    """An audio file that cannot be used; the message names the file and why."""


# Read by libsndfile (soundfile); the rest of AUDIO_SUFFIXES go through ffmpeg, where installed.
SOUNDFILE_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff"}
FFMPEG_SUFFIXES = {".m4a", ".mp4", ".aac", ".wma", ".webm"}
AUDIO_SUFFIXES = SOUNDFILE_SUFFIXES | FFMPEG_SUFFIXES


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """(float32 samples (N, channels), sample rate) of an audio file: soundfile for what libsndfile
    reads, ffmpeg (decoding to a temporary 32-bit float WAV) for AAC and the like. A file cut off
    before the length its header declares is an error ("damaged"), never a short recording."""
    with opened(path) as f:
        data, notes = read_block(f, path)
        check_complete(path, len(data), f)
    warn_notes(path, notes)
    return data, f.samplerate


@contextmanager
def opened(path: Path) -> Iterator[sf.SoundFile]:
    """The file open for reading (all at once or in blocks): libsndfile's formats directly, the
    rest decoded by ffmpeg into a temporary WAV on disk (never into memory)."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if not path.is_file():  # a FIFO would block the reader forever
        raise AudioError(f"{path}: not a regular file (a folder, pipe or device)")
    with tempfile.TemporaryDirectory() as tmp:
        source = path
        if path.suffix.lower() in FFMPEG_SUFFIXES:
            source = Path(tmp) / "decoded.wav"
            _ffmpeg_to_wav(path, source)
        handle = _decoded(path, lambda: sf.SoundFile(str(source)))[0]
        with handle:
            yield handle


def read_block(f: sf.SoundFile, path: Path, frames: int = -1) -> tuple[np.ndarray, list[str]]:
    """Up to `frames` (all: -1) float32 frames (n, channels) of an open file, and what the decoder
    printed meanwhile; a decoder failure is one AudioError naming the file."""
    return _decoded(path, lambda: f.read(frames=frames, dtype="float32", always_2d=True))


def _decoded(path: Path, call) -> tuple:
    """(call(), the decoder's notes); soundfile's exceptions (several types) as one AudioError."""
    with decoder_notes() as notes:
        try:
            result, error = call(), None
        except Exception as exc:  # soundfile raises several types for unreadable files
            result, error = None, exc
    if error is not None:
        raise AudioError(f"{path}: {_unreadable(path, error, notes)}") from None
    return result, notes


def check_complete(path: Path, frames_read: int, f: sf.SoundFile) -> None:
    """A file that ends before the length its header declares is damaged (libsndfile reports a
    WAV's length as what the file holds, so its header is read for what it declares)."""
    declared = _wav_declared_frames(Path(path)) or f.frames
    if frames_read < 0.99 * declared:
        raise AudioError(
            f"{path}: damaged: the audio stops at {frames_read / f.samplerate:.2f} s of the "
            f"{declared / f.samplerate:.2f} s its header declares (a cut-off copy or download?); "
            f"copy it again"
        )


def warn_notes(path: Path, notes: list[str]) -> None:
    """Decoded, but the decoder saw damage: one line that names the file."""
    if notes:
        log.warning(
            f"{path}: warning: the decoder reported {notes[0]!r}"
            + (f" and {len(notes) - 1} more notes" if len(notes) > 1 else "")
            + "; used what it decoded"
        )


def _unreadable(path: Path, exc: Exception, notes: list[str]) -> str:
    message = " ".join(str(exc).split())
    if "possibly a pipe" in message or "not recognised" in message.lower():
        # libsndfile's words for content it cannot identify, misleading for a regular file
        why = f"not {path.suffix or 'audio'} audio: libsndfile recognises no format in it (a damaged or renamed file?)"
    else:
        why = f"damaged or unreadable audio (libsndfile: {message})"
    return why + (f"; the decoder said {notes[0]!r}" if notes else "")


@contextmanager
def decoder_notes():
    """The lines libsndfile's decoders (mpg123) print straight to file descriptor 2 while inside,
    collected into the list this yields so the caller can name the file they are about. The
    descriptor is restored on exit; nothing runs a child process meanwhile."""
    notes: list[str] = []
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2 (a daemon): nothing to catch
        yield notes
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield notes
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            notes.extend(line.strip() for line in sink.read().decode(errors="replace").splitlines() if line.strip())


def _wav_declared_frames(path: Path) -> int | None:
    """Frames a WAV's data chunk declares (libsndfile reports only what the file holds), or None
    for another format or a streaming header of unknown length."""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:] != b"WAVE":
            return None
        block_align = None
        while len(chunk := f.read(8)) == 8:
            cid, size = chunk[:4], int.from_bytes(chunk[4:], "little")
            if cid == b"fmt ":
                fmt = f.read(size + (size & 1))
                block_align = int.from_bytes(fmt[12:14], "little") if len(fmt) >= 14 else None
            elif cid == b"data":
                return size // block_align if block_align and size not in (0, 0xFFFFFFFF) else None
            else:
                f.seek(size + (size & 1), 1)
    return None


def _ffmpeg_to_wav(path: Path, wav: Path) -> None:
    if shutil.which("ffmpeg") is None:
        raise AudioError(
            f"{path}: format not supported without ffmpeg ({path.suffix}); install ffmpeg "
            f"(apt-get install ffmpeg) or convert the file to flac/wav"
        )
    proc = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-acodec", "pcm_f32le", str(wav)],
        capture_output=True,
        text=True,
    )
    if proc.returncode or not wav.exists():
        raise AudioError(f"{path}: unreadable audio (ffmpeg: {proc.stderr.strip()[:200]})")


def as_channels(data: np.ndarray, channels: int) -> np.ndarray:
    """Audio (channels, N) from samples (N, C): one channel is the mean of all; two keep a
    2-channel file as it is and duplicate anything else (a mono source, or the mean of more
    channels)."""
    if channels == 1:
        return data.mean(axis=1)[None]
    if data.shape[1] == channels:
        return np.ascontiguousarray(data.T)
    return np.repeat(data.mean(axis=1)[None], channels, axis=0)


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """16-bit PCM WAV, written to a temp name then renamed."""
    with atomic_path(path) as tmp:
        try:
            sf.write(str(tmp), np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
        except sf.LibsndfileError as exc:  # libsndfile says "System error." for a full disk
            code = errno.ENOSPC if shutil.disk_usage(tmp.parent).free < audio.nbytes else errno.EIO
            raise OSError(code, f"{os.strerror(code)} (libsndfile: {exc.error_string})", str(path)) from None
