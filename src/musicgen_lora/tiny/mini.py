"""Build the `mini` MusicGen (`make mini`): pretrained on real compositions played by real
instruments (`scores`), resumable, the same bytes after any number of kills.

Phases, each checkpointed under the build folder (`--work`, default build/mini, not committed):
1. corpus: the pretraining tracks rendered once into one int16 array (a hash of the track list
   names it, so a changed list renders anew);
2. codec: EnCodec trained as in `codec_train` (data-dependent init, k-means codebooks, VQ-VAE
   with the multi-scale spectral loss), on random 1 s crops;
3. lm: every track encoded once, then T5 + decoder trained on (caption, 10 s windows) with the
   delay-pattern loss the pipeline uses and 10% caption dropout (classifier-free guidance).

A checkpoint holds the weights, the optimiser's state, the step, the random generator's state
and the losses so far (safetensors and JSON; the optimiser through torch.save, read back with
weights_only). A killed build resumes at its last checkpoint and continues with the same random
draws, so the final weights do not depend on where it was stopped (tests/tiny/test_mini.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, load_model, save_file, save_model
from transformers import MusicgenForConditionalGeneration

from . import scores
from .bootstrap import build_tokenizer, lm_batch, save
from .codec_train import COMMITMENT, _crops, codec_loss, init_from_data, quantize_train, refine_loss
from ..core.files import atomic_path, write_json
from ..model.configs import mini_config
from ..model.delay import forward_loss
from ..model.musicgen import encode_audio

MINI_DIR = Path("assets/mini-musicgen")
PHASES_DIR = MINI_DIR / "phases"  # finished phases' weights, committed so the next session resumes there


@dataclass(frozen=True)
class MiniConfig:
    """Sizes of the build. The defaults make the committed model."""

    seed: int = 0
    tracks: int = 1200  # pretraining tracks (pieces x instruments)
    seconds: float = 20.0  # at most this much of each piece
    codec_steps: int = 3000  # ~35 min on 2 free cores: the phase ends inside one session
    codec_batch: int = 8
    codec_seconds: float = 0.5
    codec_lr: float = 2e-3
    # the codec phase continued with log-mel and waveform terms: off, as measured: 9.2 s a step on
    # 2 cores (20,000 steps would take ~51 h) and 400 steps left musicnn's round-trip cosine at 0.40
    refine_steps: int = 0
    refine_lr: float = 1e-3
    lm_steps: int = 6000
    lm_batch: int = 8
    lm_seconds: float = 10.0
    lm_lr: float = 1e-3
    text_dropout: float = 0.1
    checkpoint_every: int = 200
    threads: int = 2

    @classmethod
    def quick(cls, seed: int = 0) -> "MiniConfig":
        """A seconds-scale build for tests: the same code path, a few tracks and steps."""
        return cls(
            seed=seed,
            tracks=6,
            seconds=4.0,
            codec_steps=4,
            codec_batch=2,
            refine_steps=2,
            lm_steps=4,
            lm_batch=2,
            lm_seconds=2.0,
            checkpoint_every=2,
        )


def corpus_audio(cfg: MiniConfig, work: Path) -> tuple[torch.Tensor, list[scores.Track]]:
    """The pretraining tracks as float32 (B, N) (zero-padded to the longest), rendered once."""
    tracks = scores.pretrain_tracks(cfg.seed, cfg.tracks, cfg.seconds)
    key = hashlib.sha256(json.dumps([asdict(t) for t in tracks]).encode()).hexdigest()[:16]
    path = work / f"corpus-{key}.npy"
    if not path.exists():
        n = int(cfg.seconds * scores.SR)
        audio = np.zeros((len(tracks), n), dtype=np.int16)
        t0 = time.time()
        for i, t in enumerate(tracks):
            clip = scores.render(t)
            audio[i, : len(clip)] = np.round(clip * 32767).astype(np.int16)
            if i % 50 == 0 or i == len(tracks) - 1:
                print(f"  corpus {i + 1}/{len(tracks)} tracks rendered, {time.time() - t0:.0f}s", flush=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, audio)
    audio = np.load(path, allow_pickle=False)
    return torch.from_numpy(audio.astype(np.float32) / 32767), tracks


class Phase:
    """A resumable training loop: weights, optimiser, scheduler step, generator and losses saved
    every `every` steps under work/<name>-*, atomically (the step file is written last)."""

    def __init__(self, name: str, work: Path, module: torch.nn.Module, opt, gen: torch.Generator, every: int):
        self.name, self.work, self.module, self.opt, self.gen, self.every = name, work, module, opt, gen, every
        self.step, self.losses = 0, []

    def paths(self) -> tuple[Path, Path, Path]:
        return (
            self.work / f"{self.name}-weights.safetensors",
            self.work / f"{self.name}-optimizer.pt",
            self.work / f"{self.name}-state.json",
        )

    def resume(self, total: int | None = None) -> bool:
        """Load the last checkpoint, if any. A finished phase (step == total) needs only its weights:
        they are what is committed between sessions (the optimiser's state is twice their size)."""
        weights, optim, state = self.paths()
        if not state.exists():
            return False
        meta = json.loads(state.read_text())
        load_model(self.module, weights, strict=True)
        if meta["step"] != total or optim.exists():
            self.opt.load_state_dict(torch.load(optim, weights_only=True))
        self.gen.set_state(torch.tensor(meta["generator"], dtype=torch.uint8))
        self.step, self.losses = meta["step"], meta["losses"]
        print(f"  {self.name}: resumed at step {self.step}", flush=True)
        return True

    def save(self) -> None:
        weights, optim, state = self.paths()
        with atomic_path(weights) as tmp:
            save_model(self.module, str(tmp))  # the T5's tied embeddings once
        with atomic_path(optim) as tmp:
            torch.save(self.opt.state_dict(), tmp)
        write_json(state, {"step": self.step, "losses": self.losses, "generator": self.gen.get_state().tolist()})


def cosine(step: int, total: int, warmup: int, floor: float = 0.1) -> float:
    return min(1.0, (step + 1) / warmup) * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(step, total) / total)))


def train_phase(phase: Phase, total: int, lr: float, loss_fn, params, log_every: int = 50) -> list[float]:
    """Run `phase` from its step to `total`: clipped AdamW with a cosine schedule set from the step
    (so a resumed loop needs no scheduler state)."""
    t0, start = time.time(), phase.step
    phase.module.train()
    while phase.step < total:
        for group in phase.opt.param_groups:
            group["lr"] = lr * cosine(phase.step, total, max(1, total // 50))
        # what draws from torch's global generator (T5's dropout) draws the same after a resume
        torch.manual_seed(int(torch.randint(2**62, (1,), generator=phase.gen)))
        loss = loss_fn()
        phase.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        phase.opt.step()
        phase.losses.append(round(loss.item(), 6))
        phase.step += 1
        if phase.step % phase.every == 0 or phase.step == total:
            phase.save()
        if phase.step % log_every == 0 or phase.step == total:
            rate = (time.time() - t0) / max(1, phase.step - start)
            print(
                f"  {phase.name} step {phase.step}/{total} loss {np.mean(phase.losses[-log_every:]):.3f} "
                f"({rate:.2f} s/step, {rate * (total - phase.step) / 60:.0f} min left)",
                flush=True,
            )
    phase.module.eval()
    return phase.losses


def codec_phase(
    name: str, codec, audio: torch.Tensor, cfg: MiniConfig, work: Path, steps: int, lr: float, seed: int, recon, init=None
) -> list[float]:
    """A resumable phase training the codec on random crops of `audio`: VQ-VAE with straight-through
    gradients and the commitment loss, `recon(x, decoded)` as the reconstruction loss. `init(phase)`
    runs where the phase has no checkpoint yet."""
    gen = torch.Generator().manual_seed(seed)
    params = list(codec.encoder.parameters()) + list(codec.decoder.parameters())
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.8, 0.99), weight_decay=0.0)
    phase = Phase(name, work, codec, opt, gen, cfg.checkpoint_every)
    if not phase.resume(steps) and init is not None:
        init(phase)
    samples = int(cfg.codec_seconds * codec.config.sampling_rate)

    def loss_fn():
        x = _crops(audio, cfg.codec_batch, samples, gen)
        quantized, commitment = quantize_train(codec, codec.encoder(x[:, None, :]), gen)
        return recon(x, codec.decoder(quantized)[:, 0, :samples]) + COMMITMENT * commitment

    return train_phase(phase, steps, lr, loss_fn, params)


def train_mini_codec(codec, audio: torch.Tensor, cfg: MiniConfig, work: Path) -> list[float]:
    def init(phase: Phase) -> None:
        # k-means needs ~40,000 latent frames: 200 seeded 4 s crops give them (encoding all of the
        # corpus for it would take longer than a thousand training steps)
        init_gen = torch.Generator().manual_seed(cfg.seed + 2)
        crops = _crops(audio, min(200, len(audio)), min(audio.shape[1], 4 * codec.config.sampling_rate), init_gen)
        init_from_data(codec, crops, cfg.seed)
        phase.save()

    return codec_phase("codec", codec, audio, cfg, work, cfg.codec_steps, cfg.codec_lr, cfg.seed, codec_loss, init)


def refine_mini_codec(codec, audio: torch.Tensor, cfg: MiniConfig, work: Path) -> list[float]:
    """The codec phase's weights trained on with multi-scale log-mel and waveform terms added
    (`codec_train.refine_loss`): the spectral loss alone leaves a noise floor musicnn hears."""
    sr = codec.config.sampling_rate
    return codec_phase(
        "refine", codec, audio, cfg, work, cfg.refine_steps, cfg.refine_lr, cfg.seed + 3, lambda x, y: refine_loss(x, y, sr)
    )


def train_mini_lm(model, tokenizer, codes: torch.Tensor, captions: list[str], cfg: MiniConfig, work: Path) -> list[float]:
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    dec = model.config.decoder
    frames = min(codes.shape[-1], int(cfg.lm_seconds * model.config.audio_encoder.frame_rate))
    lm = torch.nn.ModuleDict(
        {"text_encoder": model.text_encoder, "decoder": model.decoder, "enc_to_dec_proj": model.enc_to_dec_proj}
    )
    params = list(lm.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lm_lr, betas=(0.9, 0.95), weight_decay=0.01)
    phase = Phase("lm", work, lm, opt, gen, cfg.checkpoint_every)
    phase.resume(cfg.lm_steps)

    def loss_fn():
        rows = torch.randint(len(codes), (cfg.lm_batch,), generator=gen).tolist()
        starts = torch.randint(codes.shape[-1] - frames + 1, (cfg.lm_batch,), generator=gen).tolist()
        drop = torch.rand(cfg.lm_batch, generator=gen) < cfg.text_dropout
        batch = lm_batch(model, tokenizer, codes, captions, rows, starts, frames, drop)
        return forward_loss(model, batch, dec.pad_token_id, dec.decoder_start_token_id)

    return train_phase(phase, cfg.lm_steps, cfg.lm_lr, loss_fn, params)


def all_captions() -> list[str]:
    """Every caption any family could get (the tokenizer's vocabulary: a prompt naming a held-out
    instrument tokenizes to its words, though pretraining never used them)."""
    words = [
        f"{speed} {phrase} played on sung by a {word}"
        for _, phrase in scores.GENRES.values()
        for fam in scores.FAMILIES.values()
        for _, word in fam
        for speed in ("fast", "slow", "moderate")
    ]
    return words


def seed_work(work: Path, phases: Path | None) -> None:
    """Copy finished phases (weights and state, committed between sessions) into the build folder
    where it has none: the build resumes after them, to the same bytes."""
    if not phases or not phases.is_dir():
        return
    for name in ("codec", "refine", "lm"):
        state = phases / f"{name}-state.json"
        if state.exists() and not (work / state.name).exists():
            for suffix in ("-weights.safetensors", "-state.json"):
                shutil.copyfile(phases / f"{name}{suffix}", work / f"{name}{suffix}")
            print(f"  {name}: finished phase taken from {phases}", flush=True)


def publish_phase(work: Path, phases: Path, name: str) -> None:
    """Copy a finished phase's weights and state into `phases` (to be committed)."""
    phases.mkdir(parents=True, exist_ok=True)
    for suffix in ("-weights.safetensors", "-state.json"):
        shutil.copyfile(work / f"{name}{suffix}", phases / f"{name}{suffix}")


def build_mini(out_dir: Path, work: Path, cfg: MiniConfig, phases: Path | None = None) -> dict:
    """Every phase (each resumes where a killed build stopped, or after the finished phases in
    `phases`), then the model saved to out_dir."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True)
    work.mkdir(parents=True, exist_ok=True)
    seed_work(work, phases)
    t0 = time.time()
    try:
        audio, tracks = corpus_audio(cfg, work)
        captions = [t.caption for t in tracks]
        tokenizer = build_tokenizer(all_captions())
        torch.manual_seed(cfg.seed)
        model = MusicgenForConditionalGeneration(mini_config(text_vocab_size=len(tokenizer))).eval()
        codec_losses = train_mini_codec(model.audio_encoder, audio, cfg, work)
        if phases:
            publish_phase(work, phases, "codec")
        refine_losses = refine_mini_codec(model.audio_encoder, audio, cfg, work)
        if phases:
            publish_phase(work, phases, "refine")
        codes_path = work / f"codes-{cfg.codec_steps}-{cfg.refine_steps}.safetensors"
        if not codes_path.exists():
            with torch.no_grad():
                codes = torch.cat([encode_audio(model, chunk) for chunk in audio.split(16)])
            with atomic_path(codes_path) as tmp:
                save_file({"codes": codes.to(torch.int16)}, tmp)
        codes = load_file(codes_path)["codes"].long()
        lm_losses = train_mini_lm(model, tokenizer, codes, captions, cfg, work)
        if phases:
            publish_phase(work, phases, "lm")
    finally:
        torch.use_deterministic_algorithms(deterministic)
        torch.set_num_threads(threads)
    digest = save(model, tokenizer, out_dir)
    info = {
        "sha256": digest,
        "seconds_this_run": round(time.time() - t0, 1),
        "config": asdict(cfg),
        "corpus_hours": round(len(tracks) * cfg.seconds / 3600, 2),
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "codec_loss": codec_losses,
        "refine_loss": refine_losses,
        "lm_loss": lm_losses,
    }
    write_json(work / "build.json", info)
    print(f"mini MusicGen -> {out_dir}: sha256 {digest}", flush=True)
    return info


def mini_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="musicgen_lora mini", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=MINI_DIR)
    ap.add_argument("--work", type=Path, default=Path("build/mini"))
    ap.add_argument(
        "--phases",
        type=Path,
        default=PHASES_DIR,
        help="finished phases to resume after, and where a finished phase is copied (committed)",
    )
    ap.add_argument("--quick", action="store_true", help="seconds-scale sizes (tests)")
    ap.add_argument("--codec-steps", type=int)
    ap.add_argument("--lm-steps", type=int)
    args = ap.parse_args(argv)
    cfg = MiniConfig.quick() if args.quick else MiniConfig()
    overrides = {k: v for k, v in (("codec_steps", args.codec_steps), ("lm_steps", args.lm_steps)) if v is not None}
    build_mini(args.out, args.work, MiniConfig(**{**asdict(cfg), **overrides}), args.phases)
    return 0
