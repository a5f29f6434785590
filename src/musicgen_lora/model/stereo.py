"""Stereo MusicGen (`decoder.audio_channels == 2`, 8 codebooks): how transformers lays out the two
channels' codes, so that encoding, labels and generation agree with it.

- The codec is the mono EnCodec; each channel is encoded on its own. The decoder's 2K codebooks
  interleave them: index 2k is the left channel's codebook k, 2k + 1 the right's
  (`MusicgenForConditionalGeneration._prepare_audio_encoder_kwargs_for_generation` writes
  `codes[:, ::2] = left`, `codes[:, 1::2] = right`; `generate` decodes `[::2]` as the left channel).
- The delay pattern is the mono one with every row repeated (`build_delay_pattern_mask`:
  `repeat_interleave(2)`): codebook index j is delayed by j // 2 steps, and a sequence of T frames
  takes T + K - 1 steps, K the codebooks per channel.
"""

from __future__ import annotations

import torch


def delays(num_codebooks: int, channels: int) -> list[int]:
    """Steps each codebook index is shifted by in the delay pattern."""
    return [j // channels for j in range(num_codebooks)]


def interleave(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Stereo codes (B, 2K, T) from each channel's codes (B, K, T)."""
    b, k, t = left.shape
    codes = left.new_empty(b, 2 * k, t)
    codes[:, ::2], codes[:, 1::2] = left, right
    return codes


def split(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(left, right) codes (B, K, T) of stereo codes (B, 2K, T)."""
    return codes[:, ::2], codes[:, 1::2]
