"""What a run's numbers depend on: the machine's numerical path, package versions, seeds, model,
data hash. Nothing that changes without changing the numbers (no kernel version, no host name,
no time), so a tracked provenance file only changes when a rerun could give other results."""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import os
import platform
from pathlib import Path

import torch

from ..runtime.allocator import active
from ..runtime.launch import LAUNCH_OPTIONS

PACKAGES = ("torch", "torchaudio", "transformers", "peft", "accelerate", "dvc", "dvclive", "numpy", "soundfile")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def machine(device: torch.device | str | None = None) -> dict:
    """The numerical path of this process: CPU model and the instruction set torch dispatches to,
    thread counts, allocator, the device the model ran on (None: the one `model.device: auto`
    would pick), Python and package versions."""
    on = torch.device(device if device is not None else "cuda" if torch.cuda.is_available() else "cpu")
    info = {
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the vector ISA torch's kernels use
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "allocator": active(),
        "launched_with": dict(sorted(LAUNCH_OPTIONS.items())),  # pinned ISA variables, mimalloc options
        "device": str(on),
        "python": platform.python_version(),
        "packages": {p: md.version(p) for p in PACKAGES},
    }
    if on.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(on)
    return info


def environment(
    model_name: str, revision: str | None, seeds: dict, data_files: list[Path], device: torch.device | str | None = None
) -> dict:
    """`machine(device)` plus what the run was given: seeds, model, and a hash of its data files."""
    digest = hashlib.sha256()
    for f in data_files:
        digest.update(Path(f).read_bytes())
    return {
        **machine(device),
        "seeds": seeds,
        "model": {"name": model_name, "revision": revision},
        "data_sha256": digest.hexdigest(),
    }


def env_main(argv: list[str]) -> int:
    """`python -m musicgen_lora env`: print what this machine's results depend on, as JSON (compare
    two machines' outputs before comparing their numbers)."""
    import argparse
    import json

    argparse.ArgumentParser(prog="musicgen_lora env", description=env_main.__doc__).parse_args(argv)
    print(json.dumps(machine(), indent=2))
    return 0
