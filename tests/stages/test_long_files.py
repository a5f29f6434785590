"""A long recording (a DJ mix) is read in blocks: segment, its tag captions and `metrics` hold a
block at a time, so their memory does not grow with the file's length, and the blocks give the
same samples and tags as reading the whole file."""

import json
import tracemalloc

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from musicgen_lora.core.audio import as_channels
from musicgen_lora.core.params import project_params
from musicgen_lora.core.stream import load_audio, stream_audio
from musicgen_lora.metrics import cli
from musicgen_lora.metrics.musicnn import Tagger
from musicgen_lora.stages.segment import run

SR = 22050  # not the pipeline's 16 kHz: the resampling is streamed too


def mix(path, minutes: float, sr: int = SR, channels: int = 1):
    """A recording of changing tones and noise, written a minute at a time."""
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", sr, channels, "PCM_16") as f:
        for i in range(int(np.ceil(minutes))):
            t = np.arange(int(sr * 60 * min(1.0, minutes - i))) / sr
            x = 0.2 * np.sin(2 * np.pi * (220 + 20 * i) * t) + 0.02 * rng.standard_normal(t.size)
            f.write(np.stack([x] * channels, 1))


def peak_bytes(fn) -> int:
    """The largest memory Python and numpy held at once while fn ran (tracemalloc)."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_segment_with_tag_captions_holds_a_block_not_the_file(tmp_path):
    seg = project_params("segment", clip_seconds=15.0, min_clip_seconds=5.0, captions="tags", valid_fraction=0.0)
    peaks = {}
    for minutes in (1, 4):
        raw = tmp_path / f"raw{minutes}"
        raw.mkdir()
        mix(raw / "mix.wav", minutes)
        peaks[minutes] = peak_bytes(lambda: run(raw, tmp_path / f"seg{minutes}", seg, 16000))
        rows = [json.loads(x) for x in (tmp_path / f"seg{minutes}/manifest.jsonl").read_text().splitlines()]
        assert len(rows) == 4 * minutes and rows[-1]["offset_s"] == 60 * minutes - 15
        assert rows[0]["caption_source"] == "tags" and rows[0]["caption"]
    # four times the audio, about the same peak (one block and one forward chunk; the whole file held it all)
    assert peaks[4] < 1.5 * peaks[1], peaks


def test_metrics_measures_a_long_file_part_by_part(tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "PART_S", 30.0)
    peaks, rows, thresholds = {}, {}, project_params("evaluate").thresholds()
    for minutes in (1, 4):
        mix(tmp_path / f"{minutes}.wav", minutes)
        peaks[minutes] = peak_bytes(
            lambda: rows.setdefault(minutes, list(cli.file_rows(tmp_path / f"{minutes}.wav", thresholds)))
        )
    assert [r["file"].split(" ", 1)[1] for r in rows[4]][:3] == ["[0-30 s]", "[30-60 s]", "[60-90 s]"]
    assert len(rows[4]) == 8 and peaks[4] < 1.25 * peaks[1], peaks
    # a part is measured as the file cut there would be
    first = cli.clip_metrics(sf.read(tmp_path / "1.wav", frames=30 * SR, dtype="float32")[0], SR)
    assert rows[1][0]["integrated_loudness_lufs"] == first["integrated_loudness_lufs"]


def test_blocks_are_the_whole_files_samples(tmp_path):
    mix(tmp_path / "a.wav", 0.5, sr=16000, channels=2)
    data, _ = sf.read(tmp_path / "a.wav", dtype="float32", always_2d=True)
    same_rate = np.concatenate(list(stream_audio(tmp_path / "a.wav", 16000, 1, block=7777)))
    assert np.array_equal(same_rate, as_channels(data, 1)[0])  # no resampling: the very samples
    resampled = load_audio(tmp_path / "a.wav", 32000, 2)
    whole = AF.resample(torch.from_numpy(np.ascontiguousarray(data.T)), 16000, 32000).numpy().T
    assert resampled.shape == whole.shape and np.abs(resampled - whole).max() < 1e-6  # float rounding only


def test_tags_of_a_stream_are_the_tags_of_the_whole():
    tagger = Tagger.load()
    x = (np.random.default_rng(1).standard_normal(16000 * 50 + 123) * 0.1).astype(np.float32)
    probs, embs = tagger(x, 16000)
    for size in (300, 16000 * 7):  # any block size: frames, patches and forward chunks fall where they fall whole
        p, e = tagger.stream(x[i : i + size] for i in range(0, x.size, size))
        assert np.array_equal(p, probs) and np.array_equal(e, embs)
