"""`make gpu-check`: the GPU path in one prepared run, for a machine with a CUDA device.

1. pipeline: a musicgen-small-shaped checkpoint with random weights, built here (no hub), through
   the real pipeline in a throw-away project (`dvc repro`: segment -> encode on the codec alone ->
   train in bf16 with gradient checkpointing -> evaluate in half precision), the train stage
   killed after its first checkpoint and resumed; every loss finite, every clip a readable wav;
   then `generate` 40 s, past the 30 s window; and every family (small, large, stereo, melody at
   tiny widths: `bench/families.py`) through segment -> encode -> a step -> evaluate on the GPU;
2. training: the small shape's LoRA optimizer step at batch 1 and 4 (fp32 and bf16 autocast):
   seconds, peak `torch.cuda.max_memory_allocated`, and utilisation against the GPU's own matmul
   FLOP/s in the same precision;
3. generation: seconds per generated frame for 8 prompts through the pipeline's own `generate`,
   the base model and the adapter unmerged and merged, fp32 and bf16 (weights cast once, codec fp32).

The figures go to bench/results.json under "gpu" with the card's name. Without CUDA it says so
in one line and exits 0; `--device cpu --quick` runs the training and generation measurements on
the CPU with the tiny model (the test does; the pipeline part is the end-to-end tests' path with
GPU params).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from musicgen_lora.core.files import write_json
from tests.workspace import TRAIN_ARGS

ROOT = Path(__file__).resolve().parents[1]  # the project: bench/ sits at its root
TRAIN = ["python", "-m", "musicgen_lora", *TRAIN_ARGS]


def peak_gb(device: str) -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 3) if device.startswith("cuda") else None


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def save_small(path: Path) -> Path:
    """A random musicgen-small-shaped checkpoint directory (codebooks not all zero)."""
    from transformers import MusicgenForConditionalGeneration

    from musicgen_lora.model.configs import small_config
    from musicgen_lora.tiny.bootstrap import build_tokenizer, save

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
    from tests.workspace import SMALL_PARAMS, make_project, sh

    gpu = device.startswith("cuda")
    params = {
        **SMALL_PARAMS,
        "model": {"name": model_name, "device": device},
        "train": {
            **SMALL_PARAMS["train"],
            "mixed_precision": "bf16" if gpu else "no",
            "gradient_checkpointing": gpu,
            "checkpoint_every": 1,
        },
        "evaluate": {**SMALL_PARAMS["evaluate"], "half_precision": gpu},
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = make_project(ROOT, root, tracks=3 if quick else 6, params=params)
        t0 = time.time()
        sh(["dvc", "repro", "encode"], root, env)
        proc = subprocess.Popen(TRAIN, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 600
        while (
            not list(root.glob("models/checkpoints/*/checkpoint-*/trainer_state.json"))
            and proc.poll() is None
            and time.time() < deadline
        ):
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        sh(["dvc", "repro"], root, env)  # resumes train from its checkpoint, then evaluates and summarizes
        # past one window: 40 s from the trained adapter, continued over MusicGen's 30 s window
        sh(
            [
                "python",
                "-m",
                "musicgen_lora",
                "generate",
                "--prompt",
                "bright upbeat chiptune",
                "--adapter",
                "models/best_model",
                "--seconds",
                "40",
                "--out",
                "long.wav",
            ],
            root,
            env,
        )
        epochs = json.loads((root / "metrics/train/epochs.json").read_text())
        rows = [json.loads(x) for x in (root / "evaluation/comparison_results.jsonl").read_text().splitlines()]
        losses = [e["valid_loss"] for e in epochs] + [r["valid_loss"] for r in rows]
        import soundfile as sf

        subtypes = {sf.info(str(root / "evaluation" / r["file"])).subtype for r in rows}
        long = sf.info(str(root / "long.wav"))
        return {
            "wall_s": round(time.time() - t0, 1),
            "losses_finite": all(math.isfinite(x) for x in losses),
            "epochs": len(epochs) - 1,
            "clips": len(rows),
            "wav_subtypes": sorted(subtypes),
            "generated_past_window_s": round(long.frames / long.samplerate, 2),
            "train": json.loads((root / "metrics/train/environment.json").read_text()).get("device"),
        }


def every_family(device: str) -> dict:
    """Each family (small, large, stereo, melody; tiny widths, random weights) through segment ->
    encode -> one optimizer step -> evaluate with half precision, on `device`, in-process."""
    from .families import FAMILIES, build, run_family, write_corpus

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        corpus = write_corpus(Path(tmp) / "raw")
        for name, shape in FAMILIES.items():
            root = Path(tmp) / name
            root.mkdir()
            with contextlib.chdir(root):  # train keeps its checkpoints under models/checkpoints
                t0 = time.time()
                run_family(build(root / "checkpoint", *shape), corpus, root, device)
            rows = [json.loads(x) for x in (root / "eval/results.jsonl").read_text().splitlines()]
            out[name] = {
                "wall_s": round(time.time() - t0, 1),
                "clips": len(rows),
                "valid_losses_finite": all(math.isfinite(r["valid_loss"]) for r in rows),
                "made_on": rows[-1].get("made_on"),
            }
    return out


PRECISIONS = (("fp32", None), ("bf16", torch.bfloat16))


def training(peft_model, tokenizer, device: str, frames: int, steps: int, batches=(1, 4)) -> dict:
    """The LoRA optimizer step at each batch size, fp32 and under bf16 autocast (what the train
    stage's `mixed_precision: bf16` runs): median seconds, peak GB, and utilisation against the
    device's own matmul FLOP/s in the same precision."""
    from .models import Stepper, decoder_flop_params, matmul_flops

    base = peft_model.base_model.model
    k = base.config.decoder.num_codebooks
    flops_per_clip = 4 * decoder_flop_params(base) * (frames + k - 1)  # decoder positions: frames + K - 1
    out = {}
    for batch in batches:
        stepper = Stepper(peft_model, tokenizer, device, batch)
        codes = torch.randint(0, base.config.decoder.vocab_size, (batch, k, frames))
        for name, dtype in PRECISIONS:
            reset_peak(device)
            times = []
            for _ in range(steps):
                with torch.autocast(device.split(":")[0], dtype=dtype, enabled=dtype is not None):
                    times.append(stepper.step(codes))
            step_s = sorted(times)[len(times) // 2]
            peak = matmul_flops(device=device, dtype=dtype or torch.float32, n=512 if frames < 100 else 4096)
            out[f"batch{batch}_{name}"] = {
                "step_s": round(step_s, 4),
                "peak_gb": peak_gb(device),
                "mfu": round(flops_per_clip * batch / step_s / peak, 3),
            }
    return out


def generation(peft_model, tokenizer, device: str, frames: int) -> dict:
    """Seconds per generated frame for 8 prompts (guidance 3, top-k 250) through the pipeline's
    `generate` (per-row sampling, pre-sized cache, half precision cast once with the codec in
    fp32): the base model, the adapter unmerged and merged (evaluate's path), fp32 and bf16."""
    from musicgen_lora.model.lora import merged
    from .models import _generate

    def arm_model(arm: str):
        if arm == "base":  # the adapter switched off: what evaluate's base rows run
            return contextlib.nullcontext(peft_model.get_base_model())
        return merged(peft_model, peft_model.active_adapter) if arm == "merged" else contextlib.nullcontext(peft_model)

    out = {}
    for arm in ("base", "unmerged", "merged"):
        with arm_model(arm) as model:
            for name, dtype in PRECISIONS:
                model.generation_dtype = dtype
                reset_peak(device)
                t = time.perf_counter()
                _generate(model, tokenizer, ["bright upbeat chiptune"] * 8, frames, 3.0, 250, device)
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                out[f"{arm}_{name}"] = {
                    "s_per_frame": round((time.perf_counter() - t) / frames, 5),
                    "peak_gb": peak_gb(device),
                }
            model.generation_dtype = None
    return out


def measure(name: str, device: str, quick: bool) -> dict:
    """Training steps and generation on checkpoint `name` (a LoRA of rank 16 on it)."""
    from musicgen_lora.core.params import project_params
    from musicgen_lora.model.musicgen import load_model
    from .models import lora_model

    model, tokenizer = load_model(project_params("model", name=name, device=device), device)
    peft_model = lora_model(model, rank=16, alpha=32.0)
    result = {"training": training(peft_model, tokenizer, device, 50 if quick else 750, 2 if quick else 10)}
    result["generation_8_prompts"] = generation(peft_model, tokenizer, device, 10 if quick else 250)
    peft_model.unload()
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="the tiny model and a few steps (the CPU test)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results.json")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu-check: no CUDA device on this machine: nothing measured (run it where `nvidia-smi` lists a GPU)")
        return 0
    from musicgen_lora.model.musicgen import TINY_NAME

    with tempfile.TemporaryDirectory() as tmp:
        name = TINY_NAME if args.quick else str(save_small(Path(tmp) / "musicgen-small-shaped"))
        result = {
            "device": torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu",
            "model": "tiny" if args.quick else "musicgen-small shape (random weights)",
        }
        if not args.quick:
            result["pipeline"] = pipeline(name, args.device, args.quick)
            result["families"] = every_family(args.device)
        result.update(measure(name, args.device, args.quick))
    print(json.dumps(result, indent=1))
    if not args.quick:
        results = json.loads(args.out.read_text()) if args.out.exists() else {}
        write_json(args.out, {**results, "gpu": result})
        print(f'gpu-check: figures in {args.out} under "gpu"')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
