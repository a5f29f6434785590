"""The adapter's model card: its params and losses, byte-identical on a rerun, a snippet that runs."""

import hashlib
import json
import re
import shutil

import soundfile as sf

from conftest import ROOT
from musicgen_lora.core.params import ModelParams, TrainParams
from musicgen_lora.model.card import write_cards

ROWS = [{"epoch": 0, "train_loss": None, "valid_loss": 5.583535},
        {"epoch": 1, "train_loss": 5.236828, "valid_loss": 5.017372},
        {"epoch": 2, "train_loss": 5.003244, "valid_loss": 4.980815},
        {"epoch": 3, "train_loss": 4.981093, "valid_loss": 4.990001}]
TP = TrainParams(rank=4, alpha=8.0, dropout=0.05, target_modules=["q_proj", "v_proj"], lr=3e-4, batch_size=2,
                 grad_accum=4, epochs=3, warmup_steps=5, mask_padding=True, seed=7)


def project(tmp_path, tiny_adapter):
    """A run's outputs, laid out as train leaves them: two adapter folders and the token index."""
    for name in ("best_model", "final_model"):
        shutil.copytree(tiny_adapter, tmp_path / "models" / name)
    (tmp_path / "models/final_model/epoch.json").unlink()  # only best carries one
    tokens = tmp_path / "data/tokens"
    tokens.mkdir(parents=True)
    clips = [{"id": "0", "split": "train", "caption": "bright chiptune with \"square\" leads"},
             {"id": "1", "split": "valid", "caption": "music"}]
    (tokens / "index.json").write_text(json.dumps({"frames": 750, "clips": clips}))
    (tmp_path / "assets").symlink_to(ROOT / "assets")
    return tmp_path / "models/best_model", tmp_path / "models/final_model", tokens


def test_card_has_the_params_losses_and_where_to_look(tmp_path, tiny_adapter, monkeypatch):
    monkeypatch.chdir(tmp_path)
    best, final, tokens = project(tmp_path, tiny_adapter)
    (best / "README.md").write_text("# Model Card for Model ID\n[More Information Needed]\n")  # peft's template
    write_cards(best.relative_to(tmp_path), final.relative_to(tmp_path), ROWS, TP, ModelParams(),
                tokens.relative_to(tmp_path))
    card = (best / "README.md").read_text()
    assert "More Information Needed" not in card
    assert "the embedded tiny MusicGen (assets/tiny-musicgen)" in card
    digest = hashlib.sha256((ROOT / "assets/tiny-musicgen/model.safetensors").read_bytes()).hexdigest()
    assert digest in card
    assert "| 4 | 8 | 0.05 | `q_proj`, `v_proj` |" in card  # rank, alpha, dropout, targets
    assert "| 0.0003 | 2 x 4 (x 1) = 8 | 3 | 5 |" in card and "| true |" in card and "| 7 |" in card
    assert hashlib.sha256((tokens / "index.json").read_bytes()).hexdigest() in card
    assert "| 0 (base model) | – | 5.5835 |" in card
    assert "| 2 | 5.0032 | 4.9808 | **this adapter** |" in card  # epoch.json says 2
    assert "lowest valid loss, epoch 2 of 3" in card
    assert "--adapter models/best_model --prompt 'bright chiptune with \"square\" leads'" in card
    assert 'PeftModel.from_pretrained(model, "models/best_model")' in card
    assert all(f in card for f in ("metrics/headline.json", "metrics/summary.md", "metrics/report.html"))
    assert "before evaluation" in card
    final_card = (final / "README.md").read_text()
    assert "| 3 | 4.9811 | 4.9900 | **this adapter** |" in final_card
    assert "the last epoch, 3 of 3 (the lowest valid loss was epoch 2" in final_card
    assert json.loads((best / "adapter_config.json").read_text())["base_model_name_or_path"] == "assets/tiny-musicgen"


def test_card_is_deterministic_and_names_the_base_as_given(tmp_path, tiny_adapter, monkeypatch):
    monkeypatch.chdir(tmp_path)
    best, final, tokens = project(tmp_path, tiny_adapter)
    config = json.loads((best / "adapter_config.json").read_text())
    (best / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "/abs/elsewhere"}))
    write_cards(best, None, ROWS, TP, ModelParams(), tokens)
    first = {p.name: p.read_bytes() for p in best.iterdir()}
    assert (final / "README.md").read_bytes() == (tiny_adapter / "README.md").read_bytes()  # None: left alone
    write_cards(best, None, ROWS, TP, ModelParams(), tokens)
    assert {p.name: p.read_bytes() for p in best.iterdir()} == first
    assert json.loads(first["adapter_config.json"])["base_model_name_or_path"] == "assets/tiny-musicgen"
    assert not re.search(r"20\d\d-\d\d-\d\d|\d\d:\d\d:\d\d", first["README.md"].decode())  # no date, no time


def test_the_card_snippet_runs_with_plain_transformers_and_peft(tmp_path, tiny_adapter, monkeypatch):
    monkeypatch.chdir(tmp_path)
    best, _, tokens = project(tmp_path, tiny_adapter)
    write_cards(best.relative_to(tmp_path), None, ROWS, TP, ModelParams(), tokens.relative_to(tmp_path))
    snippet = re.search(r"```python\n(.*?)```", (best / "README.md").read_text(), re.S).group(1)
    assert "max_new_tokens=503" in snippet  # 10 s at 50 frames/s + 3 delay steps; run 0.5 s here
    exec(compile(snippet.replace("max_new_tokens=503", "max_new_tokens=28"), "card-snippet", "exec"), {})
    assert sf.info(tmp_path / "out.wav").frames == 8000
