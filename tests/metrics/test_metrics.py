"""Metrics on synthetic signals whose answer is known (tones, decays, fades, noise, clicks, silence)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from musicgen_lora.core.params import project_params
from musicgen_lora.metrics import cli as CLI
from musicgen_lora.metrics import clip as M
from musicgen_lora.metrics import flags as F
from musicgen_lora.metrics import style as S

SR = 16000
TH = project_params("evaluate").thresholds()  # the project's flag limits
DUR = 15.0
T = np.arange(int(DUR * SR)) / SR
RNG = np.random.default_rng(1234)

TONE = 0.5 * np.sin(2 * np.pi * 440.0 * T)
DECAY = TONE * 10.0 ** (-30.0 / 20.0 * T / DUR)  # linear in dB: -30 dB over the clip
FADE = TONE.copy()
FADE[-3 * SR :] *= np.linspace(1.0, 0.0, 3 * SR)  # 3 s linear fade-out
NOISE = 0.3 * RNG.standard_normal(T.size)
CLICKS = np.zeros_like(T)
CLICKS[:: SR // 2] = 0.9  # 120 bpm
HALF = TONE.copy()
HALF[T.size // 2 :] = 0.0
SILENCE = np.zeros_like(T)


@pytest.fixture(scope="module")
def m():
    sigs = {"tone": TONE, "decay": DECAY, "fade": FADE, "noise": NOISE, "clicks": CLICKS, "half": HALF, "silence": SILENCE}
    return {k: M.clip_metrics(v, SR) for k, v in sigs.items()}


def test_integrated_loudness_calibration_and_floor():
    full_scale_997 = np.sin(2 * np.pi * 997.0 * np.arange(5 * 48000) / 48000)
    assert M.integrated_loudness(full_scale_997, 48000) == pytest.approx(-3.01, abs=0.1)
    assert M.integrated_loudness(SILENCE, SR) == M.LUFS_FLOOR == -70.0
    assert M.integrated_loudness(TONE.astype(np.float32), SR) == pytest.approx(M.integrated_loudness(TONE, SR), abs=0.01)


def test_loudness_curve_shape_and_floor():
    t, lufs = M.loudness_curve(TONE, SR)
    assert t.shape == lufs.shape and t.size == int((DUR - 0.4) / 0.1) + 1
    assert np.all(np.diff(t) > 0) and t[0] == pytest.approx(0.2)
    assert np.ptp(lufs) < 0.1
    assert np.all(M.loudness_curve(SILENCE, SR)[1] == -70.0)


def test_slope_steady_vs_decaying(m):
    assert abs(m["tone"]["loudness_slope_lu_per_s"]) < 0.05
    assert m["decay"]["loudness_slope_lu_per_s"] == pytest.approx(-30.0 / DUR, abs=0.1)
    assert M.loudness_slope(DECAY, SR) == pytest.approx(m["decay"]["loudness_slope_lu_per_s"])
    assert "decaying" in F.flags(m["decay"], TH)
    assert "decaying" not in F.flags(m["tone"], TH)


def test_thirds_delta(m):
    assert abs(m["tone"]["loudness_thirds_delta_lu"]) < 0.05
    assert m["decay"]["loudness_thirds_delta_lu"] == pytest.approx(-20.0, abs=1.0)
    assert M.loudness_thirds_delta(DECAY, SR) == pytest.approx(m["decay"]["loudness_thirds_delta_lu"])


def test_tail_drop_fade_vs_steady(m):
    assert abs(m["tone"]["tail_drop_lu"]) < 0.5
    assert m["fade"]["tail_drop_lu"] < -10.0
    assert M.tail_drop(FADE, SR) == pytest.approx(m["fade"]["tail_drop_lu"])
    assert "silent_tail" in F.flags(m["fade"], TH)
    assert F.flags(m["tone"], TH) == []
    with pytest.raises(ValueError, match="tail_s"):
        M.tail_drop(TONE, SR, tail_s=0.1)


def test_silence_ratio_and_rms_per_second(m):
    assert m["half"]["silence_ratio"] == pytest.approx(0.5, abs=0.01)
    assert m["tone"]["silence_ratio"] == 0.0 and m["silence"]["silence_ratio"] == 1.0
    assert M.silence_ratio(HALF, SR, threshold_dbfs=-60.0, frame_s=0.1) == pytest.approx(0.5, abs=0.01)
    mostly = TONE.copy()
    mostly[: int(0.7 * T.size)] = 0.0
    assert "mostly_silent" in F.flags(M.clip_metrics(mostly, SR), TH)
    rms = M.rms_per_second(TONE, SR)
    assert len(rms) == 15 and np.allclose(rms, 20 * np.log10(0.5 / np.sqrt(2)), atol=0.01)
    assert M.rms_per_second(SILENCE[: SR * 2], SR) == [M.DBFS_FLOOR] * 2
    assert len(M.rms_per_second(TONE[: int(2.6 * SR)], SR)) == 3  # partial >= 0.5 s kept
    assert len(M.rms_per_second(TONE[: int(2.2 * SR)], SR)) == 2
    assert len(M.rms_per_second(TONE[: int(0.6 * SR)], SR)) == 1
    assert m["half"]["rms_dbfs_per_second"][-1] == M.DBFS_FLOOR


def test_flatness_and_chroma_noise_vs_tone(m):
    assert m["noise"]["spectral_flatness"] > 0.5
    assert m["tone"]["spectral_flatness"] < 0.05
    assert M.spectral_flatness(NOISE, SR) == pytest.approx(m["noise"]["spectral_flatness"])
    assert "noisy" in F.flags(m["noise"], TH)
    assert "noisy" not in F.flags(m["tone"], TH)
    assert m["noise"]["chroma_entropy"] > 0.95
    assert m["tone"]["chroma_entropy"] < 0.1
    assert M.chroma_entropy(TONE, SR) == pytest.approx(m["tone"]["chroma_entropy"])
    assert m["silence"]["spectral_flatness"] == 0.0 and m["silence"]["chroma_entropy"] == 0.0


def test_pulse_clarity_clicks_vs_noise(m):
    assert m["clicks"]["pulse_clarity"] > 0.8
    assert m["noise"]["pulse_clarity"] < 0.3
    assert m["tone"]["pulse_clarity"] < 0.1 and m["fade"]["pulse_clarity"] < 0.1
    assert m["silence"]["pulse_clarity"] == 0.0
    assert M.pulse_clarity(CLICKS, SR) == pytest.approx(m["clicks"]["pulse_clarity"])


def test_clip_metrics_keys_and_finite(m):
    keys = {
        "integrated_loudness_lufs",
        "loudness_slope_lu_per_s",
        "loudness_thirds_delta_lu",
        "tail_drop_lu",
        "silence_ratio",
        "spectral_flatness",
        "pulse_clarity",
        "chroma_entropy",
        "rms_dbfs_per_second",
        "loudness_curve_lufs",
        "duration_s",
    }
    for metrics in m.values():
        assert set(metrics) == keys
        scalars = [v for v in metrics.values() if not isinstance(v, list)]
        assert np.isfinite(scalars).all()
        assert np.isfinite(metrics["loudness_curve_lufs"]).all()
    assert m["tone"]["duration_s"] == DUR


BAD = [np.array([]), np.full(SR * 3, np.nan), np.r_[TONE[: SR * 3], np.inf], np.zeros((2, SR * 3))]
FUNCS = [
    M.integrated_loudness,
    M.loudness_curve,
    M.loudness_slope,
    M.loudness_thirds_delta,
    M.tail_drop,
    M.silence_ratio,
    M.spectral_flatness,
    M.pulse_clarity,
    M.chroma_entropy,
    M.rms_per_second,
    M.clip_metrics,
    S.mfcc_stats,
]


@pytest.mark.parametrize("fn", FUNCS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("bad", range(len(BAD)), ids=["empty", "nan", "inf", "2d"])
def test_invalid_audio_raises(fn, bad):
    with pytest.raises(ValueError):
        fn(BAD[bad], SR)


@pytest.mark.parametrize("fn", FUNCS, ids=lambda f: f.__name__)
def test_too_short_or_bad_rate_raises(fn):
    with pytest.raises(ValueError):
        fn(TONE[:10], SR)
    with pytest.raises(ValueError):
        fn(TONE, 0)


def _mfcc_set(kind: str, n: int = 8) -> np.ndarray:
    t = np.arange(2 * SR) / SR
    rows = []
    for i in range(n):
        x = (
            (0.2 + 0.05 * i) * np.sin(2 * np.pi * (220.0 + 40.0 * i) * t)
            if kind == "tone"
            else (0.1 + 0.02 * i) * RNG.standard_normal(t.size)
        )
        rows.append(S.mfcc_stats(x, SR))
    return np.stack(rows)


def test_mfcc_and_frechet():
    tones, noises = _mfcc_set("tone"), _mfcc_set("noise")
    assert tones.shape == (8, 40) and np.isfinite(tones).all()
    assert S.mfcc_stats(SILENCE[:SR], SR, n_mfcc=13).shape == (26,)
    assert S.frechet_distance(tones, tones) == pytest.approx(0.0, abs=1e-3)
    far = S.frechet_distance(tones, noises)
    assert far > 1000.0 * max(S.frechet_distance(tones, tones), 1e-3)
    assert S.frechet_distance(noises[:4], noises[4:]) < far
    with pytest.raises(ValueError, match="at least 2"):
        S.frechet_distance(tones[:1], noises)
    with pytest.raises(ValueError):
        S.frechet_distance(tones, noises[:, :10])
    with pytest.raises(ValueError):
        S.frechet_distance(np.full((3, 2), np.nan), noises[:, :2])


def test_js_divergence():
    p = np.array([0.1, 0.2, 0.7])
    assert S.js_divergence(p, p) == pytest.approx(0.0, abs=1e-9)
    assert S.js_divergence([1, 1, 0, 0], [0, 0, 2, 2]) == pytest.approx(1.0, abs=1e-6)
    q = np.array([0.3, 0.3, 0.4])
    assert S.js_divergence(p, q) == pytest.approx(S.js_divergence(q, p))
    assert 0.0 < S.js_divergence(p, q) < 1.0
    for bad in ([0, 0, 0], [-1, 1, 1], [np.nan, 1, 1], [1, 1]):
        with pytest.raises(ValueError):
            S.js_divergence(bad, p)


def test_code_entropy_and_histogram():
    k, size = 4, 16
    const = np.full((k, 64), 3)
    uniform = np.tile(np.arange(size), (k, 5))
    assert S.code_entropy(const, size) == [0.0] * k
    assert S.code_entropy(uniform, size) == pytest.approx([np.log2(size)] * k)
    hist = S.code_histogram(uniform, size)
    assert hist.shape == (k, size) and np.allclose(hist.sum(axis=1), 1.0) and np.allclose(hist, 1 / size)
    assert S.js_divergence(S.code_histogram(const, size)[0], hist[0]) > 0.5
    with pytest.raises(ValueError):
        S.code_entropy(np.array([[0, size]]), size)
    with pytest.raises(ValueError):
        S.code_histogram(np.zeros((2, 3)), size)  # float codes


def test_silence_code_share():
    sil = [5, 7, 9]
    codes = np.tile(np.array([[1], [2], [3]]), (1, 10))
    codes[:, :3] = np.array(sil)[:, None]  # 3 fully silent frames
    codes[0, 5] = 5  # partially matching frame does not count
    assert S.silence_code_share(codes, sil) == pytest.approx(0.3)
    with pytest.raises(ValueError):
        S.silence_code_share(codes, sil[:2])


def test_flags_and_calibration(m):
    base = TH
    with pytest.raises(ValueError, match="lack keys"):
        F.flags({"tail_drop_lu": 0.0}, base)
    with pytest.raises(ValueError):
        F.calibrate_thresholds([], base)
    # reference set: steady songs, plus fade-outs and a hissy recording
    refs = [m["tone"]] * 5 + [m["fade"]] * 3 + [dict(m["tone"], spectral_flatness=0.4)] * 2
    cal = F.calibrate_thresholds(refs, base)
    assert cal.silent_tail_drop_lu < m["fade"]["tail_drop_lu"] < base.silent_tail_drop_lu
    assert cal.decaying_slope_lu_per_s <= base.decaying_slope_lu_per_s
    assert cal.noisy_flatness > 0.4 and cal.mostly_silent_ratio == base.mostly_silent_ratio
    assert cal.silence_threshold_dbfs == base.silence_threshold_dbfs
    assert "silent_tail" not in F.flags(m["fade"], cal)
    assert "noisy" in F.flags(m["noise"], cal)
    # steady references never make thresholds stricter than the base
    assert F.calibrate_thresholds([m["tone"]] * 3, base) == base


def test_music_whose_recordings_fade_out_is_not_flagged_for_fading_out(m):
    """The clips sampled for calibration are mid-song (steady), but every recording ends in a fade:
    the endings set the silent_tail limit, so a clip that fades as the user's songs do is no defect."""
    base = TH
    assert m["fade"]["tail_drop_lu"] < base.silent_tail_drop_lu and "silent_tail" in F.flags(m["fade"], base)
    assert F.calibrate_thresholds([m["tone"]] * 20, base) == base  # mid-song clips alone: still flagged
    cal = F.calibrate_thresholds([m["tone"]] * 20, base, endings=[m["fade"]] * 3 + [m["tone"]] * 2)
    assert "silent_tail" not in F.flags(m["fade"], cal)
    assert cal.silent_tail_drop_lu == pytest.approx(
        np.percentile([m["fade"]["tail_drop_lu"]] * 3 + [m["tone"]["tail_drop_lu"]] * 2, 5) - 3.0
    )
    # recordings that end abruptly change nothing
    assert F.calibrate_thresholds([m["tone"]] * 20, base, endings=[m["tone"]] * 5) == base


def _write(path, audio, sr=SR):
    sf.write(str(path), audio, sr, subtype="FLOAT")
    return str(path)


def test_metrics_cli_json(tmp_path, capsys):
    tone = _write(tmp_path / "tone.wav", np.stack([TONE, TONE], axis=1))  # stereo, downmixed
    noise = _write(tmp_path / "noise.wav", NOISE)
    assert CLI.metrics_cli([tone, noise, "--json"], TH) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2
    rows = [json.loads(line) for line in out]
    for row in rows:
        for key in (
            "file",
            "loudness_slope_lu_per_s",
            "tail_drop_lu",
            "silence_ratio",
            "spectral_flatness",
            "flags",
            "integrated_loudness_lufs",
            "pulse_clarity",
            "chroma_entropy",
        ):
            assert key in row
        assert isinstance(row["flags"], list)
    assert rows[0]["file"] == tone and rows[0]["flags"] == []
    assert rows[1]["file"] == noise and "noisy" in rows[1]["flags"]


def test_metrics_cli_table_and_errors(tmp_path, capsys):
    good = _write(tmp_path / "fade.wav", FADE)
    nan = _write(tmp_path / "nan.wav", np.r_[TONE[: SR * 3], np.nan])
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    missing = str(tmp_path / "missing.wav")
    assert CLI.metrics_cli([str(bad), good, nan, missing], TH) == 1
    cap = capsys.readouterr()
    for path in (str(bad), nan, missing):
        assert path in cap.err
    assert good not in cap.err
    lines = cap.out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("file") and "flags" in lines[0]
    assert lines[1].startswith(good) and "silent_tail" in lines[1]
    assert CLI.metrics_cli([good], TH) == 0
    capsys.readouterr()
    assert CLI.metrics_cli([], TH) == 2  # usage error returns, does not exit


def test_stereo_clips_are_measured_on_the_mid_channel():
    left, right = TONE[: SR * 3], 0.5 * TONE[: SR * 3][::-1]
    stereo = M.clip_metrics(np.stack([left, right], 1), SR)
    assert stereo == M.clip_metrics((left + right) / 2, SR)


def test_metrics_on_a_missing_file_or_a_pipe_is_one_line(tmp_path, capsys):
    """A path that does not exist is "no such file" (not a hint to run dvc repro); a FIFO is refused
    instead of blocking the reader forever."""
    import os

    from musicgen_lora.metrics.cli import metrics_cli

    os.mkfifo(tmp_path / "pipe.wav")
    assert metrics_cli([str(tmp_path / "nope.wav"), str(tmp_path / "pipe.wav")], TH) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].endswith("nope.wav: no such file") and "dvc" not in err[0]
    assert err[1].endswith("pipe.wav: not a regular file (a folder, pipe or device)") and len(err) == 2
