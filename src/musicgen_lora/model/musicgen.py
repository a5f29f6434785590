"""Loading a MusicGen checkpoint, its codec facts, encoding audio and generating it.

`from_pretrained` on a hub id or a local directory (the embedded `tiny` default included);
segment, encode, train and evaluate call these instead of repeating them. The delay pattern and
loss live in `delay.py`, LoRA in `lora.py`, the token-shard format in `tokens.py`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer, MusicgenConfig, MusicgenForConditionalGeneration
from transformers.utils import logging as hf_logging

from ..core.params import ModelParams, ParamsError
from .delay import text_inputs

class _MusicgenSpecialTokens(logging.Filter):
    """MusicGen's pad, bos and decoder-start ids are the codebook size (one past the vocabulary)
    by design; transformers' config check warns about that on every load. Drop exactly that
    message, for exactly those values, and let every other warning through."""

    PATTERN = re.compile(r"(pad|bos|decoder_start)_token_id must be `None` or an integer within the vocabulary "
                         r"\(between 0 and (\d+)\), got (\d+)")

    def filter(self, record: logging.LogRecord) -> bool:
        m = self.PATTERN.search(record.getMessage())
        return not (m and int(m.group(3)) == int(m.group(2)) + 1)


def quiet_known_warnings() -> None:
    """Silence what our own use of transformers triggers and a user cannot act on: the special-token
    check above, the per-tensor "Loading weights" bar, and peft's call of a deprecated property."""
    hf_logging.get_logger("transformers.configuration_utils").addFilter(_MusicgenSpecialTokens())
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)


quiet_known_warnings()

# `model.name: tiny` resolves to this directory (relative to the project root), built by
# `python -m musicgen_lora bootstrap` and committed so the demo needs no hub.
TINY_NAME = "tiny"
TINY_DIR = Path("assets/tiny-musicgen")


@dataclass(frozen=True)
class CodecInfo:
    """What the pipeline needs to know about a checkpoint's codec, read from its config."""

    sample_rate: int
    frame_rate: float
    num_codebooks: int
    codebook_size: int
    pad_id: int

    def frames(self, seconds: float) -> int:
        return int(np.ceil(seconds * self.frame_rate))


def resolve_name(params: ModelParams) -> str:
    """Map `tiny` to the embedded directory; anything else is passed to `from_pretrained` as is."""
    if params.name != TINY_NAME:
        return params.name
    if not (TINY_DIR / "config.json").exists():
        raise FileNotFoundError(f"{TINY_DIR}: the embedded tiny model is missing; run `make tiny` to build it")
    return str(TINY_DIR)


def load_config(params: ModelParams) -> MusicgenConfig:
    """Only the config (cheap): enough for the codec's sample rate and frame rate."""
    return MusicgenConfig.from_pretrained(resolve_name(params), revision=params.revision)


def codec_info(config: MusicgenConfig) -> CodecInfo:
    enc, dec = config.audio_encoder, config.decoder
    hop = int(np.prod(enc.upsampling_ratios))
    return CodecInfo(
        sample_rate=enc.sampling_rate,
        frame_rate=enc.sampling_rate / hop,
        num_codebooks=dec.num_codebooks,
        codebook_size=enc.codebook_size,
        pad_id=dec.pad_token_id,
    )


def check_generation_length(config: MusicgenConfig, seconds: float, key: str = "evaluate.seconds") -> int:
    """Frames for `seconds` of audio, or a ParamsError when the decoder cannot reach that far: the
    delay pattern needs frames + K - 1 positions, and positions past max_position_embeddings
    have no embedding (generation would run on without progress or error)."""
    info = codec_info(config)
    frames, limit = info.frames(seconds), config.decoder.max_position_embeddings
    if frames + info.num_codebooks - 1 > limit:
        most = (limit - info.num_codebooks + 1) / info.frame_rate
        raise ParamsError(f"params.yaml: {key} must be <= {most:g} for this model ({limit} decoder positions at "
                          f"{info.frame_rate:g} frames/s; got {seconds:g}); longer output: `generate --seconds`")
    return frames


def set_threads(config: MusicgenConfig) -> int:
    """Torch threads for this model on this machine. A tiny decoder's matmuls are too small to
    amortise thread synchronisation (and spinning threads collapse when another process shares
    the cores), so it runs on one thread; real checkpoints use every core."""
    n = 1 if config.decoder.hidden_size < 512 else (os.cpu_count() or 1)
    torch.set_num_threads(n)
    return n


def load_model(params: ModelParams, device: str = "cpu"):
    """Load (model, tokenizer) through `from_pretrained`: a hub id honours the HF cache and
    HF_HUB_OFFLINE; `tiny` is the same call on the embedded directory."""
    name = resolve_name(params)
    model = MusicgenForConditionalGeneration.from_pretrained(name, revision=params.revision)
    tokenizer = AutoTokenizer.from_pretrained(name, revision=params.revision)
    # transformers 5 leaves decoder_start_token_id unset on some configs; training needs it.
    if model.config.decoder.decoder_start_token_id is None:
        model.config.decoder.decoder_start_token_id = model.config.decoder.pad_token_id
    set_threads(model.config)
    return model.to(device).eval(), tokenizer


# --- codec ----------------------------------------------------------------------------------

@contextlib.contextmanager
def all_cores():
    """Every core for the codec: its convolutions over whole clips are large enough to split
    well (2 threads encode 1.8x faster than 1 on the tiny codec), even where `set_threads` gives
    the tiny LM decoder one thread. Codes come out identical either way."""
    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@torch.no_grad()
def encode_audio(model, audio: torch.Tensor) -> torch.Tensor:
    """EnCodec codes (B, K, T) for mono audio (B, N) at the codec's sample rate."""
    with all_cores():
        out = model.audio_encoder.encode(audio[:, None, :])
    return out.audio_codes[0]


@torch.no_grad()
def decode_codes(model, codes: torch.Tensor) -> torch.Tensor:
    """Audio (B, N) for codes (B, K, T)."""
    with all_cores():
        return model.audio_encoder.decode(codes[None], [None] * codes.shape[0]).audio_values[:, 0]


@contextlib.contextmanager
def _capture_codes(model, sink: list):
    """`generate` returns audio only; keep the codes it decodes, for the token-health metrics
    (and decode them on every core). Patches the instance's `audio_encoder.decode`: `generate`
    calls it by attribute today; `generate` below falls back if a version stops doing so."""
    original = model.audio_encoder.decode

    def decode(audio_codes, *args, **kwargs):
        sink.append(audio_codes[0].detach().clone())
        with all_cores():
            return original(audio_codes, *args, **kwargs)

    model.audio_encoder.decode = decode
    try:
        yield
    finally:
        model.audio_encoder.decode = original


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], frames: int, guidance_scale: float,
             temperature: float, top_k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample audio (B, N) and its codes (B, K, T) for `prompts`, reproducibly from `seed`."""
    torch.manual_seed(seed)
    codes: list[torch.Tensor] = []
    inputs = text_inputs(tokenizer, prompts)
    with _capture_codes(model, codes):
        # The delay pattern spends K - 1 extra steps before the last codebook's final frame.
        steps = frames + model.config.decoder.num_codebooks - 1
        audio = model.generate(**inputs, do_sample=True, max_new_tokens=steps, guidance_scale=guidance_scale,
                               temperature=temperature, top_k=top_k or None)
    if not codes:  # this transformers no longer decodes through the attribute: re-encode instead
        warnings.warn("generate: sampled codes not captured; token metrics use the re-encoded audio", stacklevel=2)
        codes.append(encode_audio(model, audio[:, 0].float()))
    return audio[:, 0].float().numpy(), codes[0].cpu().numpy()
