"""The demo music corpus: five styles synthesised with numpy, byte-identical on every run.

`chiptune` is the target style users fine-tune on; the generic styles pre-train the tiny base
model and never include it. Each track's randomness comes from `SeedSequence([seed, style_id,
index])`, synthesis is float64 and output is rounded to 16-bit PCM, so files do not depend on
the machine, the order tracks are written in or how many other tracks there are.
"""

from __future__ import annotations

import argparse
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import soundfile as sf
from scipy.signal import butter, sosfilt

from ..core.files import atomic_path, write_text

TARGET_STYLE = "chiptune"
GENERIC_STYLES = ("piano", "drums", "ambient", "bass")
PEAK = 10 ** (-1 / 20)  # -1 dBFS
MAJOR, MINOR = (0, 2, 4, 5, 7, 9, 11), (0, 2, 3, 5, 7, 8, 10)
PROGRESSIONS = {False: ((0, 4, 5, 3), (0, 3, 4, 3), (5, 3, 0, 4)), True: ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6))}
Synth = Callable[[np.random.Generator, int, int], tuple[np.ndarray, int]]


def _hz(midi) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(midi, dtype=np.float64) - 69.0) / 12.0)


def _chord(root: int, degree: int, minor: bool, tones=(0, 2, 4)) -> list[int]:
    scale = MINOR if minor else MAJOR
    return [root + scale[(degree + k) % 7] + 12 * ((degree + k) // 7) for k in tones]


def _key(rng: np.random.Generator, low: int, high: int) -> tuple[int, bool, tuple[int, ...]]:
    root, minor = int(rng.integers(low, high)), bool(rng.integers(2))  # (root midi note, minor?, progression)
    return root, minor, PROGRESSIONS[minor][int(rng.integers(len(PROGRESSIONS[minor])))]


def _sweep(sr: int, seconds: float, f0: float, f1: float, rate: float, decay: float) -> np.ndarray:
    """A kick drum: sine whose pitch falls exponentially from f0 to f1 (phase integrated exactly)."""
    t = np.arange(int(seconds * sr)) / sr
    phase = f1 * t + (f0 - f1) * (1 - np.exp(-rate * t)) / rate
    return np.sin(2 * np.pi * phase) * np.exp(-decay * t)


def _add(buf: np.ndarray, at: int, x: np.ndarray) -> None:
    m = min(len(x), len(buf) - at)
    if m > 0:
        buf[at : at + m] += x[:m]


def _chiptune(rng, n, sr):
    bpm, (root, minor, prog) = int(rng.integers(130, 151)), _key(rng, 57, 69)
    duty = (0.125, 0.25, 0.5)[int(rng.integers(3))]
    arp = ((0, 1, 2, 3), (0, 1, 2, 3, 2, 1), (0, 2, 1, 3), (3, 2, 1, 0))[int(rng.integers(4))]
    bass_pat, step = (0, 0, 12, 0, 0, 12, 0, 7), max(1, round(sr * 60 / bpm / 4))  # samples per 16th note
    arp_hz = np.array([[_hz(_chord(root, d, minor, (0, 2, 4, 7))[arp[s % len(arp)]]) for s in range(16)] for d in prog])
    bass_hz = np.array([[_hz(_chord(root - 24, d, minor)[0] + bass_pat[s // 2 % 8]) for s in range(16)] for d in prog])
    idx = np.arange(n)
    s, pos = idx // step, (idx % step) / step
    bar, s16, pos8 = (s // 16) % len(prog), s % 16, (idx % (2 * step)) / (2 * step)
    square = lambda hz, d: ((np.cumsum(hz) / sr) % 1.0 < d) - d  # noqa: E731
    lead = square(arp_hz[bar, s16], duty) * (1 - 0.4 * pos) * (pos < 0.85)
    bass = square(bass_hz[bar, s16], 0.5) * (pos8 < 0.7)
    t, noise = (idx % step) / sr, rng.uniform(-1.0, 1.0, n)
    hat = np.diff(noise, prepend=0.0) * np.clip(1 - t / 0.03, 0, 1) ** 2
    snare = noise * np.clip(1 - t / 0.12, 0, 1) ** 2
    kick_ph = 45 * t + 160 * 0.05 * (1 - np.clip(1 - t / 0.05, 0, 1) ** 3) / 3
    kick = ((kick_ph % 1.0 < 0.5) - 0.5) * np.clip(1 - t / 0.09, 0, 1)  # falling-pitch square
    kicks = np.array([1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0] if rng.integers(2) else [1, 0, 0, 0] * 4)
    snares = np.array([0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1.0 * rng.integers(2)])
    hats = np.tile([0.5, 0.0, 0.3, 0.0] if rng.integers(2) else [0.5, 0.25], 8)[:16]
    drums = 0.5 * kick * kicks[s16] + 0.35 * snare * snares[s16] + 0.25 * hat * hats[s16]
    return 0.3 * lead + 0.3 * bass + drums, int(minor)


def _piano(rng, n, sr):
    bpm, (root, minor, prog) = int(rng.integers(70, 91)), _key(rng, 55, 67)
    beat, out, bright, degree = 60 / bpm, np.zeros(n), float(rng.uniform(0.8, 1.2)), 7

    def note(midi: int, dur: float, vel: float, at: float) -> None:  # dur, at in beats
        t = np.arange(max(0, min(int((dur * beat + 1.5) * sr), n - int(at * beat * sr)))) / sr
        env, step_env, x = np.exp(-t * 1.1), np.exp(-t * 0.9 / bright), np.zeros(len(t))
        for k in range(1, 8):  # slightly stretched harmonics, higher ones decay faster
            fk = float(_hz(midi)) * k * np.sqrt(1 + 0.0004 * k * k)
            env = env * step_env
            x += np.sin(2 * np.pi * fk * t) * env / k**1.4 if fk < 0.45 * sr else 0.0
        _add(out, int(at * beat * sr), vel * x * np.minimum(t / 0.004, 1) * np.exp(-np.maximum(t - dur * beat, 0) * 10))

    for b in range(int(n / sr / (4 * beat)) + 1):
        for k, m in enumerate(_chord(root - 12, prog[b % len(prog)], minor)):  # rolled left-hand chord
            note(m, 3.6, 0.25, b * 4 + k * 0.5)
        pos = 0.0
        while pos < 4:  # right hand: random walk on the scale
            dur, degree = float(rng.choice([0.5, 1, 1, 1, 2])), int(np.clip(degree + rng.integers(-2, 3), 3, 13))
            midi = root + (MINOR if minor else MAJOR)[degree % 7] + 12 * (degree // 7)
            note(midi, dur, float(rng.uniform(0.45, 0.6)), b * 4 + pos)
            pos += dur
    return out, int(minor)


def _drums(rng, n, sr):
    bpm, groove = int(rng.integers(90, 121)), int(rng.integers(2))
    step, out = 60 / bpm / 4 * sr, np.zeros(n)
    kick = _sweep(sr, 0.4, float(rng.uniform(120, 160)), 48, 30, 9)
    t = np.arange(int(0.25 * sr)) / sr
    snare = rng.uniform(-1, 1, len(t)) * np.exp(-t * 22) + 0.5 * np.sin(2 * np.pi * 190 * t) * np.exp(-t * 30)
    # groove 0: rock (straight 8th hats), groove 1: funk (16th hats, syncopated kick, ghost snares)
    kicks = ((0, 8), (0, 3, 6, 10))[groove]
    swing = 0.0 if groove == 0 else float(rng.uniform(0.0, 0.15))
    for s in range(int(n / step) + 1):
        at = int((s + (swing if s % 2 else 0)) * step)
        if s % 16 in kicks or (s % 16 == 14 and rng.random() < 0.3):
            _add(out, at, 0.9 * kick)
        if s % 16 in (4, 12):
            _add(out, at, 0.7 * snare)
        elif groove == 1 and rng.random() < 0.2:
            _add(out, at, 0.15 * snare)
        if groove == 1 or s % 2 == 0:
            open_hat = s % 16 == 14 and rng.random() < 0.5
            th = np.arange(int((0.3 if open_hat else 0.06) * sr)) / sr
            hat = np.diff(rng.uniform(-1, 1, len(th) + 1)) * np.exp(-th * (12 if open_hat else 70))
            _add(out, at, (0.25 if s % 4 == 0 else 0.15) * float(rng.uniform(0.7, 1.0)) * hat)
    return out, groove


def _ambient(rng, n, sr):
    root, minor, prog = _key(rng, 45, 57)
    out, pos, i, fade = np.zeros(n), 0, 0, int(2.5 * sr)
    while pos < n:
        seg = int(float(rng.uniform(5, 9)) * sr)
        m = min(seg + fade, n - pos)
        t, x = np.arange(m) / sr, np.zeros(m)
        for k, midi in enumerate(_chord(root, prog[i % len(prog)], minor, (0, 2, 4, 6))):
            for cents in (-7.0, 0.0, 7.0):
                x += 2 * ((float(_hz(midi + cents / 100)) * t + rng.random()) % 1.0) - 1
            if k == 0:  # sine sub an octave below the root
                x += 2 * np.sin(2 * np.pi * float(_hz(midi - 12)) * t)
        env = np.minimum(np.minimum(t * sr / fade, 1), np.clip((m - t * sr) / fade, 0, 1) if pos + m < n else 1)
        _add(out, pos, x * env)
        pos, i = pos + seg, i + 1
    t = np.arange(n) / sr
    dark, bright = (sosfilt(butter(2, c, fs=sr, output="sos"), out) for c in (350.0, 1400.0))
    lfo = 0.5 + 0.5 * np.sin(2 * np.pi * t / float(rng.uniform(12, 24)))
    return (dark * (1 - lfo) + bright * lfo) * (0.8 + 0.2 * np.sin(2 * np.pi * t / 9.0)), int(minor)


def _bass(rng, n, sr):
    bpm, (root, minor, prog) = int(rng.integers(95, 121)), _key(rng, 33, 45)
    wave = int(rng.integers(3))  # 0: triangle, 1: sine, 2: sawtooth (bright: the codec must learn high partials)
    pattern = ((0, None, 12, 0, None, 7, 0, None), (0, 0, None, 7, None, 12, 10, 7))[int(rng.integers(2))]
    step = max(1, round(sr * 60 / bpm / 2))  # samples per 8th note
    s, pos = np.arange(n) // step, (np.arange(n) % step) / step
    table = np.array([[0.0 if p is None else float(_hz(_chord(root, d, minor)[0] + p)) for p in pattern] for d in prog])
    hz = table[(s // 8) % len(prog), s % 8]  # 0 Hz marks a rest
    on, ph = hz > 0, np.cumsum(hz) / sr % 1.0
    tone = (4 * np.abs(ph - 0.5) - 1, np.sin(2 * np.pi * ph), 2 * ph - 1)[wave]
    env = on * np.minimum(pos * step / (0.005 * sr), 1) * np.clip((0.9 - pos) / 0.1, 0, 1) * (1 - 0.3 * pos)
    out, kick = 0.8 * tone * env, _sweep(sr, 0.3, 90, 45, 25, 12)
    for beat in range(0, int(n / step) + 1, 2):
        _add(out, beat * step, 0.35 * kick)
    return out, wave


@dataclass(frozen=True)
class Style:
    synth: Synth  # (rng, n_samples, sample_rate) -> (audio, caption variant)
    captions: tuple[str, ...]


STYLES: dict[str, Style] = {
    "chiptune": Style(
        _chiptune,
        (
            "bright upbeat chiptune with fast major-key square wave arpeggios, pulse bass and noise drums",
            "dark driving chiptune with fast minor-key square wave arpeggios, pulse bass and noise drums",
        ),
    ),
    "piano": Style(
        _piano,
        (
            "calm solo piano with a slow gentle melody and soft chords",
            "melancholic solo piano with a slow minor melody and soft chords",
        ),
    ),
    "drums": Style(
        _drums,
        (
            "steady rock drum beat with punchy kick, snare and eighth-note hi-hats",
            "funky drum groove with syncopated kick, ghost-note snare and busy hi-hats",
        ),
    ),
    "ambient": Style(
        _ambient,
        (
            "warm ambient pad with slowly evolving synth chords and no drums",
            "dark ambient drone with slowly evolving minor synth chords and no drums",
        ),
    ),
    "bass": Style(
        _bass,
        (
            "groovy triangle synth bass line with a soft kick drum",
            "deep sine sub bass line with a soft kick drum",
            "buzzy sawtooth synth bass line with a soft kick drum",
        ),
    ),
}


def _rng(seed: int, style: str, *more: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(style.encode()), *more]))


def synth_track(style: str, seed: int, index: int, seconds: float, sample_rate: int) -> tuple[np.ndarray, str]:
    """Mono float64 audio peaking at -1 dBFS with 5 ms fades, and its one-line caption."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; choose from {', '.join(STYLES)}")
    n = max(1, int(round(seconds * sample_rate)))
    x, variant = STYLES[style].synth(_rng(seed, style, index), n, sample_rate)
    fade = max(1, int(0.005 * sample_rate))  # 5 ms linear fade in and out
    x = (x - x.mean()) * np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / fade)
    peak = np.abs(x).max()
    return (x * (PEAK / peak) if peak > 0 else x), STYLES[style].captions[variant]


def track_lengths(style: str, tracks: int, seed: int, min_seconds: float, max_seconds: float) -> list[float]:
    """Per-track seconds in [min, max]; with >= 4 tracks one is < 15 s and (max >= 60) one is > 60 s."""
    rng = _rng(seed, style, 0xC0FFEE)
    out = rng.uniform(min_seconds, max_seconds, tracks)
    (u_short, u_long), (short, long_) = rng.random(2), rng.permutation(max(tracks, 2))[:2]
    if tracks >= 4 and min_seconds < 15:
        out[short] = min_seconds + u_short * max(min(max_seconds, 14.5) - min_seconds, 0.0)
    if tracks >= 4 and max_seconds > 60:
        lo = max(min_seconds, min(60.5, max_seconds))
        out[long_] = lo + u_long * (max_seconds - lo)
    return [float(v) for v in out]


def write_corpus(
    out_dir: Path,
    styles: Sequence[str],
    tracks_per_style: int,
    seed: int,
    min_seconds: float,
    max_seconds: float,
    sample_rates: Sequence[int] = (16000, 22050),
    stereo_every: int = 3,
) -> list[Path]:
    """Write `out_dir/<style>/<style>_NNN.wav` (16-bit PCM) plus `.txt` captions; return the wav paths."""
    bad = [s for s in styles if s not in STYLES]
    if bad or seed < 0 or tracks_per_style < 0 or not 0 < min_seconds <= max_seconds or not sample_rates:
        raise ValueError(
            f"bad corpus request: styles={list(styles)} seed={seed} tracks={tracks_per_style} "
            f"seconds=[{min_seconds}, {max_seconds}] sample_rates={list(sample_rates)}"
        )
    paths = []
    for style in styles:
        folder = Path(out_dir) / style
        folder.mkdir(parents=True, exist_ok=True)
        for i, seconds in enumerate(track_lengths(style, tracks_per_style, seed, min_seconds, max_seconds)):
            sr = int(sample_rates[i % len(sample_rates)])
            audio, caption = synth_track(style, seed, i, seconds, sr)
            if stereo_every > 0 and (i + 1) % stereo_every == 0:  # small level + delay difference L/R
                delay = int(round(sr * 0.0004 * (1 + i % 3)))
                right = np.concatenate([np.zeros(delay), audio[: len(audio) - delay]]) if delay else audio
                audio = np.stack([audio, 0.8 * right], axis=1)
            pcm = np.clip(np.round(audio * 32767.0), -32767, 32767).astype(np.int16)
            wav = folder / f"{style}_{i:03d}.wav"
            with atomic_path(wav) as tmp:
                sf.write(str(tmp), pcm, sr, subtype="PCM_16", format="WAV")
            write_text(wav.with_suffix(".txt"), caption + "\n")
            paths.append(wav)
    return sorted(paths)


def corpus_main(argv: list[str]) -> int:
    """`musicgen-lora corpus`: write the demo corpus and print one summary line."""
    ap = argparse.ArgumentParser(prog="musicgen-lora corpus", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="output folder (one sub-folder per style)")
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--styles", help=f"comma-separated subset of: {','.join(STYLES)}")
    which.add_argument("--target", action="store_true", help=f"only the target style ({TARGET_STYLE}; default)")
    which.add_argument("--generic", action="store_true", help=f"only the generic styles ({','.join(GENERIC_STYLES)})")
    ap.add_argument("--tracks", type=int, default=60, help="tracks per style (default 60)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-seconds", type=float, default=10.0)
    ap.add_argument("--max-seconds", type=float, default=90.0)
    args = ap.parse_args(argv)
    styles = (
        [s.strip() for s in args.styles.split(",") if s.strip()]
        if args.styles
        else (list(GENERIC_STYLES) if args.generic else [TARGET_STYLE])
    )
    try:
        paths = write_corpus(args.out, styles, args.tracks, args.seed, args.min_seconds, args.max_seconds)
    except ValueError as exc:
        ap.error(str(exc))
    minutes = sum(sf.info(str(p)).duration for p in paths) / 60
    print(f"corpus: wrote {len(paths)} tracks ({','.join(styles)}) to {args.out}, {minutes:.1f} min of audio")
    return 0
