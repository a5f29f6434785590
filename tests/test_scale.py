"""Beyond one process and one machine: accelerate DDP and a DVC remote. (The musicgen-small shape
goes through the whole pipeline in test_own_music.py.)"""

import hashlib
import json
from pathlib import Path

import pytest

from musicgen_lora.core.params import edit_params
from conftest import ROOT, make_project, sh
from workspace import TRAIN_ARGS

pytestmark = pytest.mark.slow


def set_param(root: Path, key: str, value) -> None:
    section, name = key.split(".")
    edit_params(root / "params.yaml", {section: {name: value}})


POISON = """
import os, sys
from musicgen_lora.__main__ import main
from musicgen_lora.model import trainer

loss_of, steps = trainer.forward_loss, []

def poisoned(model, inputs, pad_id, start_id):  # rank 1's second training batch: NaN (an fp16 overflow)
    loss = loss_of(model, inputs, pad_id, start_id)
    if model.training and os.environ["RANK"] == "1":
        steps.append(1)
        if len(steps) == 2:
            return loss * float("nan")
    return loss

trainer.forward_loss = poisoned
sys.exit(main(sys.argv[1:]))
"""


def adapter_bytes(root: Path) -> bytes:
    return (root / "models/final_model/adapter_model.safetensors").read_bytes()


def test_processes_and_machines_are_params(tmp_path):
    """`dvc exp run -S train.processes=2` trains as two DDP processes with no edit to dvc.yaml and
    matches one process at the same effective batch; train.machines=2 (two "machines" on this host, one process each,
    MACHINE_RANK 0 and 1) gives the 2-process run's adapter to the byte."""
    import socket
    import subprocess

    env = make_project(
        tmp_path,
        tracks=3,
        params={
            "segment": {"clip_seconds": 3.0, "min_clip_seconds": 1.5, "valid_fraction": 0.3},
            "train": {"epochs": 2, "lr": 0.001, "sample_prompts": ["bright upbeat chiptune"], "sample_seconds": 1.0},
        },
    )
    sh(["dvc", "repro", "encode"], tmp_path, env)
    set_param(tmp_path, "train.grad_accum", 4)
    sh(["dvc", "repro", "train"], tmp_path, env)
    one = json.loads((tmp_path / "metrics/train/epochs.json").read_text())
    one_m = json.loads((tmp_path / "metrics/train/metrics.json").read_text())
    # what a user types: an experiment with the param set, dvc.yaml untouched
    sh(["git", "add", "-A"], tmp_path, env)
    sh(["git", "commit", "-qm", "one process"], tmp_path, env)
    proc = subprocess.run(
        ["dvc", "exp", "run", "train", "-S", "train.processes=2", "-S", "train.grad_accum=2"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "2 process(es) x 1 machine(s) under accelerate launch" in proc.stderr  # a note: logging, on stderr
    assert sh(["git", "diff", "--stat", "HEAD", "--", "dvc.yaml"], tmp_path, env) == ""
    two = json.loads((tmp_path / "metrics/train/epochs.json").read_text())
    two_m = json.loads((tmp_path / "metrics/train/metrics.json").read_text())
    assert one_m["effective_batch"] == two_m["effective_batch"] == 4
    assert (one_m["world_size"], two_m["world_size"]) == (1, 2)
    assert one_m["optimizer_steps"] == two_m["optimizer_steps"]
    assert two[0]["valid_loss"] == pytest.approx(one[0]["valid_loss"], rel=1e-5)
    # Same effective batch and seed; the data order differs (one shard per process), so the
    # losses agree within a tolerance, not bit for bit: valid 1%, train (an epoch mean over a
    # differently ordered walk) 3%.
    for a, b in zip(one[1:], two[1:]):
        assert b["valid_loss"] == pytest.approx(a["valid_loss"], rel=0.01)
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=0.03)
    two_processes = adapter_bytes(tmp_path)

    set_param(tmp_path, "train.processes", 1)
    set_param(tmp_path, "train.grad_accum", 2)
    set_param(tmp_path, "train.machines", 2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    machines = [
        subprocess.Popen(
            ["python", "-m", "musicgen_lora", *TRAIN_ARGS],
            cwd=tmp_path,
            text=True,
            env={**env, "MACHINE_RANK": str(rank), "MAIN_PROCESS_IP": "127.0.0.1", "MAIN_PROCESS_PORT": port},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for rank in (0, 1)
    ]
    for m in machines:
        output = m.communicate(timeout=600)[0]
        assert m.returncode == 0, output
    assert json.loads((tmp_path / "metrics/train/metrics.json").read_text())["world_size"] == 2
    assert adapter_bytes(tmp_path) == two_processes

    # A NaN on one process only stops every process. Before: rank 1 raised, rank 0 waited in the
    # gradient all-reduce until the 30-minute timeout.
    set_param(tmp_path, "train.machines", 1)
    set_param(tmp_path, "train.processes", 2)
    set_param(tmp_path, "train.grad_accum", 1)
    (tmp_path / "poison.py").write_text(POISON)
    run = subprocess.run(
        [
            "accelerate",
            "launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "poison.py",
            *TRAIN_ARGS,
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode != 0
    assert "train: loss is not finite on 1 of 2 processes at optimizer step 2; lower train.lr" in run.stderr
    assert "Traceback" not in run.stderr.split("loss is not finite")[0]
    live = json.loads((tmp_path / "metrics/train/metrics.json").read_text())
    assert live["diverged"].startswith("train: loss is not finite") and live["optimizer_steps"] == 1


def test_a_launch_by_hand_must_agree_with_params(tmp_path):
    """A saved `accelerate config` (here: its environment) asking for bf16 while params.yaml says
    no, or a launch with more processes than params.yaml says: one line, nothing trained."""
    import os
    import subprocess
    import sys

    # refused before any data is read: params.yaml alone is enough
    (tmp_path / "params.yaml").write_bytes((ROOT / "params.yaml").read_bytes())
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    for extra, words in (
        ({"ACCELERATE_MIXED_PRECISION": "bf16"}, "the launcher asks for mixed precision bf16"),
        ({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}, "launched as 2 processes"),
    ):
        run = subprocess.run(
            [sys.executable, "-m", "musicgen_lora", *TRAIN_ARGS],
            cwd=tmp_path,
            env={**env, **extra},
            capture_output=True,
            text=True,
        )
        assert run.returncode == 1 and words in run.stderr and "Traceback" not in run.stderr, run.stderr
        assert not (tmp_path / "models/final_model").exists()


def md5_tree(root: Path, rel: str) -> dict:
    base = root / rel
    return {
        p.relative_to(base).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(base.rglob("*"))
        if p.is_file()
    }


def test_local_remote_push_clone_pull(tmp_path):
    src, clone, remote = tmp_path / "src", tmp_path / "clone", tmp_path / "remote"
    src.mkdir()
    env = make_project(src, tracks=3)
    sh(["dvc", "repro", "train"], src, env)
    sh(["dvc", "remote", "add", "-d", "shared", str(remote)], src, env)
    sh(["git", "add", "-A"], src, env)
    sh(["git", "commit", "-qm", "trained"], src, env)
    sh(["git", "tag", "-a", "trial-x", "-m", "a trained adapter"], src, env)
    sh(["dvc", "push"], src, env)
    sh(["git", "clone", "-q", str(src), str(clone)], tmp_path, env)
    sh(["git", "checkout", "-q", "trial-x"], clone, env)
    sh(["dvc", "pull", "--with-deps", "train"], clone, dict(env, DVC_SITE_CACHE_DIR=str(clone / ".dvc-site")))
    for rel in ("models/best_model", "models/final_model", "data/tokens", "data/raw"):
        assert md5_tree(clone, rel) == md5_tree(src, rel), rel
    # DVC's model registry (dvc.yaml `artifacts:`): a version is a git tag `<artifact>@v<semver>` (what GTO's
    # `gto register` writes); `dvc artifacts get` fetches it by name, from the repository and its remote
    sh(
        ["git", "tag", "-a", "best-adapter@v0.1.0", "-m", "Registering artifact best-adapter version v0.1.0", "trial-x"],
        src,
        env,
    )
    sh(
        ["dvc", "artifacts", "get", str(src), "best-adapter", "--rev", "v0.1.0", "-o", str(tmp_path / "got")],
        tmp_path,
        dict(env, DVC_SITE_CACHE_DIR=str(tmp_path / ".dvc-site-get")),
    )
    assert md5_tree(tmp_path, "got") == md5_tree(src, "models/best_model")
