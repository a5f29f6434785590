"""Every MusicGen family as a shape-true tiny random checkpoint, and the pipeline's own path for
one: segment -> encode -> one optimizer step -> evaluate base and adapter (generation), in-process.

Used by the family tests on the CPU (tests/model/test_families.py) and by `make gpu-check` on a
GPU: the released classes, 32 kHz EnCodec, 4 codebooks of 2048 per channel, tiny widths.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from transformers import MusicgenMelodyFeatureExtractor

from musicgen_lora.core import params as P
from musicgen_lora.model import configs, families
from musicgen_lora.model.musicgen import codec_info, load_config
from musicgen_lora.stages import encode, evaluate, segment, train

SR = 32000
CAPTION = "bright chiptune melody"
# tiny versions of the released layouts: (decoder width, layers, stereo, melody)
FAMILIES = {
    "small": (32, 2, False, False),  # musicgen-small: 24 layers x 1024
    "large": (64, 4, False, False),  # musicgen-large: 48 layers x 2048 (medium: 48 x 1536)
    "stereo": (32, 2, True, False),  # musicgen-stereo-*: 8 codebooks, audio_channels 2
    "melody": (32, 2, False, True),  # musicgen-melody: chroma conditioning, no cross-attention
}
RANK = 4


def build(root: Path, hidden: int, layers: int, is_stereo: bool, is_melody: bool) -> Path:
    """A random checkpoint of the family's layout at tiny widths, saved as the hub would serve it."""
    from musicgen_lora.tiny.bootstrap import build_tokenizer

    tokenizer = build_tokenizer([CAPTION, "calm piano", "music"])
    config = configs.tiny_family_config(hidden, layers, len(tokenizer), is_stereo, is_melody)
    torch.manual_seed(0)
    model = families.model_class(config)(config)
    with torch.no_grad():  # non-degenerate codebooks (random init leaves them all zero)
        for layer in model.audio_encoder.quantizer.layers:
            layer.codebook.embed.normal_()
    model.save_pretrained(root)
    tokenizer.save_pretrained(root)
    if is_melody:
        MusicgenMelodyFeatureExtractor(sampling_rate=SR).save_pretrained(root)
    return root


def write_corpus(raw: Path) -> Path:
    """Three 6.5 s recordings (two 3 s clips each): a stereo one (a different note per channel)
    and two mono ones, each with its caption."""
    raw.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(6.5 * SR)) / SR
    for i, f in enumerate([220.0, 330.0, 440.0]):
        x = 0.3 * np.sin(2 * np.pi * f * t) * (1 + 0.5 * np.sin(2 * np.pi * 2 * t))
        sf.write(raw / f"s{i}.wav", np.stack([x, 0.3 * np.sin(3 * np.pi * f * t)], 1) if i == 0 else x, SR)
        (raw / f"s{i}.txt").write_text(CAPTION)
    return raw


def mp(path, device: str = "cpu") -> P.ModelParams:
    return P.project_params("model", name=str(path), device=device)


def run_family(path, corpus, root, device: str = "cpu"):
    """segment, encode, train (one optimizer step), evaluate base and the trained adapter, in-process."""
    params = mp(path, device)
    config = load_config(params)
    segment.run(
        corpus,
        root / "seg",
        P.project_params("segment", clip_seconds=3.0, min_clip_seconds=1.0, valid_fraction=0.34, seed=0),
        codec_info(config).sample_rate,
        families.audio_channels(config),
    )
    index = encode.run(root / "seg", root / "tok", P.EncodeParams(pad_to_seconds=None, batch_size=8), params)
    n_train = sum(r["split"] == "train" for r in index["clips"])
    tp = P.project_params(
        "train", rank=RANK, alpha=8.0, epochs=1, grad_accum=n_train, checkpoint_every=50, sample_prompts=[]
    )
    gp = P.project_params("generation")
    train.run(root / "tok", root / "best", root / "final", root / "metrics", tp, params, gp)
    ep = P.project_params(
        "evaluate",
        prompts=[CAPTION, "calm piano"],
        off_style_prompts=[],
        samples_per_prompt=1,
        seconds=2.5,
        batch_size=2,
        cpu_prepack=False,
        half_precision=device != "cpu",
    )
    files = evaluate.Files(
        root / "tok", root / "eval/base_model", root / "eval/base.jsonl", root / "eval/reference", segments=root / "seg"
    )
    evaluate.run_base(files, params, ep, gp)
    evaluate.run_adapters(
        replace(
            files,
            out=root / "eval",
            results=root / "eval/results.jsonl",
            set_metrics=root / "eval/set_metrics.json",
            adapters={"best": root / "best"},
        ),
        params,
        ep,
        gp,
    )
    return root
