"""Audio at the pipeline's rate and channels: in blocks (`stream_audio`), so memory stays flat in
a recording's length (a two-hour mix segments in the memory of one clip), or whole (`load_audio`,
the blocks joined: one code path, the same samples either way).

Resampling is torchaudio's, block by block: each block is resampled with enough real samples
of context on each side that every output sample sees the input it sees in the whole-file
resampling (blocks start on the rate ratio's grid), so only where the file starts and ends
does the zero padding of the whole-file resampling apply, as it does there. The sums can round
differently in their last bit from one whole-file call (<= 3e-8 measured); the blocks themselves
are fixed (10 s reads), so a file gives the same samples on every run and machine.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torchaudio.functional as AF

from .audio import AudioError, as_channels, check_complete, opened, read_block, warn_notes

LOWPASS_WIDTH = 6  # torchaudio.functional.resample's default lowpass_filter_width
ROLLOFF = 0.99  # and its rolloff


class Resampler:
    """torchaudio's resampling of a signal (channels, N) that arrives in pieces: `push` each piece,
    then `finish`; the outputs joined are `AF.resample` of the whole, to the last bit of a sum."""

    def __init__(self, orig: int, new: int):
        g = math.gcd(orig, new)
        self.orig, self.new, self.o, self.n = orig, new, orig // g, new // g
        width = math.ceil(LOWPASS_WIDTH * self.o / (min(self.o, self.n) * ROLLOFF))  # kernel reach, input samples
        self.context = self.o * (math.ceil(width / self.o) + 2)  # real samples each side, on the o-grid
        self.buf: np.ndarray | None = None
        self.buf_start = 0  # input index of buf[..., 0]
        self.done = 0  # input index up to which output was given (on the o-grid)

    def _out(self, stop: int | None) -> np.ndarray:
        """Output for input [done, stop) (to the end: stop None), from a chunk with context."""
        assert self.buf is not None  # called from push (after it sets buf) and from finish (buf checked)
        lo = max(0, self.done - self.context)
        chunk = self.buf[..., lo - self.buf_start : None if stop is None else stop + self.context - self.buf_start]
        out = AF.resample(torch.from_numpy(np.ascontiguousarray(chunk)), self.orig, self.new).numpy()
        skip = (self.done - lo) * self.n // self.o
        return out[..., skip:] if stop is None else out[..., skip : skip + (stop - self.done) * self.n // self.o]

    def push(self, x: np.ndarray) -> np.ndarray:
        self.buf = x if self.buf is None else np.concatenate([self.buf, x], axis=-1)
        stop = (self.buf_start + self.buf.shape[-1] - self.context) // self.o * self.o
        if stop <= self.done:
            return self.buf[..., :0]
        out = self._out(stop)
        self.done = stop
        drop = max(0, stop - self.context) - self.buf_start  # keep the context the next output needs
        self.buf, self.buf_start = self.buf[..., drop:], self.buf_start + drop
        return out

    def finish(self) -> np.ndarray:
        if self.buf is None or self.buf_start + self.buf.shape[-1] <= self.done:
            return np.zeros((0 if self.buf is None else self.buf.shape[0], 0), np.float32)
        return self._out(None)


def stream_audio(path: Path, sample_rate: int, channels: int = 1, block: int = 0) -> Iterator[np.ndarray]:
    """Consecutive blocks of `block` samples (the last one shorter) of the file at `sample_rate`:
    mono (n,) or (n, channels) float32 (channels averaged, or see `audio.as_channels`). NaN or infinite
    samples, no samples, or a file cut off before the length its header declares raise
    AudioError, possibly after blocks were given (a caller that keeps blocks drops them)."""
    block = block or sample_rate * 60
    with opened(path) as f:
        sr, read, notes = f.samplerate, 0, []
        resampler = Resampler(sr, sample_rate) if sr != sample_rate else None
        pending: np.ndarray = np.zeros((channels, 0), np.float32)
        while True:
            data, caught = read_block(f, path, sr * 10)  # notes caught only around the read: the caller's are its own
            notes += caught
            if len(data) == 0:
                break
            if not np.isfinite(data).all():
                raise AudioError(f"{path}: contains NaN or infinite samples")
            read += len(data)
            piece: np.ndarray = as_channels(data, channels).astype(np.float32, copy=False)
            pending = np.concatenate([pending, resampler.push(piece) if resampler else piece], axis=-1)
            while pending.shape[-1] >= block:
                yield _layout(pending[:, :block], channels)
                pending = pending[:, block:]
        if read == 0:
            raise AudioError(f"{path}: no samples")
        check_complete(path, read, f)
    if resampler:
        pending = np.concatenate([pending, resampler.finish()], axis=-1)
    for i in range(0, pending.shape[-1], block):
        yield _layout(pending[:, i : i + block], channels)
    warn_notes(path, notes)


def _layout(x: np.ndarray, channels: int) -> np.ndarray:
    return np.ascontiguousarray(x[0] if channels == 1 else x.T, dtype=np.float32)


def load_audio(path: Path, sample_rate: int, channels: int = 1) -> np.ndarray:
    """The whole file at `sample_rate`: mono (N,) with channels averaged, or (N, channels)."""
    return np.concatenate(list(stream_audio(path, sample_rate, channels)))


def load_mono(path: Path, sample_rate: int) -> np.ndarray:
    """Mono float32 audio at `sample_rate`: channels averaged, resampled with torchaudio."""
    return load_audio(path, sample_rate, 1)
