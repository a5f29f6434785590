"""Build the embedded `tiny` MusicGen (`make tiny`): deterministic, seeded, saved with `save_pretrained`.

A randomly initialised MusicGen is useless as a base model: its EnCodec codebooks are all zeros
(every clip encodes to code 0) and its decoder turns any codes into noise. So the builder
*pre-trains* the tiny model, on the generic demo styles only (never the target style the demo
fine-tunes on, so fine-tuning has something to learn):

1. the codec (codec_train): data-dependent init, k-means codebooks, then VQ-VAE training of
   encoder, codebooks and decoder together on the quantised path, so it round-trips audio;
2. the language model: text encoder + MusicGen decoder trained on (caption, codes) with the
   delay-pattern labels and loss the pipeline itself uses, with 10% caption dropout (zeroed
   attention mask = MusicGen's unconditional input) so classifier-free guidance works.

Same seed and flags give byte-identical weights (seeded generators, deterministic algorithms,
a fixed thread count).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import MusicgenForConditionalGeneration, PreTrainedTokenizerFast

from . import corpus
from .codec_train import fit_codebooks, optimizer_step, train_codec
from ..core.files import atomic_dir
from ..model.configs import tiny_config
from ..model.delay import delay_pattern_labels, forward_loss
from ..model.musicgen import TINY_DIR, encode_audio

MUSIC_WORDS = """a an the and with of in on at for to by from slow fast upbeat calm dark bright happy sad
soft loud warm cold gentle heavy light deep high low long short steady driving dreamy retro modern
music song track melody melodic harmony chord chords arpeggio arpeggios rhythm groove beat beats tempo
bass bassline drum drums kick snare hats hihat percussion piano keys synth synthesizer pad pads lead
guitar strings organ bell bells square saw sine triangle wave waves noise pulse chiptune ambient lofi
electronic acoustic jazz rock pop techno house classical cinematic game video 8-bit bit major minor
loop loops texture evolving sustained plucked notes note solo background energetic relaxing""".split()
HELD_OUT = 1000  # track indices >= this are validation tracks, never trained on


@dataclass(frozen=True)
class BuildConfig:
    """Sizes of the build. The defaults make the committed model (about 8 minutes on 2 CPU cores)."""

    seed: int = 0
    tracks_per_style: int = 8  # generic training tracks per style
    seconds: float = 20.0  # length of each training track
    codec_steps: int = 1200  # codec optimiser steps (batch 8 x 0.5 s)
    lm_steps: int = 300  # LM optimiser steps
    lm_batch: int = 8
    clip_seconds: float = 10.0  # LM training window (MusicGen trains on <= 15 s)
    text_dropout: float = 0.1
    lm_lr: float = 2e-3
    threads: int = 2

    @classmethod
    def quick(cls, seed: int = 0) -> "BuildConfig":
        """A seconds-scale build for tests: same code path, far fewer tracks and steps."""
        return cls(seed=seed, tracks_per_style=1, seconds=3.0, codec_steps=3, lm_steps=3, lm_batch=2, clip_seconds=2.0)


def build_tokenizer(extra_text: list[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer (T5's special ids: pad 0, eos 1, unk 2) over music words and the
    demo captions; unknown words map to <unk>, as a real T5 maps rare words to pieces."""
    words = list(MUSIC_WORDS)
    for text in extra_text:
        words += re.findall(r"[\w'-]+", text.lower())
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for w in words:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def style_audio(styles, seed: int, indices, seconds: float, sr: int) -> tuple[torch.Tensor, list[str]]:
    """Mono float32 audio (B, N) and captions of corpus tracks, synthesised in memory at `sr`."""
    tracks = [corpus.synth_track(s, seed, i, seconds, sr) for s in styles for i in indices]
    return torch.from_numpy(np.stack([t[0] for t in tracks])).float(), [t[1] for t in tracks]


def lm_batch(
    model, tokenizer, codes: torch.Tensor, captions: list[str], rows, starts, frames: int, drop: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """A training batch of `frames`-long code windows: delay-pattern labels, captions, and the
    caption dropped (attention mask zeroed: the unconditional input) where `drop` is True."""
    window = torch.stack([codes[r, :, s : s + frames] for r, s in zip(rows, starts)])
    labels = delay_pattern_labels(window, torch.ones(len(rows), frames, dtype=torch.bool), mask_padding=True)
    text = dict(tokenizer([captions[r] for r in rows], padding=True, return_tensors="pt"))
    if drop is not None:
        text["attention_mask"] = text["attention_mask"] * (~drop)[:, None].long()
    return {**text, "labels": labels}


def train_lm(
    model, tokenizer, codes: torch.Tensor, captions: list[str], cfg: BuildConfig, log_every: int = 0
) -> list[float]:
    """AdamW on text encoder + decoder (codec frozen) over random windows of the codes."""
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    dec = model.config.decoder
    frames = min(codes.shape[-1], int(cfg.clip_seconds * model.config.audio_encoder.frame_rate))
    params = [p for n, p in model.named_parameters() if not n.startswith("audio_encoder.")]
    opt = torch.optim.AdamW(params, lr=cfg.lm_lr, betas=(0.9, 0.95), weight_decay=0.01)
    warm = max(1, cfg.lm_steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * max(0.05, 0.5 * (1 + np.cos(np.pi * s / cfg.lm_steps)))
    )
    model.train()
    losses = []
    for step in range(cfg.lm_steps):
        rows = torch.randint(len(codes), (cfg.lm_batch,), generator=gen).tolist()
        starts = torch.randint(codes.shape[-1] - frames + 1, (cfg.lm_batch,), generator=gen).tolist()
        drop = torch.rand(cfg.lm_batch, generator=gen) < cfg.text_dropout
        batch = lm_batch(model, tokenizer, codes, captions, rows, starts, frames, drop)
        loss = forward_loss(model, batch, dec.pad_token_id, dec.decoder_start_token_id)
        optimizer_step(loss, opt, sched, params)
        losses.append(loss.item())
        if log_every and (step % log_every == 0 or step == cfg.lm_steps - 1):
            print(f"  lm step {step}/{cfg.lm_steps} loss {loss.item():.3f}", flush=True)
    model.eval()
    return losses


@torch.no_grad()
def lm_valid_loss(model, tokenizer, audio: torch.Tensor, captions: list[str]) -> float:
    """Teacher-forced loss (captions on) of whole clips (B, N), one clip at a time."""
    dec = model.config.decoder
    codes = encode_audio(model, audio)
    losses = [
        forward_loss(
            model,
            lm_batch(model, tokenizer, codes, captions, [i], [0], codes.shape[-1]),
            dec.pad_token_id,
            dec.decoder_start_token_id,
        ).item()
        for i in range(len(codes))
    ]
    return float(np.mean(losses))


def new_model(tokenizer, seed: int) -> MusicgenForConditionalGeneration:
    """A randomly initialised tiny MusicGen (seeded), the shape `tiny_config` defines."""
    torch.manual_seed(seed)
    model = MusicgenForConditionalGeneration(tiny_config(text_vocab_size=len(tokenizer))).eval()
    model.config.decoder.decoder_start_token_id = model.config.decoder.pad_token_id
    return model


def build_model(
    cfg: BuildConfig, log: bool = False
) -> tuple[MusicgenForConditionalGeneration, PreTrainedTokenizerFast, dict]:
    """Tokenizer + pre-trained model (in memory) and the build's training statistics."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(cfg.threads)  # float reductions may split differently with other counts
    torch.use_deterministic_algorithms(True)
    try:
        sr = tiny_config(text_vocab_size=8).audio_encoder.sampling_rate
        audio, captions = style_audio(corpus.GENERIC_STYLES, cfg.seed, range(cfg.tracks_per_style), cfg.seconds, sr)
        # Every style's caption text is in the vocabulary (target prompts must tokenize), never its audio.
        tokenizer = build_tokenizer(captions + [c for style in corpus.STYLES.values() for c in style.captions])
        model = new_model(tokenizer, cfg.seed)
        codec_losses = train_codec(model.audio_encoder, audio, cfg.codec_steps, cfg.seed, log_every=50 if log else 0)
        codes = torch.cat([encode_audio(model, chunk) for chunk in audio.split(8)])
        lm_losses = train_lm(model, tokenizer, codes, captions, cfg, log_every=25 if log else 0)
    finally:
        torch.use_deterministic_algorithms(deterministic)
        torch.set_num_threads(threads)
    stats = {
        "codec_loss": [codec_losses[0], codec_losses[-1]] if codec_losses else None,
        "lm_loss": [float(np.mean(lm_losses[:5])), float(np.mean(lm_losses[-5:]))] if lm_losses else None,
    }
    return model, tokenizer, stats


def save(model, tokenizer, out_dir: Path) -> str:
    """save_pretrained both into `out_dir` atomically; returns sha256 of model.safetensors."""
    with atomic_dir(out_dir) as tmp_out:
        model.save_pretrained(tmp_out)
        tokenizer.save_pretrained(tmp_out)
    return hashlib.sha256((Path(out_dir) / "model.safetensors").read_bytes()).hexdigest()


def build_tiny(out_dir: Path, cfg: BuildConfig = BuildConfig(), log: bool = False) -> dict:
    """Build, save, and return {sha256, seconds, params, stats}."""
    t0 = time.time()
    model, tokenizer, stats = build_model(cfg, log)
    digest = save(model, tokenizer, out_dir)
    info = {
        "sha256": digest,
        "seconds": round(time.time() - t0, 1),
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        **stats,
    }
    print(f"tiny MusicGen -> {out_dir}: {json.dumps(info)}", flush=True)
    return info


def report(out_dir: Path, cfg: BuildConfig, clips: int = 2, seconds: float = 10.0, gen_seconds: float = 10.0) -> dict:
    """Figures for the saved model (loaded through `from_pretrained`, like the pipeline does):
    codec round-trip vs random codecs of the same shape, LM valid loss, generated-audio metrics.

    Held-out generic clips are unseen track indices of the training styles; chiptune clips are
    the target style, which the build never saw (it only appears here, to show the gap)."""
    from transformers import AutoTokenizer

    from .codec_train import reconstruction_quality
    from ..metrics.clip import integrated_loudness, spectral_flatness
    from ..model.musicgen import generate

    model = MusicgenForConditionalGeneration.from_pretrained(out_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    sr = model.config.audio_encoder.sampling_rate
    held = range(HELD_OUT, HELD_OUT + clips)
    sets = {
        "generic_heldout": style_audio(corpus.GENERIC_STYLES, cfg.seed, held, seconds, sr),
        corpus.TARGET_STYLE: style_audio(
            [corpus.TARGET_STYLE], cfg.seed, range(HELD_OUT, HELD_OUT + 2 * clips), seconds, sr
        ),
    }
    train_audio = style_audio(corpus.GENERIC_STYLES, cfg.seed, range(cfg.tracks_per_style), cfg.seconds, sr)[0]
    random_model = new_model(tokenizer, cfg.seed)
    codecs = {"trained": model, "pure_random": random_model}
    out: dict = {"reconstruction": {}, "lm_valid_loss": {}, "generation": []}
    for name, (audio, _) in sets.items():
        rows = {k: reconstruction_quality(m, audio) for k, m in codecs.items()}
        out["reconstruction"][name] = rows
    fit_codebooks(random_model.audio_encoder, train_audio, cfg.seed)
    for name, (audio, captions) in sets.items():
        out["reconstruction"][name]["random_kmeans"] = reconstruction_quality(random_model, audio)
        out["lm_valid_loss"][name] = lm_valid_loss(model, tokenizer, audio, captions)
    prompts = [corpus.STYLES[s].captions[0] for s in (*corpus.GENERIC_STYLES, corpus.TARGET_STYLE)]
    frames = int(gen_seconds * model.config.audio_encoder.frame_rate)
    audio, _ = generate(model, tokenizer, prompts, frames, guidance_scale=3.0, temperature=1.0, top_k=250, seed=cfg.seed)
    for prompt, clip in zip(prompts, audio):
        out["generation"].append(
            {
                "prompt": prompt,
                "spectral_flatness": spectral_flatness(clip, sr),
                "loudness_lufs": integrated_loudness(clip, sr),
            }
        )
    return out


def bootstrap_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="musicgen_lora bootstrap", description=__doc__.splitlines()[0])
    defaults = BuildConfig()
    ap.add_argument("--out", type=Path, default=TINY_DIR)
    ap.add_argument("--seed", type=int, default=defaults.seed)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (tests, smoke runs); explicit flags still win")
    for field in ("tracks_per_style", "seconds", "codec_steps", "lm_steps", "lm_batch", "clip_seconds", "threads"):
        ap.add_argument("--" + field.replace("_", "-"), type=type(getattr(defaults, field)), default=None)
    ap.add_argument("--report", action="store_true", help="after saving, print reconstruction/LM/generation figures")
    args = ap.parse_args(argv)
    base = BuildConfig.quick(args.seed) if args.quick else BuildConfig(seed=args.seed)
    overrides = {k: v for k, v in vars(args).items() if k in asdict(base) and v is not None}
    cfg = BuildConfig(**{**asdict(base), **overrides})
    build_tiny(args.out, cfg, log=True)
    if args.report:
        print(json.dumps(report(args.out, cfg), indent=2))
    return 0
