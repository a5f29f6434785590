"""Training that stops: killed mid-epoch and resumed, and a diverging loss."""

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from conftest import make_project, sh

pytestmark = pytest.mark.slow
TRAIN = ["python", "-m", "musicgen_lora", "train", "--tokens", "data/tokens", "--best", "models/best_model",
         "--final", "models/final_model", "--metrics", "metrics/train"]
PARAMS = {"segment": {"clip_seconds": 3.0, "min_clip_seconds": 1.5, "valid_fraction": 0.3},
          "train": {"epochs": 2, "grad_accum": 1, "checkpoint_every": 3, "dropout": 0.1, "text_dropout": 0.2}}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    env = make_project(root, tracks=3, params=PARAMS)
    sh(["dvc", "repro", "encode"], root, env)
    return root, env


def outputs(root: Path) -> tuple[dict, list]:
    tensors = {d: load_file(root / f"models/{d}/adapter_model.safetensors") for d in ("best_model", "final_model")}
    return tensors, json.loads((root / "metrics/train/epochs.json").read_text())


def test_killed_run_resumes_to_the_same_result(project):
    root, env = project
    sh(TRAIN, root, env)
    clean_tensors, clean_losses = outputs(root)
    assert not list((root / "models/checkpoints").iterdir())  # removed after a finished run

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
    for d in tensors:
        assert tensors[d].keys() == clean_tensors[d].keys()
        for k in tensors[d]:
            assert (tensors[d][k] == clean_tensors[d][k]).all(), (d, k)


def test_nan_loss_stops_naming_the_step(project, tmp_path):
    root, env = project
    params = (root / "params.yaml").read_text()
    diverging = re.sub(r"(?m)^(  lr:) [^ #\n]+", r"\1 1.0e+30", params)
    assert diverging != params
    try:
        (root / "params.yaml").write_text(diverging)
        proc = subprocess.run(TRAIN, cwd=root, env=env, capture_output=True, text=True)
    finally:
        (root / "params.yaml").write_text(params)
    assert proc.returncode != 0
    assert "at optimizer step" in proc.stderr and "train.lr" in proc.stderr
    metrics = json.loads((root / "metrics/train/metrics.json").read_text())
    assert "optimizer step" in metrics["diverged"]
