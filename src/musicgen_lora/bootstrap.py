"""Build the embedded `tiny` MusicGen (`make tiny`): deterministic, seeded, saved with `save_pretrained`.

Randomly initialised EnCodec codebooks are all zeros, so every clip would encode to code 0
and nothing could be learned. The codebooks are therefore fitted by residual k-means on the
encoder's latents of the *generic* demo styles (never the target style the demo fine-tunes on).
"""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import MusicgenForConditionalGeneration, PreTrainedTokenizerFast

from . import corpus
from .audio import load_mono
from .io import atomic_dir
from .musicgen import TINY_DIR, tiny_config

MUSIC_WORDS = """a an the and with of in on at for to by from slow fast upbeat calm dark bright happy sad
soft loud warm cold gentle heavy light deep high low long short steady driving dreamy retro modern
music song track melody melodic harmony chord chords arpeggio arpeggios rhythm groove beat beats tempo
bass bassline drum drums kick snare hats hihat percussion piano keys synth synthesizer pad pads lead
guitar strings organ bell bells square saw sine triangle wave waves noise pulse chiptune ambient lofi
electronic acoustic jazz rock pop techno house classical cinematic game video 8-bit bit major minor
loop loops texture evolving sustained plucked notes note solo background energetic relaxing""".split()


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


def _kmeans(x: torch.Tensor, k: int, iters: int, gen: torch.Generator) -> torch.Tensor:
    """Lloyd's k-means on rows of x; empty clusters are re-seeded from random points."""
    centers = x[torch.randperm(len(x), generator=gen)[:k]].clone()
    for _ in range(iters):
        assign = torch.cdist(x, centers).argmin(1)
        sums = torch.zeros_like(centers).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).float()
        empty = counts == 0
        centers = sums / counts.clamp(min=1)[:, None]
        centers[empty] = x[torch.randint(len(x), (int(empty.sum()),), generator=gen)]
    return centers


@torch.no_grad()
def fit_codebooks(model, audio: torch.Tensor, seed: int, iters: int = 15) -> None:
    """Residual k-means: codebook q is fitted on what codebooks 0..q-1 left unexplained."""
    gen = torch.Generator().manual_seed(seed)
    latents = model.audio_encoder.encoder(audio[:, None, :])  # (B, D, T)
    residual = latents.transpose(1, 2).reshape(-1, latents.shape[1])
    for layer in model.audio_encoder.quantizer.layers:
        cb = layer.codebook
        centers = _kmeans(residual, cb.embed.shape[0], iters, gen)
        cb.embed.copy_(centers)
        cb.embed_avg.copy_(centers)
        cb.cluster_size.fill_(1.0)
        cb.inited.fill_(True)
        residual = residual - centers[torch.cdist(residual, centers).argmin(1)]


def build_tiny(out_dir: Path, seed: int, tracks_per_style: int, seconds: float) -> None:
    """Write the generic corpus to a temp dir, build tokenizer + model, fit codebooks, save."""
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        paths = corpus.write_corpus(Path(tmp), corpus.GENERIC_STYLES, tracks_per_style, seed,
                                    min_seconds=seconds, max_seconds=seconds)
        captions = [p.with_suffix(".txt").read_text(encoding="utf-8") for p in paths]
        # Target-style words are in the vocabulary (prompts must tokenize), never its audio.
        tokenizer = build_tokenizer(captions + [corpus.synth_track(corpus.TARGET_STYLE, seed, i, 1.0, 16000)[1]
                                                for i in range(4)])
        config = tiny_config(text_vocab_size=len(tokenizer))
        model = MusicgenForConditionalGeneration(config).eval()
        sr = config.audio_encoder.sampling_rate
        audio = torch.from_numpy(np.stack([load_mono(p, sr)[: int(seconds * sr)] for p in paths])).float()
    fit_codebooks(model, audio, seed)
    with atomic_dir(out_dir) as tmp_out:
        model.save_pretrained(tmp_out)
        tokenizer.save_pretrained(tmp_out)
    print(f"tiny MusicGen: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M params -> {out_dir}")


def bootstrap_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="musicgen_lora bootstrap", description=__doc__)
    ap.add_argument("--out", type=Path, default=TINY_DIR)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tracks-per-style", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args(argv)
    build_tiny(args.out, args.seed, args.tracks_per_style, args.seconds)
    return 0

