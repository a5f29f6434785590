"""Atomic writes and JSON Lines: a killed stage never leaves a file that looks complete."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Iterable, Iterator

import jsonlines

from .errors import UserError


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp name beside `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a temp directory beside `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    """One JSON object per line, keys in the order given (a row dataclass's field order: the
    fields people look for first come first)."""
    with atomic_path(path) as tmp, jsonlines.open(tmp, mode="w") as out:
        out.write_all(rows)


def read_jsonl(path: Path) -> list[dict]:
    try:
        with jsonlines.open(path) as rows:
            return list(rows)
    except FileNotFoundError:
        raise UserError(f"{path}: missing; run the stage that writes it (`dvc repro`)") from None
    except jsonlines.InvalidLineError as exc:
        raise UserError(f"{path}: line {exc.line_number} is not JSON; regenerate it (`dvc repro`)") from None


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path, data) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def inside(base: Path, relative: str) -> Path:
    """`base / relative`, refusing paths (from manifests or rows) that would leave `base`."""
    path = (Path(base) / relative).resolve()
    if not path.is_relative_to(Path(base).resolve()):
        raise UserError(f"{base}: a row names {relative!r}, which points outside {base}; regenerate it "
                        f"(`dvc repro`) instead of editing it")
    return path
