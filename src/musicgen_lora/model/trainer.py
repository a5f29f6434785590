"""transformers' Trainer as the train stage uses it: MusicGen's loss, one device per process, and
a divergence every process agrees on.

- `StageArguments`: Trainer, run as one process that sees several GPUs, wraps the model in
  `nn.DataParallel` over all of them (the batch silently becomes batch x GPUs, and a batch with
  fewer clips than GPUs splits the two inputs of the decoder unevenly) and moves it to `cuda:0`
  whatever `model.device` says. Here one process drives exactly the device `resolve_device`
  chose; several GPUs are used through several processes (accelerate launch).
- `LoraTrainer.compute_loss`: a NaN or inf loss on one process only (an fp16 overflow in its
  batch) must stop every process: the others would otherwise wait in the gradient all-reduce
  until the 30-minute timeout. The processes sum a "not finite" flag before anyone raises.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import ProgressCallback
from transformers.training_args import ParallelMode

from ..core import params as P
from ..core.files import write_text
from .delay import forward_loss

if TYPE_CHECKING:
    from dvclive import Live


class NonFiniteLoss(RuntimeError):
    """Training produced NaN or inf; the message names the optimizer step."""


def world_size() -> int:
    """Processes in this training (accelerate/torchrun set WORLD_SIZE; 1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


@dataclass
class StageArguments(TrainingArguments):
    """TrainingArguments for one process on one device: `stage_device` (the model.device it
    resolved to), never DataParallel. (`n_gpu` and `device` are the properties transformers
    documents for overriding in a subclass.)"""

    stage_device: str = "cpu"

    @property
    def n_gpu(self) -> int:
        return min(super().n_gpu, 1)

    @property
    def device(self) -> torch.device:
        device = super().device  # sets up the process state (and pins cuda:0 when not distributed)
        ours = torch.device(self.stage_device)
        if ours.type == "cuda" and self.parallel_mode != ParallelMode.DISTRIBUTED:
            torch.cuda.set_device(ours)
            return ours
        return device


def training_arguments(tp: P.TrainParams, device: torch.device, ckpt_dir: Path) -> StageArguments:
    # early stopping reads the valid loss as Trainer's "best metric" (set only with it: a run
    # without keeps the checkpoints it always kept)
    best: dict[str, Any] = (
        {"metric_for_best_model": "eval_loss", "greater_is_better": False} if tp.early_stopping_patience else {}
    )
    return StageArguments(
        # eval batch 1: valid loss is the mean over clips, as in evaluate
        output_dir=str(ckpt_dir),
        per_device_train_batch_size=tp.batch_size,
        per_device_eval_batch_size=1,
        gradient_accumulation_steps=tp.grad_accum,
        num_train_epochs=tp.epochs,
        learning_rate=tp.lr,
        warmup_steps=tp.warmup_steps,
        weight_decay=tp.weight_decay,
        max_grad_norm=tp.max_grad_norm,
        lr_scheduler_type="linear",
        seed=tp.seed,
        data_seed=tp.seed,
        eval_strategy="epoch",
        save_strategy="steps",
        save_steps=tp.checkpoint_every,
        save_total_limit=1,
        logging_steps=1,
        report_to="none",
        remove_unused_columns=False,
        label_names=["labels"],
        prediction_loss_only=True,
        dataloader_num_workers=0,
        use_cpu=device.type == "cpu",
        disable_tqdm=False,
        bf16=tp.mixed_precision == "bf16",
        fp16=tp.mixed_precision == "fp16",
        torch_compile=tp.torch_compile,
        stage_device=str(device),
        **best,
    )


class LoraTrainer(Trainer):
    """Trainer whose loss is MusicGen's per-codebook loss on delay-pattern labels."""

    loss_is_scaled_for_ga = False  # compute_loss returns a per-batch mean; Trainer divides by grad_accum

    def __init__(self, *args, pad_id: int, start_id: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.pad_id, self.start_id = pad_id, start_id

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = forward_loss(model, inputs, self.pad_id, self.start_id)
        if model.training:
            finite = bool(torch.isfinite(loss))
            bad = torch.tensor(0.0 if finite else 1.0, device=loss.device)
            if self.accelerator.num_processes > 1:
                bad = self.accelerator.reduce(bad, reduction="sum")  # collective: every process takes part
            if bad.item() > 0:
                where = (
                    f"loss is {loss.item()}"
                    if not finite
                    else f"loss is not finite on {int(bad.item())} of {self.accelerator.num_processes} processes"
                )
                raise NonFiniteLoss(
                    f"train: {where} at optimizer step {self.state.global_step + 1}; lower train.lr or check the data"
                )
        return (loss, None) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        with torch.no_grad():
            return self.compute_loss(model, inputs).detach(), None, None


class QuietProgress(ProgressCallback):
    """Trainer's progress bars, labelled (optimizer steps; the valid clips of an evaluation),
    without the per-step dict of losses (one line per epoch is printed by EpochCallback instead)."""

    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        if self.training_bar is not None:
            self.training_bar.set_description("train: optimizer steps")

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        fresh = self.prediction_bar is None
        super().on_prediction_step(args, state, control, eval_dataloader=eval_dataloader, **kwargs)
        if fresh and self.prediction_bar is not None:
            self.prediction_bar.set_description("train: valid loss, clips")

    def on_log(self, args, state, control, logs=None, **kwargs):
        pass


def truncate_curves(plots: Path, step: int) -> None:
    """Drop the rows past `step` from DVCLive's .tsv curves: what a killed run logged after the
    checkpoint it resumes from is logged again, from the same draws."""
    for tsv in plots.rglob("*.tsv"):
        lines = tsv.read_text(encoding="utf-8").splitlines(keepends=True)
        col = lines[0].rstrip("\n").split("\t").index("step") if lines else 0
        kept = lines[:1] + [line for line in lines[1:] if int(line.split("\t")[col]) <= step]
        if len(kept) != len(lines):
            write_text(tsv, "".join(kept))


class LiveCallback(TrainerCallback):
    """Curves while the run trains, through DVCLive into `directory` (metrics/train/live): every
    optimizer step's loss and learning rate, the valid loss at step 0 (the start) and at each
    epoch's end, x = optimizer step. Its metrics.json (the latest step, train and valid loss) is
    rewritten every step, so `dvc exp show` and `dvc plots show` see a running experiment. A run
    resumed from a checkpoint continues the same curves (DVCLive's resume, rows past the
    checkpoint dropped), so they come out as an uninterrupted run's."""

    def __init__(self, directory: Path, epoch0: Path):
        self.directory, self.epoch0 = directory, epoch0
        self.live: Live | None = None

    def _open(self, state) -> None:
        from dvclive import Live

        resume = state.global_step > 0
        if resume:
            truncate_curves(self.directory / "plots", state.global_step)
        self.live = Live(dir=str(self.directory), resume=resume, dvcyaml=None, save_dvc_exp=False, report=None)

    def _log(self, step: int, values: dict[str, float]) -> None:
        assert self.live is not None  # opened first: on_train_begin and on_log call _open before _log
        self.live.step = step
        for name, value in values.items():
            self.live.log_metric(name, value)
        self.live.summary.get("train", {}).pop("lr", None)  # a curve, not a column of `dvc exp show`
        self.live.make_summary()

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero or self.live is not None:
            return
        self._open(state)
        if state.global_step == 0 and self.epoch0.exists():  # a restart that skipped the base evaluation
            self._log(0, {"valid/loss": json.loads(self.epoch0.read_text())["valid_loss"]})

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        if self.live is None:
            self._open(state)
        if "eval_loss" in logs:
            self._log(state.global_step, {"valid/loss": logs["eval_loss"]})
        elif "loss" in logs:
            self._log(state.global_step, {"train/loss": logs["loss"], "train/lr": logs["learning_rate"]})

    def on_train_end(self, args, state, control, **kwargs):
        if self.live is not None:
            self.live.end()
