"""Which MusicGen a checkpoint is, and loading it with its own class, never on silently random weights.

Two model types train here, told apart by the config's `model_type`:
- `musicgen` (small, medium, large; mono or stereo): `MusicgenForConditionalGeneration`, text
  conditioning through cross-attention;
- `musicgen_melody` (melody, melody-large; mono or stereo): `MusicgenMelodyForConditionalGeneration`,
  text and a chroma of a melody prepended to the decoder's sequence (no cross-attention).
Loading a melody checkpoint with the plain class "works" with its `encoder_attn.*` weights missing
(randomly initialised) and `audio_enc_to_dec_proj` unused; `load` reads the loading report and
stops on any missing, unexpected or mismatched weight. Stereo (`decoder.audio_channels == 2`)
is `stereo.py`, melody conditioning `melody.py`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch
from transformers import (
    AutoConfig,
    MusicgenForConditionalGeneration,
    MusicgenMelodyForConditionalGeneration,
    PretrainedConfig,
)

from ..core.errors import UserError

if TYPE_CHECKING:
    from transformers import PreTrainedModel

CLASSES = {"musicgen": MusicgenForConditionalGeneration, "musicgen_melody": MusicgenMelodyForConditionalGeneration}


def check_available(name: str, revision: str | None) -> None:
    """One line, at once, for a checkpoint that is not on this machine. A stage never downloads:
    gigabytes fetched inside `dvc repro` are slow, untracked, and after a 30 s wait a traceback
    where the machine is offline. A local folder must hold config.json; a hub id must be in the
    Hugging Face cache (`hf download` puts it there)."""
    from huggingface_hub import try_to_load_from_cache

    fetch = f"download it once with `hf download {name}` (or `hf download {name} --local-dir DIR` and set model.name: DIR)"
    path = Path(name).expanduser()
    looks_local = path.is_absolute() or name.startswith(".") or name.count("/") != 1 or path.exists()
    if looks_local:
        if not path.is_dir():
            raise UserError(
                f"params.yaml: model.name {name!r}: no such folder; point it at a checkpoint folder, e.g. "
                f"`hf download facebook/musicgen-small --local-dir {name}`, or use a hub id"
            )
        if not (path / "config.json").is_file():
            raise UserError(
                f"params.yaml: model.name {name!r}: the folder has no config.json (not a checkpoint); "
                f"download one into it: `hf download facebook/musicgen-small --local-dir {name}`"
            )
        return
    cached = try_to_load_from_cache(name, "config.json", revision=revision)
    if not isinstance(cached, str):
        raise UserError(f"params.yaml: model.name {name!r} is not on this machine; {fetch}")


def read_config(name: str, revision: str | None) -> PretrainedConfig:
    """The checkpoint's config, as the class its `model_type` names; a checkpoint the pipeline
    cannot train, or one not on this machine, is one line."""
    check_available(name, revision)
    try:
        config = AutoConfig.from_pretrained(name, revision=revision)
    except (ValueError, KeyError) as exc:  # no or unknown model_type
        raise UserError(
            f"{name}: not a MusicGen checkpoint ({str(exc).splitlines()[0][:160]}); model.name must "
            f"be a MusicGen checkpoint (model_type {' or '.join(CLASSES)})"
        ) from None
    model_class(config, name)
    return config


def model_class(config: PretrainedConfig, name: str = "model.name") -> type[PreTrainedModel]:
    try:
        return CLASSES[config.model_type]
    except KeyError:
        raise UserError(
            f"{name}: a {config.model_type!r} checkpoint, which this pipeline cannot train "
            f"(model_type must be {' or '.join(CLASSES)})"
        ) from None


def is_melody(config: PretrainedConfig) -> bool:
    return config.model_type == "musicgen_melody"


def audio_channels(config: PretrainedConfig) -> int:
    return config.decoder.audio_channels


def channel_codebooks(config: PretrainedConfig) -> int:
    """Codebooks per audio channel (the delay pattern's length): K for mono, K / 2 for stereo."""
    return config.decoder.num_codebooks // audio_channels(config)


def delay_steps(config: PretrainedConfig, frames: int) -> int:
    """Decoder steps (and positions) for `frames` frames: the delay pattern spends K - 1 more
    (K codebooks per channel) before the last codebook's final frame."""
    return frames + channel_codebooks(config) - 1


def _sample(keys: list[str], n: int = 4) -> str:
    return ", ".join(keys[:n]) + (f" and {len(keys) - n} more" if len(keys) > n else "")


def check_loading(name: str, cls: type, info: dict) -> None:
    """Every weight of the model comes from the checkpoint: a missing key would be randomly
    initialised, an unexpected one means the checkpoint is of another architecture (the classic
    case: a melody checkpoint through the plain class). All parts are used here (text encoder,
    codec, decoder, projections), so any such key is an error."""
    missing = sorted(info.get("missing_keys") or [])
    unexpected = sorted(info.get("unexpected_keys") or [])
    mismatched = sorted(str(k[0]) if isinstance(k, tuple) else str(k) for k in info.get("mismatched_keys") or [])
    problems = [f"{len(missing)} weights missing (they would be random: {_sample(missing)})"] if missing else []
    problems += [f"{len(unexpected)} unexpected weights ({_sample(unexpected)})"] if unexpected else []
    problems += [f"{len(mismatched)} weights of another shape ({_sample(mismatched)})"] if mismatched else []
    if problems:
        raise UserError(
            f"{name}: does not load as {cls.__name__}: {'; '.join(problems)}; is it a complete "
            f"MusicGen checkpoint of the type its config.json names?"
        )


def load(name: str, revision: str | None):
    """The model of checkpoint `name` through `from_pretrained` with the class its config names,
    checked against the loading report."""
    config = read_config(name, revision)
    cls = model_class(config, name)
    # float32 whatever the config says (transformers 5 loads dtype "auto": a half-precision config
    # would give half weights, fp16 training without a scaler and a lossy merge)
    # (transformers annotates from_pretrained as returning the model alone, and `revision` as str: with
    # output_loading_info it returns (model, loading info), and revision None is the default branch)
    model, info = cast(
        "tuple[PreTrainedModel, dict]",
        cls.from_pretrained(name, revision=revision, output_loading_info=True, dtype=torch.float32),
    )
    check_loading(name, cls, info)
    return model
