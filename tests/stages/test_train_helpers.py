"""The training stage's helpers, in-process and fast: collator, epoch losses, checkpoint
discovery, run key. (test_train.py runs the stage itself, killed, resumed and diverging.)"""

import json
from dataclasses import replace
from types import SimpleNamespace

import torch

from musicgen_lora.core.params import project_params
from musicgen_lora.model.delay import IGNORE
from musicgen_lora.model.tokens import INDEX
from transformers import TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_callback import DefaultFlowCallback

from musicgen_lora.stages.train import ClipDataset, Collator, EpochCallback, epoch_losses, last_complete_checkpoint, run_key


def items(n: int, frames: int = 6, real: int = 4, k: int = 4) -> list[dict]:
    codes = torch.arange(n * k * frames).reshape(n, k, frames) % 200
    mask = torch.arange(frames)[None].expand(n, frames) < real
    clips = SimpleNamespace(
        captions=[f"caption {i}" for i in range(n)], clip=lambda i: {"codes": codes[i], "frame_mask": mask[i]}
    )
    return [ClipDataset(clips)[i] for i in range(n)]


def test_collator_builds_delay_labels_and_masks_padding(tiny):
    _, tokenizer = tiny
    batch = Collator(tokenizer, mask_padding=True, text_dropout=0.0, seed=0)(items(2))
    assert batch["labels"].shape == (2, 6 + 4 - 1, 4)
    assert batch["input_ids"].shape[0] == 2 and batch["attention_mask"].sum() > 0
    # codebook 0, frames 4-5 are padding: -100; codebook 1 is shifted by one step
    assert (batch["labels"][:, 4:6, 0] == IGNORE).all() and (batch["labels"][:, :4, 0] != IGNORE).all()
    assert batch["labels"][0, 0, 1] == IGNORE and batch["labels"][0, 1, 1] == items(1)[0]["codes"][1, 0]
    unmasked = Collator(tokenizer, mask_padding=False, text_dropout=0.0, seed=0)(items(2))
    assert (unmasked["labels"][:, 4:6, 0] != IGNORE).all()


def test_caption_dropout_is_decided_per_seed_epoch_and_clip(tiny):
    _, tokenizer = tiny
    batch = items(16)

    def dropped(seed: int, epoch: int) -> list[bool]:
        collator = Collator(tokenizer, mask_padding=True, text_dropout=0.5, seed=seed)
        collator.epoch = epoch
        return (collator(batch)["attention_mask"].sum(1) == 0).tolist()

    assert dropped(0, 0) == dropped(0, 0)  # resuming mid-epoch makes the same decisions
    assert dropped(0, 0) != dropped(0, 1) or dropped(0, 0) != dropped(1, 0)
    assert 0 < sum(dropped(0, 0)) < 16
    valid = [{**it, "training": False} for it in batch]  # the valid split keeps every caption
    collator = Collator(tokenizer, mask_padding=True, text_dropout=0.5, seed=0)
    assert (collator(valid)["attention_mask"].sum(1) > 0).all()


def test_epoch_losses_average_each_epochs_steps():
    history = [
        {"loss": 4.0, "epoch": 0.5},
        {"loss": 2.0, "epoch": 1.0},
        {"eval_loss": 3.0, "epoch": 1.0},
        {"loss": 1.0, "epoch": 1.5},
        {"loss": 1.0, "epoch": 2.0},
        {"eval_loss": 2.5, "epoch": 2.0},
    ]
    assert epoch_losses(history) == [
        {"epoch": 1, "valid_loss": 3.0, "train_loss": 3.0},
        {"epoch": 2, "valid_loss": 2.5, "train_loss": 1.0},
    ]


def test_a_checkpoint_due_on_an_epochs_last_step_is_saved_after_its_evaluation(tmp_path):
    """Trainer's own order (save at the step, evaluate at the epoch end) leaves a window where a
    kill resumes past the evaluation; EpochCallback moves that save after it. Mid-epoch saves stay."""
    args = TrainingArguments(
        output_dir=str(tmp_path), save_strategy="steps", save_steps=3, eval_strategy="epoch", use_cpu=True, report_to="none"
    )
    flow, ours = DefaultFlowCallback(), EpochCallback(None, tmp_path / "best")
    state, control = TrainerState(max_steps=12, save_steps=3), TrainerControl()

    def step(global_step: int, epoch: float) -> TrainerControl:
        state.global_step, state.epoch = global_step, epoch
        for cb in (flow, ours):  # Trainer calls its default flow first, then ours
            cb.on_step_end(args, state, control)
        return control

    assert step(3, 0.5).should_save  # mid-epoch: saved at its step
    control.should_save = False
    assert not step(6, 1.0).should_save  # the epoch's last step: not yet
    for cb in (flow, ours):
        cb.on_epoch_end(args, state, control)
    assert control.should_evaluate and control.should_save  # Trainer evaluates, then saves
    control.should_save = control.should_evaluate = False
    for cb in (flow, ours):
        cb.on_epoch_end(args, state, control)
    assert not control.should_save  # once only


def test_checkpoint_discovery_takes_the_newest_complete_one(tmp_path):
    assert last_complete_checkpoint(tmp_path) is None
    for step in (3, 6, 9):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "checkpoint-3" / "trainer_state.json").write_text(json.dumps({"global_step": 3}))
    (tmp_path / "checkpoint-6" / "trainer_state.json").write_text(json.dumps({"global_step": 6}))
    (tmp_path / "checkpoint-9" / "trainer_state.json").write_text('{"global_st')  # cut short by a kill
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-6")
    assert not (tmp_path / "checkpoint-9").exists()  # removed, not resumed from


def test_run_key_changes_with_params_and_data_only(tmp_path, monkeypatch):
    (tmp_path / INDEX).write_text('{"clips": 1}')
    tp, mp = project_params("train"), project_params("model")
    key = run_key(tp, mp, tmp_path)
    assert key == run_key(project_params("train"), project_params("model"), tmp_path)
    assert key != run_key(replace(tp, lr=tp.lr / 2), mp, tmp_path)
    # a checkpoint written in another precision or by another number of processes (another effective
    # batch) is not resumed: a new run starts
    assert key != run_key(replace(tp, mixed_precision="bf16"), mp, tmp_path)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert key != run_key(tp, mp, tmp_path)
    monkeypatch.delenv("WORLD_SIZE")
    assert key != run_key(tp, replace(mp, name="facebook/musicgen-small"), tmp_path)
    (tmp_path / INDEX).write_text('{"clips": 2}')
    assert key != run_key(tp, mp, tmp_path)


def test_a_resumed_run_drops_the_curve_rows_past_its_checkpoint(tmp_path):
    from musicgen_lora.model.trainer import truncate_curves

    tsv = tmp_path / "plots/metrics/train/loss.tsv"
    tsv.parent.mkdir(parents=True)
    tsv.write_text("step\tloss\n" + "".join(f"{i}\t{5 - i / 10}\n" for i in range(6)))
    truncate_curves(tmp_path / "plots", 3)
    assert tsv.read_text() == "step\tloss\n0\t5.0\n1\t4.9\n2\t4.8\n3\t4.7\n"
