"""The synthetic demo corpus: deterministic bytes, distinct captions, lengths, stereo, style separability."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musicgen_lora.tiny.corpus import (
    GENERIC_STYLES,
    STYLES,
    TARGET_STYLE,
    corpus_main,
    synth_track,
    track_lengths,
    write_corpus,
)

ALL = (TARGET_STYLE, *GENERIC_STYLES)
SMALL = dict(tracks_per_style=4, seed=0, min_seconds=0.5, max_seconds=2.0)


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("corpus")
    return root, write_corpus(root, ALL, **SMALL)


def test_styles_and_layout(small):
    root, paths = small
    assert TARGET_STYLE == "chiptune" and TARGET_STYLE not in GENERIC_STYLES
    assert set(STYLES) == set(ALL)
    assert paths == sorted(paths) and len(paths) == 4 * len(ALL)
    for style in ALL:
        assert [p.name for p in paths if p.parent.name == style] == [f"{style}_{i:03d}.wav" for i in range(4)]
    assert not list(root.rglob("*.tmp"))
    for wav in paths:
        text = wav.with_suffix(".txt").read_bytes().decode("utf-8")
        assert text.endswith("\n") and text.count("\n") == 1 and len(text.strip()) > 10


def test_byte_identical_across_runs_and_overwrite(small, tmp_path):
    root, _ = small
    write_corpus(tmp_path, ALL, **SMALL)
    first = _hashes(tmp_path)
    assert first == _hashes(root)
    (tmp_path / "chiptune" / "chiptune_000.wav").write_bytes(b"junk")  # overwritten, not skipped
    write_corpus(tmp_path, ALL, **SMALL)
    assert _hashes(tmp_path) == first


def test_different_seeds_differ(small, tmp_path):
    root, _ = small
    write_corpus(tmp_path, ALL, **{**SMALL, "seed": 1})
    a, b = _hashes(root), _hashes(tmp_path)
    assert all(a[k] != b[k] for k in a if k.endswith(".wav"))
    x0, _ = synth_track("piano", 0, 0, 1.0, 16000)
    x1, _ = synth_track("piano", 0, 1, 1.0, 16000)
    assert not np.array_equal(x0, x1)


def test_captions_target_vs_generic():
    captions = {s: {synth_track(s, 0, i, 0.2, 16000)[1] for i in range(24)} for s in ALL}
    assert len(captions[TARGET_STYLE]) == 2  # both chiptune variants occur
    assert captions[TARGET_STYLE] == set(STYLES[TARGET_STYLE].captions)
    for style in GENERIC_STYLES:
        assert captions[style].isdisjoint(captions[TARGET_STYLE])
        assert not any("chiptune" in c for c in captions[style])
    assert all("chiptune" in c for c in captions[TARGET_STYLE])


def test_audio_level_and_fades():
    for style in ALL:
        x, _ = synth_track(style, 3, 2, 1.5, 22050)
        assert x.dtype == np.float64 and x.ndim == 1 and len(x) == round(1.5 * 22050)
        assert np.abs(x).max() == pytest.approx(10 ** (-1 / 20), rel=1e-9)
        assert abs(x[0]) < 1e-3 and abs(x[-1]) < 1e-3


@pytest.mark.parametrize("seed", range(5))
def test_length_guarantees(seed):
    for style in ALL:
        for n in (4, 7, 60):
            lengths = track_lengths(style, n, seed, 10.0, 90.0)
            assert len(lengths) == n and all(10.0 <= s <= 90.0 for s in lengths)
            assert min(lengths) < 15 and max(lengths) > 60
        short_only = track_lengths(style, 5, seed, 5.0, 40.0)
        assert all(5.0 <= s <= 40.0 for s in short_only) and min(short_only) < 15
        assert all(20.0 <= s <= 30.0 for s in track_lengths(style, 6, seed, 20.0, 30.0))


def test_written_lengths_rates_and_stereo(small):
    _, paths = small
    for wav in paths:
        i = int(wav.stem.rsplit("_", 1)[1])
        info = sf.info(str(wav))
        assert info.subtype == "PCM_16" and info.samplerate == (16000, 22050)[i % 2]
        assert 0.5 - 1 / info.samplerate <= info.duration <= 2.0 + 1 / info.samplerate
        assert info.channels == (2 if (i + 1) % 3 == 0 else 1)
        if info.channels == 2:
            data, _ = sf.read(str(wav), always_2d=True)
            assert data.shape[1] == 2 and not np.allclose(data[:, 0], data[:, 1])
            assert np.abs(data.mean(axis=1)).max() > 0.1  # downmix is not silent


def _features(x: np.ndarray, sr: int) -> tuple[float, float]:
    """(spectral centroid in Hz, onsets per second from 10 ms frame energy jumps > 6 dB after the first 0.5 s)."""
    spec = np.abs(np.fft.rfft(x))
    centroid = float((spec * np.fft.rfftfreq(len(x), 1 / sr)).sum() / spec.sum())
    hop = sr // 100
    energy = 10 * np.log10((x[: len(x) // hop * hop].reshape(-1, hop) ** 2).mean(axis=1) + 1e-9)[49:]
    onsets = np.count_nonzero((energy[1:] - energy[:-1] > 6) & (energy[1:] > energy.max() - 30))
    return centroid, onsets / (len(energy) / 100)


def test_styles_are_separable():
    feats = {s: [_features(synth_track(s, seed, 0, 6.0, 16000)[0], 16000) for seed in range(3)] for s in ALL}
    chip_c, chip_o = (min(f[k] for f in feats[TARGET_STYLE]) for k in (0, 1))
    amb_c, amb_o = (max(f[k] for f in feats["ambient"]) for k in (0, 1))
    assert chip_c > 2 * amb_c and chip_o > 3 and amb_o < 0.5
    assert max(f[0] for f in feats["bass"]) < 0.5 * chip_c  # bass lives low, chiptune is bright
    assert max(f[1] for f in feats["piano"]) < chip_o  # piano notes come slower than 16th arpeggios


def test_cli(tmp_path, capsys):
    assert (
        corpus_main(["--out", str(tmp_path), "--generic", "--tracks", "2", "--min-seconds", "0.5", "--max-seconds", "1"])
        == 0
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(GENERIC_STYLES)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "8 tracks" in out[0] and "min" in out[0]
    assert corpus_main(["--out", str(tmp_path / "t"), "--tracks", "1", "--max-seconds", "1", "--min-seconds", "0.5"]) == 0
    assert [p.name for p in (tmp_path / "t").iterdir()] == [TARGET_STYLE]
    for bad in (["--styles", "polka"], ["--target", "--generic"], ["--min-seconds", "5", "--max-seconds", "1"]):
        with pytest.raises(SystemExit) as exc:
            corpus_main(["--out", str(tmp_path / "x"), *bad])
        assert exc.value.code == 2
