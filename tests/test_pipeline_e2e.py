"""End to end, as a new user's first hour goes (the README's own-music steps): the demo corpus
replaced by a folder of three styles with broken files, the real dvc CLI runs the five stages in a
temporary git repo, the run is committed, a second experiment runs with `dvc exp run -S`, and
every command's output is read for tracebacks."""

import json
import math
import re
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
from ruamel.yaml import YAML

from musicgen_lora.tiny import corpus

from conftest import ROOT, make_project, sh

pytestmark = pytest.mark.slow
STYLES = ("piano", "ambient", "bass")  # three folders of the user's music, two recordings each


def my_music(raw):
    """Three styles in three folders, a damaged copy and a text file named .mp3 among them."""
    shutil.rmtree(raw)
    for style in STYLES:
        corpus.write_corpus(raw, [style], 2, 0, min_seconds=6, max_seconds=9)
    sf.write(raw / "bass/cut off.wav", corpus.synth_track("bass", 0, 7, 6.0, 16000)[0], 16000)
    (raw / "bass/cut off.wav").write_bytes((raw / "bass/cut off.wav").read_bytes()[:60000])
    (raw / "piano/notes.mp3").write_text("not audio\n")


def run(cmd, root, env, outputs: list) -> str:
    """A command that must succeed; its stdout and stderr are kept to look for tracebacks."""
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    outputs.append(proc.stdout + proc.stderr)
    assert proc.returncode == 0, f"{cmd}: {proc.stderr[-3000:]}"
    return proc.stdout


def test_dvc_repro_end_to_end(tmp_path):
    env, seen = make_project(tmp_path), []
    # the README's steps: the demo corpus out, the user's music in, versioned, checked, run, committed
    sh(["git", "rm", "-q", "data/raw.dvc"], tmp_path, env)
    my_music(tmp_path / "data/raw")
    run(["dvc", "add", "-q", "data/raw"], tmp_path, env, seen)
    run(["git", "add", "-A"], tmp_path, env, seen)
    run(["git", "commit", "-qm", "my music"], tmp_path, env, seen)
    assert "params.yaml: ok" in run(["python", "-m", "musicgen_lora", "validate"], tmp_path, env, seen)
    run(["dvc", "repro"], tmp_path, env, seen)

    manifest = [json.loads(x) for x in (tmp_path / "data/segments/manifest.jsonl").read_text().splitlines()]
    assert {r["source"].split("/")[0] for r in manifest if r["split"] == "valid"} == set(STYLES)  # every style
    skipped = {
        json.loads(x)["source"]: json.loads(x)["reason"]
        for x in (tmp_path / "data/segments/skipped.jsonl").read_text().splitlines()
    }
    assert skipped["bass/cut off.wav"].startswith("damaged") and skipped["piano/notes.mp3"].startswith("not .mp3")

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
    for model_top_tag in [summary["target"]["top_tags"][0][0]] + [
        summary["set"][m]["top_tags"][0][0] for m in ("base", "best", "final")
    ]:
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
    params = YAML(typ="safe").load(tmp_path / "params.yaml")
    ep, gp = params["evaluate"], params["generation"]
    clip = next(r for r in rows if r["model"] == "best" and r["seed"] == 3)
    sh(
        [
            "python",
            "-m",
            "musicgen_lora",
            "generate",
            "--adapter",
            "models/best_model",
            "--prompt",
            clip["prompt"],
            "--seed",
            "3",
            "--seconds",
            str(ep["seconds"]),
            "--guidance",
            str(gp["guidance_scale"]),
            "--temperature",
            str(gp["temperature"]),
            "--top-k",
            str(gp["top_k"]),
            "--out",
            "again.wav",
        ],
        tmp_path,
        env,
    )
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

    # the run committed (the README's step 6), a second experiment, both side by side
    reports = tmp_path / "reports"
    shutil.copytree(ROOT / "reports", reports, ignore=shutil.ignore_patterns("*_audio"))  # what a clone has
    shutil.copytree(ROOT / "experiments", tmp_path / "experiments")
    committed = {f.name: f.read_bytes() for f in reports.iterdir() if f.is_file()}
    run(["git", "add", "-A"], tmp_path, env, seen)
    run(["git", "commit", "-qm", "first run on my music"], tmp_path, env, seen)
    # ... in bf16 with half-precision evaluation: a GPU's precision path, run on the CPU (CPU autocast is real bf16)
    fp32 = json.loads((tmp_path / "metrics/train/epochs.json").read_text())
    run(
        [
            "dvc",
            "exp",
            "run",
            "-n",
            "lr-high",
            "-S",
            "train.lr=0.002",
            "-S",
            "train.epochs=1",
            "-S",
            "train.mixed_precision=bf16",
            "-S",
            "evaluate.half_precision=true",
        ],
        tmp_path,
        env,
        seen,
    )
    bf16 = json.loads((tmp_path / "metrics/train/epochs.json").read_text())
    assert all(math.isfinite(e["valid_loss"]) for e in bf16) and len(bf16) == 2
    assert abs(bf16[0]["valid_loss"] / fp32[0]["valid_loss"] - 1) < 0.02, (bf16[0], fp32[0])  # the same base model
    made = [json.loads(x) for x in (tmp_path / "evaluation/comparison_results.jsonl").read_text().splitlines()]
    assert {r["made_on"]["dtype"] for r in made} == {"bfloat16"} and all(math.isfinite(r["valid_loss"]) for r in made)
    audio = [sf.read(str(tmp_path / "evaluation" / r["file"]), dtype="float32")[0] for r in made]
    assert all(np.isfinite(a).all() and np.abs(a).max() > 0.01 for a in audio)  # readable, finite, not silent
    rows = json.loads(run(["dvc", "exp", "show", "--json"], tmp_path, env, seen))
    baseline = next(r for r in rows if r["rev"] != "workspace")["data"]
    shown = baseline["metrics"]["metrics/headline.json"]["data"]
    # the baseline row is the user's committed run (`dvc exp run` left lr-high's results in the workspace)
    assert shown == json.loads(sh(["git", "show", "HEAD:metrics/headline.json"], tmp_path, env))
    table = run(["python", "-m", "musicgen_lora", "show"], tmp_path, env, seen)
    assert [line.split()[0] for line in table.splitlines()[1:3]] == ["baseline", "lr-high"], table
    # compare: the committed run and the experiment ranked, with the param they vary, and a page to hear them
    out = run(["python", "-m", "musicgen_lora", "compare"], tmp_path, env, seen)
    mine = (reports / "experiments.md").read_text()
    assert "`baseline`, `lr-high`" in mine and mine in out + "\n"
    header = next(line for line in mine.splitlines() if line.startswith("| run |"))
    assert "train.lr" in header and "train.epochs" in header and "train.rank" not in header
    assert len(re.findall(r"<audio ", (reports / "experiments.html").read_text())) == 2 * 2  # 2 prompts x 2 runs
    # the trials' report: no trials here (their tags do not travel with a clone): it says so, touches it not
    proc = subprocess.run(
        ["python", "-m", "musicgen_lora", "compare", "--trials"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    seen.append(proc.stdout + proc.stderr)
    assert proc.returncode != 0 and "git fetch --tags" in proc.stderr
    assert {f.name: f.read_bytes() for f in reports.iterdir() if f.name.startswith("trials")} == committed
    assert not [out for out in seen if "Traceback" in out]

    # a corrupt checkout of what a stage reads (bytes that differ from dvc.lock) stops it in one line
    shard = sorted((tmp_path / "data/tokens").glob("*.safetensors"))[0]
    data = bytearray(shard.read_bytes())
    data[-64:-32] = bytes(32)
    shard.write_bytes(bytes(data))
    proc = subprocess.run(
        [
            "python",
            "-m",
            "musicgen_lora",
            "train",
            "--tokens",
            "data/tokens",
            "--best",
            "b",
            "--final",
            "f",
            "--metrics",
            "m",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().endswith("`dvc commit` records it)") and shard.name in proc.stderr
    assert "dvc checkout --relink data/tokens" in proc.stderr
