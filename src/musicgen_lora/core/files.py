"""Atomic writes and JSON Lines: a killed stage never leaves a file that looks complete."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

import jsonlines

from .errors import UserError

_UMASK = os.umask(0)
os.umask(_UMASK)  # read once: mkstemp/mkdtemp make private (0600/0700) entries, outputs get the usual modes


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp name beside `path`, unique to this writer (two writers of one file never
    share one); rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    tmp.chmod(0o666 & ~_UMASK)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a temp directory beside `path` (unique to this writer); it replaces `path` only if
    the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    tmp.chmod(0o777 & ~_UMASK)
    try:
        yield tmp
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on `folder` (flock on the folder itself: no lock file is left
    behind), so files written together in it (a wav and its sidecar) come from one writer."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


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
        raise UserError(f"{path}: line {exc.lineno} is not JSON; regenerate it (`dvc repro`)") from None


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path, data) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def inside(base: Path, relative: str) -> Path:
    """`base / relative`, refusing paths (from manifests or rows) that would leave `base`."""
    path = (Path(base) / relative).resolve()
    if not path.is_relative_to(Path(base).resolve()):
        raise UserError(
            f"{base}: a row names {relative!r}, which points outside {base}; regenerate it "
            f"(`dvc repro`) instead of editing it"
        )
    return path


def slug(text: str) -> str:
    """A file-name-safe short form of a prompt (clip names of evaluate and generate)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "prompt"
