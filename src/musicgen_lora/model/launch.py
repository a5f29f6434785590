"""The train stage on several processes or machines, from params.yaml alone.

`train.processes` (per machine: one per GPU) and `train.machines` above 1: the stage re-runs itself
under `accelerate launch` with every setting taken from params.yaml, so `dvc exp run -S
train.processes=4` trains on 4 GPUs with no edit to dvc.yaml. accelerate's saved config (`accelerate
config`) is never read (accelerate's basic config for this machine is passed instead): it could
otherwise switch on mixed precision or torch.compile behind params.yaml's back. What differs between machines is not a
param: each machine runs the same command with MACHINE_RANK (or SLURM_NODEID under srun) and
MAIN_PROCESS_IP (or MASTER_ADDR) set; MAIN_PROCESS_PORT defaults to 29500.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from ..core import params as P
from ..core.errors import UserError
from .trainer import world_size

log = logging.getLogger(__name__)


def launched() -> bool:
    """True inside a process a launcher (accelerate, torchrun) started."""
    return "WORLD_SIZE" in os.environ


def _env(*names: str) -> str | None:
    return next((os.environ[n] for n in names if os.environ.get(n)), None)


def accelerate_args(tp: P.TrainParams, config_file: Path) -> list[str]:
    """`accelerate launch` options for params.yaml's train section on this machine."""
    args = [
        "--config_file",
        str(config_file),
        "--num_processes",
        str(tp.processes * tp.machines),
        "--num_machines",
        str(tp.machines),
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
    ]
    # precision and compilation are TrainingArguments' (bf16/fp16, torch_compile from params.yaml):
    # the launcher's own say on them stays "no"
    if tp.processes * tp.machines > 1:
        args.append("--multi_gpu")  # DDP (gloo on CPUs, NCCL on GPUs)
    if tp.machines > 1:
        rank, ip = _env("MACHINE_RANK", "SLURM_NODEID"), _env("MAIN_PROCESS_IP", "MASTER_ADDR")
        if rank is None or ip is None:
            raise UserError(
                f"train.machines is {tp.machines}: set MACHINE_RANK (0 on the main machine; SLURM_NODEID "
                f"under srun) and MAIN_PROCESS_IP (the main machine's address) on every machine"
            )
        args += [
            "--machine_rank",
            rank,
            "--main_process_ip",
            ip,
            "--main_process_port",
            _env("MAIN_PROCESS_PORT", "MASTER_PORT") or "29500",
        ]
    return args


def launch(tp: P.TrainParams, argv: list[str]) -> int:
    """Run `python -m musicgen_lora <argv>` under accelerate with `tp`'s processes and machines;
    returns its exit status."""
    with tempfile.TemporaryDirectory() as tmp:
        from accelerate.utils import write_basic_config

        config = Path(tmp) / "accelerate.json"  # read instead of ~/.cache/huggingface/accelerate/default_config.yaml
        write_basic_config(mixed_precision="no", save_location=str(config))  # this machine's devices, nothing else
        cmd = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            *accelerate_args(tp, config),
            "-m",
            "musicgen_lora",
            *argv,
        ]
        log.info(f"train: {tp.processes} process(es) x {tp.machines} machine(s) under accelerate launch")
        return subprocess.run(cmd).returncode


def check_launcher_settings(tp: P.TrainParams) -> None:
    """Under a launcher started by hand: refuse settings params.yaml did not ask for (a saved
    `accelerate config` sets them through the environment)."""
    precision = os.environ.get("ACCELERATE_MIXED_PRECISION", "no").lower()
    dynamo = os.environ.get("ACCELERATE_DYNAMO_BACKEND", "no").lower()
    if precision != "no" and precision != tp.mixed_precision:
        raise UserError(
            f"train: the launcher asks for mixed precision {precision} (a saved `accelerate config`?), "
            f"params.yaml's train.mixed_precision is {tp.mixed_precision}: set it there, or launch with "
            f"--mixed_precision no (train.processes does this for you)"
        )
    if dynamo != "no" and not tp.torch_compile:
        raise UserError(
            f"train: the launcher asks for torch.compile ({dynamo}; a saved `accelerate config`?), "
            f"params.yaml's train.torch_compile is false: set it there, or launch with --dynamo_backend no"
        )
    world = world_size()
    if world > 1 and world != tp.processes * tp.machines:
        raise UserError(
            f"train: launched as {world} processes, params.yaml says train.processes x train.machines = "
            f"{tp.processes * tp.machines}: set them there (the run key and effective batch follow them)"
        )
