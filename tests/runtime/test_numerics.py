"""Same tokens and adapters on any x86 machine: with `numerics.cpu_isa: avx2` (the default), encode
and a short train give identical hashes on this machine as it is and emulating an AVX2-only
machine (MKL, oneDNN and torch's kernels restricted to AVX2). With `native` they differ on a
machine that has AVX-512, which is what the pinning is for."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from musicgen_lora.core.params import edit_params
from musicgen_lora.tiny import corpus

from conftest import ROOT, sh

pytestmark = pytest.mark.slow
AVX2_MACHINE = {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
STEPS = [
    ["encode", "--segments", "seg", "--out", "tokens"],
    ["train", "--tokens", "tokens", "--best", "best", "--final", "final", "--metrics", "train_metrics"],
]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("numerics")
    (root / "assets").symlink_to(ROOT / "assets")
    (root / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    edit_params(
        root / "params.yaml",
        {
            "segment": {"clip_seconds": 3.0, "min_clip_seconds": 1.5, "valid_fraction": 0.3},
            "train": {"epochs": 1, "grad_accum": 2, "sample_prompts": []},
        },
    )
    corpus.write_corpus(root / "raw", [corpus.TARGET_STYLE], 3, 0, min_seconds=6, max_seconds=9)
    sh([sys.executable, "-m", "musicgen_lora", "segment", "--raw", "raw", "--out", "seg"], root)
    return root


def run_steps(root, cpu_isa: str, machine: dict) -> dict[str, str]:
    """Hashes of the token shards and the final adapter after encode + train."""
    edit_params(root / "params.yaml", {"numerics": {"cpu_isa": cpu_isa}})
    env = {k: v for k, v in os.environ.items() if k not in AVX2_MACHINE and k != "MKL_CBWR"}
    for step in STEPS:
        proc = subprocess.run(
            [sys.executable, "-m", "musicgen_lora", *step], cwd=root, env={**env, **machine}, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    files = sorted((root / "tokens").glob("*.safetensors")) + [root / "final/adapter_model.safetensors"]
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


@pytest.fixture(scope="module")
def pinned(workspace) -> dict[str, str]:
    """Hashes of encode + train on the pinned path (`cpu_isa: avx2`, no gradient checkpointing)."""
    return run_steps(workspace, "avx2", {})


def test_pinned_numerics_give_the_same_tokens_and_adapter_on_an_avx2_machine(workspace, pinned):
    assert pinned == run_steps(workspace, "avx2", AVX2_MACHINE)


def outputs(root) -> tuple[dict, dict, list]:
    """(token arrays, adapter tensors, epochs.json) of the last run_steps."""
    tokens = {f"{f.name}/{k}": v for f in sorted((root / "tokens").glob("*.safetensors")) for k, v in load_file(f).items()}
    return (
        tokens,
        load_file(root / "final/adapter_model.safetensors"),
        json.loads((root / "train_metrics/epochs.json").read_text()),
    )


def test_native_numerics_depend_on_the_machine_within_the_stated_tolerance(workspace):
    """Another numerical path (AVX-512 against AVX2, as between machines that are not pinned alike)
    gives other bytes, within what the README states for machines of another CPU vendor:
    identical tokens, losses to 1e-6, adapter weights to 1e-2 of each tensor's largest value."""
    if torch.backends.cpu.get_cpu_capability() != "AVX512":
        pytest.skip("this CPU has no AVX-512: native and AVX2 paths are the same here")
    wide = run_steps(workspace, "native", {})
    tokens, adapter, epochs = outputs(workspace)
    assert wide != run_steps(workspace, "native", AVX2_MACHINE)
    tokens2, adapter2, epochs2 = outputs(workspace)
    assert tokens.keys() == tokens2.keys() and all(np.array_equal(tokens[k], tokens2[k]) for k in tokens)
    for a, b in zip(epochs, epochs2):
        for key in ("train_loss", "valid_loss"):
            assert (a[key] is None and b[key] is None) or abs(a[key] - b[key]) <= 1e-6 * abs(a[key]), (a, b)
    worst = max(float(np.abs(adapter[k] - adapter2[k]).max() / np.abs(adapter[k]).max()) for k in adapter)
    assert 0 < worst < 1e-2, worst


def test_gradient_checkpointing_changes_no_bit_of_the_adapter(workspace, pinned):
    """The train stage with every 2nd decoder layer recomputed writes the adapter of a run without."""
    edit_params(workspace / "params.yaml", {"numerics": {"cpu_isa": "avx2"}})  # the tokens are the same on any path
    edit_params(workspace / "params.yaml", {"train": {"gradient_checkpointing": True, "gradient_checkpointing_every": 2}})
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "musicgen_lora", *STEPS[1]], cwd=workspace, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    finally:
        edit_params(
            workspace / "params.yaml", {"train": {"gradient_checkpointing": False, "gradient_checkpointing_every": 1}}
        )
    assert (
        hashlib.sha256((workspace / "final/adapter_model.safetensors").read_bytes()).hexdigest()
        == pinned["adapter_model.safetensors"]
    )
