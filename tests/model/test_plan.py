"""`plan`: the peak memory of a training step, counted on the CPU from the model's own layers,
against a measured step of the same shape; and the settings it proposes for each GPU size."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from musicgen_lora.core.params import TrainParams, project_params
from musicgen_lora.model import plan
from musicgen_lora.model.configs import encodec_32khz, family_config
from transformers import T5Config

# (precision, batch, decoder positions, checkpoint every N layers or 0)
CASES = [("no", 2, 253, 0), ("bf16", 2, 253, 0), ("no", 1, 503, 2)]
LAYERS = 4


def config():
    """musicgen-small's decoder width (1024) at 4 layers, small text encoder and codec."""
    text = T5Config(vocab_size=256, d_model=64, d_kv=16, d_ff=128, num_layers=1, num_heads=4)
    return family_config(1024, LAYERS, 16, text=text, audio=encodec_32khz(tiny=True))


def params(precision: str, batch: int, every: int) -> TrainParams:
    return project_params(
        "train",
        rank=16,
        alpha=32.0,
        batch_size=batch,
        grad_accum=1,
        mixed_precision=precision,
        gradient_checkpointing=every > 0,
        gradient_checkpointing_every=every or 1,
    )


MEASURE = """
import os, sys, torch
sys.path.insert(0, sys.argv[1])
from test_plan import CASES, LAYERS, config, params
from musicgen_lora.model import plan
from musicgen_lora.model.musicgen import checkpoint_decoder

def resident():
    return int(open("/proc/self/statm").read().split()[1]) * 4096

def peak():
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmHWM"))

def step(precision, batch, positions, every):
    tp = params(precision, batch, every)
    model = plan.probe_model(config(), tp, LAYERS)  # weights and LoRA resident before the step, as on a GPU
    if every:
        checkpoint_decoder(model.base_model.model, every)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    # first use: lazy imports and the math libraries' set-up (up to ~70 MB on some installs), not the step's
    plan.training_forward(model, 8, plan.DTYPES[precision], 1).backward()
    model.zero_grad(set_to_none=True)
    before = resident()
    open("/proc/self/clear_refs", "w").write("5")  # resets the peak resident size
    plan.training_forward(model, positions, plan.DTYPES[precision], batch).backward()
    opt.step()
    return peak() - before

for case in CASES:  # each in a fresh fork: a second step in one process would reuse the first's freed memory
    read, write = os.pipe()
    if os.fork() == 0:
        os.write(write, str(step(*case)).encode())
        os._exit(0)
    os.wait()
    print(os.read(read, 64).decode())
"""


@pytest.fixture(scope="module")
def measured():
    """Each case's step measured in a process of its own; glibc's fixed mmap threshold gives every
    large freed buffer back: resident memory is live memory."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE, str(Path(__file__).parent)], env=env, capture_output=True, text=True, check=True
    )
    return [int(x) for x in proc.stdout.split()[-len(CASES) :]]


@pytest.fixture(scope="module")
def costs():
    """What one clip keeps, counted once per precision (the rank and batch do not change it)."""
    return {p: plan.probe(config(), params(p, 1, 0), p) for p in ("no", "bf16")}


def test_the_plan_is_within_15_percent_of_a_measured_step(measured, costs):
    cfg = config()
    for (precision, batch, positions, every), got in zip(CASES, measured):
        tp = params(precision, batch, every)
        total, lora = plan.param_counts(cfg, tp)
        parts = plan.training_bytes(cfg, tp, positions, costs[precision], (total, lora))
        planned = parts["activations"] + parts["backward_transient"] + 12 * lora  # + gradients and AdamW moments
        assert abs(planned / got - 1) < 0.15, (precision, batch, positions, every, planned, got)


def test_each_gpu_size_gets_settings_that_fit_it(capsys, monkeypatch, costs):
    from conftest import ROOT

    cfg, tp = config(), params("no", 8, 0)
    positions, counts = 753, plan.param_counts(cfg, tp)
    picks = []
    for size in (1.0, 1.5, 3.0, 8.0):
        fit = next(
            ((t, peak) for t, peak in plan.options(cfg, tp, positions, counts, costs) if peak <= size * plan.GB), None
        )
        picks.append(fit)
        if fit:
            trial, peak = fit
            assert trial.batch_size * trial.grad_accum == 8  # the effective batch is kept
            assert (
                peak
                >= sum(plan.training_bytes(cfg, trial, positions, costs[trial.mixed_precision], counts).values())
                + plan.CUDA_OVERHEAD_GB * plan.GB
            )
    assert picks[0] is None and all(picks[1:])  # 1 GB: not even batch 1 with every layer checkpointed
    # more memory never means a smaller batch; at one batch, never a lower precision or heavier checkpointing
    rungs = [
        (t.batch_size, t.mixed_precision == "no", -t.gradient_checkpointing, t.gradient_checkpointing_every)
        for t, _ in picks[1:]
    ]
    assert rungs == sorted(rungs) and rungs[0] != rungs[-1]
    monkeypatch.chdir(ROOT)
    assert plan.main(["--gpu-gb", "0.1", "8"]) == 0
    out = capsys.readouterr().out
    assert "-> peak" in out and "0.1 GB: does not fit" in out and "    8 GB: batch_size" in out
