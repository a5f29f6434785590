"""The README's "Your own music, step by step", command for command: a folder of mixed formats
(wav, flac, mp3, ogg, opus, m4a) and a musicgen-small-shaped checkpoint in a local directory go
through the whole pipeline (`dvc repro`), with one optimizer step and a short evaluation."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from musicgen_lora.core.params import edit_params
from workspace import sh

from conftest import ROOT

pytestmark = pytest.mark.slow


def song(seconds: float, sr: int, freq: float, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * freq * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return np.stack([x, 0.7 * x], 1) if channels == 2 else x


def my_music(raw):
    """Six recordings in six formats, two with captions, one of them nested."""
    (raw / "album").mkdir(parents=True)
    sf.write(raw / "a.wav", song(5.5, 44100, 220), 44100)
    (raw / "a.txt").write_text("lofi hip hop, mellow piano, vinyl crackle\n")
    sf.write(raw / "album/b.flac", song(5.5, 48000, 330, 2), 48000)
    sf.write(raw / "c.mp3", song(5.5, 44100, 440), 44100, format="MP3")
    sf.write(raw / "d.ogg", song(5.5, 22050, 262), 22050, format="OGG", subtype="VORBIS")
    sf.write(raw / "e.opus", song(5.5, 48000, 392), 48000, format="OGG", subtype="OPUS")
    (raw / "e.txt").write_text("dreamy synth pads\n")
    wav = raw / "f.wav"
    sf.write(wav, song(5.5, 44100, 294), 44100)
    if shutil.which("ffmpeg"):
        subprocess.run(["ffmpeg", "-v", "error", "-i", str(wav), "-c:a", "aac", str(raw / "f.m4a")], check=True)
        wav.unlink()
    else:
        wav.rename(raw / "f.m4a")  # named .m4a but undecodable here: must be listed, not dropped


def test_own_music_on_a_musicgen_small_shaped_checkpoint(tmp_path, small_checkpoint):
    project = tmp_path / "project"
    project.mkdir()
    for name in ("dvc.yaml", "params.yaml", ".dvcignore", "Makefile"):
        shutil.copy(ROOT / name, project / name)
    for name in ("src", "assets", "experiments", "adapters"):
        shutil.copytree(ROOT / name, project / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    env = {
        **__import__("os").environ,
        "DVC_NO_ANALYTICS": "1",
        "HF_HUB_OFFLINE": "1",
        "DVC_SITE_CACHE_DIR": str(tmp_path / "site"),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@x.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@x.invalid",
    }
    run = lambda *cmd: sh(list(cmd), project, env)  # noqa: E731
    python = [sys.executable, "-m", "musicgen_lora"]
    run("git", "init", "-q", "-b", "main")
    run("dvc", "init", "-q")

    # 2. your recordings under data/raw, then versioned
    my_music(project / "data/raw")
    # 4. what a real checkpoint needs, in one place (experiments/presets.yaml), and a local directory
    out = run(*python, "preset", "musicgen-small")
    assert "train.lr: 0.001 -> 0.0001" in out
    assert (
        "the checkpoint: model.name 'facebook/musicgen-small' is not on this machine; download it once with "
        "`hf download facebook/musicgen-small`" in out
    )
    before, after = (ROOT / "params.yaml").read_text(), (project / "params.yaml").read_text()
    # the round trip keeps quoting and one-line prompts; a changed key's old comment is replaced
    assert "mixed_precision: 'no'" in after and len(after.splitlines()) == len(before.splitlines())
    assert "lr: 0.0001            # preset musicgen-small (was 0.001)" in after and "tiny default" not in after
    edit_params(
        project / "params.yaml",
        {
            "model": {"name": str(small_checkpoint)},
            "evaluate": {
                "prompts": ["lofi piano with vinyl crackle"],
                "off_style_prompts": [],
                "seconds": 2.5,
                "batch_size": 1,
            },
            # one optimizer step on this small folder, 5 s clips (a CPU test, not a real run)
            "segment": {"clip_seconds": 5.0, "min_clip_seconds": 2.0, "valid_fraction": 0.3},
            "train": {
                "epochs": 1,
                "grad_accum": 64,
                "warmup_steps": 0,
                "sample_prompts": ["lofi piano with vinyl crackle"],
                "sample_seconds": 1.0,
            },
        },
    )
    # 5. check before anything loads
    assert "params.yaml: ok" in run(*python, "validate")
    run("dvc", "add", "-q", "data/raw")
    run("git", "add", "-A")
    run("git", "commit", "-qm", "my music")
    # 6. run
    run("dvc", "repro")

    manifest = [json.loads(x) for x in (project / "data/segments/manifest.jsonl").read_text().splitlines()]
    skipped = [json.loads(x) for x in (project / "data/segments/skipped.jsonl").read_text().splitlines()]
    decoded = {r["source"] for r in manifest}
    assert {"a.wav", "album/b.flac", "c.mp3", "d.ogg", "e.opus"} <= decoded
    if shutil.which("ffmpeg"):
        assert "f.m4a" in decoded
    else:
        assert any(s["source"] == "f.m4a" and "ffmpeg" in s["reason"] for s in skipped)
    captions = {r["source"]: (r["caption"], r["caption_source"]) for r in manifest}
    assert captions["a.wav"] == ("lofi hip hop, mellow piano, vinyl crackle", "sidecar")
    assert captions["c.mp3"][1] == "tags" and captions["c.mp3"][0]  # no .txt: musicnn tags (sidecar_or_tags)

    index = json.loads((project / "data/tokens/index.json").read_text())
    assert index["codec"]["sample_rate"] == 32000 and index["codec"]["num_codebooks"] == 4
    assert index["codec"]["codebook_size"] == 2048 and index["frames"] == 250  # 50 Hz, read from the config
    metrics = json.loads((project / "metrics/train/metrics.json").read_text())
    assert metrics["optimizer_steps"] == 1
    size = (project / "models/best_model/adapter_model.safetensors").stat().st_size
    # rank 32 on q,k,v,out of self- and cross-attention and fc1/fc2 of 24 layers:
    # 24 x (8 x 32 x 2048 + 2 x 32 x 5120) = 20.4 M params, ~82 MB in fp32 (the log saw ~79 MB)
    assert 80e6 < size < 83e6
    rows = [json.loads(x) for x in (project / "evaluation/comparison_results.jsonl").read_text().splitlines()]
    assert sorted(r["model"] for r in rows) == ["base", "base", "best", "best", "final", "final"]  # 2 samples each
    for r in rows:
        audio, sr = sf.read(project / "evaluation" / r["file"])
        assert sr == 32000 and abs(len(audio) / sr - 2.5) < 0.05
    sample, sr = sf.read(project / "metrics/train/samples/epoch_1/00.wav")  # heard during training
    assert sr == 32000 and len(sample) == sr
    headline = json.loads((project / "metrics/headline.json").read_text())
    assert set(headline["valid_loss_real"]) == {"base", "best"}
