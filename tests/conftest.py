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
    from musicgen_lora.core.params import project_params
    from musicgen_lora.model.musicgen import load_model

    return load_model(project_params("model", name=str(ROOT / "assets/tiny-musicgen")))


def sh(cmd: list[str], cwd: Path, env: dict | None = None) -> str:
    """Run a command, failing the test with its output if it fails."""
    from workspace import sh as run

    try:
        return run(cmd, cwd, env)
    except RuntimeError as exc:
        pytest.fail(str(exc))


def make_project(root: Path, tracks: int = 4, params: dict | None = None) -> dict:
    """This project copied into a fresh git + DVC repo at `root` (see tests/workspace.py)."""
    from workspace import SMALL_PARAMS
    from workspace import make_project as make

    return make(ROOT, root, tracks, SMALL_PARAMS if params is None else params)


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory) -> Path:
    """A random-weight MusicGen of musicgen-small's exact shape, saved as a local checkpoint
    directory (no hub here): loaded through the same `from_pretrained` path as the real one."""
    import torch
    from transformers import MusicgenForConditionalGeneration

    from musicgen_lora.model.configs import small_config
    from musicgen_lora.tiny.bootstrap import build_tokenizer

    model_dir = tmp_path_factory.mktemp("checkpoints") / "musicgen-small-shaped"
    torch.manual_seed(0)
    model = MusicgenForConditionalGeneration(small_config())
    with torch.no_grad():  # non-degenerate codebooks (random init leaves them all zero)
        for layer in model.audio_encoder.quantizer.layers:
            layer.codebook.embed.normal_()
    model.save_pretrained(model_dir)
    build_tokenizer(["upbeat chiptune", "lofi piano with vinyl crackle"]).save_pretrained(model_dir)
    return model_dir


@pytest.fixture(scope="session")
def tiny_adapter(tmp_path_factory) -> Path:
    """A LoRA adapter folder for the tiny model, as `train` saves one, with non-zero LoRA B (a
    fresh adapter is a no-op) so it changes what the model generates."""
    import torch
    from peft import get_peft_model

    from musicgen_lora.core.params import project_params
    from musicgen_lora.model.lora import lora_config
    from musicgen_lora.model.musicgen import load_model

    model, _ = load_model(project_params("model", name=str(ROOT / "assets/tiny-musicgen")))
    peft_model = get_peft_model(model, lora_config(project_params("train", rank=4, alpha=8.0), model))
    peft_model.peft_config["default"].base_model_name_or_path = "assets/tiny-musicgen"  # as train, run from the root
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    out = tmp_path_factory.mktemp("adapter") / "best_model"
    peft_model.save_pretrained(out)
    (out / "epoch.json").write_text('{"epoch": 2}')
    return out
