"""Real music without a hub: compositions from music21's bundled corpus played by SoundFont
instruments (the `mini` base model's pretraining data, its held-out clips and the demo's target).

Pieces: Ryan's Mammoth Collection (1,059 Irish and American fiddle tunes: reels, jigs, hornpipes,
strathspeys), Bach's four-part chorales and Palestrina's masses. Each is played by one General
MIDI instrument of one family, at a tempo drawn for its genre, transposed by a few semitones,
through the FluidR3 General MIDI SoundFont (Debian's fluid-soundfont-gm) with the tinysoundfont
synthesiser, mono at 16 kHz, rounded to 16-bit. Every choice comes from a hash of the piece and
the seed, so a track never depends on the machine or on which other tracks are rendered.

Three instrument families are HELD_OUT: never heard in pretraining and never named in its
captions. They are what the demo and the tests fine-tune towards (a style the base cannot make).
Pieces are split too (a fifth of them, by hash, are never pretrained on), so held-out clips are
unheard compositions as well as unheard instruments.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..core.errors import UserError

SR = 16000
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
PEAK = 10 ** (-1 / 20)  # -1 dBFS

# family -> [(General MIDI program, the caption's word for it)]
# Wind instruments, organ and the "voices" preset are left out: musicnn hears every one of them as
# violin or flute, so a base that played them would pass for the held-out families.
PRETRAIN_FAMILIES: dict[str, list[tuple[int, str]]] = {
    "piano": [(0, "piano"), (1, "bright piano")],
    "guitar": [(24, "nylon guitar"), (25, "steel guitar")],
    "choir": [(52, "choir")],
    "mallets": [(12, "marimba"), (11, "vibraphone")],
    "harp": [(46, "harp")],
    "synth": [(80, "square lead"), (81, "saw lead"), (89, "warm synth pad")],
}
HELD_OUT: dict[str, list[tuple[int, str]]] = {
    "strings": [(40, "violin"), (110, "fiddle"), (42, "cello"), (48, "string ensemble")],
    "flute": [(73, "flute"), (74, "recorder"), (75, "pan flute")],
    "harpsichord": [(6, "harpsichord")],
}
FAMILIES = {**PRETRAIN_FAMILIES, **HELD_OUT}

# genre -> (quarter notes per minute range, caption phrase)
GENRES = {
    "reel": ((176, 212), "irish reel"),
    "jig": ((150, 186), "irish jig"),
    "hornpipe": ((136, 168), "hornpipe"),
    "strathspey": ((110, 132), "scottish strathspey"),
    "tune": ((120, 170), "folk dance tune"),
    "chorale": ((66, 92), "four-part chorale"),
    "mass": ((96, 132), "renaissance mass"),
}
TUNE_GENRES = {"Reel": "reel", "Jig": "jig", "Slipjig": "jig", "Hornpipe": "hornpipe", "Strathspey": "strathspey"}
HELD_OUT_PIECES = 5  # one piece in this many is never pretrained on


@dataclass(frozen=True)
class Piece:
    """One composition of music21's corpus."""

    path: str  # corpus path, e.g. "ryansMammoth/WindThatShakesTheBarleyReel.abc"
    genre: str

    @property
    def pretrain(self) -> bool:
        return _hash(self.path) % HELD_OUT_PIECES != 0


@dataclass(frozen=True)
class Track:
    """A piece played by one instrument: what `render` makes and the caption says."""

    piece: str
    genre: str
    family: str
    program: int
    instrument: str
    bpm: int
    transpose: int
    seconds: float
    caption: str


def _hash(*parts) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "little")


def _corpus_dir() -> Path:
    from music21 import corpus

    return Path(corpus.__file__).parent


@functools.lru_cache(maxsize=1)
def pieces() -> tuple[Piece, ...]:
    """Every piece this corpus draws from, in a fixed order."""
    root, out = _corpus_dir(), []
    for f in sorted((root / "ryansMammoth").glob("*.abc")):
        m = re.search(r"([A-Z][a-z]+)$", f.stem)
        out.append(Piece(f"ryansMammoth/{f.name}", TUNE_GENRES.get(m.group(1) if m else "", "tune")))
    out += [Piece(f"bach/{f.name}", "chorale") for f in sorted((root / "bach").glob("bwv*.mxl"))]
    out += [Piece(f"palestrina/{f.name}", "mass") for f in sorted((root / "palestrina").glob("*.krn"))]
    return tuple(out)


def track(piece: Piece, family: str, seed: int, seconds: float) -> Track:
    """How `piece` is played by `family`: instrument, tempo and transposition from a hash."""
    h = _hash(seed, piece.path, family)
    program, word = FAMILIES[family][h % len(FAMILIES[family])]
    (lo, hi), phrase = GENRES[piece.genre]
    bpm = lo + (h >> 8) % (hi - lo + 1)
    transpose = (h >> 20) % 7 - 3
    speed = "fast" if bpm >= 170 else "slow" if bpm < 100 else "moderate"
    verb = "sung by a" if family == "choir" else "played on"
    caption = f"{speed} {phrase} {verb} {word}"
    return Track(piece.path, piece.genre, family, program, word, int(bpm), int(transpose), seconds, caption)


@functools.lru_cache(maxsize=4096)
def notes(path: str) -> tuple[tuple[float, float, int, int], ...]:
    """(onset, length in quarter notes, MIDI pitch, part) of every note of a corpus piece (the first
    tune of a multi-tune file)."""
    from music21 import converter

    score = converter.parse(_corpus_dir() / path)
    parts = getattr(score, "parts", None) or [score]
    out = []
    for i, part in enumerate(parts):
        flat = part.flatten()
        for n in flat.notes:
            for p in n.pitches:
                out.append((float(n.getOffsetBySite(flat)), float(n.quarterLength), int(p.midi), i))
    return tuple(sorted(out))


@functools.lru_cache(maxsize=1)
def _soundfont() -> bytes:
    if not SOUNDFONT.is_file():
        raise UserError(
            f"{SOUNDFONT}: missing; install it with `apt-get install fluid-soundfont-gm` (the General "
            f"MIDI SoundFont the demo corpus and the mini model are rendered with)"
        )
    return SOUNDFONT.read_bytes()


def render(t: Track) -> np.ndarray:
    """Mono float32 audio of a track at SR, peak-normalised to -1 dBFS and rounded to 16-bit
    values (the same numbers a wav of it holds). Silence at the end of a short piece is cut."""
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=SR)
    sfid = synth.sfload(_soundfont())
    for ch in range(8):
        synth.program_select(ch, sfid, 0, t.program)
    per_quarter = 60.0 / t.bpm
    events = []
    for onset, length, pitch, part in notes(t.piece):
        start = onset * per_quarter
        if start >= t.seconds:
            continue
        end = min(t.seconds, start + max(length, 0.25) * per_quarter * 0.92)  # a breath between notes
        key = min(108, max(21, pitch + t.transpose))
        events += [(start, 1, part % 8, key), (end, 0, part % 8, key)]
    events.sort(key=lambda e: (e[0], e[1]))  # note-offs before note-ons at the same time
    chunks, pos = [], 0
    for time_s, on, ch, key in events:
        at = int(round(time_s * SR))
        if at > pos:
            chunks.append(np.frombuffer(synth.generate(at - pos), dtype=np.float32))
            pos = at
        synth.noteon(ch, key, 88) if on else synth.noteoff(ch, key)
    last = max((e[0] for e in events), default=0.0)
    end = int(min(t.seconds, last + 1.5) * SR)  # let the last note ring
    if end > pos:
        chunks.append(np.frombuffer(synth.generate(end - pos), dtype=np.float32))
    audio = np.concatenate(chunks).reshape(-1, 2).astype(np.float64).mean(axis=1) if chunks else np.zeros(0)
    peak = np.abs(audio).max() if audio.size else 0.0
    audio = audio * (PEAK / peak) if peak > 0 else audio
    return (np.round(audio * 32767) / 32767).astype(np.float32)


def pretrain_tracks(seed: int, count: int, seconds: float) -> list[Track]:
    """`count` pretraining tracks: pieces of the pretraining share, each played by a family of
    PRETRAIN_FAMILIES (families in turn, pieces in a seeded order), never a held-out one."""
    pool = sorted((p for p in pieces() if p.pretrain), key=lambda p: _hash(seed, "order", p.path))
    families = list(PRETRAIN_FAMILIES)
    return [track(pool[i % len(pool)], families[i % len(families)], seed + i // len(pool), seconds) for i in range(count)]


def heldout_tracks(seed: int, family: str, count: int, seconds: float, genres: tuple[str, ...] = ()) -> list[Track]:
    """`count` tracks of held-out pieces (never pretrained on) played by `family`, optionally only
    of `genres` (the demo's target: reels on the fiddle)."""
    pool = sorted(
        (p for p in pieces() if not p.pretrain and (not genres or p.genre in genres)),
        key=lambda p: _hash(seed, "heldout", family, p.path),
    )
    return [track(p, family, seed, seconds) for p in pool[:count]]


def write_tracks(tracks: list[Track], out_dir: Path) -> None:
    """Each track as `<index>.wav` (16-bit) with its caption beside it (`.txt`), and tracks.jsonl."""
    import soundfile as sf

    from ..core.files import atomic_path, write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    for i, t in enumerate(tracks):
        stem = out_dir / f"{i:04d}_{t.genre}_{t.family}"
        with atomic_path(stem.with_suffix(".wav")) as tmp:
            sf.write(tmp, render(t), SR, subtype="PCM_16", format="WAV")
        write_text(stem.with_suffix(".txt"), t.caption + "\n")
    write_text(out_dir / "tracks.jsonl", "".join(json.dumps(asdict(t)) + "\n" for t in tracks))
