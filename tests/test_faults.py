"""Fault injection: every data, adapter or params fault a user can cause ends as one line naming
the file (or key) and what to do, with a non-zero exit, never a traceback."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from peft import get_peft_model
from safetensors.torch import load_file, save_file

from musicgen_lora import __main__ as cli
from musicgen_lora.core.errors import UserError
from musicgen_lora.core.params import project_params
from musicgen_lora.model.lora import check_adapter_dir, load_adapters, lora_config
from musicgen_lora.model.tokens import INDEX, TokenSplit, load_tokens
from musicgen_lora.stages import encode

from conftest import ROOT

TINY = project_params("model", name=str(ROOT / "assets/tiny-musicgen"))


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def write_tokens(folder, clips: int = 3):
    folder.mkdir(parents=True, exist_ok=True)
    save_file(
        {"codes": torch.zeros(clips, 4, 10, dtype=torch.int16), "frame_mask": torch.ones(clips, 10, dtype=torch.bool)},
        str(folder / "shard-00000.safetensors"),
    )
    (folder / INDEX).write_text(
        json.dumps(
            {
                "codec": {"num_codebooks": 4},
                "frames": 10,
                "shards": ["shard-00000.safetensors"],
                "clips": [
                    {"id": str(i), "split": "train", "caption": "x", "shard": "shard-00000.safetensors", "row": i}
                    for i in range(clips)
                ],
            }
        )
    )


@pytest.mark.parametrize("reader", [load_tokens, TokenSplit], ids=["whole", "clip by clip"])
def test_a_truncated_token_shard_is_named(tmp_path, reader):
    write_tokens(tmp_path)
    shard = tmp_path / "shard-00000.safetensors"
    clips = reader(tmp_path, "train")
    assert len(clips.captions if reader is TokenSplit else clips[3]) == 3
    shard.write_bytes(shard.read_bytes()[:-40])
    with pytest.raises(UserError, match=r"shard-00000.safetensors: damaged token shard .*dvc repro -f encode"):
        reader(tmp_path, "train")
    shard.unlink()
    with pytest.raises(UserError, match="token shard missing"):
        reader(tmp_path, "train")


def manifest(folder, rows):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def clip_row(i: int, file: str) -> dict:
    return {
        "id": f"{i:06d}",
        "file": file,
        "source": "a.wav",
        "offset_s": 0.0,
        "duration_s": 1.0,
        "padding_fraction": 0.0,
        "caption": "x",
        "caption_source": "sidecar",
        "split": "train",
    }


def test_a_clip_listed_but_missing_is_named(tmp_path):
    seg = tmp_path / "seg"
    (seg / "clips").mkdir(parents=True)
    sf.write(seg / "clips/000000.wav", np.zeros(16000, dtype=np.float32), 16000)
    manifest(seg, [clip_row(0, "clips/000000.wav"), clip_row(1, "clips/000001.wav")])
    with pytest.raises(UserError, match=r"clips/000001.wav: listed in .*manifest.jsonl but not on disk"):
        encode.run(seg, tmp_path / "tokens", project_params("encode"), TINY)
    assert not (tmp_path / "tokens").exists()  # nothing half-written


def test_a_manifest_path_outside_its_folder_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    seg = tmp_path / "data/segments"
    manifest(seg, [clip_row(0, "../../../etc/passwd")])
    monkeypatch.chdir(ROOT)
    assert cli.main(["encode", "--segments", str(seg), "--out", str(tmp_path / "tokens")]) == 1
    assert "points outside" in one_line(capsys)


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    from musicgen_lora.model.musicgen import load_model

    model, _ = load_model(TINY)  # its own copy: get_peft_model wraps the model in place
    folder = tmp_path_factory.mktemp("adapter")
    get_peft_model(model, lora_config(project_params("train", rank=4, alpha=8.0), model)).save_pretrained(folder)
    return folder


def test_adapter_folder_faults_are_one_line(tmp_path, adapter):
    with pytest.raises(UserError, match="no adapter_config.json"):
        check_adapter_dir(tmp_path)  # empty folder
    (tmp_path / "adapter_config.json").write_text((adapter / "adapter_config.json").read_text())
    (tmp_path / "adapter_model.bin").write_bytes(b"\x80\x04not unpickled")
    with pytest.raises(UserError, match="adapter_model.bin is a pickle: not loaded"):
        check_adapter_dir(tmp_path)


def test_an_adapter_of_another_shape_is_named(tmp_path, adapter):
    from musicgen_lora.model.musicgen import load_model

    other = tmp_path / "other"
    other.mkdir()
    (other / "adapter_config.json").write_text((adapter / "adapter_config.json").read_text())
    tensors = load_file(str(adapter / "adapter_model.safetensors"))
    save_file(
        {k: torch.zeros(v.shape[0] + 3, v.shape[1]) for k, v in tensors.items()}, str(other / "adapter_model.safetensors")
    )
    model, _ = load_model(TINY)
    with pytest.raises(UserError, match=r"other: does not fit this model"):
        load_adapters(model, {"best": other})


def test_target_modules_matching_nothing_fail_before_the_weights_load(monkeypatch):
    from musicgen_lora.core.params import ParamsError
    from musicgen_lora.model import musicgen
    from musicgen_lora.model.musicgen import load_config

    monkeypatch.setattr(musicgen, "load_model", lambda *a, **k: pytest.fail("weights loaded"))
    with pytest.raises(ParamsError, match="match no module"):
        lora_config(project_params("train", target_modules=["q_prj"]), load_config(TINY))


def test_ctrl_c_ends_with_one_line(monkeypatch, capsys):
    from musicgen_lora.stages import segment

    def interrupted(argv):
        raise KeyboardInterrupt

    monkeypatch.setattr(segment, "main", interrupted)
    assert cli.main(["segment"]) == 130
    assert "segment: interrupted" in one_line(capsys)
    with pytest.raises(KeyboardInterrupt):
        cli.main(["--debug", "segment"])  # --debug shows the traceback instead


def test_dvc_never_deletes_trains_outputs_before_it_runs():
    """DVC removes a stage's outputs before running it, unless `persist`: a train that is killed or
    diverges must leave the last good adapters and metrics/train's tracked files in place (train
    replaces each atomically only when it has a new one)."""
    from ruamel.yaml import YAML

    outs = YAML(typ="safe").load((ROOT / "dvc.yaml").read_text())["stages"]["train"]["outs"]
    for out in outs:
        name, options = next(iter(out.items())) if isinstance(out, dict) else (out, {})
        assert options.get("persist") is True, name


def test_preset_on_an_empty_train_section_is_one_line(tmp_path, monkeypatch, capsys):
    """Before: TypeError: argument of type 'NoneType' is not iterable."""
    text = (ROOT / "params.yaml").read_text()
    start, end = text.index("train:\n"), text.index("evaluate:\n")
    (tmp_path / "params.yaml").write_text(text[:start] + "train:\n" + text[end:])
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments/presets.yaml").write_bytes((ROOT / "experiments/presets.yaml").read_bytes())
    monkeypatch.chdir(tmp_path)
    assert cli.main(["preset", "musicgen-small"]) == 2
    assert capsys.readouterr().err.strip() == (
        "params.yaml: section train is empty or not a mapping; restore it (`git checkout params.yaml`) and run again"
    )


def test_trials_outside_git_or_without_a_manifest_is_one_line(tmp_path, monkeypatch, capsys):
    """Before: FileNotFoundError: 'experiments/trials.yaml' (a traceback)."""
    import subprocess

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert cli.main(["trials"]) == 1
    assert "trials: not inside a git repository" in capsys.readouterr().err
    subprocess.run(["git", "init", "-q", "."], check=True)
    assert cli.main(["trials"]) == 1
    assert capsys.readouterr().err.strip().startswith("experiments/trials.yaml: no trials manifest here")
