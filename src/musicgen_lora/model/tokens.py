"""The token-shard format written by `encode` and read by `train` and `evaluate`.

`index.json` holds the codec facts, frames per clip and per-clip rows (id, split, caption,
shard, row); each `shard-*.safetensors` holds int16 `codes` (N, K, T) and a bool `frame_mask`
(N, T), True where a frame covers real audio. Stereo codes interleave the channels' codebooks
(`stereo.py`); a melody model's shards also hold each clip's float32 `chroma` (N, frames, 12).

Training reads a clip at a time (`TokenSplit`: a slice of the memory-mapped shard), so its memory
stays flat however many hours the corpus holds; evaluate loads a split whole (`load_tokens`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from ..core.errors import UserError

INDEX = "index.json"
SHARD_CLIPS = 256  # clips per shard


def shard_name(i: int) -> str:
    return f"shard-{i:05d}.safetensors"


def frame_mask(duration_s: float, frames: int, frame_rate: float) -> np.ndarray:
    """True for frames that overlap real audio (the first ceil(duration * frame_rate))."""
    return np.arange(frames) < int(np.ceil(duration_s * frame_rate - 1e-6))


def _shard_error(path: Path, exc: Exception) -> UserError:
    if isinstance(exc, FileNotFoundError):
        return UserError(f"{path}: token shard missing; run `dvc repro encode` (or `dvc checkout data/tokens`)")
    # safetensors raises its own error type for truncated or damaged files
    return UserError(
        f"{path}: damaged token shard ({str(exc).splitlines()[0]}); run `dvc repro -f encode` "
        f"(or `dvc checkout data/tokens`)"
    )


def _check_names(path: Path, names) -> None:
    if set(names) - {"chroma"} != {"codes", "frame_mask"}:
        raise UserError(f"{path}: not a token shard (tensors {sorted(names)}); run `dvc repro -f encode`")


def _read_shard(path: Path) -> dict[str, torch.Tensor]:
    try:
        shard = load_file(str(path))
    except Exception as exc:
        raise _shard_error(path, exc) from None
    _check_names(path, shard)
    return shard


def read_index(tokens_dir: Path) -> dict:
    try:
        index = json.loads((tokens_dir / INDEX).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{tokens_dir / INDEX}: unreadable ({type(exc).__name__}); run `dvc repro encode`") from None
    missing = sorted({"codec", "frames", "shards", "clips"} - set(index))
    if missing:
        raise UserError(f"{tokens_dir / INDEX}: not a token index (no {', '.join(missing)}); run `dvc repro -f encode`")
    return index


class TokenSplit:
    """One split's clips, each read from its shard when asked for (a slice of the memory-mapped
    file, opened and closed per read so no mapping stays resident). Every shard's header is
    checked up front: a missing or damaged shard stops the stage before the model loads."""

    def __init__(self, tokens_dir: Path, split: str):
        self.dir, self.index = tokens_dir, read_index(tokens_dir)
        self.rows = [r for r in self.index["clips"] if r["split"] == split]
        self.captions = [r["caption"] for r in self.rows]
        self.has_chroma = True
        for name in self.index["shards"]:
            try:
                with safe_open(str(tokens_dir / name), "pt") as shard:
                    names = list(shard.keys())
            except Exception as exc:
                raise _shard_error(tokens_dir / name, exc) from None
            _check_names(tokens_dir / name, names)
            self.has_chroma &= "chroma" in names  # melody models' shards also hold each clip's chroma

    def __len__(self) -> int:
        return len(self.rows)

    def clip(self, i: int) -> dict[str, torch.Tensor]:
        """Clip i's codes (K, T) long and frame_mask (T,) bool, and its chroma where stored."""
        row = self.rows[i]
        # a slice is a view of the whole mapped tensor: copied out, so nothing keeps the mapping alive
        wanted = {"codes": torch.long, "frame_mask": torch.bool} | ({"chroma": torch.float32} if self.has_chroma else {})
        with safe_open(str(self.dir / row["shard"]), "pt") as shard:
            item = {name: shard.get_slice(name)[row["row"]].to(dtype, copy=True) for name, dtype in wanted.items()}
        return item


def load_tokens(tokens_dir: Path, split: str) -> tuple[dict, torch.Tensor, torch.Tensor, list[str]]:
    """(index, codes (N, K, T) long, frame_mask (N, T) bool, captions) for one split, loaded once."""
    index = read_index(tokens_dir)
    shards = {name: _read_shard(tokens_dir / name) for name in index["shards"]}
    rows = [r for r in index["clips"] if r["split"] == split]
    if not rows:
        return (
            index,
            torch.empty(0, index["codec"]["num_codebooks"], index["frames"], dtype=torch.long),
            torch.empty(0, index["frames"], dtype=torch.bool),
            [],
        )
    codes = torch.stack([shards[r["shard"]]["codes"][r["row"]] for r in rows]).long()
    mask = torch.stack([shards[r["shard"]]["frame_mask"][r["row"]] for r in rows]).bool()
    return index, codes, mask, [r["caption"] for r in rows]


def load_chroma(tokens_dir: Path, split: str) -> torch.Tensor | None:
    """Each clip's chroma (N, frames, 12) for one split, or None where encode stored none (every
    model but melody)."""
    index = read_index(tokens_dir)
    shards = {name: _read_shard(tokens_dir / name) for name in index["shards"]}
    if not all("chroma" in s for s in shards.values()):
        return None
    rows = [r for r in index["clips"] if r["split"] == split]
    return torch.stack([shards[r["shard"]]["chroma"][r["row"]] for r in rows]).float() if rows else None
