"""Stage `encode`: turn every clip into EnCodec codes once, batched, with per-frame padding masks.

Training then reads tokens from safetensors shards instead of running the codec on every
step. Clips are padded to `pad_to_seconds` here (null: the clip length); the frame mask
records which frames hold real audio, so train can leave padding out of the loss.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from tqdm import tqdm

from ..core import params as P
from ..core.args import stage_paths
from ..core.tracked import verify_tracked
from ..core.audio import as_channels, read_audio
from ..core.artifacts import MANIFEST, read_manifest
from ..core.errors import UserError
from ..core.files import atomic_dir, inside, write_json
from ..model.families import audio_channels, is_melody
from ..model.melody import chroma
from ..model.musicgen import codec_info, encode_audio, load_model, resolve_device
from ..model.tokens import INDEX, SHARD_CLIPS, frame_mask, shard_name


def run(seg_dir: Path, out_dir: Path, enc: P.EncodeParams, model_params: P.ModelParams) -> dict:
    clips = read_manifest(seg_dir)
    files = [inside(seg_dir, row.file) for row in clips]  # a bad manifest fails before the model loads
    missing = next((f for f in files if not f.is_file()), None)
    if missing:
        raise UserError(f"{missing}: listed in {seg_dir / MANIFEST} but not on disk; regenerate it (`dvc repro segment`)")
    model, _ = load_model(model_params, resolve_device(model_params), codec_only=True)
    info = codec_info(model.config)
    clip_s = len(read_audio(files[0])[0]) / info.sample_rate
    pad_s = enc.pad_to_seconds if enc.pad_to_seconds is not None else clip_s
    if pad_s + 1e-6 < clip_s:
        raise P.ParamsError(
            f"params.yaml: encode.pad_to_seconds must be >= the clip length {clip_s:g} s (got {enc.pad_to_seconds})"
        )
    total = int(round(pad_s * info.sample_rate))
    silence = encode_audio(model, torch.zeros(1, total))[0]  # (K, T): what digital silence encodes to
    frames = silence.shape[-1]
    index_rows, shard_names = [], []
    with atomic_dir(out_dir) as tmp, tqdm(total=len(clips), desc="encode", unit="clip") as progress:
        for s0 in range(0, len(clips), SHARD_CLIPS):
            shard, name = clips[s0 : s0 + SHARD_CLIPS], shard_name(len(shard_names))
            save_file(encode_shard(model, shard, files[s0 : s0 + len(shard)], enc, total, frames, progress), str(tmp / name))
            shard_names.append(name)
            index_rows += [
                {"id": r.id, "split": r.split, "caption": r.caption, "shard": name, "row": i} for i, r in enumerate(shard)
            ]
        index = {
            "codec": asdict(info),
            "frames": frames,
            "clip_seconds": clip_s,
            "pad_to_seconds": pad_s,
            "silence_codes": [int(torch.mode(c).values) for c in silence],
            "shards": shard_names,
            "clips": index_rows,
        }
        write_json(tmp / INDEX, index)
    print(
        f"encode: {len(clips)} clips -> {frames} frames x {info.num_codebooks} codebooks "
        f"(padded to {pad_s:g} s) in {len(shard_names)} shard{'s' if len(shard_names) != 1 else ''}"
    )
    return index


def encode_shard(
    model, shard: list, files: list[Path], enc: P.EncodeParams, total: int, frames: int, progress
) -> dict[str, torch.Tensor]:
    """One shard's tensors: each clip's codes (int16), its real-frame mask and (melody models) its
    chroma, encoded `enc.batch_size` clips at a time, each padded with zeros to `total` samples."""
    info, channels, melody = codec_info(model.config), audio_channels(model.config), is_melody(model.config)
    codes, masks, chromas = [], [], []
    for b0 in range(0, len(shard), enc.batch_size):
        batch = shard[b0 : b0 + enc.batch_size]
        audio = np.zeros((len(batch), channels, total), dtype=np.float32)
        for i, file in enumerate(files[b0 : b0 + len(batch)]):
            data = as_channels(read_audio(file)[0], channels)  # (channels, N)
            audio[i, :, : data.shape[1]] = data[:, :total]
        codes.append(encode_audio(model, torch.from_numpy(audio)).to(torch.int16))
        if melody:  # each clip's chroma conditions its own training (model/melody.py)
            chromas.append(chroma(model.chroma_extractor, audio.mean(axis=1), info.sample_rate))
        progress.update(len(batch))
        masks += [frame_mask(r.duration_s, frames, info.frame_rate) for r in batch]
    tensors = {"codes": torch.cat(codes), "frame_mask": torch.from_numpy(np.stack(masks))}
    if melody:
        tensors["chroma"] = torch.cat(chromas)
    return tensors


def main(argv: list[str]) -> int:
    args = stage_paths("encode", __doc__, argv, "--segments", "--out")
    model, enc = P.load("model", "encode")
    verify_tracked(args.segments)  # a corrupt cache object checked out reaches no token
    run(args.segments, args.out, enc, model)
    return 0
