#!/usr/bin/env python3
"""Render the musicnn reference clips (assets/musicnn/reference_clips/*.wav).

Run once, by hand; the WAVs are committed and are the inputs on which
tools/musicnn_convert.py records the original TensorFlow model's outputs.
Needs numpy and Debian's `fluidsynth` + `fluid-soundfont-gm`
(apt-get install fluidsynth fluid-soundfont-gm).  Writes tiny format-0 MIDI
files with the standard library, renders them with FluidR3_GM at 16 kHz and
stores 16 kHz mono PCM16 (peak-normalised to -3 dBFS).

    python3 tools/musicnn_clips.py [--out assets/musicnn/reference_clips]
"""
import argparse
import struct
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

SR = 16000
SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
TPQ = 480  # ticks per quarter note


def _varlen(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def write_midi(path: Path, bpm: float, programs: dict, notes: list) -> None:
    """programs: {channel: GM program}; notes: (start_beat, dur_beats, channel, pitch, velocity)."""
    ev = [(0, bytes([0xFF, 0x51, 0x03]) + int(60e6 / bpm).to_bytes(3, "big"))]
    ev += [(0, bytes([0xC0 | ch, prog])) for ch, prog in programs.items()]
    for start, dur, ch, pitch, vel in notes:
        t0, t1 = round(start * TPQ), round((start + dur) * TPQ)
        ev.append((t0, bytes([0x90 | ch, pitch, vel])))
        ev.append((t1, bytes([0x80 | ch, pitch, 0])))
    ev.sort(key=lambda e: (e[0], e[1][0] & 0xF0 == 0x90))  # note-offs before note-ons at a tick
    track, last = b"", 0
    for t, data in ev:
        track += _varlen(t - last) + data
        last = t
    track += _varlen(0) + b"\xFF\x2F\x00"
    path.write_bytes(b"MThd" + struct.pack(">IHHH", 6, 0, 1, TPQ)
                     + b"MTrk" + struct.pack(">I", len(track)) + track)


def piano(bars=6):
    """Slow solo piano: I-vi-IV-V arpeggios with a melody (GM 0, 72 bpm)."""
    chords = [[48, 55, 60, 64], [45, 52, 57, 60], [41, 48, 53, 57], [43, 50, 55, 59]]
    melody = [76, 74, 72, 74, 72, 69, 72, 71, 69, 67, 65, 67]
    notes = []
    for b in range(bars):
        ch = chords[b % 4]
        for i in range(8):
            notes.append((b * 4 + i * 0.5, 1.5, 0, ch[i % 4] + (12 if i >= 4 else 0), 60))
        notes.append((b * 4, 2, 0, melody[(2 * b) % 12], 80))
        notes.append((b * 4 + 2, 2, 0, melody[(2 * b + 1) % 12], 75))
    return 72, {0: 0}, notes


def rock(bars=5):
    """Fast rock band: overdriven guitar power chords (GM 29), picked bass (GM 34), drum kit (ch 10), 150 bpm."""
    notes, roots = [], [40, 40, 43, 45, 38]
    for b in range(bars):
        r = roots[b % 5]
        for i in range(8):
            t = b * 4 + i * 0.5
            for p in (r + 12, r + 19, r + 24):
                notes.append((t, 0.45, 0, p, 100))
            notes.append((t, 0.45, 1, r, 100))
            notes.append((t, 0.25, 9, 42, 90))                       # closed hi-hat
        for beat in range(4):
            notes.append((b * 4 + beat, 0.25, 9, 36 if beat % 2 == 0 else 38, 115))  # kick / snare
        notes.append((b * 4, 1, 9, 49, 100))                          # crash
    return 150, {0: 29, 1: 34}, notes


def techno(bars=5):
    """Four-on-the-floor techno: saw lead (GM 81), synth bass (GM 38), 808-style drums, 128 bpm."""
    notes, riff = [], [57, 60, 64, 67, 64, 60, 69, 67]
    for b in range(bars):
        for i in range(16):
            t = b * 4 + i * 0.25
            notes.append((t, 0.2, 0, riff[i % 8] + 12, 90))
            if i % 2 == 1:
                notes.append((t, 0.2, 1, 33 if b % 2 == 0 else 31, 110))
            notes.append((t, 0.1, 9, 42, 70 if i % 2 else 40))
        for beat in range(4):
            notes.append((b * 4 + beat, 0.25, 9, 36, 127))
            if beat % 2:
                notes.append((b * 4 + beat, 0.25, 9, 39, 100))          # hand clap
    return 128, {0: 81, 1: 38}, notes


def strings(bars=4):
    """Slow string section: violins (GM 40), viola-range ensemble (GM 48), cello (GM 42), 60 bpm."""
    chords = [[62, 69, 74], [59, 67, 71], [60, 67, 72], [57, 64, 69]]
    bass = [38, 43, 36, 33]
    notes = []
    for b in range(bars):
        notes += [(b * 4, 4, 1, p, 70) for p in chords[b]]
        notes.append((b * 4, 4, 2, bass[b] + 12, 85))
        for i, p in enumerate((chords[b][2] + 12, chords[b][2] + 14, chords[b][2] + 12, chords[b][1] + 12)):
            notes.append((b * 4 + i, 1, 0, p, 90))
    return 60, {0: 40, 1: 48, 2: 42}, notes


CLIPS = {"piano": (piano, 9.5), "rock": (rock, 8.0), "techno": (techno, 8.0), "strings": (strings, 6.5)}


def render(mid: Path, seconds: float) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "out.wav"
        subprocess.run(["fluidsynth", "-ni", "-q", "-g", "0.6", "-r", str(SR), "-T", "wav", "-O", "s16",
                        "-F", str(wav), SOUNDFONT, str(mid)], check=True)
        with wave.open(str(wav)) as w:
            assert w.getframerate() == SR and w.getsampwidth() == 2, (w.getframerate(), w.getsampwidth())
            x = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, w.getnchannels())
    x = x.astype(np.float64).mean(axis=1)
    n = int(round(seconds * SR))
    x = np.pad(x, (0, max(0, n - len(x))))[:n]
    return x / np.abs(x).max() * 10 ** (-3 / 20)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "assets/musicnn/reference_clips")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, (make, seconds) in CLIPS.items():
        with tempfile.TemporaryDirectory() as tmp:
            mid = Path(tmp) / f"{name}.mid"
            write_midi(mid, *make())
            x = render(mid, seconds)
        with wave.open(str(args.out / f"{name}.wav"), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(SR)
            w.writeframes(np.round(x * 32767).astype("<i2").tobytes())
        print(f"{name}.wav: {seconds} s")


if __name__ == "__main__":
    main()
