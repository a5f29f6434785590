"""The stages' command lines: the paths dvc.yaml passes them, each a required flag."""

from __future__ import annotations

import argparse
from pathlib import Path


def stage_paths(stage: str, doc: str, argv: list[str], *flags: str) -> argparse.Namespace:
    """Parse `argv` for `python -m musicgen_lora <stage>`: every flag is a required path."""
    ap = argparse.ArgumentParser(prog=f"musicgen_lora {stage}", description=doc)
    for flag in flags:
        ap.add_argument(flag, type=Path, required=True)
    return ap.parse_args(argv)
