"""Stage `segment`: cut recordings in data/raw into fixed-length mono clips with captions.

Clips are `clip_seconds` long (15 s: MusicGen is trained and generates at this length, and
the trials showed that padding 15 s of music to 30 s teaches silence). A final shorter piece
is kept if it lasts at least `min_clip_seconds`, zero-padded to the clip length, and its
padding fraction is recorded so encode can mask those frames. The train/valid split is by
source file, seeded, so no recording has clips on both sides.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..core import params as P
from ..core.errors import UserError
from ..core.args import stage_paths
from ..core.audio import AudioError, load_mono, write_wav
from ..core.files import atomic_dir, write_jsonl
from ..metrics.clip import integrated_loudness
from ..model.musicgen import codec_info, load_config

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff"}
MANIFEST = "manifest.jsonl"
SKIPPED = "skipped.jsonl"


@dataclass(frozen=True)
class ClipRow:
    """One line of `manifest.jsonl`."""

    id: str  # clip name, also the file stem under clips/
    file: str  # path relative to the segments directory
    source: str  # recording, relative to data/raw
    offset_s: float  # where the clip starts in the source
    duration_s: float  # seconds of real audio (the rest is padding)
    padding_fraction: float  # share of the clip that is zero padding
    caption: str
    split: str  # "train" or "valid"


@dataclass(frozen=True)
class SkipRow:
    """One line of `skipped.jsonl`: a source file (or a clip of it) left out, and why."""

    source: str
    reason: str


def find_sources(raw_dir: Path) -> tuple[list[Path], list[SkipRow]]:
    """Audio files under raw_dir (sorted, recursive) and captions with no audio beside them."""
    files = sorted(p for p in raw_dir.rglob("*") if p.is_file() and not p.name.startswith("."))
    audio = [p for p in files if p.suffix.lower() in AUDIO_SUFFIXES]
    stems = {p.with_suffix("") for p in audio}
    orphans = [SkipRow(p.relative_to(raw_dir).as_posix(), "caption .txt with no audio file beside it")
               for p in files if p.suffix == ".txt" and p.with_suffix("") not in stems]
    return audio, orphans


def read_caption(audio_path: Path, default: str) -> str:
    """The same-named .txt (UTF-8, whitespace collapsed) or the default caption."""
    txt = audio_path.with_suffix(".txt")
    if not txt.exists():
        return default
    caption = " ".join(txt.read_text(encoding="utf-8", errors="replace").split())
    return caption or default


def split_sources(sources: list[str], valid_fraction: float, seed: int) -> dict[str, str]:
    """Seeded split by source file: at least one valid file whenever there are two or more."""
    order = np.random.default_rng(seed).permutation(len(sources))
    n_valid = 0 if valid_fraction == 0 or len(sources) < 2 else max(1, round(valid_fraction * len(sources)))
    valid = {sources[i] for i in order[:n_valid]}
    return {s: ("valid" if s in valid else "train") for s in sources}


def cut(audio: np.ndarray, sr: int, clip_s: float, min_s: float) -> list[tuple[int, np.ndarray, int]]:
    """(offset in samples, clip padded to clip_s, real samples) for each clip of `audio`."""
    n = int(round(clip_s * sr))
    out = []
    for start in range(0, len(audio), n):
        piece = audio[start : start + n]
        if len(piece) < min_s * sr:
            break
        out.append((start, np.pad(piece, (0, n - len(piece))), len(piece)))
    return out


def run(raw_dir: Path, out_dir: Path, seg: P.SegmentParams, sample_rate: int) -> dict:
    sources, skipped = find_sources(raw_dir)
    rel = [p.relative_to(raw_dir).as_posix() for p in sources]
    splits = split_sources(rel, seg.valid_fraction, seg.seed)
    rows: list[ClipRow] = []
    dropped: Counter = Counter()
    with atomic_dir(out_dir) as tmp:
        (tmp / "clips").mkdir()
        for path, source in tqdm(list(zip(sources, rel)), desc="segment", unit="file"):
            try:
                audio = load_mono(path, sample_rate)
            except AudioError as exc:
                skipped.append(SkipRow(source, str(exc).removeprefix(f"{path}: ")))
                continue
            clips = cut(audio, sample_rate, seg.clip_seconds, seg.min_clip_seconds)
            if not clips:
                skipped.append(SkipRow(source, f"shorter than min_clip_seconds ({len(audio) / sample_rate:.2f} s)"))
                continue
            caption = read_caption(path, seg.default_caption)
            for start, clip, real in clips:
                if integrated_loudness(clip[:real], sample_rate) < seg.min_loudness_lufs:
                    dropped["quiet"] += 1
                    continue
                cid = f"{len(rows):06d}"
                write_wav(tmp / "clips" / f"{cid}.wav", clip, sample_rate)
                rows.append(ClipRow(cid, f"clips/{cid}.wav", source, round(start / sample_rate, 4),
                                    round(real / sample_rate, 4), round(1 - real / len(clip), 4), caption,
                                    splits[source]))
        if not rows:
            raise UserError(f"segment: no usable clip in {raw_dir} ({len(skipped)} files skipped, "
                             f"{dropped['quiet']} clips below {seg.min_loudness_lufs} LUFS); see the reasons above")
        write_jsonl(tmp / MANIFEST, (asdict(r) for r in rows))
        write_jsonl(tmp / SKIPPED, (asdict(s) for s in skipped))
    counts = Counter(r.split for r in rows)
    summary = {"clips": len(rows), "train": counts["train"], "valid": counts["valid"], "sources": len(sources),
               "skipped_files": len(skipped), "dropped_quiet_clips": dropped["quiet"]}
    print(f"segment: {len(rows)} clips ({counts['train']} train / {counts['valid']} valid) from "
          f"{len(sources)} files; skipped {len(skipped)} (see {out_dir / SKIPPED}); "
          f"dropped {dropped['quiet']} quiet clips")
    return summary


def main(argv: list[str]) -> int:
    args = stage_paths("segment", __doc__, argv, "--raw", "--out")
    model, seg = P.load("model", "segment")
    if not args.raw.is_dir():
        raise UserError(f"segment: {args.raw} is not a directory (run `make data` or point --raw at your music)")
    run(args.raw, args.out, seg, codec_info(load_config(model)).sample_rate)
    return 0
