"""The page's pictures: a small mel spectrogram per clip (PNG). The loss curve is summarize's own
metrics/plots/loss.png (metrics/plots.py), shown on the page: one loss figure.

The spectrogram is 300x80 pixels: enough to see a clip fade to silence, turn to noise or lose
its beat at a glance, small enough for dozens on a page. It is drawn on matplotlib's Agg canvas
directly (no pyplot state, no display) with the mel settings of `summarize`'s spectrogram plot.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torchaudio
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..core.audio import read_audio
from ..core.files import atomic_path

SPEC_SIZE = (300, 80)  # pixels


@lru_cache(maxsize=4)
def _mel(sample_rate: int) -> torchaudio.transforms.MelSpectrogram:
    return torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=1024, hop_length=256, n_mels=64)


def spectrogram_png(wav: Path, png: Path) -> None:
    """Log-mel spectrogram of `wav` (channels averaged), 80 dB range, no axes."""
    data, sr = read_audio(wav)
    audio = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))
    db = torchaudio.functional.amplitude_to_DB(_mel(sr)(audio), 10, 1e-10, 0, top_db=80).numpy()
    fig = Figure(figsize=(SPEC_SIZE[0] / 100, SPEC_SIZE[1] / 100), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(db, origin="lower", aspect="auto", cmap="magma", interpolation="nearest")
    ax.set_axis_off()
    with atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
