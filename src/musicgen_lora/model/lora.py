"""LoRA on the MusicGen decoder: which modules it wraps, and merging an adapter for generation."""

from __future__ import annotations

import hashlib
import json
import re
from contextlib import contextmanager
from pathlib import Path

from peft import LoraConfig, PeftModel, get_peft_model_state_dict, set_peft_model_state_dict
from peft.tuners.lora import LoraLayer
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..core.errors import UserError
from ..core.params import LORA_TARGETS, ParamsError, TrainParams
from ..core.tracked import verify_tracked
from ..runtime.kernels import swapped


def module_names(config) -> list[str]:
    """Every module name of a MusicGen built from `config`, without weights (on the meta device):
    lets train check `target_modules` before it loads a multi-GB checkpoint."""
    import torch

    from .families import model_class

    with torch.device("meta"):
        return [n for n, _ in model_class(config)(config).named_modules()]


def lora_config(tp: TrainParams, model_or_config) -> LoraConfig:
    """LoRA on the decoder only (the text encoder and codec stay frozen). Accepts the model, or
    only its config (to check the targets before loading)."""
    pattern = r"decoder\..*\.(" + "|".join(map(re.escape, tp.target_modules)) + r")"
    if hasattr(model_or_config, "named_modules"):
        names = [n for n, _ in model_or_config.named_modules()]
    else:
        names = module_names(model_or_config)
    missing = [t for t in tp.target_modules if not any(re.fullmatch(rf"decoder\..*\.{re.escape(t)}", n) for n in names)]
    if missing:
        raise ParamsError(
            f"params.yaml: train.target_modules {missing} match no module of the MusicGen decoder "
            f"(allowed: names such as {', '.join(LORA_TARGETS)})"
        )
    config = getattr(model_or_config, "config", model_or_config)
    width = config.decoder.hidden_size
    if tp.rank > width:  # LoRA's A is rank x width: a higher rank adds weights and no capacity
        raise ParamsError(
            f"params.yaml: train.rank must be at most the decoder's width {width} (got {tp.rank}; "
            f"LoRA ranks of 4-64 are usual)"
        )
    # peft annotates lora_alpha as int; it only divides by it (scaling alpha / r), and train.alpha is a float
    return LoraConfig(r=tp.rank, lora_alpha=tp.alpha, lora_dropout=tp.dropout, target_modules=pattern, bias="none")


def check_adapter_dir(path: Path) -> None:
    """One line naming the folder and what to do, for an adapter folder that cannot be loaded
    safely: missing, empty, or holding only a pickled `adapter_model.bin` (never unpickled here)."""
    path = Path(path)
    if not (path / "adapter_config.json").is_file():
        raise UserError(
            f"{path}: no adapter_config.json (not a peft adapter folder); point at a folder that "
            f"`train` wrote, e.g. models/best_model"
        )
    if not (path / "adapter_model.safetensors").is_file():
        pickled = (
            " (adapter_model.bin is a pickle: not loaded, convert it to safetensors)"
            if (path / "adapter_model.bin").exists()
            else ""
        )
        raise UserError(f"{path}: no adapter_model.safetensors{pickled}")


def adapter_base(adapter: Path) -> str | None:
    """The base model an adapter folder says it was trained on (peft's base_model_name_or_path)."""
    try:
        return json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError):
        return None


def continue_from(peft_model, path: Path, base: str, param: str = "train.init_adapter") -> str:
    """Load the adapter folder `path` into `peft_model` (just wrapped with train's LoRA config),
    so training continues it rather than starting from zero; returns its weights' sha256. Its LoRA
    shape and base model must be this run's: a difference is one line naming what to change."""
    tensors = read_adapter_weights(path)
    saved = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
    ours = {**vars(peft_model.peft_config["default"]), "base_model_name_or_path": base}
    for key, name in (
        ("r", "train.rank"),
        ("lora_alpha", "train.alpha"),
        ("target_modules", "train.target_modules"),
        ("base_model_name_or_path", "model.name"),
    ):
        theirs, mine = saved.get(key), ours[key]
        if (float(theirs) != float(mine)) if key in ("r", "lora_alpha") else (theirs != mine):
            raise ParamsError(
                f"params.yaml: {param} {path} has {key} {theirs!r}, this run {mine!r}; "
                f"set {name} to match it, or start afresh ({param}: null)"
            )
    weights = path / "adapter_model.safetensors"
    try:
        loaded = set_peft_model_state_dict(peft_model, tensors)
    except RuntimeError as exc:
        raise UserError(f"{weights}: does not fit this model ({str(exc).splitlines()[0][:200]})") from None
    del loaded  # peft's own report only warns: the keys are checked here
    check_adapter_keys(peft_model, "default", path, tensors)
    return hashlib.sha256(weights.read_bytes()).hexdigest()


def read_adapter_weights(path: Path) -> dict:
    """The tensors of an adapter folder, verified: its bytes are what dvc.lock records (where it
    is a tracked output), its config is JSON, its safetensors header is readable and every value
    is finite. Each problem is one line naming the file and what to do."""
    path = Path(path)
    check_adapter_dir(path)
    verify_tracked(path)
    try:
        json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
    except ValueError as exc:
        raise UserError(
            f"{path / 'adapter_config.json'}: not JSON ({exc}); restore the folder (`dvc checkout`) or train it again"
        ) from None
    weights = path / "adapter_model.safetensors"
    try:
        tensors = load_file(weights)
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(
            f"{weights}: not a readable safetensors file ({str(exc)[:120]}); restore the folder "
            f"(`dvc checkout`) or train it again"
        ) from None
    bad = next((k for k, v in tensors.items() if v.is_floating_point() and not v.isfinite().all()), None)
    if bad:
        raise UserError(
            f"{weights}: tensor {bad} holds NaN or infinite values (a corrupt or diverged adapter); "
            f"restore it (`dvc checkout`) or train it again"
        )
    return tensors


def check_adapter_keys(peft_model, name: str, path: Path, tensors: dict) -> None:
    """Every LoRA weight the model expects for adapter `name` is in the file and nothing else:
    peft only warns about a missing one and leaves it randomly initialised."""
    expected = set(get_peft_model_state_dict(peft_model, adapter_name=name))
    missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
    if missing or extra:
        what = (
            f"lacks {len(missing)} weights (e.g. {missing[0]})"
            if missing
            else f"has {len(extra)} weights this model has no place for (e.g. {extra[0]})"
        )
        raise UserError(
            f"{path / 'adapter_model.safetensors'}: {what}; restore it (`dvc checkout`) or train it "
            f"again with this model.name"
        )


def load_adapters(model, adapters: dict[str, Path]) -> PeftModel | None:
    """`model` with every adapter {name: folder} attached (safetensors only), each verified
    (`read_adapter_weights`, `check_adapter_keys`). An adapter made for another model shape is
    one line naming it."""
    weights = {name: read_adapter_weights(path) for name, path in adapters.items()}
    peft_model = None
    for name, path in adapters.items():
        try:
            if peft_model is None:
                peft_model = PeftModel.from_pretrained(model, str(path), adapter_name=name)
            else:
                peft_model.load_adapter(str(path), adapter_name=name)
        except (RuntimeError, ValueError, KeyError) as exc:
            raise UserError(
                f"{path}: does not fit this model ({str(exc).splitlines()[0][:200]}); "
                f"was it trained with another model.name?"
            ) from None
        check_adapter_keys(peft_model, name, path, weights[name])
    return peft_model


@contextmanager
def merged(peft_model, name: str):
    """The base model with adapter `name` merged into its weights and the LoRA wrappers taken out
    of the module tree, so generation runs plain Linear layers (a merged peft layer still pays
    its wrapper's Python on every call: ~40 calls per generated step on the tiny decoder).
    On exit the wrappers go back and the adapter is unmerged."""
    peft_model.set_adapter(name)
    peft_model.merge_adapter()
    try:
        with swapped(peft_model.base_model.model, lambda m: m.base_layer if isinstance(m, LoraLayer) else None) as m:
            yield m
    finally:
        peft_model.unmerge_adapter()
