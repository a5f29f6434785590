"""Check a DVC-tracked output against what dvc.lock records, before a stage trusts it.

`dvc checkout` copies a cache object into the workspace without re-hashing it, so a corrupt cache
object (or a file edited by hand) reaches the next stage silently and `dvc status` still says up
to date. Here the workspace files are hashed (md5, as DVC does) and compared with dvc.lock's
record: for a folder, the `.dir` listing in the DVC cache names each file's md5. Where the
record cannot be found (no dvc.lock, a path it does not list, the listing not in the cache) there
is nothing to compare against and the check passes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ruamel.yaml import YAML, YAMLError

from .errors import UserError

LOCK = Path("dvc.lock")
CACHE = Path(".dvc/cache/files/md5")


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _stages(path: Path) -> dict:
    """The `stages` of dvc.lock or dvc.yaml ({} where the file is missing or not YAML)."""
    try:
        return (YAML(typ="safe").load(path.read_text(encoding="utf-8")) or {}).get("stages", {})
    except (OSError, YAMLError, AttributeError):
        return {}


def lock_path(out: Path) -> str | None:
    """`out` as dvc.lock names it: relative to the project root, where stages run."""
    try:
        return Path(out).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return None


def recorded_md5(out: Path, lock: Path = LOCK) -> str | None:
    """The md5 dvc.lock records for the output `out` (a folder's ends in `.dir`), or None."""
    target = lock_path(out)
    for stage in _stages(lock).values():
        for entry in stage.get("outs", []) if isinstance(stage, dict) else []:
            if isinstance(entry, dict) and entry.get("path") == target:
                return entry.get("md5")
    return None


def verify_tracked(out: Path, lock: Path = LOCK, cache: Path = CACHE) -> int:
    """Raise one line naming the first file of output `out` whose bytes differ from dvc.lock's
    record; returns how many files were checked (0: no record to check against)."""
    md5 = recorded_md5(out, lock)
    if not md5:
        return 0
    fix = (
        f"restore it with `dvc checkout --relink {lock_path(out)}` (or `dvc pull`), or re-run its stage with "
        f"`dvc repro` (if you re-made it by hand on purpose, `dvc commit` records it)"
    )
    if not md5.endswith(".dir"):
        if _md5(Path(out)) != md5:
            raise UserError(f"{out}: its bytes differ from what dvc.lock records (md5 {md5}); {fix}")
        return 1
    listing = cache / md5[:2] / md5[2:]
    try:
        entries = json.loads(listing.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0
    for entry in entries:
        path = Path(out) / entry["relpath"]
        if not path.is_file():
            raise UserError(f"{path}: missing, though dvc.lock records it; {fix}")
        if _md5(path) != entry["md5"]:
            raise UserError(f"{path}: its bytes differ from what dvc.lock records (md5 {entry['md5']}); {fix}")
    return len(entries)


def pipeline_output_of(path: Path, dvc_yaml: Path = Path("dvc.yaml")) -> str | None:
    """The dvc.yaml stage output that holds `path` (a file in it, or it), or None."""
    target = lock_path(path)
    if target is None:
        return None
    for stage in _stages(dvc_yaml).values():
        for entry in [*stage.get("outs", []), *stage.get("metrics", []), *stage.get("plots", [])]:
            out = next(iter(entry)) if isinstance(entry, dict) else str(entry)
            if target == out or target.startswith(out.rstrip("/") + "/"):
                return out
    return None
