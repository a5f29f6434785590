"""`python -m musicgen_lora metrics FILE... [--json]`: score any audio with the evaluation's
metrics and flags."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..core import params as P
from ..core.artifacts import read_reference
from ..core.audio import AudioError, read_audio
from ..core.params import FlagThresholds
from .clip import clip_metrics
from .flags import flags

_TABLE = (("file", None, "{}"), ("LUFS", "integrated_loudness_lufs", "{:.1f}"),
          ("slope LU/s", "loudness_slope_lu_per_s", "{:+.2f}"), ("tail LU", "tail_drop_lu", "{:+.1f}"),
          ("silence", "silence_ratio", "{:.2f}"), ("flatness", "spectral_flatness", "{:.3f}"),
          ("pulse", "pulse_clarity", "{:.2f}"), ("chroma H", "chroma_entropy", "{:.2f}"), ("flags", None, "{}"))


def _cell(row: dict, head: str, key: str | None, fmt: str) -> str:
    if head == "flags":
        return ",".join(row["flags"]) or "-"
    return row["file"] if key is None else fmt.format(row[key])


def metrics_cli(argv: list[str], thresholds: FlagThresholds = FlagThresholds()) -> int:
    """`musicgen-lora metrics FILE... [--json]`; `argv` are the arguments after `metrics`.

    Reads each file with soundfile (channels averaged), prints an aligned table, or with
    --json one JSON object per file per line (scalar metrics, rms_dbfs_per_second, file, flags).
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
            data, sr = read_audio(Path(path))
            m = clip_metrics(data.mean(axis=1), int(sr), thresholds.silence_threshold_dbfs)
            m.pop("loudness_curve_lufs")
            row = {"file": path, **m, "flags": flags(m, thresholds)}
        except ValueError as exc:  # AudioError names the file; metrics raise ValueError for unusable audio
            print(f"error: {exc}" if isinstance(exc, AudioError) else f"error: {path}: {exc}", file=sys.stderr)
            rc = 1
            continue
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            rows.append([_cell(row, head, key, fmt) for head, key, fmt in _TABLE])
    if rows:
        table = [[head for head, _, _ in _TABLE]] + rows
        widths = [max(len(r[i]) for r in table) for i in range(len(_TABLE))]
        for r in table:
            print("  ".join(c.ljust(w) if i in (0, len(r) - 1) else c.rjust(w)
                            for i, (c, w) in enumerate(zip(r, widths))).rstrip())
    return rc


def main(argv: list[str]) -> int:
    """Thresholds: calibrated ones from the last `evaluate base` run when
    `evaluation/reference.json` exists, else those in params.yaml (or the defaults)."""
    calibrated = Path("evaluation/reference.json")
    if calibrated.exists():
        th = FlagThresholds(**read_reference(calibrated)["thresholds"])
    else:
        th = P.load("evaluate")[0].thresholds() if P.PARAMS_FILE.exists() else FlagThresholds()
    return metrics_cli(argv, th)
