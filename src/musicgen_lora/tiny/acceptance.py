"""What the mini model can do, measured on clips nobody tuned for (its card's figures).

codec: held-out compositions of every family (the pretraining families and the held-out ones),
through encode and decode; musicnn hears the original and the round trip: does the top tag
survive, and how close are the embeddings (cosine)? The issue's bar: the top tag kept in >= 80%
of clips, cosine >= 0.9 on average.

`python -m musicgen_lora mini-report --codec build/mini/codec-weights.safetensors` measures a
codec checkpoint while the build is still running.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_model

from . import scores
from ..metrics.musicnn import Tagger
from ..metrics.tagger_metrics import TAGGER, clip_profile
from ..model.musicgen import decode_codes, encode_audio


def heldout_clips(seed: int, per_family: int, seconds: float) -> dict[str, list[np.ndarray]]:
    """`per_family` rendered clips of held-out pieces for every family."""
    out = {}
    for family in scores.FAMILIES:
        tracks = scores.heldout_tracks(seed + 7, family, per_family, seconds)
        out[family] = [scores.render(t) for t in tracks]
    return out


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


@torch.no_grad()
def codec_round_trip(model, clips: dict[str, list[np.ndarray]], tagger: Tagger) -> dict:
    """Per family: share of clips whose musicnn top tag survives the codec, mean embedding cosine,
    and the tags heard before and after (first clip)."""
    rows = {}
    for family, audio in clips.items():
        kept, cos, heard = [], [], []
        for clip in audio:
            x = torch.from_numpy(clip)[None]
            back = decode_codes(model, encode_audio(model, x))[0, : len(clip)].float().numpy()
            (t0, e0), (t1, e1) = clip_profile(tagger, clip, scores.SR), clip_profile(tagger, back, scores.SR)
            kept.append(int(np.argmax(t0) == np.argmax(t1)))
            cos.append(cosine(e0, e1))
            heard.append((tagger.tags[int(np.argmax(t0))], tagger.tags[int(np.argmax(t1))]))
        rows[family] = {
            "top_tag_kept": float(np.mean(kept)),
            "embedding_cosine": float(np.mean(cos)),
            "clips": len(audio),
            "heard": heard,
            "held_out": family in scores.HELD_OUT,
        }
    allkept = [r["top_tag_kept"] for r in rows.values()]
    return {
        "families": rows,
        "top_tag_kept": float(np.mean(allkept)),
        "embedding_cosine": float(np.mean([r["embedding_cosine"] for r in rows.values()])),
    }


def main(argv: list[str]) -> int:
    from transformers import MusicgenForConditionalGeneration

    from ..model.configs import mini_config
    from .bootstrap import build_tokenizer
    from .mini import all_captions

    ap = argparse.ArgumentParser(prog="musicgen_lora mini-report", description=__doc__.splitlines()[0])
    ap.add_argument("--codec", type=Path, required=True, help="a codec checkpoint (build/mini/codec-weights.safetensors)")
    ap.add_argument("--clips", type=int, default=4, help="held-out clips per family")
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    model = MusicgenForConditionalGeneration(mini_config(len(build_tokenizer(all_captions())))).eval()
    load_model(model.audio_encoder, args.codec, strict=True)
    report = codec_round_trip(model, heldout_clips(0, args.clips, args.seconds), Tagger.load(TAGGER))
    for family, row in report["families"].items():
        print(
            f"{family:12s} {'held out' if row['held_out'] else 'pretrain':8s} top tag kept {row['top_tag_kept']:.0%}  "
            f"cosine {row['embedding_cosine']:.3f}  e.g. {row['heard'][0][0]} -> {row['heard'][0][1]}"
        )
    print(json.dumps({k: v for k, v in report.items() if k != "families"}))
    return 0
