"""Stage `encode`: turn every clip into EnCodec codes once, batched, with per-frame padding masks.

Training then reads tokens from safetensors shards instead of running the codec on every
step. Clips are padded to `pad_to_seconds` here (null: the clip length); the frame mask
records which frames hold real audio, so train can leave padding out of the loss.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from . import params as P
from .io import atomic_dir, inside, read_jsonl, write_json
from .musicgen import codec_info, encode_audio, load_model
from .segment import MANIFEST

INDEX = "index.json"
SHARD_CLIPS = 256


def frame_mask(duration_s: float, frames: int, frame_rate: float) -> np.ndarray:
    """True for frames that overlap real audio (the first ceil(duration * frame_rate))."""
    return np.arange(frames) < int(np.ceil(duration_s * frame_rate - 1e-6))


def run(seg_dir: Path, out_dir: Path, enc: P.EncodeParams, model_params: P.ModelParams) -> dict:
    clips = read_jsonl(seg_dir / MANIFEST)
    model, _ = load_model(model_params)
    info = codec_info(model.config)
    clip_samples = sf.info(str(inside(seg_dir, clips[0]["file"]))).frames
    clip_s = clip_samples / info.sample_rate
    pad_s = enc.pad_to_seconds if enc.pad_to_seconds is not None else clip_s
    if pad_s + 1e-6 < clip_s:
        raise P.ParamsError(f"params.yaml: encode.pad_to_seconds must be >= the clip length {clip_s:g} s "
                            f"(got {enc.pad_to_seconds})")
    total = int(round(pad_s * info.sample_rate))
    silence = encode_audio(model, torch.zeros(1, total))[0]  # (K, T): what digital silence encodes to
    frames = silence.shape[-1]
    index_rows, shard_names = [], []
    with atomic_dir(out_dir) as tmp:
        for s0 in tqdm(range(0, len(clips), SHARD_CLIPS), desc="encode shards", unit="shard"):
            shard = clips[s0 : s0 + SHARD_CLIPS]
            codes, masks = [], []
            for b0 in range(0, len(shard), enc.batch_size):
                batch = shard[b0 : b0 + enc.batch_size]
                audio = np.zeros((len(batch), total), dtype=np.float32)
                for i, row in enumerate(batch):
                    data, _ = sf.read(str(inside(seg_dir, row["file"])), dtype="float32")
                    audio[i, : len(data)] = data[:total]
                codes.append(encode_audio(model, torch.from_numpy(audio)).to(torch.int16))
                masks += [frame_mask(r["duration_s"], frames, info.frame_rate) for r in batch]
            name = f"shard-{len(shard_names):05d}.safetensors"
            save_file({"codes": torch.cat(codes), "frame_mask": torch.from_numpy(np.stack(masks))}, str(tmp / name))
            shard_names.append(name)
            index_rows += [{"id": r["id"], "split": r["split"], "caption": r["caption"], "shard": name, "row": i}
                           for i, r in enumerate(shard)]
        index = {"codec": asdict(info), "frames": frames, "clip_seconds": clip_s, "pad_to_seconds": pad_s,
                 "silence_codes": [int(torch.mode(c).values) for c in silence], "shards": shard_names,
                 "clips": index_rows}
        write_json(tmp / INDEX, index)
    print(f"encode: {len(clips)} clips -> {frames} frames x {info.num_codebooks} codebooks "
          f"(padded to {pad_s:g} s) in {len(shard_names)} shards")
    return index


def load_tokens(tokens_dir: Path, split: str) -> tuple[dict, torch.Tensor, torch.Tensor, list[str]]:
    """(index, codes (N, K, T) long, frame_mask (N, T) bool, captions) for one split, loaded once."""
    index = json.loads((tokens_dir / INDEX).read_text(encoding="utf-8"))
    shards = {name: load_file(str(tokens_dir / name)) for name in index["shards"]}
    rows = [r for r in index["clips"] if r["split"] == split]
    if not rows:
        return index, torch.empty(0, index["codec"]["num_codebooks"], index["frames"], dtype=torch.long), \
            torch.empty(0, index["frames"], dtype=torch.bool), []
    codes = torch.stack([shards[r["shard"]]["codes"][r["row"]] for r in rows]).long()
    mask = torch.stack([shards[r["shard"]]["frame_mask"][r["row"]] for r in rows]).bool()
    return index, codes, mask, [r["caption"] for r in rows]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="musicgen_lora encode", description=__doc__)
    ap.add_argument("--segments", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    model, enc = P.load("model", "encode")
    run(args.segments, args.out, enc, model)
    return 0
