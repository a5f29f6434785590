"""End to end: the real dvc CLI runs the five stages in a temporary git repo."""

import json
import math

import pytest
import soundfile as sf
from ruamel.yaml import YAML

from conftest import make_project, sh

pytestmark = pytest.mark.slow


def test_dvc_repro_end_to_end(tmp_path):
    env = make_project(tmp_path)
    sh(["dvc", "repro"], tmp_path, env)

    for d in ("models/best_model", "models/final_model"):
        assert (tmp_path / d / "adapter_model.safetensors").stat().st_size > 0
        assert json.loads((tmp_path / d / "adapter_config.json").read_text())["peft_type"] == "LORA"
    rows = [json.loads(x) for x in (tmp_path / "evaluation/comparison_results.jsonl").read_text().splitlines()]
    # 2 prompts x 2 samples (evaluate.samples_per_prompt) per model; no padding, so no padded rows
    assert {r["model"] for r in rows} == {"base", "best", "final"} and len(rows) == 3 * 2 * 2
    # each clip has its own seed: evaluate.seed + sample * prompts + prompt index
    assert {r["length"] for r in rows} == {"clip"}
    assert {(r["sample"], r["seed"]) for r in rows} == {(0, 0), (0, 1), (1, 2), (1, 3)}
    for r in rows:
        audio, sr = sf.read(tmp_path / "evaluation" / r["file"])
        assert sr == 16000 and abs(len(audio) / sr - 3.0) < 0.1 and r["duration_s"] == pytest.approx(3.0, abs=0.1)
        for key in ("loudness_slope_lu_per_s", "silence_ratio", "spectral_flatness", "integrated_loudness_lufs"):
            assert math.isfinite(r["metrics"][key])
        assert len(r["metrics"]["rms_dbfs_per_second"]) == 3
        assert -1 <= r["metrics"]["style_similarity"] <= 1 and r["metrics"]["tag_kl"] >= 0
        assert len(r["metrics"]["top_tags"]) == 3 and all(isinstance(t, str) for t in r["metrics"]["top_tags"])
        assert math.isfinite(r["valid_loss"]) and 0 < r["valid_loss"] < 10
    for m in ("base_model", "best_model", "final_model"):
        assert len(list((tmp_path / "evaluation" / m).glob("*.wav"))) == 4
        assert (tmp_path / "evaluation" / m / "musicnn.safetensors").exists()
        assert not (tmp_path / "evaluation" / m / "padded").exists()

    # The stage ran through `python -m musicgen_lora`, which preloads mimalloc (runtime/allocator.py).
    assert json.loads((tmp_path / "metrics/train/environment.json").read_text())["allocator"] == "mimalloc"
    epochs = json.loads((tmp_path / "metrics/train/epochs.json").read_text())
    assert [e["epoch"] for e in epochs] == [0, 1, 2]
    summary = json.loads((tmp_path / "metrics/summary.json").read_text())
    best = min(epochs[1:], key=lambda e: e["valid_loss"])
    assert summary["best_epoch"] == best["epoch"]
    assert summary["models"]["base"]["mean"]["valid_loss"] == pytest.approx(epochs[0]["valid_loss"], rel=1e-4)
    for png in ("loss.png", "loudness.png", "spectrograms.png"):
        assert (tmp_path / "metrics/plots" / png).stat().st_size > 1000
    # every clip's spectrogram is a DVC image plot (dvc plots diff puts experiments side by side)
    plots = json.loads(sh(["dvc", "plots", "show", "--json"], tmp_path, env))["data"]
    images = {p for p in plots if p.startswith("metrics/report_files/spec/")}
    assert images == {f"metrics/report_files/spec/{m}_{i:02d}.png" for m in ("base", "best", "final") for i in range(4)}

    # dvc metrics show reads the headline only: a few values per model, named for what they are
    headline = json.loads((tmp_path / "metrics/headline.json").read_text())
    assert headline["valid_loss_real"]["base"] == summary["models"]["base"]["mean"]["valid_loss"]
    # narrow, so dvc exp show --only-changed fits a terminal: base and best only; the rest in summary.json
    assert set(headline) == {"verdict", "style_share_pct", "style_fd", "valid_loss_real", "flagged", "best_epoch"}
    assert set(headline["valid_loss_real"]) == set(headline["style_fd"]) == {"base", "best"}
    assert summary["valid_loss_objective"]["best"] == pytest.approx(best["valid_loss"], abs=1e-5)
    # the musicnn style distance, with its sample sizes and best's paired interval in summary.json
    assert headline["style_fd"]["base"] == summary["set"]["base"]["style_fd"] > 0
    # the style figures are the in-style prompt's (1 prompt x 2 samples; "calm solo piano" is off-style)
    assert summary["set"]["best"]["n_generated"] == 2 and summary["set"]["best"]["n_target"] >= 2
    assert summary["set"]["best"]["style_fd_vs_base"]["n"] == 2 and "style_fd_latent" not in summary["set"]["best"]
    words = {"improved", "inert", "degraded", "not closer", "overfit", "forgets prompts", "copies training audio"}
    assert headline["verdict"]["best"] and set(headline["verdict"]["best"].split(", ")) <= words
    reference = json.loads((tmp_path / "evaluation/reference.json").read_text())["copy"]
    assert reference["run_limit_s"] >= 1.0 and len(reference["train_clips"]) > 0
    verdicts = {"better", "worse", "no measurable difference"}
    assert set(summary["checks"]["best_vs_base"].values()) <= verdicts
    assert len(summary["checks"]["best_vs_base"]) == 5
    report = (tmp_path / "metrics/summary.md").read_text()
    for model_top_tag in [summary["target"]["top_tags"][0][0]] + [summary["set"][m]["top_tags"][0][0]
                                                                  for m in ("base", "best", "final")]:
        assert model_top_tag in report
    assert "[95% CI]" in report and "## Checks" in report and "Past the real-audio length" not in report
    shown = json.dumps(json.loads(sh(["dvc", "metrics", "show", "--json"], tmp_path, env)))
    assert "metrics/headline.json" in shown and "metrics/summary.json" not in shown and "train.loss" not in shown
    row = json.loads((tmp_path / "evaluation/comparison_results.jsonl").read_text().splitlines()[0])
    assert list(row)[:6] == ["prompt", "model", "sample", "seed", "length", "file"]
    assert "style_fd_mfcc" not in row["metrics"] and "style_fd" not in row["metrics"]
    assert row["made_on"] == {"device": "cpu", "dtype": "float32", "batch": row["made_on"]["batch"]}
    assert row["made_on"]["batch"] >= 1

    # A row's prompt and seed regenerate its clip alone: evaluate generated both prompts in one batch
    ep = YAML(typ="safe").load(tmp_path / "params.yaml")["evaluate"]
    clip = next(r for r in rows if r["model"] == "best" and r["seed"] == 3)
    sh(["python", "-m", "musicgen_lora", "generate", "--adapter", "models/best_model", "--prompt", clip["prompt"],
        "--seed", "3", "--seconds", str(ep["seconds"]), "--guidance", str(ep["guidance_scale"]), "--temperature",
        str(ep["temperature"]), "--top-k", str(ep["top_k"]), "--out", "again.wav"], tmp_path, env)
    again, original = sf.read(tmp_path / "again.wav")[0], sf.read(tmp_path / "evaluation" / clip["file"])[0]
    assert again.shape == original.shape and abs(again - original).max() < 1e-3  # a batched decode: last-bit noise
    status = sh(["dvc", "status"], tmp_path, env)
    assert "up to date" in status.lower(), status
    again = sh(["dvc", "repro"], tmp_path, env)
    assert "didn't change" in again and "Running stage" not in again

    # Determinism: every stage re-run from scratch gives byte-identical tokens, adapters,
    # losses and audio (dvc.lock records the md5 of each output).
    lock = (tmp_path / "dvc.lock").read_text()
    sh(["dvc", "repro", "-f"], tmp_path, env)
    assert (tmp_path / "dvc.lock").read_text() == lock
