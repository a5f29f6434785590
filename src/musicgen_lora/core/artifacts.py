"""The files stages hand each other: one name, one typed record and one validating reader each.

A stage writes these and a later stage (or report) reads them; nothing else parses them by
string keys. A file that is missing, not JSON, or of another shape (an older version, an edit
by hand) is one line naming it and saying to regenerate it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from .errors import UserError
from .files import read_jsonl

MANIFEST = "manifest.jsonl"  # data/segments: one ClipRow per clip
SKIPPED = "skipped.jsonl"  # data/segments: one SkipRow per file (or caption) left out
TOKEN_INDEX = "index.json"  # data/tokens: codec, frames and one entry per clip (model/tokens.py)

Row = TypeVar("Row")


@dataclass(frozen=True)
class ClipRow:
    """One line of `manifest.jsonl`."""

    id: str  # clip name, also the file stem under clips/
    file: str  # path relative to the segments directory
    source: str  # recording, relative to data/raw
    offset_s: float  # where the clip starts in the source
    duration_s: float  # seconds of real audio (the rest is padding)
    padding_fraction: float  # share of the clip that is zero padding
    caption: str
    caption_source: str  # "sidecar" (the recording's .txt), "tags" (its musicnn tags) or "default"
    split: str  # "train" or "valid"


@dataclass(frozen=True)
class SkipRow:
    """One line of `skipped.jsonl`: a source file (or a clip of it) left out, and why."""

    source: str
    reason: str


def rows_of(path: Path, kind: type[Row]) -> list[Row]:
    """Every line of the JSON Lines file `path` as a `kind` record: the same keys, each value of
    the field's type (ints are accepted as floats)."""
    fields = {f.name: f.type for f in dataclasses.fields(kind)}
    types = {"str": (str,), "float": (float, int), "int": (int,), "bool": (bool,)}
    out = []
    for n, row in enumerate(read_jsonl(path), 1):
        if not isinstance(row, dict) or set(row) != set(fields):
            got = sorted(row) if isinstance(row, dict) else type(row).__name__
            raise UserError(f"{path}: line {n} has {got}, expected the keys {sorted(fields)}; regenerate it "
                            f"(`dvc repro`)")
        bad = [k for k, t in fields.items() if not isinstance(row[k], types[t]) or
               (t != "bool" and isinstance(row[k], bool))]
        if bad:
            raise UserError(f"{path}: line {n}: {bad[0]} is {row[bad[0]]!r}, not a {fields[bad[0]]}; regenerate it "
                            f"(`dvc repro`)")
        out.append(kind(**row))
    return out


def read_manifest(seg_dir: Path) -> list[ClipRow]:
    """The clips of a segments folder, validated."""
    return rows_of(Path(seg_dir) / MANIFEST, ClipRow)


REFERENCE = "reference.json"  # evaluation/: what `evaluate base` measured, read by evaluate, summarize, metrics
# key -> the JSON types its value may have
REFERENCE_KEYS = {"thresholds": (dict,), "base": (dict,), "base_valid_loss": (float, int), "target": (dict,),
                  "padded": (dict, type(None)), "copy": (dict,)}


def read_json_object(path: Path, what: str, regenerate: str) -> dict:
    """A JSON object from `path`, or one line naming the file, what it should be and how to remake it."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: missing; {regenerate}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not {what} (not JSON: {str(exc)[:60]}); {regenerate}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: not {what} (a JSON {type(data).__name__}, not an object); {regenerate}")
    return data


def read_reference(path: Path) -> dict:
    """`evaluation/reference.json`, validated: exactly REFERENCE_KEYS of their types, and every flag
    threshold a finite number."""
    from .params import FlagThresholds

    fix = "regenerate it with `dvc repro evaluate_base` (or restore it: `dvc checkout evaluation/reference.json`)"
    ref = read_json_object(path, "the file `evaluate base` writes", fix)
    if set(ref) != set(REFERENCE_KEYS):
        odd = sorted(set(ref) ^ set(REFERENCE_KEYS))
        raise UserError(f"{path}: not the file `evaluate base` writes ({', '.join(map(repr, odd[:3]))} "
                        f"missing or unknown); {fix}")
    bad = next((k for k, types in REFERENCE_KEYS.items() if not isinstance(ref[k], types)
                or isinstance(ref[k], bool)), None)
    if bad is None:
        th, names = ref["thresholds"], {f.name for f in dataclasses.fields(FlagThresholds)}
        if set(th) != names or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                                       for v in th.values()):
            bad = "thresholds"
    if bad:
        raise UserError(f"{path}: {bad} is not what `evaluate base` writes; {fix}")
    return ref
