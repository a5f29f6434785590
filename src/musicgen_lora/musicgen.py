"""Everything MusicGen-specific, in one place.

Loading the model and tokenizer (`from_pretrained` on a hub id or a local directory, the
embedded `tiny` default included), the tiny configuration, the delay pattern that turns
EnCodec codes into decoder labels, the masking of padded frames, the loss, encoding audio
and generating it. segment, encode, train and evaluate call these instead of repeating them.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import (
    AutoTokenizer,
    EncodecConfig,
    MusicgenConfig,
    MusicgenDecoderConfig,
    MusicgenForConditionalGeneration,
    T5Config,
)

from .params import ModelParams

# `model.name: tiny` resolves to this directory (relative to the project root), built by
# `python -m musicgen_lora bootstrap` and committed so the demo needs no hub.
TINY_NAME = "tiny"
TINY_DIR = Path("assets/tiny-musicgen")
IGNORE = -100  # label value CrossEntropy skips


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


def tiny_config(text_vocab_size: int, codebook_size: int = 256, sample_rate: int = 16000) -> MusicgenConfig:
    """A MusicGen of the real classes (T5 text encoder, EnCodec, MusicGen decoder), small enough
    to train on 2 CPU cores. Same 50 Hz frame rate and 4 codebooks as musicgen-small."""
    text = T5Config(vocab_size=text_vocab_size, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4,
                    pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    hop_ratios = [8, 5, 4, 2]  # 320 samples per frame at 16 kHz = 50 Hz
    bits = np.log2(codebook_size)
    bandwidth_kbps = 4 * (sample_rate / np.prod(hop_ratios)) * bits / 1000  # exactly 4 codebooks
    audio = EncodecConfig(sampling_rate=sample_rate, codebook_size=codebook_size, codebook_dim=64, hidden_size=64,
                          num_filters=16, num_lstm_layers=1, upsampling_ratios=hop_ratios,
                          target_bandwidths=[float(bandwidth_kbps)], use_causal_conv=True, norm_type="weight_norm")
    decoder = MusicgenDecoderConfig(vocab_size=codebook_size, hidden_size=128, num_hidden_layers=3,
                                    num_attention_heads=4, ffn_dim=512, num_codebooks=4, audio_channels=1,
                                    max_position_embeddings=4096, pad_token_id=codebook_size,
                                    bos_token_id=codebook_size, decoder_start_token_id=codebook_size,
                                    dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)
    return MusicgenConfig(text_encoder=text.to_dict(), audio_encoder=audio.to_dict(), decoder=decoder.to_dict())


def small_config() -> MusicgenConfig:
    """facebook/musicgen-small's architecture (T5-base text encoder, EnCodec 32 kHz with 4
    codebooks of 2048, a 24-layer 1024-wide decoder), for tests and benchmarks with random
    weights where the hub is out of reach."""
    text = T5Config(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12)
    audio = EncodecConfig(sampling_rate=32000, audio_channels=1, codebook_size=2048, num_filters=64,
                          upsampling_ratios=[8, 5, 4, 4], target_bandwidths=[2.2], hidden_size=128,
                          num_lstm_layers=2, use_causal_conv=False, norm_type="weight_norm", normalize=False,
                          pad_mode="reflect", compress=2, residual_kernel_size=3, codebook_dim=128)
    decoder = MusicgenDecoderConfig(vocab_size=2048, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                    ffn_dim=4096, num_codebooks=4, max_position_embeddings=2048, pad_token_id=2048,
                                    bos_token_id=2048, decoder_start_token_id=2048, audio_channels=1)
    return MusicgenConfig(text_encoder=text.to_dict(), audio_encoder=audio.to_dict(), decoder=decoder.to_dict())


# --- delay pattern, masking and loss -------------------------------------------------------

def delay_pattern_labels(codes: torch.Tensor, frame_mask: torch.Tensor, mask_padding: bool) -> torch.Tensor:
    """Decoder labels (B, T + K - 1, K) for codes (B, K, T), in MusicGen's delay pattern.

    Codebook k is shifted right by k steps, so at sequence step s the decoder predicts frame s
    of codebook 0, frame s-1 of codebook 1, ... (the pattern `generate` decodes with). Steps a
    codebook has no frame for are IGNORE. With `mask_padding`, frames that only cover padding
    (frame_mask False) are IGNORE too: trial-1 left them in and the model learned to predict the
    silence of the padded half (low valid loss, quiet or noisy generations).
    """
    b, k, t = codes.shape
    labels = torch.full((b, t + k - 1, k), IGNORE, dtype=torch.long)
    keep = frame_mask.bool() if mask_padding else torch.ones_like(frame_mask, dtype=torch.bool)
    masked = codes.long().masked_fill(~keep[:, None, :], IGNORE)
    for cb in range(k):
        labels[:, cb : cb + t, cb] = masked[:, cb]
    return labels


def decoder_input_ids(labels: torch.Tensor, start_id: int, pad_id: int) -> torch.Tensor:
    """Teacher-forcing inputs (B*K, S): labels shifted right behind the start token; ignored
    positions become the pad id, as in `generate`'s delay-pattern mask."""
    b, s, k = labels.shape
    shifted = torch.full((b, k, s), pad_id, dtype=torch.long)
    shifted[..., 0] = start_id
    shifted[..., 1:] = labels.transpose(1, 2)[..., :-1]
    shifted[shifted == IGNORE] = pad_id
    return shifted.reshape(b * k, s)


def codebook_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over codebooks of each codebook's token-mean cross-entropy (as audiocraft does).

    logits (B*K, S, V), labels (B, S, K). A codebook whose labels are all IGNORE is left out
    (CrossEntropy's mean over nothing is NaN); if nothing at all is left, the loss is an exact
    zero that still carries the graph, so a fully padded batch never poisons training.
    """
    b, s, k = labels.shape
    logits = logits.reshape(b, k, s, -1).float()
    total, used = logits.new_zeros(()), 0
    for cb in range(k):
        target = labels[..., cb].reshape(-1)
        valid = target != IGNORE
        if valid.any():
            total = total + F.cross_entropy(logits[:, cb].reshape(-1, logits.shape[-1])[valid], target[valid])
            used += 1
    return total / used if used else logits.sum() * 0.0


def text_inputs(tokenizer, captions: list[str]) -> dict[str, torch.Tensor]:
    return dict(tokenizer(captions, padding=True, return_tensors="pt"))


def forward_loss(model, batch: dict[str, torch.Tensor], pad_id: int, start_id: int) -> torch.Tensor:
    """Teacher-forced loss of a batch {input_ids, attention_mask, labels}."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                decoder_input_ids=decoder_input_ids(batch["labels"], start_id, pad_id))
    return codebook_loss(out.logits, batch["labels"])


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
    (and decode them on every core)."""
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
    return audio[:, 0].float().numpy(), codes[0].numpy()
