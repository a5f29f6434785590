"""Loading a MusicGen checkpoint on the chosen device, its codec facts, encoding audio and generating it.

`from_pretrained` on a hub id or a local directory (the embedded `tiny` default included), with
the class the checkpoint's config names (`families.py`); segment, encode, train and evaluate call
these instead of repeating them. `resolve_device` is the one place `model.device` is read. Stereo
codes follow `stereo.py`, melody conditioning `melody.py`. The delay pattern and loss live in
`delay.py`, LoRA in `lora.py`, the token-shard format in `tokens.py`.
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
from transformers import AutoTokenizer, PretrainedConfig
from transformers.utils import logging as hf_logging

from ..core.params import ModelParams, ParamsError
from ..runtime.allocator import release
from . import families, melody, stereo
from .delay import text_inputs
from .kv_cache import presized_cache
from .sampling import RowSampling

log = logging.getLogger(__name__)


class _MusicgenSpecialTokens(logging.Filter):
    """MusicGen's pad, bos and decoder-start ids are the codebook size (one past the vocabulary)
    by design; transformers' config check warns about that on every load. Drop exactly that
    message, for exactly those values, and let every other warning through."""

    PATTERN = re.compile(
        r"(pad|bos|decoder_start)_token_id must be `None` or an integer within the vocabulary "
        r"\(between 0 and (\d+)\), got (\d+)"
    )

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


def load_config(params: ModelParams) -> PretrainedConfig:
    """Only the config (cheap): enough for the codec's sample rate and frame rate, and the family.
    A checkpoint of a type the pipeline cannot train is one line here."""
    return families.read_config(resolve_name(params), params.revision)


def resolve_device(params: ModelParams) -> torch.device:
    """The device every stage runs the model on: `model.device` (`auto`: CUDA when available,
    else CPU). Under `accelerate launch` each process takes its own GPU (LOCAL_RANK)."""
    want = params.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(want)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ParamsError(
                f"params.yaml: model.device is {params.device} but torch sees no CUDA device (use auto or cpu)"
            )
        if device.index is not None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ParamsError(
                f"params.yaml: model.device is {params.device}, but {os.environ['WORLD_SIZE']} processes "
                f"would all use that one GPU; use cuda (each process takes its own: LOCAL_RANK)"
            )
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", torch.cuda.current_device())))
        if device.index >= torch.cuda.device_count():
            raise ParamsError(
                f"params.yaml: model.device is {params.device} but there are {torch.cuda.device_count()} CUDA devices"
            )
    return device


def generation_dtype(device: torch.device, half_precision: bool) -> torch.dtype | None:
    """The dtype `generate` casts the LM to with `evaluate.half_precision`: bf16 (fp16 where the GPU
    lacks bf16); None (float32) without it. On a CPU bf16 is real too (CPU autocast), said in one
    line: it is how the GPU's half-precision path is checked without a GPU."""
    if not half_precision:
        return None
    if device.type != "cuda":
        log.info(
            "evaluate.half_precision: bf16 generation on the CPU (as on a GPU; faster than float32 only on "
            "CPUs with bf16 instructions)"
        )
        return torch.bfloat16
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def codec_info(config: PretrainedConfig) -> CodecInfo:
    enc, dec = config.audio_encoder, config.decoder
    hop = int(np.prod(enc.upsampling_ratios))
    return CodecInfo(
        sample_rate=enc.sampling_rate,
        frame_rate=enc.sampling_rate / hop,
        num_codebooks=dec.num_codebooks,
        codebook_size=enc.codebook_size,
        pad_id=dec.pad_token_id,
    )


def check_generation_length(config: PretrainedConfig, seconds: float, key: str = "evaluate.seconds") -> int:
    """Frames for `seconds` of audio, or a ParamsError when the decoder cannot reach that far: the
    delay pattern needs frames + K - 1 positions (K codebooks per channel), and positions past
    max_position_embeddings have no embedding (generation would run on without progress or error)."""
    info, k = codec_info(config), families.channel_codebooks(config)
    frames, limit = info.frames(seconds), config.decoder.max_position_embeddings
    if frames + k - 1 > limit:
        most = (limit - k + 1) / info.frame_rate
        raise ParamsError(
            f"params.yaml: {key} must be <= {most:g} for this model ({limit} decoder positions at "
            f"{info.frame_rate:g} frames/s; got {seconds:g}); longer output: `generate --seconds`"
        )
    return frames


# Torch threads of a small model (the embedded tiny one), on every machine. Float results
# depend on the thread count: sums split by thread (1, 2, 3 and 8 threads give four different
# sets of gradients), and elementwise kernels such as the codec's ELU take the scalar path at
# each thread's chunk edge, which rounds otherwise (decoded audio differed in the last bit on
# 1, 2, 3, 8 and 16 threads). One fixed count for the whole process, codec included, keeps
# tokens, adapters and audio the same on any machine, as the ISA pin does (runtime/numerics.py).
# 2 threads train the tiny model 1.6x and generate 1.3x faster than 1 (bench/README.md).
SMALL_MODEL_THREADS = 2


def cpu_threads(config: PretrainedConfig, fixed: int | None = None) -> int:
    """Torch threads for this model: `fixed` (`model.cpu_threads`) where given; otherwise
    `SMALL_MODEL_THREADS` for a decoder under 512 wide, and every core this process may use
    for real checkpoints (whose numbers then depend on the core count)."""
    if fixed:
        return fixed
    if config.decoder.hidden_size < 512:
        return SMALL_MODEL_THREADS
    # the cores this process may run on (a container's or taskset's share); macOS has no affinity.
    # Under a launcher (accelerate, torchrun) the ranks on this host share them.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def set_threads(config: PretrainedConfig, fixed: int | None = None) -> int:
    """Set `cpu_threads` for the whole process (LM, codec, text encoder, musicnn); returns it."""
    n = cpu_threads(config, fixed)
    torch.set_num_threads(n)
    return n


def text_encoder_without_dropout(model) -> None:
    """The frozen T5 text encoder conditions training as it conditions generation: in eval mode,
    without dropout. Trainer puts the whole model in train mode before every step, which would
    switch on T5's dropout (`dropout_rate` 0.1 in MusicGen's checkpoints, in its layers and inside
    its attention) although T5 never trains here, so the decoder would learn from noised text
    states that it never sees when it generates; audiocraft keeps its frozen T5 in eval mode for
    the same reason. A pre-forward hook puts T5 back in eval mode on every call. The decoder's own
    dropout is left as configured."""

    def eval_mode(module, args) -> None:
        module.eval()

    model.text_encoder.register_forward_pre_hook(eval_mode)


def checkpoint_decoder(model, every_n_layers: int = 1) -> None:
    """Activation checkpointing on the decoder's layers, every `every_n_layers`-th of them
    (transformers' own `every_n_layers`): those recompute their forward in the backward pass
    instead of keeping its activations. Only the decoder: the text encoder and codec are frozen
    and keep nothing for the backward pass. Recomputation runs the same kernels on the same
    inputs, so losses and gradients are bit for bit those of a run without it."""
    model.decoder.activation_checkpointing_enable(
        activation_checkpointing_kwargs={"use_reentrant": False}, every_n_layers=every_n_layers
    )


def load_model(
    params: ModelParams, device: torch.device | str | None = None, half_precision: bool = False, codec_only: bool = False
):
    """Load (model, tokenizer) through `from_pretrained` onto `device` (None: `resolve_device`): a
    hub id honours the HF cache and HF_HUB_OFFLINE; `tiny` is the same call on the embedded
    directory. The class comes from the config (`families.load`, which stops on any weight the
    checkpoint lacks or has in excess). A melody model carries its chroma extractor
    (`model.chroma_extractor`). `half_precision`: `generate` samples in bf16 (fp16 where the GPU
    has no bf16; `generation_dtype`). `codec_only` (encode):
    only EnCodec goes to the device; T5 and the decoder stay on the CPU, unused (+2.4 GB of GPU
    memory saved on musicgen-small, ~13 GB on large)."""
    name = resolve_name(params)
    on = resolve_device(params) if device is None else torch.device(device)
    model = families.load(name, params.revision)
    tokenizer = AutoTokenizer.from_pretrained(name, revision=params.revision)
    # transformers 5 leaves decoder_start_token_id unset on some configs; training needs it.
    if model.config.decoder.decoder_start_token_id is None:
        model.config.decoder.decoder_start_token_id = model.config.decoder.pad_token_id
    if families.is_melody(model.config):
        model.chroma_extractor = melody.chroma_extractor(name, params.revision, model.config.audio_encoder.sampling_rate)
    model.generation_dtype = generation_dtype(on, half_precision)
    set_threads(model.config, params.cpu_threads)
    if on.type == "cuda":
        torch.cuda.set_device(on)  # what lands on "cuda" without an index (peft's adapter weights) goes here too
    if codec_only:
        model.audio_encoder.to(on)
    else:
        model.to(on)
    if on.type == "cuda":
        # the float32 copy from_pretrained made on the host is freed by the move; mimalloc would keep
        # it for an hour (runtime/allocator.py): 2.4-13 GB of host memory per process
        release()
    return model.eval(), tokenizer


# --- codec ----------------------------------------------------------------------------------


def model_device(model) -> torch.device:
    return next(model.parameters()).device


def codec_device(model) -> torch.device:
    """Where EnCodec runs (encode keeps the rest of the model on the CPU)."""
    return next(model.audio_encoder.parameters()).device


@torch.no_grad()
def encode_audio(model, audio: torch.Tensor) -> torch.Tensor:
    """EnCodec codes (B, K, T) for audio (B, N) or (B, channels, N) at the codec's sample rate, on
    the model's device, returned on the CPU. A stereo model encodes each channel with its mono
    codec and interleaves the codes as transformers does (`stereo.py`); mono audio given to a
    stereo model is duplicated."""
    audio = audio.to(codec_device(model))
    if audio.dim() == 2:
        audio = audio[:, None, :]
    if families.audio_channels(model.config) == 1:
        return model.audio_encoder.encode(audio).audio_codes[0].cpu()
    audio = audio.expand(-1, 2, -1) if audio.shape[1] == 1 else audio
    left, right = (model.audio_encoder.encode(audio[:, c : c + 1]).audio_codes[0] for c in (0, 1))
    return stereo.interleave(left, right).cpu()


@torch.no_grad()
def decode_codes(model, codes: torch.Tensor) -> torch.Tensor:
    """Audio (B, N) for codes (B, K, T), on the model's device (stereo: (B, N, 2), each channel
    decoded from its codebooks, `stereo.split`)."""
    codes = codes.to(codec_device(model))
    if families.audio_channels(model.config) == 1:
        return model.audio_encoder.decode(codes[None], [None] * codes.shape[0]).audio_values[:, 0]
    return torch.stack(
        [model.audio_encoder.decode(c[None], [None] * codes.shape[0]).audio_values[:, 0] for c in stereo.split(codes)],
        dim=-1,
    )


@contextlib.contextmanager
def _capture_codes(model, sink: list):
    """`generate` returns audio only; keep the codes it decodes, for the token-health metrics.
    Patches the instance's `audio_encoder.decode`: `generate` calls it by attribute today;
    `generate` below falls back if a version stops doing so."""
    original = model.audio_encoder.decode

    def decode(audio_codes, *args, **kwargs):
        sink.append(audio_codes[0].detach().clone())
        # the codec decodes in float32 under a half-precision generation (as audiocraft does)
        kind = audio_codes.device.type
        full = torch.autocast(kind, enabled=False) if torch.is_autocast_enabled(kind) else contextlib.nullcontext()
        with full:
            return original(audio_codes, *args, **kwargs)

    model.audio_encoder.decode = decode
    try:
        yield
    finally:
        model.audio_encoder.decode = original


@contextlib.contextmanager
def lm_weights_in(model, dtype: torch.dtype | None):
    """The text encoder, projections and decoder with their weights and buffers in `dtype` for the
    call, cast once (autocast alone re-casts every frozen weight at every generated step: it
    caches casts only of weights that require grad, and peft freezes the base); the codec stays
    float32. On exit the float32 tensors themselves come back, so nothing is rounded."""
    if dtype is None:
        yield
        return
    saved = []  # (module, name, is_param, float32 tensor)
    for name, child in model.named_children():
        if name == "audio_encoder":
            continue
        for mod in child.modules():
            for is_param, named in ((True, mod.named_parameters(recurse=False)), (False, mod.named_buffers(recurse=False))):
                saved += [(mod, key, is_param, t.data) for key, t in named if t.is_floating_point() and t.dtype != dtype]
    try:
        for mod, key, is_param, t in saved:
            if is_param:
                getattr(mod, key).data = t.to(dtype)
            else:
                setattr(mod, key, t.to(dtype))
        yield
    finally:
        for mod, key, is_param, t in saved:
            if is_param:
                getattr(mod, key).data = t
            else:
                setattr(mod, key, t)


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: list[str],
    frames: int,
    guidance_scale: float,
    temperature: float,
    top_k: int,
    seed: int,
    melody: torch.Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Sample audio (B, N) (stereo: (B, N, 2)) and its codes (B, K, T) for `prompts`; prompt i from
    seed + i, whatever else is in the batch (`sampling.py`). `melody`: a chroma (frames, 12) every
    prompt is conditioned on (melody models)."""
    device = model_device(model)
    codes: list[torch.Tensor] = []
    inputs = {k: v.to(device) for k, v in text_inputs(tokenizer, prompts).items()}
    if melody is not None:
        inputs["input_features"] = melody.to(device, torch.float32).expand(len(prompts), -1, -1)
    dtype = getattr(model, "generation_dtype", None)
    half = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    steps = families.delay_steps(model.config, frames)
    with _capture_codes(model, codes), lm_weights_in(model, dtype), half, presized_cache(model, steps):
        sampling = RowSampling([seed + i for i in range(len(prompts))], guidance_scale, temperature, top_k)
        audio = model.generate(**inputs, max_new_tokens=steps, **sampling.generate_kwargs())
    audio = audio.float().cpu()
    if not codes:  # this transformers no longer decodes through the attribute: re-encode instead
        warnings.warn("generate: sampled codes not captured; token metrics use the re-encoded audio", stacklevel=2)
        codes.append(encode_audio(model, audio))
    # a stereo model decodes its left, then its right channel's codes (`stereo.py`)
    sampled = codes[0] if len(codes) == 1 else stereo.interleave(codes[0], codes[1])
    audio = audio[:, 0] if audio.shape[1] == 1 else audio.transpose(1, 2)
    return audio.numpy(), sampled.cpu().numpy()
