"""How audible a seam is: the loudness and spectral jump across a point of a clip.

For windowed continuation (`model/continuation.py`): at each sample where a new window's codes
begin, the audio just before is compared with the audio just after. The same measure taken at
every other point of the clip (`typical`: the median absolute jump) says how much the clip moves
anyway, so a seam's figure reads against the music's own changes.

- loudness jump (LU) = L_after - L_before, L the BS.1770 momentary loudness (`clip.loudness_curve`:
  K-weighted, 0.4 s block, ungated, floored at -70 LUFS) of the block ending at the seam and of
  the block starting at it. The curve is taken once over the whole clip, so the K-weighting
  filters run across the seam as in one recording.
- spectral jump (dB) = sqrt(mean_b (M_after[b] - M_before[b])^2): the RMS over 40 mel bands of the
  difference of M[b] = 10 log10(mean power in mel band b + 1e-10), the mean over the STFT frames
  (Hann, ~64 ms) that lie wholly within the 0.5 s before (after) the seam. 0 dB: the same average
  spectrum on both sides; a change of timbre or register raises it.

Seam points must fall on the hop grid (codec frames: `hop` samples per frame), as window
boundaries do.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torchaudio.functional as AF

from .clip import loudness_curve
from .signal import checked_audio, power_spectrum

LOUDNESS_BLOCK_S = 0.4
SPECTRUM_SPAN_S = 0.5
SPECTRUM_WINDOW_S = 0.064
MEL_BANDS = 40
POWER_FLOOR = 1e-10

DEFINITIONS = {
    "loudness_jump_lu": "momentary loudness (BS.1770, 0.4 s block) just after the seam minus just before",
    "spectral_jump_db": "RMS over 40 mel bands of the change in mean log-mel power (dB), 0.5 s after vs before",
    "typical": "median absolute jump over every other point of the clip",
    "percentile": "share of the clip's other points (%) whose absolute jump is smaller than the seam's",
}
STANDS_OUT_PERCENTILE = 95.0  # a seam that jumps more than 95% of the music's own moments is heard as one...
AUDIBLE_LU, AUDIBLE_DB = 1.0, 2.0  # ...if the jump is audible at all (~1 dB is a just-noticeable loudness step)


@dataclass(frozen=True)
class Seam:
    at_s: float
    loudness_before_lufs: float | None
    loudness_after_lufs: float | None
    loudness_jump_lu: float | None
    spectral_jump_db: float | None
    loudness_percentile: float | None = None
    spectral_percentile: float | None = None

    @property
    def verdict(self) -> str:
        """ "stands out" where a jump exceeds STANDS_OUT_PERCENTILE of the clip's own points and is
        audible, "blends in" where neither does, "n/a" where neither could be measured."""
        pairs = [
            (rank, abs(jump) >= floor)
            for rank, jump, floor in (
                (self.loudness_percentile, self.loudness_jump_lu, AUDIBLE_LU),
                (self.spectral_percentile, self.spectral_jump_db, AUDIBLE_DB),
            )
            if rank is not None
        ]
        if not pairs:
            return "n/a"
        return "stands out" if any(rank > STANDS_OUT_PERCENTILE and loud for rank, loud in pairs) else "blends in"


def _loudness(x: np.ndarray, sr: int, hop: int) -> tuple[np.ndarray, int]:
    """(LUFS of the block starting at each hop, block length in hops)."""
    per_block = max(1, round(LOUDNESS_BLOCK_S * sr / hop))
    if x.size < per_block * hop:
        return np.empty(0), per_block
    return loudness_curve(x, sr, block_s=per_block * hop / sr, hop_s=hop / sr)[1], per_block


def _mel_means(x: np.ndarray, sr: int, hop: int) -> tuple[np.ndarray, int, int]:
    """(cumulative mel power (frames + 1, bands) of STFT frames centred on each hop, frames per
    span, frames from a point to the first frame wholly on one side of it)."""
    spec, n_fft = power_spectrum(x, sr, SPECTRUM_WINDOW_S, hop=hop)  # centred frames: frame j at j * hop
    fb = AF.melscale_fbanks(spec.shape[0], 0.0, sr / 2, MEL_BANDS, sr).double().numpy()
    mel = spec.T @ fb
    return (
        np.concatenate([np.zeros((1, MEL_BANDS)), np.cumsum(mel, axis=0)]),
        max(1, round(SPECTRUM_SPAN_S * sr / hop)),
        math.ceil(n_fft / 2 / hop),
    )


def _spectral_jump(cum: np.ndarray, m: int, span: int, gap: int) -> float | None:
    """The jump at frame point m: frames [m - span, m - gap] before, [m + gap, m + span] after."""
    a0, a1, b0, b1 = max(0, m - span), m - gap, m + gap, min(cum.shape[0] - 2, m + span)
    if a1 < a0 or b1 < b0:
        return None
    before = (cum[a1 + 1] - cum[a0]) / (a1 - a0 + 1)
    after = (cum[b1 + 1] - cum[b0]) / (b1 - b0 + 1)
    diff = 10 * np.log10(after + POWER_FLOOR) - 10 * np.log10(before + POWER_FLOOR)
    return float(np.sqrt(np.mean(diff**2)))


def measure(audio: np.ndarray, sr: int, hop: int, seam_samples: list[int]) -> tuple[list[Seam], dict]:
    """Each seam's figures (None where the clip is too short on a side) and the clip's typical
    absolute jumps {loudness_jump_lu, spectral_jump_db} (None when no point has room)."""
    x = checked_audio(audio, sr, 2 * hop / sr, "seams")
    if any(s % hop for s in seam_samples):
        raise ValueError(f"seams: seam points must be multiples of the hop ({hop} samples)")
    lufs, per_block = _loudness(x, sr, hop)
    cum, span, gap = _mel_means(x, sr, hop)
    jumps = np.abs(lufs[per_block:] - lufs[:-per_block]) if lufs.size > per_block else np.empty(0)
    spectral_at = {
        m: j for m in range(span, cum.shape[0] - 1 - span) if (j := _spectral_jump(cum, m, span, gap)) is not None
    }
    spectral = list(spectral_at.values())
    # a seam's rank is among the points whose windows do not reach a seam (those share its jump)
    points = [s // hop for s in seam_samples]
    away = lambda m, reach: all(abs(m - p) > reach for p in points)  # noqa: E731
    own_loud = np.array([j for m, j in enumerate(jumps, start=per_block) if away(m, per_block)])
    own_spec = np.array([j for m, j in spectral_at.items() if away(m, span + gap)])
    seams = []
    for s in seam_samples:
        m = s // hop
        before = float(lufs[m - per_block]) if 0 <= m - per_block < lufs.size else None
        after = float(lufs[m]) if m < lufs.size else None
        loud = None if before is None or after is None else after - before
        spec = _spectral_jump(cum, m, span, gap)
        seams.append(
            Seam(round(s / sr, 3), before, after, loud, spec, _percentile(own_loud, loud), _percentile(own_spec, spec))
        )
    typical = {
        "loudness_jump_lu": float(np.median(jumps)) if jumps.size else None,
        "spectral_jump_db": float(np.median(spectral)) if spectral else None,
    }
    return seams, typical


def _percentile(population: np.ndarray, jump: float | None) -> float | None:
    if jump is None or population.size == 0:
        return None
    return round(100.0 * float(np.mean(population < abs(jump))), 1)


def as_dicts(seams: list[Seam]) -> list[dict]:
    return [{**asdict(s), "verdict": s.verdict} for s in seams]
