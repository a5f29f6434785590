"""bench.scale: the scaled corpus keeps the demo's layout, and each step's memory is its own."""

import os
import sys

import pytest

from bench.scale import corpus, measured


def test_copies_keep_each_style_folder_and_its_captions(tmp_path):
    raw = tmp_path / "raw"
    for rel in ("piano/a.wav", "piano/a.txt", "piano/sub/b.flac", "choir/c.wav", "loose.wav"):
        (raw / rel).parent.mkdir(parents=True, exist_ok=True)
        (raw / rel).write_bytes(rel.encode())
    out = corpus(raw, tmp_path / "x3", 3)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert len(files) == 15 and sorted(os.listdir(out)) == ["choir", "copy-00", "copy-01", "copy-02", "piano"]
    assert "piano/copy-02/sub/b.flac" in files and (out / "piano/copy-01/a.txt").read_bytes() == b"piano/a.txt"
    assert (out / "choir/copy-00/c.wav").stat().st_ino == (raw / "choir/c.wav").stat().st_ino  # linked, not copied
    (out / "piano/copy-00/a.wav").unlink()
    assert corpus(raw, out, 3) == out and not (out / "piano/copy-00/a.wav").exists()  # made once, kept
    assert len(list(corpus(raw, out, 2).rglob("*.wav"))) == 6  # another size: made again


def test_a_step_is_measured_in_its_own_process(tmp_path):
    big = measured(
        [sys.executable, "-c", "b = bytearray(400_000_000); b[::4096] = b'x' * len(b[::4096])"],
        tmp_path,
        tmp_path / "big.log",
    )
    small = measured([sys.executable, "-c", "pass"], tmp_path, tmp_path / "small.log")
    assert big["peak_rss_gb"] > 0.4 > small["peak_rss_gb"] and big["wall_s"] >= 0
    with pytest.raises(RuntimeError, match="fail.log"):
        measured([sys.executable, "-c", "raise SystemExit(3)"], tmp_path, tmp_path / "fail.log")
