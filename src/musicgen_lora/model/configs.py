"""Shape-true MusicGen configurations built here: the embedded tiny model's, every released
family's (small, medium, large, stereo, melody: for tests and benchmarks with random weights,
where the hub is out of reach), and tiny versions of each family (same classes, codec, codebooks
and channels; tiny widths)."""

from __future__ import annotations

import numpy as np
from transformers import (
    EncodecConfig,
    MusicgenConfig,
    MusicgenDecoderConfig,
    MusicgenMelodyConfig,
    MusicgenMelodyDecoderConfig,
    T5Config,
)

# Decoder (hidden size, layers, attention heads) of the released checkpoints, as transformers'
# convert_musicgen_transformers.py / convert_musicgen_melody_transformers.py build them (ffn 4x
# hidden; stereo checkpoints: the same shapes with 8 codebooks, 2 audio channels).
RELEASED = {
    "facebook/musicgen-small": (1024, 24, 16),
    "facebook/musicgen-medium": (1536, 48, 24),
    "facebook/musicgen-large": (2048, 48, 32),
    "facebook/musicgen-melody": (1536, 48, 24),
    "facebook/musicgen-melody-large": (2048, 48, 32),
}


def tiny_config(text_vocab_size: int, codebook_size: int = 256, sample_rate: int = 16000) -> MusicgenConfig:
    """A MusicGen of the real classes (T5 text encoder, EnCodec, MusicGen decoder), small enough
    to train on 2 CPU cores. Same 50 Hz frame rate and 4 codebooks as musicgen-small."""
    text = T5Config(
        vocab_size=text_vocab_size,
        d_model=64,
        d_kv=16,
        d_ff=128,
        num_layers=2,
        num_heads=4,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    hop_ratios = [8, 5, 4, 2]  # 320 samples per frame at 16 kHz = 50 Hz
    bits = np.log2(codebook_size)
    bandwidth_kbps = 4 * (sample_rate / np.prod(hop_ratios)) * bits / 1000  # exactly 4 codebooks
    audio = EncodecConfig(
        sampling_rate=sample_rate,
        codebook_size=codebook_size,
        codebook_dim=64,
        hidden_size=64,
        num_filters=16,
        num_lstm_layers=1,
        upsampling_ratios=hop_ratios,
        target_bandwidths=[float(bandwidth_kbps)],
        use_causal_conv=True,
        norm_type="weight_norm",
    )
    decoder = MusicgenDecoderConfig(
        vocab_size=codebook_size,
        hidden_size=128,
        num_hidden_layers=3,
        num_attention_heads=4,
        ffn_dim=512,
        num_codebooks=4,
        audio_channels=1,
        max_position_embeddings=4096,
        pad_token_id=codebook_size,
        bos_token_id=codebook_size,
        decoder_start_token_id=codebook_size,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
    )
    return MusicgenConfig(text_encoder=text.to_dict(), audio_encoder=audio.to_dict(), decoder=decoder.to_dict())


def mini_config(text_vocab_size: int) -> MusicgenConfig:
    """The embedded `mini` MusicGen (tiny/mini.py): the real classes at 16 kHz (musicnn's rate),
    50 Hz frames, 4 codebooks of 1024 (2 kbps), a codec wide enough to keep an instrument's timbre
    and a 6-layer 256-wide decoder, trainable on 2 CPU cores in hours."""
    text = T5Config(
        vocab_size=text_vocab_size,
        d_model=128,
        d_kv=32,
        d_ff=256,
        num_layers=2,
        num_heads=4,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    audio = EncodecConfig(
        sampling_rate=16000,
        codebook_size=1024,
        codebook_dim=128,
        hidden_size=128,
        num_filters=32,
        num_lstm_layers=1,
        upsampling_ratios=[8, 5, 4, 2],
        target_bandwidths=[2.0],
        use_causal_conv=True,
        norm_type="weight_norm",
    )
    decoder = MusicgenDecoderConfig(
        vocab_size=1024,
        hidden_size=256,
        num_hidden_layers=6,
        num_attention_heads=8,
        ffn_dim=1024,
        num_codebooks=4,
        audio_channels=1,
        max_position_embeddings=4096,
        pad_token_id=1024,
        bos_token_id=1024,
        decoder_start_token_id=1024,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
    )
    return MusicgenConfig(text_encoder=text.to_dict(), audio_encoder=audio.to_dict(), decoder=decoder.to_dict())


def small_config() -> MusicgenConfig:
    """facebook/musicgen-small's architecture (T5-base text encoder, EnCodec 32 kHz with 4
    codebooks of 2048, a 24-layer 1024-wide decoder), for tests and benchmarks with random
    weights where the hub is out of reach."""
    text = T5Config(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12)
    audio = EncodecConfig(
        sampling_rate=32000,
        audio_channels=1,
        codebook_size=2048,
        num_filters=64,
        upsampling_ratios=[8, 5, 4, 4],
        target_bandwidths=[2.2],
        hidden_size=128,
        num_lstm_layers=2,
        use_causal_conv=False,
        norm_type="weight_norm",
        normalize=False,
        pad_mode="reflect",
        compress=2,
        residual_kernel_size=3,
        codebook_dim=128,
    )
    decoder = MusicgenDecoderConfig(
        vocab_size=2048,
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        ffn_dim=4096,
        num_codebooks=4,
        max_position_embeddings=2048,
        pad_token_id=2048,
        bos_token_id=2048,
        decoder_start_token_id=2048,
        audio_channels=1,
    )
    return MusicgenConfig(text_encoder=text.to_dict(), audio_encoder=audio.to_dict(), decoder=decoder.to_dict())


def encodec_32khz(tiny: bool = False) -> EncodecConfig:
    """The 32 kHz EnCodec every released MusicGen uses (4 codebooks of 2048, 50 Hz); `tiny`: the
    same rates and codebooks with narrow convolutions."""
    widths = (
        dict(num_filters=4, hidden_size=16, codebook_dim=16, num_lstm_layers=1)
        if tiny
        else dict(num_filters=64, hidden_size=128, codebook_dim=128, num_lstm_layers=2)
    )
    return EncodecConfig(
        sampling_rate=32000,
        audio_channels=1,
        codebook_size=2048,
        upsampling_ratios=[8, 5, 4, 4],
        target_bandwidths=[2.2],
        use_causal_conv=False,
        norm_type="weight_norm",
        normalize=False,
        pad_mode="reflect",
        compress=2,
        residual_kernel_size=3,
        **widths,
    )


def family_config(
    hidden: int,
    layers: int,
    heads: int,
    stereo: bool = False,
    melody: bool = False,
    text: T5Config | None = None,
    audio: EncodecConfig | None = None,
):
    """A MusicGen config of the released layout: the decoder `hidden` wide, `layers` deep (ffn 4x),
    4 codebooks per channel of 2048 codes; `melody` gives the melody family's config (chroma
    conditioning, no cross-attention). Text encoder T5-base and the 32 kHz EnCodec unless given."""
    text = text or T5Config(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12)
    audio = audio or encodec_32khz()
    channels = 2 if stereo else 1
    decoder_cls = MusicgenMelodyDecoderConfig if melody else MusicgenDecoderConfig
    decoder = decoder_cls(
        vocab_size=2048,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        ffn_dim=4 * hidden,
        num_codebooks=4 * channels,
        audio_channels=channels,
        max_position_embeddings=2048,
        pad_token_id=2048,
        bos_token_id=2048,
        decoder_start_token_id=2048,
    )
    cls = MusicgenMelodyConfig if melody else MusicgenConfig
    return cls(text_encoder=text.to_dict(), audio_encoder=audio.to_dict(), decoder=decoder.to_dict())


def released_config(name: str, stereo: bool = False):
    """The architecture of a released checkpoint (`RELEASED`), e.g. facebook/musicgen-medium."""
    return family_config(*RELEASED[name], stereo=stereo, melody="melody" in name)


def tiny_family_config(hidden: int, layers: int, text_vocab_size: int, stereo: bool = False, melody: bool = False):
    """A tiny version of a family for tests: the released classes, codec rates, codebooks and
    channels, a narrow codec, a 1-layer T5 and a decoder `hidden` wide (16-wide heads)."""
    text = T5Config(
        vocab_size=text_vocab_size,
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=1,
        num_heads=4,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return family_config(hidden, layers, hidden // 16, stereo, melody, text, encodec_32khz(tiny=True))
