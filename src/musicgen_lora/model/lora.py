"""LoRA on the MusicGen decoder: which modules it wraps, and merging an adapter for generation."""

from __future__ import annotations

import re
from contextlib import contextmanager

from pathlib import Path

from peft import LoraConfig, PeftModel
from peft.tuners.lora import LoraLayer

from ..core.errors import UserError
from ..core.params import LORA_TARGETS, ParamsError, TrainParams
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
        raise ParamsError(f"params.yaml: train.target_modules {missing} match no module of the MusicGen decoder "
                          f"(allowed: names such as {', '.join(LORA_TARGETS)})")
    return LoraConfig(r=tp.rank, lora_alpha=tp.alpha, lora_dropout=tp.dropout, target_modules=pattern, bias="none")


def check_adapter_dir(path: Path) -> None:
    """One line naming the folder and what to do, for an adapter folder that cannot be loaded
    safely: missing, empty, or holding only a pickled `adapter_model.bin` (never unpickled here)."""
    path = Path(path)
    if not (path / "adapter_config.json").is_file():
        raise UserError(f"{path}: no adapter_config.json (not a peft adapter folder); point at a folder that "
                        f"`train` wrote, e.g. models/best_model")
    if not (path / "adapter_model.safetensors").is_file():
        pickled = " (adapter_model.bin is a pickle: not loaded, convert it to safetensors)" \
            if (path / "adapter_model.bin").exists() else ""
        raise UserError(f"{path}: no adapter_model.safetensors{pickled}")


def load_adapters(model, adapters: dict[str, Path]) -> PeftModel:
    """`model` with every adapter {name: folder} attached (safetensors only). An adapter made
    for another model shape is one line naming it."""
    for path in adapters.values():
        check_adapter_dir(path)
    peft_model = None
    for name, path in adapters.items():
        try:
            if peft_model is None:
                peft_model = PeftModel.from_pretrained(model, str(path), adapter_name=name)
            else:
                peft_model.load_adapter(str(path), adapter_name=name)
        except (RuntimeError, ValueError, KeyError) as exc:
            raise UserError(f"{path}: does not fit this model ({str(exc).splitlines()[0][:200]}); "
                            f"was it trained with another model.name?") from None
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
