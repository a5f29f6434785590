"""The model card (README.md) of an adapter folder, and the base model its adapter_config.json names.

`train` writes a card into best_model/ and final_model/ in place of peft's empty template: the
base checkpoint and its revision, the LoRA and training params, the data hash, the losses, which
adapter it is, how to load it (plain transformers + peft, or `generate`) and where its evaluation
will be. Built from the run's params, data index and losses only (no time, no host name), so the
same run writes the same bytes, as DVC outputs must.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import math
import shlex
from pathlib import Path

from safetensors import safe_open

from ..core.files import write_text
from ..core.params import ModelParams, TrainParams
from .families import audio_channels, channel_codebooks, model_class
from .musicgen import TINY_DIR, TINY_NAME, codec_info, load_config, resolve_name
from .tokens import INDEX
from .trainer import world_size

CARD = "README.md"
EXAMPLE_SECONDS = 10


def base_revision(mp: ModelParams) -> str:
    """What pins the base weights: the embedded model's file hash, a local directory as it is, or
    the hub revision (with the commit the local cache resolves it to, where it can)."""
    if mp.name == TINY_NAME:
        digest = hashlib.sha256((TINY_DIR / "model.safetensors").read_bytes()).hexdigest()
        return f"the files committed in this repository (sha256 of model.safetensors: `{digest}`)"
    if Path(mp.name).is_dir():
        return "a local directory, as it was at training time (no revision)"
    commit = None
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(mp.name, "config.json", revision=mp.revision)
        commit = Path(found).parent.name if isinstance(found, str) else None
    except Exception:  # an old huggingface_hub, a malformed id: the revision as given is still true
        commit = None
    given = f"`{mp.revision}`" if mp.revision else "the default branch (not pinned: set model.revision to pin it)"
    return given + (f", commit `{commit}` in the local cache" if commit and commit != mp.revision else "")


def base_description(mp: ModelParams) -> str:
    if mp.name == TINY_NAME:
        return f"the embedded tiny MusicGen ({TINY_DIR.as_posix()}), built by `make tiny` and committed here"
    if Path(mp.name).is_dir():
        return f"the local checkpoint directory `{mp.name}`"
    return f"the hub checkpoint `{mp.name}`"


def adapter_parameters(adapter_dir: Path) -> int:
    with safe_open(str(adapter_dir / "adapter_model.safetensors"), "pt") as f:
        return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())


def set_base_model(adapter_dir: Path, mp: ModelParams) -> None:
    """adapter_config.json names the base as a user loads it: the hub id or the directory as
    given, `assets/tiny-musicgen` for `tiny` (relative to the project root), and its revision.
    Rewritten (in peft's own format) only where peft wrote something else."""
    path = adapter_dir / "adapter_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    wanted = {"base_model_name_or_path": resolve_name(mp), "revision": mp.revision}
    if any(config.get(k) != v for k, v in wanted.items()):
        write_text(path, json.dumps({**config, **wanted}, indent=2, sort_keys=True))


def _loss(x) -> str:
    return "–" if x is None else f"{x:.4f}"


def continued(tp: TrainParams) -> str:
    """The card's line for a run that continued an adapter (train.init_adapter)."""
    if not tp.init_adapter:
        return ""
    sha = hashlib.sha256((Path(tp.init_adapter) / "adapter_model.safetensors").read_bytes()).hexdigest()
    return (f"\n\nContinued from the adapter `{tp.init_adapter}` (adapter_model.safetensors sha256 `{sha}`), "
            f"not from zero: epoch 0 of the losses is that adapter.")


def card_text(adapter_dir: Path, which: str, epoch: int, rows: list[dict], tp: TrainParams, mp: ModelParams,
              tokens_dir: Path) -> str:
    """The card of adapter `which` ("best" or "final", from `epoch`), given the run's per-epoch
    rows ({epoch, train_loss, valid_loss}; epoch 0 is the base model)."""
    base = resolve_name(mp)
    config = load_config(mp)
    info, delay = codec_info(config), channel_codebooks(config) - 1  # the delay pattern's extra steps
    cls = model_class(config).__name__  # MusicgenForConditionalGeneration, or the melody class
    wav = "audio[0, 0].numpy()" if audio_channels(config) == 1 else "audio[0].T.numpy()"  # stereo: (samples, 2)
    index_path = tokens_dir / INDEX
    index = json.loads(index_path.read_text(encoding="utf-8"))
    data_sha = hashlib.sha256(index_path.read_bytes()).hexdigest()
    clips = index["clips"]
    n_train, n_valid = (sum(c["split"] == s for c in clips) for s in ("train", "valid"))
    prompt = next((c["caption"] for c in clips if c["split"] == "train"), "music")
    trained = [r for r in rows if r["epoch"] > 0]
    best = min(reversed(trained), key=lambda r: r["valid_loss"]) if trained else None  # ties: the later, as train keeps
    last = trained[-1]["epoch"] if trained else 0
    world = world_size()
    folder, q = adapter_dir.as_posix(), json.dumps  # q: a Python string literal
    revision = f", revision={q(mp.revision)}" if mp.revision else ""
    steps = math.ceil(EXAMPLE_SECONDS * info.frame_rate) + delay
    if which == "best":
        what = (f"the **best** adapter of its run: the lowest valid loss, epoch {epoch} of {tp.epochs}"
                + (" (the same epoch as the final adapter)" if epoch == last else ""))
    else:
        stopped = (f", where early stopping ended the run (no better valid loss for {tp.early_stopping_patience} "
                   f"epoch(s))") if tp.early_stopping_patience and epoch < tp.epochs else ""
        what = (f"the **final** adapter of its run: the last epoch, {epoch} of {tp.epochs}{stopped}"
                + (f" (the lowest valid loss was epoch {best['epoch']}: the best adapter)"
                   if best and best["epoch"] != epoch else " (also the lowest valid loss)"))
    start = " (start adapter)" if tp.init_adapter else " (base model)"  # what epoch 0 measured
    loss_rows = "\n".join(
        f"| {r['epoch']}{start if r['epoch'] == 0 else ''} | {_loss(r['train_loss'])} | "
        f"{_loss(r['valid_loss'])} | {'**this adapter**' if r['epoch'] == epoch else ''} |" for r in rows)
    targets = ", ".join(f"`{t}`" for t in tp.target_modules)
    versions = ", ".join(f"{p} {md.version(p)}" for p in ("torch", "transformers", "peft"))
    return f"""---
base_model: {base}
library_name: peft
tags:
- lora
- musicgen
- text-to-audio
---

# MusicGen LoRA adapter: {which} (epoch {epoch})

A LoRA adapter on the MusicGen decoder (the text encoder and the codec are unchanged), trained by
the `train` stage of musicgen-lora. This folder is {what}.

## Base model

- checkpoint: `{base}`, {base_description(mp)}
- revision: {base_revision(mp)}
- codec: {info.sample_rate} Hz, {info.frame_rate:g} frames/s, {info.num_codebooks} codebooks of {info.codebook_size} codes

## LoRA

| rank | alpha | dropout | target modules (decoder only) | adapter parameters |
|---|---|---|---|---|
| {tp.rank} | {tp.alpha:g} | {tp.dropout:g} | {targets} | {adapter_parameters(adapter_dir):,} |

## Training

| lr | batch x accumulation (x processes) | epochs | warmup steps | weight decay | max grad norm | mask_padding | text_dropout | mixed precision | seed |
|---|---|---|---|---|---|---|---|---|---|
| {tp.lr:g} | {tp.batch_size} x {tp.grad_accum} (x {world}) = {tp.batch_size * tp.grad_accum * world} | {tp.epochs} | {tp.warmup_steps} | {tp.weight_decay:g} | {tp.max_grad_norm:g} | {str(tp.mask_padding).lower()} | {tp.text_dropout:g} | {tp.mixed_precision} | {tp.seed} |

Trained with {versions}.{continued(tp)}

## Data

- tokens: `{index_path.as_posix()}`, sha256 `{data_sha}` (the `data_sha256` of the run's environment.json)
- {n_train} training clips, {n_valid} valid clips, {index['frames']} frames each ({index['frames'] / info.frame_rate:g} s)

## Losses

Per-codebook cross-entropy on the delay-pattern labels: the training objective, as measured during
training; the valid loss is on the held-out valid clips{' with padded frames masked out' if tp.mask_padding else ', padded frames included (mask_padding: false)'}.

| epoch | train loss | valid loss | |
|---|---|---|---|
{loss_rows}

## Use it

With this project (any length; longer than 30 s by windowed continuation, each seam measured):

```bash
python -m musicgen_lora generate --adapter {shlex.quote(folder)} --prompt {shlex.quote(prompt)} --seconds 30 --out out.wav
```

With plain transformers + peft ({EXAMPLE_SECONDS} s: {info.frame_rate:g} frames/s plus the delay pattern's {delay} steps):

```python
import soundfile as sf
from peft import PeftModel
from transformers import AutoTokenizer, {cls}

base = {q(base)}
model = {cls}.from_pretrained(base{revision})
model = PeftModel.from_pretrained(model, {q(folder)}).eval()
tokenizer = AutoTokenizer.from_pretrained(base{revision})
inputs = tokenizer([{q(prompt)}], padding=True, return_tensors="pt")
audio = model.generate(**inputs, do_sample=True, guidance_scale=3.0, max_new_tokens={steps})
sf.write("out.wav", {wav}, model.config.audio_encoder.sampling_rate)
```

Paths are relative to the project root (where `dvc repro` runs).

## Evaluation

This card is written at training time, before evaluation. In the project's pipeline (dvc.yaml)
the `evaluate` stage then generates its prompt set with the base, best and final models, and
`summarize` reports them side by side: `metrics/headline.json` (per model the valid loss on real
frames only, `valid_loss_real`, the style distance to held-out target clips, flagged clips, the
checks), `metrics/summary.md` and the page to listen to, `metrics/report.html`; one row per prompt
and model in `evaluation/comparison_results.jsonl`, set-level distances in
`evaluation/set_metrics.json`, the audio in `evaluation/{which}_model/`. The training run's own
record: `metrics/train/` (metrics.json, epochs.json, environment.json, and the per-epoch samples
of `train.sample_prompts` in samples/).
"""


def write_card(adapter_dir: Path, which: str, rows: list[dict], tp: TrainParams, mp: ModelParams,
               tokens_dir: Path) -> None:
    """README.md and the base model name of adapter folder `adapter_dir` ("best": its epoch is in
    its epoch.json; "final": the last epoch of `rows`)."""
    adapter_dir = Path(adapter_dir)
    if which == "best":
        epoch = json.loads((adapter_dir / "epoch.json").read_text(encoding="utf-8"))["epoch"]
    else:
        epoch = max(r["epoch"] for r in rows)
    set_base_model(adapter_dir, mp)
    write_text(adapter_dir / CARD, card_text(adapter_dir, which, epoch, rows, tp, mp, tokens_dir))


def write_cards(best_dir: Path | None, final_dir: Path | None, rows: list[dict], tp: TrainParams, mp: ModelParams,
                tokens_dir: Path) -> None:
    """The cards of the adapters a run wrote (None: not written by this run)."""
    for which, folder in (("best", best_dir), ("final", final_dir)):
        if folder is not None:
            write_card(folder, which, rows, tp, mp, tokens_dir)
