"""Model-side benchmarks of `make bench`: training step (FLOPs, utilisation, memory), epoch over
cached tokens vs encoding on the fly, generation arms, and EnCodec throughput.

The musicgen-small shape is built from the real sub-configurations (t5-base text encoder,
EnCodec 32 kHz, 24 x 1024 decoder with 4 codebooks of 2048) with random weights: no hub. It is
constructed once, in place, under `torch.no_grad()` (no state dict, no second copy of the
weights), and shared by the training, generation and encoding benchmarks.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from peft import get_peft_model
from transformers import MusicgenForConditionalGeneration

from musicgen_lora.core import params as P
from musicgen_lora.model.lora import lora_config, merged
from musicgen_lora.runtime.kernels import fast_generation
from musicgen_lora.model.configs import small_config
from musicgen_lora.model.delay import delay_pattern_labels, forward_loss, text_inputs
from musicgen_lora.model import families
from musicgen_lora.model.kv_cache import presized_cache
from musicgen_lora.model.musicgen import checkpoint_decoder, codec_info, encode_audio, generate, text_encoder_without_dropout
from musicgen_lora.model.sampling import RowSampling

CAPTION = "bright upbeat chiptune with fast major-key square wave arpeggios, pulse bass and noise drums"


def build_small(device: str = "cpu"):
    """The musicgen-small-shaped model with random weights, built in place (one copy)."""
    torch.manual_seed(0)
    with torch.no_grad(), torch.device(device):
        model = MusicgenForConditionalGeneration(small_config())
    model.config.decoder.decoder_start_token_id = 2048
    return model.eval()


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def decoder_flop_params(model) -> int:
    """Decoder parameters that multiply every audio position: all decoder weights except the
    token and position embeddings (table look-ups, no FLOPs) and LoRA's own small matrices."""
    total = 0
    for name, p in model.decoder.named_parameters():
        if "embed_tokens" in name or "embed_positions" in name or "lora_" in name:
            continue
        total += p.numel()
    return total


# --- machine peak -----------------------------------------------------------------------------


def matmul_flops(n: int = 2048, reps: int = 4, device: str = "cpu", dtype: torch.dtype = torch.float32) -> float:
    """Achieved FLOP/s of an n x n x n matmul in `dtype` (best of `reps`): the machine's own peak
    for the precision a step runs in."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    torch.mm(a, b, out=out)  # warm-up
    best = float("inf")
    for _ in range(reps):
        _sync(device)
        t = time.perf_counter()
        torch.mm(a, b, out=out)
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# --- training ---------------------------------------------------------------------------------


def lora_model(model, rank: int, alpha: float, checkpointing_every: int = 0):
    """`model` with a LoRA of `rank`, prepared as train prepares it: the text encoder without
    dropout, the decoder checkpointed every `checkpointing_every`-th layer
    (`train.gradient_checkpointing_every`; 0: off)."""
    text_encoder_without_dropout(model)
    if checkpointing_every:
        checkpoint_decoder(model, checkpointing_every)
    return get_peft_model(model, lora_config(P.project_params("train", rank=rank, alpha=alpha), model))


def text_batch(tokenizer, device: str, batch: int = 1) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in text_inputs(tokenizer, [CAPTION] * batch).items()}


class Stepper:
    """One optimizer step of the LoRA (AdamW on the adapter only), timed; `batch` clips a step."""

    def __init__(self, peft_model, tokenizer, device: str, batch: int = 1):
        self.model, self.device = peft_model, device
        self.text = text_batch(tokenizer, device, batch)
        dec = peft_model.base_model.model.config.decoder
        self.pad_id, self.start_id = dec.pad_token_id, dec.decoder_start_token_id
        self.opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-4)
        peft_model.train()

    def step(self, codes: torch.Tensor) -> float:
        """codes (B, K, T) -> seconds for labels + forward + backward + optimizer step."""
        _sync(self.device)
        t = time.perf_counter()
        labels = delay_pattern_labels(codes.cpu(), torch.ones(len(codes), codes.shape[-1], dtype=torch.bool), True)
        with _on(self.device):
            loss = forward_loss(self.model, {**self.text, "labels": labels.to(self.device)}, self.pad_id, self.start_id)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        _sync(self.device)
        return time.perf_counter() - t


def write_clips(folder: Path, n: int, seconds: float, sr: int, seed: int = 0) -> list[Path]:
    """`n` mono wavs of band-limited noise (content is irrelevant to timing)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        audio = (0.1 * rng.standard_normal(int(seconds * sr))).astype(np.float32)
        paths.append(folder / f"clip{i:02d}.wav")
        sf.write(paths[-1], audio, sr, subtype="FLOAT")
    return paths


def onthefly_codes(model, path: Path, device: str) -> tuple[torch.Tensor, float]:
    """Read one wav and encode it, as a per-step-encoding trainer does; (codes, seconds)."""
    t = time.perf_counter()
    audio, _ = sf.read(str(path), dtype="float32")
    codes = encode_audio(model, torch.from_numpy(audio)[None].to(device))
    _sync(device)
    return codes, time.perf_counter() - t


def epoch_cached_vs_onthefly(peft_model, tokenizer, clips: list[Path], device: str = "cpu", repeats: int = 3) -> dict:
    """One epoch (batch 1, every clip once) over cached tokens vs the same epoch encoding each
    clip on the fly, `repeats` times each in ABBA order (an epoch of the tiny default takes
    well under a second, where a shared machine's drift shows); the ratio of the medians.
    Tokens are encoded before the cached epochs, outside their timing (the encode stage's
    job). A warm-up step precedes both."""
    base = peft_model.base_model.model
    stepper = Stepper(peft_model, tokenizer, device)
    cached = [onthefly_codes(base, p, device)[0] for p in clips]
    stepper.step(cached[0])  # warm-up

    def cached_epoch() -> tuple[float, float]:
        t = time.perf_counter()
        for codes in cached:
            stepper.step(codes)
        return time.perf_counter() - t, 0.0

    def onthefly_epoch() -> tuple[float, float]:
        t, enc_s = time.perf_counter(), 0.0
        for p in clips:
            codes, e = onthefly_codes(base, p, device)
            enc_s += e
            stepper.step(codes)
        return time.perf_counter() - t, enc_s

    arms, took = [("cached", cached_epoch), ("onthefly", onthefly_epoch)], {"cached": [], "onthefly": []}
    for r in range(repeats):
        for arm, run in arms if r % 2 == 0 else arms[::-1]:
            took[arm].append(run())
    cached_s = statistics.median(s for s, _ in took["cached"])
    fly_s = statistics.median(s for s, _ in took["onthefly"])
    enc_share = statistics.median(e / s for s, e in took["onthefly"])
    return {
        "clips": len(clips),
        "repeats": repeats,
        "cached_epoch_s": round(cached_s, 3),
        "onthefly_epoch_s": round(fly_s, 3),
        "ratio": round(fly_s / cached_s, 3),
        "cached_epochs_s": [round(s, 3) for s, _ in took["cached"]],
        "onthefly_epochs_s": [round(s, 3) for s, _ in took["onthefly"]],
        "encoder_share_of_onthefly_step": round(enc_share, 3),
    }


def train_small(
    peft_model, tokenizer, clip: Path, frames: int, warmup: int, measured: int, onthefly: int, device: str = "cpu"
) -> dict:
    """LoRA steps on the small shape, batch 1 x `frames`: `warmup` steps, then `measured` cached
    steps interleaved with `onthefly` steps that read and encode `clip` first. The machine's
    matmul FLOP/s is measured beside every measured step (load on a shared machine drifts), and
    each step's utilisation is taken against the peak measured next to it."""
    base = peft_model.base_model.model
    k = base.config.decoder.num_codebooks
    codes = torch.randint(0, base.config.decoder.vocab_size, (1, k, frames))
    stepper = Stepper(peft_model, tokenizer, device)
    n_params = decoder_flop_params(base)
    tokens = frames + k - 1  # decoder positions per clip (delay pattern adds K-1)
    flops = 4 * n_params * tokens
    warm = [stepper.step(codes) for _ in range(warmup)]
    steps, peaks, mfu, fly, enc = [], [], [], [], []
    order = ["cached"] * measured
    for i in range(min(onthefly, measured)):
        order.insert(2 * i + 1, "onthefly")
    for kind in order:
        if kind == "cached":
            peak = matmul_flops(device=device)
            s = stepper.step(codes)
            steps.append(s)
            peaks.append(peak)
            mfu.append(flops / s / peak)
        else:
            c, e = onthefly_codes(base, clip, device)
            fly.append(e + stepper.step(c[..., :frames]))
            enc.append(e)
    step_s = statistics.median(steps)
    out = {
        "frames": frames,
        "tokens_per_step": tokens,
        "decoder_flop_params": n_params,
        "flops_definition": "4 x decoder params (embeddings excluded) x decoder positions per step",
        "model_flops_per_step": flops,
        "warmup_steps_s": [round(s, 2) for s in warm],
        "steps_s": [round(s, 2) for s in steps],
        "step_s": round(step_s, 3),
        "achieved_flops": flops / step_s,
        "matmul_peak_flops": statistics.median(peaks),
        "mfu_per_step": [round(m, 3) for m in mfu],
        "mfu": round(statistics.median(mfu), 3),
    }
    if fly:
        out.update(
            {
                "onthefly_steps_s": [round(s, 2) for s in fly],
                "encode_s": [round(e, 3) for e in enc],
                "onthefly_vs_cached_ratio": round(statistics.median(fly) / step_s, 3),
                "encoder_share_of_step": round(statistics.median(enc) / statistics.median(fly), 3),
            }
        )
    return out


# --- generation -------------------------------------------------------------------------------


def generation_arms(
    peft_model,
    tokenizer,
    prompts: list[str],
    seconds: float,
    guidance: float,
    top_k: int,
    device: str = "cpu",
    repeats: int = 1,
) -> dict:
    """`prompts` x `seconds`: merged adapter (evaluate's `merged`: plain layers) vs unmerged, one
    batch vs one prompt at a time, guidance on vs off, each on evaluate's generation kernels
    (`fast_generation`, entered inside the timing: its weight packing is part of the cost), and
    the merged model on stock kernels. Every arm generates the same frames; an untimed
    full-size run of the largest arm first (the allocator's first touch of its memory would
    otherwise land on whichever arm runs first), and with `repeats` > 1 the arms run again in
    reverse order (ABBA: load drift cancels)."""
    base = peft_model.base_model.model
    frames = codec_info(base.config).frames(seconds)
    peft_model.eval()

    def run(merge: bool, batch: int, g: float, fast: bool) -> float:
        with merged(peft_model, peft_model.active_adapter) if merge else contextlib.nullcontext(peft_model) as m:
            _sync(device)
            t = time.perf_counter()
            with fast_generation(m, prepack=True) if fast else contextlib.nullcontext():
                for i in range(0, len(prompts), batch):
                    _generate(m, tokenizer, prompts[i : i + batch], frames, g, top_k, device)
            _sync(device)
            return time.perf_counter() - t

    arms = {
        "unmerged": (False, len(prompts), guidance, True),
        "merged": (True, len(prompts), guidance, True),
        "merged_unguided": (True, len(prompts), 1.0, True),
        "sequential": (True, 1, guidance, True),
        "merged_stock_kernels": (True, len(prompts), guidance, False),
    }
    took = dict.fromkeys(arms, 0.0)
    run(*arms["unmerged"])  # warm-up
    for r in range(repeats):
        for name in list(arms) if r % 2 == 0 else list(arms)[::-1]:
            took[name] += run(*arms[name])
    t = {k: v / repeats for k, v in took.items()}
    return {
        "prompts": len(prompts),
        "seconds": seconds,
        "frames": frames,
        "guidance_scale": guidance,
        "repeats": repeats,
        **{f"{k}_s": round(v, 2) for k, v in t.items()},
        "merged_vs_unmerged": round(t["unmerged"] / t["merged"], 3),
        "batched_vs_sequential": round(t["sequential"] / t["merged"], 3),
        "guided_vs_unguided_cost": round(t["merged"] / t["merged_unguided"], 3),
        "fast_vs_stock_kernels": round(t["merged_stock_kernels"] / t["merged"], 3),
    }


def cache_arms(peft_model, tokenizer, prompts: list[str], seconds: float, guidance: float, top_k: int) -> dict:
    """`prompts` x `seconds` with the merged adapter on evaluate's kernels: the self-attention
    cache pre-sized for the call (`model/kv_cache.py`, what `musicgen.generate` does) vs
    transformers' cache that grows by concatenation. Its cost grows with the square of the
    length, so this runs longer clips than the merged/unmerged arms; each arm twice, in ABBA
    order (later runs of the same arm were faster by up to 10%: drift cancels)."""
    base = peft_model.base_model.model
    steps = families.delay_steps(base.config, codec_info(base.config).frames(seconds))
    sampling = RowSampling(list(range(len(prompts))), guidance, 1.0, top_k)
    inputs = text_inputs(tokenizer, prompts)
    took, swapped = {"growing": [], "presized": []}, 0
    with merged(peft_model, peft_model.active_adapter) as m, fast_generation(m, prepack=True):
        for name in ("growing", "presized", "presized", "growing"):
            t = time.perf_counter()
            with presized_cache(m, steps) if name == "presized" else contextlib.nullcontext({}) as seen:
                m.generate(**inputs, max_new_tokens=steps, **sampling.generate_kwargs())
            took[name].append(time.perf_counter() - t)
            swapped = max(swapped, seen.get("swapped", 0))
    growing, presized = (statistics.mean(took[k]) for k in ("growing", "presized"))
    return {
        "prompts": len(prompts),
        "seconds": seconds,
        "growing_s": [round(x, 2) for x in took["growing"]],
        "presized_s": [round(x, 2) for x in took["presized"]],
        "layers_presized": swapped,
        "ratio": round(growing / presized, 3),
    }


def _generate(model, tokenizer, prompts: list[str], frames: int, guidance: float, top_k: int, device: str) -> None:
    """The pipeline's `musicgen.generate` (per-row sampling, pre-sized cache, frames + K - 1 steps,
    the model's `generation_dtype` cast once) on whatever device the model is on."""
    generate(model, tokenizer, prompts, frames, guidance, 1.0, top_k, seed=0)


class _on:
    """Generation inputs come from the tokenizer on CPU; on a GPU move them with the model."""

    def __init__(self, device: str):
        self.device = device

    def __enter__(self):
        if self.device.startswith("cuda"):
            self.ctx = torch.device(self.device)
            self.ctx.__enter__()

    def __exit__(self, *exc):
        if self.device.startswith("cuda"):
            self.ctx.__exit__(*exc)


# --- encoding ---------------------------------------------------------------------------------


def encode_throughput(model, clips: int, seconds: float, batch: int) -> dict:
    """Audio seconds encoded per wall second: `clips` clips in batches of `batch` vs one at a time,
    after an untimed batched pass (the allocator's first touch of the memory both arms reuse)."""
    sr = model.config.audio_encoder.sampling_rate
    audio = 0.1 * torch.randn(clips, int(seconds * sr), generator=torch.Generator().manual_seed(0))
    encode_audio(model, audio[:batch])  # warm-up
    t = time.perf_counter()
    for i in range(0, clips, batch):
        encode_audio(model, audio[i : i + batch])
    batched = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(clips):
        encode_audio(model, audio[i : i + 1])
    single = time.perf_counter() - t
    total = clips * seconds
    return {
        "clips": clips,
        "clip_seconds": seconds,
        "batch_size": batch,
        "sample_rate": sr,
        "batched_audio_s_per_s": round(total / batched, 2),
        "single_audio_s_per_s": round(total / single, 2),
        "batched_s": round(batched, 2),
        "single_s": round(single, 2),
        "ratio": round(single / batched, 3),
    }
