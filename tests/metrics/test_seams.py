"""Seam figures on signals whose jump is known."""

import numpy as np
import pytest

from musicgen_lora.metrics.seams import measure

SR, HOP = 16000, 320


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.05, int(seconds * SR))


def test_a_6_db_step_is_a_6_lu_and_6_db_jump():
    x = noise(4.0)
    x[2 * SR :] *= 2.0  # +6.02 dB from 2 s on
    (seam,), typical = measure(x, SR, HOP, [2 * SR])
    assert seam.at_s == 2.0
    assert seam.loudness_jump_lu == pytest.approx(6.02, abs=0.3)
    assert seam.spectral_jump_db == pytest.approx(6.02, abs=0.5)  # every band up by the same 6 dB
    assert typical["loudness_jump_lu"] < 1.0 and typical["spectral_jump_db"] < 1.5  # steady elsewhere
    assert seam.loudness_percentile > 95 and seam.verdict == "stands out"


def test_a_seamless_point_and_a_change_of_pitch():
    (seam,), _ = measure(noise(4.0, 1), SR, HOP, [2 * SR])
    assert abs(seam.loudness_jump_lu) < 0.5 and seam.spectral_jump_db < 1.0
    assert seam.verdict == "blends in"  # whatever its rank among the noise's own tiny jumps: inaudible
    t = np.arange(4 * SR) / SR
    tone = 0.3 * np.sin(2 * np.pi * np.where(t < 2, 440.0, 1760.0) * t)
    (seam,), typical = measure(tone, SR, HOP, [2 * SR])
    assert seam.spectral_jump_db > 10 * typical["spectral_jump_db"] + 5
    assert seam.spectral_percentile > 95 and seam.verdict == "stands out"


def test_room_on_each_side():
    (seam,), _ = measure(noise(2.2), SR, HOP, [2 * SR])  # 0.2 s after: no 0.4 s loudness block
    assert seam.loudness_before_lufs is not None and seam.loudness_after_lufs is None
    assert seam.loudness_jump_lu is None and seam.spectral_jump_db is not None
    with pytest.raises(ValueError, match="multiples of the hop"):
        measure(noise(2.0), SR, HOP, [SR + 1])
