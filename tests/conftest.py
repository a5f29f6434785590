import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


@pytest.fixture
def in_root(monkeypatch):
    """Run from the project root, where `model.name: tiny` resolves."""
    monkeypatch.chdir(ROOT)
    return ROOT


@pytest.fixture(scope="session")
def tiny():
    """The embedded tiny MusicGen and its tokenizer, loaded through `from_pretrained`."""
    from musicgen_lora.musicgen import load_model
    from musicgen_lora.params import ModelParams

    return load_model(ModelParams(name=str(ROOT / "assets/tiny-musicgen")))


def sh(cmd: list[str], cwd: Path, env: dict | None = None) -> str:
    """Run a command, failing the test with its output if it fails."""
    import subprocess

    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout


SMALL_PARAMS = {
    "segment": {"clip_seconds": 3.0, "min_clip_seconds": 1.5, "valid_fraction": 0.3},
    "train": {"epochs": 2, "grad_accum": 2, "checkpoint_every": 4},
    "evaluate": {"seconds": 3.0, "prompts": ["bright upbeat chiptune", "calm solo piano"]},
}


def make_project(root: Path, tracks: int = 4, params: dict = SMALL_PARAMS) -> dict:
    """A copy of the project in a fresh git repo with DVC, a tiny corpus and small params.
    Returns the environment to run dvc in (site cache and identity kept inside `root`)."""
    import shutil
    import sys

    from ruamel.yaml import YAML

    from musicgen_lora import corpus

    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, root / name)
    for name in ("src", "assets"):
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    y = YAML()
    data = y.load((root / "params.yaml").read_text())
    for section, values in params.items():
        data[section].update(values)
    with open(root / "params.yaml", "w") as f:
        y.dump(data, f)
    corpus.write_corpus(root / "data/raw", [corpus.TARGET_STYLE], tracks, 0, min_seconds=6, max_seconds=12)
    env = dict(os.environ, DVC_SITE_CACHE_DIR=str(root / ".dvc-site"), DVC_NO_ANALYTICS="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", HF_HUB_OFFLINE="1",
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.invalid", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@example.invalid")
    sh(["git", "init", "-q", "-b", "main"], root, env)
    sh(["dvc", "init", "-q"], root, env)
    sh(["dvc", "config", "core.autostage", "true"], root, env)
    (root / ".gitignore").write_text("/.dvc-site\n__pycache__/\n/models/checkpoints/\n")
    sh(["dvc", "add", "-q", "data/raw"], root, env)
    sh(["git", "add", "-A"], root, env)
    sh(["git", "commit", "-qm", "init"], root, env)
    return env
