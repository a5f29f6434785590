"""Stage `segment`: cut recordings in data/raw into fixed-length mono clips with captions.

Clips are `clip_seconds` long (15 s: MusicGen is trained and generates at this length, and
the trials showed that padding 15 s of music to 30 s teaches silence). A final shorter piece
is kept if it lasts at least `min_clip_seconds`, zero-padded to the clip length, and its
padding fraction is recorded so encode can mask those frames. The train/valid split is by
recording (a hash of its path and the seed places it) and holds out `valid_fraction` of the audio
duration, so no recording has clips on both sides and an added file reshuffles nothing.

Captions (`segment.captions`): a recording's same-named .txt ("sidecar"), or, for a recording
without one ("sidecar_or_tags") or for every recording ("tags"), its top musicnn tags
("techno, electronic, fast"), computed once on the whole recording at 16 kHz: users rarely
caption their music, and a tag caption tells MusicGen more than `default_caption`. The tagger is
loaded only when a caption needs it.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from tqdm import tqdm

from ..core import params as P
from ..core.errors import UserError
from ..core.args import stage_paths
from ..core.artifacts import MANIFEST, SKIPPED, ClipRow, SkipRow
from ..core.audio import AUDIO_SUFFIXES, AudioError, write_wav
from ..core.stream import stream_audio
from ..core.files import atomic_dir, write_jsonl
from ..metrics.clip import integrated_loudness
from ..metrics.musicnn import SR as TAGGER_SR
from ..metrics.musicnn import Tagger
from ..metrics.tagger_metrics import TAGGER, caption_from_tags, stream_profile
from ..model.families import audio_channels
from ..model.musicgen import codec_info, load_config, set_threads

log = logging.getLogger(__name__)

MIN_TARGET_CLIPS = 10  # fewer valid clips make a style target whose intervals cover almost anything
MAX_CAPTION_BYTES = 2000  # a caption is a sentence or two; MusicGen's T5 reads at most 512 tokens
LINK_REFUSED = (
    "a symbolic link: refused (an input must be a regular file inside the data folder, so nothing "
    "outside it leaks into the manifest); copy the file in instead"
)


def _regular(path: Path, allowed: tuple[Path, ...]) -> str | None:
    """None when `path` is a regular file the stage may read, else why not. A symlink is followed
    only into the DVC cache (`dvc config cache.type symlink` checks data out as links there);
    anything else (a link out of the folder, into another file of it, a pipe, a device) is refused."""
    if path.is_symlink():
        target = path.resolve()
        if not any(target.is_relative_to(root) for root in allowed) or not target.is_file():
            return LINK_REFUSED
        return None
    return None if path.is_file() else "not a regular file (a pipe, socket or device): refused"


def dvc_cache_dirs(raw_dir: Path) -> tuple[Path, ...]:
    """The DVC cache of the repository holding raw_dir (`.dvc/cache` of the nearest `.dvc` above it)."""
    for parent in [raw_dir.resolve(), *raw_dir.resolve().parents]:
        if (parent / ".dvc").is_dir():
            return ((parent / ".dvc" / "cache").resolve(),)
    return ()


def find_sources(raw_dir: Path, allowed: tuple[Path, ...] = ()) -> tuple[list[Path], list[SkipRow]]:
    """Audio files under raw_dir (sorted, recursive), and every other file left out with a reason:
    captions with no audio beside them, formats this project cannot read, symbolic links (a link
    to a folder is never entered), pipes and devices."""
    skipped, files = [], []
    for root, dirs, names in os.walk(raw_dir):  # os.walk never follows a folder link
        root_path = Path(root)
        for d in sorted(dirs):
            if (root_path / d).is_symlink() and not d.startswith("."):
                skipped.append(SkipRow((root_path / d).relative_to(raw_dir).as_posix(), LINK_REFUSED))
        for name in names:
            if name.startswith("."):
                continue
            path = root_path / name
            problem = _regular(path, allowed)
            if problem:
                skipped.append(SkipRow(path.relative_to(raw_dir).as_posix(), problem))
            else:
                files.append(path)
    files.sort()
    audio = [p for p in files if p.suffix.lower() in AUDIO_SUFFIXES]
    stems = {p.with_suffix("") for p in audio}
    for p in files:
        if p.suffix == ".txt" and p.with_suffix("") not in stems:
            skipped.append(SkipRow(p.relative_to(raw_dir).as_posix(), "caption .txt with no audio file beside it"))
        elif p.suffix != ".txt" and p.suffix.lower() not in AUDIO_SUFFIXES:
            skipped.append(SkipRow(p.relative_to(raw_dir).as_posix(), f"format not supported ({p.suffix or 'no suffix'})"))
    skipped.sort(key=lambda s: s.source)
    return audio, skipped


def read_caption(audio_path: Path, default: str, allowed: tuple[Path, ...] = ()) -> tuple[str, str, str | None]:
    """(caption, where it came from: "sidecar" or "default", a problem to report or None). The
    same-named .txt is read as UTF-8 with whitespace collapsed; a caption that is not UTF-8 is
    never mangled into replacement characters: the default is used and the problem reported. A
    caption that is not a regular file of the folder (a link to /etc/shadow, /dev/zero) is never
    opened, and one over MAX_CAPTION_BYTES is never read past that size."""
    txt = audio_path.with_suffix(".txt")
    if not txt.exists() and not txt.is_symlink():
        return default, "default", None
    if _regular(txt, allowed):
        return default, "default", "caption is not a regular file inside the data folder: default caption used"
    with open(txt, "rb") as f:
        data = f.read(MAX_CAPTION_BYTES + 1)
    if len(data) > MAX_CAPTION_BYTES:
        return default, "default", f"caption is over {MAX_CAPTION_BYTES} bytes: default caption used (shorten it)"
    try:
        caption = " ".join(data.decode("utf-8").split())
    except UnicodeDecodeError as exc:
        return default, "default", f"caption is not UTF-8 ({exc.reason} at byte {exc.start}): default caption used"
    return (caption, "sidecar", None) if caption else (default, "default", "caption file is empty: default caption used")


class TagCaptions:
    """Captions from musicnn tags, the tagger loaded on first use (a corpus captioned by .txt files
    never loads it)."""

    def __init__(self):
        self.tagger: Tagger | None = None

    def __call__(self, path: Path) -> str:
        self.tagger = self.tagger or Tagger.load(TAGGER)
        # the whole recording, mono at 16 kHz, streamed: a two-hour mix is tagged in a block's memory
        return caption_from_tags(stream_profile(self.tagger, stream_audio(path, TAGGER_SR)), self.tagger.tags)


def choose_caption(
    path: Path, seg: P.SegmentParams, tags: TagCaptions, allowed: tuple[Path, ...] = ()
) -> tuple[str, str, str | None]:
    """(caption, caption_source, problem) for a recording under `segment.captions`."""
    if seg.captions == "tags":
        return tags(path), "tags", None
    caption, source, problem = read_caption(path, seg.default_caption, allowed)
    if source == "default" and seg.captions == "sidecar_or_tags":
        return tags(path), "tags", problem and problem.replace("default caption used", "tag caption used")
    return caption, source, problem


def split_sources(durations: dict[str, float], valid_fraction: float, seed: int) -> dict[str, str]:
    """Train/valid by recording, so no recording has clips on both sides, and every top-level
    folder of two or more recordings (a style, when music is sorted that way) has some in valid.

    Each recording's place in the order comes from a hash of its path and the seed, so adding or
    removing another file never reshuffles the rest. Walking that order, a recording goes to valid
    when that brings the valid share of *audio duration* closer to `valid_fraction` (so one long
    recording cannot take a third of the data); at least one recording is valid whenever there
    are two or more and valid_fraction > 0. With recordings in two or more top-level folders, each
    folder of two or more is split so on its own (the loose files at the top and the folders of one
    recording are pooled and split together).
    """
    folders: dict[str, list[str]] = {}
    for source in durations:
        folders.setdefault(source.split("/")[0] if "/" in source else "", []).append(source)
    if len(folders) < 2:
        return _split_group(durations, valid_fraction, seed)
    out, pooled = {}, {}
    for folder, members in folders.items():
        part = {s: durations[s] for s in members}
        if len(members) >= 2 and folder:  # loose files at the top join the folders of one recording
            out.update(_split_group(part, valid_fraction, seed))
        else:
            pooled.update(part)
    return {**out, **_split_group(pooled, valid_fraction, seed)} if pooled else out


def _split_group(durations: dict[str, float], valid_fraction: float, seed: int) -> dict[str, str]:
    order = sorted(durations, key=lambda s: hashlib.sha256(f"{seed}:{s}".encode()).hexdigest())
    target, valid, total = valid_fraction * sum(durations.values()), set(), 0.0
    for source in order:
        if total + durations[source] / 2 < target:
            valid.add(source)
            total += durations[source]
    if not valid and valid_fraction > 0 and len(order) >= 2:
        valid.add(min(order, key=lambda s: abs(durations[s] - target)))
    return {s: ("valid" if s in valid else "train") for s in durations}


def split_warnings(rows: list[ClipRow]) -> list[str]:
    """What a user should know about the split: a caption shared by two or more recordings with
    none of them in valid (that style is missing from the style target and the valid loss), and a
    style target too small for the style checks to be more than noise."""
    out = []
    by_caption: dict[str, set] = {}
    for r in rows:
        by_caption.setdefault(r.caption, set()).add((r.source, r.split))
    for caption, members in sorted(by_caption.items()):
        sources = {m[0] for m in members}
        if len(sources) >= 2 and all(split == "train" for _, split in members):
            out.append(
                f"no valid clip has the caption {caption[:60]!r} ({len(sources)} recordings): that music is "
                f"missing from the valid loss and the style target; put each style in its own folder under "
                f"data/raw (each folder keeps some in valid) or raise segment.valid_fraction"
            )
    valid = sum(1 for r in rows if r.split == "valid")
    if 0 < valid < MIN_TARGET_CLIPS:
        out.append(
            f"only {valid} valid clip(s): the style target and the valid loss rest on them, so the style "
            f"checks will rarely be measurable; add music or raise segment.valid_fraction"
        )
    return out


def cut(blocks: Iterable[np.ndarray], sr: int, clip_s: float, min_s: float) -> Iterator[tuple[int, np.ndarray, int]]:
    """(offset in samples, clip padded to clip_s, real samples) for each clip of the audio that
    arrives in clip-length `blocks` (`stream_audio`); a last piece under min_s is left out."""
    n = int(round(clip_s * sr))
    for i, piece in enumerate(blocks):
        if len(piece) < min_s * sr:
            return
        yield i * n, np.pad(piece, [(0, n - len(piece))] + [(0, 0)] * (piece.ndim - 1)), len(piece)


def clips_of(
    path: Path, clips_dir: Path, first: int, sample_rate: int, channels: int, seg: P.SegmentParams
) -> tuple[list[tuple[str, int, int, int]], int, int]:
    """Write the recording's clips (streamed: one clip in memory at a time) as clips/<id>.wav,
    ids from `first`; returns ((id, offset, real samples, clip samples) per clip kept, quiet clips
    dropped, samples seen). A file that turns out damaged part-way leaves no clip behind."""
    kept, quiet, lengths = [], 0, []

    def counted(blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        for block in blocks:
            lengths.append(len(block))
            yield block

    n = int(round(seg.clip_seconds * sample_rate))
    try:
        blocks = counted(stream_audio(path, sample_rate, channels, block=n))
        for start, clip, real in cut(blocks, sample_rate, seg.clip_seconds, seg.min_clip_seconds):
            if integrated_loudness(clip[:real], sample_rate) < seg.min_loudness_lufs:
                quiet += 1
                continue
            cid = f"{first + len(kept):06d}"
            write_wav(clips_dir / f"{cid}.wav", clip, sample_rate)
            kept.append((cid, start, real, len(clip)))
        for _ in blocks:  # read to the end: a file damaged after its last clip is still damaged
            pass
    except AudioError:
        for cid, *_ in kept:
            (clips_dir / f"{cid}.wav").unlink(missing_ok=True)
        raise
    return kept, quiet, sum(lengths)


def run(raw_dir: Path, out_dir: Path, seg: P.SegmentParams, sample_rate: int, channels: int = 1) -> dict:
    cache_dirs = dvc_cache_dirs(raw_dir)  # the only place links may point: `dvc config cache.type symlink`
    sources, skipped = find_sources(raw_dir, cache_dirs)
    rows: list[ClipRow] = []
    quiet = 0
    tags = TagCaptions()
    with atomic_dir(out_dir) as tmp:
        (tmp / "clips").mkdir()
        for path in tqdm(sources, desc="segment", unit="file"):
            new, skips, dropped = segment_file(
                path, raw_dir, tmp / "clips", len(rows), sample_rate, channels, seg, tags, cache_dirs
            )
            rows, skipped, quiet = rows + new, skipped + skips, quiet + dropped
        if not rows:
            raise UserError(
                f"segment: no usable clip in {raw_dir} ({len(skipped)} files skipped, "
                f"{quiet} clips below {seg.min_loudness_lufs} LUFS); see the reasons above"
            )
        rows = with_splits(rows, seg)
        write_jsonl(tmp / MANIFEST, (asdict(r) for r in rows))
        write_jsonl(tmp / SKIPPED, (asdict(s) for s in skipped))
    for s in skipped:
        log.warning(f"segment: skipped {s.source}: {s.reason}")
    for warning in split_warnings(rows):
        log.warning(f"segment: warning: {warning}")
    return outcome(rows, sources, skipped, quiet, out_dir)


def segment_file(
    path: Path,
    raw_dir: Path,
    clips_dir: Path,
    first: int,
    sample_rate: int,
    channels: int,
    seg: P.SegmentParams,
    tags: TagCaptions,
    cache_dirs,
) -> tuple[list[ClipRow], list[SkipRow], int]:
    """One recording cut into clips under `clips_dir` (numbered from `first`), with their caption:
    (its clips, what was skipped and why, how many clips were too quiet). A file that cannot be
    read is a skip row, never the end of the run."""
    source = path.relative_to(raw_dir).as_posix()
    kept: list = []
    try:
        kept, quiet, seen = clips_of(path, clips_dir, first, sample_rate, channels, seg)
        if not kept and not quiet:
            return [], [SkipRow(source, f"shorter than min_clip_seconds ({seen / sample_rate:.2f} s)")], 0
        if kept:
            caption, caption_source, problem = choose_caption(path, seg, tags, cache_dirs)
    except AudioError as exc:
        for cid, *_ in kept:  # the caption's read failed after the clips were written
            (clips_dir / f"{cid}.wav").unlink(missing_ok=True)
        return [], [SkipRow(source, str(exc).removeprefix(f"{path}: "))], 0
    if not kept:
        return (
            [],
            [SkipRow(source, f"every clip quieter than min_loudness_lufs ({seg.min_loudness_lufs:g} LUFS): silence?")],
            quiet,
        )
    skips = [SkipRow(path.with_suffix(".txt").relative_to(raw_dir).as_posix(), problem)] if problem else []
    return (
        [
            ClipRow(
                cid,
                f"clips/{cid}.wav",
                source,
                round(start / sample_rate, 4),
                round(real / sample_rate, 4),
                round(1 - real / n, 4),
                caption,
                caption_source,
                "",
            )
            for cid, start, real, n in kept
        ],
        skips,
        quiet,
    )


def with_splits(rows: list[ClipRow], seg: P.SegmentParams) -> list[ClipRow]:
    """Each clip's split, decided by recording (`split_sources`)."""
    durations: dict[str, float] = Counter()
    for r in rows:
        durations[r.source] += r.duration_s
    splits = split_sources(dict(durations), seg.valid_fraction, seg.seed)
    return [replace(r, split=splits[r.source]) for r in rows]


def outcome(rows: list[ClipRow], sources: list, skipped: list, quiet: int, out_dir: Path) -> dict:
    """The run's counts, printed in one line and returned."""
    counts = Counter(r.split for r in rows)
    valid_s = sum(r.duration_s for r in rows if r.split == "valid")
    summary = {
        "clips": len(rows),
        "train": counts["train"],
        "valid": counts["valid"],
        "sources": len(sources),
        "skipped": len(skipped),
        "dropped_quiet_clips": quiet,
        "valid_share_of_duration": round(valid_s / sum(r.duration_s for r in rows), 4),
    }
    print(
        f"segment: {len(rows)} clips ({counts['train']} train / {counts['valid']} valid, "
        f"{summary['valid_share_of_duration']:.0%} of the audio held out) from {len({r.source for r in rows})} of "
        f"{len(sources)} audio files; {len(skipped)} lines in {out_dir / SKIPPED}; dropped {quiet} quiet clips"
    )
    return summary


def main(argv: list[str]) -> int:
    args = stage_paths("segment", __doc__, argv, "--raw", "--out")
    model, seg = P.load("model", "segment")
    if not args.raw.is_dir():
        raise UserError(f"segment: {args.raw} is not a directory (run `make data` or point --raw at your music)")
    config = load_config(model)
    set_threads(config, model.cpu_threads)  # musicnn's captions: the same on any machine
    run(args.raw, args.out, seg, codec_info(config).sample_rate, audio_channels(config))
    return 0
