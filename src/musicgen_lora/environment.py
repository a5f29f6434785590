"""What a run ran on: package versions, torch threads, allocator and device, seeds, model, data hash."""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import platform
from pathlib import Path

import torch

from .allocator import active

PACKAGES = ("torch", "torchaudio", "transformers", "peft", "accelerate", "dvc", "dvclive", "numpy", "soundfile")


def environment(model_name: str, revision: str | None, seeds: dict, data_files: list[Path]) -> dict:
    digest = hashlib.sha256()
    for f in data_files:
        digest.update(Path(f).read_bytes())
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {p: md.version(p) for p in PACKAGES},
        "torch_threads": torch.get_num_threads(),
        "allocator": active(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "seeds": seeds,
        "model": {"name": model_name, "revision": revision},
        "data_sha256": digest.hexdigest(),
    }
