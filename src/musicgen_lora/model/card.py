"""The model card (README.md) of an adapter folder, and the base model its adapter_config.json names.

`train` writes a card into best_model/ and final_model/ in place of peft's empty template: the
base checkpoint and its revision, the LoRA and training params, the data hash, the losses, which
adapter it is, how to load it (plain transformers + peft, or `generate`) and where its evaluation
will be. Built from the run's params, data index and losses only (no time, no host name), so the
same run writes the same bytes, as DVC outputs must.

The card is huggingface_hub's: a `ModelCardData` header (base_model, library_name peft, tags,
pipeline_tag), which is what links the adapter to its base model on the Hub, then the Markdown of
card.md.j2 (beside this file, a dep of the train stage) filled in by `ModelCard.from_template`.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import math
import shlex
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData, try_to_load_from_cache
from safetensors import safe_open

from ..core.files import atomic_path, write_text
from ..core.params import ModelParams, TrainParams
from .families import audio_channels, channel_codebooks, model_class
from .musicgen import TINY_DIR, TINY_NAME, codec_info, load_config, resolve_name
from .tokens import INDEX
from .trainer import world_size

CARD = "README.md"
TEMPLATE = Path(__file__).with_name("card.md.j2")  # the card's Markdown (Jinja2), beside this file
TAGS = ("lora", "musicgen", "text-to-audio", "peft", "musicgen-lora")
EXAMPLE_SECONDS = 10


def base_revision(mp: ModelParams) -> str:
    """What pins the base weights: the embedded model's file hash, a local directory as it is, or
    the hub revision (with the commit the local cache resolves it to, where it can)."""
    if mp.name == TINY_NAME:
        digest = hashlib.sha256((TINY_DIR / "model.safetensors").read_bytes()).hexdigest()
        return f"the files committed in this repository (sha256 of model.safetensors: `{digest}`)"
    if Path(mp.name).is_dir():
        return "a local directory, as it was at training time (no revision)"
    try:
        found = try_to_load_from_cache(mp.name, "config.json", revision=mp.revision)
        commit = Path(found).parent.name if isinstance(found, str) else None
    except Exception:  # a malformed id: the revision as given is still true
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
    return (
        f"\n\nContinued from the adapter `{tp.init_adapter}` (adapter_model.safetensors sha256 `{sha}`), "
        f"not from zero: epoch 0 of the losses is that adapter."
    )


def card_data(mp: ModelParams) -> ModelCardData:
    """The card's YAML header: what the Hub reads to link the adapter to its base model."""
    return ModelCardData(base_model=resolve_name(mp), library_name="peft", tags=list(TAGS), pipeline_tag="text-to-audio")


def what_it_is(which: str, epoch: int, rows: list[dict], tp: TrainParams) -> str:
    """Which adapter of its run this folder is: "best" (the lowest valid loss) or "final"."""
    trained = [r for r in rows if r["epoch"] > 0]
    best = min(reversed(trained), key=lambda r: r["valid_loss"]) if trained else None  # ties: the later, as train keeps
    last = trained[-1]["epoch"] if trained else 0
    if which == "best":
        return f"the **best** adapter of its run: the lowest valid loss, epoch {epoch} of {tp.epochs}" + (
            " (the same epoch as the final adapter)" if epoch == last else ""
        )
    stopped = (
        (f", where early stopping ended the run (no better valid loss for {tp.early_stopping_patience} epoch(s))")
        if tp.early_stopping_patience and epoch < tp.epochs
        else ""
    )
    return f"the **final** adapter of its run: the last epoch, {epoch} of {tp.epochs}{stopped}" + (
        f" (the lowest valid loss was epoch {best['epoch']}: the best adapter)"
        if best and best["epoch"] != epoch
        else " (also the lowest valid loss)"
    )


def model_card(
    adapter_dir: Path, which: str, epoch: int, rows: list[dict], tp: TrainParams, mp: ModelParams, tokens_dir: Path
) -> ModelCard:
    """The card of adapter `which` ("best" or "final", from `epoch`), given the run's per-epoch
    rows ({epoch, train_loss, valid_loss}; epoch 0 is the base model): card.md.j2 filled in."""
    config = load_config(mp)
    info, delay = codec_info(config), channel_codebooks(config) - 1  # the delay pattern's extra steps
    index_path = tokens_dir / INDEX
    index = json.loads(index_path.read_text(encoding="utf-8"))
    clips = index["clips"]
    n_train, n_valid = (sum(c["split"] == s for c in clips) for s in ("train", "valid"))
    return ModelCard.from_template(
        card_data(mp),
        template_path=str(TEMPLATE),
        which=which,
        epoch=epoch,
        what=what_it_is(which, epoch, rows, tp),
        tp=tp,
        rows=rows,
        loss=_loss,
        epoch0=" (start adapter)" if tp.init_adapter else " (base model)",  # what epoch 0 measured
        base=resolve_name(mp),
        base_description=base_description(mp),
        base_revision=base_revision(mp),
        codec=info,
        targets=", ".join(f"`{t}`" for t in tp.target_modules),
        adapter_parameters=adapter_parameters(adapter_dir),
        world=world_size(),
        versions=", ".join(f"{p} {md.version(p)}" for p in ("torch", "transformers", "peft")),
        continued=continued(tp),
        index=index,
        index_path=index_path.as_posix(),
        data_sha=hashlib.sha256(index_path.read_bytes()).hexdigest(),
        n_train=n_train,
        n_valid=n_valid,
        folder=adapter_dir.as_posix(),
        prompt=next((c["caption"] for c in clips if c["split"] == "train"), "music"),
        q=json.dumps,
        sh=shlex.quote,  # a Python string literal, a shell word
        revision=f", revision={json.dumps(mp.revision)}" if mp.revision else "",
        model_class=model_class(config).__name__,  # MusicgenForConditionalGeneration, or the melody class
        wav="audio[0, 0].numpy()" if audio_channels(config) == 1 else "audio[0].T.numpy()",  # stereo: (samples, 2)
        example_seconds=EXAMPLE_SECONDS,
        delay=delay,
        steps=math.ceil(EXAMPLE_SECONDS * info.frame_rate) + delay,
    )


def card_text(
    adapter_dir: Path, which: str, epoch: int, rows: list[dict], tp: TrainParams, mp: ModelParams, tokens_dir: Path
) -> str:
    """The card as written (YAML header, then the Markdown)."""
    return str(model_card(adapter_dir, which, epoch, rows, tp, mp, tokens_dir))


def write_card(adapter_dir: Path, which: str, rows: list[dict], tp: TrainParams, mp: ModelParams, tokens_dir: Path) -> None:
    """README.md and the base model name of adapter folder `adapter_dir` ("best": its epoch is in
    its epoch.json; "final": the last epoch of `rows`)."""
    adapter_dir = Path(adapter_dir)
    if which == "best":
        epoch = json.loads((adapter_dir / "epoch.json").read_text(encoding="utf-8"))["epoch"]
    else:
        epoch = max(r["epoch"] for r in rows)
    set_base_model(adapter_dir, mp)
    card = model_card(adapter_dir, which, epoch, rows, tp, mp, tokens_dir)
    with atomic_path(adapter_dir / CARD) as tmp:
        card.save(tmp)


def write_cards(
    best_dir: Path | None, final_dir: Path | None, rows: list[dict], tp: TrainParams, mp: ModelParams, tokens_dir: Path
) -> None:
    """The cards of the adapters a run wrote (None: not written by this run)."""
    for which, folder in (("best", best_dir), ("final", final_dir)):
        if folder is not None:
            write_card(folder, which, rows, tp, mp, tokens_dir)
