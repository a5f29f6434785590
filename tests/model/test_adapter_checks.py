"""An adapter that loads is the adapter that was trained: corrupt, incomplete or altered weights
stop `generate` (and evaluate, and train's init_adapter) with one line, never garbage audio."""

import hashlib
import json
import shutil

import pytest
from safetensors.torch import load_file, save_file

from musicgen_lora.__main__ import main
from musicgen_lora.core.errors import UserError
from musicgen_lora.core.tracked import verify_tracked


def generate(capsys, adapter, out):
    rc = main(["generate", "--adapter", str(adapter), "--prompt", "chiptune", "--seconds", "1", "--out", str(out)])
    return rc, capsys.readouterr().err.strip()


def copy(tiny_adapter, tmp_path, name="adapter"):
    dst = tmp_path / name
    shutil.copytree(tiny_adapter, dst)
    return dst


def test_the_intact_adapter_generates(in_root, tmp_path, capsys, tiny_adapter):
    assert generate(capsys, copy(tiny_adapter, tmp_path), tmp_path / "ok.wav")[0] == 0


@pytest.mark.parametrize(
    "damage,needle",
    [
        ("nan", "holds NaN or infinite values"),
        ("rename", "lacks"),
        ("extra", "no place for"),
        ("header", "not a readable safetensors file"),
        ("config", "adapter_config.json: not JSON"),
    ],
)
def test_damaged_adapters_are_one_line(in_root, tmp_path, capsys, tiny_adapter, damage, needle):
    adapter = copy(tiny_adapter, tmp_path)
    weights = adapter / "adapter_model.safetensors"
    tensors = load_file(weights)
    if damage == "nan":
        key = sorted(tensors)[0]
        tensors[key][0, 0] = float("nan")
        save_file(tensors, weights)
    elif damage in ("rename", "extra"):
        key = next(k for k in sorted(tensors) if "lora_A" in k)
        renamed = key.replace("lora_A", "lora_X")
        tensors[renamed] = tensors[key].clone() if damage == "extra" else tensors.pop(key)
        save_file(tensors, weights)
    elif damage == "header":
        data = bytearray(weights.read_bytes())
        data[0:8] = (10**12).to_bytes(8, "little")  # a header length far past the file
        weights.write_bytes(bytes(data))
    else:
        (adapter / "adapter_config.json").write_text("{not json")
    rc, err = generate(capsys, adapter, tmp_path / "x.wav")
    assert rc != 0 and needle in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "x.wav").exists()


def test_bytes_that_differ_from_dvc_lock_are_caught(tmp_path, monkeypatch, tiny_adapter):
    """A same-size bit flip (what a corrupt DVC cache object checks out as) is caught against the
    md5s dvc.lock and the cache's .dir listing record."""
    monkeypatch.chdir(tmp_path)
    adapter = copy(tiny_adapter, tmp_path / "models", "best_model")
    listing = [{"md5": hashlib.md5(p.read_bytes()).hexdigest(), "relpath": p.name} for p in sorted(adapter.iterdir())]
    text = json.dumps(listing)
    dir_md5 = hashlib.md5(text.encode()).hexdigest() + ".dir"
    cache = tmp_path / ".dvc/cache/files/md5" / dir_md5[:2]
    cache.mkdir(parents=True)
    (cache / dir_md5[2:]).write_text(text)
    (tmp_path / "dvc.lock").write_text(
        f"schema: '2.0'\nstages:\n  train:\n    cmd: x\n    outs:\n    - path: models/best_model\n      md5: {dir_md5}\n"
    )
    assert verify_tracked(adapter) == len(listing)
    weights = adapter / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 32] = bytes(32)  # same size, 32 bytes zeroed
    weights.write_bytes(bytes(data))
    with pytest.raises(UserError, match="differ from what dvc.lock records.*dvc checkout --relink models/best_model"):
        verify_tracked(adapter)
