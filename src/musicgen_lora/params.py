"""One typed loader for `params.yaml`: each stage gets its own section as a dataclass.

Validation happens once, before any model loads: an unknown key, a wrong type or a value
out of range raises `ParamsError` naming the key and the allowed range; the CLI turns it
into one line on stderr and exit code 2.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from ruamel.yaml import YAML

PARAMS_FILE = Path("params.yaml")
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]


class ParamsError(ValueError):
    """A bad value in params.yaml; the message names the key."""


def _check(cond: bool, key: str, rule: str, value) -> None:
    if not cond:
        raise ParamsError(f"params.yaml: {key} must be {rule} (got {value!r})")


@dataclass(frozen=True)
class ModelParams:
    """Which MusicGen to load: `tiny` (the project's embedded model), a hub id or a local directory."""

    name: str = "tiny"
    revision: str | None = None

    def validate(self, s: str) -> None:
        _check(bool(self.name.strip()), f"{s}.name", "a non-empty model id or directory", self.name)


@dataclass(frozen=True)
class SegmentParams:
    clip_seconds: float = 15.0
    min_clip_seconds: float = 5.0
    default_caption: str = "music"
    valid_fraction: float = 0.15
    min_loudness_lufs: float = -50.0
    seed: int = 0

    def validate(self, s: str) -> None:
        _check(self.clip_seconds > 0, f"{s}.clip_seconds", "> 0", self.clip_seconds)
        _check(0 < self.min_clip_seconds <= self.clip_seconds, f"{s}.min_clip_seconds",
               "in (0, clip_seconds]", self.min_clip_seconds)
        _check(0 <= self.valid_fraction < 1, f"{s}.valid_fraction", "in [0, 1)", self.valid_fraction)


@dataclass(frozen=True)
class EncodeParams:
    # null = no padding beyond the clip length; trial-1 padded 15 s clips to 30 s.
    pad_to_seconds: float | None = None
    batch_size: int = 8

    def validate(self, s: str) -> None:
        _check(self.batch_size >= 1, f"{s}.batch_size", ">= 1", self.batch_size)
        if self.pad_to_seconds is not None:
            _check(self.pad_to_seconds > 0, f"{s}.pad_to_seconds", "> 0 or null", self.pad_to_seconds)


@dataclass(frozen=True)
class TrainParams:
    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: list(LORA_TARGETS))
    lr: float = 1e-4
    batch_size: int = 1
    grad_accum: int = 8
    epochs: int = 3
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    mask_padding: bool = True
    text_dropout: float = 0.0
    checkpoint_every: int = 50
    mixed_precision: str = "no"  # "bf16" or "fp16" on GPUs
    gradient_checkpointing: bool = False  # recompute activations: less memory, more compute
    torch_compile: bool = False  # torch.compile the model (worth it on GPUs; attention is SDPA already)
    seed: int = 0

    def validate(self, s: str) -> None:
        _check(self.rank > 0, f"{s}.rank", "an integer > 0", self.rank)
        _check(self.alpha > 0, f"{s}.alpha", "> 0", self.alpha)
        _check(0 <= self.dropout < 1, f"{s}.dropout", "in [0, 1)", self.dropout)
        _check(len(self.target_modules) > 0, f"{s}.target_modules", "a non-empty list", self.target_modules)
        _check(self.lr > 0, f"{s}.lr", "> 0", self.lr)
        _check(self.batch_size >= 1, f"{s}.batch_size", ">= 1", self.batch_size)
        _check(self.grad_accum >= 1, f"{s}.grad_accum", ">= 1", self.grad_accum)
        _check(self.epochs >= 1, f"{s}.epochs", ">= 1", self.epochs)
        _check(self.warmup_steps >= 0, f"{s}.warmup_steps", ">= 0", self.warmup_steps)
        _check(self.weight_decay >= 0, f"{s}.weight_decay", ">= 0", self.weight_decay)
        _check(self.max_grad_norm > 0, f"{s}.max_grad_norm", "> 0", self.max_grad_norm)
        _check(0 <= self.text_dropout < 1, f"{s}.text_dropout", "in [0, 1)", self.text_dropout)
        _check(self.checkpoint_every >= 1, f"{s}.checkpoint_every", ">= 1", self.checkpoint_every)
        _check(self.mixed_precision in ("no", "bf16", "fp16"), f"{s}.mixed_precision", "one of no, bf16, fp16",
               self.mixed_precision)


@dataclass(frozen=True)
class EvaluateParams:
    prompts: list[str] = field(default_factory=lambda: ["upbeat chiptune"])
    seconds: float = 15.0
    guidance_scale: float = 3.0
    temperature: float = 1.0
    top_k: int = 250
    batch_size: int = 8
    seed: int = 0
    cpu_prepack: bool = True
    silence_threshold_dbfs: float = -60.0
    decaying_slope_lu_per_s: float = -0.5
    silent_tail_drop_lu: float = -10.0
    mostly_silent_ratio: float = 0.5
    noisy_flatness: float = 0.3

    def validate(self, s: str) -> None:
        _check(len(self.prompts) > 0, f"{s}.prompts", "a non-empty list of prompts", self.prompts)
        _check(all(p.strip() for p in self.prompts), f"{s}.prompts", "non-empty strings", self.prompts)
        _check(self.seconds > 0, f"{s}.seconds", "> 0", self.seconds)
        _check(self.guidance_scale >= 1, f"{s}.guidance_scale", ">= 1 (1 = no guidance)", self.guidance_scale)
        _check(self.temperature > 0, f"{s}.temperature", "> 0", self.temperature)
        _check(self.top_k >= 0, f"{s}.top_k", ">= 0 (0 = off)", self.top_k)
        _check(self.batch_size >= 1, f"{s}.batch_size", ">= 1", self.batch_size)


SECTIONS: dict[str, type] = {
    "model": ModelParams,
    "segment": SegmentParams,
    "encode": EncodeParams,
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


def parse_section(name: str, raw: dict | None):
    """Build and validate the dataclass of section `name` from its raw mapping."""
    cls = SECTIONS[name]
    raw = dict(raw or {})
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in known:
            raise ParamsError(f"params.yaml: unknown key {name}.{key} (known: {', '.join(sorted(known))})")
    for key, value in raw.items():
        hint = hints[key]
        if not _type_ok(value, hint):
            raise ParamsError(f"params.yaml: {name}.{key} must be of type {_hint_name(hint)} (got {value!r})")
        if hint is float and value is not None:
            raw[key] = float(value)
        if isinstance(value, list):
            raw[key] = list(value)
    params = cls(**raw)
    params.validate(name)
    return params


def _hint_name(hint) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def read_params(path: Path = PARAMS_FILE) -> dict:
    """The whole params file as plain Python objects."""
    if not path.exists():
        raise ParamsError(f"{path}: not found (run from the project root)")
    data = YAML(typ="safe").load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: top level must be a mapping of sections")
    return data


def load(*names: str, path: Path = PARAMS_FILE) -> tuple:
    """Load and validate the named sections, in order."""
    data = read_params(path)
    return tuple(parse_section(n, data.get(n)) for n in names)


def validate_all(path: Path = PARAMS_FILE) -> None:
    """Validate every section and reject unknown top-level sections (one pass, before any model loads)."""
    data = read_params(path)
    for key in data:
        if key not in SECTIONS:
            raise ParamsError(f"params.yaml: unknown section {key!r} (known: {', '.join(SECTIONS)})")
    for name in SECTIONS:
        parse_section(name, data.get(name))


def validate_main(argv: list[str]) -> int:
    """`python -m musicgen_lora validate`: check the whole params.yaml, exit 2 on the first error."""
    validate_all()
    data = read_params()
    seg, enc = parse_section("segment", data.get("segment")), parse_section("encode", data.get("encode"))
    if enc.pad_to_seconds is not None and enc.pad_to_seconds < seg.clip_seconds:
        raise ParamsError(f"params.yaml: encode.pad_to_seconds must be null or >= segment.clip_seconds "
                          f"({seg.clip_seconds:g}) (got {enc.pad_to_seconds!r})")
    print("params.yaml: ok")
    return 0
