"""Stage `train`: a peft LoRA on the MusicGen decoder, with transformers' Trainer.

Labels carry the delay pattern and (with `mask_padding`) leave padded frames out of the loss
(see `model.delay.delay_pattern_labels`). Valid loss is measured before training and after every
epoch; the adapter with the lowest valid loss is `best_model`, the last epoch's is
`final_model`. Trainer checkpoints every `checkpoint_every` optimizer steps into a directory
keyed by the run's inputs, so a killed run resumes where it stopped and ends with the same
adapters and losses. Per-epoch losses go to DVCLive (for `dvc plots` and `dvc exp show`).
`train.sample_prompts` are generated before training and after every epoch into
`metrics/train/samples/` (`model.samples`: leaves the RNG, and so the adapters, as they were).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict
from pathlib import Path

import torch
from dvclive import Live
from peft import get_peft_model
from tqdm import tqdm
from transformers import EarlyStoppingCallback, TrainerCallback
from transformers.trainer_callback import ProgressCallback

from ..core import params as P
from ..core.errors import UserError
from ..core.args import stage_paths
from ..core.tracked import verify_tracked
from ..core.files import atomic_dir, write_json
from ..model.card import write_cards
from ..model.delay import loss_inputs
from ..model.families import audio_channels
from ..model.launch import check_launcher_settings, launch, launched
from ..model.lora import check_adapter_dir, continue_from, lora_config
from ..model.musicgen import (
    checkpoint_decoder,
    load_config,
    load_model,
    resolve_device,
    resolve_name,
    text_encoder_without_dropout,
)
from ..model.samples import SampleCallback, publish
from ..model.tokens import INDEX, TokenSplit
from ..model.trainer import LiveCallback, LoraTrainer, NonFiniteLoss, QuietProgress, training_arguments, world_size
from ..core.provenance import environment

CHECKPOINTS = Path("models/checkpoints")


class ClipDataset(torch.utils.data.Dataset):
    """Clips of one split, read one at a time (`model.tokens.TokenSplit`, or anything with
    `captions` and `clip(i)`); `training` marks the training split, the one caption dropout applies to."""

    def __init__(self, clips, training: bool = True):
        self.clips, self.training = clips, training

    def __len__(self) -> int:
        return len(self.clips.captions)

    def __getitem__(self, i: int) -> dict:
        # a melody model's clip also carries its own chroma, which conditions it
        return {"index": i, "caption": self.clips.captions[i], "training": self.training, **self.clips.clip(i)}


class Collator:
    """Tokenize captions, build delay-pattern labels; drop the text condition with probability
    `text_dropout` (classifier-free guidance), decided per (seed, epoch, clip) so resuming
    mid-epoch makes the same decisions. Training clips only: the valid loss of every epoch is
    measured on the same, fully captioned clips."""

    def __init__(self, tokenizer, mask_padding: bool, text_dropout: float, seed: int, channels: int = 1):
        self.tokenizer, self.mask_padding, self.text_dropout, self.seed = tokenizer, mask_padding, text_dropout, seed
        self.channels = channels
        self.epoch = 0

    def __call__(self, items: list[dict]) -> dict:
        chroma = torch.stack([it["chroma"] for it in items]) if "chroma" in items[0] else None
        batch = loss_inputs(
            self.tokenizer,
            [it["caption"] for it in items],
            torch.stack([it["codes"] for it in items]),
            torch.stack([it["frame_mask"] for it in items]),
            self.mask_padding,
            self.channels,
            chroma,
        )
        if self.text_dropout > 0:
            for row, it in enumerate(items):
                gen = torch.Generator().manual_seed(hash((self.seed, self.epoch, it["index"])) & 0xFFFFFFFF)
                if it["training"] and torch.rand((), generator=gen) < self.text_dropout:
                    batch["attention_mask"][row] = 0  # zeroed text states: MusicGen's unconditional input
        return batch


class EpochCallback(TrainerCallback):
    """Keeps the best adapter (lowest valid loss), tells the collator the epoch, and moves a
    checkpoint due on an epoch's last step to after that epoch's evaluation."""

    def __init__(self, collator: Collator, best_dir: Path):
        self.collator, self.best_dir = collator, best_dir
        self.save_after_evaluation = False

    def on_epoch_begin(self, args, state, control, **kwargs):
        # state.epoch is fractional when resuming mid-epoch (e.g. 0.6 -> epoch 0)
        self.collator.epoch = int((state.epoch or 0) + 1e-6)

    def on_step_end(self, args, state, control, **kwargs):
        # Trainer saves a step's checkpoint before the epoch-end evaluation. A run killed between
        # the two would resume past that evaluation: its valid loss missing from the curve, and the
        # RNG draws the evaluation makes (LoRA dropout follows) missing too, so training diverges
        # from an uninterrupted run. Saving after the evaluation keeps both.
        if control.should_save and state.epoch == int(state.epoch):
            control.should_save, self.save_after_evaluation = False, True

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.save_after_evaluation:
            control.should_save, self.save_after_evaluation = True, False

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        history = [h["eval_loss"] for h in state.log_history if "eval_loss" in h and h["epoch"] > 0]
        if not state.is_world_process_zero:  # under `accelerate launch`, one process writes
            return
        if state.epoch and metrics and metrics["eval_loss"] <= min(history + [metrics["eval_loss"]]):
            with atomic_dir(self.best_dir) as tmp:
                model.save_pretrained(tmp)
                (tmp / "epoch.json").write_text(json.dumps({"epoch": round(state.epoch)}))
        if state.epoch and metrics:
            row = epoch_losses(state.log_history)[-1]
            tqdm.write(
                f"train: epoch {row['epoch']}: valid loss {row['valid_loss']:.4f}, train loss {row['train_loss']:.4f}"
            )


def run_key(tp: P.TrainParams, mp: P.ModelParams, tokens_dir: Path) -> str:
    """Checkpoints belong to one set of inputs; a change of params (precision included), data, start
    adapter or number of processes (another effective batch) starts afresh."""
    h = hashlib.sha256(json.dumps([asdict(tp), asdict(mp), world_size()], sort_keys=True).encode())
    h.update((tokens_dir / INDEX).read_bytes())
    if tp.init_adapter and (weights := Path(tp.init_adapter) / "adapter_model.safetensors").is_file():
        h.update(weights.read_bytes())
    return h.hexdigest()[:16]


def last_complete_checkpoint(ckpt_dir: Path) -> str | None:
    """The newest checkpoint whose trainer_state.json (Trainer writes it last) is readable; a
    checkpoint cut short by a kill is removed rather than resumed from."""
    steps = sorted(ckpt_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]), reverse=True)
    for path in steps:
        try:
            json.loads((path / "trainer_state.json").read_text())
            return str(path)
        except (OSError, ValueError):
            shutil.rmtree(path, ignore_errors=True)
    return None


def epoch_losses(log_history: list[dict]) -> list[dict]:
    """Per-epoch train loss (mean of the logged step losses) and valid loss, from Trainer's log."""
    rows = []
    for h in log_history:
        if "eval_loss" in h:
            e = round(h["epoch"])
            steps = [s["loss"] for s in log_history if "loss" in s and e - 1 < s["epoch"] <= e + 1e-9]
            rows.append(
                {
                    "epoch": e,
                    "valid_loss": h["eval_loss"],
                    "train_loss": (sum(steps) / len(steps)) if steps and e > 0 else None,
                }
            )
    return rows


def run(
    tokens_dir: Path,
    best_dir: Path,
    final_dir: Path,
    metrics_dir: Path,
    tp: P.TrainParams,
    mp: P.ModelParams,
    gp: P.GenerationParams,
) -> list[dict]:
    torch.manual_seed(tp.seed)
    train_clips, valid_clips = TokenSplit(tokens_dir, "train"), TokenSplit(tokens_dir, "valid")
    if not len(train_clips) or not len(valid_clips):
        raise UserError(
            f"train: need clips in both splits (train {len(train_clips)}, valid {len(valid_clips)}); "
            f"add recordings or raise segment.valid_fraction"
        )
    lora = lora_config(tp, load_config(mp))  # a target that matches nothing fails before the weights load
    if tp.init_adapter:
        check_adapter_dir(Path(tp.init_adapter))  # so does a missing start adapter
    device = resolve_device(mp)
    model, tokenizer, start = lora_model(tokens_dir, train_clips.index, lora, tp, mp, device)
    ckpt_dir = CHECKPOINTS / run_key(tp, mp, tokens_dir)
    trainer = make_trainer(model, tokenizer, train_clips, valid_clips, tp, gp, device, ckpt_dir, metrics_dir)
    last = last_complete_checkpoint(ckpt_dir)
    epoch0 = ckpt_dir / "epoch0.json"  # the base model's valid loss: the curve's starting point
    main_process = trainer.is_world_process_zero()
    trainer.accelerator.wait_for_everyone()
    if not epoch0.exists():
        evaluate_epoch0(trainer, epoch0, device, main_process, start)
    diverged = train_to_end(trainer, last)
    trainer.accelerator.wait_for_everyone()
    if not main_process:
        return []
    rows = [json.loads(epoch0.read_text())] + epoch_losses(trainer.state.log_history)
    publish_run(
        model, trainer, rows, ckpt_dir, best_dir, final_dir, metrics_dir, tokens_dir, tp, mp, device, start, diverged
    )
    if diverged:
        raise UserError(diverged)
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    return rows


def lora_model(tokens_dir: Path, index: dict, lora, tp: P.TrainParams, mp: P.ModelParams, device: torch.device):
    """The base model on `device` with the LoRA attached (or the start adapter continued): (peft
    model, tokenizer, {path, sha256} of the start adapter or None)."""
    if device.type == "cuda":
        torch.cuda.set_device(device)  # Trainer (accelerate) places the model on the current device
    model, tokenizer = load_model(mp, device)
    if index["codec"]["num_codebooks"] != model.config.decoder.num_codebooks:
        raise UserError(
            f"{tokens_dir}: tokens of {index['codec']['num_codebooks']} codebooks, the model has "
            f"{model.config.decoder.num_codebooks}; run `dvc repro encode` for this model.name"
        )
    text_encoder_without_dropout(model)
    if tp.gradient_checkpointing:
        checkpoint_decoder(model, tp.gradient_checkpointing_every)
    model = get_peft_model(model, lora)
    start = None  # the adapter this run continues, and its weights' sha256 (provenance)
    if tp.init_adapter:
        start = {"path": tp.init_adapter, "sha256": continue_from(model, Path(tp.init_adapter), resolve_name(mp))}
    return model, tokenizer, start


def make_trainer(
    model,
    tokenizer,
    train_clips: TokenSplit,
    valid_clips: TokenSplit,
    tp: P.TrainParams,
    gp: P.GenerationParams,
    device: torch.device,
    ckpt_dir: Path,
    metrics_dir: Path,
) -> LoraTrainer:
    """Trainer with the project's callbacks: the best adapter per epoch, live curves, samples,
    early stopping where asked, and a quiet progress bar."""
    collator = Collator(tokenizer, tp.mask_padding, tp.text_dropout, tp.seed, audio_channels(model.config))
    trainer = LoraTrainer(
        model=model,
        args=training_arguments(tp, device, ckpt_dir),
        train_dataset=ClipDataset(train_clips),
        eval_dataset=ClipDataset(valid_clips, training=False),
        data_collator=collator,
        callbacks=[
            EpochCallback(collator, ckpt_dir / "best_adapter"),
            LiveCallback(metrics_dir / "live", ckpt_dir / "epoch0.json"),
            SampleCallback(tokenizer, tp.sample_prompts, tp.sample_seconds, tp.seed, gp, ckpt_dir / "samples"),
        ]
        + ([EarlyStoppingCallback(tp.early_stopping_patience)] if tp.early_stopping_patience else []),
        pad_id=train_clips.index["codec"]["pad_id"],
        start_id=model.config.decoder.decoder_start_token_id,
    )
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(QuietProgress)
    return trainer


def evaluate_epoch0(
    trainer: LoraTrainer, epoch0: Path, device: torch.device, main_process: bool, start: dict | None
) -> None:
    """The valid loss before training (epoch 0 of the curve), recorded once per run."""
    # Iterating a DataLoader draws from torch's global RNG, and the training shuffle draws next:
    # the base-model evaluation must leave the RNG as it found it, or a run restarted after a kill
    # (which finds epoch0.json and skips this) would shuffle, and so train, differently.
    with torch.random.fork_rng(devices=[device.index] if device.type == "cuda" else []):
        loss = trainer.evaluate()["eval_loss"]  # collective: every process takes part
    if main_process:
        write_json(epoch0, {"epoch": 0, "valid_loss": loss, "train_loss": None})
        tqdm.write(f"train: epoch 0 ({'the start adapter' if start else 'the base model'}): valid loss {loss:.4f}")


def train_to_end(trainer: LoraTrainer, last: str | None) -> str | None:
    """Train (from the last complete checkpoint, if any); a non-finite loss ends it with its message."""
    try:
        trainer.train(resume_from_checkpoint=last)
    except NonFiniteLoss as exc:
        for callback in trainer.callback_handler.callbacks:  # Trainer closes its bar only on a normal end
            if isinstance(callback, ProgressCallback) and callback.training_bar is not None:
                callback.training_bar.close()
        return str(exc)  # keep what was good: the best adapter so far and the losses logged
    return None


def publish_run(
    model,
    trainer: LoraTrainer,
    rows: list[dict],
    ckpt_dir: Path,
    best_dir: Path,
    final_dir: Path,
    metrics_dir: Path,
    tokens_dir: Path,
    tp: P.TrainParams,
    mp: P.ModelParams,
    device: torch.device,
    start: dict | None,
    diverged: str | None,
) -> None:
    """The adapters (final only after a finite end), the metrics, samples, provenance and cards."""
    if diverged is None:
        with atomic_dir(final_dir) as tmp:
            model.save_pretrained(tmp)
    if (ckpt_dir / "best_adapter").exists():
        with atomic_dir(best_dir) as tmp:
            shutil.copytree(ckpt_dir / "best_adapter", tmp, dirs_exist_ok=True)
    log_metrics(metrics_dir, rows, trainer.state.global_step, tp, diverged)
    publish(ckpt_dir / "samples", metrics_dir / "samples", tp.sample_prompts)
    write_json(
        metrics_dir / "environment.json",
        {**environment(mp.name, mp.revision, {"train.seed": tp.seed}, [tokens_dir / INDEX], device), "init_adapter": start},
    )
    write_cards(
        best_dir if (ckpt_dir / "best_adapter").exists() else None, None if diverged else final_dir, rows, tp, mp, tokens_dir
    )


def early_stop(rows: list[dict], tp: P.TrainParams, best_epoch: int, diverged: str | None) -> dict | None:
    """Where and why early stopping ended the run (train.early_stopping_patience), or None."""
    last = rows[-1]["epoch"] if rows else 0
    if not tp.early_stopping_patience or diverged or last >= tp.epochs:
        return None
    return {
        "epoch": last,
        "of": tp.epochs,
        "best_epoch": best_epoch,
        "patience": tp.early_stopping_patience,
        "why": f"the valid loss did not improve for {tp.early_stopping_patience} epoch(s) after epoch {best_epoch}",
    }


def log_metrics(metrics_dir: Path, rows: list[dict], steps: int, tp: P.TrainParams, diverged: str | None) -> None:
    """Per-epoch losses through DVCLive (step = epoch) plus the run's summary values."""
    trained = [r for r in rows if r["epoch"] > 0]
    best = min(trained or rows[:1], key=lambda r: r["valid_loss"])
    # DVCLive (not resuming) replaces its own metrics and plots; other files in the folder stay
    with Live(dir=str(metrics_dir), dvcyaml=None, save_dvc_exp=False, report=None) as live:
        for r in trained:
            live.step = r["epoch"]
            live.log_metric("train/loss", r["train_loss"])
            live.log_metric("valid/loss", r["valid_loss"])
        live.summary.update(
            {
                "best_epoch": best["epoch"],
                # the loss training minimised: it counts padded frames when mask_padding is false
                "valid_loss_objective": {
                    "base": rows[0]["valid_loss"],
                    "best": best["valid_loss"],
                    "final": (trained or rows)[-1]["valid_loss"],
                },
                "mask_padding": tp.mask_padding,
                "optimizer_steps": steps,
                "diverged": diverged or False,
                "early_stop": early_stop(rows, tp, best["epoch"], diverged),
                "world_size": world_size(),
                "effective_batch": tp.batch_size * tp.grad_accum * world_size(),
            }
        )
    write_json(metrics_dir / "epochs.json", rows)


def main(argv: list[str]) -> int:
    args = stage_paths("train", __doc__, argv, "--tokens", "--best", "--final", "--metrics")
    verify_tracked(args.tokens)  # the tokens as encode wrote them, not a corrupt checkout
    mp, tp, gp = P.load("model", "train", "generation")
    if tp.processes * tp.machines > 1 and not launched():
        return launch(tp, ["train", *argv])
    check_launcher_settings(tp)
    rows = run(args.tokens, args.best, args.final, args.metrics, tp, mp, gp)
    if rows:
        best = min(rows[1:] or rows, key=lambda r: r["valid_loss"])
        print(
            f"train: best epoch {best['epoch']} (valid loss {best['valid_loss']:.4f}) -> {args.best}; "
            f"final epoch {rows[-1]['epoch']} -> {args.final}"
        )
    return 0
