"""A real user's folder: many formats and rates, broken files, odd names. Nothing is lost to one bad file."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from musicgen_lora.core.errors import UserError
from musicgen_lora.core.files import inside
from musicgen_lora.core.params import project_params
from musicgen_lora.stages.segment import run

SR = 16000


def music(seconds, sr, channels=1, freq=330.0):
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * freq * t) * (1 + 0.5 * np.sin(2 * np.pi * 2 * t))
    return np.stack([x, 0.8 * x], 1) if channels == 2 else x


@pytest.fixture
def messy(tmp_path):
    raw = tmp_path / "raw"
    (raw / "nested/deeper").mkdir(parents=True)
    good = {
        "a 22k mono 16bit.wav": (22050, 1, "WAV", "PCM_16"),
        "nested/b 44k stereo 24bit.wav": (44100, 2, "WAV", "PCM_24"),
        "nested/deeper/c_48k_float.wav": (48000, 1, "WAV", "FLOAT"),
        "d.flac": (44100, 2, "FLAC", "PCM_16"),
        "e.ogg": (22050, 1, "OGG", "VORBIS"),
        "f.mp3": (48000, 2, "MP3", "MPEG_LAYER_III"),
        "ñandú ünïcode.wav": (44100, 1, "WAV", "PCM_16"),
    }
    for name, (sr, ch, fmt, sub) in good.items():
        sf.write(raw / name, music(6.0, sr, ch), sr, format=fmt, subtype=sub)
    (raw / "ñandú ünïcode.txt").write_text("中文 音乐 ♪ chiptune\n", encoding="utf-8")
    full = raw / "truncated.wav"
    sf.write(full, music(6.0, SR), SR, subtype="PCM_16")
    full.write_bytes(full.read_bytes()[:30])  # header cut off mid-way
    for name in ("cut off.wav", "cut off.mp3"):  # an interrupted copy: the header promises 6 s
        sf.write(raw / name, music(6.0, SR), SR)
        (raw / name).write_bytes((raw / name).read_bytes()[: (raw / name).stat().st_size // 2])
    (raw / "empty.wav").write_bytes(b"")
    (raw / "text.mp3").write_text("this is not audio at all\n" * 20)
    sf.write(raw / "silence.wav", np.zeros(6 * SR), SR)
    sf.write(raw / "tiny.wav", music(100 / SR, SR), SR)
    nan = music(6.0, SR).astype(np.float32)
    nan[1000] = np.nan
    sf.write(raw / "nan.wav", nan, SR, subtype="FLOAT")
    (raw / "nested/lonely caption.txt").write_text("caption without audio")
    return raw, good


def test_messy_folder_keeps_every_good_file(messy, tmp_path, capfd):
    raw, good = messy
    out = tmp_path / "seg"
    summary = run(raw, out, project_params("segment", clip_seconds=4.0, min_clip_seconds=1.5, valid_fraction=0.2), SR)
    rows = [json.loads(x) for x in (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    skipped = {
        json.loads(x)["source"]: json.loads(x)["reason"]
        for x in (out / "skipped.jsonl").read_text(encoding="utf-8").splitlines()
    }
    assert {r["source"] for r in rows} == set(good)
    assert {
        "truncated.wav",
        "cut off.wav",
        "cut off.mp3",
        "empty.wav",
        "text.mp3",
        "tiny.wav",
        "nan.wav",
        "nested/lonely caption.txt",
        "silence.wav",
    } == set(skipped)  # every file that gave no clip, with its reason
    for name in ("cut off.wav", "cut off.mp3"):  # damaged, never "shorter than min_clip_seconds"
        assert skipped[name].startswith("damaged: the audio stops at ") and "of the 6.00 s" in skipped[name]
    # libsndfile's "possibly a pipe?" never reaches a user about a regular file; mpg123's note is in the reason
    assert skipped["text.mp3"].startswith("not .mp3 audio") and "Illegal Audio-MPEG-Header" in skipped["text.mp3"]
    assert (
        "NaN" in skipped["nan.wav"]
        and "shorter" in skipped["tiny.wav"]
        and "no audio" in skipped["nested/lonely caption.txt"]
    )
    assert summary["dropped_quiet_clips"] == 2  # silence.wav: 6 s of digital silence at 4 s clips
    assert abs(summary["valid_share_of_duration"] - 0.2) < 0.1
    assert [r["caption"] for r in rows if r["source"] == "ñandú ünïcode.wav"][0] == "中文 音乐 ♪ chiptune"
    for r in rows:
        data, sr = sf.read(inside(out, r["file"]))
        assert sr == SR and data.ndim == 1 and np.isfinite(data).all()
    out, err = capfd.readouterr()
    assert "segment:" in out
    assert not [line for line in err.splitlines() if line.startswith(("Note:", "Warning:"))]  # no note unattributed


def test_nothing_usable_is_a_clear_error(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "bad.wav").write_bytes(b"RIFF")
    with pytest.raises(UserError, match="no usable clip"):
        run(raw, tmp_path / "seg", project_params("segment"), SR)
    assert not (tmp_path / "seg").exists()  # nothing half-written


def test_manifest_paths_cannot_escape(tmp_path):
    with pytest.raises(ValueError, match="outside"):
        inside(tmp_path, "../../etc/passwd")
    assert inside(tmp_path, "clips/000001.wav") == (tmp_path / "clips/000001.wav").resolve()


def test_metrics_cli_json(tmp_path):
    sf.write(tmp_path / "tone.wav", music(4.0, SR), SR)
    proc = subprocess.run(
        [sys.executable, "-m", "musicgen_lora", "metrics", "--json", str(tmp_path / "tone.wav")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    row = json.loads(proc.stdout.strip())
    assert proc.returncode == 0 and row["flags"] == [] and math.isfinite(row["loudness_slope_lu_per_s"])
