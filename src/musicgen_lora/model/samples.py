"""Samples during training: a few fixed prompts generated before training and after every epoch.

A user hears when the adapter starts to drift without waiting for `evaluate`. Each evaluation
(epoch 0 = the base model, then every epoch end) writes `epoch_<e>/<nn>.wav` and an
`index.json` with that epoch's losses; the same seed every epoch, so what changes between rows
is the adapter only.

Training must not notice: the pipeline promises byte-identical adapters with and without samples.
Generation reseeds torch's global RNG, which dropout and the training shuffle draw from, so it
runs inside `fork_rng` (Python's and numpy's generators are restored too), in eval mode under
no_grad, on the unmerged adapter (merging and unmerging would round the weights), and the
model's train/eval mode is put back. The samples are written into the run's checkpoint directory
(kept across a kill and a resume) and published with `publish` when the run ends.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from transformers import TrainerCallback

from ..core.audio import write_wav
from ..core.files import atomic_dir, write_json
from ..core.params import GenerationParams
from .musicgen import codec_info, generate

INDEX = "index.json"


def epoch_dir(root: Path, epoch: int) -> Path:
    return Path(root) / f"epoch_{epoch}"


def train_loss_of(log_history: list[dict], epoch: int) -> float | None:
    """Mean of the logged step losses of `epoch` (as `stages.train.epoch_losses` computes it)."""
    steps = [s["loss"] for s in log_history if "loss" in s and epoch - 1 < s["epoch"] <= epoch + 1e-9]
    return (sum(steps) / len(steps)) if steps and epoch > 0 else None


class SampleCallback(TrainerCallback):
    """On every evaluation (the base model's before training, then each epoch's), generate
    `prompts` for `seconds` with `seed`, sampled as `generation` says (params.yaml's section, which
    evaluate samples with too), and write them under `out_dir/epoch_<e>/`."""

    def __init__(
        self, tokenizer, prompts: list[str], seconds: float, seed: int, generation: GenerationParams, out_dir: Path
    ):
        self.tokenizer, self.prompts, self.seconds, self.seed = tokenizer, list(prompts), seconds, seed
        self.generation, self.out_dir = generation, Path(out_dir)

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        if not self.prompts or model is None or not state.is_world_process_zero:
            return
        epoch = round(state.epoch or 0)
        target = epoch_dir(self.out_dir, epoch)
        if (target / INDEX).exists():  # written before a kill; the same weights give the same audio
            return
        audio, sr = self.sample(model)
        with atomic_dir(target) as tmp:
            for i, clip in enumerate(audio):
                write_wav(tmp / f"{i:02d}.wav", clip, sr)
            write_json(
                tmp / INDEX,
                {
                    "epoch": epoch,
                    "valid_loss": (metrics or {}).get("eval_loss"),
                    "train_loss": train_loss_of(state.log_history, epoch),
                    "prompts": self.prompts,
                    "files": [f"{i:02d}.wav" for i in range(len(audio))],
                    "seed": self.seed,
                    "seconds": self.seconds,
                    "sample_rate": sr,
                },
            )

    def sample(self, model) -> tuple[np.ndarray, int]:
        """Generate without touching any RNG state or the model's mode."""
        config = model.config
        info = codec_info(config)
        was_training = model.training
        py_state, np_state = random.getstate(), np.random.get_state()
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        try:
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                model.eval()
                g = self.generation
                audio, _ = generate(
                    model,
                    self.tokenizer,
                    self.prompts,
                    info.frames(self.seconds),
                    g.guidance_scale,
                    g.temperature,
                    g.top_k,
                    self.seed,
                )
        finally:
            model.train(was_training)
            random.setstate(py_state)
            np.random.set_state(np_state)
        return audio, info.sample_rate


def publish(work_dir: Path, out_dir: Path, prompts: list[str]) -> None:
    """Copy the run's samples to `out_dir` (a DVC output, so it always exists) with a top-level
    index.json listing the epochs; with no prompts, the index alone."""
    work_dir = Path(work_dir)
    epochs = (
        sorted(
            (json.loads((d / INDEX).read_text(encoding="utf-8")) for d in work_dir.glob("epoch_*") if (d / INDEX).exists()),
            key=lambda e: e["epoch"],
        )
        if prompts
        else []
    )
    with atomic_dir(Path(out_dir)) as tmp:
        for e in epochs:
            shutil.copytree(epoch_dir(work_dir, e["epoch"]), epoch_dir(tmp, e["epoch"]))
        write_json(tmp / INDEX, {"prompts": list(prompts), "epochs": [e["epoch"] for e in epochs]})
