"""`python -m musicgen_lora metrics FILE... [--json]`: score any audio with the evaluation's
metrics and flags."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Iterator

from ..core import params as P
from ..core.artifacts import read_reference
from ..core.audio import AudioError
from ..core.stream import opened, stream_audio
from ..core.params import FlagThresholds
from .clip import MIN_CLIP_S, clip_metrics
from .flags import flags

log = logging.getLogger(__name__)

PART_S = 300.0  # a longer file is measured in parts of this length (memory flat in its length)

_TABLE = (
    ("file", None, "{}"),
    ("LUFS", "integrated_loudness_lufs", "{:.1f}"),
    ("slope LU/s", "loudness_slope_lu_per_s", "{:+.2f}"),
    ("tail LU", "tail_drop_lu", "{:+.1f}"),
    ("silence", "silence_ratio", "{:.2f}"),
    ("flatness", "spectral_flatness", "{:.3f}"),
    ("pulse", "pulse_clarity", "{:.2f}"),
    ("chroma H", "chroma_entropy", "{:.2f}"),
    ("flags", None, "{}"),
)


def _cell(row: dict, head: str, key: str | None, fmt: str) -> str:
    if head == "flags":
        return ",".join(row["flags"]) or "-"
    return row["file"] if key is None else fmt.format(row[key])


def file_rows(path: Path, thresholds: FlagThresholds) -> Iterator[dict]:
    """One row of metrics and flags per file, channels averaged, at the file's own rate; a file
    longer than PART_S is read and measured a part at a time (one row each, `file [start-end s]`),
    so memory stays flat in a recording's length. A last part too short to measure is left out."""
    with opened(path) as f:
        sr = f.samplerate
    part = int(PART_S * sr)
    for i, audio in enumerate(stream_audio(path, sr, 1, block=part)):
        label = (
            str(path) if i == 0 and len(audio) < part else f"{path} [{i * PART_S:.0f}-{(i * part + len(audio)) / sr:.0f} s]"
        )
        if i and len(audio) < MIN_CLIP_S * sr:
            log.info(f"note: {path}: the last {len(audio) / sr:.1f} s are too short to measure")
            return
        m = clip_metrics(audio, sr, thresholds.silence_threshold_dbfs)
        m.pop("loudness_curve_lufs")
        yield {"file": label, **m, "flags": flags(m, thresholds)}


def metrics_cli(argv: list[str], thresholds: FlagThresholds) -> int:
    """`musicgen-lora metrics FILE... [--json]`; `argv` are the arguments after `metrics`.

    Reads each file with soundfile (channels averaged; over PART_S, part by part), prints an aligned
    table, or with --json one JSON object per file (or part) per line (scalar metrics, rms_dbfs_per_second, file, flags).
    Unreadable/invalid files print ``error: FILE: reason`` to stderr; returns 1 if any failed.
    """
    parser = argparse.ArgumentParser(prog="musicgen-lora metrics", description="Per-clip audio metrics and flags.")
    parser.add_argument("files", nargs="+", metavar="FILE")
    parser.add_argument("--json", action="store_true", help="one JSON object per file per line")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage errors / --help: return instead of exiting the caller
        return int(exc.code or 0)
    rows, rc = [], 0
    for path in args.files:
        try:
            for row in file_rows(Path(path), thresholds):
                if args.json:
                    print(json.dumps(row), flush=True)
                else:
                    rows.append([_cell(row, head, key, fmt) for head, key, fmt in _TABLE])
        except ValueError as exc:  # AudioError names the file; metrics raise ValueError for unusable audio
            print(f"error: {exc}" if isinstance(exc, AudioError) else f"error: {path}: {exc}", file=sys.stderr)
            rc = 1
    if rows:
        table = [[head for head, _, _ in _TABLE]] + rows
        widths = [max(len(r[i]) for r in table) for i in range(len(_TABLE))]
        for r in table:
            print(
                "  ".join(
                    c.ljust(w) if i in (0, len(r) - 1) else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))
                ).rstrip()
            )
    return rc


def main(argv: list[str]) -> int:
    """Thresholds: calibrated ones from the last `evaluate base` run when
    `evaluation/reference.json` exists, else those in ./params.yaml (or the project's own)."""
    calibrated = Path("evaluation/reference.json")
    if calibrated.exists():
        th = FlagThresholds(**read_reference(calibrated)["thresholds"])
    else:
        th = (P.load("evaluate")[0] if P.PARAMS_FILE.exists() else P.project_params("evaluate")).thresholds()
    return metrics_cli(argv, th)
