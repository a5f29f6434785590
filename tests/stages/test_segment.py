import json

import numpy as np
import soundfile as sf

from musicgen_lora.model.tokens import frame_mask
from musicgen_lora.core.params import project_params
from musicgen_lora.stages.segment import cut, run, split_sources

SR = 16000


def tone(seconds, sr=SR, freq=440.0):
    t = np.arange(int(seconds * sr)) / sr
    return 0.3 * np.sin(2 * np.pi * freq * t)


def test_cut_offsets_and_padding():
    blocks = lambda: np.split(tone(9.5).astype(np.float32), [4 * SR, 8 * SR])  # noqa: E731  (as stream_audio gives them)
    clips = list(cut(blocks(), SR, clip_s=4.0, min_s=1.0))
    assert [c[0] / SR for c in clips] == [0.0, 4.0, 8.0]
    assert all(len(c[1]) == 4 * SR for c in clips)
    assert clips[-1][2] == int(1.5 * SR) and np.all(clips[-1][1][int(1.5 * SR) :] == 0)
    assert len(list(cut(blocks(), SR, 4.0, min_s=2.0))) == 2  # 1.5 s tail dropped


def test_split_is_by_file_seeded_and_a_share_of_duration():
    durations = {f"s{i}.wav": 10.0 + 7 * i for i in range(20)}  # 10 s to 143 s
    a, b = split_sources(durations, 0.25, seed=1), split_sources(durations, 0.25, seed=1)
    assert a == b and split_sources(durations, 0.25, seed=2) != a
    valid_s = sum(d for s, d in durations.items() if a[s] == "valid")
    assert abs(valid_s - 0.25 * sum(durations.values())) <= max(durations.values()) / 2


def test_one_long_recording_cannot_take_the_valid_split():
    durations = {"long.wav": 248.0, **{f"s{i}.wav": 20.0 for i in range(18)}}  # 248 s of 608 s
    for seed in range(10):
        split = split_sources(durations, 0.15, seed)
        valid_s = sum(d for s, d in durations.items() if split[s] == "valid")
        assert split["long.wav"] == "train" and 0.5 * 0.15 * 608 <= valid_s <= 0.15 * 608 + 10


def test_adding_a_file_reshuffles_nothing_else():
    durations = {f"s{i}.wav": 30.0 for i in range(20)}
    before = split_sources(durations, 0.2, seed=0)
    after = split_sources({**durations, "zz_new.wav": 30.0}, 0.2, seed=0)
    moved = [s for s in durations if before[s] != after[s]]
    assert len(moved) <= 1  # at most the recording at the boundary of the valid share


def test_run_writes_manifest_skips_bad_and_keeps_files_apart(tmp_path):
    raw = tmp_path / "raw"
    (raw / "sub dir").mkdir(parents=True)
    sf.write(raw / "a.wav", tone(9.0, 22050), 22050)
    (raw / "a.txt").write_text("bright chiptune ♪ テスト\n", encoding="utf-8")
    sf.write(raw / "sub dir" / "b é.flac", np.stack([tone(6.5, 44100), tone(6.5, 44100, 220)], 1), 44100)
    sf.write(raw / "c.wav", tone(7.0), SR)
    (raw / "broken.mp3").write_text("not audio")
    (raw / "orphan.txt").write_text("caption of nothing")
    sf.write(raw / "silent.wav", np.zeros(6 * SR), SR)
    (raw / "notes.pdf").write_bytes(b"%PDF")
    sf.write(raw / "latin1.wav", tone(5.0), SR)
    (raw / "latin1.txt").write_bytes("caf\xe9 chiptune".encode("latin-1"))
    out = tmp_path / "seg"
    summary = run(
        raw,
        out,
        project_params(
            "segment",
            clip_seconds=4.0,
            min_clip_seconds=2.0,
            valid_fraction=0.34,
            default_caption="music",
            captions="sidecar",
        ),
        SR,
    )
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    skipped = {
        json.loads(line)["source"]: json.loads(line)["reason"] for line in (out / "skipped.jsonl").read_text().splitlines()
    }
    assert set(skipped) == {"broken.mp3", "orphan.txt", "silent.wav", "notes.pdf", "latin1.txt"}
    assert "format not supported (.pdf)" in skipped["notes.pdf"] and "quieter" in skipped["silent.wav"]
    assert "not UTF-8" in skipped["latin1.txt"]
    latin = [r for r in rows if r["source"] == "latin1.wav"]
    assert latin[0]["caption"] == "music" and latin[0]["caption_source"] == "default"  # never mangled
    assert summary["dropped_quiet_clips"] == 2  # digital silence is not training data
    a = [r for r in rows if r["source"] == "a.wav"]
    assert [r["offset_s"] for r in a] == [0.0, 4.0]  # 1 s remainder < min_clip_seconds
    assert a[0]["caption"] == "bright chiptune ♪ テスト" and a[0]["caption_source"] == "sidecar"
    b = [r for r in rows if r["source"] == "sub dir/b é.flac"]
    assert b[0]["caption"] == "music" and b[0]["padding_fraction"] == 0.0
    assert b[1]["duration_s"] == 2.5 and b[1]["padding_fraction"] == 0.375
    for source in {r["source"] for r in rows}:
        assert len({r["split"] for r in rows if r["source"] == source}) == 1
    for r in rows:
        data, sr = sf.read(out / r["file"])
        assert sr == SR and data.ndim == 1 and len(data) == 4 * SR


def test_frame_mask_covers_real_audio_only():
    m = frame_mask(1.0, frames=200, frame_rate=50.0)
    assert m.sum() == 50 and m[:50].all() and not m[50:].any()
    assert frame_mask(1.01, 200, 50.0).sum() == 51


def test_captions_from_tags_where_no_caption_file(tmp_path):
    """sidecar_or_tags: a recording without a .txt (or with an unreadable one) is captioned with
    its musicnn tags; tags: every recording is; the manifest says where each caption came from."""
    raw = tmp_path / "raw"
    raw.mkdir()
    sf.write(raw / "a.wav", tone(5.0), SR)
    (raw / "a.txt").write_text("my own caption", encoding="utf-8")
    sf.write(raw / "b.wav", tone(5.0, 22050, 220), 22050)  # tagged at 16 kHz whatever its rate
    sf.write(raw / "c.wav", tone(5.0, SR, 330), SR)
    (raw / "c.txt").write_bytes("caf\xe9".encode("latin-1"))

    def captions(mode):
        out = tmp_path / mode
        run(
            raw,
            out,
            project_params("segment", clip_seconds=4.0, min_clip_seconds=2.0, valid_fraction=0.34, captions=mode),
            SR,
        )
        rows = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
        skipped = [json.loads(x) for x in (out / "skipped.jsonl").read_text().splitlines()]
        return {r["source"]: (r["caption"], r["caption_source"]) for r in rows}, skipped

    got, skipped = captions("sidecar_or_tags")
    assert got["a.wav"] == ("my own caption", "sidecar")
    for source in ("b.wav", "c.wav"):
        caption, where = got[source]
        assert where == "tags" and caption and caption != "music" and len(caption.split(", ")) <= 5
    assert any(s["source"] == "c.txt" and "tag caption used" in s["reason"] for s in skipped)
    tags, _ = captions("tags")
    assert tags["a.wav"][1] == "tags" and tags["b.wav"] == got["b.wav"]  # once per recording, deterministic
    side, _ = captions("sidecar")
    assert side["b.wav"] == ("music", "default") and side["a.wav"] == ("my own caption", "sidecar")


def test_links_pipes_and_huge_captions_never_leak_in(tmp_path):
    """A caption linked to a secret (or to /dev/zero), audio linked from outside the folder and a
    linked folder are refused with a line each in skipped.jsonl; a caption over the size cap is never
    read past it. Nothing of the secret reaches the manifest."""
    import os

    secret = tmp_path / "secret.txt"
    secret.write_text("root:SECRET-HASH:19000:0:99999:7:::")
    outside = tmp_path / "outside"
    outside.mkdir()
    sf.write(outside / "far.wav", tone(5.0), SR)
    raw = tmp_path / "raw"
    raw.mkdir()
    sf.write(raw / "song.wav", tone(5.0), SR)
    (raw / "song.txt").symlink_to(secret)
    sf.write(raw / "zero.wav", tone(5.0, SR, 330), SR)
    (raw / "zero.txt").symlink_to("/dev/zero")
    sf.write(raw / "big.wav", tone(5.0, SR, 220), SR)
    (raw / "big.txt").write_text("x" * 5_000_000)
    (raw / "far.wav").symlink_to(outside / "far.wav")
    (raw / "twin.wav").symlink_to(raw / "song.wav")  # a link inside the folder: a duplicate, refused too
    (raw / "linked").symlink_to(outside, target_is_directory=True)
    os.mkfifo(raw / "pipe.wav")
    out = tmp_path / "seg"
    run(
        raw,
        out,
        project_params("segment", clip_seconds=4.0, min_clip_seconds=2.0, valid_fraction=0.34, captions="sidecar"),
        SR,
    )
    manifest = (out / "manifest.jsonl").read_text()
    assert "SECRET" not in manifest and "xxxx" not in manifest and len(manifest) < 5000
    rows = [json.loads(x) for x in manifest.splitlines()]
    assert {r["source"] for r in rows} == {"song.wav", "zero.wav", "big.wav"}
    assert all(r["caption"] == "music" for r in rows)
    skipped = {}
    for line in (out / "skipped.jsonl").read_text().splitlines():
        row = json.loads(line)
        skipped.setdefault(row["source"], []).append(row["reason"])
    for name in ("song.txt", "zero.txt", "far.wav", "twin.wav", "linked"):
        assert any("symbolic link: refused" in r for r in skipped[name]), name
    assert any("not a regular file" in r for r in skipped["pipe.wav"])
    assert any("over 2000 bytes" in r for r in skipped["big.txt"])


def test_a_link_into_the_dvc_cache_is_read(tmp_path):
    """`dvc config cache.type symlink` checks data/raw out as links into .dvc/cache: those are read."""
    (tmp_path / ".dvc" / "cache" / "files").mkdir(parents=True)
    obj = tmp_path / ".dvc" / "cache" / "files" / "ab12"
    sf.write(obj, tone(5.0), SR, format="WAV")
    raw = tmp_path / "data" / "raw"
    raw.mkdir(parents=True)
    (raw / "song.wav").symlink_to(obj)
    out = tmp_path / "seg"
    run(
        raw,
        out,
        project_params("segment", clip_seconds=4.0, min_clip_seconds=2.0, valid_fraction=0.0, captions="sidecar"),
        SR,
    )
    assert [json.loads(x)["source"] for x in (out / "manifest.jsonl").read_text().splitlines()] == ["song.wav"]


def test_every_style_folder_keeps_recordings_in_valid():
    """13 recordings in three folders (the newcomer's choir, organ and fiddle): whatever the seed,
    each folder has valid recordings, so no style is missing from the valid loss and the target."""
    durations = {
        **{f"choir/c{i}.wav": 60.0 + 7 * i for i in range(5)},
        **{f"organ/o{i}.wav": 90.0 + 5 * i for i in range(4)},
        **{f"fiddle/f{i}.wav": 45.0 + 3 * i for i in range(4)},
        "loose.wav": 30.0,
    }
    for seed in range(10):
        split = split_sources(durations, 0.15, seed)
        for folder in ("choir", "organ", "fiddle"):
            assert any(v == "valid" for s, v in split.items() if s.startswith(folder + "/")), (seed, folder)
            assert any(v == "train" for s, v in split.items() if s.startswith(folder + "/")), (seed, folder)
    flat = {f"chiptune/s{i}.wav": 30.0 + i for i in range(20)}  # one folder: the split as before
    from musicgen_lora.stages.segment import _split_group

    assert split_sources(flat, 0.2, 3) == _split_group(flat, 0.2, 3)


def test_split_warnings_name_a_style_left_out_and_a_small_target():
    from musicgen_lora.core.artifacts import ClipRow
    from musicgen_lora.stages.segment import split_warnings

    def row(source, caption, split):
        return ClipRow("0", "clips/0.wav", source, 0.0, 15.0, 0.0, caption, "sidecar", split)

    rows = [
        row("a.wav", "fiddle reel", "train"),
        row("b.wav", "fiddle reel", "train"),
        row("c.wav", "choir", "valid"),
        row("d.wav", "choir", "train"),
    ]
    warnings = split_warnings(rows)
    assert len(warnings) == 2 and "'fiddle reel' (2 recordings)" in warnings[0] and "its own folder" in warnings[0]
    assert warnings[1].startswith("only 1 valid clip(s)")
    assert split_warnings([row(f"{i}.wav", str(i), "valid" if i < 10 else "train") for i in range(30)]) == []
