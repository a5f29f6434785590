"""The adapter's model card: its params and losses, byte-identical on a rerun, a snippet that runs."""
# ruff: noqa: E501  (BEST_BODY is the card verbatim, whose Markdown tables are one line per row)

import hashlib
import importlib.metadata as md
import json
import re
import shutil

import soundfile as sf
from huggingface_hub import ModelCard

from conftest import ROOT
from musicgen_lora.core.params import project_params
from musicgen_lora.model.card import write_cards

ROWS = [
    {"epoch": 0, "train_loss": None, "valid_loss": 5.583535},
    {"epoch": 1, "train_loss": 5.236828, "valid_loss": 5.017372},
    {"epoch": 2, "train_loss": 5.003244, "valid_loss": 4.980815},
    {"epoch": 3, "train_loss": 4.981093, "valid_loss": 4.990001},
]
TP = project_params(
    "train",
    rank=4,
    alpha=8.0,
    dropout=0.05,
    target_modules=["q_proj", "v_proj"],
    lr=3e-4,
    batch_size=2,
    grad_accum=4,
    epochs=3,
    warmup_steps=5,
    mask_padding=True,
    seed=7,
)
# The best card of `project` below after its YAML header, as card.py wrote it before the card became a
# huggingface_hub ModelCard (a hand-written f-string): the template must keep every section and figure.
BEST_BODY = """
# MusicGen LoRA adapter: best (epoch 2)

A LoRA adapter on the MusicGen decoder (the text encoder and the codec are unchanged), trained by
the `train` stage of musicgen-lora. This folder is the **best** adapter of its run: the lowest valid loss, epoch 2 of 3.

## Base model

- checkpoint: `assets/tiny-musicgen`, the embedded tiny MusicGen (assets/tiny-musicgen), built by `make tiny` and committed here
- revision: the files committed in this repository (sha256 of model.safetensors: `{tiny_sha}`)
- codec: 16000 Hz, 50 frames/s, 4 codebooks of 256 codes

## LoRA

| rank | alpha | dropout | target modules (decoder only) | adapter parameters |
|---|---|---|---|---|
| 4 | 8 | 0.05 | `q_proj`, `v_proj` | 39,936 |

## Training

| lr | batch x accumulation (x processes) | epochs | warmup steps | weight decay | max grad norm | mask_padding | text_dropout | mixed precision | seed |
|---|---|---|---|---|---|---|---|---|---|
| 0.0003 | 2 x 4 (x 1) = 8 | 3 | 5 | 0 | 1 | true | 0 | no | 7 |

Trained with {versions}.

## Data

- tokens: `data/tokens/index.json`, sha256 `{data_sha}` (the `data_sha256` of the run's environment.json)
- 1 training clips, 1 valid clips, 750 frames each (15 s)

## Losses

Per-codebook cross-entropy on the delay-pattern labels: the training objective, as measured during
training; the valid loss is on the held-out valid clips with padded frames masked out.

| epoch | train loss | valid loss | |
|---|---|---|---|
| 0 (base model) | – | 5.5835 |  |
| 1 | 5.2368 | 5.0174 |  |
| 2 | 5.0032 | 4.9808 | **this adapter** |
| 3 | 4.9811 | 4.9900 |  |

## Use it

With this project (any length; longer than 30 s by windowed continuation, each seam measured):

```bash
python -m musicgen_lora generate --adapter models/best_model --prompt 'bright chiptune with "square" leads' --seconds 30 --out out.wav
```

With plain transformers + peft (10 s: 50 frames/s plus the delay pattern's 3 steps):

```python
import soundfile as sf
from peft import PeftModel
from transformers import AutoTokenizer, MusicgenForConditionalGeneration

base = "assets/tiny-musicgen"
model = MusicgenForConditionalGeneration.from_pretrained(base)
model = PeftModel.from_pretrained(model, "models/best_model").eval()
tokenizer = AutoTokenizer.from_pretrained(base)
inputs = tokenizer(["bright chiptune with \\"square\\" leads"], padding=True, return_tensors="pt")
audio = model.generate(**inputs, do_sample=True, guidance_scale=3.0, max_new_tokens=503)
sf.write("out.wav", audio[0, 0].numpy(), model.config.audio_encoder.sampling_rate)
```

Paths are relative to the project root (where `dvc repro` runs).

## Evaluation

This card is written at training time, before evaluation. In the project's pipeline (dvc.yaml)
the `evaluate` stage then generates its prompt set with the base, best and final models, and
`summarize` reports them side by side: `metrics/headline.json` (per model the valid loss on real
frames only, `valid_loss_real`, the style distance to held-out target clips, flagged clips, the
checks), `metrics/summary.md` and the page to listen to, `metrics/report.html`; one row per prompt
and model in `evaluation/comparison_results.jsonl`, set-level distances in
`evaluation/set_metrics.json`, the audio in `evaluation/best_model/`. The training run's own
record: `metrics/train/` (metrics.json, epochs.json, environment.json, and the per-epoch samples
of `train.sample_prompts` in samples/).
"""


def project(tmp_path, tiny_adapter):
    """A run's outputs, laid out as train leaves them: two adapter folders and the token index."""
    for name in ("best_model", "final_model"):
        shutil.copytree(tiny_adapter, tmp_path / "models" / name)
    (tmp_path / "models/final_model/epoch.json").unlink()  # only best carries one
    tokens = tmp_path / "data/tokens"
    tokens.mkdir(parents=True)
    clips = [
        {"id": "0", "split": "train", "caption": 'bright chiptune with "square" leads'},
        {"id": "1", "split": "valid", "caption": "music"},
    ]
    (tokens / "index.json").write_text(json.dumps({"frames": 750, "clips": clips}))
    (tmp_path / "assets").symlink_to(ROOT / "assets")
    return tmp_path / "models/best_model", tmp_path / "models/final_model", tokens


def test_card_has_the_params_losses_and_where_to_look(tmp_path, tiny_adapter, monkeypatch):
    monkeypatch.chdir(tmp_path)
    best, final, tokens = project(tmp_path, tiny_adapter)
    (best / "README.md").write_text("# Model Card for Model ID\n[More Information Needed]\n")  # peft's template
    write_cards(
        best.relative_to(tmp_path),
        final.relative_to(tmp_path),
        ROWS,
        TP,
        project_params("model"),
        tokens.relative_to(tmp_path),
    )
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
    write_cards(best, None, ROWS, TP, project_params("model"), tokens)
    first = {p.name: p.read_bytes() for p in best.iterdir()}
    assert (final / "README.md").read_bytes() == (tiny_adapter / "README.md").read_bytes()  # None: left alone
    write_cards(best, None, ROWS, TP, project_params("model"), tokens)
    assert {p.name: p.read_bytes() for p in best.iterdir()} == first
    assert json.loads(first["adapter_config.json"])["base_model_name_or_path"] == "assets/tiny-musicgen"
    assert not re.search(r"20\d\d-\d\d-\d\d|\d\d:\d\d:\d\d", first["README.md"].decode())  # no date, no time


def test_the_card_snippet_runs_with_plain_transformers_and_peft(tmp_path, tiny_adapter, monkeypatch):
    monkeypatch.chdir(tmp_path)
    best, _, tokens = project(tmp_path, tiny_adapter)
    write_cards(best.relative_to(tmp_path), None, ROWS, TP, project_params("model"), tokens.relative_to(tmp_path))
    snippet = re.search(r"```python\n(.*?)```", (best / "README.md").read_text(), re.S).group(1)
    assert "max_new_tokens=503" in snippet  # 10 s at 50 frames/s + 3 delay steps; run 0.5 s here
    exec(compile(snippet.replace("max_new_tokens=503", "max_new_tokens=28"), "card-snippet", "exec"), {})
    assert sf.info(tmp_path / "out.wav").frames == 8000


def test_card_is_a_hub_model_card_whose_body_is_unchanged(tmp_path, tiny_adapter, monkeypatch):
    monkeypatch.chdir(tmp_path)
    best, final, tokens = project(tmp_path, tiny_adapter)
    write_cards(
        best.relative_to(tmp_path),
        final.relative_to(tmp_path),
        ROWS,
        TP,
        project_params("model"),
        tokens.relative_to(tmp_path),
    )
    for folder in (best, final):
        card = ModelCard.load(folder / "README.md")  # a local file: no network
        assert card.data.base_model == "assets/tiny-musicgen"  # what `tiny` resolves to, as adapter_config.json says
        assert card.data.library_name == "peft" and card.data.pipeline_tag == "text-to-audio"
        assert card.data.tags == ["lora", "musicgen", "text-to-audio", "peft", "musicgen-lora"]
    text = (best / "README.md").read_text()
    assert text.startswith("---\nbase_model: assets/tiny-musicgen\n") and text.endswith("in samples/).\n")
    expected = BEST_BODY.format(
        tiny_sha=hashlib.sha256((ROOT / "assets/tiny-musicgen/model.safetensors").read_bytes()).hexdigest(),
        data_sha=hashlib.sha256((tokens / "index.json").read_bytes()).hexdigest(),
        versions=", ".join(f"{p} {md.version(p)}" for p in ("torch", "transformers", "peft")),
    )
    assert ModelCard.load(best / "README.md").text == expected
