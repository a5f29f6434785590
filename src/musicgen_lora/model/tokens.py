"""The token-shard format written by `encode` and read by `train` and `evaluate`.

`index.json` holds the codec facts, frames per clip and per-clip rows (id, split, caption,
shard, row); each `shard-*.safetensors` holds int16 `codes` (N, K, T) and a bool `frame_mask`
(N, T), True where a frame covers real audio. Stereo codes interleave the channels' codebooks
(`stereo.py`); a melody model's shards also hold each clip's float32 `chroma` (N, frames, 12).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from ..core.errors import UserError

INDEX = "index.json"
SHARD_CLIPS = 256  # clips per shard


def shard_name(i: int) -> str:
    return f"shard-{i:05d}.safetensors"


def frame_mask(duration_s: float, frames: int, frame_rate: float) -> np.ndarray:
    """True for frames that overlap real audio (the first ceil(duration * frame_rate))."""
    return np.arange(frames) < int(np.ceil(duration_s * frame_rate - 1e-6))


def _read_shard(path: Path) -> dict[str, torch.Tensor]:
    try:
        shard = load_file(str(path))
    except FileNotFoundError:
        raise UserError(f"{path}: token shard missing; run `dvc repro encode` (or `dvc checkout data/tokens`)") from None
    except Exception as exc:  # safetensors raises its own error type for truncated or damaged files
        raise UserError(f"{path}: damaged token shard ({str(exc).splitlines()[0]}); run `dvc repro -f encode` "
                        f"(or `dvc checkout data/tokens`)") from None
    if set(shard) - {"chroma"} != {"codes", "frame_mask"}:
        raise UserError(f"{path}: not a token shard (tensors {sorted(shard)}); run `dvc repro -f encode`")
    return shard


def load_tokens(tokens_dir: Path, split: str) -> tuple[dict, torch.Tensor, torch.Tensor, list[str]]:
    """(index, codes (N, K, T) long, frame_mask (N, T) bool, captions) for one split, loaded once."""
    try:
        index = json.loads((tokens_dir / INDEX).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{tokens_dir / INDEX}: unreadable ({type(exc).__name__}); run `dvc repro encode`") from None
    missing = sorted({"codec", "frames", "shards", "clips"} - set(index))
    if missing:
        raise UserError(f"{tokens_dir / INDEX}: not a token index (no {', '.join(missing)}); run `dvc repro -f encode`")
    shards = {name: _read_shard(tokens_dir / name) for name in index["shards"]}
    rows = [r for r in index["clips"] if r["split"] == split]
    if not rows:
        return index, torch.empty(0, index["codec"]["num_codebooks"], index["frames"], dtype=torch.long), \
            torch.empty(0, index["frames"], dtype=torch.bool), []
    codes = torch.stack([shards[r["shard"]]["codes"][r["row"]] for r in rows]).long()
    mask = torch.stack([shards[r["shard"]]["frame_mask"][r["row"]] for r in rows]).bool()
    return index, codes, mask, [r["caption"] for r in rows]


def load_chroma(tokens_dir: Path, split: str) -> torch.Tensor | None:
    """Each clip's chroma (N, frames, 12) for one split, or None where encode stored none (every
    model but melody)."""
    index = json.loads((tokens_dir / INDEX).read_text(encoding="utf-8"))
    shards = {name: _read_shard(tokens_dir / name) for name in index["shards"]}
    if not all("chroma" in s for s in shards.values()):
        return None
    rows = [r for r in index["clips"] if r["split"] == split]
    return torch.stack([shards[r["shard"]]["chroma"][r["row"]] for r in rows]).float() if rows else None
