"""Training that stops: killed mid-epoch and resumed, and a diverging loss."""

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import soundfile as sf
from safetensors.torch import load_file

from musicgen_lora.core.params import edit_params

from conftest import make_project, sh
from workspace import TRAIN_ARGS

pytestmark = pytest.mark.slow
TRAIN = ["python", "-m", "musicgen_lora", *TRAIN_ARGS]
PARAMS = {
    "segment": {"clip_seconds": 3.0, "min_clip_seconds": 1.5, "valid_fraction": 0.3},
    "train": {
        "epochs": 2,
        "grad_accum": 1,
        "checkpoint_every": 3,
        "dropout": 0.1,
        "text_dropout": 0.2,
        "sample_prompts": ["bright upbeat chiptune"],
        "sample_seconds": 1.0,
    },
}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    env = make_project(root, tracks=3, params=PARAMS)
    sh(["dvc", "repro", "encode"], root, env)
    return root, env


def curves(root: Path) -> dict[str, str]:
    """DVCLive's live curves and summary (metrics/train/live)."""
    live = root / "metrics/train/live"
    return {p.relative_to(live).as_posix(): p.read_text() for p in sorted(live.rglob("*")) if p.is_file()}


def outputs(root: Path) -> tuple[dict, list]:
    tensors = {d: load_file(root / f"models/{d}/adapter_model.safetensors") for d in ("best_model", "final_model")}
    return tensors, json.loads((root / "metrics/train/epochs.json").read_text())


@pytest.fixture(scope="module")
def clean(project):
    """An uninterrupted run's adapters, losses and live curves, for the kill tests to match."""
    root, env = project
    sh(TRAIN, root, env)
    return (*outputs(root), curves(root))


def test_killed_run_resumes_to_the_same_result(project, clean):
    root, env = project
    clean_tensors, clean_losses, clean_curves = clean
    assert not list((root / "models/checkpoints").iterdir())  # removed after a finished run
    # live curves: every optimizer step's loss and learning rate, the valid loss at 0 and per epoch
    steps = json.loads((root / "metrics/train/metrics.json").read_text())["optimizer_steps"]
    assert clean_curves["plots/metrics/train/loss.tsv"].count("\n") == steps + 1
    assert clean_curves["plots/metrics/train/lr.tsv"].count("\n") == steps + 1
    valid = [line.split("\t") for line in clean_curves["plots/metrics/valid/loss.tsv"].splitlines()[1:]]
    assert [float(v) for _, v in valid] == pytest.approx([e["valid_loss"] for e in clean_losses])
    assert int(valid[0][0]) == 0 and int(valid[-1][0]) == steps
    assert json.loads(clean_curves["metrics.json"]) == {
        "train": {
            "loss": pytest.approx(float(clean_curves["plots/metrics/train/loss.tsv"].splitlines()[-1].split("\t")[1]))
        },
        "valid": {"loss": clean_losses[-1]["valid_loss"]},
        "step": steps,
    }
    cards = {d: (root / f"models/{d}/README.md").read_bytes() for d in ("best_model", "final_model")}
    assert all(b"PeftModel.from_pretrained" in card for card in cards.values())  # model/card.py, not peft's template

    proc = subprocess.Popen(TRAIN, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list(root.glob("models/checkpoints/*/checkpoint-*/trainer_state.json")):
        assert proc.poll() is None and time.time() < deadline, "no checkpoint was written"
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    resumed = sh(TRAIN, root, env)
    tensors, losses = outputs(root)
    assert losses == clean_losses, resumed
    assert curves(root) == clean_curves  # the resumed run continued the same curves, no duplicate steps
    assert {d: (root / f"models/{d}/README.md").read_bytes() for d in cards} == cards  # byte for byte
    for d in tensors:
        assert tensors[d].keys() == clean_tensors[d].keys()
        for k in tensors[d]:
            assert (tensors[d][k] == clean_tensors[d][k]).all(), (d, k)


def test_run_killed_before_its_first_checkpoint_restarts_to_the_same_result(project, clean):
    """Killed after the base evaluation wrote epoch0.json but before any checkpoint: the restart
    skips that evaluation, and must still train exactly as an uninterrupted run (one that saved
    checkpoints every 3 steps: how often a run saves changes none of its results)."""
    root, env = project
    clean_tensors, clean_losses, clean_curves = clean
    params = (root / "params.yaml").read_text()
    try:
        (root / "params.yaml").write_text(re.sub(r"(?m)^(  checkpoint_every:) [^ #\n]+", r"\1 1000", params))
        proc = subprocess.Popen(TRAIN, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 300
        while not list(root.glob("models/checkpoints/*/epoch0.json")):
            assert proc.poll() is None and time.time() < deadline, "the base evaluation never finished"
            time.sleep(0.01)
        # at once: a fast machine trains this tiny run to its end (and its final checkpoint) within a second
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert not list(root.glob("models/checkpoints/*/checkpoint-*"))
        restarted = sh(TRAIN, root, env)
    finally:
        (root / "params.yaml").write_text(params)
    tensors, losses = outputs(root)
    assert losses == clean_losses, restarted
    assert curves(root) == clean_curves  # the base's valid loss at step 0 though its evaluation was skipped
    for d in tensors:
        for k in tensors[d]:
            assert (tensors[d][k] == clean_tensors[d][k]).all(), (d, k)


def test_samples_during_training_leave_the_adapters_unchanged(project):
    """Generating `train.sample_prompts` at every evaluation reseeds torch's RNG inside
    `fork_rng`: dropout (0.1 here), caption dropout and the shuffle draw the same numbers, so
    the adapters are byte-identical to a run without samples."""
    root, env = project
    params = (root / "params.yaml").read_text()
    try:
        edit_params(root / "params.yaml", {"train": {"sample_prompts": []}})
        sh(TRAIN, root, env)
        plain_tensors, plain_losses = outputs(root)
        assert sorted(p.name for p in (root / "metrics/train/samples").iterdir()) == ["index.json"]
        edit_params(root / "params.yaml", {"train": {"sample_prompts": ["calm solo piano"]}})
        sh(TRAIN, root, env)
    finally:
        (root / "params.yaml").write_text(params)
    tensors, losses = outputs(root)
    assert losses == plain_losses
    for d in tensors:
        for k in tensors[d]:
            assert (tensors[d][k] == plain_tensors[d][k]).all(), (d, k)
    samples = root / "metrics/train/samples"
    assert json.loads((samples / "index.json").read_text()) == {"prompts": ["calm solo piano"], "epochs": [0, 1, 2]}
    for e in losses:  # epoch 0 is the base model, before training
        index = json.loads((samples / f"epoch_{e['epoch']}/index.json").read_text())
        assert index["valid_loss"] == e["valid_loss"] and index["train_loss"] == e["train_loss"]
        audio, sr = sf.read(samples / f"epoch_{e['epoch']}" / index["files"][0])
        assert sr == 16000 and len(audio) == sr and abs(audio).max() > 0


def test_continuing_an_adapter_starts_at_its_valid_loss(project):
    """train.init_adapter: one more epoch from a saved adapter starts (epoch 0) at that adapter's
    valid loss; the card and environment.json name where it started; a LoRA shape that differs
    from the adapter's is one line naming the key."""
    root, env = project
    if not (root / "models/best_model").exists():
        sh(TRAIN, root, env)
    trained = json.loads((root / "metrics/train/epochs.json").read_text())[1:]
    best_loss = min(e["valid_loss"] for e in trained)
    shutil.copytree(root / "models/best_model", root / "adapters/round-1")
    params = (root / "params.yaml").read_text()
    try:
        edit_params(root / "params.yaml", {"train": {"init_adapter": "adapters/round-1", "rank": 4}})
        proc = subprocess.run(TRAIN, cwd=root, env=env, capture_output=True, text=True)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert "adapters/round-1 has r 16, this run 4; set train.rank" in proc.stderr.strip().splitlines()[-1]
        edit_params(root / "params.yaml", {"train": {"rank": 16, "epochs": 1}})
        out = sh(TRAIN, root, env)
    finally:
        (root / "params.yaml").write_text(params)
    losses = json.loads((root / "metrics/train/epochs.json").read_text())
    assert [e["epoch"] for e in losses] == [0, 1] and "epoch 0 (the start adapter)" in out
    assert losses[0]["valid_loss"] == pytest.approx(best_loss, abs=1e-6)
    assert losses[1]["valid_loss"] != losses[0]["valid_loss"]  # it trained on from there
    sha = hashlib.sha256((root / "adapters/round-1/adapter_model.safetensors").read_bytes()).hexdigest()
    record = json.loads((root / "metrics/train/environment.json").read_text())["init_adapter"]
    assert record == {"path": "adapters/round-1", "sha256": sha}
    assert (
        f"Continued from the adapter `adapters/round-1` (adapter_model.safetensors sha256 `{sha}`)"
        in (root / "models/final_model/README.md").read_text()
    )


def test_nan_loss_stops_naming_the_step(project, monkeypatch, capsys):
    """A loss that turns NaN (here: from the 6th forward pass on; validation bounds train.lr, so
    no params.yaml value diverges on purpose) stops the run with one line naming the step, keeps
    the best adapter so far and records the divergence."""
    from musicgen_lora.__main__ import main
    from musicgen_lora.model import trainer

    root, _ = project
    monkeypatch.chdir(root)
    calls = []
    real = trainer.forward_loss

    def forward_loss(model, batch, pad_id, start_id):
        calls.append(1)
        loss = real(model, batch, pad_id, start_id)
        return loss * float("nan") if len(calls) > 5 and model.training else loss

    monkeypatch.setattr(trainer, "forward_loss", forward_loss)
    assert main(TRAIN[3:]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "at optimizer step" in err.strip().splitlines()[-1] and "train.lr" in err.strip().splitlines()[-1]
    metrics = json.loads((root / "metrics/train/metrics.json").read_text())
    assert "optimizer step" in metrics["diverged"]


def test_early_stopping_stops_where_the_valid_loss_turned(project):
    """train.early_stopping_patience (Trainer's EarlyStoppingCallback): the run trains the same
    epochs as one without it up to the epoch where the valid loss had not improved for `patience`
    epochs, stops there, and says so in metrics.json and the final adapter's card."""
    root, env = project
    params = (root / "params.yaml").read_text()
    fast = {"epochs": 10, "lr": 0.05, "sample_prompts": [], "dropout": 0.0, "text_dropout": 0.0}
    try:
        edit_params(root / "params.yaml", {"train": fast})
        sh(TRAIN, root, env)
        full = json.loads((root / "metrics/train/epochs.json").read_text())
        assert json.loads((root / "metrics/train/metrics.json").read_text())["early_stop"] is None
        patience, best, waited, stop = 2, float("inf"), 0, None
        for row in full[1:]:
            best, waited = (row["valid_loss"], 0) if row["valid_loss"] < best else (best, waited + 1)
            if waited >= patience:
                stop = row["epoch"]
                break
        assert stop is not None and stop < 10, full  # lr 0.05 on 3 recordings: the loss turns
        edit_params(root / "params.yaml", {"train": {**fast, "early_stopping_patience": patience}})
        sh(TRAIN, root, env)
    finally:
        (root / "params.yaml").write_text(params)
    stopped = json.loads((root / "metrics/train/epochs.json").read_text())
    assert stopped == full[: stop + 1]
    record = json.loads((root / "metrics/train/metrics.json").read_text())["early_stop"]
    assert record["epoch"] == stop and record["of"] == 10 and record["patience"] == patience
    assert f"did not improve for {patience} epoch(s)" in record["why"]
    card = (root / "models/final_model/README.md").read_text()
    assert f"the last epoch, {stop} of 10, where early stopping ended the run" in card
