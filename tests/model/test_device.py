"""One device choice for every stage: `model.device` resolved in one place, half precision on GPUs only.

That encode, train and evaluate load their model on the resolved device is checked on every
family's run in test_families.py; a GPU machine also runs the small family there (below)."""

import logging

import pytest
import torch

from musicgen_lora.core import params as P
from musicgen_lora.core.provenance import environment, machine
from musicgen_lora.model.musicgen import generation_dtype, resolve_device


@pytest.fixture
def two_gpus(monkeypatch):
    """A machine where torch sees two CUDA devices (nothing is run on them)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.delenv("LOCAL_RANK", raising=False)


def device(name: str) -> torch.device:
    return resolve_device(P.project_params("model", device=name))


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU-only behaviour")
def test_auto_is_the_cpu_without_cuda_and_cuda_is_refused():
    assert device("auto") == device("cpu") == torch.device("cpu")
    for name in ("cuda", "cuda:0"):
        with pytest.raises(P.ParamsError, match=f"model.device is {name} but torch sees no CUDA device"):
            device(name)


def test_auto_is_the_gpu_where_there_is_one(two_gpus, monkeypatch):
    assert device("auto") == device("cuda") == torch.device("cuda", 0)
    assert device("cuda:1") == torch.device("cuda", 1)
    assert device("cpu") == torch.device("cpu")
    with pytest.raises(P.ParamsError, match="cuda:2 but there are 2 CUDA devices"):
        device("cuda:2")
    monkeypatch.setenv("LOCAL_RANK", "1")  # under `accelerate launch`: each process its own GPU
    assert device("auto") == torch.device("cuda", 1)


@pytest.mark.parametrize("value", ["gpu", "cuda:", "CPU", "cuda:x", ""])
def test_device_param_is_validated(value):
    _, problems = P.section_problems("model", {"name": "tiny", "revision": None, "device": value, "cpu_threads": None})
    assert problems == [f"params.yaml: model.device must be auto, cpu, cuda or cuda:N (got {value!r})"]


def test_half_precision_is_bf16_on_a_cpu_and_fp16_only_where_a_gpu_lacks_bf16(capsys, caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="musicgen_lora")
    assert generation_dtype(torch.device("cpu"), False) is None
    assert generation_dtype(torch.device("cpu"), True) == torch.bfloat16
    assert capsys.readouterr().out == ""  # a note (logging, stderr), not the command's result
    assert caplog.messages == [
        "evaluate.half_precision: bf16 generation on the CPU (as on a GPU; faster than float32 only on CPUs with "
        "bf16 instructions)"
    ]
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert generation_dtype(torch.device("cuda", 0), True) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert generation_dtype(torch.device("cuda", 0), True) == torch.float16
    assert generation_dtype(torch.device("cuda", 0), False) is None


def test_provenance_records_the_resolved_device(two_gpus, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: f"Fake GPU {torch.device(d).index}")
    assert machine(torch.device("cpu"))["device"] == "cpu" and "gpu" not in machine(torch.device("cpu"))
    on_gpu = machine(torch.device("cuda", 1))
    assert on_gpu["device"] == "cuda:1" and on_gpu["gpu"] == "Fake GPU 1"
    (tmp_path / "index.json").write_text("{}")
    env = environment("tiny", None, {"train.seed": 0}, [tmp_path / "index.json"], torch.device("cpu"))
    assert env["device"] == "cpu"  # a GPU on the machine, but the run was told cpu


def test_an_explicit_gpu_is_refused_under_several_processes(two_gpus, monkeypatch):
    """Every process of `accelerate launch` would put its model on that one GPU."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(P.ParamsError, match="model.device is cuda:1, but 2 processes would all use that one GPU"):
        device("cuda:1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert device("cuda") == torch.device("cuda", 1)


def test_one_process_trains_on_its_one_gpu_without_dataparallel(two_gpus, monkeypatch, tmp_path):
    """One process that sees two GPUs: Trainer would take n_gpu = 2 (nn.DataParallel, a doubled
    batch) and pin cuda:0 whatever model.device says. The stage's arguments keep one device."""
    from transformers import TrainingArguments

    from musicgen_lora.model.trainer import training_arguments

    pinned = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: pinned.append(torch.device(d)))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    stock = TrainingArguments(output_dir=str(tmp_path / "a"), report_to="none")
    assert stock.n_gpu == 2 and stock.device == torch.device("cuda", 0)  # what the stage must not inherit
    args = training_arguments(P.project_params("train"), torch.device("cuda", 1), tmp_path / "b")
    assert args.n_gpu == 1
    assert args.device == torch.device("cuda", 1) and pinned[-1] == torch.device("cuda", 1)
