"""A throw-away copy of this project: a fresh git + DVC repository with a small demo corpus and
small params, for the end-to-end tests and the pipeline benchmarks (`make bench`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from musicgen_lora.core.params import edit_params
from musicgen_lora.tiny import corpus


def sh(cmd: list[str], cwd: Path, env: dict | None = None) -> str:
    """Run a command; a failure raises with the command's output."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc.stdout


# the train stage's arguments as dvc.yaml runs it (after `python -m musicgen_lora`)
TRAIN_ARGS = ["train", "--tokens", "data/tokens", "--best", "models/best_model", "--final", "models/final_model",
              "--metrics", "metrics/train"]  # fmt: skip

SMALL_PARAMS = {
    "segment": {"clip_seconds": 3.0, "min_clip_seconds": 1.5, "valid_fraction": 0.3},
    "train": {
        "epochs": 2,
        "grad_accum": 2,
        "checkpoint_every": 4,
        "sample_prompts": ["bright upbeat chiptune"],
        "sample_seconds": 1.0,
    },
    "evaluate": {"seconds": 3.0, "prompts": ["bright upbeat chiptune"], "off_style_prompts": ["calm solo piano"]},
}


def make_project(source: Path, root: Path, tracks: int = 4, params: dict = SMALL_PARAMS) -> dict:
    """A copy of the project in a fresh git repo with DVC, a tiny corpus and small params.
    `source` is the project to copy (its dvc.yaml, params.yaml, src/, assets/ and adapters/). Returns the
    environment to run dvc in (site cache and identity kept inside `root`)."""
    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        shutil.copy(source / name, root / name)
    for name in ("src", "assets", "adapters"):
        shutil.copytree(source / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    edit_params(root / "params.yaml", params)
    corpus.write_corpus(root / "data/raw", [corpus.TARGET_STYLE], tracks, 0, min_seconds=6, max_seconds=12)
    env = dict(
        os.environ,
        DVC_SITE_CACHE_DIR=str(root / ".dvc-site"),
        DVC_NO_ANALYTICS="1",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        HF_HUB_OFFLINE="1",
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.invalid",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.invalid",
    )
    sh(["git", "init", "-q", "-b", "main"], root, env)
    sh(["dvc", "init", "-q"], root, env)
    sh(["dvc", "config", "core.autostage", "true"], root, env)
    (root / ".gitignore").write_text("/.dvc-site\n__pycache__/\n/models/checkpoints/\n")
    sh(["dvc", "add", "-q", "data/raw"], root, env)
    sh(["git", "add", "-A"], root, env)
    sh(["git", "commit", "-qm", "init"], root, env)
    return env
