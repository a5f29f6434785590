"""One typed loader for `params.yaml`: each stage gets its own section as a dataclass.

Validation happens once, before any model loads: a YAML error, a missing section or key, an
unknown key, a wrong type or a value out of range raises `ParamsError` naming the line or key
and the allowed range; the CLI turns it into one line on stderr and exit code 2. params.yaml is
the only source of values: a key missing from the file is an error, never a silent default.
`validate` lists every problem of the file in one pass.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml import YAML, YAMLError

PARAMS_FILE = Path("params.yaml")
PROJECT_PARAMS_FILE = Path(__file__).resolve().parents[3] / "params.yaml"  # the repository's own (project_params)
CAPTION_MODES = ("sidecar", "tags", "sidecar_or_tags")
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]


class ParamsError(ValueError):
    """A bad value in params.yaml; the message names the key."""


def under_adapters(path: str) -> bool:
    """True when `path` names a folder inside adapters/, written plainly and resolving there: DVC
    tracks adapters/ as the train stage's dep, so `adapters/../models/x` or a link from adapters/
    to elsewhere would train from a file no dependency covers."""
    parts = Path(path).parts
    if len(parts) < 2 or parts[0] != "adapters" or ".." in parts or Path(path).is_absolute():
        return False
    root = Path("adapters").resolve()
    resolved = Path(path).resolve()
    return resolved.is_relative_to(root) and resolved != root


SEED_RANGE = "an integer in [0, 2**32) (numpy's and every device's seed range)"
MAX_RANK = 4096  # above every MusicGen decoder's width (validate also bounds it by the model's own)
MAX_YAML_NODES = 100_000  # params.yaml expanded (aliases followed): far above any real file


def _seed_ok(seed: int) -> bool:
    return 0 <= seed < 2**32


def short(value, limit: int = 80) -> str:
    """A value for a one-line message: its repr, cut at `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _finite(x) -> bool:
    return x is not None and math.isfinite(x)


@dataclass(frozen=True)
class ModelParams:
    """Which MusicGen to load: `tiny` (the project's embedded model), a hub id or a local directory;
    and the device every stage runs it on (`auto`: CUDA when available, else CPU)."""

    name: str
    revision: str | None
    device: str
    # torch threads on CPU for the whole process (model.musicgen.cpu_threads); null: 2 for the
    # tiny model, every core for real checkpoints
    cpu_threads: int | None

    def rules(self) -> list[tuple[bool, str, str]]:
        return [
            (bool(self.name.strip()), "name", "a non-empty model id or directory"),
            (re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device) is not None, "device", "auto, cpu, cuda or cuda:N"),
            (self.cpu_threads is None or self.cpu_threads >= 1, "cpu_threads", "an integer >= 1, or null"),
        ]


@dataclass(frozen=True)
class SegmentParams:
    clip_seconds: float
    min_clip_seconds: float
    default_caption: str
    # where a clip's caption comes from: its recording's .txt (sidecar), musicnn tags of the
    # recording (tags), or the .txt where there is one and the tags otherwise
    captions: str
    valid_fraction: float
    min_loudness_lufs: float
    seed: int

    def rules(self) -> list[tuple[bool, str, str]]:
        return [
            (0 < self.clip_seconds <= 600, "clip_seconds", "in (0, 600]"),
            (0 < self.min_clip_seconds <= self.clip_seconds, "min_clip_seconds", "in (0, clip_seconds]"),
            (self.captions in CAPTION_MODES, "captions", "one of " + ", ".join(CAPTION_MODES)),
            (0 <= self.valid_fraction < 1, "valid_fraction", "in [0, 1)"),
            (_finite(self.min_loudness_lufs), "min_loudness_lufs", "a finite LUFS value"),
            (_seed_ok(self.seed), "seed", SEED_RANGE),
        ]


@dataclass(frozen=True)
class EncodeParams:
    # null = no padding beyond the clip length; trial-1 padded 15 s clips to 30 s.
    pad_to_seconds: float | None
    batch_size: int

    def rules(self) -> list[tuple[bool, str, str]]:
        return [
            (self.batch_size >= 1, "batch_size", ">= 1"),
            (self.pad_to_seconds is None or 0 < self.pad_to_seconds <= 600, "pad_to_seconds", "in (0, 600] or null"),
        ]


@dataclass(frozen=True)
class GenerationParams:
    """How every generation samples: train's samples after each epoch and evaluate's clips (the
    `generate` command's defaults too), so what train plays is what evaluate measures."""

    guidance_scale: float  # classifier-free guidance (1 = none)
    temperature: float
    top_k: int  # 0 = off

    def rules(self) -> list[tuple[bool, str, str]]:
        return [
            (_finite(self.guidance_scale) and self.guidance_scale >= 1, "guidance_scale", ">= 1 (1 = no guidance)"),
            (_finite(self.temperature) and self.temperature > 0, "temperature", "finite and > 0"),
            (self.top_k >= 0, "top_k", ">= 0 (0 = off)"),
        ]


@dataclass(frozen=True)
class TrainParams:
    rank: int
    alpha: float
    dropout: float
    target_modules: list[str]
    lr: float
    batch_size: int
    grad_accum: int
    epochs: int
    # stop when the real-frames valid loss has not improved for this many epochs (null: train every epoch)
    early_stopping_patience: int | None
    warmup_steps: int
    weight_decay: float
    max_grad_norm: float
    mask_padding: bool
    text_dropout: float
    checkpoint_every: int
    mixed_precision: str  # "bf16" or "fp16" on GPUs
    gradient_checkpointing: bool  # recompute activations: less memory, more compute
    # with it: only every N-th decoder layer recomputes (1: all, +50% step time on the musicgen-small
    # shape; 4: a quarter of them, -0.4 GB for +10%); the adapter comes out bit for bit the same
    gradient_checkpointing_every: int
    torch_compile: bool  # torch.compile the model (worth it on GPUs; attention is SDPA already)
    # generated at the end of every epoch (and before training) to hear the adapter drift; [] = off
    sample_prompts: list[str]
    sample_seconds: float
    # continue training this adapter (a folder under adapters/, which the train stage depends on)
    init_adapter: str | None
    seed: int
    # processes per machine and machines (GPUs: one process each); above 1 the train stage launches
    # itself under accelerate with these (model/launch.py); the effective batch is
    # batch_size x grad_accum x processes x machines
    processes: int
    machines: int

    def rules(self) -> list[tuple[bool, str, str]]:
        return [
            (0 < self.rank <= MAX_RANK, "rank", f"an integer in [1, {MAX_RANK}] (and at most the decoder's width)"),
            (_seed_ok(self.seed), "seed", SEED_RANGE),
            (
                self.init_adapter is None or under_adapters(self.init_adapter),
                "init_adapter",
                "null (start afresh) or a folder under adapters/ (no `..`, no link out of it: the "
                "train stage depends on adapters/ only), e.g. adapters/round-1",
            ),
            (_finite(self.alpha) and self.alpha > 0, "alpha", "finite and > 0"),
            (0 <= self.dropout < 1, "dropout", "in [0, 1)"),
            (len(self.target_modules) > 0, "target_modules", "a non-empty list"),
            # above 1 no LoRA step is sane; .inf or 1e9 would only turn into NaN minutes later
            (0 < self.lr <= 1, "lr", "in (0, 1]"),
            (self.batch_size >= 1, "batch_size", ">= 1"),
            (self.grad_accum >= 1, "grad_accum", ">= 1"),
            (
                self.gradient_checkpointing_every >= 1,
                "gradient_checkpointing_every",
                "an integer >= 1 (1: every decoder layer)",
            ),
            # it picks the layers checkpointing recomputes: alone it would do nothing, silently
            (
                self.gradient_checkpointing or self.gradient_checkpointing_every <= 1,
                "gradient_checkpointing_every",
                "1 while train.gradient_checkpointing is false (set that to true as well)",
            ),
            (self.epochs >= 1, "epochs", ">= 1"),
            (
                self.early_stopping_patience is None or self.early_stopping_patience >= 1,
                "early_stopping_patience",
                "an integer >= 1 (epochs without a better valid loss), or null",
            ),
            (self.warmup_steps >= 0, "warmup_steps", ">= 0"),
            (0 <= self.weight_decay <= 1, "weight_decay", "in [0, 1]"),
            (_finite(self.max_grad_norm) and self.max_grad_norm > 0, "max_grad_norm", "finite and > 0"),
            (0 <= self.text_dropout < 1, "text_dropout", "in [0, 1)"),
            (self.checkpoint_every >= 1, "checkpoint_every", ">= 1"),
            (self.mixed_precision in ("no", "bf16", "fp16"), "mixed_precision", "one of no, bf16, fp16"),
            (all(p.strip() for p in self.sample_prompts), "sample_prompts", "a list of non-empty strings ([] = off)"),
            (0 < self.sample_seconds <= 60, "sample_seconds", "in (0, 60]"),
            (1 <= self.processes <= 1024, "processes", "an integer in [1, 1024] (processes per machine)"),
            (1 <= self.machines <= 1024, "machines", "an integer in [1, 1024]"),
        ]


@dataclass(frozen=True)
class FlagThresholds:
    """Flag limits. decaying: slope < limit; silent_tail: tail_drop < limit;
    mostly_silent: silence_ratio > limit; noisy: flatness > limit. silence_threshold_dbfs
    is the frame level used when measuring silence_ratio."""

    decaying_slope_lu_per_s: float
    silent_tail_drop_lu: float
    mostly_silent_ratio: float
    noisy_flatness: float
    silence_threshold_dbfs: float


@dataclass(frozen=True)
class EvaluateParams(FlagThresholds):
    """What evaluate generates and measures (how it samples is `GenerationParams`); the flag
    thresholds are `FlagThresholds`' fields (declared there once)."""

    prompts: list[str]  # in the target style: the style checks
    # other styles: the adapter should still follow them (the verdict's "forgets prompts" check)
    off_style_prompts: list[str]
    samples_per_prompt: int  # seeds per prompt: pairs for the bootstrap intervals
    seconds: float
    batch_size: int
    seed: int
    cpu_prepack: bool
    half_precision: bool  # bf16 generation (fp16 on GPUs without bf16)

    @property
    def all_prompts(self) -> list[str]:
        """What evaluate generates, in this order: the in-style prompts, then the off-style ones."""
        return self.prompts + self.off_style_prompts

    def thresholds(self) -> FlagThresholds:
        return FlagThresholds(**{f.name: getattr(self, f.name) for f in dataclasses.fields(FlagThresholds)})

    def rules(self) -> list[tuple[bool, str, str]]:
        return [
            (len(self.prompts) > 0, "prompts", "a non-empty list of prompts"),
            (all(p.strip() for p in self.prompts), "prompts", "non-empty strings"),
            (all(p.strip() for p in self.off_style_prompts), "off_style_prompts", "non-empty strings ([] = none)"),
            (
                not set(self.prompts) & set(self.off_style_prompts),
                "off_style_prompts",
                "prompts that are not also in evaluate.prompts",
            ),
            (self.samples_per_prompt >= 1, "samples_per_prompt", ">= 1"),
            # the decoder's position limit is checked against the model (evaluate, validate)
            (2.4 <= self.seconds <= 600, "seconds", "in [2.4, 600] (the clip metrics need 2.4 s)"),
            (self.batch_size >= 1, "batch_size", ">= 1"),
            (_seed_ok(self.seed), "seed", SEED_RANGE),
        ] + [(_finite(getattr(self, f.name)), f.name, "finite") for f in dataclasses.fields(FlagThresholds)]


@dataclass(frozen=True)
class NumericsParams:
    """The CPU numerical path of every stage (runtime/numerics.py): `avx2` gives the same tokens,
    adapters and audio on any x86 machine with AVX2; `native` is faster and machine-dependent."""

    cpu_isa: str

    def rules(self) -> list[tuple[bool, str, str]]:
        return [(self.cpu_isa in ("avx2", "native"), "cpu_isa", "one of avx2, native")]


SECTIONS: dict[str, type] = {
    "numerics": NumericsParams,
    "model": ModelParams,
    "segment": SegmentParams,
    "encode": EncodeParams,
    "generation": GenerationParams,
    "train": TrainParams,
    "evaluate": EvaluateParams,
}


def _type_ok(value, hint) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_type_ok(v, item) for v in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def section_problems(name: str, raw) -> tuple[object | None, list[str]]:
    """(the section's dataclass or None, every problem found in it, one line each)."""
    cls = SECTIONS[name]
    if raw is None:
        return None, [f"params.yaml: section {name!r} is missing (copy it from the project's params.yaml)"]
    if not isinstance(raw, dict):
        return None, [f"params.yaml: section {name!r} must be a mapping of keys (got {short(raw)})"]
    raw = dict(raw)
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    problems = [
        f"params.yaml: unknown key {name}.{key} (known: {', '.join(sorted(known))})" for key in raw if key not in known
    ]
    problems += [
        f"params.yaml: {name}.{key} is missing (every key is set in params.yaml; copy it from the project's params.yaml)"
        for key in known
        if key not in raw
    ]
    for key in [k for k in known if k in raw]:
        value, hint = raw[key], hints[key]
        if not _type_ok(value, hint):
            problems.append(f"params.yaml: {name}.{key} must be of type {_hint_name(hint)} (got {short(value)})")
        elif hint is float or (value is not None and float in typing.get_args(hint)):
            raw[key] = float(value)
        elif isinstance(value, list):
            raw[key] = list(value)
    if problems:
        return None, problems
    params = cls(**raw)
    return params, [
        f"params.yaml: {name}.{key} must be {rule} (got {short(getattr(params, key))})"
        for holds, key, rule in params.rules()
        if not holds
    ]


def parse_section(name: str, raw):
    """Build and validate the dataclass of section `name` from its raw mapping."""
    params, problems = section_problems(name, raw)
    if problems:
        raise ParamsError("\n".join(problems))
    return params


def _hint_name(hint) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def expanded_nodes(node, limit: int = MAX_YAML_NODES) -> int:
    """How many values a composed YAML node stands for with every alias expanded (counting stops
    past `limit`): a few anchors nested ten deep stand for a billion values and hang a loader."""
    sizes: dict[int, int] = {}

    def size(n) -> int:
        if id(n) in sizes:
            return sizes[id(n)]
        total = 1
        children = n.value if isinstance(n.value, list) else []
        for child in children:
            for c in child if isinstance(child, tuple) else (child,):
                total += size(c)
                if total > limit:
                    break
        sizes[id(n)] = min(total, limit + 1)
        return sizes[id(n)]

    return 0 if node is None else size(node)


def read_params(path: Path = PARAMS_FILE) -> dict:
    """The whole params file as plain Python objects; a YAML error (duplicate keys included) is
    one line with its line number."""
    if not path.exists():
        raise ParamsError(f"{path}: not found (run from the project root)")
    if not path.is_file():
        raise ParamsError(f"{path}: not a file (a folder or a device?); restore it (`git checkout {path}`)")
    try:
        text = path.read_text(encoding="utf-8")
        nodes = expanded_nodes(YAML(typ="safe").compose(text))
        if nodes > MAX_YAML_NODES:
            raise ParamsError(
                f"{path}: its aliases expand to over {MAX_YAML_NODES:,} values (a YAML alias bomb?); "
                f"write the values out instead of repeating anchors"
            )
        data = YAML(typ="safe").load(text) or {}
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ParamsError(f"{path}: {where}{problem} (fix the YAML syntax)") from None
    except UnicodeDecodeError as exc:
        raise ParamsError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: top level must be a mapping of sections")
    return data


def edit_params(path: Path, changes: dict, note: str | None = None) -> None:
    """Set `{section: {key: value}}` in a params file, keeping its comments, quoting, line breaks
    and order (ruamel's round trip), written atomically. A section or key that does not exist is an
    error. With `note`, a changed key's end-of-line comment (written for the old value, so now
    stale) becomes "<note> (was <old value>)"."""
    from .files import write_text

    yaml = YAML()
    yaml.preserve_quotes, yaml.width = True, 4096  # 'no' stays a quoted string; long prompts stay on one line
    data = yaml.load(Path(path).read_text(encoding="utf-8"))
    for section, values in changes.items():
        for key, value in values.items():
            if section in data and not isinstance(data[section], dict):
                raise ParamsError(
                    f"{path}: section {section} is empty or not a mapping; restore it "
                    f"(`git checkout {Path(path).name}`) and run again"
                )
            if section not in data or key not in data[section]:
                raise ParamsError(f"{path}: no key {section}.{key} to set")
            if note and data[section][key] != value:
                _replace_comment(data[section], key, f"# {note} (was {json.dumps(data[section][key], default=str)})")
            data[section][key] = value
    out = io.StringIO()
    yaml.dump(data, out)
    write_text(Path(path), out.getvalue())


def _replace_comment(mapping, key: str, comment: str) -> None:
    """`comment` as `key`'s end-of-line comment. ruamel keeps the comment lines below a key (those
    above the next key) in the same token as its end-of-line comment: they stay."""
    token = mapping.ca.items.get(key, [None] * 4)[2]
    if token is None:
        mapping.yaml_add_eol_comment(comment, key, column=24)
    else:
        token.value = comment + "\n" + token.value.partition("\n")[2]


def load(*names: str, path: Path = PARAMS_FILE) -> tuple:
    """Load and validate the named sections, in order."""
    data = read_params(path)
    return tuple(parse_section(n, data.get(n)) for n in names)


def project_params(section: str, **changes):
    """Section `section` of the repository's own params.yaml (validated as a stage loads it), with
    `changes` applied: for code that runs without a workspace (the bench, the tests), so even they
    take their values from params.yaml rather than from a second set of defaults."""
    (params,) = load(section, path=PROJECT_PARAMS_FILE)
    return dataclasses.replace(params, **changes)


def problems(path: Path = PARAMS_FILE) -> list[str]:
    """Every problem of the whole file, one line each: unknown sections, every section's keys,
    and the rules that span sections."""
    data = read_params(path)
    out = [f"params.yaml: unknown section {key!r} (known: {', '.join(SECTIONS)})" for key in data if key not in SECTIONS]
    parsed = {}
    for name in SECTIONS:
        parsed[name], found = section_problems(name, data.get(name))
        out += found
    seg = typing.cast("SegmentParams | None", parsed["segment"])
    enc = typing.cast("EncodeParams | None", parsed["encode"])
    if seg and enc and enc.pad_to_seconds is not None and enc.pad_to_seconds < seg.clip_seconds:
        out.append(
            f"params.yaml: encode.pad_to_seconds must be null or >= segment.clip_seconds "
            f"({seg.clip_seconds:g}) (got {enc.pad_to_seconds!r})"
        )
    return out
