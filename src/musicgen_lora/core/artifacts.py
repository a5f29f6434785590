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
from typing import TYPE_CHECKING, TypeVar, cast

from .errors import UserError
from .files import read_jsonl

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

MANIFEST = "manifest.jsonl"  # data/segments: one ClipRow per clip
SKIPPED = "skipped.jsonl"  # data/segments: one SkipRow per file (or caption) left out
TOKEN_INDEX = "index.json"  # data/tokens: codec, frames and one entry per clip (model/tokens.py)

Row = TypeVar("Row", bound="DataclassInstance")  # a row dataclass


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
    # each field's annotation as written: a string (`from __future__ import annotations`)
    fields = {f.name: cast(str, f.type) for f in dataclasses.fields(kind)}
    types = {"str": (str,), "float": (float, int), "int": (int,), "bool": (bool,)}
    out = []
    for n, row in enumerate(read_jsonl(path), 1):
        if not isinstance(row, dict) or set(row) != set(fields):
            got = sorted(row) if isinstance(row, dict) else type(row).__name__
            raise UserError(f"{path}: line {n} has {got}, expected the keys {sorted(fields)}; regenerate it (`dvc repro`)")
        bad = [
            k for k, t in fields.items() if not isinstance(row[k], types[t]) or (t != "bool" and isinstance(row[k], bool))
        ]
        if bad:
            raise UserError(
                f"{path}: line {n}: {bad[0]} is {row[bad[0]]!r}, not a {fields[bad[0]]}; regenerate it (`dvc repro`)"
            )
        out.append(kind(**row))
    return out


def read_manifest(seg_dir: Path) -> list[ClipRow]:
    """The clips of a segments folder, validated."""
    return rows_of(Path(seg_dir) / MANIFEST, ClipRow)


REFERENCE = "reference.json"  # evaluation/: what `evaluate base` measured, read by evaluate, summarize, metrics
# key -> the JSON types its value may have
REFERENCE_KEYS = {
    "thresholds": (dict,),
    "base": (dict,),
    "base_valid_loss": (float, int),
    "target": (dict,),
    "padded": (dict, type(None)),
    "copy": (dict,),
}


def read_json_object(path: Path, what: str, regenerate: str) -> dict:
    """A JSON object from `path`, or one line naming the file, what it should be and how to remake it."""
    try:
        text: str | None = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        text = None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not {what} (not JSON: {str(exc)[:60]}); {regenerate}") from None
    return parse_json_object(text, str(path), what, regenerate)


def parse_json_object(text: str | None, where: str, what: str, regenerate: str) -> dict:
    """A JSON object from `text` (a file's content, or `git show REV:path`'s; None: there is none),
    or one line naming `where` it came from, what it should be and how to remake it."""
    if text is None:
        raise UserError(f"{where}: missing; {regenerate}")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UserError(f"{where}: not {what} (not JSON: {str(exc)[:60]}); {regenerate}") from None
    if not isinstance(data, dict):
        raise UserError(f"{where}: not {what} (a JSON {type(data).__name__}, not an object); {regenerate}")
    return data


def read_reference(path: Path) -> dict:
    """`evaluation/reference.json`, validated: exactly REFERENCE_KEYS of their types, and every flag
    threshold a finite number."""
    from .params import FlagThresholds

    fix = "regenerate it with `dvc repro evaluate_base` (or restore it: `dvc checkout evaluation/reference.json`)"
    ref = read_json_object(path, "the file `evaluate base` writes", fix)
    if set(ref) != set(REFERENCE_KEYS):
        odd = sorted(set(ref) ^ set(REFERENCE_KEYS))
        raise UserError(
            f"{path}: not the file `evaluate base` writes ({', '.join(map(repr, odd[:3]))} missing or unknown); {fix}"
        )
    bad = next((k for k, types in REFERENCE_KEYS.items() if not isinstance(ref[k], types) or isinstance(ref[k], bool)), None)
    if bad is None:
        th, names = ref["thresholds"], {f.name for f in dataclasses.fields(FlagThresholds)}
        if set(th) != names or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in th.values()
        ):
            bad = "thresholds"
    if bad:
        raise UserError(f"{path}: {bad} is not what `evaluate base` writes; {fix}")
    return ref


def _keys_of(kind: type) -> set[str]:
    return {f.name for f in dataclasses.fields(kind)}


def record(data: dict, kind: type[Row], where: str, what: str, fix: str) -> Row:
    """`data` as a `kind` record: exactly its fields (an old or hand-edited file is one line)."""
    if set(data) != _keys_of(kind):
        odd = sorted(set(data) ^ _keys_of(kind))
        raise UserError(f"{where}: not {what} ({', '.join(map(repr, odd[:3]))} missing or unknown); {fix}")
    return kind(**data)


RESULTS = "comparison_results.jsonl"  # evaluation/: one ResultRow per generated clip
SET_METRICS = "set_metrics.json"  # evaluation/: the set-level figures of each model
EPOCHS = "epochs.json"  # metrics/train/: train and valid loss per epoch (0 = the base model)
TRAIN_METRICS = "metrics.json"  # metrics/train/: the run's losses, best epoch, early stop (DVCLive's summary)
SUMMARY = "summary.json"  # metrics/: every figure of the run with its interval, and the verdicts
HEADLINE = "headline.json"  # metrics/: what `dvc exp show` reads
REPRO = "regenerate it with `dvc repro {}`"


@dataclass
class ResultRow:
    """One line of comparison_results.jsonl: one generation of a prompt by one model, and its measures."""

    prompt: str
    model: str
    sample: int  # which of the prompt's samples_per_prompt generations
    seed: int  # this clip's own seed: `generate --prompt P --seed S` regenerates it alone
    length: str  # "clip" (evaluate.seconds) or "padded" (the padded training length)
    file: str
    duration_s: float
    valid_loss: float
    flags: list[str]
    metrics: dict
    # what the clip was sampled on: `generate --seed` rebuilds it where these match (on any CPU: float32,
    # per-row sampling, the batch moving only the codec's last bits); a GPU's kernels and bf16 differ
    made_on: dict


def read_results(path: Path) -> list[dict]:
    """comparison_results.jsonl's rows (as dicts: the metrics and reports index them by key), each
    checked to be a ResultRow."""
    return _result_rows(read_jsonl(path), str(path))


def parse_results(text: str, where: str) -> list[dict]:
    """The same rows from the file's text (another revision's, read through DVC)."""
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        try:
            rows.append(json.loads(line) if line.strip() else None)
        except ValueError:
            raise UserError(f"{where}: line {n} is not JSON; " + REPRO.format("evaluate")) from None
    return _result_rows([r for r in rows if r is not None], where)


def _result_rows(rows: list, where: str) -> list[dict]:
    out = []
    for n, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise UserError(f"{where}: line {n} is not a JSON object; " + REPRO.format("evaluate"))
        out.append(
            dataclasses.asdict(
                record(row, ResultRow, f"{where}: line {n}", "a row evaluate writes", REPRO.format("evaluate"))
            )
        )
    return out


@dataclass(frozen=True)
class SetMetrics:
    """evaluation/set_metrics.json: per model its set-level figures (style distances, valid losses),
    the target clips, the padded evaluation, which prompts are in and off style, and how the
    intervals are drawn."""

    models: dict
    target: dict
    padded: dict | None
    prompts: dict | None  # {in_style, off_style}; None: every prompt counts as in-style
    bootstrap: dict


def read_set_metrics(path: Path) -> SetMetrics:
    fix = REPRO.format("evaluate")
    return record(
        read_json_object(path, "the file `evaluate` writes", fix), SetMetrics, str(path), "the file `evaluate` writes", fix
    )


def read_epochs(path: Path) -> list[dict]:
    """metrics/train/epochs.json: [{epoch, train_loss, valid_loss}], epoch 0 first."""
    try:
        rows = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        rows = None
    if (
        not isinstance(rows, list)
        or not rows
        or not all(isinstance(r, dict) and {"epoch", "train_loss", "valid_loss"} <= set(r) for r in rows)
    ):
        raise UserError(f"{path}: not the per-epoch losses `train` writes; " + REPRO.format("train"))
    return rows


def read_train_metrics(path: Path) -> dict:
    """metrics/train/metrics.json: the run's best epoch, losses and early stop, as train writes them."""
    data = read_json_object(path, "the metrics `train` writes", REPRO.format("train"))
    if not {"best_epoch", "valid_loss_objective"} <= set(data):
        raise UserError(
            f"{path}: not the metrics `train` writes (no best_epoch or valid_loss_objective); " + REPRO.format("train")
        )
    return data


# summary.json's keys that every reader may rely on (stages/summarize.py writes more)
SUMMARY_KEYS = (
    "prompts",
    "best_epoch",
    "valid_loss_objective",
    "models",
    "bootstrap",
    "target",
    "set",
    "checks",
    "thresholds",
    "copies",
    "verdicts",
    "per_clip",
)


def parse_summary(text: str | None, where: str) -> dict:
    """A run's metrics/summary.json (from a file or `git show`), checked for the keys readers use;
    one line for a run from before a key existed."""
    fix = "re-run it with this version (`dvc exp run`, or `make trials` for the trials)"
    data = parse_json_object(text, where, "a run's summary", fix)
    missing = [k for k in SUMMARY_KEYS if k not in data]
    if missing:
        raise UserError(f"{where}: a summary from an older version (no {', '.join(missing[:3])}); {fix}")
    return data


@dataclass(frozen=True)
class Headline:
    """metrics/headline.json: the few figures `dvc exp show` lists per experiment."""

    verdict: dict
    style_share_pct: dict
    style_fd: dict
    valid_loss_real: dict
    flagged: dict
    best_epoch: int
