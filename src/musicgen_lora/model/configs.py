"""Shape-true MusicGen configurations built here: the embedded tiny model's, and
facebook/musicgen-small's (for tests and benchmarks with random weights, where the hub is out of reach)."""

from __future__ import annotations

import numpy as np
from transformers import EncodecConfig, MusicgenConfig, MusicgenDecoderConfig, T5Config


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
