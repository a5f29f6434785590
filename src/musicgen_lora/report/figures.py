"""The page's pictures: a small mel spectrogram per clip (PNG) and the loss curve (inline SVG).

The spectrogram is 300x80 pixels: enough to see a clip fade to silence, turn to noise or lose
its beat at a glance, small enough for dozens on a page. It is drawn on matplotlib's Agg canvas
directly (no pyplot state, no display) with the mel settings of `summarize`'s spectrogram plot.
The loss curve is hand-written SVG: a few lines of text in the page, no font or file to ship,
and the same bytes on every run (matplotlib's SVG embeds a date).
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
from .html import esc, fmt, number

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


def loss_svg(epochs: list[dict], width: int = 460, height: int = 220) -> str:
    """Valid loss (epoch 0 = the base model) and train loss per epoch, as an inline <svg>."""
    series = {name: [(e["epoch"], number(e.get(key))) for e in epochs if number(e.get(key)) is not None]
              for name, key in (("valid", "valid_loss"), ("train", "train_loss"))}
    points = [p for s in series.values() for p in s]
    if not points:
        return '<p class="muted">no losses recorded</p>'
    left, right, top, bottom = 48, 12, 12, 34
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
    pad = (y1 - y0) * 0.08 or abs(y1) * 0.05 or 1.0
    y0, y1 = y0 - pad, y1 + pad

    def sx(x):
        return left + (x - x0) / ((x1 - x0) or 1) * (width - left - right)

    def sy(y):
        return top + (y1 - y) / (y1 - y0) * (height - top - bottom)

    parts = [f'<svg class="loss" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="loss per epoch">',
             f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" '
             f'fill="none" stroke="#bbb"/>']
    for i in range(5):
        y = y0 + (y1 - y0) * i / 4
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" stroke="#eee"/>'
                     f'<text x="{left - 4}" y="{sy(y) + 4:.1f}" text-anchor="end">{y:.3g}</text>')
    for e in sorted({p[0] for p in points}):
        parts.append(f'<text x="{sx(e):.1f}" y="{height - bottom + 14}" text-anchor="middle">{e}</text>')
    parts.append(f'<text x="{left + (width - left - right) / 2:.1f}" y="{height - 4}" text-anchor="middle">'
                 f'epoch (0 = base model)</text>')
    for (name, pts), colour, dash in zip(series.items(), ("#1a73e8", "#e8710a"), ("", ' stroke-dasharray="5 3"')):
        if not pts:
            continue
        line = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        parts.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        parts += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3.5" fill="{colour}"><title>{esc(name)} loss, '
                  f'epoch {x}: {fmt(y)}</title></circle>' for x, y in pts]
    for i, (name, colour) in enumerate((("valid", "#1a73e8"), ("train", "#e8710a"))):
        parts.append(f'<rect x="{width - right - 70}" y="{top + 8 + 16 * i}" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{width - right - 55}" y="{top + 17 + 16 * i}">{name}</text>')
    parts.append("</svg>")
    return "".join(parts)
