"""`make gpu-check`: the GPU path in one prepared run, for a machine with a CUDA device.

1. pipeline: a musicgen-small-shaped checkpoint with random weights, built here (no hub), through
   the real pipeline in a throw-away project (`dvc repro`: segment -> encode on the codec alone ->
   train in bf16 with gradient checkpointing -> evaluate in half precision), the train stage
   killed after its first checkpoint and resumed; every loss finite, every clip a readable wav;
2. training: the small shape's LoRA optimizer step at batch 1 (fp32 and bf16 autocast): seconds
   and peak `torch.cuda.max_memory_allocated`;
3. generation: seconds per generated frame for 8 prompts, fp32 and bf16.

The figures go to bench/results.json under "gpu" with the card's name. Without CUDA it says so
in one line and exits 0; `--device cpu --quick` runs the training and generation measurements on
the CPU with the tiny model (the test does; the pipeline part is the end-to-end tests' path with
GPU params).
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from ..core.files import write_json

ROOT = Path(__file__).resolve().parents[3]
TRAIN = ["python", "-m", "musicgen_lora", "train", "--tokens", "data/tokens", "--best", "models/best_model",
         "--final", "models/final_model", "--metrics", "metrics/train"]


def peak_gb(device: str) -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 3) if device.startswith("cuda") else None


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def save_small(path: Path) -> Path:
    """A random musicgen-small-shaped checkpoint directory (codebooks not all zero)."""
    from transformers import MusicgenForConditionalGeneration

    from ..model.configs import small_config
    from ..tiny.bootstrap import build_tokenizer, save

    torch.manual_seed(0)
    model = MusicgenForConditionalGeneration(small_config())
    with torch.no_grad():
        for layer in model.audio_encoder.quantizer.layers:
            layer.codebook.embed.normal_()
    model.config.decoder.decoder_start_token_id = 2048
    save(model, build_tokenizer(["bright upbeat chiptune", "calm solo piano"]), path)
    return path


def pipeline(model_name: str, device: str, quick: bool) -> dict:
    """The real pipeline in a throw-away project, the train stage killed once and resumed."""
    from ..tiny.workspace import SMALL_PARAMS, make_project, sh

    gpu = device.startswith("cuda")
    params = {**SMALL_PARAMS, "model": {"name": model_name, "device": device},
              "train": {**SMALL_PARAMS["train"], "mixed_precision": "bf16" if gpu else "no",
                        "gradient_checkpointing": gpu, "checkpoint_every": 1},
              "evaluate": {**SMALL_PARAMS["evaluate"], "half_precision": gpu}}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = make_project(ROOT, root, tracks=3 if quick else 6, params=params)
        t0 = time.time()
        sh(["dvc", "repro", "encode"], root, env)
        proc = subprocess.Popen(TRAIN, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 600
        while not list(root.glob("models/checkpoints/*/checkpoint-*/trainer_state.json")) and proc.poll() is None \
                and time.time() < deadline:
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        sh(["dvc", "repro"], root, env)  # resumes train from its checkpoint, then evaluates and summarizes
        epochs = json.loads((root / "metrics/train/epochs.json").read_text())
        rows = [json.loads(x) for x in (root / "evaluation/comparison_results.jsonl").read_text().splitlines()]
        losses = [e["valid_loss"] for e in epochs] + [r["valid_loss"] for r in rows]
        import soundfile as sf

        subtypes = {sf.info(str(root / "evaluation" / r["file"])).subtype for r in rows}
        return {"wall_s": round(time.time() - t0, 1), "losses_finite": all(math.isfinite(x) for x in losses),
                "epochs": len(epochs) - 1, "clips": len(rows), "wav_subtypes": sorted(subtypes),
                "train": json.loads((root / "metrics/train/environment.json").read_text()).get("device")}


def training(model, tokenizer, device: str, frames: int, steps: int) -> dict:
    """LoRA optimizer step at batch 1, fp32 and bf16 autocast: median seconds and peak GB."""
    from .models import Stepper, lora_model

    peft_model = lora_model(model, rank=16, alpha=32.0)
    stepper = Stepper(peft_model, tokenizer, device)
    codes = torch.randint(0, model.config.decoder.vocab_size, (1, model.config.decoder.num_codebooks, frames))
    out = {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        reset_peak(device)
        times = []
        for _ in range(steps):
            with torch.autocast(device.split(":")[0], dtype=dtype, enabled=dtype is not None):
                times.append(stepper.step(codes))
        out[name] = {"step_s": round(sorted(times)[len(times) // 2], 4), "peak_gb": peak_gb(device)}
    peft_model.unload()
    return out


def generation(model, tokenizer, device: str, frames: int) -> dict:
    """Seconds per generated frame for 8 prompts (guidance 3, top-k 250), fp32 and bf16."""
    from .models import _generate

    out = {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        reset_peak(device)
        t = time.perf_counter()
        with torch.autocast(device.split(":")[0], dtype=dtype, enabled=dtype is not None):
            _generate(model, tokenizer, ["bright upbeat chiptune"] * 8, frames, 3.0, 250, device)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        out[name] = {"s_per_frame": round((time.perf_counter() - t) / frames, 5), "peak_gb": peak_gb(device)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m musicgen_lora.bench.gpu_check", description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="the tiny model and a few steps (the CPU test)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results.json")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu-check: no CUDA device on this machine: nothing measured (run it where `nvidia-smi` lists a GPU)")
        return 0
    from ..model.musicgen import TINY_NAME
    from ..core.params import ModelParams
    from ..model.musicgen import load_model

    with tempfile.TemporaryDirectory() as tmp:
        name = TINY_NAME if args.quick else str(save_small(Path(tmp) / "musicgen-small-shaped"))
        result = {"device": torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu",
                  "model": "tiny" if args.quick else "musicgen-small shape (random weights)"}
        if not args.quick:
            result["pipeline"] = pipeline(name, args.device, args.quick)
        model, tokenizer = load_model(ModelParams(name=name, device=args.device), args.device)
        frames = 50 if args.quick else 750
        result["training_batch1"] = training(model, tokenizer, args.device, frames, 2 if args.quick else 10)
        result["generation_8_prompts"] = generation(model, tokenizer, args.device, 10 if args.quick else 250)
    print(json.dumps(result, indent=1))
    if not args.quick:
        results = json.loads(args.out.read_text()) if args.out.exists() else {}
        write_json(args.out, {**results, "gpu": result})
        print(f"gpu-check: figures in {args.out} under \"gpu\"")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
